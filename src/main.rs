//! The `jitrbac` binary: parses the command line and hands over to the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use jitrbac::api::crd;
use jitrbac::audit::AuditLog;
use jitrbac::audit::sink::SinkConfig;
use jitrbac::cli::{Cli, Command, CrdsArgs, RateLimit, RunArgs, SweepArgs};
use jitrbac::controller::{self, Election, Settings, sweeper};
use jitrbac::grant::Limits;
use jitrbac::grant::policy::Defaults;
use jitrbac::grant::request::SYSTEM_NAMESPACES;
use jitrbac::telemetry;
use jitrbac::webhook::{Tls, certs};

/// mimalloc instead of the system allocator: it hands memory freed after a burst (a
/// thousand grants starting or ending at once, a re-list) back to the system, where
/// glibc's per-thread arenas keep it; see docs/performance.md for the numbers. Built with
/// transparent huge pages off for the process (`no_thp`): with them, every 2 MiB of heap
/// touched at all stays resident whole, some 10 MiB more RSS for an idle operator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args).await,
        Command::Crds(args) => crds(&args),
        Command::Sweep(args) => sweep(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "jitrbac: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A client from the current kubeconfig or the in-cluster configuration; with `limit`,
/// its requests are rate limited (watches count once, when they start).
async fn kube_client(limit: Option<RateLimit>) -> Result<kube::Client, String> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| format!("cannot configure a Kubernetes client (kubeconfig or in-cluster): {e}"))?;
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| format!("cannot configure a Kubernetes client: {e}"))?;
    Ok(match limit {
        None => builder.build(),
        Some(limit) => {
            tracing::info!(
                requests = limit.requests,
                window_ms = limit.window.as_millis(),
                "client-side rate limit on the reconciles' API requests"
            );
            builder
                .with_layer(&tower::limit::RateLimitLayer::new(limit.requests, limit.window))
                .build()
        }
    })
}

async fn sweep(args: SweepArgs) -> Result<(), String> {
    telemetry::init(&args.log).map_err(|e| e.to_string())?;
    let audit = AuditLog::stdout();
    // Nothing serves these metrics; the sweep only needs somewhere to record.
    let metrics = jitrbac::metrics::Metrics::new();
    let record = sweeper::Record {
        audit: &audit,
        metrics: &metrics,
    };
    let client = kube_client(None).await?;
    let limit = std::time::Duration::from_secs(args.timeout.as_secs());
    let report = tokio::time::timeout(limit, sweeper::sweep_all(&client, record, sweeper::BINDING_PAGE))
        .await
        .map_err(|_| {
            format!(
                "the sweep did not finish within {} (--timeout); run it again",
                args.timeout
            )
        })?
        .map_err(|e| e.to_string())?;
    tracing::info!(
        examined = report.examined,
        deleted = report.deleted,
        left = report.left,
        "sweep done"
    );
    Ok(())
}

async fn run(args: RunArgs) -> Result<(), String> {
    telemetry::init(&args.log).map_err(|e| e.to_string())?;
    // Checked before anything else, so a bad combination of flags is named as such.
    let rate_limit = args.rate_limit()?;
    let client = kube_client(None).await?;
    let reconcile_client = match rate_limit {
        Some(limit) => Some(kube_client(Some(limit)).await?),
        None => None,
    };
    let settings = Settings {
        limits: Limits {
            max_duration: args.max_duration,
            allow_system_subjects: args.allow_system_subjects,
            protected_namespaces: protected_namespaces(&args),
            expiry_notice: args.expiry_notice.0,
        },
        defaults: Defaults {
            max_duration: args.max_duration,
            pending_timeout: args.pending_timeout,
        },
        webhook: args.webhook_addr.map(|addr| {
            let tls = match &args.webhook_cert_dir {
                Some(dir) => Tls::Files(dir.clone()),
                None => Tls::Managed(certs::Managed {
                    namespace: args.webhook_secret_namespace.clone(),
                    secret: args.webhook_secret.clone(),
                    hosts: args.webhook_hosts.clone(),
                    configuration: args.webhook_configuration.clone(),
                }),
            };
            (addr, tls)
        }),
        reconcile: !args.webhook_only,
        audit_sink: audit_sink(&args)?,
        reconcile_client,
        concurrency: args.concurrency,
        election: args.leader_election.then(|| Election {
            namespace: args.leader_election_namespace.clone(),
            lease_name: args.leader_election_lease_name.clone(),
            identity: identity(args.instance.as_deref()),
            duration_secs: args.lease_duration_seconds,
        }),
        instance: args.instance,
        resync: std::time::Duration::from_secs(args.resync_interval.as_secs()),
        health_addr: args.health_addr,
        metrics_addr: args.metrics_addr,
    };
    controller::run(client, settings).await.map_err(|e| e.to_string())
}

/// The namespaces where no grant is carried out: the system ones, the operator's own
/// (POD_NAMESPACE, and that of the webhook certificate Secret it manages, which holds a
/// CA key), and `--protected-namespaces`.
fn protected_namespaces(args: &RunArgs) -> Vec<String> {
    let own = std::env::var("POD_NAMESPACE").ok();
    let secret =
        (args.webhook_addr.is_some() && args.webhook_cert_dir.is_none()).then(|| args.webhook_secret_namespace.clone());
    let mut all: Vec<String> = SYSTEM_NAMESPACES
        .iter()
        .map(|s| (*s).to_owned())
        .chain(own)
        .chain(secret)
        .chain(args.protected_namespaces.iter().map(|n| n.trim().to_owned()))
        .filter(|n| !n.is_empty())
        .collect();
    all.sort();
    all.dedup();
    all
}

/// The audit sink settings, if `--audit-sink-url` is given.
fn audit_sink(args: &RunArgs) -> Result<Option<SinkConfig>, String> {
    let Some(url) = &args.audit_sink_url else {
        return Ok(None);
    };
    Ok(Some(SinkConfig {
        url: url.parse().map_err(|e| format!("--audit-sink-url {url}: {e}"))?,
        ca_file: args.audit_sink_ca_file.clone(),
        token_file: args.audit_sink_token_file.clone(),
        source: args.audit_sink_source.clone(),
        buffer: usize::try_from(args.audit_sink_buffer).unwrap_or(usize::MAX),
        max_attempts: args.audit_sink_max_attempts,
    }))
}

/// A Lease holder identity unique to this process: the instance (pod) name, or
/// `jitrbac`, followed by the process id and the start time.
fn identity(instance: Option<&str>) -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    format!("{}_{}_{started:x}", instance.unwrap_or("jitrbac"), std::process::id())
}

fn crds(args: &CrdsArgs) -> Result<(), String> {
    let crds = crd::all();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            for c in &crds {
                let path = dir.join(crd::file_name(c));
                let yaml = crd::to_yaml(c).map_err(|e| e.to_string())?;
                std::fs::write(&path, yaml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            for c in &crds {
                let yaml = crd::to_yaml(c).map_err(|e| e.to_string())?;
                write!(out, "---\n{yaml}").map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}
