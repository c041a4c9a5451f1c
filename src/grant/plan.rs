//! The lifecycle planner: given a grant, the bindings that exist and "now", decide the
//! phase, the binding to create, keep or repair, the bindings to delete, and the next
//! deadline. Pure: no IO, no clock of its own.

use jiff::Timestamp;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;

use super::binding::{self, Owner, Relation};
use super::gate::{self, Facts, Gate};
use super::request::{self, GrantRequest, Limits, Refusal};
use super::window::{Position, Window};
use crate::api::{
    AccessGrant, ApprovalRecord, BindingRef, GrantDuration, GrantPhase, format_timestamp, parse_timestamp,
};

/// What the operator should do for one grant, now.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The phase the grant is in once the plan is carried out.
    pub phase: GrantPhase,
    /// Why (CamelCase, e.g. `Granted`, `Expired`, `DurationTooLong`); `None` keeps the
    /// conditions already recorded (a final grant that needs nothing).
    pub reason: Option<&'static str>,
    /// Human-readable detail for conditions and events.
    pub message: String,
    /// The access window, once it can be computed (the spec is valid).
    pub window: Option<Window>,
    /// What to do about the grant's binding.
    pub binding: BindingStep,
    /// Bindings to delete (with a uid precondition; already-gone is success).
    pub delete: Vec<BindingRef>,
    /// When to look at the grant again even if nothing changes (activation, expiry, the
    /// end of the wait for approval, a break-glass review deadline).
    pub wake_at: Option<Timestamp>,
    /// Approvals to record in status (they just became sufficient).
    pub approvals: Option<Vec<ApprovalRecord>>,
    /// For an active, not yet approved break-glass grant: its review deadline.
    pub review_deadline: Option<Timestamp>,
    /// Whether the grant is active by break-glass.
    pub break_glass: bool,
    /// True when the `ExpiringSoon` notice is due now and was not given yet.
    pub expiring_soon: bool,
    /// For a grant waiting for approval: how many approvals it needs (recorded in status).
    pub required_approvals: Option<u8>,
    /// When this plan ends the grant earlier than the expiry recorded in its status (an
    /// AccessPolicy or the operator's limits became stricter): the recorded expiry.
    pub shortened_from: Option<Timestamp>,
}

/// What to do about the one binding an active grant needs.
#[derive(Debug, Clone, PartialEq)]
pub enum BindingStep {
    /// The grant needs no binding now.
    Nothing,
    /// The binding exists, is ours and is as it should be.
    Keep(BindingRef),
    /// The binding is exactly what we would create but is not recorded yet (the operator
    /// stopped between creating and recording it): record it.
    Adopt(BindingRef),
    /// No binding exists: create this one. `recreate` is true when the grant was already
    /// active with a recorded binding, i.e. someone deleted it (drift).
    Create {
        /// The binding to create.
        binding: Box<RoleBinding>,
        /// Whether this replaces a binding someone deleted.
        recreate: bool,
    },
    /// Our binding was edited, or the grant's expiry moved earlier: overwrite it with this,
    /// guarded by its uid.
    Repair {
        /// The desired binding.
        binding: Box<RoleBinding>,
        /// The uid of the existing binding to overwrite.
        uid: String,
        /// True when someone else changed the binding (drift); false when the only
        /// difference is the operator's own `jitrbac.io/expires-at`, still the grant's
        /// recorded expiry, which a stricter policy moved earlier.
        drift: bool,
    },
    /// A binding the operator did not create holds the name; it is left alone.
    Clash {
        /// The contested name.
        name: String,
    },
}

