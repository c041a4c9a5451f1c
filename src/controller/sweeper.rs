//! The sweeper: the expiry timer of every binding, and the backstop behind the grants.
//!
//! It keeps a deadline per managed RoleBinding (fed by the controller's watch on them) and
//! wakes at each binding's `jitrbac.io/expires-at`. A binding whose grant (as cached)
//! records it and has reached its own expiry is deleted at once, with one API call and
//! many in parallel: this is how access ends on time even when thousands of grants expire
//! together, while the grants' reconciles record the expiry a moment later. Any other
//! overdue binding gets a short grace for its grant's reconcile, then is deleted if the
//! rules of [`crate::grant::sweep`] allow it, with the grant read from the API server. It
//! also re-lists every managed binding periodically, so an expiry is enforced even if
//! watch events were lost, and once at start-up before anything else runs. Deletes carry a
//! uid precondition.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::{BoxFuture, OptionFuture};
use futures::stream::FuturesUnordered;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::binding_cache::{BindingCache, Key, key_of};
use super::error::Error;
use super::revocations::Revocations;
use super::{bindings, trim};
use crate::api::{AccessGrant, parse_timestamp};
use crate::audit::{self, AuditLog};
use crate::grant::binding::{EXPIRES_AT_ANNOTATION, MANAGED_SELECTOR, annotated_expiry, role_binding_ref};
use crate::grant::sweep::{Candidate, Deadlines, Verdict, candidate, timely, verdict};
use crate::metrics::Metrics;

/// Delay after a binding's expiry before the sweeper steps in for a binding it cannot
/// delete on the caches' word alone (its grant's reconcile decides first).
const GRACE: Duration = Duration::from_millis(500);
/// Wait before retrying a sweep that failed (e.g. the API server is unreachable).
const RETRY: Duration = Duration::from_millis(500);
/// From how many overdue bindings in one namespace a sweep reads the namespace's grants
/// with a LIST instead of a GET each.
const LIST_FROM: usize = 16;
/// Grants per page of that LIST; the same as client-go's pager and kube's watcher.
const LIST_PAGE: u32 = 500;
/// Bindings per page of a sweep's LIST of every managed binding. Larger than
/// [`LIST_PAGE`]: no deletion starts before the last page, and a second sequential page
/// added some 70 ms to the catch-up of 1,000 overdue bindings; 1,000 bindings decode to
/// under 10 MB.
pub const BINDING_PAGE: u32 = 1000;
/// Bindings per page of the periodic sweep, which nothing waits for: a page of 1,000
/// decodes to some 8 MB, and a re-list every 5 minutes left the RSS of an operator with
/// 10,000 active grants 22 MiB higher for good (the allocator keeps the pages); 100
/// decode to under 1 MB.
const PERIODIC_PAGE: u32 = 100;
/// How many deletes the timer, and a sweep, run at the same time.
const PARALLEL_DELETES: usize = 64;
/// A timer deletion later than this after the expiry gets its own audit record (the
/// operator was not acting at the expiry); on time, the grant's `Expired` record suffices.
const LATE: SignedDuration = SignedDuration::from_secs(1);

