//! Shared harness of the integration tests: one real control plane and one operator
//! process per test binary, a namespace per test, identities, and waits on watches.

#![allow(dead_code)]

pub mod admission;
pub mod controlplane;
pub mod harness;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jitrbac::api::{AccessGrant, GrantPhase};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::wait::{Condition, await_condition};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, ResourceExt};

pub use controlplane::{ControlPlane, Error, Options, Result};

/// How long a test waits for an outcome before failing.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A boxed test body.
pub type TestFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;
/// A test: a name and a body that receives the shared environment.
pub type TestFn = fn(&'static Env) -> TestFuture;

/// The environment shared by every test of one binary.
pub struct Env {
    /// The control plane (behind a mutex so the harness can stop it at the end).
    pub cp: Mutex<Option<ControlPlane>>,
    /// The state directory of the control plane.
    pub dir: PathBuf,
    /// A client authenticated as cluster admin.
    pub admin: Client,
    /// The admin client configuration (for impersonation).
    pub admin_config: Config,
    /// The operator process.
    pub operator: Mutex<Option<Operator>>,
    /// The process serving the admission webhooks.
    pub webhook: Mutex<Option<Operator>>,
    webhook_args: Vec<String>,
    /// Whether the tests share one operator process (restored after each test).
    shared_operator: bool,
    namespaces: AtomicUsize,
}

/// A running `jitrbac run` process whose audit lines (stdout) and logs (stderr) go to files.
pub struct Operator {
    child: Child,
    /// `http://127.0.0.1:<port>` serving `/metrics`.
    pub metrics_url: String,
    /// `http://127.0.0.1:<port>` serving `/healthz` and `/readyz`.
    pub health_url: String,
    /// Where its standard output (the audit lines) goes.
    pub audit: PathBuf,
    /// Where its standard error (the logs) goes.
    pub log: PathBuf,
}

impl Operator {
    /// Starts `jitrbac run` with `args`, as the admin of the control plane in `dir` unless
    /// `kubeconfig` names another identity.
    pub fn start(dir: &std::path::Path, name: &str, kubeconfig: &std::path::Path, args: &[&str]) -> Result<Self> {
        Self::start_logging(dir, name, kubeconfig, args, "info,jitrbac=debug")
    }

    /// [`Operator::start`] with the log filter `log_level` (benchmarks log less).
    pub fn start_logging(
        dir: &std::path::Path,
        name: &str,
        kubeconfig: &std::path::Path,
        args: &[&str],
        log_level: &str,
    ) -> Result<Self> {
        let audit = dir.join(format!("{name}.audit.jsonl"));
        let log = dir.join(format!("{name}.log"));
        let (metrics, health) = (controlplane::free_port()?, controlplane::free_port()?);
        let child = Command::new(env!("CARGO_BIN_EXE_jitrbac"))
            .arg("run")
            .args(["--log-format", "json", "--log-level", log_level])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
            .args(["--health-addr", &format!("127.0.0.1:{health}")])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&audit)?)
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(Self {
            child,
            metrics_url: format!("http://127.0.0.1:{metrics}"),
            health_url: format!("http://127.0.0.1:{health}"),
            audit,
            log,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, if it has (without waiting).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Asks the process to stop (SIGTERM, as Kubernetes does) and waits for it to exit.
    pub fn terminate(&mut self) -> Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }

    /// Kills the process (SIGKILL: as abrupt as a node failure) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every audit line written so far, parsed.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Env {
    /// Starts the control plane (state under `target/tmp/<binary>`), installs the CRDs if
    /// `crds` and, if `operator`, starts one operator process as cluster admin.
    pub async fn start(binary: &str, operator: bool, crds: bool) -> Result<Self> {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(binary);
        controlplane::stop_detached(&dir)?;
        let _ = std::fs::remove_dir_all(&dir);
        let cp = ControlPlane::start(Options {
            dir: dir.clone(),
            crds: if crds { jitrbac::api::crd::all() } else { Vec::new() },
            detach: false,
        })
        .await?;
        let admin = cp.admin_client().await?;
        let admin_config = cp.admin_config().await?;
        // The admission layer: the chart's webhook configurations and policies, served by
        // a webhook-only process for the whole binary. Operators in these tests run as the
        // admin, so the admin may write grant status.
        let webhook = if crds {
            let port = controlplane::free_port()?;
            let objects = admission::render(&cp.tool("helm"), &format!("https://127.0.0.1:{port}"), &["admin"])?;
            admission::apply(&admin, &objects).await?;
            let args = [
                "--webhook-only",
                "--webhook-addr",
                &format!("127.0.0.1:{port}"),
                "--webhook-hosts",
                "127.0.0.1",
                "--webhook-secret-namespace",
                "default",
                "--webhook-configuration",
                "jitrbac",
            ];
            let webhook = Operator::start(&cp.dir, "webhook", &cp.kubeconfig(), &args)?;
            wait_for_admission(&admin, &admin_config).await?;
            Some((webhook, args.map(str::to_owned).to_vec()))
        } else {
            None
        };
        let operator = if operator {
            Some(Operator::start(&cp.dir, "operator", &cp.kubeconfig(), &[])?)
        } else {
            None
        };
        Ok(Self {
            dir: cp.dir.clone(),
            cp: Mutex::new(Some(cp)),
            admin,
            admin_config,
            shared_operator: operator.is_some(),
            operator: Mutex::new(operator),
            webhook_args: webhook.as_ref().map(|(_, a)| a.clone()).unwrap_or_default(),
            webhook: Mutex::new(webhook.map(|(w, _)| w)),
            namespaces: AtomicUsize::new(0),
        })
    }

    /// Stops the operator, the webhook server and the control plane.
    pub fn stop(&self) {
        if let Some(mut op) = lock(&self.operator).take() {
            op.kill();
        }
        if let Some(mut op) = lock(&self.webhook).take() {
            op.kill();
        }
        if let Some(mut cp) = lock(&self.cp).take() {
            cp.stop();
        }
    }

    /// Puts back what a test may have stopped and, by failing early, not restarted: the
    /// shared operator (if the binary has one) and the webhook server. Returns what it
    /// restarted, so that one failed test does not fail the ones after it.
    pub async fn restore(&self) -> Result<Vec<&'static str>> {
        let mut restored = Vec::new();
        if self.shared_operator && lock(&self.operator).is_none() {
            self.restart_operator("operator-restored", &[])?;
            restored.push("operator");
        }
        if !self.webhook_args.is_empty() && lock(&self.webhook).is_none() {
            self.restart_webhook().await?;
            restored.push("webhook");
        }
        Ok(restored)
    }

    /// The tail of every log (control plane, and every operator and webhook process the
    /// tests started, oldest first), for failed runs.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = lock(&self.cp).as_ref().map(|cp| cp.log_tail(lines)).unwrap_or_default();
        let mut logs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        for (_, log) in logs {
            controlplane::append_tail(&mut out, &log, lines);
        }
        out
    }

    /// Every audit line of the shared operator, parsed.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        lock(&self.operator)
            .as_ref()
            .map(Operator::audit_lines)
            .unwrap_or_default()
    }

    /// Every log line of the current operator process, parsed (JSON format).
    pub fn operator_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.operator_log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Log file of the current (or last) operator process.
    pub fn operator_log_path(&self) -> PathBuf {
        lock(&self.operator)
            .as_ref()
            .map(|o| o.log.clone())
            .unwrap_or_else(|| self.dir.join("operator.log"))
    }

    /// Replaces the operator with a new process started with `args` (the old one, if
    /// any, is killed first). Its audit lines and logs go to files named after `name`.
    pub fn restart_operator(&self, name: &str, args: &[&str]) -> Result<()> {
        let mut slot = lock(&self.operator);
        if let Some(mut old) = slot.take() {
            old.kill();
        }
        *slot = Some(Operator::start(&self.dir, name, &self.dir.join("kubeconfig"), args)?);
        Ok(())
    }

    /// The health and metrics base URLs of the current operator process.
    pub fn operator_urls(&self) -> Option<(String, String)> {
        lock(&self.operator)
            .as_ref()
            .map(|o| (o.health_url.clone(), o.metrics_url.clone()))
    }

    /// The metrics base URL of the webhook server process.
    pub fn webhook_metrics_url(&self) -> Option<String> {
        lock(&self.webhook).as_ref().map(|w| w.metrics_url.clone())
    }

    /// The arguments of the webhook server process (`--webhook-only` and the rest), with
    /// `addr` as its `--webhook-addr`; empty if the binary has no webhook server.
    pub fn webhook_args_at(&self, addr: &str) -> Vec<String> {
        let mut args = self.webhook_args.clone();
        if let Some(i) = args.iter().position(|a| a == "--webhook-addr")
            && let Some(value) = args.get_mut(i + 1)
        {
            *value = addr.to_owned();
        }
        args
    }

    /// Kills the webhook server (SIGKILL): from then on the API server refuses every grant
    /// and review (the webhooks fail closed).
    pub fn kill_webhook(&self) {
        if let Some(mut w) = lock(&self.webhook).take() {
            w.kill();
        }
    }

    /// Starts the webhook server again and waits until admission works.
    pub async fn restart_webhook(&self) -> Result<()> {
        let args: Vec<&str> = self.webhook_args.iter().map(String::as_str).collect();
        *lock(&self.webhook) = Some(Operator::start(
            &self.dir,
            "webhook-restarted",
            &self.dir.join("kubeconfig"),
            &args,
        )?);
        wait_for_admission(&self.admin, &self.admin_config).await
    }

    /// Kills the operator process (SIGKILL), leaving none running.
    pub fn kill_operator(&self) {
        if let Some(mut op) = lock(&self.operator).take() {
            op.kill();
        }
    }

    /// Kills kube-apiserver, runs `while_down`, then starts it again and waits until it is
    /// ready. Returns the instant it was ready again.
    pub async fn with_apiserver_down<F: Future<Output = Result<()>>>(&self, while_down: F) -> Result<jiff::Timestamp> {
        let mut cp = lock(&self.cp).take().ok_or("control plane stopped")?;
        let result = async {
            cp.kill_apiserver()?;
            while_down.await?;
            cp.restart_apiserver().await?;
            Ok(jiff::Timestamp::now())
        }
        .await;
        *lock(&self.cp) = Some(cp);
        result
    }

    /// Creates a fresh namespace for one test: `<hint>-<n>`.
    pub async fn namespace(&self, hint: &str) -> Result<String> {
        let n = self.namespaces.fetch_add(1, Ordering::SeqCst);
        let name = format!("{hint}-{n}");
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.admin.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(name)
    }

    /// A client that acts as `user` in `groups`, through impersonation by the admin. The
    /// API server authorizes every request as that user (RBAC applies).
    pub fn impersonate(&self, user: &str, groups: &[&str]) -> Result<Client> {
        let mut config = self.admin_config.clone();
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
        Ok(Client::try_from(config)?)
    }

    /// A client that authenticates with alice's client certificate (user `alice`, group
    /// `dev`): a real non-admin identity, no impersonation involved.
    pub async fn alice(&self) -> Result<Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.dir.join("alice.kubeconfig"))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// Creates ServiceAccount `name` in `namespace` (if missing) and returns a client that
    /// authenticates with a real token from the TokenRequest API.
    pub async fn service_account(&self, namespace: &str, name: &str) -> Result<Client> {
        let token = self.service_account_token(namespace, name).await?;
        let mut config = self.admin_config.clone();
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.into()),
            ..kube::config::AuthInfo::default()
        };
        Ok(Client::try_from(config)?)
    }

    /// Creates ServiceAccount `name` in `namespace` (if missing) and returns a one-hour
    /// token for it from the TokenRequest API.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> Result<String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), namespace);
        if api.get_opt(name).await?.is_none() {
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            };
            api.create(&PostParams::default(), &sa).await?;
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let issued = api.create_token_request(name, &PostParams::default(), &request).await?;
        Ok(issued.status.map(|s| s.token).ok_or("TokenRequest returned no token")?)
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test must not stop the cleanup).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits (on a watch) until `cond` holds for object `name`, at most `timeout`.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    cond: impl Condition<K>,
) -> Result<Option<K>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, cond)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(format!("timed out after {timeout:?} waiting for {name} to be {what}").into()),
    }
}

