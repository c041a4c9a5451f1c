//! Lifecycle tests of the planner and settle together, with an injected clock.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::ObjectMeta;

use super::*;
use crate::api::{
    AccessGrant, AccessGrantSpec, GrantDuration, GrantPhase, Identity, RoleKind, RoleRef, Subject, SubjectKind,
};

const T0: &str = "2026-11-29T12:00:00Z";

fn at(offset_secs: i64) -> Timestamp {
    T0.parse::<Timestamp>().expect("valid") + SignedDuration::from_secs(offset_secs)
}

fn facts() -> Facts {
    Facts::self_service(policy::Defaults {
        max_duration: GrantDuration::WEEK,
        pending_timeout: GrantDuration::DAY,
    })
}

fn grant(duration: Option<&str>, starts_at: Option<&str>, expires_at: Option<&str>) -> AccessGrant {
    let mut g = AccessGrant::new(
        "alice-edit",
        AccessGrantSpec {
            subjects: vec![Subject {
                kind: SubjectKind::User,
                name: "alice".into(),
                namespace: None,
                api_group: None,
            }],
            role_ref: RoleRef {
                kind: RoleKind::ClusterRole,
                name: "edit".into(),
                api_group: None,
            },
            duration: duration.map(Into::into),
            expires_at: expires_at.map(Into::into),
            starts_at: starts_at.map(Into::into),
            reason: Some("INC-1234".into()),
            revoked: false,
            break_glass: false,
            requester: Some(Identity {
                username: "requester".into(),
                ..Identity::default()
            }),
        },
    );
    g.metadata = ObjectMeta {
        name: Some("alice-edit".into()),
        namespace: Some("payments".into()),
        uid: Some("grant-uid".into()),
        generation: Some(1),
        creation_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(0))),
        ..ObjectMeta::default()
    };
    g
}

/// Runs one step: plan, pretend the IO shell carried it out as `outcome_for` says, settle,
/// and store the new status on the grant.
fn step(
    g: &mut AccessGrant,
    observed: &[RoleBinding],
    now: Timestamp,
    outcome_for: impl Fn(&Plan) -> Outcome,
) -> (Plan, Settled) {
    let p = plan(g, observed, now, &Limits::default(), &facts());
    let outcome = outcome_for(&p);
    let s = settle(g, &p, &outcome, now);
    g.status = Some(s.status.clone());
    (p, s)
}

/// The outcome the API server gives when everything works; created bindings get `uid`.
fn succeed(uid: &'static str) -> impl Fn(&Plan) -> Outcome {
    move |p: &Plan| match &p.binding {
        BindingStep::Nothing => Outcome::Applied {
            binding: None,
            change: Change::None,
        },
        BindingStep::Keep(r) => Outcome::Applied {
            binding: Some(r.clone()),
            change: Change::None,
        },
        BindingStep::Adopt(r) => Outcome::Applied {
            binding: Some(r.clone()),
            change: Change::Adopted,
        },
        BindingStep::Create { binding, recreate } => Outcome::Applied {
            binding: Some(existing(binding, uid)).as_ref().map(binding::role_binding_ref),
            change: if *recreate { Change::Recreated } else { Change::Created },
        },
        BindingStep::Repair { binding, uid, drift } => Outcome::Applied {
            binding: Some(binding::role_binding_ref(&existing(binding, uid))),
            change: if *drift { Change::Repaired } else { Change::Updated },
        },
        BindingStep::Clash { name } => Outcome::Blocked(Blocker {
            reason: "NameClash",
            message: format!("{name} exists"),
            stalled: true,
        }),
    }
}

fn existing(desired: &RoleBinding, uid: &str) -> RoleBinding {
    let mut b = desired.clone();
    b.metadata.uid = Some(uid.into());
    b
}

fn created_binding(p: &Plan, uid: &str) -> RoleBinding {
    match &p.binding {
        BindingStep::Create { binding, .. } => existing(binding, uid),
        other => panic!("expected a create, got {other:?}"),
    }
}

fn actions(s: &Settled) -> Vec<&'static str> {
    s.transitions.iter().map(|t| t.action).collect()
}

