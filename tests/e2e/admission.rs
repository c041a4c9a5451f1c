//! The CRD schema rejects bad grants at admission: nothing is stored, nothing is created.

use jitrbac::api::AccessGrant;
use kube::api::{Api, PostParams};

use crate::support::{Env, Result, TestFn, ensure, grant_yaml};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![("admission::invalid_grants_are_rejected_with_a_clear_message", |e| {
        Box::pin(invalid_grants_are_rejected_with_a_clear_message(e))
    })]
}

/// Each case: a spec fragment and a piece of the message the API server must return.
const CASES: &[(&str, &str, &str)] = &[
    (
        "empty-subjects",
        "subjects: []\n  roleRef: {kind: ClusterRole, name: view}\n  duration: 1h",
        "should have at least 1 items",
    ),
    (
        "both-ends",
        "subjects: [{kind: User, name: alice}]\n  roleRef: {kind: ClusterRole, name: view}\n  duration: 1h\n  expiresAt: \"2030-01-01T00:00:00Z\"",
        "set exactly one of duration",
    ),
    (
        "no-end",
        "subjects: [{kind: User, name: alice}]\n  roleRef: {kind: ClusterRole, name: view}",
        "set exactly one of duration",
    ),
    (
        "word-duration",
        "subjects: [{kind: User, name: alice}]\n  roleRef: {kind: ClusterRole, name: view}\n  duration: forever",
        "spec.duration",
    ),
    (
        "fraction-duration",
        "subjects: [{kind: User, name: alice}]\n  roleRef: {kind: ClusterRole, name: view}\n  duration: 1.5h",
        "spec.duration",
    ),
    (
        "zero-duration",
        "subjects: [{kind: User, name: alice}]\n  roleRef: {kind: ClusterRole, name: view}\n  duration: 0s",
        "duration must be greater than zero",
    ),
    (
        "unknown-kind",
        "subjects: [{kind: Robot, name: r2d2}]\n  roleRef: {kind: ClusterRole, name: view}\n  duration: 1h",
        "Unsupported value: \"Robot\"",
    ),
    (
        "sa-without-namespace",
        "subjects: [{kind: ServiceAccount, name: deployer}]\n  roleRef: {kind: ClusterRole, name: view}\n  duration: 1h",
        "a ServiceAccount subject needs a namespace",
    ),
    (
        "zoneless-time",
        "subjects: [{kind: User, name: alice}]\n  roleRef: {kind: ClusterRole, name: view}\n  expiresAt: \"2030-01-01T00:00:00\"",
        "spec.expiresAt",
    ),
    (
        "bad-role-kind",
        "subjects: [{kind: User, name: alice}]\n  roleRef: {kind: Admin, name: view}\n  duration: 1h",
        "Unsupported value: \"Admin\"",
    ),
];

async fn invalid_grants_are_rejected_with_a_clear_message(env: &'static Env) -> Result<()> {
    let ns = env.namespace("admission").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    // The grant is built as raw JSON: most of these cannot even be expressed by the Rust type.
    for (name, spec, expected) in CASES {
        let yaml =
            format!("apiVersion: jitrbac.io/v1alpha1\nkind: AccessGrant\nmetadata:\n  name: {name}\nspec:\n  {spec}\n");
        let value: serde_json::Value = serde_saphyr::from_str(&yaml)?;
        let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
            env.admin.clone(),
            &ns,
            &kube::api::ApiResource::erase::<AccessGrant>(&()),
        );
        let obj: kube::api::DynamicObject = serde_json::from_value(value)?;
        match raw.create(&PostParams::default(), &obj).await {
            Ok(_) => return Err(format!("{name}: the API server accepted an invalid grant").into()),
            Err(kube::Error::Api(status)) => {
                ensure(
                    status.code == 422,
                    format!("{name}: expected 422, got {}: {}", status.code, status.message),
                )?;
                ensure(
                    status.message.contains(expected),
                    format!("{name}: message {:?} does not mention {expected:?}", status.message),
                )?;
            }
            Err(other) => return Err(other.into()),
        }
    }
    ensure(
        api.list(&Default::default()).await?.items.is_empty(),
        "no invalid grant was stored",
    )?;
    // A valid grant in the same shape is accepted, so the rejections above are about content.
    let ok = grant_yaml(&format!(
        "apiVersion: jitrbac.io/v1alpha1\nkind: AccessGrant\nmetadata:\n  name: valid\n  namespace: {ns}\nspec:\n  subjects: [{{kind: User, name: alice}}]\n  roleRef: {{kind: ClusterRole, name: view}}\n  duration: 1h30m\n"
    ))?;
    api.create(&PostParams::default(), &ok).await?;
    Ok(())
}
