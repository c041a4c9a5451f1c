//! A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver (TLS, RBAC,
//! ServiceAccount token signing) and kube-controller-manager (garbage collector, namespace,
//! ServiceAccount and ClusterRole aggregation controllers), built from the Go wrapper
//! modules in `tests/controlplane/` by `tests/controlplane/build.sh`.
//!
//! The same code serves `make cluster-up` (through `examples/cluster.rs`, detached
//! processes, pid file) and the integration tests (one control plane per test binary,
//! stopped when the binary ends).

#![allow(dead_code)]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use kube::{Client, Config};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

/// Errors of the harness: anything, with a message that says what failed.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Results of the harness.
pub type Result<T> = std::result::Result<T, Error>;

/// How long the control plane may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Name of the pid file in the state directory (detached mode).
const PID_FILE: &str = "pids";

/// Where the control plane keeps its state and how its processes run.
#[derive(Debug, Clone)]
pub struct Options {
    /// State directory: certificates, kubeconfigs, logs, etcd data (unless tmpfs is used).
    pub dir: PathBuf,
    /// CRDs to install before kube-controller-manager starts (its garbage collector only
    /// discovers new resource types every 30 s).
    pub crds: Vec<CustomResourceDefinition>,
    /// Start processes in their own process group and leave them running when this process
    /// exits (for `make cluster-up`); their pids go to `<dir>/pids`.
    pub detach: bool,
}

/// A running control plane.
pub struct ControlPlane {
    /// State directory.
    pub dir: PathBuf,
    /// Directory of the control-plane binaries (etcd, kube-apiserver, kubectl, helm, ...).
    pub bin: PathBuf,
    /// `https://127.0.0.1:<port>` of kube-apiserver.
    pub server: String,
    procs: Vec<Proc>,
    etcd_data: PathBuf,
}

struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
    args: Vec<String>,
    detach: bool,
}

impl ControlPlane {
    /// Builds the binaries if needed, then starts etcd, kube-apiserver and
    /// kube-controller-manager, installs `opts.crds`, and waits until the API server is
    /// ready, the built-in roles are aggregated and namespace `default` exists.
    ///
    /// On failure, everything started so far is stopped and the error carries the tail of
    /// the logs.
    pub async fn start(opts: Options) -> Result<Self> {
        let bin = build_binaries()?;
        // Processes left behind by an earlier run in the same directory (a test binary
        // killed before it could clean up) would hold ports and memory.
        stop_detached(&opts.dir)?;
        fs::create_dir_all(&opts.dir)?;
        let dir = fs::canonicalize(&opts.dir)?;
        let etcd_data = tmpfs_dir(&dir)?;
        let mut cp = ControlPlane {
            dir,
            bin,
            server: String::new(),
            procs: Vec::new(),
            etcd_data,
        };
        match cp.boot(&opts).await {
            Ok(()) => Ok(cp),
            Err(err) => {
                let logs = cp.log_tail(60);
                cp.stop();
                Err(format!("control plane failed to start: {err}\n{logs}").into())
            }
        }
    }

