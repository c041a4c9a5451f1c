//! Installing like platform teams do, on a real control plane: the Helm chart (lint,
//! render, bad values, install, upgrade with a CRD change, uninstall keeping grants), the
//! plain manifests in `deploy/`, and least privilege: the operator run with a real token
//! of the chart's ServiceAccount carries grants through their life, and cannot bind a role
//! outside `grantableRoles`. Serial, in its own control plane; the CRDs come from the chart.

#![allow(clippy::print_stderr, missing_docs)]

#[path = "../support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::sync::OnceLock;

use jitrbac::api::{AccessGrant, GrantPhase};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};
use kube::runtime::wait::conditions;

use support::{
    Env, Operator, Result, TIMEOUT, TestFn, ensure, expect_audit, grant_with, lock, ready_condition, test_list, uid_of,
    wait_event, wait_for, wait_phase,
};

/// Release name and namespace, as in the README.
const RELEASE: &str = "jitrbac";
const NAMESPACE: &str = "jitrbac-system";

fn main() -> ExitCode {
    let tests: Vec<(&'static str, TestFn)> = test_list!(
        "install":
        the_chart_lints_and_deploy_matches_its_default_rendering,
        kubectl_apply_k_deploy_installs_the_same_objects,
        bad_values_fail_helm_install_with_a_readable_error,
        helm_upgrade_applies_crd_changes_and_uninstall_keeps_users_grants,
        the_chart_service_account_carries_a_grant_through_its_whole_life,
        a_role_outside_grantable_roles_is_refused_by_the_operator_and_the_api_server,
    );
    support::harness::main(
        "install",
        tests,
        support::harness::Options {
            serial: true,
            operator: false,
            crds: false,
        },
    )
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tool(env: &Env, name: &str) -> Result<PathBuf> {
    Ok(lock(&env.cp).as_ref().ok_or("control plane stopped")?.tool(name))
}

/// Runs `helm` or `kubectl` against the test control plane, from the repository root.
fn run(env: &Env, name: &str, args: &[&str]) -> Result<Output> {
    Ok(Command::new(tool(env, name)?)
        .args(args)
        .current_dir(repo())
        .env("KUBECONFIG", env.dir.join("kubeconfig"))
        .env("HELM_CACHE_HOME", env.dir.join("helm/cache"))
        .env("HELM_CONFIG_HOME", env.dir.join("helm/config"))
        .env("HELM_DATA_HOME", env.dir.join("helm/data"))
        .output()?)
}

/// Like [`run`], failing with the command's output unless it succeeds.
fn run_ok(env: &Env, name: &str, args: &[&str]) -> Result<String> {
    let out = run(env, name, args)?;
    ensure(
        out.status.success(),
        format!(
            "{name} {}: {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The port of the operator's webhook server: the chart's webhook configurations reach it
/// by URL (there is no kubelet, so no pod behind the webhook Service).
fn webhook_port() -> Result<u16> {
    static PORT: OnceLock<u16> = OnceLock::new();
    if let Some(p) = PORT.get() {
        return Ok(*p);
    }
    let port = support::controlplane::free_port()?;
    Ok(*PORT.get_or_init(|| port))
}

/// Installs (or upgrades to) `chart` with default values, except that the webhooks are
/// reached by URL.
fn install(env: &Env, chart: &str) -> Result<()> {
    let url = format!("webhook.url=https://127.0.0.1:{}", webhook_port()?);
    run_ok(
        env,
        "helm",
        &[
            "upgrade",
            "--install",
            RELEASE,
            chart,
            "-n",
            NAMESPACE,
            "--create-namespace",
            "--set",
            &url,
        ],
    )?;
    Ok(())
}

/// Installs (or upgrades to) the chart in this repository.
fn install_chart(env: &Env) -> Result<()> {
    install(env, "charts/jitrbac")
}

async fn the_chart_lints_and_deploy_matches_its_default_rendering(env: &'static Env) -> Result<()> {
    run_ok(env, "helm", &["lint", "--strict", "charts/jitrbac"])?;
    let rendered = run_ok(env, "helm", &["template", RELEASE, "charts/jitrbac", "-n", NAMESPACE])?;
    for kind in [
        "CustomResourceDefinition",
        "ClusterRole",
        "Deployment",
        "ServiceAccount",
    ] {
        ensure(
            rendered.contains(&format!("kind: {kind}")),
            format!("the chart renders a {kind}"),
        )?;
    }
    let check = Command::new("bash")
        .args(["hack/render-deploy.sh", "--check"])
        .current_dir(repo())
        .output()?;
    ensure(
        check.status.success(),
        format!(
            "deploy/ drifted from the chart (run make deploy):\n{}",
            String::from_utf8_lossy(&check.stdout)
        ),
    )?;
    Ok(())
}

async fn bad_values_fail_helm_install_with_a_readable_error(env: &'static Env) -> Result<()> {
    let cases: [(&str, &str); 4] = [
        ("nonsense=1", "additional properties 'nonsense' not allowed"),
        ("replicaCount=abc", "replicaCount"),
        ("operator.maxDuration=forever", "maxDuration"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
    ];
    for (set, expected) in cases {
        let out = run(
            env,
            "helm",
            &[
                "install",
                "bad",
                "charts/jitrbac",
                "-n",
                "bad-values",
                "--dry-run=server",
                "--set",
                set,
            ],
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure(!out.status.success(), format!("--set {set} was accepted"))?;
        ensure(
            stderr.contains(expected),
            format!("--set {set}: the error does not name {expected:?}: {stderr}"),
        )?;
    }
    Ok(())
}

/// A copy of the chart as an "earlier version": version 0.0.1, and a CRD without
/// `spec.revoked` (a field that later versions added).
fn previous_chart(env: &Env) -> Result<PathBuf> {
    let dir = env.dir.join("previous-chart/jitrbac");
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&repo().join("charts/jitrbac"), &dir)?;
    let chart = std::fs::read_to_string(dir.join("Chart.yaml"))?.replace("version: 0.1.0", "version: 0.0.1");
    std::fs::write(dir.join("Chart.yaml"), chart)?;
    let crd_path = dir.join("files/crds/accessgrants.jitrbac.io.yaml");
    let mut crd: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(&crd_path)?)?;
    let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    spec["properties"]
        .as_object_mut()
        .ok_or("no spec properties")?
        .remove("revoked");
    let rules = spec["x-kubernetes-validations"].as_array_mut().ok_or("no rules")?;
    rules.retain(|r| !r["rule"].as_str().unwrap_or_default().contains("revoked"));
    std::fs::write(&crd_path, serde_saphyr::to_string(&crd)?)?;
    Ok(dir)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn crd_has_revoked(crd: &CustomResourceDefinition) -> bool {
    crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| s.properties.as_ref())
        .and_then(|p| p.get("spec"))
        .and_then(|s| s.properties.as_ref())
        .is_some_and(|p| p.contains_key("revoked"))
}

async fn helm_upgrade_applies_crd_changes_and_uninstall_keeps_users_grants(env: &'static Env) -> Result<()> {
    let previous = previous_chart(env)?;
    let previous = previous.display().to_string();
    install(env, &previous)?;
    operator_as_chart_identity(env, true).await?;
    let crds: Api<CustomResourceDefinition> = Api::all(env.admin.clone());
    let name = "accessgrants.jitrbac.io";
    wait_for(&crds, name, "established", TIMEOUT, conditions::is_crd_established()).await?;
    ensure(
        !crd_has_revoked(&crds.get(name).await?),
        "the previous chart's CRD lacks spec.revoked",
    )?;

    install_chart(env)?;
    ensure(
        crd_has_revoked(&crds.get(name).await?),
        "helm upgrade applied the new CRD schema",
    )?;

    let ns = env.namespace("kept").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let spec = "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h";
    api.create(&PostParams::default(), &grant_with(&ns, "keep-me", spec)?)
        .await?;
    run_ok(env, "helm", &["uninstall", RELEASE, "-n", NAMESPACE])?;
    ensure(crds.get_opt(name).await?.is_some(), "helm uninstall keeps the CRD")?;
    ensure(
        api.get_opt("keep-me").await?.is_some(),
        "helm uninstall keeps users' grants",
    )?;
    // Reinstalling adopts the kept CRD (the next tests need the chart installed); the
    // ServiceAccount is new, so the operator needs a new token.
    install_chart(env)?;
    operator_as_chart_identity(env, true).await?;
    Ok(())
}

async fn kubectl_apply_k_deploy_installs_the_same_objects(env: &'static Env) -> Result<()> {
    // Before the chart is installed (tests run in order): a server-side dry run against the
    // real API server validates every object. The namespace must exist for the dry run of
    // the objects in it.
    run_ok(env, "kubectl", &["create", "namespace", NAMESPACE])?;
    let out = run_ok(env, "kubectl", &["apply", "-k", "deploy/", "--dry-run=server"])?;
    for object in [
        "serviceaccount/jitrbac",
        "clusterrole.rbac.authorization.k8s.io/jitrbac",
        "deployment.apps/jitrbac",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/jitrbac",
        "validatingadmissionpolicy.admissionregistration.k8s.io/jitrbac-requester",
    ] {
        ensure(
            out.contains(object),
            format!("kubectl apply -k deploy/ includes {object}:\n{out}"),
        )?;
    }
    Ok(())
}

/// Writes a kubeconfig that authenticates with a real TokenRequest token of the chart's
/// ServiceAccount.
async fn chart_identity_kubeconfig(env: &Env) -> Result<PathBuf> {
    let token = env.service_account_token(NAMESPACE, RELEASE).await?;
    let server = lock(&env.cp).as_ref().ok_or("control plane stopped")?.server.clone();
    let path = env.dir.join("chart-identity.kubeconfig");
    let config = Kubeconfig {
        clusters: vec![NamedCluster {
            name: "local".into(),
            cluster: Some(Cluster {
                server: Some(server),
                certificate_authority: Some(env.dir.join("pki/ca.crt").display().to_string()),
                ..Cluster::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "jitrbac".into(),
            auth_info: Some(AuthInfo {
                token: Some(token.into()),
                ..AuthInfo::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: "jitrbac".into(),
            context: Some(Context {
                cluster: "local".into(),
                user: Some("jitrbac".into()),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        current_context: Some("jitrbac".into()),
        ..Kubeconfig::default()
    };
    std::fs::write(&path, serde_saphyr::to_string(&config)?)?;
    Ok(path)
}

/// Starts the operator as the chart's ServiceAccount, with the flags of the chart's
/// Deployment (leader election, webhooks with self-managed TLS, protected namespaces);
/// `restart` replaces a running one.
async fn operator_as_chart_identity(env: &Env, restart: bool) -> Result<()> {
    if lock(&env.operator).is_some() && !restart {
        return Ok(());
    }
    env.kill_operator();
    let kubeconfig = chart_identity_kubeconfig(env).await?;
    let webhook_addr = format!("127.0.0.1:{}", webhook_port()?);
    let args = [
        "--leader-election",
        "--leader-election-namespace",
        NAMESPACE,
        "--leader-election-lease-name",
        RELEASE,
        "--protected-namespaces",
        "kube-system,kube-public,kube-node-lease,jitrbac-system",
        "--webhook-addr",
        &webhook_addr,
        "--webhook-hosts",
        "127.0.0.1",
        "--webhook-secret",
        "jitrbac-webhook-tls",
        "--webhook-secret-namespace",
        NAMESPACE,
        "--webhook-configuration",
        RELEASE,
    ];
    *lock(&env.operator) = Some(Operator::start(&env.dir, "operator", &kubeconfig, &args)?);
    // Admission works once the operator has published its CA into the configurations.
    let probe = grant_with(
        "default",
        "admission-probe",
        "subjects: [{kind: User, name: probe}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1m",
    )?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), "default");
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    support::eventually("the chart's webhooks answer", TIMEOUT, || async {
        Ok(api.create(&dry, &probe).await.is_ok_and(|g| g.spec.requester.is_some()))
    })
    .await
}

async fn the_chart_service_account_carries_a_grant_through_its_whole_life(env: &'static Env) -> Result<()> {
    install_chart(env)?;
    operator_as_chart_identity(env, false).await?;
    let ns = env.namespace("least-privilege").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);

    // Grant, drift repair, revocation.
    let spec = "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: edit}\nduration: 1h";
    let created = api
        .create(&PostParams::default(), &grant_with(&ns, "long", spec)?)
        .await?;
    let uid = uid_of(&created)?;
    let active = wait_phase(&api, "long", GrantPhase::Active).await?;
    let b = active
        .status
        .clone()
        .unwrap_or_default()
        .bindings
        .first()
        .cloned()
        .ok_or("no binding")?;
    rbs.delete(&b.name, &DeleteParams::default()).await?;
    wait_event(&env.admin, &ns, &uid, "DriftRepaired").await?;
    let revoke = serde_json::json!({"spec": {"revoked": true}});
    api.patch("long", &PatchParams::default(), &Patch::Merge(&revoke))
        .await?;
    wait_phase(&api, "long", GrantPhase::Revoked).await?;

    // Expiry.
    let spec = "subjects: [{kind: User, name: bob}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 3s";
    let short = api
        .create(&PostParams::default(), &grant_with(&ns, "short", spec)?)
        .await?;
    wait_phase(&api, "short", GrantPhase::Active).await?;
    let expired = wait_phase(&api, "short", GrantPhase::Expired).await?;
    let status = expired.status.unwrap_or_default();
    ensure(
        status.ended_at.is_some() && status.conditions.iter().any(|c| c.type_ == "Ready"),
        "status recorded",
    )?;
    wait_event(&env.admin, &ns, &uid_of(&short)?, "Expired").await?;
    ensure(rbs.list(&Default::default()).await?.items.is_empty(), "no binding left")?;
    expect_audit(env, &uid, &["Granted", "DriftRepaired", "Revoked"]).await?;

    // Deleting a grant goes through the finalizer with the chart's permissions too.
    api.delete("short", &DeleteParams::default()).await?;
    wait_for(
        &api,
        "short",
        "deleted",
        TIMEOUT,
        conditions::is_deleted(&uid_of(&short)?),
    )
    .await?;
    no_secrets_in_logs(env).await
}

/// Checks that neither the operator's logs nor its audit lines contain its ServiceAccount
/// token, its webhook private key, or anything shaped like a token or a key.
async fn no_secrets_in_logs(env: &Env) -> Result<()> {
    let kubeconfig: Kubeconfig =
        serde_saphyr::from_str(&std::fs::read_to_string(env.dir.join("chart-identity.kubeconfig"))?)?;
    let config = serde_json::to_value(&kubeconfig)?;
    let token = config["users"][0]["user"]["token"]
        .as_str()
        .ok_or("no token in the kubeconfig")?
        .to_owned();
    let secrets: Api<Secret> = Api::namespaced(env.admin.clone(), NAMESPACE);
    let tls = secrets.get("jitrbac-webhook-tls").await?;
    let key = tls
        .data
        .and_then(|d| d.get("tls.key").cloned())
        .ok_or("no tls.key in the webhook Secret")?;
    let key = String::from_utf8(key.0)?;
    let key_line = key.lines().nth(1).ok_or("empty key")?.to_owned();
    let (log, audit) = {
        let op = lock(&env.operator);
        let op = op.as_ref().ok_or("no operator")?;
        (op.log.clone(), op.audit.clone())
    };
    for path in [log, audit] {
        let text = std::fs::read_to_string(&path)?;
        ensure(
            text.len() > 1000,
            format!("{} is too short to prove anything", path.display()),
        )?;
        for (what, needle) in [
            ("the ServiceAccount token", token.as_str()),
            ("the token's signature", token.rsplit('.').next().unwrap_or(&token)),
            ("the webhook private key", key_line.as_str()),
            ("a JWT", "eyJhbGciOi"),
            ("a PEM private key", "PRIVATE KEY"),
            ("an Authorization header", "Bearer "),
        ] {
            ensure(!text.contains(needle), format!("{} contains {what}", path.display()))?;
        }
    }
    Ok(())
}

async fn a_role_outside_grantable_roles_is_refused_by_the_operator_and_the_api_server(env: &'static Env) -> Result<()> {
    install_chart(env)?;
    operator_as_chart_identity(env, false).await?;
    let ns = env.namespace("forbidden").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let spec =
        "subjects: [{kind: User, name: mallory}]\nroleRef: {kind: ClusterRole, name: cluster-admin}\nduration: 1h";
    let g = api
        .create(&PostParams::default(), &grant_with(&ns, "power", spec)?)
        .await?;
    let pending = wait_phase(&api, "power", GrantPhase::Pending).await?;
    let ready = ready_condition(&pending);
    ensure(
        ready.as_ref().is_some_and(|c| c.reason == "Forbidden"),
        format!("Ready: {ready:?}"),
    )?;
    wait_event(&env.admin, &ns, &uid_of(&g)?, "Forbidden").await?;

    // A Role made only of permissions the operator itself holds would pass the API
    // server's escalation check; the operator still refuses it (not in grantableRoles).
    let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "binding-manager"},
        "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["get", "list"]}]
    }))?;
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(env.admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await?;
    let spec = "subjects: [{kind: User, name: mallory}]\nroleRef: {kind: Role, name: binding-manager}\nduration: 1h";
    api.create(&PostParams::default(), &grant_with(&ns, "subset", spec)?)
        .await?;
    let pending = wait_phase(&api, "subset", GrantPhase::Pending).await?;
    let ready = ready_condition(&pending);
    ensure(
        ready.as_ref().is_some_and(|c| c.reason == "Forbidden"),
        format!("Ready: {ready:?}"),
    )?;
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    ensure(
        rbs.list(&Default::default()).await?.items.is_empty(),
        "nothing was bound",
    )?;

    // And the API server itself refuses the chart's identity a binding to cluster-admin.
    let sa = env.service_account(NAMESPACE, RELEASE).await?;
    let attempt = RoleBinding {
        metadata: ObjectMeta {
            name: Some("direct-attempt".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "cluster-admin".into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: "mallory".into(),
            namespace: None,
        }]),
    };
    match Api::<RoleBinding>::namespaced(sa, &ns)
        .create(&PostParams::default(), &attempt)
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => return Err(format!("the API server should refuse the binding: {other:?}").into()),
    }
    Ok(())
}
