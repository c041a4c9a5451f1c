//! The scenarios. Each works in namespaces of its own, creates what it measures, and
//! reports numbers; none asserts anything about them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use jitrbac::api::{AccessGrant, format_timestamp};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use serde::Serialize;

use crate::process::{self, CpuSnapshot, Load, Memory};
use crate::stats::{Summary, ms};
use crate::support::{Env, Operator, Result, grant_with, http_get, lock, metric};
use crate::watch::{self, BindingLog};

/// How many grants each scenario uses.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    pub latency_grants: usize,
    pub latency_rate_per_s: f64,
    pub expiry_active: Vec<usize>,
    pub storm: usize,
    pub scale: usize,
    pub idle_seconds: u64,
    pub restart: usize,
    pub physical: usize,
}

impl Sizes {
    /// The full suite (the numbers in docs/performance.md).
    pub fn full() -> Self {
        Self {
            latency_grants: 1000,
            latency_rate_per_s: 20.0,
            expiry_active: vec![100, 1000, 10_000],
            storm: 1000,
            scale: 10_000,
            idle_seconds: 300,
            restart: 1000,
            physical: 500,
        }
    }

    /// A few minutes' worth.
    pub fn quick() -> Self {
        Self {
            latency_grants: 200,
            latency_rate_per_s: 20.0,
            expiry_active: vec![100, 1000],
            storm: 300,
            scale: 1000,
            idle_seconds: 30,
            restart: 300,
            physical: 100,
        }
    }
}

/// The operator's count of grant reconciles (a Prometheus series).
const RECONCILES: &str = r#"jitrbac_reconcile_duration_seconds_count{kind="AccessGrant"}"#;

/// The operator's count of expiries, and those it measured within 100 ms.
const LAG_COUNT: &str = r#"jitrbac_expiry_lag_seconds_count{kind="AccessGrant"}"#;
const LAG_100MS: &str = r#"jitrbac_expiry_lag_seconds_bucket{le="0.1",kind="AccessGrant"}"#;

/// The bulk activation rate (grants/s) assumed before one is measured.
pub const DEFAULT_THROUGHPUT: f64 = 50.0;

/// How grants are created in bulk: this many requests in flight.
const CREATE_CONCURRENCY: usize = 32;

/// The benchmark's state: the control plane, the operator, and a watch on every binding
/// the operator manages.
pub struct Bench {
    pub env: Env,
    pub sizes: Sizes,
    /// Extra flags of `jitrbac run` in every scenario (none: its defaults, what users run).
    pub operator_args: Vec<String>,
    pub bindings: BindingLog,
    /// Grants activated per second in bulk, as measured by the last expiry scenario (used
    /// to size the lead time of later ones).
    pub throughput: std::sync::Mutex<f64>,
}

impl Bench {
    /// Starts a fresh control plane (the previous one's state is removed) and the
    /// operator; `throughput` is the bulk activation rate (grants/s) to assume until
    /// this bench measures one.
    pub async fn start(sizes: Sizes, operator_args: Vec<String>, throughput: f64) -> Result<Self> {
        let env = Env::start("bench", false, true).await?;
        let bindings = BindingLog::start(
            env.admin.clone(),
            "app.kubernetes.io/managed-by=jitrbac",
            watch::grant_of,
        )
        .await;
        let bench = Self {
            env,
            sizes,
            operator_args,
            bindings,
            throughput: std::sync::Mutex::new(throughput),
        };
        bench.start_operator("operator")?;
        bench.wait_ready(Duration::from_secs(60)).await?;
        Ok(bench)
    }

    /// Starts the operator (release build, info logs), replacing any running one (SIGTERM).
    pub fn start_operator(&self, name: &str) -> Result<()> {
        let mut slot = lock(&self.env.operator);
        if let Some(mut old) = slot.take() {
            old.terminate()?;
        }
        let kubeconfig = self.env.dir.join("kubeconfig");
        let args: Vec<&str> = self.operator_args.iter().map(String::as_str).collect();
        *slot = Some(Operator::start_logging(
            &self.env.dir,
            name,
            &kubeconfig,
            &args,
            "info",
        )?);
        Ok(())
    }

