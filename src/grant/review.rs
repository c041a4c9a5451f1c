//! Counting GrantReviews for a grant. Pure, except that whether a reviewer may approve
//! the role is asked of the API server by the caller (see [`screen`] and [`tally`]).

use jiff::Timestamp;
use kube::ResourceExt;

use crate::api::{AccessGrant, ApprovalRecord, Decision, GrantReview, Identity, format_timestamp};

/// A review that does not count, and why (for a Warning event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// Name of the GrantReview.
    pub review: String,
    /// Why it does not count.
    pub reason: String,
}

/// The reviews of one grant that passed [`screen`], with whether each reviewer may
/// approve the grant's role in its namespace (the caller asks the API server).
#[derive(Debug, Clone)]
pub struct Checked {
    /// The review.
    pub review: GrantReview,
    /// Whether the reviewer has the `approve` verb on the role in the namespace.
    pub may_approve: bool,
}

/// What the reviews of a grant add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Approving reviews that count, one per reviewer (the earliest), oldest first.
    pub approvals: Vec<ApprovalRecord>,
    /// The first denying review that counts, if any: `(reviewer, review, comment)`.
    pub denial: Option<(String, String, Option<String>)>,
    /// Reviews that do not count, and why.
    pub ignored: Vec<Ignored>,
}

/// Splits the reviews naming `grant` into those worth a permission check and those that
/// can never count: written for a different grant of the same name (uid mismatch), with
/// no stamped reviewer, by the requester themselves, or with an unknown decision.
pub fn screen<'a>(grant: &AccessGrant, reviews: &'a [GrantReview]) -> (Vec<&'a GrantReview>, Vec<Ignored>) {
    let uid = grant.uid().unwrap_or_default();
    let requester = grant.spec.requester.as_ref();
    let mut candidates = Vec::new();
    let mut ignored = Vec::new();
    for r in reviews.iter().filter(|r| r.spec.grant_ref.name == grant.name_any()) {
        let why = if r.spec.grant_ref.uid != uid {
            Some("it names an earlier grant of the same name (uid differs)")
        } else if r.spec.reviewer.is_none() {
            Some("it has no stamped reviewer (the admission webhook did not run)")
        } else if requester
            .zip(r.spec.reviewer.as_ref())
            .is_some_and(|(a, b)| a.same_person(b))
        {
            Some("the requester cannot review their own grant")
        } else if r.spec.decision == Decision::Unknown {
            Some("its decision is neither Approve nor Deny")
        } else {
            None
        };
        match why {
            Some(reason) => ignored.push(Ignored {
                review: r.name_any(),
                reason: reason.to_owned(),
            }),
            None => candidates.push(r),
        }
    }
    (candidates, ignored)
}

/// Adds up checked reviews: approvals by distinct reviewers who may approve, and the
/// first denial by a reviewer who may approve. `ignored` (from [`screen`]) is carried over
/// and extended with reviews by people without the `approve` permission.
pub fn tally(checked: Vec<Checked>, mut ignored: Vec<Ignored>) -> Tally {
    let mut sorted = checked;
    sorted.sort_by_key(|c| (c.review.creation_timestamp().map(|t| t.0), c.review.name_any()));
    let mut tally = Tally::default();
    for c in sorted {
        let reviewer = c.review.spec.reviewer.clone().unwrap_or_default();
        if !c.may_approve {
            ignored.push(Ignored {
                review: c.review.name_any(),
                reason: format!(
                    "{} may not approve this role here (needs the approve verb)",
                    reviewer.username
                ),
            });
            continue;
        }
        match c.review.spec.decision {
            Decision::Approve if !tally.approvals.iter().any(|a| a.reviewer == reviewer.username) => {
                tally.approvals.push(ApprovalRecord {
                    reviewer: reviewer.username.clone(),
                    review: c.review.name_any(),
                    time: format_timestamp(c.review.creation_timestamp().map_or(Timestamp::UNIX_EPOCH, |t| t.0)),
                });
            }
            Decision::Deny if tally.denial.is_none() => {
                tally.denial = Some((
                    reviewer.username.clone(),
                    c.review.name_any(),
                    c.review.spec.comment.clone(),
                ));
            }
            _ => {}
        }
    }
    tally.ignored = ignored;
    tally
}

/// The reviewer identities of `checked` that need a permission check, deduplicated.
pub fn reviewers(candidates: &[&GrantReview]) -> Vec<Identity> {
    let mut out: Vec<Identity> = Vec::new();
    for r in candidates {
        if let Some(id) = &r.spec.reviewer
            && !out.contains(id)
        {
            out.push(id.clone());
        }
    }
    out
}
