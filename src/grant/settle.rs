//! Turning a carried-out [`Plan`] into the grant's next status and the transitions to
//! announce (one Event and one audit line each). Pure.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::plan::{BindingStep, Plan};
use crate::api::{AccessGrant, BindingRef, GrantPhase, GrantStatus, TIMELINE_LIMIT, TimelineEntry, format_timestamp};

/// The `Ready` condition type (kstatus).
pub const READY: &str = "Ready";
/// The `Stalled` condition type (kstatus): an error a retry cannot fix.
pub const STALLED: &str = "Stalled";

/// What happened when the IO shell carried out a plan's binding step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The step was carried out; `binding` is the binding that now exists for the grant
    /// (`None` when the grant needs none), and `change` says what was done to it.
    Applied {
        /// The binding the grant now has, if any.
        binding: Option<BindingRef>,
        /// What was done.
        change: Change,
    },
    /// The binding could not be created or repaired; the grant waits.
    Blocked(Blocker),
}

/// What was done to the grant's binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing needed doing.
    None,
    /// Created for the first time.
    Created,
    /// Re-created after someone deleted it (drift).
    Recreated,
    /// Restored after someone edited it (drift).
    Repaired,
    /// Brought up to date by the operator itself (the grant's expiry moved earlier).
    Updated,
    /// Found exactly as it should be and recorded.
    Adopted,
}

/// Why a binding could not be created or repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// CamelCase reason: `RoleNotFound`, `Forbidden`, `NameClash`, `InvalidBinding`.
    pub reason: &'static str,
    /// Human-readable detail.
    pub message: String,
    /// True when retrying cannot help without a person acting (kstatus `Stalled`).
    pub stalled: bool,
}

impl Blocker {
    /// The longest sensible wait before retrying: a missing role may be created any moment
    /// (10 s), other blockers need a person and use the default cap (`None`).
    pub fn retry_cap(&self) -> Option<std::time::Duration> {
        (self.reason == "RoleNotFound").then_some(std::time::Duration::from_secs(10))
    }
}

/// One transition to announce: an Event on the grant and an audit line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// What happened: `ApprovalRequested`, `Approved`, `Scheduled`, `Granted`,
    /// `ExpiringSoon`, `Expired`, `Revoked`, `Denied`, `Failed`, `DriftRepaired`. Used as the Event reason and the
    /// audit action.
    pub action: &'static str,
    /// True for Warning events (`Denied`, `Failed`, `DriftRepaired`, break-glass `Granted`).
    pub warning: bool,
    /// The specific reason (e.g. `DurationTooLong`; equals `action` when there is none).
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
}

/// The result of [`settle`]: the status to write and the transitions to announce.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    /// The complete next status.
    pub status: GrantStatus,
    /// Transitions, in order; empty when nothing changed.
    pub transitions: Vec<Transition>,
    /// The blocker, when the binding could not be made (for a Warning event).
    pub blocker: Option<Blocker>,
}

