//! The sweeper: the second line of defence behind each grant's own timer.
//!
//! It keeps a deadline per managed RoleBinding (fed by the controller's watch on them),
//! wakes at each binding's `jitrbac.io/expires-at` plus a short grace, and deletes the
//! binding if it is still there and the rules of [`crate::grant::sweep`] allow it. It also
//! re-lists every managed binding periodically, so an expiry is enforced even if watch
//! events were lost, and once at start-up before anything else runs. Deletes carry a uid
//! precondition.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::bindings;
use super::error::Error;
use crate::api::{AccessGrant, BindingRef};
use crate::audit::{self, AuditLog};
use crate::grant::binding::{MANAGED_SELECTOR, annotated_expiry};
use crate::grant::sweep::{Candidate, Deadlines, Verdict, candidate, verdict};
use crate::metrics::Metrics;

/// Delay after a binding's expiry before the sweeper steps in. The grant's own timer
/// normally deletes the binding at the exact instant; the grace keeps the two from racing.
const GRACE: Duration = Duration::from_millis(500);
/// Wait before retrying a sweep that failed (e.g. the API server is unreachable).
const RETRY: Duration = Duration::from_millis(500);
/// How many deletes a sweep runs at the same time.
const PARALLEL_DELETES: usize = 16;

/// A binding in the deadline index: `(namespace, name)`.
pub type Key = (String, String);

/// A change to the deadline index, sent by the controller's binding watch.
#[derive(Debug, Clone)]
pub enum Update {
    /// A binding was added or changed: its expiry, if annotated.
    Set(Key, Option<Timestamp>),
    /// A binding was deleted.
    Remove(Key),
}

fn key_of(b: &RoleBinding) -> Key {
    (
        b.metadata.namespace.clone().unwrap_or_default(),
        b.metadata.name.clone().unwrap_or_default(),
    )
}

/// Turns a watch event on managed RoleBindings into index updates and sends them.
pub fn feed(tx: &mpsc::UnboundedSender<Update>, event: &watcher::Event<RoleBinding>) {
    let update = match event {
        watcher::Event::Apply(b) | watcher::Event::InitApply(b) => Update::Set(key_of(b), annotated_expiry(b)),
        watcher::Event::Delete(b) => Update::Remove(key_of(b)),
        watcher::Event::Init | watcher::Event::InitDone => return,
    };
    // The receiver lives as long as the process; a send error only happens at shutdown.
    let _ = tx.send(update);
}

/// What a sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Managed bindings examined.
    pub examined: usize,
    /// Overdue bindings deleted.
    pub deleted: usize,
    /// Overdue bindings left alone because they are not provably the operator's.
    pub left: usize,
}

/// Where a sweep reports what it deleted: the audit trail and the expiry-lag metric.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    /// The audit trail (one `BindingSwept` line per deletion).
    pub audit: &'a AuditLog,
    /// Metrics (`jitrbac_expiry_lag_seconds`).
    pub metrics: &'a Metrics,
}