/// A change to the deadline index, sent by the controller's binding watch.
#[derive(Debug, Clone)]
pub enum Update {
    /// A binding was added or changed: its expiry, if annotated.
    Set(Key, Option<Timestamp>),
    /// A binding was deleted.
    Remove(Key),
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

/// Lists every managed RoleBinding (in pages of `page`: [`BINDING_PAGE`] where a sweep is
/// waited for, at start-up and in `jitrbac sweep --once`) and deletes the overdue
/// ones the rules allow, each judged against its grant as read from the API server: with
/// one GET per binding, or one paged LIST per namespace where at least [`LIST_FROM`] are
/// overdue (after downtime), at most [`PARALLEL_DELETES`] deletions at a time.
///
/// Used at start-up (before the controller runs), by `jitrbac sweep --once`, and
/// periodically. Returns a [`Report`]; fails with [`Error::ListBindings`] if the list
/// fails, and with the first per-binding error after attempting every binding.
pub async fn sweep_all(client: &Client, record: Record<'_>, page: u32) -> Result<Report, Error> {
    // Only the overdue bindings are kept: a page at a time, the list never holds every
    // managed binding in memory at once (10,000 of them decode to some 70 MB).
    let mut due: Vec<(RoleBinding, Candidate)> = Vec::new();
    list_overdue_bindings(
        client,
        ListParams::default().labels(MANAGED_SELECTOR).limit(page),
        |mut b: RoleBinding, c: Candidate| {
            trim::trim(&mut b);
            due.push((b, c));
        },
    )
    .await
    .map_err(Error::ListBindings)?;
    let mut report = Report {
        examined: due.len(),
        ..Report::default()
    };
    // Where many are overdue in one namespace (after downtime), its grants are read with
    // one paged LIST instead of a GET per binding.
    let mut per_namespace: HashMap<&str, usize> = HashMap::new();
    for (_, c) in &due {
        *per_namespace.entry(c.namespace.as_str()).or_default() += 1;
    }
    let mut listed: HashMap<String, HashMap<String, AccessGrant>> = HashMap::new();
    for (namespace, _) in per_namespace.into_iter().filter(|(_, n)| *n >= LIST_FROM) {
        match list_grants(client, namespace).await {
            Ok(grants) => {
                listed.insert(namespace.to_owned(), grants);
            }
            // Each binding's grant is then read on its own.
            Err(err) => warn!(error = %err, namespace, "cannot list grants for the sweep"),
        }
    }
    let listed = &listed;
    let results: Vec<Result<bool, Error>> = futures::stream::iter(due)
        .map(|(b, c)| async move {
            let grant = match listed.get(&c.namespace) {
                Some(grants) => grants.get(&c.grant_name).cloned(),
                None => read_grant(client, &c).await?,
            };
            sweep_one(client, record, &b, &c, grant.as_ref()).await
        })
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

/// The grant that owns `c`, as the API server has it now (`None` if there is none).
/// Fails with [`Error::ReadGrant`] if it cannot be read.
async fn read_grant(client: &Client, c: &Candidate) -> Result<Option<AccessGrant>, Error> {
    Api::<AccessGrant>::namespaced(client.clone(), &c.namespace)
        .get_opt(&c.grant_name)
        .await
        .map_err(Error::ReadGrant)
}

/// Every AccessGrant in `namespace`, by name (without managedFields), read with a LIST
/// in pages of [`LIST_PAGE`]. Fails with [`Error::ReadGrant`] if a page cannot be read.
async fn list_grants(client: &Client, namespace: &str) -> Result<HashMap<String, AccessGrant>, Error> {
    let api: Api<AccessGrant> = Api::namespaced(client.clone(), namespace);
    let mut grants = HashMap::new();
    list_pages(&api, ListParams::default().limit(LIST_PAGE), |mut g: AccessGrant| {
        if let Some(name) = g.metadata.name.clone() {
            trim::trim(&mut g);
            grants.insert(name, g);
        }
    })
    .await
    .map_err(Error::ReadGrant)?;
    Ok(grants)
}

/// Lists what `params` selects through `api` in pages of `params.limit` objects (one
/// consistent snapshot, continued with the API server's continue token) and hands each
/// object to `keep` as its page arrives, so that only one page is held at a time. Fails
/// with the first page that cannot be read (e.g. `410 Gone` once the snapshot is
/// compacted away).
async fn list_pages<K>(api: &Api<K>, mut params: ListParams, mut keep: impl FnMut(K)) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    loop {
        let page = api.list(&params).await?;
        page.items.into_iter().for_each(&mut keep);
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// A page of a LIST, its items left as JSON text.
#[derive(Deserialize)]
struct RawPage<'a> {
    metadata: ListMeta,
    #[serde(borrow, default)]
    items: Vec<&'a RawValue>,
}

/// What a sweep reads of a listed binding before deciding to decode it: its annotations.
#[derive(Deserialize)]
struct Annotated {
    #[serde(default)]
    metadata: AnnotatedMeta,
}

/// The annotations of a listed object.
#[derive(Default, Deserialize)]
struct AnnotatedMeta {
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Whether the object whose JSON is `item` has a `jitrbac.io/expires-at` annotation (an
/// RFC 3339 UTC timestamp) at or before `now`: false without one, or with one that does not
/// parse. Reads nothing but the annotations. Fails if `item` is not JSON, or its
/// `metadata` or `annotations` are not of the Kubernetes shape.
fn annotated_due(item: &str, now: Timestamp) -> Result<bool, serde_json::Error> {
    let annotated: Annotated = serde_json::from_str(item)?;
    Ok(annotated
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXPIRES_AT_ANNOTATION))
        .and_then(|at| parse_timestamp(at).ok())
        .is_some_and(|at| at <= now))
}

/// Lists the RoleBindings `params` selects, across namespaces, in pages of `params.limit`
/// (one consistent snapshot, continued with the API server's continue token), and hands
/// each overdue candidate (see [`candidate`]) to `keep` with the binding decoded.
///
/// A binding is decoded whole only if its `jitrbac.io/expires-at` annotation has passed;
/// the others are read no further than their annotations. A periodic sweep finds nearly
/// nothing overdue, and decoding every binding of every page (with its `managedFields`)
/// left the process's memory some 4 MiB higher after the first re-list of 10,000 (the
/// allocator kept what the decoding had fragmented).
/// Fails with the first page that cannot be read (e.g. `410 Gone` once the snapshot is
/// compacted away), or with [`kube::Error::SerdeError`] if a page or a binding in it is
/// not valid JSON of its type.
async fn list_overdue_bindings(
    client: &Client,
    mut params: ListParams,
    mut keep: impl FnMut(RoleBinding, Candidate),
) -> Result<(), kube::Error> {
    let path = RoleBinding::url_path(&(), None);
    loop {
        let request = kube::core::Request::new(&path)
            .list(&params)
            .map_err(kube::Error::BuildRequest)?;
        let text = client.request_text(request).await?;
        let page: RawPage<'_> = serde_json::from_str(&text).map_err(kube::Error::SerdeError)?;
        let now = Timestamp::now();
        for item in page.items {
            if !annotated_due(item.get(), now).map_err(kube::Error::SerdeError)? {
                // Not a candidate either: a candidate needs this annotation, passed.
                continue;
            }
            let binding: RoleBinding = serde_json::from_str(item.get()).map_err(kube::Error::SerdeError)?;
            if let Some(c) = candidate(&binding.metadata).filter(|c| c.expires_at <= now) {
                keep(binding, c);
            }
        }
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// Deletes one overdue candidate if the state of its grant (as just read from the API
/// server; `None` if there is none) allows it; returns whether it did.
async fn sweep_one(
    client: &Client,
    record: Record<'_>,
    binding: &RoleBinding,
    c: &Candidate,
    grant: Option<&AccessGrant>,
) -> Result<bool, Error> {
    let now = Timestamp::now();
    let v = verdict(c, grant, now);
    match v {
        Verdict::NotDue => return Ok(false),
        Verdict::Leave => {
            debug!(namespace = %c.namespace, binding = %c.name, "overdue binding not recorded by its grant; left to the grant's reconcile");
            return Ok(false);
        }
        Verdict::DeleteOwned | Verdict::DeleteOrphan => {}
    }
    if !bindings::delete(client, &role_binding_ref(binding)).await? {
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

/// The caches and records the sweeper's timer works with.
pub struct Timer {
    /// The controller's cache of managed RoleBindings.
    pub bindings: Arc<BindingCache>,
    /// The controller's cache of AccessGrants.
    pub grants: Store<AccessGrant>,
    /// Where timely deletions are recorded for the grants' reconciles.
    pub revocations: Arc<Revocations>,
}

/// Runs the sweeper until the process stops: deadlines from `updates`, bindings and grants
/// from the controller's caches (`timer`), a full re-list every `resync`. Deletes only
/// while `acting` (this replica is the leader); the deadlines are tracked either way.
pub async fn run(
    client: Client,
    audit: Arc<AuditLog>,
    metrics: Arc<Metrics>,
    timer: Timer,
    mut updates: mpsc::UnboundedReceiver<Update>,
    resync: Duration,
    mut acting: watch::Receiver<bool>,
) {
    let mut deadlines: Deadlines<Key> = Deadlines::default();
    // Bindings already given their grace: next time they are swept with the API's word.
    let mut graced: HashSet<Key> = HashSet::new();
    // Deletions in flight, at most PARALLEL_DELETES, and their keys. They run alongside
    // the loop, so a slow DELETE never holds back the next binding's deadline.
    let mut in_flight = FuturesUnordered::new();
    let mut flying: HashSet<Key> = HashSet::new();
    // The periodic re-list, also run alongside the loop.
    let mut periodic: Option<BoxFuture<'_, Result<Report, Error>>> = None;
    let mut resync_timer = tokio::time::interval(resync);
    resync_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync_timer.tick().await; // the first tick is immediate; start-up already swept
    let record = Record {
        audit: &audit,
        metrics: &metrics,
    };
    loop {
        let leading = *acting.borrow_and_update();
        if !leading && (!flying.is_empty() || periodic.is_some()) {
            // Leadership lost: stop deleting at once. The bindings whose deletion was cut
            // short are looked at again when this replica leads again.
            in_flight.clear();
            periodic = None;
            let now = Timestamp::now();
            for key in flying.drain() {
                deadlines.set(key, Some(now));
            }
        }
        let room = in_flight.len() < PARALLEL_DELETES;
        let wake = deadlines.next().filter(|_| leading && room);
        tokio::select! {
            update = updates.recv() => match update {
                Some(Update::Set(key, at)) => {
                    graced.remove(&key);
                    deadlines.set(key, at);
                }
                Some(Update::Remove(key)) => {
                    graced.remove(&key);
                    deadlines.set(key, None);
                }
                None => return,
            },
            () = sleep_until(wake) => {
                let now = Timestamp::now();
                for key in deadlines.pop_due(now, PARALLEL_DELETES - in_flight.len()) {
                    if flying.contains(&key) {
                        // Its deadline changed while it was being handled: look again after.
                        deadlines.set(key, Some(now + RETRY));
                        continue;
                    }
                    flying.insert(key.clone());
                    let was_graced = graced.contains(&key);
                    let (client, timer) = (&client, &timer);
                    in_flight.push(async move {
                        let _deleting = timer.revocations.deleting();
                        let outcome = expire(client, record, timer, &key, was_graced).await;
                        (key, outcome)
                    });
                }
            }
            Some((key, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                flying.remove(&key);
                match outcome {
                    Due::Done => {
                        graced.remove(&key);
                    }
                    Due::Grace => {
                        graced.insert(key.clone());
                        deadlines.set(key, Some(Timestamp::now() + GRACE));
                    }
                    Due::Retry => deadlines.set(key, Some(Timestamp::now() + RETRY)),
                    Due::Later(at) => {
                        graced.remove(&key);
                        deadlines.set(key, Some(at));
                    }
                }
            }
            changed = acting.changed() => if changed.is_err() {
                return;
            },
            _ = resync_timer.tick(), if leading && periodic.is_none() => {
                periodic = Some(Box::pin(sweep_all(&client, record, PERIODIC_PAGE)));
            }
            Some(result) = OptionFuture::from(periodic.as_mut()), if periodic.is_some() => {
                periodic = None;
                match result {
                    Ok(report) if report.deleted > 0 => info!(?report, "periodic sweep deleted overdue bindings"),
                    Ok(_) => debug!("periodic sweep found nothing overdue"),
                    Err(err) => warn!(error = %err, "periodic sweep failed"),
                }
            }
        }
    }
}

/// What became of a binding whose deadline came.
enum Due {
    /// Deleted, gone already, or not the sweeper's to delete.
    Done,
    /// Not due (its expiry moved, or it was looked at early): due at this instant.
    Later(Timestamp),
    /// Not deletable on the caches' word: look again after the grace.
    Grace,
    /// The API server failed: try again shortly.
    Retry,
}

/// Handles one binding whose deadline came: if its annotated expiry is still ahead (it
/// moved), says when to come back; deletes it at once if the caches prove it is due
/// ([`timely`]); otherwise, the first time, grants its grant's reconcile a grace, and
/// after that sweeps it with the grant read from the API server.
async fn expire(client: &Client, record: Record<'_>, timer: &Timer, key: &Key, graced: bool) -> Due {
    let Some(binding) = timer.bindings.get(&key.0, &key.1) else {
        return Due::Done;
    };
    let Some(c) = candidate(&binding.metadata) else {
        return Due::Done;
    };
    let now = Timestamp::now();
    if c.expires_at > now {
        return Due::Later(c.expires_at);
    }
    let grant = timer.grants.get(&ObjectRef::new(&c.grant_name).within(&c.namespace));
    if timely(&c, grant.as_deref(), now) {
        return match bindings::delete(client, &role_binding_ref(&binding)).await {
            Ok(true) => {
                let deleted = Timestamp::now();
                timer.revocations.record(&c.uid, deleted);
                let lag = deleted.duration_since(c.expires_at);
                record.metrics.expired(lag.as_secs_f64());
                debug!(namespace = %c.namespace, binding = %c.name, lag_ms = lag.as_millis(), "binding expired");
                if lag > LATE {
                    warn!(namespace = %c.namespace, binding = %c.name, lag_ms = lag.as_millis(), "binding expired late");
                    if let Err(err) = record.audit.write(&audit::swept(&binding, &c, false, deleted)) {
                        warn!(error = %err, "cannot write audit line");
                    }
                }
                Due::Done
            }
            Ok(false) => Due::Done,
            Err(err) => {
                warn!(error = %err, namespace = %c.namespace, binding = %c.name, "expiry failed; retrying");
                Due::Retry
            }
        };
    }
    if !graced {
        return Due::Grace;
    }
    let swept = async {
        let grant = read_grant(client, &c).await?;
        sweep_one(client, record, &binding, &c, grant.as_ref()).await
    }
    .await;
    match swept {
        Ok(_) => Due::Done,
        Err(err) => {
            warn!(error = %err, namespace = %c.namespace, binding = %c.name, "sweep failed; retrying");
            Due::Retry
        }
    }
}

/// Sleeps until `at` (wall clock), or forever when `None`.
pub(super) async fn sleep_until(at: Option<Timestamp>) {
    match at {
        Some(at) => {
            let left = Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO);
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn binding(annotations: &str) -> String {
        format!(
            r#"{{"metadata":{{"name":"b","managedFields":[{{"manager":"x","fieldsV1":{{"f:a":{{}}}}}}],{annotations}}},"roleRef":{{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"}}}}"#
        )
    }

    #[test]
    fn a_binding_is_due_once_its_annotated_expiry_has_passed() {
        let item = binding(r#""annotations":{"jitrbac.io/expires-at":"2026-01-01T10:00:00Z","jitrbac.io/grant":"g"}"#);
        assert!(annotated_due(&item, at("2026-01-01T10:00:00Z")).expect("json"));
        assert!(annotated_due(&item, at("2026-01-01T11:00:00Z")).expect("json"));
        assert!(!annotated_due(&item, at("2026-01-01T09:59:59.999Z")).expect("json"));
    }

    #[test]
    fn a_binding_without_a_readable_expiry_is_never_due() {
        let now = at("2030-01-01T00:00:00Z");
        for annotations in [
            r#""labels":{"a":"b"}"#,
            r#""annotations":null"#,
            r#""annotations":{"jitrbac.io/grant":"g"}"#,
            r#""annotations":{"jitrbac.io/expires-at":"tomorrow"}"#,
        ] {
            assert!(
                !annotated_due(&binding(annotations), now).expect("json"),
                "{annotations}"
            );
        }
        assert!(!annotated_due("{}", now).expect("json"));
    }

    #[test]
    fn an_item_that_is_not_json_of_the_kubernetes_shape_is_an_error() {
        let now = at("2030-01-01T00:00:00Z");
        assert!(annotated_due("not json", now).is_err());
        assert!(annotated_due(r#"{"metadata":"x"}"#, now).is_err());
    }
}
