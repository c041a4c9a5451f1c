//! The CRD schema rejects bad grants at admission: nothing is stored, nothing is created.

use jitrbac::api::{AccessGrant, GrantDuration};
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::support::{Env, Result, TestFn, ensure, grant_with, test_list};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    test_list!("admission": invalid_grants_are_rejected_with_a_clear_message, the_api_server_and_the_rust_parser_agree_on_every_duration, spec_is_immutable_except_revoking_once)
}

/// Each case: a name, a spec, and a piece of the message the API server must return.
const CASES: &[(&str, &str, &str)] = &[
    (
        "empty-subjects",
        "subjects: []\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h",
        "should have at least 1 items",
    ),
    (
        "both-ends",
        "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h\nexpiresAt: \"2030-01-01T00:00:00Z\"",
        "set exactly one of duration",
    ),
    (
        "no-end",
        "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}",
        "set exactly one of duration",
    ),
    (
        "word-duration",
        "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nduration: forever",
        "spec.duration",
    ),
    (
        "fraction-duration",
        "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1.5h",
        "spec.duration",
    ),
    (
        "zero-duration",
        "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 0s",
        "duration must be greater than zero",
    ),
    (
        "unknown-kind",
        "subjects: [{kind: Robot, name: r2d2}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h",
        "Unsupported value: \"Robot\"",
    ),
    (
        "sa-without-namespace",
        "subjects: [{kind: ServiceAccount, name: deployer}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h",
        "a ServiceAccount subject needs a namespace",
    ),
    (
        "user-with-wrong-group",
        "subjects: [{kind: User, name: alice, apiGroup: example.com}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h",
        "apiGroup must be rbac.authorization.k8s.io",
    ),
    (
        "zoneless-time",
        "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nexpiresAt: \"2030-01-01T00:00:00\"",
        "spec.expiresAt",
    ),
    (
        "window-closed-before-open",
        "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nstartsAt: \"2030-01-01T12:00:00Z\"\nexpiresAt: \"2030-01-01T13:00:00+02:00\"",
        "startsAt must be before expiresAt",
    ),
    (
        "role-name-with-query",
        "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: \"view?x=1\"}\nduration: 1h",
        "roleRef.name must be a role name",
    ),
    (
        "role-name-dot-dot",
        "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: \"..\"}\nduration: 1h",
        "roleRef.name must be a role name",
    ),
    (
        "newline-in-subject",
        "subjects: [{kind: User, name: \"alice\\nFAKE LOG LINE\"}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h",
        "control characters",
    ),
    (
        "bidi-override-in-subject",
        "subjects: [{kind: User, name: \"ecila\\u202Eadmin\"}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h",
        "invisible formatting characters",
    ),
    (
        "c1-control-in-subject",
        "subjects: [{kind: User, name: \"alice\\u009b31m\"}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h",
        "control characters",
    ),
    (
        "hangul-filler-in-subject",
        "subjects: [{kind: User, name: \"alice\\u3164\"}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h",
        "Hangul fillers",
    ),
    (
        "carriage-return-in-reason",
        "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h\nreason: \"x\\rINC-1 looks fine\"",
        "reason cannot contain control characters",
    ),
    (
        "terminal-escape-in-reason",
        "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h\nreason: \"INC-1 \\e[31mAPPROVED BY SECURITY\"",
        "reason cannot contain control characters",
    ),
    (
        "sa-namespace-not-a-label",
        "subjects: [{kind: ServiceAccount, name: deployer, namespace: Not_A_NS}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h",
        "lowercase DNS label",
    ),
    (
        "bad-role-kind",
        "subjects: [{kind: User, name: alice}]\nroleRef: {kind: Admin, name: view}\nduration: 1h",
        "Unsupported value: \"Admin\"",
    ),
];

/// Creates `spec` as raw JSON (most cases cannot be expressed by the Rust types), with
/// `dry_run` if asked; returns the API server's refusal, or `None` if it accepted.
async fn try_create(env: &Env, ns: &str, name: &str, spec: &str, dry_run: bool) -> Result<Option<kube::core::Status>> {
    let spec = spec.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n");
    let yaml =
        format!("apiVersion: jitrbac.io/v1alpha1\nkind: AccessGrant\nmetadata:\n  name: {name}\nspec:\n{spec}\n");
    let obj: kube::api::DynamicObject = serde_saphyr::from_str(&yaml)?;
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.admin.clone(),
        ns,
        &kube::api::ApiResource::erase::<AccessGrant>(&()),
    );
    let params = PostParams {
        dry_run,
        ..PostParams::default()
    };
    match raw.create(&params, &obj).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(status)) => Ok(Some(*status)),
        Err(other) => Err(other.into()),
    }
}

