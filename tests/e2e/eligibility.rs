//! Only the people allowed get access: the requester is who the API server authenticated,
//! eligibility is RBAC (`request` on `clusterroles.jitrbac.io/<role>`), status is the
//! operator's alone.

use std::time::Duration;

use jitrbac::api::{AccessGrant, GrantPhase};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::people::{May, forget, person};
use crate::support::{
    Env, Result, TIMEOUT, TestFn, ensure, eventually, expect_audit, grant_with, ready_condition, test_list, uid_of,
    wait_event, wait_phase,
};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    test_list!(
        "eligibility":
        an_eligible_requester_gets_access_and_is_recorded_as_the_requester,
        a_user_without_the_request_verb_cannot_create_a_grant,
        a_requester_written_by_the_client_is_replaced_by_the_caller,
        nobody_but_the_operator_can_write_a_grants_status,
        eligibility_removed_before_activation_ends_the_grant_denied,
        an_eligible_user_still_cannot_grant_to_system_identities,
    )
}

fn spec(subject: &str, role: &str, extra: &str) -> String {
    format!(
        "subjects: [{{kind: User, name: \"{subject}\"}}]\nroleRef: {{kind: ClusterRole, name: {role}}}\nduration: 1h\n{extra}"
    )
}

/// Creates `grant` as `client`, retrying while the API server's RBAC cache has not yet
/// seen a permission given a moment ago.
pub async fn create_as(client: &Client, ns: &str, grant: &AccessGrant) -> Result<AccessGrant> {
    let api: Api<AccessGrant> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match api.create(&PostParams::default(), grant).await {
            Err(kube::Error::Api(s)) if s.code == 403 && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return Ok(other?),
        }
    }
}

async fn an_eligible_requester_gets_access_and_is_recorded_as_the_requester(env: &'static Env) -> Result<()> {
    let ns = env.namespace("eligible").await?;
    let alice = person(env, &ns, "alice", "edit", May::Request).await?;
    let g = create_as(
        &alice,
        &ns,
        &grant_with(&ns, "self-service", &spec("alice", "edit", "reason: INC-1"))?,
    )
    .await?;
    let requester = g.spec.requester.clone().ok_or("no requester stamped")?;
    ensure(requester.username == "alice", format!("requester {requester:?}"))?;
    ensure(requester.groups.contains(&"dev".to_owned()), "groups stamped")?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    wait_phase(&api, "self-service", GrantPhase::Active).await?;
    let uid = uid_of(&g)?;
    expect_audit(env, &uid, &["Granted"]).await?;
    let line = env
        .audit_lines()
        .into_iter()
        .find(|l| l["grant"]["uid"] == uid.as_str())
        .ok_or("no audit line")?;
    ensure(
        line["requester"]["username"] == "alice",
        format!("the audit line names the requester: {line}"),
    )?;
    Ok(())
}

async fn a_user_without_the_request_verb_cannot_create_a_grant(env: &'static Env) -> Result<()> {
    let ns = env.namespace("not-eligible").await?;
    // mallory may create AccessGrant objects, but holds no `request` verb on any role.
    let mallory = person(env, &ns, "mallory", "edit", May::Nothing).await?;
    let api: Api<AccessGrant> = Api::namespaced(mallory, &ns);
    for role in ["edit", "cluster-admin"] {
        let g = grant_with(&ns, &format!("want-{role}"), &spec("mallory", role, ""))?;
        // Wait until mallory's create permission is in force, then read the refusal.
        eventually(
            "mallory's refusal comes from the eligibility check",
            TIMEOUT,
            || async {
                match api.create(&PostParams::default(), &g).await {
                    Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("may not request") => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 403 => Ok(false),
                    other => Err(format!("expected a refusal, got {other:?}").into()),
                }
            },
        )
        .await?;
        let message = match api.create(&PostParams::default(), &g).await {
            Err(kube::Error::Api(s)) => s.message,
            other => return Err(format!("expected a refusal, got {other:?}").into()),
        };
        ensure(
            message.contains(&format!("request verb on clusterroles.jitrbac.io/{role}")),
            format!("the message names the missing permission: {message}"),
        )?;
    }
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    let ours = rbs
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|b| b.metadata.name.as_deref().is_some_and(|n| n.starts_with("jitrbac-")));
    ensure(ours.count() == 0, "no binding was created")?;
    Ok(())
}