#[test]
fn duration_grant_is_granted_kept_then_expired_at_the_exact_instant() {
    let mut g = grant(Some("20s"), None, None);
    let (p, s) = step(&mut g, &[], at(0), succeed("rb-1"));
    assert_eq!(p.phase, GrantPhase::Active);
    assert_eq!(p.wake_at, Some(at(20)), "requeue at the exact expiry");
    assert_eq!(actions(&s), ["Granted"]);
    let status = g.status.clone().unwrap_or_default();
    assert_eq!(status.expires_at.as_deref(), Some("2026-11-29T12:00:20Z"));
    assert_eq!(status.bindings[0].uid, "rb-1");
    assert_eq!(status.conditions[0].status, "True");
    let rb = created_binding(&p, "rb-1");

    let (p, s) = step(&mut g, std::slice::from_ref(&rb), at(10), succeed("unused"));
    assert!(matches!(p.binding, BindingStep::Keep(_)));
    assert!(s.transitions.is_empty());

    let (p, s) = step(&mut g, std::slice::from_ref(&rb), at(20), succeed("unused"));
    assert_eq!(p.phase, GrantPhase::Expired);
    assert_eq!(p.delete.iter().map(|b| b.uid.as_str()).collect::<Vec<_>>(), ["rb-1"]);
    assert_eq!(actions(&s), ["Expired"]);
    assert_eq!(s.status.ended_at.as_deref(), Some("2026-11-29T12:00:20Z"));
    assert_eq!(s.status.timeline.len(), 2);
}

#[test]
fn final_phases_never_create_a_binding_again() {
    let mut g = grant(Some("20s"), None, None);
    let (p, _) = step(&mut g, &[], at(0), succeed("rb-1"));
    let rb = created_binding(&p, "rb-1");
    step(&mut g, &[], at(30), succeed("unused"));
    assert_eq!(g.status.as_ref().and_then(|s| s.phase), Some(GrantPhase::Expired));
    // The binding re-appears (stale cache, someone restored it): it is deleted, never kept.
    let (p, s) = step(&mut g, std::slice::from_ref(&rb), at(31), succeed("unused"));
    assert_eq!(p.phase, GrantPhase::Expired);
    assert_eq!(p.binding, BindingStep::Nothing);
    assert_eq!(p.delete.len(), 1);
    assert!(s.transitions.is_empty());
    // Even with a start time recorded in the future and a fresh clock, nothing comes back.
    let (p, _) = step(&mut g, &[], at(-100), succeed("unused"));
    assert_eq!(p.binding, BindingStep::Nothing);
    assert_eq!(p.wake_at, None);
}

#[test]
fn scheduled_grant_waits_for_its_start_then_counts_duration_from_it() {
    let mut g = grant(Some("1h"), Some("2026-11-29T13:00:00Z"), None);
    let (p, s) = step(&mut g, &[], at(0), succeed("rb-1"));
    assert_eq!(p.phase, GrantPhase::Scheduled);
    assert_eq!(p.binding, BindingStep::Nothing);
    assert_eq!(p.wake_at, Some(at(3600)));
    assert_eq!(actions(&s), ["Scheduled"]);
    let (p, s) = step(&mut g, &[], at(3600), succeed("rb-1"));
    assert_eq!(p.phase, GrantPhase::Active);
    assert_eq!(
        p.wake_at,
        Some(at(7200 - 600)),
        "the expiry notice, ten minutes before 14:00"
    );
    assert_eq!(actions(&s), ["Granted"]);
}

#[test]
fn window_that_passed_while_the_operator_was_down_expires_without_a_binding() {
    let mut g = grant(None, Some("2026-11-29T10:00:00Z"), Some("2026-11-29T11:00:00Z"));
    let (p, s) = step(&mut g, &[], at(0), succeed("rb-1"));
    assert_eq!(p.phase, GrantPhase::Expired);
    assert_eq!(p.binding, BindingStep::Nothing);
    assert_eq!(actions(&s), ["Expired"]);
    assert_eq!(s.status.ended_at, None, "access never began");
}

#[test]
fn deleted_binding_is_recreated_and_edited_binding_repaired_as_drift() {
    let mut g = grant(Some("1h"), None, None);
    let (p, _) = step(&mut g, &[], at(0), succeed("rb-1"));
    let rb = created_binding(&p, "rb-1");

    let (p, s) = step(&mut g, &[], at(10), succeed("rb-2"));
    assert!(matches!(p.binding, BindingStep::Create { recreate: true, .. }));
    assert_eq!(actions(&s), ["DriftRepaired"]);
    assert_eq!(s.status.bindings[0].uid, "rb-2");
    assert_eq!(
        s.status.expires_at.as_deref(),
        Some("2026-11-29T13:00:00Z"),
        "window unchanged"
    );

    let mut edited = existing(&rb, "rb-2");
    edited
        .subjects
        .get_or_insert_with(Vec::new)
        .push(binding::to_rbac_subject(&Subject {
            kind: SubjectKind::User,
            name: "mallory".into(),
            namespace: None,
            api_group: Some("rbac.authorization.k8s.io".into()),
        }));
    let (p, s) = step(&mut g, &[edited], at(20), succeed("unused"));
    assert!(matches!(&p.binding, BindingStep::Repair { uid, .. } if uid == "rb-2"));
    assert_eq!(actions(&s), ["DriftRepaired"]);
}