/// Plans the next step for `grant`.
///
/// `observed` holds the RoleBindings that exist in the grant's namespace under the names
/// that matter (the deterministic name and the names recorded in status); `now` is the
/// current instant; `limits` are the operator's settings; `facts` what the API server
/// said about policies, eligibility and reviews. Never fails: every problem becomes a
/// phase and a reason.
pub fn plan(grant: &AccessGrant, observed: &[RoleBinding], now: Timestamp, limits: &Limits, facts: &Facts) -> Plan {
    let status = grant.status.clone().unwrap_or_default();
    let owner = owner_of(grant);
    let owned: Vec<BindingRef> = observed
        .iter()
        .filter(|b| binding::is_owned(b, &owner, &status.bindings))
        .map(binding::role_binding_ref)
        .collect();

    // One-way: a final grant never gets a binding again; remove any that exist.
    if let Some(phase) = status.phase.filter(|p| p.is_terminal()) {
        return Plan {
            phase,
            reason: None,
            message: String::new(),
            window: None,
            binding: BindingStep::Nothing,
            delete: owned,
            wake_at: None,
            approvals: None,
            review_deadline: None,
            break_glass: false,
            expiring_soon: false,
            required_approvals: None,
            shortened_from: None,
        };
    }

    let ending = |phase, reason, message, window| Plan {
        phase,
        reason: Some(reason),
        message,
        window,
        binding: BindingStep::Nothing,
        delete: union(&binding::plausible(&status.bindings, &owner), &owned),
        wake_at: None,
        approvals: None,
        review_deadline: None,
        break_glass: false,
        expiring_soon: false,
        required_approvals: None,
        shortened_from: None,
    };

    // Revocation comes before every other check: deleting or revoking a grant ends access
    // whatever else is wrong with it.
    if grant.metadata.deletion_timestamp.is_some() {
        let message = "the grant was deleted; access revoked".to_owned();
        return ending(GrantPhase::Revoked, "GrantDeleted", message, None);
    }
    if grant.spec.revoked {
        let message = "access revoked: spec.revoked is true".to_owned();
        return ending(GrantPhase::Revoked, "Revoked", message, None);
    }

    let namespace = grant.namespace().unwrap_or_default();
    if limits.protected_namespaces.contains(&namespace) {
        let message = format!(
            "namespace {namespace} is protected: access there amounts to control of the cluster or of jitrbac itself, so no grant is carried out in it"
        );
        return ending(GrantPhase::Denied, "ProtectedNamespace", message, None);
    }
    // A break-glass grant is cut to the break-glass maximum below; any other grant must
    // fit the policy's maximum.
    let break_glass = grant.spec.break_glass.then_some(facts.policy.break_glass).flatten();
    let operator_limits = limits.clone();
    let limits = match break_glass {
        Some(_) => limits.clone(),
        None => Limits {
            max_duration: facts.policy.max_duration.min(limits.max_duration),
            ..limits.clone()
        },
    };
    // An active grant is held to the operator's own limits here; the policy's maximum is
    // applied to its window below (cutting it rather than refusing it).
    let activated = !status.bindings.is_empty();
    let request = match request::check(&grant.spec, if activated { &operator_limits } else { &limits }) {
        Ok(r) => r,
        Err(refusal) => {
            let phase = match refusal {
                Refusal::Invalid(_) => GrantPhase::Failed,
                Refusal::Denied(_) => GrantPhase::Denied,
            };
            return ending(phase, refusal.reason(), refusal.to_string(), None);
        }
    };
    let (approvals, review_deadline) = match gate::gate(grant, facts, now) {
        Gate::Deny { reason, message } => return ending(GrantPhase::Denied, reason, message, None),
        Gate::Expire { reason, message } => return ending(GrantPhase::Expired, reason, message, None),
        Gate::Revoke { reason, message } => return ending(GrantPhase::Revoked, reason, message, None),
        Gate::AwaitApproval { until, have, need } => {
            return Plan {
                phase: GrantPhase::Pending,
                reason: Some("AwaitingApproval"),
                message: format!(
                    "waiting for approval: {have} of {need} approvals so far; the request expires at {}",
                    format_timestamp(until)
                ),
                window: None,
                binding: BindingStep::Nothing,
                delete: owned,
                wake_at: Some(until),
                approvals: None,
                review_deadline: None,
                break_glass: false,
                expiring_soon: false,
                required_approvals: Some(need),
                shortened_from: None,
            };
        }
        Gate::Open {
            approvals,
            review_deadline,
            ..
        } => (approvals, review_deadline),
    };
    let created_at = grant.metadata.creation_timestamp.as_ref().map(|t| t.0);
    // The start recorded in status or, when that write was lost, on the binding made for it.
    let recorded_start = status
        .starts_at
        .clone()
        .or_else(|| binding::unrecorded_start(observed, &owner));
    let mut window = Window::resolve(&request, recorded_start.as_deref(), created_at, now);
    if let Some(bg) = break_glass {
        window.expires_at = window.expires_at.min(gate::after(window.starts_at, bg.max_duration));
    }
    // Once recorded, the expiry can only come earlier: a policy changed later (break-glass
    // turned off, a longer maximum) never lengthens a grant.
    let recorded_expiry = status.expires_at.as_deref().and_then(|t| parse_timestamp(t).ok());
    if let Some(recorded) = recorded_expiry {
        window.expires_at = window.expires_at.min(recorded).max(window.starts_at);
    }
    // Checked on every reconcile, not only the first: nothing may stretch a grant beyond
    // the limit. A grant already active when a stricter limit appears is cut to it (its
    // holder keeps the access the new policy allows); one not yet active is refused.
    if request::check_window_length(window.starts_at, window.expires_at, &limits).is_err() && activated {
        window.expires_at = gate::after(window.starts_at, limits.max_duration).min(window.expires_at);
    }
    if let Err(denial) = request::check_window_length(window.starts_at, window.expires_at, &limits) {
        return ending(GrantPhase::Denied, denial.reason(), denial.to_string(), Some(window));
    }
    // An active break-glass grant not yet approved must be approved by its deadline (the
    // gate's, once active; from the policy at activation).
    let unreviewed = grant.spec.break_glass && status.approvals.is_empty() && approvals.is_none();
    let review_deadline = match break_glass {
        _ if !unreviewed => None,
        Some(bg) => review_deadline.or(Some(gate::after(window.starts_at, bg.review_deadline))),
        None => review_deadline,
    };

    // Cut short now, by a stricter policy or limit (only an active grant has an expiry
    // recorded).
    let shortened_from = recorded_expiry.filter(|recorded| window.expires_at < *recorded);
    match window.position(now) {
        Position::Ended => {
            // Deleted by the expiry timer: access ended then, on time or not.
            let (still_bound, ended) = match facts.revoked_at {
                Some(at) => (true, at),
                None => (!owned.is_empty(), now),
            };
            let message = ended_message(&window, !status.bindings.is_empty(), still_bound, ended, shortened_from);
            Plan {
                shortened_from,
                ..ending(GrantPhase::Expired, "Expired", message, Some(window))
            }
        }
        Position::Before => Plan {
            phase: GrantPhase::Scheduled,
            reason: Some("Scheduled"),
            message: format!(
                "access begins at {} and ends at {}",
                format_timestamp(window.starts_at),
                format_timestamp(window.expires_at)
            ),
            window: Some(window),
            binding: BindingStep::Nothing,
            delete: owned,
            wake_at: Some(window.starts_at),
            approvals,
            review_deadline: None,
            break_glass: false,
            expiring_soon: false,
            required_approvals: None,
            shortened_from: None,
        },
        Position::Open => {
            let desired = binding::desired_role_binding(&owner, &namespace, &request, &window);
            let step = binding_step(&owner, &status, observed, desired);
            let keep_name = step_name(&step).map(str::to_owned);
            let delete = owned
                .into_iter()
                .filter(|b| Some(&b.name) != keep_name.as_ref())
                .collect();
            let notice_at = notice_time(&window, limits.expiry_notice).filter(|_| status.expiry_notice_at.is_none());
            let wake_at = [
                Some(window.expires_at),
                review_deadline,
                notice_at.filter(|at| *at > now),
            ]
            .into_iter()
            .flatten()
            .min();
            let message = match review_deadline {
                Some(deadline) => format!(
                    "BREAK-GLASS: {}; revoked at {} unless approved by then",
                    active_message(&request, &window),
                    format_timestamp(deadline)
                ),
                None => active_message(&request, &window),
            };
            Plan {
                phase: GrantPhase::Active,
                reason: Some(if break_glass.is_some() { "BreakGlass" } else { "Granted" }),
                message,
                window: Some(window),
                binding: step,
                delete,
                wake_at,
                approvals,
                review_deadline,
                break_glass: break_glass.is_some(),
                expiring_soon: notice_at.is_some_and(|at| at <= now),
                required_approvals: None,
                shortened_from,
            }
        }
    }
}

