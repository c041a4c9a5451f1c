//! Prometheus metrics of the operator, served at `/metrics` in the OpenMetrics text
//! format. Every name starts with `jitrbac_`, carries its unit (`_seconds`), and has only
//! low-cardinality labels: never a user, grant or namespace name. `docs/metrics.md` lists
//! them for dashboard and alert authors.

pub mod summary;

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, OnceLock};

use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::{AccessGrant, GrantPhase};
use crate::controller::binding_cache::BindingCache;

/// The `kind` label of grant metrics (`ClusterAccessGrant` will be the second value).
pub const ACCESS_GRANT: &str = "AccessGrant";

/// The `webhook` label values: the paths the admission webhooks are served at.
pub const WEBHOOKS: [&str; 3] = ["mutate-accessgrants", "mutate-grantreviews", "validate-accesspolicies"];

/// Buckets of the expiry lag, in seconds: 1 ms to 5 min, fine below one second where the
/// promise lies.
const LAG_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Buckets of reconcile and admission durations, in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Labels `{kind}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `AccessGrant`.
    pub kind: &'static str,
}

/// Labels `{kind, phase}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// `AccessGrant`.
    pub kind: &'static str,
    /// A [`GrantPhase`] name, e.g. `Active`.
    pub phase: &'static str,
}

/// Labels `{kind, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `AccessGrant`.
    pub kind: &'static str,
    /// A CamelCase reason from a fixed set (e.g. `NotEligible`, `DeleteBinding`).
    pub reason: String,
}

/// Labels `{webhook, decision}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// The webhook path without its slash, e.g. `mutate-accessgrants`.
    pub webhook: &'static str,
    /// `allowed`, `denied` or `error` (the request could not be read).
    pub decision: &'static str,
}

/// Labels `{webhook}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// The webhook path without its slash.
    pub webhook: &'static str,
}

/// Labels `{result}` of the audit sink.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// `delivered`, `retried` (one failed attempt that will be repeated) or `dropped`
    /// (given up, or pushed out of a full buffer).
    pub result: &'static str,
}

/// Labels `{version}` of `jitrbac_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type Buckets = fn() -> Histogram;

/// The caches the gauges about current state are computed from, at scrape time.
struct Caches {
    grants: Store<AccessGrant>,
    bindings: Arc<BindingCache>,
}

/// Every metric the operator exports, registered once at start-up. Counters and
/// histograms are updated where things happen; the gauges about current state (grants by
/// phase, overdue bindings, next expiry, active break-glass grants) are computed from the
/// caches when scraped, on every replica.
pub struct Metrics {
    registry: Registry,
    caches: OnceLock<Caches>,
    /// `jitrbac_leader`: 1 while this replica holds the leader Lease and acts, 0 otherwise.
    pub leader: Gauge<i64, AtomicI64>,
    grants: Family<PhaseLabels, Gauge<i64, AtomicI64>>,
    bindings_overdue: Gauge<i64, AtomicI64>,
    bindings_overdue_unverified: Gauge<i64, AtomicI64>,
    next_expiry: Family<KindLabels, Gauge<f64, AtomicU64>>,
    break_glass_active: Gauge<i64, AtomicI64>,
    /// `jitrbac_grant_transitions_total{kind,phase}`: transitions into a phase.
    pub transitions: Family<PhaseLabels, Counter>,
    /// `jitrbac_grants_denied_total{kind,reason}`: grants that ended Denied, by reason.
    pub denied: Family<ReasonLabels, Counter>,
    /// `jitrbac_expiry_lag_seconds{kind}`: from a grant's `expiresAt` to the deletion of its
    /// binding, as observed by the operator (the DELETE returned).
    pub expiry_lag: Family<KindLabels, Histogram, Buckets>,
    /// `jitrbac_reconcile_duration_seconds{kind}`: wall time of one reconcile.
    pub reconcile_duration: Family<KindLabels, Histogram, Buckets>,
    /// `jitrbac_reconcile_errors_total{kind,reason}`: failed reconciles, by error reason.
    pub reconcile_errors: Family<ReasonLabels, Counter>,
    /// `jitrbac_drift_repairs_total{kind}`: bindings restored or re-created.
    pub drift_repairs: Family<KindLabels, Counter>,
    /// `jitrbac_admission_requests_total{webhook,decision}`.
    pub admission_requests: Family<AdmissionLabels, Counter>,
    /// `jitrbac_admission_duration_seconds{webhook}`: time to answer one admission request.
    pub admission_duration: Family<WebhookLabels, Histogram, Buckets>,
    /// `jitrbac_audit_sink_events_total{result}`.
    pub audit_sink: Family<SinkLabels, Counter>,
    /// `jitrbac_audit_sink_buffered`: audit records waiting for delivery.
    pub audit_sink_buffered: Gauge<i64, AtomicI64>,
}