#[test]
fn a_foreign_binding_with_the_chosen_name_is_left_alone() {
    let mut g = grant(Some("1h"), None, None);
    let p = plan(&g, &[], at(0), &Limits::default(), &facts());
    let mut foreign = created_binding(&p, "someone-elses");
    foreign.metadata.owner_references = None;
    let (p, s) = step(&mut g, &[foreign], at(0), succeed("unused"));
    assert!(matches!(p.binding, BindingStep::Clash { .. }));
    assert!(p.delete.is_empty());
    assert_eq!(s.status.phase, Some(GrantPhase::Pending));
    assert_eq!(s.status.conditions[0].reason, "NameClash");
    assert_eq!(s.status.conditions[0].status, "False");
    assert!(
        s.status
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True")
    );
}

#[test]
fn an_unrecorded_identical_binding_is_adopted() {
    let mut g = grant(Some("1h"), None, None);
    let p = plan(&g, &[], at(0), &Limits::default(), &facts());
    let left_behind = created_binding(&p, "rb-1");
    let (p, s) = step(&mut g, &[left_behind], at(0), succeed("unused"));
    assert!(matches!(p.binding, BindingStep::Adopt(_)));
    assert_eq!(s.status.bindings[0].uid, "rb-1");
    assert_eq!(actions(&s), ["Granted"]);
}

#[test]
fn a_binding_whose_status_write_was_lost_is_adopted_later_with_its_window() {
    // The binding was made at 0 s, but the status write failed (a conflict, a crash);
    // the grant is planned again 5 s later.
    let mut g = grant(Some("1h"), None, None);
    let p = plan(&g, &[], at(0), &Limits::default(), &facts());
    let made = created_binding(&p, "rb-1");
    let (p, s) = step(&mut g, &[made], at(5), succeed("unused"));
    assert!(
        matches!(p.binding, BindingStep::Adopt(_)),
        "not a stranger's: {:?}",
        p.binding
    );
    assert_eq!(
        s.status.starts_at.as_deref(),
        Some("2026-11-29T12:00:00Z"),
        "the binding's start"
    );
    assert_eq!(s.status.expires_at.as_deref(), Some("2026-11-29T13:00:00Z"));
    assert_eq!(s.status.bindings[0].uid, "rb-1");
    // And it is deleted at the expiry like any other.
    let rb = existing(&created_or_adopted(&p), "rb-1");
    let (p, _) = step(&mut g, &[rb], at(3600), succeed("unused"));
    assert_eq!(p.phase, GrantPhase::Expired);
    assert_eq!(p.delete.len(), 1);
}

#[test]
fn a_look_alike_with_a_foreign_owner_is_still_a_clash() {
    let mut g = grant(Some("1h"), None, None);
    let p = plan(&g, &[], at(0), &Limits::default(), &facts());
    let mut fake = created_binding(&p, "rb-x");
    if let Some(o) = fake.metadata.owner_references.as_mut() {
        o[0].uid = "someone-else".into();
    }
    let (p, _) = step(&mut g, &[fake], at(5), succeed("unused"));
    assert!(matches!(p.binding, BindingStep::Clash { .. }), "{:?}", p.binding);
}

/// The binding a plan creates or adopts, as desired.
fn created_or_adopted(p: &Plan) -> RoleBinding {
    match &p.binding {
        BindingStep::Create { binding, .. } => (**binding).clone(),
        BindingStep::Adopt(r) => RoleBinding {
            metadata: ObjectMeta {
                name: Some(r.name.clone()),
                namespace: r.namespace.clone(),
                uid: Some(r.uid.clone()),
                ..ObjectMeta::default()
            },
            ..RoleBinding::default()
        },
        other => panic!("expected a create or an adoption, got {other:?}"),
    }
}