async fn invalid_grants_are_rejected_with_a_clear_message(env: &'static Env) -> Result<()> {
    let ns = env.namespace("admission").await?;
    for (name, spec, expected) in CASES {
        let Some(status) = try_create(env, &ns, name, spec, false).await? else {
            return Err(format!("{name}: the API server accepted an invalid grant").into());
        };
        ensure(
            status.code == 422,
            format!("{name}: expected 422, got {}: {}", status.code, status.message),
        )?;
        ensure(
            status.message.contains(expected),
            format!("{name}: message {:?} does not mention {expected:?}", status.message),
        )?;
    }
    let long_name = "g".repeat(201);
    let ok_spec = "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h";
    let refusal = try_create(env, &ns, &long_name, ok_spec, false)
        .await?
        .ok_or("a 201-character name was accepted")?;
    ensure(
        refusal.message.contains("limited to 200 characters"),
        format!("long name: {}", refusal.message),
    )?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    ensure(
        api.list(&Default::default()).await?.items.is_empty(),
        "no invalid grant was stored",
    )?;
    // The same shape with valid content is accepted, so the rejections are about content.
    let ok = "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h30m";
    ensure(
        try_create(env, &ns, "valid", ok, false).await?.is_none(),
        "a valid grant is accepted",
    )?;
    Ok(())
}

/// One grammar, two implementations: the CRD schema (pattern + CEL) and the Rust parser.
const DURATIONS: &[&str] = &[
    "90m", "1h30m", "8h", "1d", "1d2h3m4s", "45s", "0h1s", "1h90m", "999999d", "0s", "0h0m", "-1h", "", "forever",
    "1y", "1.5.h", "1.5h", "PT1H", "1h 30m", "30m1h", "1h1h", "1H", "h", "1", "1234567h", "1d1d", " 1h", "1h\n", "١h",
    "+1h",
];

async fn the_api_server_and_the_rust_parser_agree_on_every_duration(env: &'static Env) -> Result<()> {
    let ns = env.namespace("durations").await?;
    let mut disagreements = Vec::new();
    for (i, d) in DURATIONS.iter().enumerate() {
        let spec = format!(
            "subjects: [{{kind: User, name: alice}}]\nroleRef: {{kind: ClusterRole, name: view}}\nduration: {}",
            serde_json::to_string(d)?
        );
        let server_accepts = try_create(env, &ns, &format!("d{i}"), &spec, true).await?.is_none();
        let rust_accepts = GrantDuration::parse(d).is_ok();
        if server_accepts != rust_accepts {
            disagreements.push(format!("{d:?}: API server {server_accepts}, Rust {rust_accepts}"));
        }
    }
    ensure(disagreements.is_empty(), format!("disagreements: {disagreements:?}"))?;
    ensure(GrantDuration::parse("90m")?.as_secs() == 5400, "90m = 5400 s")?;
    ensure(GrantDuration::parse("1h30m")?.as_secs() == 5400, "1h30m = 5400 s")?;
    ensure(GrantDuration::parse("1d")?.as_secs() == 86_400, "1d = 86400 s")?;
    Ok(())
}

async fn spec_is_immutable_except_revoking_once(env: &'static Env) -> Result<()> {
    let ns = env.namespace("immutable").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let g = grant_with(
        &ns,
        "fixed",
        "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nstartsAt: \"2030-01-01T00:00:00Z\"\nduration: 1h\nreason: INC-1",
    )?;
    api.create(&PostParams::default(), &g).await?;
    let changes = [
        (
            "roleRef",
            serde_json::json!({"spec": {"roleRef": {"kind": "ClusterRole", "name": "admin"}}}),
        ),
        (
            "subjects",
            serde_json::json!({"spec": {"subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "mallory"}]}}),
        ),
        ("duration", serde_json::json!({"spec": {"duration": "8h"}})),
        (
            "startsAt",
            serde_json::json!({"spec": {"startsAt": "2029-01-01T00:00:00Z"}}),
        ),
        ("startsAt removed", serde_json::json!({"spec": {"startsAt": null}})),
        ("reason", serde_json::json!({"spec": {"reason": "something else"}})),
    ];
    for (what, patch) in changes {
        match api.patch("fixed", &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => return Err(format!("changing {what} was accepted").into()),
            Err(kube::Error::Api(s)) => ensure(
                s.code == 422 && s.message.contains("create a new AccessGrant"),
                format!("changing {what}: {} {}", s.code, s.message),
            )?,
            Err(e) => return Err(e.into()),
        }
    }
    let revoke = serde_json::json!({"spec": {"revoked": true}});
    api.patch("fixed", &PatchParams::default(), &Patch::Merge(&revoke))
        .await?;
    let unrevoke = serde_json::json!({"spec": {"revoked": false}});
    match api
        .patch("fixed", &PatchParams::default(), &Patch::Merge(&unrevoke))
        .await
    {
        Ok(_) => Err("un-revoking was accepted".into()),
        Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("revoked cannot be undone") => Ok(()),
        Err(e) => Err(e.into()),
    }
}
