//! Drift: while a grant is active its binding is restored; bindings the operator did not
//! create are never touched.

use std::collections::BTreeMap;

use jitrbac::api::{AccessGrant, GrantPhase};
use jitrbac::grant::binding::{EXPIRES_AT_ANNOTATION, GRANT_UID_LABEL, MANAGED_BY_LABEL, binding_name};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;

use crate::lifecycle::grant;
use crate::support::{
    Env, Result, TIMEOUT, TestFn, ensure, events_about, grant_with, in_secs, test_list, uid_of, wait_event, wait_for,
    wait_phase,
};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    test_list!("drift": a_binding_edited_by_a_namespace_admin_is_restored, an_edit_hidden_by_removing_the_owner_reference_is_restored_and_finalizers_are_removed, a_deleted_binding_is_recreated_and_stripped_labels_are_restored, a_foreign_binding_with_the_chosen_name_is_reported_and_left_alone)
}

fn user(name: &str) -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "User".into(),
        name: name.into(),
        namespace: None,
    }
}

async fn the_binding(env: &Env, ns: &str, api: &Api<AccessGrant>, name: &str) -> Result<(AccessGrant, RoleBinding)> {
    let active = wait_phase(api, name, GrantPhase::Active).await?;
    let b = active
        .status
        .clone()
        .unwrap_or_default()
        .bindings
        .first()
        .cloned()
        .ok_or("no binding recorded")?;
    Ok((
        active,
        Api::<RoleBinding>::namespaced(env.admin.clone(), ns)
            .get(&b.name)
            .await?,
    ))
}

fn only_alice(b: Option<&RoleBinding>) -> bool {
    b.and_then(|b| b.subjects.as_ref())
        .is_some_and(|s| s.len() == 1 && s[0].name == "alice")
}

async fn a_binding_edited_by_a_namespace_admin_is_restored(env: &'static Env) -> Result<()> {
    let ns = env.namespace("drift-edit").await?;
    // carol administers the namespace (the built-in admin ClusterRole, bound by the admin).
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    let admin_binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("carol-admin".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "admin".into(),
        },
        subjects: Some(vec![user("carol")]),
    };
    rbs.create(&PostParams::default(), &admin_binding).await?;

    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    api.create(
        &PostParams::default(),
        &grant(&ns, "alice-edit", "alice", "edit", "1h")?,
    )
    .await?;
    let (active, rb) = the_binding(env, &ns, &api, "alice-edit").await?;

    let carol = env.impersonate("carol", &["staff"])?;
    let carol_rbs: Api<RoleBinding> = Api::namespaced(carol, &ns);
    let widen = serde_json::json!({"subjects": [user("alice"), user("mallory")]});
    // The API server's RBAC cache may trail carol's fresh binding by a moment.
    crate::support::eventually("carol may edit bindings", TIMEOUT, || async {
        match carol_rbs
            .patch(&rb.name_any(), &PatchParams::default(), &Patch::Merge(&widen))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 403 => Ok(false),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    let restored = wait_for(&rbs, &rb.name_any(), "restored", TIMEOUT, only_alice)
        .await?
        .ok_or("binding gone")?;
    ensure(restored.metadata.uid == rb.metadata.uid, "restored in place (same uid)")?;
    let warning = wait_event(&env.admin, &ns, &uid_of(&active)?, "DriftRepaired").await?;
    ensure(
        warning.type_.as_deref() == Some("Warning"),
        "DriftRepaired is a Warning",
    )?;
    Ok(())
}

/// Binding events reach the grant by the binding's name too, so an edit is seen even
/// when the ownerReference that would have named the grant goes with it; a finalizer,
/// which would keep the binding in force past its deletion, is drift as well.
async fn an_edit_hidden_by_removing_the_owner_reference_is_restored_and_finalizers_are_removed(
    env: &'static Env,
) -> Result<()> {
    let ns = env.namespace("drift-owner").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    api.create(
        &PostParams::default(),
        &grant(&ns, "alice-edit", "alice", "edit", "1h")?,
    )
    .await?;
    let (_, rb) = the_binding(env, &ns, &api, "alice-edit").await?;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    let hide_and_widen = serde_json::json!([
        {"op": "remove", "path": "/metadata/ownerReferences"},
        {"op": "add", "path": "/subjects/-", "value": user("mallory")},
    ]);
    let hide_and_widen: json_patch::Patch = serde_json::from_value(hide_and_widen)?;
    rbs.patch(
        &rb.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(hide_and_widen),
    )
    .await?;
    let restored = wait_for(&rbs, &rb.name_any(), "restored", TIMEOUT, |b: Option<&RoleBinding>| {
        only_alice(b) && b.is_some_and(|b| b.metadata.owner_references.as_ref().is_some_and(|o| o.len() == 1))
    })
    .await?
    .ok_or("binding gone")?;
    ensure(restored.metadata.uid == rb.metadata.uid, "restored in place (same uid)")?;

    let held = serde_json::json!({"metadata": {"finalizers": ["example.com/keep"]}});
    rbs.patch(&rb.name_any(), &PatchParams::default(), &Patch::Merge(&held))
        .await?;
    wait_for(
        &rbs,
        &rb.name_any(),
        "finalizer removed",
        TIMEOUT,
        |b: Option<&RoleBinding>| b.is_some_and(|b| b.metadata.finalizers.as_ref().is_none_or(Vec::is_empty)),
    )
    .await?;
    Ok(())
}

async fn a_deleted_binding_is_recreated_and_stripped_labels_are_restored(env: &'static Env) -> Result<()> {
    let ns = env.namespace("drift-delete").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    api.create(
        &PostParams::default(),
        &grant(&ns, "alice-edit", "alice", "edit", "1h")?,
    )
    .await?;
    let (active, rb) = the_binding(env, &ns, &api, "alice-edit").await?;
    let grant_uid = uid_of(&active)?;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);

    rbs.delete(&rb.name_any(), &DeleteParams::default()).await?;
    let old_uid = uid_of(&rb)?;
    let recreated = wait_for(
        &rbs,
        &rb.name_any(),
        "re-created",
        TIMEOUT,
        move |b: Option<&RoleBinding>| b.is_some_and(|b| b.uid().as_deref() != Some(old_uid.as_str())),
    )
    .await?
    .ok_or("binding not re-created")?;
    let recorded = wait_for(&api, "alice-edit", "recording the new binding", TIMEOUT, {
        let new_uid = uid_of(&recreated)?;
        move |g: Option<&AccessGrant>| {
            g.and_then(|g| g.status.as_ref())
                .is_some_and(|s| s.bindings.iter().any(|b| b.uid == new_uid))
        }
    })
    .await?
    .ok_or("grant gone")?;
    ensure(
        recorded.status.unwrap_or_default().expires_at == active.status.clone().unwrap_or_default().expires_at,
        "the expiry does not move",
    )?;

    // Strip the labels and annotations: the binding leaves the operator's label-selected
    // watch, but it is still recorded in the grant, so it is restored.
    let strip = serde_json::json!({"metadata": {"labels": null, "annotations": null}});
    rbs.patch(&recreated.name_any(), &PatchParams::default(), &Patch::Merge(&strip))
        .await?;
    let relabelled = wait_for(
        &rbs,
        &recreated.name_any(),
        "relabelled",
        TIMEOUT,
        |b: Option<&RoleBinding>| {
            b.is_some_and(|b| {
                b.labels().contains_key(MANAGED_BY_LABEL) && b.annotations().contains_key(EXPIRES_AT_ANNOTATION)
            })
        },
    )
    .await?
    .ok_or("binding gone")?;
    ensure(relabelled.uid() == recreated.uid(), "restored in place")?;
    ensure(
        relabelled.labels().get(GRANT_UID_LABEL) == Some(&grant_uid),
        "grant-uid label restored",
    )?;
    wait_event(&env.admin, &ns, &grant_uid, "DriftRepaired").await?;
    let events = events_about(&env.admin, &ns, &grant_uid).await?;
    let repairs: i32 = events
        .iter()
        .filter(|(r, _)| r == "DriftRepaired")
        .map(|(_, n)| n)
        .sum();
    ensure(repairs == 2, format!("one DriftRepaired per repair: {events:?}"))?;
    Ok(())
}