#[test]
fn refusals_are_final_with_their_reason() {
    let mut g = grant(Some("30d"), None, None);
    let (p, s) = step(&mut g, &[], at(0), succeed("rb-1"));
    assert_eq!(p.phase, GrantPhase::Denied);
    assert_eq!(p.binding, BindingStep::Nothing);
    assert_eq!(s.transitions[0].reason, "DurationTooLong");
    assert!(s.transitions[0].warning);
    let (p, _) = step(&mut g, &[], at(1), succeed("rb-1"));
    assert_eq!(p.binding, BindingStep::Nothing);

    let mut g = grant(Some("forever"), None, None);
    let (p, s) = step(&mut g, &[], at(0), succeed("rb-1"));
    assert_eq!(p.phase, GrantPhase::Failed);
    assert_eq!(s.status.conditions[0].reason, "InvalidDuration");
}

#[test]
fn expires_at_far_away_without_start_is_denied_as_too_long() {
    let mut g = grant(None, None, Some("2026-12-29T12:00:00Z"));
    let (p, _) = step(&mut g, &[], at(0), succeed("rb-1"));
    assert_eq!(p.phase, GrantPhase::Denied);
}

#[test]
fn conditions_track_generation_and_keep_transition_times() {
    let mut g = grant(Some("1h"), None, None);
    let (p, _) = step(&mut g, &[], at(0), succeed("rb-1"));
    let rb = created_binding(&p, "rb-1");
    g.metadata.generation = Some(2);
    let (_, s) = step(&mut g, &[rb], at(5), succeed("unused"));
    let ready = &s.status.conditions[0];
    assert_eq!(ready.observed_generation, Some(2));
    assert_eq!(s.status.observed_generation, Some(2));
    assert_eq!(ready.last_transition_time.0, at(0));
}

#[test]
fn timeline_is_bounded() {
    let mut g = grant(Some("1h"), None, None);
    // Alternate between a blocked binding (Pending) and success (Active) so that every
    // second step is a Granted transition: 20 of them.
    for i in 0..40 {
        let p = plan(&g, &[], at(i), &Limits::default(), &facts());
        let o = if i % 2 == 0 {
            succeed("rb-1")(&p)
        } else {
            Outcome::Blocked(Blocker {
                reason: "RoleNotFound",
                message: String::new(),
                stalled: false,
            })
        };
        let s = settle(&g, &p, &o, at(i));
        g.status = Some(s.status);
    }
    let timeline = g.status.map(|s| s.timeline).unwrap_or_default();
    assert_eq!(timeline.len(), crate::api::TIMELINE_LIMIT);
    assert_eq!(
        timeline.last().map(|t| t.time.as_str()),
        Some("2026-11-29T12:00:38Z"),
        "newest kept"
    );
}

#[test]
fn revoking_removes_the_binding_at_once_and_is_final() {
    let mut g = grant(Some("1h"), None, None);
    let (p, _) = step(&mut g, &[], at(0), succeed("rb-1"));
    let rb = created_binding(&p, "rb-1");
    g.spec.revoked = true;
    let (p, s) = step(&mut g, std::slice::from_ref(&rb), at(5), succeed("unused"));
    assert_eq!(p.phase, GrantPhase::Revoked);
    assert_eq!(p.delete.iter().map(|b| b.uid.as_str()).collect::<Vec<_>>(), ["rb-1"]);
    assert_eq!(actions(&s), ["Revoked"]);
    assert_eq!(s.status.ended_at.as_deref(), Some("2026-11-29T12:00:05Z"));
    // Even if the flag could be cleared, the phase stays final.
    g.spec.revoked = false;
    let (p, s) = step(&mut g, &[], at(6), succeed("unused"));
    assert_eq!((p.phase, p.binding), (GrantPhase::Revoked, BindingStep::Nothing));
    assert!(s.transitions.is_empty());
}

#[test]
fn deleting_an_active_grant_is_a_revocation() {
    let mut g = grant(Some("1h"), None, None);
    let (p, _) = step(&mut g, &[], at(0), succeed("rb-1"));
    let rb = created_binding(&p, "rb-1");
    g.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(5)));
    let (p, s) = step(&mut g, &[rb], at(5), succeed("unused"));
    assert_eq!(p.phase, GrantPhase::Revoked);
    assert_eq!(p.delete.len(), 1);
    assert_eq!(s.transitions[0].reason, "GrantDeleted");
}

#[test]
fn deleting_a_final_grant_announces_nothing() {
    let mut g = grant(Some("10s"), None, None);
    step(&mut g, &[], at(0), succeed("rb-1"));
    step(&mut g, &[], at(10), succeed("unused"));
    g.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(20)));
    let (p, s) = step(&mut g, &[], at(20), succeed("unused"));
    assert_eq!(p.phase, GrantPhase::Expired);
    assert!(p.delete.is_empty() && s.transitions.is_empty());
}