    /// Stops the operator (SIGTERM, as a rolling update does).
    pub fn stop_operator(&self) -> Result<()> {
        if let Some(mut op) = lock(&self.env.operator).take() {
            op.terminate()?;
        }
        Ok(())
    }

    fn operator_pid(&self) -> Result<u32> {
        Ok(lock(&self.env.operator).as_ref().ok_or("no operator")?.pid())
    }

    fn urls(&self) -> Result<(String, String)> {
        self.env.operator_urls().ok_or_else(|| "no operator".into())
    }

    /// Waits until the operator's /readyz answers 200; returns when that happened. Fails
    /// at once if the operator exits (e.g. refusing a flag of `--operator-args`), with the
    /// end of its log, and after `timeout` otherwise.
    async fn wait_ready(&self, timeout: Duration) -> Result<Timestamp> {
        let (health, _) = self.urls()?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if http_get(&format!("{health}/readyz")).await.is_ok_and(|(c, _)| c == 200) {
                return Ok(Timestamp::now());
            }
            let ended = lock(&self.env.operator).as_mut().and_then(|op| {
                let status = op.exited()?;
                let log = std::fs::read_to_string(&op.log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(5)..].join("\n");
                Some(format!(
                    "the operator exited ({status}); the end of {}:\n{tail}",
                    op.log.display()
                ))
            });
            if let Some(ended) = ended {
                return Err(ended.into());
            }
            if tokio::time::Instant::now() > deadline {
                return Err("the operator did not become ready".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn namespace(&self, name: &str) -> Result<String> {
        let api: Api<Namespace> = Api::all(self.env.admin.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &ns).await?;
        Ok(name.to_owned())
    }

    /// Waits until every grant in `created` (create call start by `<namespace>/<name>`)
    /// has its binding, or until `until`; then records the bulk activation rate: grants
    /// activated per second from the first create call to the last binding.
    async fn measure_throughput(&self, created: &HashMap<String, Timestamp>, until: Timestamp) {
        let wait = Duration::try_from(until.duration_since(Timestamp::now())).unwrap_or_default();
        let keys: Vec<String> = created.keys().cloned().collect();
        self.bindings.wait_all(wait, &keys, watch::added).await;
        let added: Vec<Timestamp> = created.keys().filter_map(|k| self.bindings.get(k).added).collect();
        let (Some(first), Some(last)) = (created.values().min(), added.iter().max()) else {
            return;
        };
        let secs = last.duration_since(*first).as_secs_f64();
        if secs > 0.0 {
            *lock(&self.throughput) = added.len() as f64 / secs;
        }
    }

    /// Waits until the operator has been idle for a second (its count of grant reconciles
    /// unchanged, read every 200 ms), or until `until`; returns when it settled, or `None`
    /// if it had not by `until`. A failed read of its metrics counts as busy.
    async fn settled(&self, until: Timestamp) -> Result<Option<Timestamp>> {
        let (_, metrics) = self.urls()?;
        let reconciles = || async {
            match http_get(&format!("{metrics}/metrics")).await {
                Ok((200, body)) => Some(metric(&body, RECONCILES)),
                _ => None,
            }
        };
        let mut last = (reconciles().await, Timestamp::now());
        while Timestamp::now() < until {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let count = reconciles().await;
            if count.is_none() || count != last.0 {
                last = (count, Timestamp::now());
            } else if ms(last.1, Timestamp::now()) >= 1000.0 {
                return Ok(Some(last.1));
            }
        }
        Ok(None)
    }

    /// The share (0 to 1) of the operator's expiries so far whose own measure of the lag
    /// falls in histogram bucket `bucket` (a `jitrbac_expiry_lag_seconds_bucket` series);
    /// `None` if the metrics cannot be read or no expiry was counted.
    async fn operator_share_within(&self, bucket: &str) -> Option<f64> {
        let (_, metrics) = self.urls().ok()?;
        let (code, body) = http_get(&format!("{metrics}/metrics")).await.ok()?;
        let count = metric(&body, LAG_COUNT);
        (code == 200 && count > 0.0).then(|| metric(&body, bucket) / count)
    }

    /// Grants activated per second in bulk, as last measured (or as given at start).
    pub fn throughput(&self) -> f64 {
        *lock(&self.throughput)
    }

    /// How long before their first expiry `grants` grants are created: twice the time
    /// they take to activate at the last measured rate, plus 20 s for the operator to
    /// settle.
    fn lead_time(&self, grants: usize) -> SignedDuration {
        let rate = *lock(&self.throughput);
        SignedDuration::from_secs_f64(grants as f64 / rate.max(1.0) * 2.0 + 20.0)
    }
}

/// A grant of ClusterRole `view` to User `subject`, ending as `end` says (YAML).
fn grant(ns: &str, name: &str, end: &str) -> Result<AccessGrant> {
    grant_with(
        ns,
        name,
        &format!("subjects: [{{kind: User, name: {name}}}]\nroleRef: {{kind: ClusterRole, name: view}}\n{end}"),
    )
}

/// Creates `grants` with [`CREATE_CONCURRENCY`] requests in flight; returns when each
/// create call started, by `<namespace>/<name>`.
async fn create_all(client: &Client, grants: Vec<AccessGrant>) -> Result<HashMap<String, Timestamp>> {
    let results: Vec<Result<(String, Timestamp)>> = futures::stream::iter(grants)
        .map(|g| async move {
            let ns = g.metadata.namespace.clone().unwrap_or_default();
            let key = format!("{ns}/{}", g.metadata.name.clone().unwrap_or_default());
            let api: Api<AccessGrant> = Api::namespaced(client.clone(), &ns);
            let started = Timestamp::now();
            api.create(&PostParams::default(), &g).await?;
            Ok((key, started))
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The API server's own cost of what the operator does at expiry.
#[derive(Debug, Clone, Serialize)]
pub struct Physical {
    /// One RoleBinding DELETE, call to response.
    pub delete_rtt: Summary,
    /// From the DELETE call to the deletion arriving through a watch.
    pub delete_to_watch: Summary,
    /// One RoleBinding CREATE, call to response.
    pub create_rtt: Summary,
}

pub async fn physical(b: &Bench) -> Result<Physical> {
    let ns = b.namespace("bench-physical").await?;
    let log = BindingLog::start(b.env.admin.clone(), "bench=physical", watch::name_of).await;
    let api: Api<RoleBinding> = Api::namespaced(b.env.admin.clone(), &ns);
    let (mut create, mut delete, mut propagate) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..b.sizes.physical {
        let name = format!("physical-{i}");
        let rb = RoleBinding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("bench".to_owned(), "physical".to_owned())].into()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: "view".into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: name.clone(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                namespace: None,
            }]),
        };
        let t = Timestamp::now();
        api.create(&PostParams::default(), &rb).await?;
        create.push(ms(t, Timestamp::now()));
    }
    for i in 0..b.sizes.physical {
        let name = format!("physical-{i}");
        let t = Timestamp::now();
        api.delete(&name, &DeleteParams::default()).await?;
        delete.push(ms(t, Timestamp::now()));
        let key = format!("{ns}/{name}");
        log.wait_all(Duration::from_secs(10), std::slice::from_ref(&key), watch::deleted)
            .await;
        if let Some(seen) = log.get(&key).deleted {
            propagate.push(ms(t, seen));
        }
    }
    Ok(Physical {
        delete_rtt: Summary::of(&delete),
        delete_to_watch: Summary::of(&propagate),
        create_rtt: Summary::of(&create),
    })
}

/// Grant creation to binding, at a steady rate.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub grants: usize,
    pub rate_per_s: f64,
    /// From the CREATE call of the grant to its RoleBinding arriving through a watch.
    pub apply_to_binding: Summary,
    /// Grants that got no binding within the wait.
    pub missing: usize,
    #[serde(skip)]
    pub samples_ms: Vec<f64>,
}

pub async fn latency(b: &Bench) -> Result<Latency> {
    let ns = b.namespace("bench-latency").await?;
    let n = b.sizes.latency_grants;
    let rate = b.sizes.latency_rate_per_s;
    let started: Arc<std::sync::Mutex<HashMap<String, Timestamp>>> = Arc::default();
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / rate)).await;
        let g = grant(&ns, &format!("latency-{i}"), "duration: 2h")?;
        let (client, started) = (b.env.admin.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            let api: Api<AccessGrant> = Api::namespaced(client, g.metadata.namespace.as_deref().unwrap_or_default());
            let key = format!(
                "{}/{}",
                g.metadata.namespace.clone().unwrap_or_default(),
                g.metadata.name.clone().unwrap_or_default()
            );
            let t = Timestamp::now();
            let created = api.create(&PostParams::default(), &g).await;
            lock(&started).insert(key, t);
            created.map(|_| ())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let keys: Vec<String> = lock(&started).keys().cloned().collect();
    b.bindings.wait_all(Duration::from_secs(120), &keys, watch::added).await;
    let started = lock(&started).clone();
    let samples: Vec<f64> = started
        .iter()
        .filter_map(|(k, t)| b.bindings.get(k).added.map(|added| ms(*t, added)))
        .collect();
    Ok(Latency {
        grants: n,
        rate_per_s: rate,
        apply_to_binding: Summary::of(&samples),
        missing: n - samples.len(),
        samples_ms: samples,
    })
}

