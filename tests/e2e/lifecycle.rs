//! The main job: a grant becomes a RoleBinding, and the binding is gone at expiry.

use jitrbac::api::{AccessGrant, GrantPhase, parse_timestamp};
use jitrbac::grant::binding::{
    EXPIRES_AT_ANNOTATION, GRANT_ANNOTATION, GRANT_UID_LABEL, GRANTED_AT_ANNOTATION, MANAGED_BY_LABEL,
};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;

use crate::support::{
    Env, Result, TIMEOUT, TestFn, ensure, events_about, expect_audit, grant_with, grant_yaml, in_secs, test_list,
    uid_of, wait_event, wait_for, wait_phase,
};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    test_list!("lifecycle": an_active_grant_has_one_binding_with_subjects_roleref_labels_annotations_and_owner, the_binding_is_deleted_within_two_seconds_of_expiry_and_the_grant_is_kept, deleting_the_grant_deletes_its_binding, a_grant_for_a_missing_role_waits_without_blocking_others, a_scheduled_grant_binds_only_from_its_start_and_counts_duration_from_it, a_grant_whose_end_has_passed_expires_at_once_without_a_binding, reapplying_an_expired_grant_changes_nothing)
}

pub fn grant(ns: &str, name: &str, subject: &str, role: &str, duration: &str) -> Result<AccessGrant> {
    grant_yaml(&format!(
        r#"apiVersion: jitrbac.io/v1alpha1
kind: AccessGrant
metadata:
  name: {name}
  namespace: {ns}
spec:
  subjects:
  - kind: User
    name: {subject}
  roleRef:
    kind: ClusterRole
    name: {role}
  duration: {duration}
  reason: "INC-1234: integration test"
"#
    ))
}

/// The single binding recorded in the grant's status, fetched from the API server.
async fn recorded_binding(env: &Env, grant: &AccessGrant) -> Result<RoleBinding> {
    let status = grant.status.clone().unwrap_or_default();
    ensure(
        status.bindings.len() == 1,
        format!("expected one recorded binding, got {:?}", status.bindings),
    )?;
    let b = &status.bindings[0];
    let api: Api<RoleBinding> = Api::namespaced(env.admin.clone(), b.namespace.as_deref().unwrap_or_default());
    let rb = api.get(&b.name).await?;
    ensure(
        rb.metadata.uid.as_deref() == Some(b.uid.as_str()),
        "recorded uid matches the binding",
    )?;
    Ok(rb)
}