/// Computes the grant's next status from its current one, the plan that was carried out,
/// the outcome of the binding step, and `now` (the instant the work finished).
pub fn settle(grant: &AccessGrant, plan: &Plan, outcome: &Outcome, now: Timestamp) -> Settled {
    let old = grant.status.clone().unwrap_or_default();
    let mut status = old.clone();
    status.observed_generation = grant.metadata.generation;

    let (phase, reason, message, blocker) = match outcome {
        // A binding that could not be repaired still exists: access continues (the phase
        // stays Active) and the condition says what is wrong.
        Outcome::Blocked(b) if matches!(plan.binding, BindingStep::Repair { .. }) => {
            (plan.phase, Some(b.reason), b.message.clone(), Some(b.clone()))
        }
        Outcome::Blocked(b) => (GrantPhase::Pending, Some(b.reason), b.message.clone(), Some(b.clone())),
        Outcome::Applied { .. } => (plan.phase, plan.reason, plan.message.clone(), None),
    };
    status.phase = Some(phase);
    if let Some(w) = plan.window {
        status.starts_at = Some(format_timestamp(w.starts_at));
        status.expires_at = Some(format_timestamp(w.expires_at));
    }
    if let Outcome::Applied { binding: Some(b), .. } = outcome {
        status.bindings = vec![b.clone()];
    }

    let mut transitions = Vec::new();
    if let Some(approvals) = &plan.approvals
        && old.approvals.is_empty()
        && !approvals.is_empty()
    {
        transitions.push(Transition {
            action: "Approved",
            warning: false,
            reason: "Approved".to_owned(),
            message: format!(
                "approved by {}",
                approvals
                    .iter()
                    .map(|a| format!("{} (GrantReview {})", a.reviewer, a.review))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
        status.approvals = approvals.clone();
    }
    if blocker.is_none() {
        status.review_deadline = plan.review_deadline.map(format_timestamp);
    }
    if let Some(need) = plan.required_approvals {
        status.required_approvals = Some(status.required_approvals.unwrap_or(0).max(need));
    }

    // Announced when the phase changes, and when a grant waiting for approval is first
    // seen (its phase may already read Pending from an earlier blocker).
    let entered = old.phase != Some(phase)
        || (reason == Some("AwaitingApproval") && !old.conditions.iter().any(|c| c.reason == "AwaitingApproval"));
    if entered && let Some(action) = announce(phase, reason) {
        if old.phase == Some(GrantPhase::Active) && phase.is_terminal() {
            status.ended_at = Some(format_timestamp(now));
        }
        let reason = reason.unwrap_or(action);
        transitions.push(Transition {
            action,
            warning: matches!(phase, GrantPhase::Denied | GrantPhase::Failed)
                || matches!(reason, "BreakGlass" | "BreakGlassNotReviewed" | "DeniedByReviewer"),
            reason: reason.to_owned(),
            message: message.clone(),
        });
    }
    // The coming expiry is announced once, while the grant is active (also while a repair
    // is blocked: access continues until the expiry).
    if plan.expiring_soon
        && phase == GrantPhase::Active
        && old.expiry_notice_at.is_none()
        && let Some(window) = plan.window
    {
        let left = window.expires_at.duration_since(now);
        transitions.push(Transition {
            action: "ExpiringSoon",
            warning: false,
            reason: "ExpiringSoon".to_owned(),
            message: format!(
                "access ends at {} (in {}); to keep it, request a new AccessGrant",
                format_timestamp(window.expires_at),
                human(left)
            ),
        });
        status.expiry_notice_at = Some(format_timestamp(now));
    }
    // A stricter policy or limit ended the grant earlier than recorded: said once per new
    // expiry, before the expiry itself if that has come too.
    if let (Some(recorded), Some(window)) = (plan.shortened_from, plan.window)
        && matches!(phase, GrantPhase::Active | GrantPhase::Expired)
    {
        transitions.insert(
            0,
            Transition {
                action: "Shortened",
                warning: false,
                reason: "Shortened".to_owned(),
                message: format!(
                    "a stricter AccessPolicy or limit now ends this grant at {} instead of {}",
                    format_timestamp(window.expires_at),
                    format_timestamp(recorded)
                ),
            },
        );
    }
    if let Outcome::Applied {
        change: change @ (Change::Recreated | Change::Repaired),
        ..
    } = outcome
    {
        transitions.push(Transition {
            action: "DriftRepaired",
            warning: true,
            reason: "DriftRepaired".to_owned(),
            message: match change {
                Change::Recreated => "the binding was deleted while the grant is active; re-created it".to_owned(),
                _ => "the binding was edited while the grant is active; restored it".to_owned(),
            },
        });
    }
    for t in &transitions {
        if t.action == "DriftRepaired" {
            continue;
        }
        status.timeline.push(TimelineEntry {
            time: format_timestamp(now),
            phase,
            reason: t.reason.clone(),
            message: Some(t.message.clone()).filter(|m| !m.is_empty()),
        });
    }
    let overflow = status.timeline.len().saturating_sub(TIMELINE_LIMIT);
    status.timeline.drain(..overflow);

    if let Some(reason) = reason {
        // A request that expired unapproved never got what it asked for: not Ready, and
        // final (kstatus Stalled), like a refusal; GitOps tools then report a failure.
        let unapproved = reason == "PendingTimeout";
        let ready = blocker.is_none()
            && !unapproved
            && matches!(
                phase,
                GrantPhase::Active | GrantPhase::Scheduled | GrantPhase::Expired | GrantPhase::Revoked
            );
        let stalled = match (&blocker, phase) {
            (Some(b), _) => b.stalled,
            (None, GrantPhase::Denied | GrantPhase::Failed) => true,
            _ => unapproved,
        };
        let generation = grant.metadata.generation;
        let mut conditions = vec![condition(
            &old.conditions,
            READY,
            ready,
            reason,
            &message,
            generation,
            now,
        )];
        if stalled {
            conditions.push(condition(
                &old.conditions,
                STALLED,
                true,
                reason,
                &message,
                generation,
                now,
            ));
        }
        status.conditions = conditions;
    } else {
        for c in &mut status.conditions {
            c.observed_generation = grant.metadata.generation;
        }
    }

    Settled {
        status,
        transitions,
        blocker,
    }
}

/// The transition announced on entering `phase` for `reason`: `ApprovalRequested` for a
/// grant starting to wait for approval, none for other `Pending` grants (their blocker is
/// announced instead).
fn announce(phase: GrantPhase, reason: Option<&str>) -> Option<&'static str> {
    Some(match phase {
        GrantPhase::Pending if reason == Some("AwaitingApproval") => "ApprovalRequested",
        GrantPhase::Pending => return None,
        GrantPhase::Scheduled => "Scheduled",
        GrantPhase::Active => "Granted",
        GrantPhase::Expired => "Expired",
        GrantPhase::Revoked => "Revoked",
        GrantPhase::Denied => "Denied",
        GrantPhase::Failed => "Failed",
    })
}

/// Builds a condition, keeping `lastTransitionTime` from the previous one of the same type
/// when its status did not change (Kubernetes API conventions).
fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// A rough human reading of a time left, rounded up to whole seconds: "9m 58s", "45s"
/// (never negative).
fn human(left: jiff::SignedDuration) -> String {
    let secs = (left.as_millis().max(0) + 999) / 1000;
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m {s}s"),
    }
}

/// A short `namespace/name` label for logs.
pub fn grant_key(grant: &AccessGrant) -> String {
    format!("{}/{}", grant.namespace().unwrap_or_default(), grant.name_any())
}
