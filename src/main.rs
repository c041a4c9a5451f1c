//! The `jitrbac` binary: parses the command line and hands over to the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use jitrbac::api::crd;
use jitrbac::audit::AuditLog;
use jitrbac::cli::{Cli, Command, CrdsArgs, RunArgs, SweepArgs};
use jitrbac::controller::{self, Election, Settings, sweeper};
use jitrbac::grant::Limits;
use jitrbac::grant::policy::Defaults;
use jitrbac::telemetry;
use jitrbac::webhook::{Tls, certs};

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

async fn client() -> Result<kube::Client, String> {
    kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot configure a Kubernetes client (kubeconfig or in-cluster): {e}"))
}

async fn sweep(args: SweepArgs) -> Result<(), String> {
    telemetry::init(&args.log).map_err(|e| e.to_string())?;
    let audit = AuditLog::stdout();
    let report = sweeper::sweep_all(&client().await?, &audit)
        .await
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
    let client = client().await?;
    let settings = Settings {
        limits: Limits {
            max_duration: args.max_duration,
            allow_system_subjects: args.allow_system_subjects,
            protected_namespaces: args.protected_namespaces.clone(),
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