/// The `Ready` condition of `grant`'s status, if any.
pub fn ready_condition(grant: &AccessGrant) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    grant
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .cloned()
}

/// Waits until grant `name` is in `phase` and returns it.
pub async fn wait_phase(api: &Api<AccessGrant>, name: &str, phase: GrantPhase) -> Result<AccessGrant> {
    let cond = move |g: Option<&AccessGrant>| g.and_then(|g| g.status.as_ref()).and_then(|s| s.phase) == Some(phase);
    let grant = wait_for(api, name, phase.as_str(), TIMEOUT, cond).await?;
    grant.ok_or_else(|| format!("grant {name} disappeared").into())
}

/// Waits until an Event with `reason` about the object with `uid` exists in `namespace`.
pub async fn wait_event(client: &Client, namespace: &str, uid: &str, reason: &str) -> Result<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let stream = watcher(api, watcher::Config::default()).applied_objects();
    let found = async {
        futures::pin_mut!(stream);
        while let Some(ev) = futures::StreamExt::next(&mut stream).await {
            let ev = ev?;
            let about = ev.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid);
            if about && ev.reason.as_deref() == Some(reason) {
                return Ok::<_, Error>(ev);
            }
        }
        Err("event stream ended".into())
    };
    tokio::time::timeout(TIMEOUT, found)
        .await
        .map_err(|_| format!("no {reason} event for {uid} in {namespace} after {TIMEOUT:?}"))?
}