async fn an_active_grant_has_one_binding_with_subjects_roleref_labels_annotations_and_owner(
    env: &'static Env,
) -> Result<()> {
    let ns = env.namespace("grant").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let created = api
        .create(
            &PostParams::default(),
            &grant(&ns, "alice-edit", "alice", "edit", "1h")?,
        )
        .await?;
    let grant_uid = uid_of(&created)?;
    let active = wait_phase(&api, "alice-edit", GrantPhase::Active).await?;
    let rb = recorded_binding(env, &active).await?;

    let subjects = rb.subjects.clone().unwrap_or_default();
    ensure(subjects.len() == 1, "one subject")?;
    ensure(
        subjects[0].kind == "User" && subjects[0].name == "alice",
        format!("subject {:?}", subjects[0]),
    )?;
    ensure(
        subjects[0].api_group.as_deref() == Some("rbac.authorization.k8s.io"),
        "User subject apiGroup",
    )?;
    ensure(
        rb.role_ref.kind == "ClusterRole" && rb.role_ref.name == "edit",
        format!("roleRef {:?}", rb.role_ref),
    )?;

    let labels = rb.metadata.labels.clone().unwrap_or_default();
    ensure(
        labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some("jitrbac"),
        "managed-by label",
    )?;
    ensure(labels.get(GRANT_UID_LABEL) == Some(&grant_uid), "grant-uid label")?;
    ensure(
        !labels.contains_key("app.kubernetes.io/name"),
        "grant labels are not copied",
    )?;

    let ann = rb.metadata.annotations.clone().unwrap_or_default();
    let status = active.status.clone().unwrap_or_default();
    ensure(
        ann.get(EXPIRES_AT_ANNOTATION) == status.expires_at.as_ref(),
        "expires-at annotation = status.expiresAt",
    )?;
    ensure(
        ann.get(GRANTED_AT_ANNOTATION) == status.starts_at.as_ref(),
        "granted-at annotation = status.startsAt",
    )?;
    ensure(
        ann.get(GRANT_ANNOTATION).map(String::as_str) == Some(&format!("{ns}/alice-edit")),
        "grant annotation",
    )?;
    let expires = parse_timestamp(status.expires_at.as_deref().unwrap_or_default())?;
    let starts = parse_timestamp(status.starts_at.as_deref().unwrap_or_default())?;
    ensure(
        expires.duration_since(starts).as_secs() == 3600,
        "expiry is one hour after activation",
    )?;
    ensure(
        status.expires_at.as_deref().is_some_and(|e| e.ends_with('Z')),
        "status times are UTC",
    )?;

    let owners = rb.metadata.owner_references.clone().unwrap_or_default();
    ensure(owners.len() == 1, "one ownerReference")?;
    let owner = &owners[0];
    ensure(
        owner.kind == "AccessGrant" && owner.uid == grant_uid && owner.controller == Some(true),
        format!("ownerReference {owner:?}"),
    )?;

    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .ok_or("no Ready condition")?;
    ensure(ready.status == "True", "Ready=True")?;
    ensure(
        ready.observed_generation == active.metadata.generation,
        "Ready.observedGeneration is current",
    )?;
    ensure(
        status.observed_generation == active.metadata.generation,
        "status.observedGeneration is current",
    )?;
    wait_event(&env.admin, &ns, &grant_uid, "Granted").await?;
    Ok(())
}

async fn the_binding_is_deleted_within_two_seconds_of_expiry_and_the_grant_is_kept(env: &'static Env) -> Result<()> {
    let ns = env.namespace("expiry").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let created = api
        .create(&PostParams::default(), &grant(&ns, "short", "alice", "view", "4s")?)
        .await?;
    let grant_uid = uid_of(&created)?;
    let active = wait_phase(&api, "short", GrantPhase::Active).await?;
    let rb = recorded_binding(env, &active).await?;
    let expires_at = parse_timestamp(
        active
            .status
            .clone()
            .unwrap_or_default()
            .expires_at
            .as_deref()
            .unwrap_or_default(),
    )?;

    let rb_api: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    wait_for(
        &rb_api,
        &rb.name_unchecked(),
        "deleted",
        TIMEOUT,
        conditions::is_deleted(&uid_of(&rb)?),
    )
    .await?;
    let observed = jiff::Timestamp::now();
    let lag = observed.duration_since(expires_at);
    ensure(
        lag.as_millis() < 2000,
        format!("binding deletion observed {lag:?} after expiresAt (must be < 2 s)"),
    )?;
    ensure(
        lag.as_millis() >= 0,
        format!("binding deleted {lag:?} before expiresAt"),
    )?;

    let expired = wait_phase(&api, "short", GrantPhase::Expired).await?;
    ensure(
        expired.metadata.deletion_timestamp.is_none(),
        "the grant object is kept",
    )?;
    let status = expired.status.unwrap_or_default();
    ensure(status.ended_at.is_some(), "status.endedAt is set")?;
    wait_event(&env.admin, &ns, &grant_uid, "Granted").await?;
    wait_event(&env.admin, &ns, &grant_uid, "Expired").await?;
    expect_audit(env, &grant_uid, &["Granted", "Expired"]).await?;
    let events = events_about(&env.admin, &ns, &grant_uid).await?;
    ensure(
        events == [("Granted".to_owned(), 1), ("Expired".to_owned(), 1)]
            || events == [("Expired".to_owned(), 1), ("Granted".to_owned(), 1)],
        format!("exactly one Granted and one Expired event: {events:?}"),
    )?;
    let line = env
        .audit_lines()
        .into_iter()
        .find(|l| l["grant"]["uid"] == grant_uid.as_str() && l["action"] == "Expired")
        .ok_or("no Expired audit line")?;
    for field in [
        "time",
        "id",
        "reason",
        "subjects",
        "roleRef",
        "bindings",
        "startsAt",
        "expiresAt",
        "endedAt",
    ] {
        ensure(!line[field].is_null(), format!("audit line has {field}: {line}"))?;
    }
    ensure(
        line["grant"]["kind"] == "AccessGrant" && line["grant"]["namespace"] == ns.as_str(),
        "audit grant id",
    )?;
    ensure(
        line["bindings"][0]["uid"] == uid_of(&rb)?.as_str(),
        "audit names the binding uid",
    )?;
    Ok(())
}

