//! Policies and approvals: AccessPolicy, GrantReview, pending timeout and break-glass.

use jitrbac::api::{AccessGrant, AccessPolicy, GrantPhase, GrantReview};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;

use crate::eligibility::create_as;
use crate::people::{May, person};
use crate::support::{
    Env, Result, TIMEOUT, TestFn, ensure, events_about, eventually, expect_audit, grant_with, test_list, uid_of,
    wait_event, wait_for, wait_phase,
};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    test_list!(
        "approvals":
        one_approval_by_an_approver_activates_the_grant,
        two_approvals_are_needed_where_the_policy_says_so_and_one_is_not_enough,
        self_approval_approval_without_permission_and_reused_reviews_do_not_count,
        a_denying_review_ends_the_request,
        nobody_approves_access_for_themselves,
        a_binding_whose_status_write_lost_a_race_is_adopted_and_revoked,
        an_unapproved_request_expires_after_the_pending_timeout,
        break_glass_activates_at_once_and_is_revoked_without_a_review,
        break_glass_followed_by_an_approval_runs_to_its_expiry,
        a_stricter_policy_cuts_an_active_grant_without_calling_it_drift,
        a_pending_grant_cannot_be_widened,
        invalid_policies_are_rejected_at_admission,
        review_comments_with_terminal_escapes_are_rejected,
    )
}

/// A policy for ClusterRole `role` in namespace `ns` only (tests run in parallel).
async fn policy(env: &Env, ns: &str, role: &str, spec: serde_json::Value) -> Result<()> {
    let mut spec = spec;
    spec["roles"] = serde_json::json!([{"kind": "ClusterRole", "name": role}]);
    spec["namespaces"] = serde_json::json!([ns]);
    let p: AccessPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "jitrbac.io/v1alpha1", "kind": "AccessPolicy", "metadata": {"name": format!("{ns}-{role}")}, "spec": spec
    }))?;
    Api::<AccessPolicy>::all(env.admin.clone())
        .create(&PostParams::default(), &p)
        .await?;
    Ok(())
}

/// `client` reviews grant `g` with `decision`.
async fn review(
    client: &Client,
    g: &AccessGrant,
    name: &str,
    decision: &str,
    uid: Option<&str>,
) -> Result<GrantReview> {
    let ns = g.metadata.namespace.clone().unwrap_or_default();
    let r: GrantReview = serde_json::from_value(serde_json::json!({
        "apiVersion": "jitrbac.io/v1alpha1", "kind": "GrantReview", "metadata": {"name": name, "namespace": ns},
        "spec": {"grantRef": {"name": g.metadata.name, "uid": uid.map(str::to_owned).or(g.metadata.uid.clone())},
                 "decision": decision, "comment": format!("{decision} by test")}
    }))?;
    let api: Api<GrantReview> = Api::namespaced(client.clone(), &ns);
    // The reviewer's RBAC may need a moment to be in force.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match api.create(&PostParams::default(), &r).await {
            Err(kube::Error::Api(s)) if s.code == 403 && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return Ok(other?),
        }
    }
}

fn spec(subject: &str, role: &str, duration: &str) -> String {
    format!(
        "subjects: [{{kind: User, name: {subject}}}]\nroleRef: {{kind: ClusterRole, name: {role}}}\nduration: {duration}\nreason: INC-42"
    )
}

/// The reviewers whose approvals `g`'s status records, in order.
fn reviewers(g: &AccessGrant) -> Vec<String> {
    g.status
        .iter()
        .flat_map(|s| &s.approvals)
        .map(|a| a.reviewer.clone())
        .collect()
}