/// Expiry lag with a number of grants active at once.
#[derive(Debug, Clone, Serialize)]
pub struct Expiry {
    pub active: usize,
    /// Seconds between the operator settling (every grant reconciled, no reconcile for a
    /// second) and the first expiry; `None` if it was still busy then.
    pub settled_before_first_expiry_s: Option<f64>,
    /// The share (0 to 1) of deletions the operator itself saw answered within 100 ms of
    /// `expiresAt` (its `jitrbac_expiry_lag_seconds` histogram: the DELETE response, before
    /// any watch); `None` if its metrics could not be read.
    pub operator_within_100ms: Option<f64>,
    /// From `expiresAt` to the binding's deletion arriving through a watch.
    pub expires_at_to_deletion: Summary,
    /// From `expiresAt` to a SubjectAccessReview for the subject turning false (a sample).
    pub expires_at_to_unauthorized: Summary,
    /// Grants not active before their expiry (excluded).
    pub not_active_in_time: usize,
    /// Bindings not seen deleted within the wait.
    pub not_deleted: usize,
    /// What the machine did from the first expiry until the last deletion was seen, and
    /// how much of it was outside this run (other load makes the tail longer); `None` if
    /// /proc could not be read.
    pub load: Option<Load>,
    #[serde(skip)]
    pub samples_ms: Vec<f64>,
}