async fn deleting_the_grant_deletes_its_binding(env: &'static Env) -> Result<()> {
    let ns = env.namespace("delete").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    api.create(&PostParams::default(), &grant(&ns, "to-delete", "alice", "view", "1h")?)
        .await?;
    let active = wait_phase(&api, "to-delete", GrantPhase::Active).await?;
    let rb = recorded_binding(env, &active).await?;
    api.delete("to-delete", &DeleteParams::default()).await?;
    let rb_api: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    // Removal goes through the garbage collector, which may take a little longer than a
    // reconcile: allow two timeouts.
    wait_for(
        &rb_api,
        &rb.name_unchecked(),
        "deleted",
        TIMEOUT * 2,
        conditions::is_deleted(&uid_of(&rb)?),
    )
    .await?;
    Ok(())
}

async fn a_grant_for_a_missing_role_waits_without_blocking_others(env: &'static Env) -> Result<()> {
    let ns = env.namespace("missing-role").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let bad = api
        .create(
            &PostParams::default(),
            &grant(&ns, "bad", "alice", "no-such-role", "1h")?,
        )
        .await?;
    api.create(&PostParams::default(), &grant(&ns, "good", "bob", "view", "1h")?)
        .await?;
    wait_phase(&api, "good", GrantPhase::Active).await?;
    let waiting = wait_phase(&api, "bad", GrantPhase::Pending).await?;
    let status = waiting.status.unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .ok_or("no Ready condition")?;
    ensure(
        ready.status == "False" && ready.reason == "RoleNotFound",
        format!("Ready {ready:?}"),
    )?;
    ensure(status.bindings.is_empty(), "no binding recorded")?;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    let names: Vec<String> = rbs
        .list(&Default::default())
        .await?
        .items
        .iter()
        .map(|b| b.name_unchecked())
        .collect();
    ensure(
        names.len() == 1,
        format!("only the good grant has a binding: {names:?}"),
    )?;
    wait_event(&env.admin, &ns, &uid_of(&bad)?, "RoleNotFound").await?;
    Ok(())
}

async fn a_scheduled_grant_binds_only_from_its_start_and_counts_duration_from_it(env: &'static Env) -> Result<()> {
    let ns = env.namespace("scheduled").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let starts_at = in_secs(3);
    let spec = format!(
        "subjects: [{{kind: User, name: alice}}]\nroleRef: {{kind: ClusterRole, name: view}}\nstartsAt: \"{starts_at}\"\nduration: 1h"
    );
    let created = api
        .create(&PostParams::default(), &grant_with(&ns, "later", &spec)?)
        .await?;
    let scheduled = wait_phase(&api, "later", GrantPhase::Scheduled).await?;
    let status = scheduled.status.clone().unwrap_or_default();
    ensure(status.bindings.is_empty(), "no binding while scheduled")?;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    ensure(
        rbs.list(&Default::default()).await?.items.is_empty(),
        "no RoleBinding while scheduled",
    )?;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .ok_or("no Ready")?;
    ensure(
        ready.status == "True" && ready.reason == "Scheduled",
        format!("Ready {ready:?}"),
    )?;

    let active = wait_phase(&api, "later", GrantPhase::Active).await?;
    let rb = recorded_binding(env, &active).await?;
    let created_at = rb.metadata.creation_timestamp.clone().ok_or("no creationTimestamp")?.0;
    let start = parse_timestamp(&starts_at)?;
    // creationTimestamp has whole seconds: the binding appeared in the second of the start or later.
    ensure(
        created_at.as_second() >= start.as_second(),
        format!("bound at {created_at}, before {start}"),
    )?;
    let status = active.status.unwrap_or_default();
    let expires = parse_timestamp(status.expires_at.as_deref().unwrap_or_default())?;
    ensure(
        expires.duration_since(start).as_secs() == 3600,
        "duration counts from startsAt",
    )?;
    expect_audit(env, &uid_of(&created)?, &["Scheduled", "Granted"]).await?;
    Ok(())
}