fn condition_reason(g: &AccessGrant) -> String {
    g.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

async fn one_approval_by_an_approver_activates_the_grant(env: &'static Env) -> Result<()> {
    let ns = env.namespace("one-approval").await?;
    policy(env, &ns, "edit", serde_json::json!({"approvals": 1})).await?;
    let alice = person(env, &ns, "alice", "edit", May::Request).await?;
    let carol = person(env, &ns, "carol", "edit", May::Approve).await?;
    let g = create_as(
        &alice,
        &ns,
        &grant_with(&ns, "needs-one", &spec("alice", "edit", "1h"))?,
    )
    .await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let pending = wait_phase(&api, "needs-one", GrantPhase::Pending).await?;
    ensure(condition_reason(&pending) == "AwaitingApproval", "awaiting approval")?;
    let uid = uid_of(&g)?;
    wait_event(&env.admin, &ns, &uid, "ApprovalRequested").await?;
    let r = review(&carol, &g, "carol-approves", "Approve", None).await?;
    ensure(
        r.spec.reviewer.map(|r| r.username).as_deref() == Some("carol"),
        "the reviewer is stamped",
    )?;
    let active = wait_phase(&api, "needs-one", GrantPhase::Active).await?;
    let approvals = active.status.unwrap_or_default().approvals;
    ensure(
        approvals.len() == 1 && approvals[0].reviewer == "carol",
        format!("{approvals:?}"),
    )?;
    wait_event(&env.admin, &ns, &uid, "Approved").await?;
    expect_audit(env, &uid, &["ApprovalRequested", "Approved", "Granted"]).await?;
    let granted = env
        .audit_lines()
        .into_iter()
        .find(|l| l["grant"]["uid"] == uid.as_str() && l["action"] == "Granted")
        .ok_or("no Granted line")?;
    ensure(
        granted["requester"]["username"] == "alice" && granted["approvers"][0] == "carol",
        format!("{granted}"),
    )?;
    Ok(())
}

async fn two_approvals_are_needed_where_the_policy_says_so_and_one_is_not_enough(env: &'static Env) -> Result<()> {
    let ns = env.namespace("two-approvals").await?;
    policy(env, &ns, "edit", serde_json::json!({"approvals": 2})).await?;
    let alice = person(env, &ns, "alice", "edit", May::Request).await?;
    let carol = person(env, &ns, "carol", "edit", May::Approve).await?;
    let dave = person(env, &ns, "dave", "edit", May::Approve).await?;
    let g = create_as(
        &alice,
        &ns,
        &grant_with(&ns, "needs-two", &spec("alice", "edit", "1h"))?,
    )
    .await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    wait_phase(&api, "needs-two", GrantPhase::Pending).await?;
    review(&carol, &g, "carol-approves", "Approve", None).await?;
    // carol approving twice is still one approver.
    review(&carol, &g, "carol-approves-again", "Approve", None).await?;
    let one = wait_for(
        &api,
        "needs-two",
        "showing one approval",
        TIMEOUT,
        |g: Option<&AccessGrant>| {
            g.and_then(|g| g.status.as_ref())
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.message.contains("1 of 2"))
        },
    )
    .await?
    .ok_or("gone")?;
    ensure(
        one.status.and_then(|s| s.phase) == Some(GrantPhase::Pending),
        "one approval is not enough",
    )?;
    review(&dave, &g, "dave-approves", "Approve", None).await?;
    let active = wait_phase(&api, "needs-two", GrantPhase::Active).await?;
    let reviewers = reviewers(&active);
    ensure(reviewers == ["carol", "dave"], format!("{reviewers:?}"))?;
    Ok(())
}

