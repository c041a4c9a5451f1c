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

    /// How many grants are reconciled at the same time.
    #[arg(long, env = "JITRBAC_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

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
