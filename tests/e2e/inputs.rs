//! Bad input is contained: a clear reason, no binding, and other grants unaffected.

use futures::StreamExt;
use jitrbac::api::{AccessGrant, GrantPhase};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::wait::conditions;

use crate::lifecycle::grant;
use crate::support::{
    Env, Result, TIMEOUT, TestFn, ensure, grant_with, ready_condition, test_list, uid_of, wait_event, wait_for,
    wait_phase,
};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    test_list!("inputs": policy_refusals_end_denied_with_their_reason, a_burst_of_200_mixed_grants_leaves_nothing_stuck, a_role_created_later_is_bound_while_the_window_is_open, deleting_a_namespace_with_active_grants_finishes_without_an_error_flood)
}

async fn denied(api: &Api<AccessGrant>, name: &str, reason: &str) -> Result<()> {
    let g = wait_phase(api, name, GrantPhase::Denied).await?;
    let status = g.status.unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .ok_or("no Ready")?;
    ensure(
        ready.status == "False" && ready.reason == reason,
        format!("{name}: Ready {ready:?}"),
    )?;
    ensure(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True"),
        "Stalled=True",
    )?;
    ensure(status.bindings.is_empty(), format!("{name}: no binding"))?;
    Ok(())
}

async fn policy_refusals_end_denied_with_their_reason(env: &'static Env) -> Result<()> {
    let ns = env.namespace("denied").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let masters =
        "subjects: [{kind: Group, name: \"system:masters\"}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h";
    let authenticated = "subjects: [{kind: User, name: alice}, {kind: Group, name: \"system:authenticated\"}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h";
    let long = "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 8d";
    let controller = "subjects: [{kind: ServiceAccount, name: namespace-controller, namespace: kube-system}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h";
    for (name, spec) in [
        ("masters", masters),
        ("everyone", authenticated),
        ("long", long),
        ("controller", controller),
    ] {
        api.create(&PostParams::default(), &grant_with(&ns, name, spec)?)
            .await?;
    }
    denied(&api, "masters", "SystemSubject").await?;
    denied(&api, "everyone", "SystemSubject").await?;
    denied(&api, "long", "DurationTooLong").await?;
    denied(&api, "controller", "SystemSubject").await?;
    let long = api.get("long").await?;
    wait_event(&env.admin, &ns, &uid_of(&long)?, "Denied").await?;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    ensure(
        rbs.list(&Default::default()).await?.items.is_empty(),
        "nothing was bound",
    )?;
    Ok(())
}

async fn a_burst_of_200_mixed_grants_leaves_nothing_stuck(env: &'static Env) -> Result<()> {
    let ns = env.namespace("burst").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    // Every fourth grant is valid; the rest are refused for one of three reasons the schema
    // cannot catch.
    let kinds = ["valid", "system", "too-long", "no-role"];
    let specs: Vec<(String, String)> = (0..200)
        .map(|i| {
            let kind = kinds[i % kinds.len()];
            let spec = match kind {
                "valid" => format!("subjects: [{{kind: User, name: user-{i}}}]\nroleRef: {{kind: ClusterRole, name: view}}\nduration: 1h"),
                "system" => "subjects: [{kind: Group, name: \"system:masters\"}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h".into(),
                "too-long" => "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 30d".into(),
                _ => "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: missing-role}\nduration: 1h".into(),
            };
            (format!("{kind}-{i}"), spec)
        })
        .collect();
    let created = futures::stream::iter(specs.clone())
        .map(|(name, spec)| {
            let api = api.clone();
            let ns = ns.clone();
            async move {
                Ok::<_, crate::support::Error>(
                    api.create(&PostParams::default(), &grant_with(&ns, &name, &spec)?)
                        .await?,
                )
            }
        })
        .buffer_unordered(20)
        .collect::<Vec<Result<AccessGrant>>>()
        .await;
    for c in created {
        c?;
    }
    let expected = |name: &str| match name.split('-').next() {
        Some("valid") => (GrantPhase::Active, "Granted"),
        Some("system") => (GrantPhase::Denied, "SystemSubject"),
        Some("too") => (GrantPhase::Denied, "DurationTooLong"),
        _ => (GrantPhase::Pending, "RoleNotFound"),
    };
    for (name, _) in &specs {
        let (phase, reason) = expected(name);
        let g = wait_phase(&api, name, phase).await?;
        let ready = ready_condition(&g);
        ensure(
            ready.is_some_and(|c| c.reason == reason),
            format!("{name}: reason {reason}"),
        )?;
    }
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    ensure(
        rbs.list(&Default::default()).await?.items.len() == 50,
        "exactly the 50 valid grants are bound",
    )?;
    Ok(())
}

async fn a_role_created_later_is_bound_while_the_window_is_open(env: &'static Env) -> Result<()> {
    let ns = env.namespace("late-role").await?;
    let role_name = format!("late-role-{ns}");
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    api.create(
        &PostParams::default(),
        &grant(&ns, "waiting", "alice", &role_name, "1h")?,
    )
    .await?;
    let pending = wait_phase(&api, "waiting", GrantPhase::Pending).await?;
    wait_event(&env.admin, &ns, &uid_of(&pending)?, "RoleNotFound").await?;
    let role = ClusterRole {
        metadata: ObjectMeta {
            name: Some(role_name.clone()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    };
    let roles: Api<ClusterRole> = Api::all(env.admin.clone());
    roles.create(&PostParams::default(), &role).await?;
    let active = wait_phase(&api, "waiting", GrantPhase::Active).await?;
    ensure(
        active.status.unwrap_or_default().bindings.len() == 1,
        "bound once the role exists",
    )?;
    roles.delete(&role_name, &DeleteParams::default()).await?;
    Ok(())
}

async fn deleting_a_namespace_with_active_grants_finishes_without_an_error_flood(env: &'static Env) -> Result<()> {
    let ns = env.namespace("doomed").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    for i in 0..5 {
        api.create(
            &PostParams::default(),
            &grant(&ns, &format!("g{i}"), "alice", "view", "1h")?,
        )
        .await?;
    }
    for i in 0..5 {
        wait_phase(&api, &format!("g{i}"), GrantPhase::Active).await?;
    }
    let namespaces: Api<Namespace> = Api::all(env.admin.clone());
    let uid = uid_of(&namespaces.get(&ns).await?)?;
    namespaces.delete(&ns, &DeleteParams::default()).await?;
    // The namespace controller deletes the grants; the finalizer revokes each, and the
    // namespace goes away. The GC may add a little time: allow two timeouts.
    wait_for(&namespaces, &ns, "deleted", TIMEOUT * 2, conditions::is_deleted(&uid)).await?;
    let noisy = env
        .operator_log()
        .into_iter()
        .filter(|l| l["level"] == "WARN" || l["level"] == "ERROR")
        .filter(|l| l.to_string().contains(&ns))
        .count();
    ensure(
        noisy <= 10,
        format!("{noisy} warnings about namespace {ns}: no error flood"),
    )?;
    let revoked = env
        .audit_lines()
        .into_iter()
        .filter(|l| l["grant"]["namespace"] == ns.as_str() && l["action"] == "Revoked")
        .count();
    ensure(
        revoked == 5,
        format!("each grant's revocation is on record ({revoked} of 5)"),
    )?;
    Ok(())
}