async fn self_approval_approval_without_permission_and_reused_reviews_do_not_count(env: &'static Env) -> Result<()> {
    let ns = env.namespace("bad-reviews").await?;
    policy(env, &ns, "edit", serde_json::json!({"approvals": 1})).await?;
    // alice may request and approve edit here, but not her own grant.
    let alice = person(env, &ns, "alice", "edit", May::RequestAndApprove).await?;
    let mallory = person(env, &ns, "mallory", "edit", May::Nothing).await?;
    let carol = person(env, &ns, "carol", "edit", May::Approve).await?;
    let first = create_as(&alice, &ns, &grant_with(&ns, "mine", &spec("alice", "edit", "1h"))?).await?;
    let old_uid = uid_of(&first)?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    wait_phase(&api, "mine", GrantPhase::Pending).await?;
    // carol approves this grant; then it is deleted and re-created under the same name.
    review(&carol, &first, "carol-approved-the-first", "Approve", None).await?;
    wait_phase(&api, "mine", GrantPhase::Active).await?;
    api.delete("mine", &DeleteParams::default()).await?;
    wait_for(&api, "mine", "deleted", TIMEOUT, conditions::is_deleted(&old_uid)).await?;
    let second = create_as(&alice, &ns, &grant_with(&ns, "mine", &spec("alice", "edit", "1h"))?).await?;
    let uid = uid_of(&second)?;
    wait_phase(&api, "mine", GrantPhase::Pending).await?;
    let by_alice = review(&alice, &second, "alice-approves-herself", "Approve", None).await?;
    let by_mallory = review(&mallory, &second, "mallory-approves", "Approve", None).await?;
    // Each ignored review gets its own Warning Event, on the review, saying why.
    for (r, why) in [
        (&by_alice, "the requester cannot review their own grant"),
        (&by_mallory, "mallory may not approve this role here"),
    ] {
        let ignored = wait_event(&env.admin, &ns, &uid_of(r)?, "ReviewIgnored").await?;
        ensure(
            ignored.type_.as_deref() == Some("Warning") && ignored.note.as_deref().is_some_and(|n| n.contains(why)),
            format!("ReviewIgnored: {:?}", ignored.note),
        )?;
    }
    // carol's old review (for the first grant's uid) is still there and does not count
    // either: the grant stays Pending until a fresh approval by an approver.
    let still = api.get("mine").await?;
    ensure(
        still.status.and_then(|s| s.phase) == Some(GrantPhase::Pending),
        "still pending",
    )?;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    ensure(
        rbs.list(&Default::default()).await?.items.iter().all(|b| {
            !b.metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .starts_with("jitrbac-mine")
        }),
        "nothing bound for the second grant",
    )?;
    // ... and each is in the audit trail once, with the reviewer's name.
    eventually("the ignored reviews are audited", TIMEOUT, || async {
        let lines: Vec<String> = env
            .audit_lines()
            .into_iter()
            .filter(|l| l["grant"]["uid"] == uid.as_str() && l["action"] == "ReviewIgnored")
            .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
            .collect();
        Ok(lines.len() >= 2
            && lines.iter().any(|m| m.contains("by alice"))
            && lines.iter().any(|m| m.contains("by mallory")))
    })
    .await?;
    review(&carol, &second, "carol-approves-the-second", "Approve", None).await?;
    let active = wait_phase(&api, "mine", GrantPhase::Active).await?;
    let reviewers = reviewers(&active);
    ensure(
        reviewers == ["carol"],
        format!("only carol's fresh approval counts: {reviewers:?}"),
    )?;
    Ok(())
}

async fn nobody_approves_access_for_themselves(env: &'static Env) -> Result<()> {
    let ns = env.namespace("four-eyes").await?;
    policy(env, &ns, "edit", serde_json::json!({"approvals": 1})).await?;
    // alice asks for access for bob, who is an approver of edit here: bob's own approval
    // must not count.
    let alice = person(env, &ns, "alice", "edit", May::Request).await?;
    let bob = person(env, &ns, "bob", "edit", May::Approve).await?;
    let carol = person(env, &ns, "carol", "edit", May::Approve).await?;
    let g = create_as(&alice, &ns, &grant_with(&ns, "for-bob", &spec("bob", "edit", "1h"))?).await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    wait_phase(&api, "for-bob", GrantPhase::Pending).await?;
    let by_bob = review(&bob, &g, "bob-approves-for-himself", "Approve", None).await?;
    let ignored = wait_event(&env.admin, &ns, &uid_of(&by_bob)?, "ReviewIgnored").await?;
    ensure(
        ignored
            .note
            .as_deref()
            .is_some_and(|n| n.contains("would receive this access")),
        format!("ReviewIgnored: {:?}", ignored.note),
    )?;
    ensure(
        api.get("for-bob").await?.status.and_then(|s| s.phase) == Some(GrantPhase::Pending),
        "bob's approval does not count",
    )?;
    review(&carol, &g, "carol-approves", "Approve", None).await?;
    let active = wait_phase(&api, "for-bob", GrantPhase::Active).await?;
    ensure(reviewers(&active) == ["carol"], format!("{:?}", reviewers(&active)))?;
    Ok(())
}