/// Retries `check` until it returns `Ok(true)` or `timeout` passes. For outcomes no watch
/// can report, such as the API server's RBAC authorizer catching up with a binding change.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, check: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{what}: not true after {timeout:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Parses a grant manifest written as YAML.
pub fn grant_yaml(yaml: &str) -> Result<AccessGrant> {
    Ok(serde_saphyr::from_str(yaml)?)
}

/// The `metadata.uid` of an object, or an error.
pub fn uid_of(obj: &impl ResourceExt) -> Result<String> {
    obj.uid().ok_or_else(|| "object has no uid".into())
}

/// Fails the test with `message` unless `cond` holds.
pub fn ensure(cond: bool, message: impl Into<String>) -> Result<()> {
    if cond { Ok(()) } else { Err(message.into().into()) }
}

/// An AccessGrant named `name` in `namespace` with the given `spec` (YAML, indented by two
/// spaces per level as under `spec:`).
pub fn grant_with(namespace: &str, name: &str, spec: &str) -> Result<AccessGrant> {
    let spec = spec
        .trim_end()
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    grant_yaml(&format!(
        "apiVersion: jitrbac.io/v1alpha1\nkind: AccessGrant\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{spec}\n"
    ))
}

/// RFC 3339 (UTC, milliseconds) for `now + secs` (negative for the past).
pub fn in_secs(secs: i64) -> String {
    jitrbac::api::format_timestamp(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs))
}

