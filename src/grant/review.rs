//! Counting GrantReviews for a grant. Pure, except that whether a reviewer may approve
//! the role is asked of the API server by the caller (see [`screen`] and [`tally`]).

use jiff::Timestamp;
use kube::ResourceExt;

use crate::api::{
    AccessGrant, ApprovalRecord, Decision, GrantReview, Identity, Subject, SubjectKind, format_timestamp,
};

/// A review that does not count, and why (for a Warning event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// Name of the GrantReview.
    pub review: String,
    /// Its stamped reviewer's user name (empty when none was stamped).
    pub reviewer: String,
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

/// Whether `who` is among `subjects`: named as a User, a member of a named Group, or the
/// named ServiceAccount (authenticated as `system:serviceaccount:<namespace>:<name>`, the
/// Kubernetes ServiceAccount user name).
fn receives(who: &Identity, subjects: &[Subject]) -> bool {
    subjects.iter().any(|s| match s.kind {
        SubjectKind::User => s.name == who.username,
        SubjectKind::Group => who.groups.contains(&s.name),
        SubjectKind::ServiceAccount => {
            who.username
                == format!(
                    "system:serviceaccount:{}:{}",
                    s.namespace.as_deref().unwrap_or_default(),
                    s.name
                )
        }
        SubjectKind::Unknown => false,
    })
}

/// Splits the reviews naming `grant` into those worth a permission check and those that
/// can never count: written for a different grant of the same name (uid mismatch), with
/// no stamped reviewer, by the requester themselves, by someone the grant would give
/// access to (four eyes: nobody approves access for themselves), or with an unknown
/// decision.
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
        } else if r
            .spec
            .reviewer
            .as_ref()
            .is_some_and(|reviewer| receives(reviewer, &grant.spec.subjects))
        {
            Some("the reviewer would receive this access (as a user, group or ServiceAccount the grant names)")
        } else if r.spec.decision == Decision::Unknown {
            Some("its decision is neither Approve nor Deny")
        } else {
            None
        };
        match why {
            Some(reason) => ignored.push(Ignored {
                review: r.name_any(),
                reviewer: r.spec.reviewer.as_ref().map(|i| i.username.clone()).unwrap_or_default(),
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
                reviewer: reviewer.username.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{GrantReference, GrantReviewSpec};

    fn grant(subjects: serde_json::Value) -> AccessGrant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "jitrbac.io/v1alpha1",
            "kind": "AccessGrant",
            "metadata": {"name": "g", "namespace": "ns", "uid": "u1"},
            "spec": {
                "subjects": subjects,
                "roleRef": {"kind": "ClusterRole", "name": "edit"},
                "duration": "1h",
                "requester": {"username": "alice"}
            }
        }))
        .expect("grant")
    }

    fn review(name: &str, username: &str, groups: &[&str]) -> GrantReview {
        GrantReview::new(
            name,
            GrantReviewSpec {
                grant_ref: GrantReference {
                    name: "g".into(),
                    uid: "u1".into(),
                },
                decision: Decision::Approve,
                comment: None,
                reviewer: Some(Identity {
                    username: username.into(),
                    groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                    ..Identity::default()
                }),
            },
        )
    }

    #[test]
    fn nobody_approves_access_for_themselves() {
        let g = grant(serde_json::json!([
            {"kind": "User", "name": "bob"},
            {"kind": "Group", "name": "oncall"},
            {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}
        ]));
        let reviews = [
            review("by-alice", "alice", &[]),
            review("by-bob", "bob", &[]),
            review("by-oncall-member", "carol", &["oncall"]),
            review("by-the-sa", "system:serviceaccount:ci:deployer", &[]),
            review("by-dave", "dave", &["leads"]),
        ];
        let (candidates, ignored) = screen(&g, &reviews);
        assert_eq!(candidates.iter().map(|r| r.name_any()).collect::<Vec<_>>(), ["by-dave"]);
        let why = |name: &str| ignored.iter().find(|i| i.review == name).map(|i| i.reason.clone());
        assert_eq!(
            why("by-alice").as_deref(),
            Some("the requester cannot review their own grant")
        );
        for name in ["by-bob", "by-oncall-member", "by-the-sa"] {
            assert!(
                why(name).is_some_and(|r| r.starts_with("the reviewer would receive this access")),
                "{name}: {:?}",
                why(name)
            );
        }
    }
}