/// How many grants of each expiry scenario get their authorization polled.
const SAR_SAMPLE: usize = 20;
/// [`SAR_SAMPLE`], for the report.
pub const SAR_SAMPLE_DOC: usize = SAR_SAMPLE;
/// How often the authorization of a sampled subject is asked around its expiry.
const SAR_INTERVAL: Duration = Duration::from_millis(5);

/// The fastest pace of expiries in the expiry-lag scenario, per second: the scenario
/// measures precision with many grants active, not throughput (the storm does that).
pub const EXPIRIES_PER_SECOND: usize = 100;

/// Over how long the expiries of `active` grants are spread: evenly over 10 s, or longer
/// so that at most [`EXPIRIES_PER_SECOND`] come due each second.
pub fn expiry_spread(active: usize) -> SignedDuration {
    SignedDuration::from_secs(10.max(active.div_ceil(EXPIRIES_PER_SECOND)) as i64)
}

pub async fn expiry(b: &Bench, active: usize, spread: SignedDuration, label: &str) -> Result<Expiry> {
    let ns = b.namespace(&format!("bench-{label}-{active}")).await?;
    let first_expiry = Timestamp::now() + b.lead_time(active);
    let step = spread.as_secs_f64() / active as f64;
    let expires: Vec<(String, Timestamp)> = (0..active)
        .map(|i| {
            let at = first_expiry + SignedDuration::from_secs_f64(step * i as f64);
            (format!("{label}-{i}"), at)
        })
        .collect();
    let grants = expires
        .iter()
        .map(|(name, at)| grant(&ns, name, &format!("expiresAt: \"{}\"", format_timestamp(*at))))
        .collect::<Result<Vec<_>>>()?;
    let created = create_all(&b.env.admin, grants).await?;
    b.measure_throughput(&created, first_expiry).await;
    // The lag is measured with the grants active and the operator done with them, as in a
    // cluster where grants were made over time: how long that margin was is reported.
    let settled_before_first_expiry_s = b
        .settled(first_expiry)
        .await?
        .map(|at| first_expiry.duration_since(at).as_secs_f64());
    // A sample of subjects whose authorization is asked until it is gone.
    let every = (active / SAR_SAMPLE).max(1);
    let pollers: Vec<_> = expires
        .iter()
        .step_by(every)
        .map(|(name, at)| {
            let (client, ns, name, at) = (b.env.admin.clone(), ns.clone(), name.clone(), *at);
            tokio::spawn(async move { unauthorized_after(client, &ns, &name, at).await })
        })
        .collect();
    let end = expires.last().map_or(first_expiry, |(_, at)| *at);
    if let Ok(left) = Duration::try_from(first_expiry.duration_since(Timestamp::now())) {
        tokio::time::sleep(left).await;
    }
    let before = CpuSnapshot::now().ok();
    // Once the last expiry has passed, every binding made is waited for to be gone (in
    // expiry order); one not made by then was not active in time, and is left out.
    if let Ok(left) = Duration::try_from(end.duration_since(Timestamp::now())) {
        tokio::time::sleep(left).await;
    }
    let made: Vec<String> = expires
        .iter()
        .map(|(n, _)| format!("{ns}/{n}"))
        .filter(|k| b.bindings.get(k).added.is_some())
        .collect();
    b.bindings
        .wait_all(Duration::from_secs(60), &made, watch::deleted)
        .await;
    let load = before.zip(CpuSnapshot::now().ok()).map(|(b, a)| a.since(&b));
    let operator_within_100ms = b.operator_share_within(LAG_100MS).await;
    let mut samples = Vec::new();
    let (mut not_active, mut not_deleted) = (0, 0);
    for (name, at) in &expires {
        let seen = b.bindings.get(&format!("{ns}/{name}"));
        match (seen.added, seen.deleted) {
            (Some(added), _) if added > *at => not_active += 1,
            (None, _) => not_active += 1,
            (Some(_), Some(deleted)) => samples.push(ms(*at, deleted)),
            (Some(_), None) => not_deleted += 1,
        }
    }
    let mut sar = Vec::new();
    for p in pollers {
        if let Ok(Ok(Some(lag))) = p.await {
            sar.push(lag);
        }
    }
    Ok(Expiry {
        active,
        settled_before_first_expiry_s,
        operator_within_100ms,
        expires_at_to_deletion: Summary::of(&samples),
        expires_at_to_unauthorized: Summary::of(&sar),
        not_active_in_time: not_active,
        not_deleted,
        load,
        samples_ms: samples,
    })
}