/// The Events in `namespace` about the object with `uid`, as (reason, count) pairs, where
/// count is the Event's series count (1 when the event was published once).
pub async fn events_about(client: &Client, namespace: &str, uid: &str) -> Result<Vec<(String, i32)>> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid))
        .map(|e| (e.reason.unwrap_or_default(), e.series.map(|s| s.count).unwrap_or(1)))
        .collect())
}

/// The audit lines about the grant with `uid`, as actions in order.
pub fn audit_actions(env: &Env, uid: &str) -> Vec<String> {
    env.audit_lines()
        .into_iter()
        .filter(|l| l["grant"]["uid"] == uid)
        .map(|l| l["action"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Lists test functions as `(name, body)` pairs named `<module>::<function>`:
/// `test_list!("lifecycle": a, b, c)`.
macro_rules! test_list {
    ($module:literal: $($f:ident),* $(,)?) => {
        vec![$((concat!($module, "::", stringify!($f)), (|e| Box::pin($f(e))) as $crate::support::TestFn)),*]
    };
}
pub(crate) use test_list;

/// Waits for the wall clock to reach `at`: for scenarios that need time to pass (an
/// operator down across an expiry), never to synchronise with a process.
pub async fn clock_reaches(at: jiff::Timestamp) {
    let left = at.duration_since(jiff::Timestamp::now());
    if let Ok(left) = Duration::try_from(left) {
        tokio::time::sleep(left).await;
    }
}

/// Waits until the audit lines about the grant with `uid` are exactly `expected` (actions,
/// in order); fails if they differ after a few seconds. The audit file is written by
/// another process, so this polls it.
pub async fn expect_audit(env: &Env, uid: &str, expected: &[&str]) -> Result<()> {
    let result = eventually("audit lines", Duration::from_secs(5), || async {
        Ok(audit_actions(env, uid) == expected)
    })
    .await;
    result.map_err(|_| {
        format!(
            "audit actions for {uid}: {:?}, expected {expected:?}",
            audit_actions(env, uid)
        )
        .into()
    })
}

/// The value of the series `series` (e.g. `jitrbac_grants{kind="AccessGrant",phase="Active"}`,
/// labels in the order the operator writes them) in a `/metrics` text body; 0 when the
/// series is absent (a counter not incremented yet).
pub fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// GETs `url` (plain HTTP) and returns the status code and body.
pub async fn http_get(url: &str) -> Result<(u16, String)> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = client.get(url.parse()?).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Waits until the admission layer works end to end: a dry-run grant created by the admin
/// comes back with its requester stamped.
async fn wait_for_admission(admin: &Client, admin_config: &kube::Config) -> Result<()> {
    let api: Api<AccessGrant> = Api::namespaced(admin.clone(), "default");
    let probe = grant_with(
        "default",
        "admission-probe",
        "subjects: [{kind: User, name: probe}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1m",
    )?;
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually(
        "the admission webhook stamps requesters",
        Duration::from_secs(60),
        || async {
            Ok(api
                .create(&params, &probe)
                .await
                .is_ok_and(|g| g.spec.requester.is_some_and(|r| r.username == "admin")))
        },
    )
    .await?;
    // The admission policies take effect a moment after they are created: wait until a
    // user who may create grants but not request the role is refused by jitrbac-eligibility.
    let rbac = serde_json::json!([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "admission-probe", "namespace": "default"},
         "rules": [{"apiGroups": ["jitrbac.io"], "resources": ["accessgrants"], "verbs": ["create"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "admission-probe", "namespace": "default"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "admission-probe"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "admission-probe"}]}
    ]);
    admission::apply(admin, rbac.as_array().map(Vec::as_slice).unwrap_or_default()).await?;
    let mut config = admin_config.clone();
    config.auth_info.impersonate = Some("admission-probe".to_owned());
    let probe_api: Api<AccessGrant> = Api::namespaced(Client::try_from(config)?, "default");
    eventually(
        "the jitrbac-eligibility admission policy is in force",
        Duration::from_secs(60),
        || async {
            Ok(match probe_api.create(&params, &probe).await {
                Err(kube::Error::Api(s)) => s.message.contains("jitrbac-eligibility"),
                _ => false,
            })
        },
    )
    .await
}
