//! Revocation: `spec.revoked`, and deleting a grant (finalizer).

use jitrbac::api::{AccessGrant, GrantPhase};
use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;

use crate::lifecycle::grant;
use crate::support::{
    Env, Result, TIMEOUT, TestFn, ensure, eventually, expect_audit, test_list, uid_of, wait_event, wait_for, wait_phase,
};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    test_list!("revocation": setting_revoked_removes_the_binding_at_once, deleting_an_active_grant_revokes_and_records_it_before_the_grant_disappears, a_refused_binding_delete_keeps_the_grant_and_names_the_binding)
}

async fn active_binding(env: &Env, api: &Api<AccessGrant>, name: &str) -> Result<(AccessGrant, RoleBinding)> {
    let active = wait_phase(api, name, GrantPhase::Active).await?;
    let b = active
        .status
        .clone()
        .unwrap_or_default()
        .bindings
        .first()
        .cloned()
        .ok_or("no binding recorded")?;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), b.namespace.as_deref().unwrap_or_default());
    Ok((active, rbs.get(&b.name).await?))
}

async fn setting_revoked_removes_the_binding_at_once(env: &'static Env) -> Result<()> {
    let ns = env.namespace("revoke").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    api.create(&PostParams::default(), &grant(&ns, "oops", "alice", "edit", "8h")?)
        .await?;
    let (active, rb) = active_binding(env, &api, "oops").await?;
    let patch = serde_json::json!({"spec": {"revoked": true}});
    api.patch("oops", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    wait_for(
        &rbs,
        &rb.name_any(),
        "deleted",
        TIMEOUT,
        conditions::is_deleted(&uid_of(&rb)?),
    )
    .await?;
    let revoked = wait_phase(&api, "oops", GrantPhase::Revoked).await?;
    ensure(
        revoked.status.as_ref().is_some_and(|s| s.ended_at.is_some()),
        "endedAt recorded",
    )?;
    // The finalizer is released by a write of its own, just after the status is final.
    wait_for(&api, "oops", "released", TIMEOUT, |g: Option<&AccessGrant>| {
        g.is_some_and(|g| g.finalizers().is_empty())
    })
    .await?;
    let uid = uid_of(&active)?;
    wait_event(&env.admin, &ns, &uid, "Revoked").await?;
    expect_audit(env, &uid, &["Granted", "Revoked"]).await?;
    Ok(())
}

async fn deleting_an_active_grant_revokes_and_records_it_before_the_grant_disappears(env: &'static Env) -> Result<()> {
    let ns = env.namespace("delete-revokes").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    api.create(&PostParams::default(), &grant(&ns, "bye", "alice", "edit", "8h")?)
        .await?;
    let (active, rb) = active_binding(env, &api, "bye").await?;
    ensure(
        active.finalizers().iter().any(|f| f == "jitrbac.io/revoke-access"),
        "active grant has the finalizer",
    )?;
    let uid = uid_of(&active)?;
    api.delete("bye", &DeleteParams::default()).await?;
    wait_for(&api, "bye", "deleted", TIMEOUT, conditions::is_deleted(&uid)).await?;
    // By the time the grant is gone, the binding is gone and the revocation is on record.
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    ensure(
        rbs.get_opt(&rb.name_any()).await?.is_none(),
        "binding deleted before the grant",
    )?;
    expect_audit(env, &uid, &["Granted", "Revoked"]).await?;
    let line = env
        .audit_lines()
        .into_iter()
        .find(|l| l["grant"]["uid"] == uid.as_str() && l["action"] == "Revoked")
        .ok_or("no Revoked audit line")?;
    ensure(line["reason"] == "GrantDeleted", format!("reason {}", line["reason"]))?;
    wait_event(&env.admin, &ns, &uid, "Revoked").await?;
    Ok(())
}

async fn a_refused_binding_delete_keeps_the_grant_and_names_the_binding(env: &'static Env) -> Result<()> {
    let ns = env.namespace("stuck").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    api.create(&PostParams::default(), &grant(&ns, "stuck", "alice", "edit", "8h")?)
        .await?;
    let (active, rb) = active_binding(env, &api, "stuck").await?;

    // Something else (here an admission policy) refuses every RoleBinding delete in this
    // namespace.
    let policy_name = format!("refuse-rolebinding-delete-{ns}");
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": policy_name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "resourceRules": [{"apiGroups": ["rbac.authorization.k8s.io"], "apiVersions": ["v1"],
                                   "operations": ["DELETE"], "resources": ["rolebindings"]}]
            },
            "validations": [{"expression": "false", "message": "RoleBinding deletes are frozen in this namespace"}]
        }
    }))?;
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": policy_name},
        "spec": {"policyName": policy_name, "validationActions": ["Deny"]}
    }))?;
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(env.admin.clone());
    let policy_bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(env.admin.clone());
    policies.create(&PostParams::default(), &policy).await?;
    policy_bindings.create(&PostParams::default(), &binding).await?;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    let probe = RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some("probe".into()),
            ..Default::default()
        },
        role_ref: rb.role_ref.clone(),
        subjects: None,
    };
    rbs.create(&PostParams::default(), &probe).await?;
    let dry = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    eventually("the policy refuses deletes", TIMEOUT, || async {
        Ok(rbs.delete("probe", &dry).await.is_err())
    })
    .await?;

    let uid = uid_of(&active)?;
    api.delete("stuck", &DeleteParams::default()).await?;
    let warning = wait_event(&env.admin, &ns, &uid, "RevocationFailed").await?;
    let note = warning.note.unwrap_or_default();
    ensure(
        note.contains(&rb.name_any()),
        format!("the Warning names the binding: {note}"),
    )?;
    ensure(warning.type_.as_deref() == Some("Warning"), "it is a Warning")?;
    let still = api.get("stuck").await?;
    ensure(
        still.metadata.deletion_timestamp.is_some(),
        "the grant is being deleted",
    )?;
    ensure(
        still.finalizers().iter().any(|f| f == "jitrbac.io/revoke-access"),
        "the finalizer holds it",
    )?;
    ensure(
        rbs.get_opt(&rb.name_any()).await?.is_some(),
        "the binding is still there",
    )?;

    // Once deletes are allowed again, revocation completes and the grant goes away.
    policy_bindings.delete(&policy_name, &DeleteParams::default()).await?;
    policies.delete(&policy_name, &DeleteParams::default()).await?;
    wait_for(&api, "stuck", "deleted", TIMEOUT, conditions::is_deleted(&uid)).await?;
    ensure(rbs.get_opt(&rb.name_any()).await?.is_none(), "binding deleted")?;
    expect_audit(env, &uid, &["Granted", "Revoked"]).await?;
    Ok(())
}