#[test]
fn revoking_a_scheduled_grant_never_grants() {
    let mut g = grant(Some("1h"), Some("2026-11-29T13:00:00Z"), None);
    step(&mut g, &[], at(0), succeed("rb-1"));
    g.spec.revoked = true;
    let (p, s) = step(&mut g, &[], at(10), succeed("rb-1"));
    assert_eq!((p.phase, p.binding), (GrantPhase::Revoked, BindingStep::Nothing));
    assert_eq!(s.status.ended_at, None);
    let (p, _) = step(&mut g, &[], at(3600), succeed("rb-1"));
    assert_eq!(p.binding, BindingStep::Nothing, "its start passing changes nothing");
}

fn approval_facts(approvals: u8, reviews: &[&str], denial: Option<&str>) -> Facts {
    let mut f = facts();
    f.policy.policies = vec!["needs-approval".into()];
    f.policy.approvals = approvals;
    f.policy.pending_timeout = GrantDuration::HOUR;
    f.reviews.approvals = reviews
        .iter()
        .map(|r| crate::api::ApprovalRecord {
            reviewer: (*r).into(),
            review: format!("review-by-{r}"),
            time: T0.into(),
        })
        .collect();
    f.reviews.denial = denial.map(|d| (d.to_owned(), format!("review-by-{d}"), Some("no".to_owned())));
    f
}

fn step_with(g: &mut AccessGrant, f: &Facts, now: Timestamp, uid: &'static str) -> (Plan, Settled) {
    let p = plan(g, &[], now, &Limits::default(), f);
    let outcome = succeed(uid)(&p);
    let s = settle(g, &p, &outcome, now);
    g.status = Some(s.status.clone());
    (p, s)
}

#[test]
fn a_grant_needing_two_approvals_waits_for_both_then_activates() {
    let mut g = grant(Some("1h"), None, None);
    let (p, s) = step_with(&mut g, &approval_facts(2, &[], None), at(0), "rb-1");
    assert_eq!(
        (p.phase, p.binding.clone()),
        (GrantPhase::Pending, BindingStep::Nothing)
    );
    assert_eq!(p.wake_at, Some(at(3600)), "woken at the pending timeout");
    assert_eq!(actions(&s), ["ApprovalRequested"]);
    assert_eq!(s.status.conditions[0].reason, "AwaitingApproval");

    let (p, s) = step_with(&mut g, &approval_facts(2, &["bob"], None), at(10), "rb-1");
    assert_eq!(p.phase, GrantPhase::Pending, "one approval is not enough");
    assert!(s.transitions.is_empty());
    assert!(p.message.contains("1 of 2"), "{}", p.message);

    let (p, s) = step_with(&mut g, &approval_facts(2, &["bob", "carol"], None), at(20), "rb-1");
    assert_eq!(p.phase, GrantPhase::Active);
    assert_eq!(actions(&s), ["Approved", "Granted"]);
    assert_eq!(s.status.approvals.len(), 2);
    assert_eq!(
        s.status.expires_at.as_deref(),
        Some("2026-11-29T13:00:20Z"),
        "duration counts from approval"
    );
}

#[test]
fn a_denial_ends_the_request_and_silence_expires_it() {
    let mut g = grant(Some("1h"), None, None);
    step_with(&mut g, &approval_facts(1, &[], None), at(0), "rb-1");
    let (p, s) = step_with(&mut g, &approval_facts(1, &["bob"], Some("carol")), at(5), "rb-1");
    assert_eq!(p.phase, GrantPhase::Denied);
    assert_eq!(s.transitions[0].reason, "DeniedByReviewer");
    assert!(s.transitions[0].message.contains("carol"));

    let mut g = grant(Some("1h"), None, None);
    step_with(&mut g, &approval_facts(1, &[], None), at(0), "rb-1");
    let (p, s) = step_with(&mut g, &approval_facts(1, &[], None), at(3600), "rb-1");
    assert_eq!(p.phase, GrantPhase::Expired);
    assert_eq!(s.transitions[0].reason, "PendingTimeout");
}