async fn a_binding_whose_status_write_lost_a_race_is_adopted_and_revoked(env: &'static Env) -> Result<()> {
    let ns = env.namespace("lost-write").await?;
    policy(env, &ns, "edit", serde_json::json!({"approvals": 1})).await?;
    let alice = person(env, &ns, "alice", "edit", May::Request).await?;
    let carol = person(env, &ns, "carol", "edit", May::Approve).await?;
    let g = create_as(&alice, &ns, &grant_with(&ns, "raced", &spec("alice", "edit", "1h"))?).await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    wait_phase(&api, "raced", GrantPhase::Pending).await?;
    // Someone keeps touching the grant while it is approved, so that the operator's status
    // writes (made on top of the version it read) keep losing races.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let toucher = {
        let (api, stop) = (api.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 2000 {
                i += 1;
                let patch = serde_json::json!({"metadata": {"annotations": {"touched": i.to_string()}}});
                let _ = api.patch("raced", &PatchParams::default(), &Patch::Merge(&patch)).await;
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
        })
    };
    review(&carol, &g, "carol-approves", "Approve", None).await?;
    let active = wait_phase(&api, "raced", GrantPhase::Active).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    toucher.await?;
    let active = active?;
    let recorded = active.status.clone().unwrap_or_default().bindings;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    let managed: Vec<RoleBinding> = rbs
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=jitrbac"))
        .await?
        .items;
    ensure(
        managed.len() == 1
            && recorded.len() == 1
            && managed[0].metadata.uid.as_deref() == Some(recorded[0].uid.as_str()),
        format!(
            "the binding is the recorded one: recorded {recorded:?}, present {}",
            managed.len()
        ),
    )?;
    let revoke = serde_json::json!({"spec": {"revoked": true}});
    api.patch("raced", &PatchParams::default(), &Patch::Merge(&revoke))
        .await?;
    wait_phase(&api, "raced", GrantPhase::Revoked).await?;
    ensure(
        rbs.list(&kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=jitrbac"))
            .await?
            .items
            .is_empty(),
        "revoking removed it",
    )?;
    Ok(())
}

async fn a_denying_review_ends_the_request(env: &'static Env) -> Result<()> {
    let ns = env.namespace("denied-review").await?;
    policy(env, &ns, "edit", serde_json::json!({"approvals": 1})).await?;
    let alice = person(env, &ns, "alice", "edit", May::Request).await?;
    let carol = person(env, &ns, "carol", "edit", May::Approve).await?;
    let g = create_as(&alice, &ns, &grant_with(&ns, "nope", &spec("alice", "edit", "1h"))?).await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    wait_phase(&api, "nope", GrantPhase::Pending).await?;
    review(&carol, &g, "carol-denies", "Deny", None).await?;
    let denied = wait_phase(&api, "nope", GrantPhase::Denied).await?;
    ensure(
        condition_reason(&denied) == "DeniedByReviewer",
        "reason DeniedByReviewer",
    )?;
    let uid = uid_of(&g)?;
    wait_event(&env.admin, &ns, &uid, "Denied").await?;
    expect_audit(env, &uid, &["ApprovalRequested", "Denied"]).await?;
    let line = env
        .audit_lines()
        .into_iter()
        .find(|l| l["grant"]["uid"] == uid.as_str() && l["action"] == "Denied")
        .ok_or("no Denied line")?;
    ensure(
        line["message"].as_str().unwrap_or_default().contains("carol") && line["deniedBy"] == "carol",
        format!("the audit line names the reviewer: {line}"),
    )?;
    Ok(())
}

async fn an_unapproved_request_expires_after_the_pending_timeout(env: &'static Env) -> Result<()> {
    let ns = env.namespace("pending-timeout").await?;
    policy(
        env,
        &ns,
        "view",
        serde_json::json!({"approvals": 1, "pendingTimeout": "3s"}),
    )
    .await?;
    let alice = person(env, &ns, "alice", "view", May::Request).await?;
    let g = create_as(
        &alice,
        &ns,
        &grant_with(&ns, "forgotten", &spec("alice", "view", "1h"))?,
    )
    .await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    wait_phase(&api, "forgotten", GrantPhase::Pending).await?;
    let expired = wait_phase(&api, "forgotten", GrantPhase::Expired).await?;
    ensure(condition_reason(&expired) == "PendingTimeout", "reason PendingTimeout")?;
    expect_audit(env, &uid_of(&g)?, &["ApprovalRequested", "Expired"]).await?;
    Ok(())
}

