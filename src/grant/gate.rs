//! The gate in front of activation: requester, reason, eligibility, approvals, pending
//! timeout and break-glass. Pure: the facts that need the API server (policies, the
//! requester's permission, the reviews) are gathered by the caller into [`Facts`].

use jiff::Timestamp;

use super::policy::{BreakGlass, Defaults, EffectivePolicy};
use super::review::Tally;
use crate::api::{AccessGrant, ApprovalRecord, GrantDuration, format_timestamp, parse_timestamp};

/// What the API server told the operator about a grant, gathered before planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The rules that apply (matching AccessPolicies, or the operator's defaults).
    pub policy: EffectivePolicy,
    /// Whether the requester may request this role here.
    pub eligibility: Eligibility,
    /// The reviews of the grant, counted.
    pub reviews: Tally,
    /// When this operator's expiry timer deleted the grant's recorded binding, if it did:
    /// the binding is then gone already, and this is when access ended.
    pub revoked_at: Option<Timestamp>,
}

impl Facts {
    /// Self-service with the operator's defaults: no policy, the requester eligible, no
    /// reviews.
    pub fn self_service(defaults: Defaults) -> Self {
        Self {
            policy: EffectivePolicy::from_defaults(defaults),
            eligibility: Eligibility::Eligible,
            reviews: Tally::default(),
            revoked_at: None,
        }
    }
}

/// The answer of the eligibility check (SubjectAccessReview for the `request` verb).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eligibility {
    /// The requester may request the role in the namespace.
    Eligible,
    /// They may not; the message names the missing permission.
    NotEligible(String),
    /// Not asked (the grant is past activation).
    Unchecked,
}

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Go ahead (activate, or stay active).
    Open {
        /// Break-glass limits, for a break-glass grant.
        break_glass: Option<BreakGlass>,
        /// Approvals to record now (they just became sufficient, or arrived for an
        /// active break-glass grant).
        approvals: Option<Vec<ApprovalRecord>>,
        /// For an unreviewed break-glass grant: when an approval must have arrived by.
        review_deadline: Option<Timestamp>,
    },
    /// Wait for approvals until `until`.
    AwaitApproval {
        /// Deadline (creation + pending timeout).
        until: Timestamp,
        /// Approvals that count so far.
        have: usize,
        /// Approvals needed.
        need: u8,
    },
    /// Refused for good: phase `Denied`.
    Deny {
        /// CamelCase reason.
        reason: &'static str,
        /// Detail.
        message: String,
    },
    /// Waited too long for approval: phase `Expired`.
    Expire {
        /// CamelCase reason.
        reason: &'static str,
        /// Detail.
        message: String,
    },
    /// An active break-glass grant whose review failed: phase `Revoked`.
    Revoke {
        /// CamelCase reason.
        reason: &'static str,
        /// Detail.
        message: String,
    },
}