#[test]
fn the_gate_refuses_missing_requesters_ineligible_requesters_and_bad_reasons() {
    let mut g = grant(Some("1h"), None, None);
    g.spec.requester = None;
    let (p, s) = step_with(&mut g, &facts(), at(0), "rb-1");
    assert_eq!(
        (p.phase, s.transitions[0].reason.as_str()),
        (GrantPhase::Denied, "NoRequester")
    );

    let mut g = grant(Some("1h"), None, None);
    let mut f = facts();
    f.eligibility = Eligibility::NotEligible("needs the request verb".into());
    let (p, s) = step_with(&mut g, &f, at(0), "rb-1");
    assert_eq!(
        (p.phase, s.transitions[0].reason.as_str()),
        (GrantPhase::Denied, "NotEligible")
    );

    let mut g = grant(Some("1h"), None, None);
    g.spec.reason = Some("because".into());
    let mut f = facts();
    f.policy.require_reason = true;
    f.policy.reason_patterns = vec!["^INC-[0-9]+".into()];
    let (p, s) = step_with(&mut g, &f, at(0), "rb-1");
    assert_eq!(
        (p.phase, s.transitions[0].reason.as_str()),
        (GrantPhase::Denied, "ReasonMismatch")
    );

    let mut g = grant(Some("1h"), None, None);
    g.spec.reason = None;
    let (_, s) = step_with(&mut g, &f, at(0), "rb-1");
    assert_eq!(s.transitions[0].reason, "ReasonRequired");
}

fn break_glass_facts(reviews: &[&str]) -> Facts {
    let mut f = approval_facts(1, reviews, None);
    f.policy.break_glass = Some(policy::BreakGlass {
        max_duration: GrantDuration::HOUR,
        review_deadline: GrantDuration::from_secs(1800).expect("non-zero"),
    });
    f
}

#[test]
fn break_glass_activates_at_once_capped_and_is_revoked_without_a_review() {
    let mut g = grant(Some("8h"), None, None);
    g.spec.break_glass = true;
    let (p, s) = step_with(&mut g, &break_glass_facts(&[]), at(0), "rb-1");
    assert_eq!(p.phase, GrantPhase::Active);
    assert!(p.break_glass);
    assert_eq!(s.transitions[0].reason, "BreakGlass");
    assert!(s.transitions[0].warning, "break-glass is announced as a Warning");
    assert_eq!(
        s.status.expires_at.as_deref(),
        Some("2026-11-29T13:00:00Z"),
        "cut to the break-glass maximum"
    );
    assert_eq!(s.status.review_deadline.as_deref(), Some("2026-11-29T12:30:00Z"));
    assert_eq!(p.wake_at, Some(at(1800)), "woken at the review deadline");

    let (p, s) = step_with(&mut g, &break_glass_facts(&[]), at(1800), "unused");
    assert_eq!(p.phase, GrantPhase::Revoked);
    assert_eq!(s.transitions[0].reason, "BreakGlassNotReviewed");
    assert_eq!(p.delete.len(), 1);
}

#[test]
fn break_glass_followed_by_an_approval_runs_its_course() {
    let mut g = grant(Some("30m"), None, None);
    g.spec.break_glass = true;
    let (p, _) = step_with(&mut g, &break_glass_facts(&[]), at(0), "rb-1");
    let rb = created_binding(&p, "rb-1");
    let p = plan(
        &g,
        std::slice::from_ref(&rb),
        at(60),
        &Limits::default(),
        &break_glass_facts(&["bob"]),
    );
    let s = settle(&g, &p, &succeed("unused")(&p), at(60));
    g.status = Some(s.status.clone());
    assert_eq!(actions(&s), ["Approved"]);
    assert_eq!(s.status.review_deadline, None);
    assert_eq!(
        p.wake_at,
        Some(at(1800 - 600)),
        "now only the expiry (and its notice) matter"
    );
    let (p, _) = step(&mut g, &[rb], at(1800), succeed("unused"));
    assert_eq!(p.phase, GrantPhase::Expired);
}

#[test]
fn break_glass_where_no_policy_allows_it_is_denied() {
    let mut g = grant(Some("1h"), None, None);
    g.spec.break_glass = true;
    let (p, s) = step_with(&mut g, &approval_facts(1, &[], None), at(0), "rb-1");
    assert_eq!(
        (p.phase, s.transitions[0].reason.as_str()),
        (GrantPhase::Denied, "BreakGlassNotAllowed")
    );
}

#[test]
fn grants_in_protected_namespaces_are_denied() {
    let mut g = grant(Some("1h"), None, None);
    g.metadata.namespace = Some("kube-system".into());
    let (p, s) = step(&mut g, &[], at(0), succeed("rb-1"));
    assert_eq!((p.phase, p.binding), (GrantPhase::Denied, BindingStep::Nothing));
    assert_eq!(s.transitions[0].reason, "ProtectedNamespace");
}

