//! The command line: `jitrbac run`, `jitrbac crds`, `jitrbac sweep --once`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::api::GrantDuration;

/// jitrbac: just-in-time Kubernetes RBAC. Turns AccessGrant objects into RoleBindings that
/// exist exactly as long as the grant says.
#[derive(Debug, Parser)]
#[command(name = "jitrbac", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator against the cluster of the current kubeconfig, or in-cluster.
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML, or write them into a directory.
    Crds(CrdsArgs),
    /// Delete every managed binding past its expiry whose grant allows it, then exit
    /// (for a CronJob, as a second line of defence when the operator is down).
    Sweep(SweepArgs),
}

/// Options of `jitrbac sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// Sweep once and exit (the only mode; the continuous sweeper runs inside `jitrbac run`).
    #[arg(long, required = true)]
    pub once: bool,

    /// Give up, exiting non-zero, if the sweep has not finished after this long, in the
    /// grant duration grammar (e.g. 4m). Without it, a request to an API server that
    /// accepts connections but never answers holds the sweep for minutes, and a CronJob
    /// with `concurrencyPolicy: Forbid` skips its next runs. Bindings already deleted stay
    /// deleted.
    #[arg(long, env = "JITRBAC_SWEEP_TIMEOUT", default_value = "4m", value_parser = parse_duration)]
    pub timeout: GrantDuration,

    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
}