async fn a_requester_written_by_the_client_is_replaced_by_the_caller(env: &'static Env) -> Result<()> {
    let ns = env.namespace("forged-requester").await?;
    let alice = person(env, &ns, "alice", "view", May::Request).await?;
    let forged = spec("alice", "view", "requester: {username: cto, groups: [system:masters]}");
    let g = create_as(&alice, &ns, &grant_with(&ns, "forged", &forged)?).await?;
    let requester = g.spec.requester.clone().ok_or("no requester")?;
    ensure(
        requester.username == "alice" && !requester.groups.contains(&"system:masters".to_owned()),
        format!("{requester:?}"),
    )?;
    // Nor can it be changed afterwards, by anyone.
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let patch = serde_json::json!({"spec": {"requester": {"username": "cto"}}});
    let after = api
        .patch("forged", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    ensure(
        after.spec.requester.map(|r| r.username).as_deref() == Some("alice"),
        "the requester is put back on update",
    )?;
    Ok(())
}

async fn nobody_but_the_operator_can_write_a_grants_status(env: &'static Env) -> Result<()> {
    let ns = env.namespace("status-forgery").await?;
    let alice = person(env, &ns, "alice", "edit", May::Request).await?;
    // A grant alice may not get (to a system group): it ends Denied.
    let bad =
        "subjects: [{kind: Group, name: \"system:masters\"}]\nroleRef: {kind: ClusterRole, name: edit}\nduration: 1h";
    create_as(&alice, &ns, &grant_with(&ns, "to-masters", bad)?).await?;
    let admin_api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    wait_phase(&admin_api, "to-masters", GrantPhase::Denied).await?;

    // eve may update grants and their status (RBAC), like a careless namespace admin.
    let eve = env.impersonate("eve", &["dev"])?;
    let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "eve-status"},
        "rules": [{"apiGroups": ["jitrbac.io"], "resources": ["accessgrants", "accessgrants/status"], "verbs": ["get", "update", "patch"]}]
    }))?;
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(env.admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await?;
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "eve-status"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "eve-status"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "eve"}]
    }))?;
    Api::<RoleBinding>::namespaced(env.admin.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await?;
    let eve_api: Api<AccessGrant> = Api::namespaced(eve, &ns);
    let fake = serde_json::json!({"status": {"phase": "Active", "approvals": [{"reviewer": "cto", "review": "x", "time": "2026-01-01T00:00:00Z"}]}});
    eventually(
        "eve's status write is refused by the admission policy",
        TIMEOUT,
        || async {
            match eve_api
                .patch_status("to-masters", &PatchParams::default(), &Patch::Merge(&fake))
                .await
            {
                Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("only the jitrbac operator") => {
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 403 => Ok(false),
                other => Err(format!("expected the admission policy to refuse, got {other:?}").into()),
            }
        },
    )
    .await?;
    // Through the main resource, status is ignored by the API server.
    let mut through_main = admin_api.get("to-masters").await?;
    through_main.status.get_or_insert_with(Default::default).phase = Some(GrantPhase::Active);
    let stored = eve_api
        .replace("to-masters", &PostParams::default(), &through_main)
        .await?;
    ensure(
        stored.status.and_then(|s| s.phase) == Some(GrantPhase::Denied),
        "status unchanged through the main resource",
    )?;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    ensure(
        rbs.list(&Default::default())
            .await?
            .items
            .iter()
            .all(|b| !b.metadata.name.as_deref().unwrap_or_default().starts_with("jitrbac-")),
        "nothing was bound",
    )?;
    Ok(())
}

async fn eligibility_removed_before_activation_ends_the_grant_denied(env: &'static Env) -> Result<()> {
    let ns = env.namespace("eligibility-removed").await?;
    let alice = person(env, &ns, "alice", "edit", May::Request).await?;
    // Scheduled a few seconds ahead: alice loses her eligibility before it activates.
    let later = format!("startsAt: \"{}\"", crate::support::in_secs(4));
    let g = create_as(&alice, &ns, &grant_with(&ns, "later", &spec("alice", "edit", &later))?).await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    wait_phase(&api, "later", GrantPhase::Scheduled).await?;
    forget(env, &ns, "alice", "edit").await?;
    let denied = wait_phase(&api, "later", GrantPhase::Denied).await?;
    let ready = ready_condition(&denied);
    ensure(
        ready.as_ref().is_some_and(|c| c.reason == "NotEligible"),
        format!("Ready: {ready:?}"),
    )?;
    wait_event(&env.admin, &ns, &uid_of(&g)?, "Denied").await?;
    expect_audit(env, &uid_of(&g)?, &["Scheduled", "Denied"]).await?;
    Ok(())
}

async fn an_eligible_user_still_cannot_grant_to_system_identities(env: &'static Env) -> Result<()> {
    let ns = env.namespace("eligible-system").await?;
    let alice = person(env, &ns, "alice", "view", May::Request).await?;
    for (name, group) in [("masters", "system:masters"), ("everyone", "system:authenticated")] {
        let s = format!(
            "subjects: [{{kind: Group, name: \"{group}\"}}]\nroleRef: {{kind: ClusterRole, name: view}}\nduration: 1h"
        );
        create_as(&alice, &ns, &grant_with(&ns, name, &s)?).await?;
    }
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    for name in ["masters", "everyone"] {
        let g = wait_phase(&api, name, GrantPhase::Denied).await?;
        let ready = ready_condition(&g);
        ensure(
            ready.is_some_and(|c| c.reason == "SystemSubject"),
            format!("{name}: SystemSubject"),
        )?;
    }
    Ok(())
}