#[test]
fn an_expiring_soon_notice_is_given_once_ten_minutes_before_expiry() {
    let mut g = grant(Some("1h"), None, None);
    let (p, _) = step(&mut g, &[], at(0), succeed("rb-1"));
    assert_eq!(p.wake_at, Some(at(50 * 60)), "wake for the notice before the expiry");
    let rb = created_binding(&p, "rb-1");

    let (p, s) = step(&mut g, std::slice::from_ref(&rb), at(50 * 60), succeed("unused"));
    assert_eq!(p.phase, GrantPhase::Active);
    assert_eq!(actions(&s), ["ExpiringSoon"]);
    assert_eq!(
        s.transitions[0].message,
        "access ends at 2026-11-29T13:00:00Z (in 10m); to keep it, request a new AccessGrant"
    );
    assert_eq!(s.status.expiry_notice_at.as_deref(), Some("2026-11-29T12:50:00Z"));
    assert_eq!(p.wake_at, Some(at(3600)), "then wake at the expiry");

    let (p, s) = step(&mut g, std::slice::from_ref(&rb), at(55 * 60), succeed("unused"));
    assert!(s.transitions.is_empty(), "only once");
    assert_eq!(p.wake_at, Some(at(3600)));
    let (_, s) = step(&mut g, std::slice::from_ref(&rb), at(3600), succeed("unused"));
    assert_eq!(actions(&s), ["Expired"]);
}

#[test]
fn grants_not_longer_than_the_notice_period_get_no_notice() {
    let mut g = grant(Some("10m"), None, None);
    let (p, _) = step(&mut g, &[], at(0), succeed("rb-1"));
    assert_eq!(p.wake_at, Some(at(600)));
    let rb = created_binding(&p, "rb-1");
    let (p, s) = step(&mut g, std::slice::from_ref(&rb), at(300), succeed("unused"));
    assert!(!p.expiring_soon);
    assert!(s.transitions.is_empty());
}

#[test]
fn a_grant_first_seen_inside_its_notice_period_is_told_at_once() {
    // Created 55 minutes into an hour-long window (the operator was down): granted and
    // told in the same step.
    let mut g = grant(None, None, Some("2026-11-29T13:00:00Z"));
    g.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(-3600)));
    g.spec.starts_at = Some("2026-11-29T12:00:00Z".into());
    let (_, s) = step(&mut g, &[], at(55 * 60), succeed("rb-1"));
    assert_eq!(actions(&s), ["Granted", "ExpiringSoon"]);
}

#[test]
fn notices_can_be_turned_off() {
    let mut g = grant(Some("1h"), None, None);
    let limits = Limits {
        expiry_notice: None,
        ..Limits::default()
    };
    let p = plan(&g, &[], at(0), &limits, &facts());
    assert_eq!(p.wake_at, Some(at(3600)));
    let s = settle(&g, &p, &succeed("rb-1")(&p), at(0));
    g.status = Some(s.status);
    let p = plan(&g, &[], at(59 * 60), &limits, &facts());
    assert!(!p.expiring_soon);
}

#[test]
fn a_policy_change_never_lengthens_an_active_break_glass_grant_nor_lifts_its_review() {
    let mut g = grant(Some("10h"), None, None);
    g.spec.break_glass = true;
    let (p, _) = step_with(&mut g, &break_glass_facts(&[]), at(0), "rb-1");
    let rb = created_binding(&p, "rb-1");
    // Break-glass is turned off (the policy now only asks for one approval).
    let off = approval_facts(1, &[], None);
    let p = plan(&g, std::slice::from_ref(&rb), at(60), &Limits::default(), &off);
    assert_eq!(p.phase, GrantPhase::Active);
    assert_eq!(p.window.map(|w| w.expires_at), Some(at(3600)), "still cut at 1h");
    assert!(
        matches!(p.binding, BindingStep::Keep(_)),
        "the binding is not rewritten"
    );
    assert_eq!(p.review_deadline, Some(at(1800)), "the recorded deadline still holds");
    let p = plan(&g, std::slice::from_ref(&rb), at(1800), &Limits::default(), &off);
    assert_eq!(p.phase, GrantPhase::Revoked, "and is enforced");
}