/// Options of `jitrbac run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Longest grant allowed, in the grant duration grammar (e.g. 8h, 7d). Longer grants
    /// end in phase Denied with reason DurationTooLong.
    #[arg(long, env = "JITRBAC_MAX_DURATION", default_value = "7d", value_parser = parse_duration)]
    pub max_duration: GrantDuration,

    /// More namespaces in which grants are always Denied (reason ProtectedNamespace),
    /// comma-separated. kube-system, kube-public and kube-node-lease (edit there can
    /// impersonate the cluster's controllers), the operator's own namespace
    /// (POD_NAMESPACE) and the namespace of its webhook certificate Secret are always
    /// protected.
    #[arg(long, env = "JITRBAC_PROTECTED_NAMESPACES", value_delimiter = ',')]
    pub protected_namespaces: Vec<String>,

    /// Allow grants to `system:` users and groups (e.g. system:masters). Off by default:
    /// such grants end in phase Denied with reason SystemSubject.
    #[arg(long, env = "JITRBAC_ALLOW_SYSTEM_SUBJECTS")]
    pub allow_system_subjects: bool,

    /// How long before a grant's expiry the ExpiringSoon Event and audit line are given
    /// (grant duration grammar, e.g. 10m), or `off`. Grants not longer than this get none.
    #[arg(long, env = "JITRBAC_EXPIRY_NOTICE", default_value = "10m", value_parser = parse_notice)]
    pub expiry_notice: Notice,

    /// Also send every audit record as a CloudEvent (structured JSON) to this https URL.
    #[arg(long, env = "JITRBAC_AUDIT_SINK_URL")]
    pub audit_sink_url: Option<String>,

    /// PEM file of the CA certificates the audit sink's certificate must chain to
    /// (default: the system's).
    #[arg(long, env = "JITRBAC_AUDIT_SINK_CA_FILE", requires = "audit_sink_url")]
    pub audit_sink_ca_file: Option<PathBuf>,

    /// File with a bearer token for the audit sink (sent as `Authorization: Bearer`),
    /// re-read for every request.
    #[arg(long, env = "JITRBAC_AUDIT_SINK_TOKEN_FILE", requires = "audit_sink_url")]
    pub audit_sink_token_file: Option<PathBuf>,

    /// The CloudEvent `source` of audit records: a URI-reference naming this cluster.
    #[arg(long, env = "JITRBAC_AUDIT_SINK_SOURCE", default_value = "/jitrbac")]
    pub audit_sink_source: String,

    /// How many audit records may wait for delivery; more are dropped (and counted).
    #[arg(long, env = "JITRBAC_AUDIT_SINK_BUFFER", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_sink_buffer: u32,

    /// Delivery attempts per audit record (0.5 s backoff doubling to 30 s between them).
    #[arg(long, env = "JITRBAC_AUDIT_SINK_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_sink_max_attempts: u32,

    /// How many grants are reconciled at the same time. Expiries do not wait for it: the
    /// operator's expiry timer deletes bindings on its own.
    #[arg(long, env = "JITRBAC_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Client-side limit on the grants' reconciles' requests to the API server, per second
    /// on average; 0, the default, sets none and leaves fairness to the API server's
    /// priority and fairness. It counts requests in fixed windows (`--kube-api-burst`
    /// requests per burst/qps seconds), so a request may wait up to a window. Expiries by
    /// the operator's timer, leader election and the webhooks are never limited; what an
    /// expiry writes afterwards (status, Event, finalizer: three requests) and explicit
    /// revocations are.
    #[arg(long, env = "JITRBAC_KUBE_API_QPS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub kube_api_qps: u32,

    /// With `--kube-api-qps` above 0: how many requests each window allows (the burst).
    /// Defaults to twice the qps.
    #[arg(long, env = "JITRBAC_KUBE_API_BURST", requires = "kube_api_qps", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub kube_api_burst: Option<u32>,

    /// How long a grant may wait for approval where no AccessPolicy says (grant duration
    /// grammar); afterwards it ends Expired with reason PendingTimeout.
    #[arg(long, env = "JITRBAC_PENDING_TIMEOUT", default_value = "1d", value_parser = parse_duration)]
    pub pending_timeout: GrantDuration,

    /// Serve the admission webhooks (stamping requesters and reviewers, validating
    /// policies) over TLS on this address. Every replica serves them.
    #[arg(long, env = "JITRBAC_WEBHOOK_ADDR")]
    pub webhook_addr: Option<SocketAddr>,

    /// Read the webhook certificate from `tls.crt` and `tls.key` in this directory (e.g. a
    /// cert-manager Secret mounted there) instead of managing it.
    #[arg(long, env = "JITRBAC_WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<PathBuf>,

    /// Secret (in `--webhook-secret-namespace`) in which the operator keeps its webhook CA
    /// and certificate, when it manages them.
    #[arg(long, env = "JITRBAC_WEBHOOK_SECRET", default_value = "jitrbac-webhook-tls")]
    pub webhook_secret: String,

    /// Namespace of `--webhook-secret` (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub webhook_secret_namespace: String,

    /// Names the webhook certificate is valid for: the webhook Service's DNS names, or an
    /// IP address for a webhook reached by URL (comma-separated).
    #[arg(
        long,
        env = "JITRBAC_WEBHOOK_HOSTS",
        value_delimiter = ',',
        default_value = "jitrbac-webhook.jitrbac-system.svc"
    )]
    pub webhook_hosts: Vec<String>,

    /// Name of the MutatingWebhookConfiguration and ValidatingWebhookConfiguration into
    /// which the operator writes its CA bundle.
    #[arg(long, env = "JITRBAC_WEBHOOK_CONFIGURATION", default_value = "jitrbac")]
    pub webhook_configuration: String,

    /// Serve only the admission webhooks and health endpoints: no reconciling, no
    /// sweeping, no leader election.
    #[arg(long, env = "JITRBAC_WEBHOOK_ONLY", requires = "webhook_addr")]
    pub webhook_only: bool,

    /// How often the sweeper re-lists every managed binding, as a backstop for lost watch
    /// events (grant duration grammar, e.g. 5m).
    #[arg(long, env = "JITRBAC_RESYNC_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub resync_interval: GrantDuration,

    /// Address of the metrics endpoint (`/metrics`).
    #[arg(long, env = "JITRBAC_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Address of the health endpoints (`/healthz`, `/readyz`).
    #[arg(long, env = "JITRBAC_HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    pub health_addr: SocketAddr,

    /// Elect a leader among replicas on a Lease: only the leader reconciles and sweeps.
    /// Needed whenever more than one replica may run (including during rollouts).
    #[arg(long, env = "JITRBAC_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(long, env = "JITRBAC_LEASE_NAME", default_value = "jitrbac")]
    pub leader_election_lease_name: String,

    /// How long a leader's lease lasts without renewal, in seconds; a new leader takes over
    /// within this time after the old one disappears.
    #[arg(long, env = "JITRBAC_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    pub lease_duration_seconds: u64,

    /// Name of this replica in Events and in the Lease (defaults to the host name, i.e. the
    /// pod name).
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,

    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
}