/// A stricter maximum applies at once to an active grant: its binding follows the new
/// expiry, recorded as `Shortened`, never as someone's edit (`DriftRepaired`).
async fn a_stricter_policy_cuts_an_active_grant_without_calling_it_drift(env: &'static Env) -> Result<()> {
    let ns = env.namespace("policy-cut").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let g = api
        .create(
            &PostParams::default(),
            &crate::lifecycle::grant(&ns, "alice-edit", "alice", "edit", "1h")?,
        )
        .await?;
    let uid = uid_of(&g)?;
    wait_phase(&api, "alice-edit", GrantPhase::Active).await?;
    policy(env, &ns, "edit", serde_json::json!({"maxDuration": "10m"})).await?;
    crate::support::wait_event(&env.admin, &ns, &uid, "Shortened").await?;
    let cut = api.get("alice-edit").await?.status.unwrap_or_default();
    let starts = jitrbac::api::parse_timestamp(cut.starts_at.as_deref().unwrap_or_default())?;
    let expires = jitrbac::api::parse_timestamp(cut.expires_at.as_deref().unwrap_or_default())?;
    ensure(
        expires.duration_since(starts).as_secs() == 600,
        "cut to the new maximum",
    )?;
    let name = cut.bindings.first().map(|b| b.name.clone()).ok_or("no binding")?;
    let rbs: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    crate::support::wait_for(
        &rbs,
        &name,
        "the binding's expiry follows",
        TIMEOUT,
        |b: Option<&k8s_openapi::api::rbac::v1::RoleBinding>| {
            b.and_then(|b| b.metadata.annotations.as_ref())
                .and_then(|a| a.get("jitrbac.io/expires-at"))
                .is_some_and(|at| Some(at) == cut.expires_at.as_ref())
        },
    )
    .await?;
    let events = events_about(&env.admin, &ns, &uid).await?;
    ensure(
        !events.iter().any(|(r, _)| r == "DriftRepaired"),
        format!("a cut is not drift: {events:?}"),
    )?;
    expect_audit(env, &uid, &["Granted", "Shortened"]).await?;
    Ok(())
}

async fn break_glass_activates_at_once_and_is_revoked_without_a_review(env: &'static Env) -> Result<()> {
    let ns = env.namespace("break-glass").await?;
    let bg = serde_json::json!({"approvals": 1, "breakGlass": {"allowed": true, "maxDuration": "1h", "reviewDeadline": "4s"}});
    policy(env, &ns, "edit", bg).await?;
    let alice = person(env, &ns, "alice", "edit", May::Request).await?;
    let s = format!("{}\nbreakGlass: true", spec("alice", "edit", "8h"));
    let g = create_as(&alice, &ns, &grant_with(&ns, "emergency", &s)?).await?;
    let uid = uid_of(&g)?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let active = wait_phase(&api, "emergency", GrantPhase::Active).await?;
    let status = active.status.unwrap_or_default();
    let starts = jitrbac::api::parse_timestamp(status.starts_at.as_deref().unwrap_or_default())?;
    let expires = jitrbac::api::parse_timestamp(status.expires_at.as_deref().unwrap_or_default())?;
    ensure(
        expires.duration_since(starts).as_secs() == 3600,
        "cut to the break-glass maximum of 1h",
    )?;
    ensure(status.review_deadline.is_some(), "a review deadline is recorded")?;
    let events = events_about(&env.admin, &ns, &uid).await?;
    ensure(events.iter().any(|(r, _)| r == "Granted"), format!("{events:?}"))?;
    let revoked = wait_phase(&api, "emergency", GrantPhase::Revoked).await?;
    ensure(
        condition_reason(&revoked) == "BreakGlassNotReviewed",
        "revoked for lack of review",
    )?;
    expect_audit(env, &uid, &["Granted", "Revoked"]).await?;
    let line = env
        .audit_lines()
        .into_iter()
        .find(|l| l["grant"]["uid"] == uid.as_str())
        .ok_or("no line")?;
    ensure(
        line["breakGlass"] == true && line["reason"] == "BreakGlass",
        format!("flagged break-glass: {line}"),
    )?;
    Ok(())
}

async fn break_glass_followed_by_an_approval_runs_to_its_expiry(env: &'static Env) -> Result<()> {
    let ns = env.namespace("break-glass-ok").await?;
    let bg = serde_json::json!({"approvals": 1, "breakGlass": {"allowed": true, "reviewDeadline": "4s"}});
    policy(env, &ns, "edit", bg).await?;
    let alice = person(env, &ns, "alice", "edit", May::Request).await?;
    let carol = person(env, &ns, "carol", "edit", May::Approve).await?;
    let s = format!("{}\nbreakGlass: true", spec("alice", "edit", "8s"));
    let g = create_as(&alice, &ns, &grant_with(&ns, "emergency", &s)?).await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    wait_phase(&api, "emergency", GrantPhase::Active).await?;
    review(&carol, &g, "carol-confirms", "Approve", None).await?;
    let approved = wait_for(&api, "emergency", "approved", TIMEOUT, |g: Option<&AccessGrant>| {
        g.and_then(|g| g.status.as_ref())
            .is_some_and(|s| !s.approvals.is_empty())
    })
    .await?
    .ok_or("gone")?;
    ensure(
        approved.status.unwrap_or_default().review_deadline.is_none(),
        "no deadline once approved",
    )?;
    let expired = wait_phase(&api, "emergency", GrantPhase::Expired).await?;
    ensure(condition_reason(&expired) == "Expired", "ran to its expiry")?;
    expect_audit(env, &uid_of(&g)?, &["Granted", "Approved", "Expired"]).await?;
    Ok(())
}