#[test]
fn break_glass_needs_as_many_approvals_as_the_policy_asks() {
    let mut g = grant(Some("1h"), None, None);
    g.spec.break_glass = true;
    let two = |reviews: &[&str]| {
        let mut f = break_glass_facts(reviews);
        f.policy.approvals = 2;
        f
    };
    let (p, _) = step_with(&mut g, &two(&[]), at(0), "rb-1");
    let rb = created_binding(&p, "rb-1");
    let p = plan(
        &g,
        std::slice::from_ref(&rb),
        at(60),
        &Limits::default(),
        &two(&["bob"]),
    );
    assert_eq!(p.approvals, None, "one of two approvals does not end the probation");
    let p = plan(
        &g,
        std::slice::from_ref(&rb),
        at(1800),
        &Limits::default(),
        &two(&["bob"]),
    );
    assert_eq!(p.phase, GrantPhase::Revoked);
    let p = plan(
        &g,
        std::slice::from_ref(&rb),
        at(60),
        &Limits::default(),
        &two(&["bob", "carol"]),
    );
    assert_eq!(p.approvals.map(|a| a.len()), Some(2));
}

#[test]
fn a_deleted_policy_does_not_let_a_waiting_grant_through() {
    let mut g = grant(Some("1h"), None, None);
    let (p, s) = step_with(&mut g, &approval_facts(1, &[], None), at(0), "rb-1");
    assert_eq!(p.phase, GrantPhase::Pending);
    assert_eq!(s.status.required_approvals, Some(1));
    // The policy is gone (replace --force, a GitOps re-sync): the defaults say self-service.
    let (p, _) = step_with(&mut g, &facts(), at(10), "rb-1");
    assert_eq!(p.phase, GrantPhase::Pending, "still needs its approval");
    let mut approved = facts();
    approved.reviews = approval_facts(1, &["bob"], None).reviews;
    let (p, _) = step_with(&mut g, &approved, at(20), "rb-1");
    assert_eq!(p.phase, GrantPhase::Active);
}

#[test]
fn an_approval_given_after_the_request_lapsed_does_not_count() {
    let mut g = grant(Some("1h"), None, None);
    let mut late = approval_facts(1, &["bob"], None);
    late.reviews.approvals[0].time = "2026-11-29T13:00:01Z".into(); // the pending timeout is 1h
    let (p, _) = step_with(&mut g, &late, at(3601), "rb-1");
    assert_eq!(p.phase, GrantPhase::Expired);
    assert_eq!(p.reason, Some("PendingTimeout"));
}

#[test]
fn a_cut_that_has_already_passed_ends_the_grant_at_once_without_calling_it_late() {
    let mut g = grant(Some("8h"), None, None);
    let (p, _) = step(&mut g, &[], at(0), succeed("rb-1"));
    let rb = created_binding(&p, "rb-1");
    let mut strict = facts();
    strict.policy.max_duration = GrantDuration::HOUR;
    let p = plan(&g, std::slice::from_ref(&rb), at(7200), &Limits::default(), &strict);
    assert_eq!(p.phase, GrantPhase::Expired);
    assert_eq!(p.shortened_from, Some(at(8 * 3600)));
    assert!(!p.message.contains("late"), "{}", p.message);
    assert!(p.message.contains("stricter"), "{}", p.message);
    let s = settle(&g, &p, &succeed("unused")(&p), at(7200));
    assert_eq!(actions(&s), ["Shortened", "Expired"]);
}

#[test]
fn a_stricter_maximum_cuts_an_active_grant_and_refuses_a_waiting_one() {
    let mut g = grant(Some("8h"), None, None);
    let (p, _) = step(&mut g, &[], at(0), succeed("rb-1"));
    let rb = created_binding(&p, "rb-1");
    let mut strict = facts();
    strict.policy.max_duration = GrantDuration::HOUR;
    let p = plan(&g, std::slice::from_ref(&rb), at(60), &Limits::default(), &strict);
    assert_eq!(p.phase, GrantPhase::Active);
    assert_eq!(p.window.map(|w| w.expires_at), Some(at(3600)), "cut to the new maximum");
    assert_eq!(p.shortened_from, Some(at(8 * 3600)));
    assert!(
        matches!(p.binding, BindingStep::Repair { drift: false, .. }),
        "the binding follows the new expiry; nobody edited it"
    );
    let s = settle(&g, &p, &succeed("unused")(&p), at(60));
    assert_eq!(actions(&s), ["Shortened"], "a cut is not drift");
    let fresh = grant(Some("8h"), None, None);
    let p = plan(&fresh, &[], at(60), &Limits::default(), &strict);
    assert_eq!(p.phase, GrantPhase::Denied);
}