async fn a_grant_whose_end_has_passed_expires_at_once_without_a_binding(env: &'static Env) -> Result<()> {
    let ns = env.namespace("past").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let spec = format!(
        "subjects: [{{kind: User, name: alice}}]\nroleRef: {{kind: ClusterRole, name: view}}\nexpiresAt: \"{}\"",
        in_secs(-60)
    );
    api.create(&PostParams::default(), &grant_with(&ns, "gone", &spec)?)
        .await?;
    let spec = format!(
        "subjects: [{{kind: User, name: alice}}]\nroleRef: {{kind: ClusterRole, name: view}}\nstartsAt: \"{}\"\nexpiresAt: \"{}\"",
        in_secs(-7200),
        in_secs(-3600)
    );
    api.create(&PostParams::default(), &grant_with(&ns, "window-passed", &spec)?)
        .await?;
    for name in ["gone", "window-passed"] {
        let expired = wait_phase(&api, name, GrantPhase::Expired).await?;
        let status = expired.status.unwrap_or_default();
        ensure(
            status.bindings.is_empty() && status.ended_at.is_none(),
            format!("{name}: never bound"),
        )?;
    }
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    ensure(
        rbs.list(&Default::default()).await?.items.is_empty(),
        "no RoleBinding was created",
    )?;
    Ok(())
}

async fn reapplying_an_expired_grant_changes_nothing(env: &'static Env) -> Result<()> {
    let ns = env.namespace("reapply").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let g = grant(&ns, "again", "alice", "view", "2s")?;
    let params = PatchParams::apply("gitops-test").force();
    api.patch("again", &params, &Patch::Apply(&g)).await?;
    let expired = wait_phase(&api, "again", GrantPhase::Expired).await?;
    let uid = uid_of(&expired)?;
    let reapplied = api.patch("again", &params, &Patch::Apply(&g)).await?;
    ensure(
        reapplied.metadata.generation == expired.metadata.generation,
        "re-apply does not change the spec",
    )?;
    // Make sure the operator has looked at the grant again: a label change is a watch
    // event it reconciles; a witness grant created afterwards comes later in the same watch
    // stream, so once the witness is active the relabelled grant has been seen.
    let label = serde_json::json!({"metadata": {"labels": {"touched": "yes"}}});
    api.patch("again", &PatchParams::default(), &Patch::Merge(&label))
        .await?;
    api.create(&PostParams::default(), &grant(&ns, "witness", "bob", "view", "1h")?)
        .await?;
    wait_phase(&api, "witness", GrantPhase::Active).await?;
    let still = api.get("again").await?;
    ensure(
        still.status.and_then(|s| s.phase) == Some(GrantPhase::Expired),
        "still Expired",
    )?;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    let names: Vec<String> = rbs
        .list(&Default::default())
        .await?
        .items
        .iter()
        .map(|b| b.name_any())
        .collect();
    ensure(
        names.len() == 1 && names[0].starts_with("jitrbac-witness-"),
        format!("no binding came back: {names:?}"),
    )?;
    expect_audit(env, &uid, &["Granted", "Expired"]).await?;
    Ok(())
}