/// Lists every managed RoleBinding and deletes the overdue ones the rules allow.
///
/// Used at start-up (before the controller runs), by `jitrbac sweep --once`, and
/// periodically. Returns a [`Report`]; fails with [`Error::ListBindings`] if the list
/// fails, and with the first per-binding error after attempting every binding.
pub async fn sweep_all(client: &Client, record: Record<'_>) -> Result<Report, Error> {
    let api: Api<RoleBinding> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().labels(MANAGED_SELECTOR))
        .await
        .map_err(Error::ListBindings)?;
    let now = Timestamp::now();
    let due: Vec<(RoleBinding, Candidate)> = list
        .items
        .into_iter()
        .filter_map(|b| candidate(&b.metadata).map(|c| (b, c)))
        .filter(|(_, c)| c.expires_at <= now)
        .collect();
    let mut report = Report {
        examined: due.len(),
        ..Report::default()
    };
    let results: Vec<Result<bool, Error>> = futures::stream::iter(due)
        .map(|(b, c)| async move { sweep_one(client, record, &b, &c).await })
        .buffer_unordered(PARALLEL_DELETES)
        .collect()
        .await;
    let mut first_error = None;
    for r in results {
        match r {
            Ok(true) => report.deleted += 1,
            Ok(false) => report.left += 1,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Deletes one overdue candidate if its grant's state allows it; returns whether it did.
async fn sweep_one(client: &Client, record: Record<'_>, binding: &RoleBinding, c: &Candidate) -> Result<bool, Error> {
    let grants: Api<AccessGrant> = Api::namespaced(client.clone(), &c.namespace);
    let grant = grants.get_opt(&c.grant_name).await.map_err(Error::ReadGrant)?;
    let now = Timestamp::now();
    let v = verdict(c, grant.as_ref(), now);
    match v {
        Verdict::NotDue => return Ok(false),
        Verdict::Leave => {
            debug!(namespace = %c.namespace, binding = %c.name, "overdue binding not recorded by its grant; left to the grant's reconcile");
            return Ok(false);
        }
        Verdict::DeleteOwned | Verdict::DeleteOrphan => {}
    }
    let target = BindingRef {
        kind: "RoleBinding".to_owned(),
        namespace: Some(c.namespace.clone()),
        name: c.name.clone(),
        uid: c.uid.clone(),
    };
    if !bindings::delete(client, &target).await? {
        // Someone (the grant's own reconcile, another sweep) was first.
        return Ok(false);
    }
    let deleted = Timestamp::now();
    let lag = deleted.duration_since(c.expires_at);
    record.metrics.expired(lag.as_secs_f64());
    let orphan = v == Verdict::DeleteOrphan;
    warn!(namespace = %c.namespace, binding = %c.name, grant = %c.grant_name, lag_ms = lag.as_millis(), orphan, "swept an overdue binding");
    if let Err(err) = record.audit.write(&audit::swept(binding, c, orphan, deleted)) {
        warn!(error = %err, "cannot write audit line");
    }
    Ok(true)
}

/// Runs the sweeper until the process stops: deadlines from `updates`, bindings from
/// `store` (the controller's cache), a full re-list every `resync`. Deletes only while
/// `acting` (this replica is the leader); the deadlines are tracked either way.
pub async fn run(
    client: Client,
    audit: Arc<AuditLog>,
    metrics: Arc<Metrics>,
    store: Store<RoleBinding>,
    mut updates: mpsc::UnboundedReceiver<Update>,
    resync: Duration,
    mut acting: watch::Receiver<bool>,
) {
    let mut deadlines: Deadlines<Key> = Deadlines::default();
    let mut resync_timer = tokio::time::interval(resync);
    resync_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync_timer.tick().await; // the first tick is immediate; start-up already swept
    let record = Record {
        audit: &audit,
        metrics: &metrics,
    };
    loop {
        let leading = *acting.borrow_and_update();
        let wake = deadlines.next().filter(|_| leading).map(|at| at + GRACE);
        tokio::select! {
            update = updates.recv() => match update {
                Some(Update::Set(key, at)) => deadlines.set(key, at),
                Some(Update::Remove(key)) => deadlines.set(key, None),
                None => return,
            },
            () = sleep_until(wake) => {
                let due = deadlines.pop_due(Timestamp::now() - GRACE);
                let failed: Vec<Key> = futures::stream::iter(due)
                    .map(|key| {
                        let (client, store) = (&client, &store);
                        async move {
                            let binding = store.get(&ObjectRef::new(&key.1).within(&key.0))?;
                            let c = candidate(&binding.metadata)?;
                            let err = sweep_one(client, record, &binding, &c).await.err()?;
                            warn!(error = %err, namespace = %key.0, binding = %key.1, "sweep failed; retrying");
                            Some(key)
                        }
                    })
                    .buffer_unordered(PARALLEL_DELETES)
                    .filter_map(std::future::ready)
                    .collect()
                    .await;
                for key in failed {
                    deadlines.set(key, Some(Timestamp::now() + RETRY - GRACE));
                }
            }
            changed = acting.changed() => if changed.is_err() {
                return;
            },
            _ = resync_timer.tick(), if leading => match sweep_all(&client, record).await {
                Ok(report) if report.deleted > 0 => info!(?report, "periodic sweep deleted overdue bindings"),
                Ok(_) => debug!("periodic sweep found nothing overdue"),
                Err(err) => warn!(error = %err, "periodic sweep failed"),
            },
        }
    }
}

/// Sleeps until `at` (wall clock), or forever when `None`.
async fn sleep_until(at: Option<Timestamp>) {
    match at {
        Some(at) => {
            let left = Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO);
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}