/// Decides whether `grant` may become (or stay) active at `now`, given `facts`.
///
/// Before the grant's first activation everything is checked: a stamped requester, the
/// reason the policy asks for, the requester's eligibility, then break-glass or the
/// approvals (a counted denial ends the grant; too few approvals make it wait until the
/// pending timeout). After activation only a break-glass grant is still gated: it is
/// revoked if denied, or if no approval has arrived by its review deadline.
pub fn gate(grant: &AccessGrant, facts: &Facts, now: Timestamp) -> Gate {
    let status = grant.status.clone().unwrap_or_default();
    let activated = !status.bindings.is_empty();
    let policy = &facts.policy;
    let break_glass = grant.spec.break_glass.then_some(policy.break_glass).flatten();

    if activated {
        // An active break-glass grant stays on probation until approved, whatever happens
        // to the policies meanwhile: its deadline is the one recorded at activation.
        if !grant.spec.break_glass || !status.approvals.is_empty() {
            return open(break_glass, None, None);
        }
        if let Some((reviewer, review, comment)) = &facts.reviews.denial {
            return Gate::Revoke {
                reason: "DeniedByReviewer",
                message: denial_message(reviewer, review, comment.as_deref()),
            };
        }
        // As many approvals as the policy asks of an ordinary grant, and at least one.
        let need = usize::from(policy.approvals.max(1));
        let started = status
            .starts_at
            .as_deref()
            .and_then(|s| parse_timestamp(s).ok())
            .unwrap_or(now);
        // Without a recorded deadline or a policy allowing break-glass, none is granted.
        let deadline = status
            .review_deadline
            .as_deref()
            .and_then(|s| parse_timestamp(s).ok())
            .unwrap_or_else(|| break_glass.map_or(started, |bg| after(started, bg.review_deadline)));
        // Approvals given after the deadline come too late, even if seen before the revocation.
        let in_time = given_by(&facts.reviews.approvals, deadline);
        if in_time.len() >= need {
            return open(break_glass, Some(in_time), None);
        }
        if now >= deadline {
            return Gate::Revoke {
                reason: "BreakGlassNotReviewed",
                message: format!(
                    "break-glass access was not approved by {} ({} of {need} approvals); revoked",
                    format_timestamp(deadline),
                    in_time.len()
                ),
            };
        }
        return open(break_glass, None, Some(deadline));
    }

    let Some(requester) = &grant.spec.requester else {
        return deny(
            "NoRequester",
            "no requester was recorded for this grant: the jitrbac admission webhook did not run when it was created"
                .to_owned(),
        );
    };
    let reason = grant.spec.reason.as_deref().unwrap_or_default().trim();
    if policy.require_reason && reason.is_empty() {
        return deny(
            "ReasonRequired",
            format!("a reason is required by policy {}", policy.policies.join(", ")),
        );
    }
    for pattern in &policy.reason_patterns {
        let matched = regex::Regex::new(pattern).is_ok_and(|re| re.is_match(reason));
        if !matched {
            return deny(
                "ReasonMismatch",
                format!(
                    "the reason must match {pattern:?} (policy {})",
                    policy.policies.join(", ")
                ),
            );
        }
    }
    if let Eligibility::NotEligible(message) = &facts.eligibility {
        return deny(
            "NotEligible",
            format!("{requester} may not request this role here: {message}"),
        );
    }
    if grant.spec.break_glass {
        return match break_glass {
            Some(bg) => open(Some(bg), None, None),
            None => deny(
                "BreakGlassNotAllowed",
                "no AccessPolicy allows break-glass for this role here".to_owned(),
            ),
        };
    }
    // Once a grant waits for approval, a policy deleted or relaxed meanwhile does not lower
    // what it needs.
    let need = policy.approvals.max(status.required_approvals.unwrap_or(0));
    if need == 0 || status.approvals.len() >= usize::from(need) {
        return open(None, None, None);
    }
    if let Some((reviewer, review, comment)) = &facts.reviews.denial {
        return deny("DeniedByReviewer", denial_message(reviewer, review, comment.as_deref()));
    }
    let created = grant.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let until = after(created, policy.pending_timeout);
    // Only approvals given before the request lapsed count (one may be seen late, when no
    // operator was acting).
    let in_time = given_by(&facts.reviews.approvals, until);
    if in_time.len() >= usize::from(need) {
        return open(None, Some(in_time), None);
    }
    if now >= until {
        return Gate::Expire {
            reason: "PendingTimeout",
            message: format!("not approved by {}; the request expired", format_timestamp(until)),
        };
    }
    Gate::AwaitApproval {
        until,
        have: facts.reviews.approvals.len(),
        need,
    }
}

/// The approvals among `approvals` given (their review created) before `deadline`.
fn given_by(approvals: &[ApprovalRecord], deadline: Timestamp) -> Vec<ApprovalRecord> {
    approvals
        .iter()
        .filter(|a| parse_timestamp(&a.time).is_ok_and(|t| t < deadline))
        .cloned()
        .collect()
}

fn open(
    break_glass: Option<BreakGlass>,
    approvals: Option<Vec<ApprovalRecord>>,
    review_deadline: Option<Timestamp>,
) -> Gate {
    Gate::Open {
        break_glass,
        approvals,
        review_deadline,
    }
}

fn deny(reason: &'static str, message: String) -> Gate {
    Gate::Deny { reason, message }
}

fn denial_message(reviewer: &str, review: &str, comment: Option<&str>) -> String {
    match comment {
        Some(c) => format!("denied by {reviewer} (GrantReview {review}): {c}"),
        None => format!("denied by {reviewer} (GrantReview {review})"),
    }
}

/// `at + d`, saturating.
pub fn after(at: Timestamp, d: GrantDuration) -> Timestamp {
    at.saturating_add(d.to_signed()).unwrap_or(Timestamp::MAX)
}