async fn a_pending_grant_cannot_be_widened(env: &'static Env) -> Result<()> {
    let ns = env.namespace("widen").await?;
    policy(env, &ns, "view", serde_json::json!({"approvals": 1})).await?;
    let alice = person(env, &ns, "alice", "view", May::Request).await?;
    create_as(&alice, &ns, &grant_with(&ns, "small", &spec("alice", "view", "1h"))?).await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    wait_phase(&api, "small", GrantPhase::Pending).await?;
    let widen = [
        serde_json::json!({"spec": {"roleRef": {"kind": "ClusterRole", "name": "edit"}}}),
        serde_json::json!({"spec": {"subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "dev"}]}}),
        serde_json::json!({"spec": {"duration": "7d"}}),
    ];
    for patch in widen {
        match api.patch("small", &PatchParams::default(), &Patch::Merge(&patch)).await {
            Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("create a new AccessGrant") => {}
            other => return Err(format!("widening {patch} was not refused: {other:?}").into()),
        }
    }
    Ok(())
}

async fn invalid_policies_are_rejected_at_admission(env: &'static Env) -> Result<()> {
    let api: Api<AccessPolicy> = Api::all(env.admin.clone());
    let cases = [
        (
            serde_json::json!({"roles": [{"kind": "ClusterRole", "name": "edit"}], "reasonPattern": "^(INC"}),
            "reasonPattern",
        ),
        (
            serde_json::json!({"roles": [{"kind": "ClusterRole", "name": "edit"}], "maxDuration": "forever"}),
            "maxDuration",
        ),
        (
            serde_json::json!({"roles": [{"kind": "ClusterRole", "name": "edit"}], "approvals": 11}),
            "approvals",
        ),
        (serde_json::json!({"roles": []}), "roles"),
        (
            serde_json::json!({"roles": [{"kind": "ClusterRole", "name": "edit"}], "breakGlass": {"allowed": true}}),
            "break-glass",
        ),
        (
            serde_json::json!({"roles": [{"kind": "ClusterRole", "name": "edit"}], "namespaces": ["NOT A NAMESPACE"]}),
            "namespace names",
        ),
        (
            serde_json::json!({"roles": [{"kind": "ClusterRole", "name": "edit"}],
                "namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "Bogus", "values": ["x"]}]}}),
            "namespaceSelector",
        ),
    ];
    for (i, (spec, expected)) in cases.into_iter().enumerate() {
        let p: AccessPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "jitrbac.io/v1alpha1", "kind": "AccessPolicy", "metadata": {"name": format!("invalid-{i}")}, "spec": spec
        }))?;
        match api.create(&PostParams::default(), &p).await {
            Err(kube::Error::Api(s)) if s.message.contains(expected) => {}
            other => return Err(format!("policy {i} was not refused naming {expected}: {other:?}").into()),
        }
    }
    Ok(())
}

async fn review_comments_with_terminal_escapes_are_rejected(env: &'static Env) -> Result<()> {
    let ns = env.namespace("review-comment").await?;
    let r: GrantReview = serde_json::from_value(serde_json::json!({
        "apiVersion": "jitrbac.io/v1alpha1", "kind": "GrantReview", "metadata": {"name": "loud", "namespace": ns},
        "spec": {"grantRef": {"name": "g", "uid": "u"}, "decision": "Deny", "comment": "no\u{1b}[31mRED\u{202e}gnp.exe"}
    }))?;
    match Api::<GrantReview>::namespaced(env.admin.clone(), &ns)
        .create(&PostParams::default(), &r)
        .await
    {
        Err(kube::Error::Api(s)) if s.message.contains("comment cannot contain control characters") => Ok(()),
        other => Err(format!("the review was not refused as expected: {other:?}").into()),
    }
}