/// When the `ExpiringSoon` notice of `window` is due: `notice` before its expiry, or
/// `None` when notices are off or the whole window is not longer than `notice`.
fn notice_time(window: &Window, notice: Option<GrantDuration>) -> Option<Timestamp> {
    let notice = notice?.to_signed();
    (window.expires_at.duration_since(window.starts_at) > notice)
        .then(|| window.expires_at.checked_sub(notice).ok())
        .flatten()
}

/// Decides how to reach `desired` given what exists under its name.
///
/// Also used by the IO shell after a create found the name taken: it fetches the binding
/// and asks again.
pub fn binding_step(
    owner: &Owner,
    status: &crate::api::GrantStatus,
    observed: &[RoleBinding],
    desired: RoleBinding,
) -> BindingStep {
    let existing = observed.iter().find(|b| b.metadata.name == desired.metadata.name);
    match existing {
        None => BindingStep::Create {
            recreate: matches!(status.phase, Some(GrantPhase::Active)) && !status.bindings.is_empty(),
            binding: Box::new(desired),
        },
        Some(b) => match binding::relation(b, owner, &status.bindings, &desired) {
            Relation::Owned if binding::drifted(b, &desired) => BindingStep::Repair {
                uid: b.metadata.uid.clone().unwrap_or_default(),
                drift: !binding::only_expiry_moved(b, &desired, status.expires_at.as_deref()),
                binding: Box::new(desired),
            },
            Relation::Owned => BindingStep::Keep(binding::role_binding_ref(b)),
            Relation::Equivalent => BindingStep::Adopt(binding::role_binding_ref(b)),
            Relation::Foreign => BindingStep::Clash {
                name: desired.metadata.name.unwrap_or_default(),
            },
        },
    }
}