impl Metrics {
    /// Creates and registers every metric under the `jitrbac_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("jitrbac");
        let metrics = Self {
            caches: OnceLock::new(),
            leader: Gauge::default(),
            grants: Family::default(),
            bindings_overdue: Gauge::default(),
            bindings_overdue_unverified: Gauge::default(),
            next_expiry: Family::default(),
            break_glass_active: Gauge::default(),
            transitions: Family::default(),
            denied: Family::default(),
            expiry_lag: Family::new_with_constructor(|| Histogram::new(LAG_BUCKETS)),
            reconcile_duration: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            reconcile_errors: Family::default(),
            drift_repairs: Family::default(),
            admission_requests: Family::default(),
            admission_duration: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            audit_sink: Family::default(),
            audit_sink_buffered: Gauge::default(),
            registry: Registry::default(),
        };
        let build = Family::<BuildLabels, Gauge<i64, AtomicI64>>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Always 1; the operator's version", build);
        let m = &metrics;
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and acts",
            m.leader.clone(),
        );
        registry.register("grants", "Grants by phase, from this replica's cache", m.grants.clone());
        registry.register(
            "bindings_overdue",
            "Managed bindings past their jitrbac.io/expires-at that still exist (0 when healthy)",
            m.bindings_overdue.clone(),
        );
        registry.register(
            "bindings_overdue_unverified",
            "Bindings with the managed-by label past their jitrbac.io/expires-at that no grant records (never deleted by the operator)",
            m.bindings_overdue_unverified.clone(),
        );
        registry.register(
            "next_expiry_seconds",
            "Seconds until the earliest expiry of an Active grant (absent when none)",
            m.next_expiry.clone(),
        );
        registry.register(
            "break_glass_grants_active",
            "Active grants that were activated by break-glass",
            m.break_glass_active.clone(),
        );
        registry.register(
            "grant_transitions",
            "Transitions of grants into a phase",
            m.transitions.clone(),
        );
        registry.register("grants_denied", "Grants that ended Denied, by reason", m.denied.clone());
        registry.register(
            "expiry_lag_seconds",
            "Seconds from a grant's expiresAt to the deletion of its binding",
            m.expiry_lag.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Seconds one reconcile took",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles, by error reason",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "drift_repairs",
            "Bindings restored or re-created after someone changed them",
            m.drift_repairs.clone(),
        );
        registry.register(
            "admission_requests",
            "Admission requests answered, by webhook and decision",
            m.admission_requests.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Seconds to answer one admission request",
            m.admission_duration.clone(),
        );
        registry.register(
            "audit_sink_events",
            "Audit records sent to the audit sink, by result",
            m.audit_sink.clone(),
        );
        registry.register(
            "audit_sink_buffered",
            "Audit records waiting for delivery to the audit sink",
            m.audit_sink_buffered.clone(),
        );
        metrics.zero_known_series();
        Self { registry, ..metrics }
    }

    /// Creates every series whose labels are known in advance, at 0, so that queries and
    /// alerts see a 0 rather than no data before the first event. Series labelled by an
    /// open set of reasons appear on first use.
    fn zero_known_series(&self) {
        let kind = KindLabels { kind: ACCESS_GRANT };
        for phase in GrantPhase::ALL {
            let labels = PhaseLabels {
                kind: ACCESS_GRANT,
                phase: phase.as_str(),
            };
            drop(self.transitions.get_or_create(&labels));
        }
        drop(self.expiry_lag.get_or_create(&kind));
        drop(self.reconcile_duration.get_or_create(&kind));
        drop(self.drift_repairs.get_or_create(&kind));
        for webhook in WEBHOOKS {
            drop(self.admission_duration.get_or_create(&WebhookLabels { webhook }));
            for decision in ["allowed", "denied", "error"] {
                drop(
                    self.admission_requests
                        .get_or_create(&AdmissionLabels { webhook, decision }),
                );
            }
        }
        for result in ["delivered", "retried", "dropped"] {
            drop(self.audit_sink.get_or_create(&SinkLabels { result }));
        }
    }

    /// Gives the gauges about current state their source: the grant and managed-binding
    /// caches. Until called (and on a webhook-only replica) those gauges stay empty or 0.
    /// A second call is ignored.
    pub fn watch_caches(&self, grants: Store<AccessGrant>, bindings: Arc<BindingCache>) {
        let _ = self.caches.set(Caches { grants, bindings });
    }

    /// Counts a grant's transition into `phase`, and for `Denied`, its `reason`.
    pub fn transition(&self, phase: GrantPhase, reason: &str) {
        self.transitions
            .get_or_create(&PhaseLabels {
                kind: ACCESS_GRANT,
                phase: phase.as_str(),
            })
            .inc();
        if phase == GrantPhase::Denied {
            self.denied
                .get_or_create(&ReasonLabels {
                    kind: ACCESS_GRANT,
                    reason: reason.to_owned(),
                })
                .inc();
        }
    }

    /// Records the expiry lag of one binding deletion: `lag_seconds` from `expiresAt` to
    /// the deletion (negative values, from clock skew, count as 0).
    pub fn expired(&self, lag_seconds: f64) {
        self.expiry_lag
            .get_or_create(&KindLabels { kind: ACCESS_GRANT })
            .observe(lag_seconds.max(0.0));
    }

    /// Renders every metric in the OpenMetrics text format, after computing the gauges
    /// about current state from the caches at `now`.
    ///
    /// Returns an error only if formatting into a `String` fails, which does not happen in
    /// practice.
    pub fn render(&self, now: jiff::Timestamp) -> Result<String, std::fmt::Error> {
        if let Some(caches) = self.caches.get() {
            self.refresh(caches, now);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }

    fn refresh(&self, caches: &Caches, now: jiff::Timestamp) {
        let grants = caches.grants.state();
        let s = caches
            .bindings
            .scan(|bindings| summary::summarize(&grants, bindings, now));
        for (phase, count) in s.by_phase {
            self.grants
                .get_or_create(&PhaseLabels {
                    kind: ACCESS_GRANT,
                    phase: phase.as_str(),
                })
                .set(count);
        }
        self.bindings_overdue.set(s.overdue_bindings);
        self.bindings_overdue_unverified.set(s.unverified_overdue_bindings);
        self.break_glass_active.set(s.break_glass_active);
        self.next_expiry.clear();
        if let Some(seconds) = s.next_expiry_seconds {
            self.next_expiry
                .get_or_create(&KindLabels { kind: ACCESS_GRANT })
                .set(seconds);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