/// Milliseconds from `at` until the API server stops authorizing User `name` to list pods
/// in `ns`: asked once 100 ms before `at` (to know it was authorized), then every 5 ms
/// from `at`; `None` if it never was authorized.
///
/// Each question costs the API server a walk over the namespace's RoleBindings (10,000 in
/// the largest scenario), so none is asked where the answer is known to be yes: the
/// benchmark should load what it measures as little as it can.
async fn unauthorized_after(client: Client, ns: &str, name: &str, at: Timestamp) -> Result<Option<f64>> {
    let sleep_until = |t: Timestamp| async move {
        if let Ok(left) = Duration::try_from(t.duration_since(Timestamp::now())) {
            tokio::time::sleep(left).await;
        }
    };
    sleep_until(at - SignedDuration::from_millis(100)).await;
    let api: Api<SubjectAccessReview> = Api::all(client);
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(name.to_owned()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.to_owned()),
                verb: Some("list".into()),
                resource: Some("pods".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let mut was_allowed = false;
    let give_up = at + SignedDuration::from_secs(30);
    while Timestamp::now() < give_up {
        let asked = Timestamp::now();
        let allowed = api
            .create(&PostParams::default(), &review)
            .await?
            .status
            .is_some_and(|s| s.allowed);
        if allowed {
            was_allowed = true;
            if asked < at {
                sleep_until(at).await;
                continue;
            }
        } else if was_allowed && asked >= at {
            return Ok(Some(ms(at, asked)));
        }
        tokio::time::sleep(SAR_INTERVAL).await;
    }
    Ok(None)
}

/// Many grants expiring in the same second.
#[derive(Debug, Clone, Serialize)]
pub struct Storm {
    pub grants: usize,
    pub lag: Expiry,
    /// From the common `expiresAt` to the last binding's deletion.
    pub last_deleted_ms: f64,
}

pub async fn storm(b: &Bench) -> Result<Storm> {
    let n = b.sizes.storm;
    let lag = expiry(b, n, SignedDuration::ZERO, "storm").await?;
    Ok(Storm {
        grants: n,
        last_deleted_ms: lag.expires_at_to_deletion.max_ms,
        lag,
    })
}

/// Restart catch-up: grants that expired while no operator ran.
#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    pub grants: usize,
    /// From the operator's start to /readyz answering 200.
    pub start_to_ready_ms: f64,
    /// From the operator's start to the last overdue binding's deletion.
    pub start_to_all_revoked_ms: f64,
    /// From the operator's start to each overdue binding's deletion.
    pub start_to_revoked: Summary,
}