/// The grant as an owner of bindings.
pub fn owner_of(grant: &AccessGrant) -> Owner {
    Owner {
        api_version: "jitrbac.io/v1alpha1".to_owned(),
        kind: "AccessGrant".to_owned(),
        namespace: grant.namespace(),
        name: grant.name_any(),
        uid: grant.uid().unwrap_or_default(),
    }
}

fn step_name(step: &BindingStep) -> Option<&str> {
    match step {
        BindingStep::Keep(r) | BindingStep::Adopt(r) => Some(r.name.as_str()),
        BindingStep::Create { binding, .. } | BindingStep::Repair { binding, .. } => binding.metadata.name.as_deref(),
        BindingStep::Clash { name } => Some(name.as_str()),
        BindingStep::Nothing => None,
    }
}

/// What an expiry message says: when access ended, and whether it ended late (no operator
/// was acting at the expiry instant) or never began.
fn ended_message(
    window: &Window,
    was_bound: bool,
    still_bound: bool,
    now: Timestamp,
    shortened_from: Option<Timestamp>,
) -> String {
    let expiry = format_timestamp(window.expires_at);
    if let Some(recorded) = shortened_from.filter(|_| was_bound && still_bound) {
        return format!(
            "access ended at {}: a stricter AccessPolicy or limit ends the grant at {expiry}, \
             before its recorded expiry {}",
            format_timestamp(now),
            format_timestamp(recorded)
        );
    }
    if !was_bound {
        return format!("the grant's window ended at {expiry} before access began; nothing was bound");
    }
    if !still_bound {
        return format!(
            "access expired at {expiry}; the binding was already gone when the grant was reconciled at {} \
             (the sweeper's BindingSwept record has the time it was removed)",
            format_timestamp(now)
        );
    }
    let late = now.duration_since(window.expires_at);
    if late < jiff::SignedDuration::from_secs(1) {
        format!("access ended at {expiry}")
    } else {
        format!(
            "access expired at {expiry}; the binding was removed at {}, {:.1} s late (no operator was acting at the expiry)",
            format_timestamp(now),
            late.as_secs_f64()
        )
    }
}

fn active_message(request: &GrantRequest, window: &Window) -> String {
    format!(
        "{} granted to {} until {}",
        request.role_ref,
        request
            .subjects
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        format_timestamp(window.expires_at)
    )
}

fn union(a: &[BindingRef], b: &[BindingRef]) -> Vec<BindingRef> {
    let mut out = a.to_vec();
    for r in b {
        if !out.iter().any(|o| o.uid == r.uid) {
            out.push(r.clone());
        }
    }
    out
}