async fn a_foreign_binding_with_the_chosen_name_is_reported_and_left_alone(env: &'static Env) -> Result<()> {
    let ns = env.namespace("drift-clash").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    // Scheduled a few seconds ahead, so the name can be taken before activation.
    let spec = format!(
        "subjects: [{{kind: User, name: alice}}]\nroleRef: {{kind: ClusterRole, name: view}}\nstartsAt: \"{}\"\nduration: 1h",
        in_secs(4)
    );
    let created = api
        .create(&PostParams::default(), &grant_with(&ns, "clash", &spec)?)
        .await?;
    let grant_uid = uid_of(&created)?;
    let name = binding_name("clash", &grant_uid, None);
    // A look-alike: the operator's name, labels and an expiry annotation in the past, but
    // created by someone else (no ownerReference, uid unknown to the grant).
    let foreign = RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), "jitrbac".to_owned()),
                (GRANT_UID_LABEL.to_owned(), grant_uid.clone()),
            ])),
            annotations: Some(BTreeMap::from([(EXPIRES_AT_ANNOTATION.to_owned(), in_secs(-3600))])),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "view".into(),
        },
        subjects: Some(vec![user("bob")]),
    };
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    let foreign = rbs.create(&PostParams::default(), &foreign).await?;

    let pending = wait_phase(&api, "clash", GrantPhase::Pending).await?;
    let status = pending.status.unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .ok_or("no Ready")?;
    ensure(
        ready.status == "False" && ready.reason == "NameClash",
        format!("Ready {ready:?}"),
    )?;
    ensure(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True"),
        "Stalled=True",
    )?;
    wait_event(&env.admin, &ns, &grant_uid, "NameClash").await?;
    // Revoke the grant: still nothing touches the foreign binding.
    let revoke = serde_json::json!({"spec": {"revoked": true}});
    api.patch("clash", &PatchParams::default(), &Patch::Merge(&revoke))
        .await?;
    wait_phase(&api, "clash", GrantPhase::Revoked).await?;
    let after = rbs.get(&name).await?;
    ensure(
        after.metadata.uid == foreign.metadata.uid,
        "the foreign binding still exists",
    )?;
    ensure(
        after.metadata.resource_version == foreign.metadata.resource_version,
        "and was never modified",
    )?;
    // Deleting the grant does not take the foreign binding with it either.
    api.delete("clash", &DeleteParams::default()).await?;
    wait_for(&api, "clash", "deleted", TIMEOUT, conditions::is_deleted(&grant_uid)).await?;
    ensure(
        rbs.get(&name).await?.metadata.resource_version == foreign.metadata.resource_version,
        "untouched",
    )?;
    Ok(())
}