    async fn boot(&mut self, opts: &Options) -> Result<()> {
        let pki = self.dir.join("pki");
        fs::create_dir_all(&pki)?;
        let ca = Ca::create(&pki)?;
        ca.leaf(&pki, "apiserver", "kube-apiserver", &[], true)?;
        ca.leaf(&pki, "admin", "admin", &["system:masters"], false)?;
        ca.leaf(&pki, "alice", "alice", &["dev"], false)?;
        let sa_key = KeyPair::generate()?;
        fs::write(pki.join("sa.key"), sa_key.serialize_pem())?;
        fs::write(pki.join("sa.pub"), sa_key.public_key_pem())?;

        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let api_port = free_port()?;
        let kcm_port = free_port()?;
        self.server = format!("https://127.0.0.1:{api_port}");
        write_kubeconfig(&self.dir.join("kubeconfig"), &self.server, &pki, "admin")?;
        write_kubeconfig(&self.dir.join("alice.kubeconfig"), &self.server, &pki, "alice")?;
        let p = |name: &str| pki.join(name).display().to_string();

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        self.spawn(
            "etcd",
            &[
                "--name=jitrbac-test".into(),
                format!("--data-dir={}", self.etcd_data.display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=jitrbac-test={peer_url}"),
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
            opts.detach,
        )?;
        self.spawn(
            "kube-apiserver",
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                format!("--tls-cert-file={}", p("apiserver.crt")),
                format!("--tls-private-key-file={}", p("apiserver.key")),
                format!("--client-ca-file={}", p("ca.crt")),
                format!("--service-account-issuer={}", self.server),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--authorization-mode=RBAC".into(),
                "--endpoint-reconciler-type=none".into(),
                format!("--cert-dir={}", self.dir.join("apiserver-certs").display()),
                // /debug/pprof, for profiling the API server under a benchmark
                // (docs/performance.md); off unless asked for.
                format!(
                    "--profiling={}",
                    std::env::var("JITRBAC_APISERVER_PROFILING").is_ok_and(|v| v == "1")
                ),
            ],
            opts.detach,
        )?;
        let client = self.admin_client().await?;
        self.wait_ready(&client, "kube-apiserver /readyz", apiserver_ready)
            .await?;
        self.wait_ready(&client, "namespace default", |c| async move {
            Ok(Api::<Namespace>::all(c).get_opt("default").await?.is_some())
        })
        .await?;

        install_crds(&client, &opts.crds).await?;

        let admin = self.dir.join("kubeconfig").display().to_string();
        self.spawn(
            "kube-controller-manager",
            &[
                format!("--kubeconfig={admin}"),
                format!("--authentication-kubeconfig={admin}"),
                format!("--authorization-kubeconfig={admin}"),
                "--leader-elect=false".into(),
                "--use-service-account-credentials=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={kcm_port}"),
                "--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,clusterrole-aggregation-controller,root-ca-certificate-publisher-controller".into(),
                format!("--root-ca-file={}", p("ca.crt")),
                format!("--service-account-private-key-file={}", p("sa.key")),
                format!("--cert-dir={}", self.dir.join("kcm-certs").display()),
            ],
            opts.detach,
        )?;
        self.wait_ready(&client, "aggregated ClusterRoles admin/edit/view", |c| async move {
            let roles = Api::<ClusterRole>::all(c);
            for name in ["admin", "edit", "view"] {
                let rules = roles.get_opt(name).await?.and_then(|r| r.rules).unwrap_or_default();
                if rules.is_empty() {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await?;
        Ok(())
    }

    /// A client authenticated as the cluster admin (group `system:masters`, which bypasses
    /// RBAC: never assert an RBAC outcome with it).
    pub async fn admin_client(&self) -> Result<Client> {
        client_from(&self.dir.join("kubeconfig")).await
    }

    /// A client configuration authenticated as the cluster admin, for callers that add
    /// impersonation or change timeouts.
    pub async fn admin_config(&self) -> Result<Config> {
        config_from(&self.dir.join("kubeconfig")).await
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// Path of a control-plane binary (`kubectl`, `helm`, ...).
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// The last `lines` lines of every process log, headed by the process name.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for p in &self.procs {
            append_tail(&mut out, &p.log, lines);
        }
        out
    }

    /// Stops every process this control plane started (reverse order), waits for them to
    /// exit and removes the etcd data. Safe to call twice.
    pub fn stop(&mut self) {
        while let Some(mut p) = self.procs.pop() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if self.etcd_data.starts_with("/dev/shm") {
            let _ = fs::remove_dir_all(&self.etcd_data);
        }
    }

    /// Kills kube-apiserver (SIGKILL), as abruptly as a crash; etcd keeps the data.
    pub fn kill_apiserver(&mut self) -> Result<()> {
        let p = self
            .procs
            .iter_mut()
            .find(|p| p.name == "kube-apiserver")
            .ok_or("no kube-apiserver")?;
        p.child.kill()?;
        p.child.wait()?;
        Ok(())
    }

    /// Starts kube-apiserver again with the same flags (same port, same etcd) and waits
    /// until it is ready.
    pub async fn restart_apiserver(&mut self) -> Result<()> {
        let i = self
            .procs
            .iter()
            .position(|p| p.name == "kube-apiserver")
            .ok_or("no kube-apiserver")?;
        let old = self.procs.remove(i);
        self.spawn(old.name, &old.args, old.detach)?;
        let client = self.admin_client().await?;
        self.wait_ready(&client, "kube-apiserver /readyz after restart", apiserver_ready)
            .await
    }

    /// Leaves the processes running (detached mode) and forgets them.
    pub fn release(mut self) {
        self.procs.clear();
        // The processes keep using the etcd data: `Drop` must not remove it.
        self.etcd_data = PathBuf::new();
    }

    fn spawn(&mut self, name: &'static str, args: &[String], detach: bool) -> Result<()> {
        let logs = self.dir.join("logs");
        fs::create_dir_all(&logs)?;
        let log = logs.join(format!("{name}.log"));
        let out = fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let mut cmd = Command::new(self.bin.join(name));
        cmd.args(args).stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        if detach {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
        // Every process is recorded, so that a later start in this directory (or
        // `cluster down`) can stop it even if this process dies without cleaning up.
        let mut pids = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(PID_FILE))?;
        std::io::Write::write_all(&mut pids, format!("{name} {}\n", child.id()).as_bytes())?;
        self.procs.push(Proc {
            name,
            child,
            log,
            args: args.to_vec(),
            detach,
        });
        Ok(())
    }

    async fn wait_ready<F, Fut>(&mut self, client: &Client, what: &str, check: F) -> Result<()>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for p in &mut self.procs {
                if let Some(status) = p.child.try_wait()? {
                    return Err(format!("{} exited ({status}) while waiting for {what}", p.name).into());
                }
            }
            if matches!(check(client.clone()).await, Ok(true)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {READY_TIMEOUT:?} waiting for {what}").into());
            }
            // Polling a process that offers no watch (readiness endpoints); not a test sync.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether kube-apiserver answers `/readyz` with `ok`.
async fn apiserver_ready(client: Client) -> Result<bool> {
    let req = http::Request::get("/readyz").body(Vec::new())?;
    Ok(client
        .request_text(req)
        .await
        .map(|body| body.trim() == "ok")
        .unwrap_or(false))
}

/// Stops a detached control plane whose pids are recorded in `<dir>/pids`. Only processes
/// whose command line mentions `dir` are signalled (a pid reused by an unrelated process
/// is left alone). Returns how many processes were stopped.
pub fn stop_detached(dir: &Path) -> Result<usize> {
    let Ok(dir) = fs::canonicalize(dir) else {
        return Ok(0);
    };
    let pids = running_pids(&dir);
    for pid in pids.iter().rev() {
        let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for pid in pids.iter().rev() {
        while is_ours(*pid, &dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if is_ours(*pid, &dir) {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
    }
    let _ = fs::remove_file(dir.join(PID_FILE));
    if let Ok(data) = fs::read_to_string(dir.join("etcd-data-dir")) {
        let data = PathBuf::from(data.trim());
        if data.starts_with("/dev/shm") {
            let _ = fs::remove_dir_all(data);
        }
    }
    Ok(pids.len())
}

/// The pids recorded in `<dir>/pids` that still belong to this control plane.
pub fn running_pids(dir: &Path) -> Vec<u32> {
    let text = fs::read_to_string(dir.join(PID_FILE)).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .filter(|pid| is_ours(*pid, dir))
        .collect()
}

/// True when process `pid` runs with a path of this control plane on its command line:
/// the state directory, or the etcd data directory recorded in `<dir>/etcd-data-dir`.
fn is_ours(pid: u32, dir: &Path) -> bool {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    let etcd_data = fs::read_to_string(dir.join("etcd-data-dir")).unwrap_or_default();
    [dir.display().to_string(), etcd_data.trim().to_owned()]
        .iter()
        .any(|needle| !needle.is_empty() && cmdline.contains(needle.as_str()))
}

/// Runs `tests/controlplane/build.sh` (which reuses its cache) and returns the binary dir.
pub fn build_binaries() -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/controlplane/build.sh");
    let out = Command::new("bash").arg(&script).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let dir = text.lines().last().ok_or("build.sh printed no directory")?;
    Ok(PathBuf::from(dir))
}

/// A directory for etcd's data on tmpfs when available (faster, no disk wear), else under
/// the state directory. Its path is recorded in `<dir>/etcd-data-dir`.
fn tmpfs_dir(dir: &Path) -> Result<PathBuf> {
    let shm = Path::new("/dev/shm");
    let data = if shm.is_dir() && fs::metadata(shm).map(|m| !m.permissions().readonly()).unwrap_or(false) {
        let unique = format!("jitrbac-etcd-{}-{}", std::process::id(), free_port()?);
        shm.join(unique)
    } else {
        dir.join("etcd-data")
    };
    fs::create_dir_all(&data)?;
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700))?;
    }
    fs::write(dir.join("etcd-data-dir"), data.display().to_string())?;
    Ok(data)
}

/// Appends a `----- <path> -----` header and the last `lines` lines of the file at `path`
/// (nothing but the header if it cannot be read) to `out`.
pub fn append_tail(out: &mut String, path: &Path, lines: usize) {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    out.push_str(&format!("----- {} -----\n", path.display()));
    for l in &all[all.len().saturating_sub(lines)..] {
        out.push_str(l);
        out.push('\n');
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn install_crds(client: &Client, crds: &[CustomResourceDefinition]) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        api.create(&PostParams::default(), crd).await?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        let established = kube::runtime::wait::conditions::is_crd_established();
        tokio::time::timeout(
            Duration::from_secs(30),
            kube::runtime::wait::await_condition(api.clone(), &name, established),
        )
        .await
        .map_err(|_| format!("CRD {name} not established after 30s"))??;
    }
    Ok(())
}

async fn config_from(path: &Path) -> Result<Config> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
}

async fn client_from(path: &Path) -> Result<Client> {
    Ok(Client::try_from(config_from(path).await?)?)
}

/// Writes a kubeconfig for `user` whose certificate and key are `<pki>/<user>.crt|.key`.
fn write_kubeconfig(path: &Path, server: &str, pki: &Path, user: &str) -> Result<()> {
    let file = |name: String| Some(pki.join(name).display().to_string());
    let config = Kubeconfig {
        clusters: vec![NamedCluster {
            name: "jitrbac-local".into(),
            cluster: Some(Cluster {
                server: Some(server.into()),
                certificate_authority: file("ca.crt".into()),
                ..Cluster::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user.into(),
            auth_info: Some(AuthInfo {
                client_certificate: file(format!("{user}.crt")),
                client_key: file(format!("{user}.key")),
                ..AuthInfo::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: user.into(),
            context: Some(Context {
                cluster: "jitrbac-local".into(),
                user: Some(user.into()),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        current_context: Some(user.into()),
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        ..Kubeconfig::default()
    };
    fs::write(path, serde_saphyr::to_string(&config)?)?;
    Ok(())
}

/// The test certificate authority.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn create(pki: &Path) -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, "jitrbac test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        fs::write(pki.join("ca.crt"), cert.pem())?;
        fs::write(pki.join("ca.key"), key.serialize_pem())?;
        Ok(Self {
            issuer: Issuer::new(params, key),
        })
    }

    /// Writes `<pki>/<file>.crt|.key`: a client certificate with CN=`cn` and O=`groups[0]`
    /// (Kubernetes reads the user from CN and groups from O), or a serving certificate for
    /// 127.0.0.1/localhost when `server` is true.
    fn leaf(&self, pki: &Path, file: &str, cn: &str, groups: &[&str], server: bool) -> Result<()> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(group) = groups.first() {
            params.distinguished_name.push(DnType::OrganizationName, *group);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        if server {
            params.subject_alt_names = vec![
                SanType::IpAddress("127.0.0.1".parse()?),
                SanType::DnsName("localhost".try_into()?),
                SanType::IpAddress("10.0.0.1".parse()?),
                SanType::DnsName("kubernetes.default.svc".try_into()?),
            ];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let cert = params.signed_by(&key, &self.issuer)?;
        fs::write(pki.join(format!("{file}.crt")), cert.pem())?;
        fs::write(pki.join(format!("{file}.key")), key.serialize_pem())?;
        Ok(())
    }
}