/// Logging options shared by subcommands that log.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Log filter in tracing's EnvFilter syntax, e.g. `info` or `info,jitrbac=debug`.
    #[arg(long, env = "JITRBAC_LOG", default_value = "info")]
    pub log_level: String,

    /// Log format on standard error: `text` for people, `json` for log pipelines. Defaults
    /// to `json` inside a cluster and `text` elsewhere. Audit lines on standard output are
    /// always JSON.
    #[arg(long, env = "JITRBAC_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `jitrbac crds`.
#[derive(Debug, clap::Args)]
pub struct CrdsArgs {
    /// Write one file per CRD (`<name>.yaml`) into this directory instead of printing them.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// A client-side request rate limit: `requests` per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed in each window (the burst).
    pub requests: u64,
    /// Length of a window.
    pub window: std::time::Duration,
}

impl RunArgs {
    /// The rate limit `--kube-api-qps` and `--kube-api-burst` ask for: `burst` requests per
    /// `burst / qps` seconds (the burst defaulting to twice the qps), or `None` when the
    /// qps is 0 (no limit). Fails with a message when a burst is given with a qps of 0.
    pub fn rate_limit(&self) -> Result<Option<RateLimit>, String> {
        rate_limit(self.kube_api_qps, self.kube_api_burst)
    }
}

fn rate_limit(qps: u32, burst: Option<u32>) -> Result<Option<RateLimit>, String> {
    if qps == 0 {
        return match burst {
            Some(_) => Err("--kube-api-burst needs a --kube-api-qps above 0".to_owned()),
            None => Ok(None),
        };
    }
    let burst = burst.unwrap_or_else(|| qps.saturating_mul(2));
    Ok(Some(RateLimit {
        requests: u64::from(burst),
        window: std::time::Duration::from_secs_f64(f64::from(burst) / f64::from(qps)),
    }))
}

/// `--expiry-notice`: a duration, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice(pub Option<GrantDuration>);

fn parse_notice(s: &str) -> Result<Notice, String> {
    if s == "off" {
        return Ok(Notice(None));
    }
    parse_duration(s).map(|d| Notice(Some(d)))
}

fn parse_duration(s: &str) -> Result<GrantDuration, String> {
    GrantDuration::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_is_off_at_zero_and_counts_burst_requests_per_window() {
        assert_eq!(rate_limit(0, None), Ok(None));
        assert_eq!(
            rate_limit(50, None),
            Ok(Some(RateLimit {
                requests: 100,
                window: std::time::Duration::from_secs(2)
            }))
        );
        assert_eq!(
            rate_limit(20, Some(30)),
            Ok(Some(RateLimit {
                requests: 30,
                window: std::time::Duration::from_millis(1500)
            }))
        );
    }

    #[test]
    fn a_burst_without_a_qps_is_refused() {
        assert!(rate_limit(0, Some(10)).is_err());
        // Without the qps on the command line (nor in the environment, which clap reads).
        if std::env::var_os("JITRBAC_KUBE_API_QPS").is_none() {
            assert!(Cli::try_parse_from(["jitrbac", "run", "--kube-api-burst", "10"]).is_err());
        }
    }
}