pub async fn restart(b: &Bench) -> Result<Restart> {
    let n = b.sizes.restart;
    let ns = b.namespace("bench-restart").await?;
    let at = Timestamp::now() + b.lead_time(n);
    let grants = (0..n)
        .map(|i| {
            grant(
                &ns,
                &format!("restart-{i}"),
                &format!("expiresAt: \"{}\"", format_timestamp(at)),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let keys: Vec<String> = (0..n).map(|i| format!("{ns}/restart-{i}")).collect();
    create_all(&b.env.admin, grants).await?;
    b.bindings
        .wait_all(
            Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or_default(),
            &keys,
            watch::added,
        )
        .await;
    // Bindings not made before the stop are left out (none, with a sufficient lead time).
    let made: Vec<String> = keys
        .iter()
        .filter(|k| b.bindings.get(k).added.is_some())
        .cloned()
        .collect();
    b.stop_operator()?;
    let resume = at + SignedDuration::from_secs(2);
    if let Ok(left) = Duration::try_from(resume.duration_since(Timestamp::now())) {
        tokio::time::sleep(left).await;
    }
    let started = Timestamp::now();
    b.start_operator("operator-after-restart")?;
    let ready = b.wait_ready(Duration::from_secs(120)).await?;
    b.bindings
        .wait_all(Duration::from_secs(120), &made, watch::deleted)
        .await;
    let revoked: Vec<f64> = made
        .iter()
        .filter_map(|k| b.bindings.get(k).deleted)
        .map(|d| ms(started, d))
        .collect();
    let summary = Summary::of(&revoked);
    Ok(Restart {
        grants: n,
        start_to_ready_ms: ms(started, ready),
        start_to_all_revoked_ms: summary.max_ms,
        start_to_revoked: summary,
    })
}

/// Many active grants: memory, idle CPU, cold start.
#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    pub active: usize,
    pub grants_in_cluster: usize,
    /// Time to create them and see every binding.
    pub setup_seconds: f64,
    pub memory_active: Memory,
    pub idle_seconds: u64,
    /// CPU seconds the operator used while idle with every grant active.
    pub idle_cpu_seconds: f64,
    /// At the end of the idle period: the steady state.
    pub memory_idle: Memory,
    /// After a cold start with every grant in the cluster: to /readyz, to every grant
    /// reconciled once.
    pub cold_start_to_ready_ms: f64,
    pub cold_start_to_caught_up_ms: f64,
    pub memory_after_cold_start: Memory,
    /// `jitrbac sweep --once` (the sweeper CronJob) over every managed binding, none
    /// overdue, with the operator stopped: wall time and peak RSS.
    pub sweep_once_ms: f64,
    pub sweep_once_peak_rss_mib: f64,
}

pub async fn scale(b: &Bench) -> Result<Scale> {
    let n = b.sizes.scale;
    let namespaces = 10;
    let mut grants = Vec::new();
    for j in 0..namespaces {
        let ns = b.namespace(&format!("bench-scale-{j}")).await?;
        for i in (j..n).step_by(namespaces) {
            grants.push(grant(&ns, &format!("scale-{i}"), "duration: 3h")?);
        }
    }
    let keys: Vec<String> = grants
        .iter()
        .map(|g| {
            format!(
                "{}/{}",
                g.metadata.namespace.clone().unwrap_or_default(),
                g.metadata.name.clone().unwrap_or_default()
            )
        })
        .collect();
    let t = Timestamp::now();
    create_all(&b.env.admin, grants).await?;
    b.bindings
        .wait_all(Duration::from_secs(1800), &keys, watch::added)
        .await;
    let setup_seconds = ms(t, Timestamp::now()) / 1000.0;
    let pid = b.operator_pid()?;
    let memory_active = process::memory(pid)?;
    let cpu_before = process::cpu_seconds(pid)?;
    tokio::time::sleep(Duration::from_secs(b.sizes.idle_seconds)).await;
    let idle_cpu_seconds = process::cpu_seconds(pid)? - cpu_before;
    let memory_idle = process::memory(pid)?;

    let grants_in_cluster = Api::<AccessGrant>::all(b.env.admin.clone())
        .list(&Default::default())
        .await?
        .items
        .len();
    b.stop_operator()?;
    let mut sweep = std::process::Command::new(env!("CARGO_BIN_EXE_jitrbac"));
    sweep
        .args(["sweep", "--once", "--log-format", "json"])
        .env("KUBECONFIG", b.env.dir.join("kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST");
    let sweep = tokio::task::spawn_blocking(move || process::run_measured(sweep)).await??;
    if !sweep.status.success() {
        return Err(format!("jitrbac sweep --once failed: {}", sweep.status).into());
    }
    let started = Timestamp::now();
    b.start_operator("operator-cold-start")?;
    let ready = b.wait_ready(Duration::from_secs(300)).await?;
    let (_, metrics) = b.urls()?;
    let caught_up = loop {
        let body = http_get(&format!("{metrics}/metrics"))
            .await
            .map(|(_, b)| b)
            .unwrap_or_default();
        if metric(&body, RECONCILES) >= grants_in_cluster as f64 {
            break Timestamp::now();
        }
        if ms(started, Timestamp::now()) > 600_000.0 {
            return Err("the cold-started operator did not catch up in 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let memory_after_cold_start = process::memory(b.operator_pid()?)?;
    Ok(Scale {
        active: n,
        grants_in_cluster,
        setup_seconds,
        memory_active,
        idle_seconds: b.sizes.idle_seconds,
        idle_cpu_seconds,
        memory_idle,
        cold_start_to_ready_ms: ms(started, ready),
        cold_start_to_caught_up_ms: ms(started, caught_up),
        memory_after_cold_start,
        sweep_once_ms: sweep.millis,
        sweep_once_peak_rss_mib: sweep.peak_rss_mib,
    })
}
