//! The state shared by every reconcile, built once at start-up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use super::binding_cache::BindingCache;
use super::permissions::BindPermissions;
use super::recent::Recent;
use super::revocations::Revocations;
use super::wakeups::Wakeups;
use crate::api::{AccessGrant, AccessPolicy, GrantReview, GrantStatus};
use crate::audit::{self, AuditLog};
use crate::grant::policy::Defaults;
use crate::grant::{Limits, Transition};
use crate::metrics::Metrics;

/// Shortest and longest wait before retrying a grant whose reconcile failed.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long the versions written on top of are remembered: a stale version arrives
/// through the watch within moments; the bound keeps memory to the recent writes.
const SUPERSEDED_KEEP: Duration = Duration::from_secs(600);

/// Everything a reconcile needs: the client, the Event recorder, the cache of managed
/// bindings, the operator's limits and the audit log.
pub struct Context {
    /// Client for the API server.
    pub client: Client,
    /// Publishes `events.k8s.io/v1` Warning Events, which may repeat (a blocked grant's
    /// warning on every retry), deduplicated into series. It keeps each Event for six
    /// minutes to do so, and scans them all on each publish, so the Normal Events of
    /// transitions do not go through it: see [`Context::publish_transition`].
    pub recorder: Recorder,
    /// Who reports the Events: this controller and replica.
    reporter: Reporter,
    /// Cache of the RoleBindings carrying the managed-by label.
    pub bindings: Arc<BindingCache>,
    synced: Vec<watch::Receiver<bool>>,
    /// What any grant may ask for.
    pub limits: Limits,
    /// Defaults where no AccessPolicy applies.
    pub defaults: Defaults,
    /// Cache of AccessPolicies.
    pub policies: Store<AccessPolicy>,
    /// Cache of GrantReviews.
    pub reviews: Store<GrantReview>,
    /// Which roles the operator may bind (SelfSubjectAccessReview, cached).
    pub permissions: BindPermissions,
    /// The audit trail.
    pub audit: Arc<AuditLog>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Bindings the expiry timer deleted, and when.
    pub revocations: Arc<Revocations>,
    /// When each grant is next reconciled.
    pub wakeups: Wakeups,
    failures: Mutex<HashMap<ObjectRef<AccessGrant>, u32>>,
    /// Per grant uid, the last few resourceVersions this process wrote on top of, as
    /// fingerprints (forgotten ten minutes after the last write).
    superseded: Mutex<Recent<Vec<u64>>>,
    acting: watch::Receiver<bool>,
}

/// What [`Context::new`] is built from.
pub struct Parts {
    /// Client for the API server.
    pub client: Client,
    /// Cache of managed RoleBindings.
    pub bindings: Arc<BindingCache>,
    /// Flags that turn true once each cache a decision depends on (managed bindings,
    /// AccessPolicies, GrantReviews) holds its first complete list.
    pub synced: Vec<watch::Receiver<bool>>,
    /// True while this replica is the acting leader.
    pub acting: watch::Receiver<bool>,
    /// Limits applied to every grant.
    pub limits: Limits,
    /// Defaults where no AccessPolicy applies.
    pub defaults: Defaults,
    /// Cache of AccessPolicies.
    pub policies: Store<AccessPolicy>,
    /// Cache of GrantReviews.
    pub reviews: Store<GrantReview>,
    /// The audit trail.
    pub audit: Arc<AuditLog>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Bindings the expiry timer deleted, and when.
    pub revocations: Arc<Revocations>,
    /// When each grant is next reconciled.
    pub wakeups: Wakeups,
    /// Name of this replica in Events.
    pub instance: Option<String>,
}

impl Context {
    /// Builds the context from its parts.
    pub fn new(parts: Parts) -> Self {
        let reporter = Reporter {
            controller: "jitrbac.io/controller".to_owned(),
            instance: parts.instance,
        };
        Self {
            recorder: Recorder::new(parts.client.clone(), reporter.clone()),
            reporter,
            permissions: BindPermissions::new(parts.client.clone()),
            client: parts.client,
            bindings: parts.bindings,
            synced: parts.synced,
            acting: parts.acting,
            limits: parts.limits,
            defaults: parts.defaults,
            policies: parts.policies,
            reviews: parts.reviews,
            audit: parts.audit,
            metrics: parts.metrics,
            revocations: parts.revocations,
            wakeups: parts.wakeups,
            failures: Mutex::new(HashMap::new()),
            superseded: Mutex::new(Recent::new(SUPERSEDED_KEEP)),
        }
    }

    /// True while this replica is the leader and may change anything.
    pub fn is_acting(&self) -> bool {
        *self.acting.borrow()
    }

    /// Resolves when this replica stops being the acting leader.
    pub async fn stopped_acting(&self) {
        let _ = self.acting.clone().wait_for(|acting| !*acting).await;
    }

    /// Waits until every cache a decision depends on holds its first complete list: the
    /// managed bindings (or the operator would not see its own), the AccessPolicies (or
    /// a grant needing approval would look self-service) and the GrantReviews. Returns
    /// false if one never will (its watch was dropped: the process is stopping).
    pub async fn caches_synced(&self) -> bool {
        for flag in &self.synced {
            if flag.clone().wait_for(|synced| *synced).await.is_err() {
                return false;
            }
        }
        true
    }

    /// The cached RoleBindings in `namespace` with any of `names` (missing ones skipped),
    /// with the fields [`BindingCache::get`] keeps.
    pub fn cached_bindings<'a>(&self, namespace: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<RoleBinding> {
        names
            .into_iter()
            .filter_map(|n| self.bindings.get(namespace, n))
            .collect()
    }

    /// Records a failed reconcile of `grant` and returns how long to wait before the next
    /// try: 0.5 s doubling per consecutive failure, at most `cap` (default and upper
    /// bound: 5 minutes).
    pub fn next_backoff(&self, grant: &AccessGrant, cap: Option<Duration>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = failures.entry(ObjectRef::from_obj(grant)).or_insert(0);
        *n = n.saturating_add(1);
        let delay = BACKOFF_MIN.saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(16)));
        delay.min(cap.unwrap_or(BACKOFF_MAX).min(BACKOFF_MAX))
    }

    /// Records that this process wrote on top of `grant`'s current resourceVersion, so
    /// that a reconcile of that version (arriving late through the watch) is recognised
    /// as stale by [`Context::superseded`].
    pub fn supersede(&self, grant: &AccessGrant) {
        if let (Some(uid), Some(rv)) = (grant.uid(), grant.resource_version()) {
            let mut map = self
                .superseded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let rv = map.fingerprint(&rv);
            let seen = map.write(&uid, std::time::Instant::now());
            if seen.len() >= 4 {
                seen.remove(0);
            }
            seen.push(rv);
        }
    }

    /// True when `grant` is a version this process has already written on top of.
    pub fn superseded(&self, grant: &AccessGrant) -> bool {
        let mut map = self
            .superseded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (grant.uid(), grant.resource_version()) {
            (Some(uid), Some(rv)) => {
                let rv = map.fingerprint(&rv);
                map.get(&uid, std::time::Instant::now())
                    .is_some_and(|seen| seen.contains(&rv))
            }
            _ => false,
        }
    }

    /// Forgets earlier failures of `grant` after a successful reconcile.
    pub fn reset_backoff(&self, grant: &AccessGrant) {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failures.remove(&ObjectRef::from_obj(grant));
    }

    /// Writes the audit line of a transition. A failure to write is logged, never
    /// returned: recording must not undo or delay the transition itself.
    /// `denied_by` names the reviewer whose denial ended the grant, if one did.
    pub fn audit(
        &self,
        grant: &AccessGrant,
        status: &GrantStatus,
        transition: &Transition,
        at: jiff::Timestamp,
        denied_by: Option<&str>,
    ) {
        let mut line = audit::record(grant, status, transition, at);
        line.denied_by = denied_by.map(str::to_owned);
        if let Err(err) = self.audit.write(&line) {
            tracing::error!(error = %err, action = transition.action, "cannot write audit line");
        }
    }

    /// Publishes the Event of a transition on the grant: Normal for the grant's progress,
    /// Warning for refusals and drift. Failures are logged, not returned.
    ///
    /// A Normal transition happens once per grant and state (the grant's status records
    /// it), so its Event goes through a recorder of its own, which keeps nothing: memory
    /// stays flat when thousands of grants start or end together, where the shared
    /// recorder would keep each Event for six minutes. Warnings may repeat (a binding
    /// tampered with again and again is repaired again and again), so they go through the
    /// shared recorder and become a series.
    pub async fn publish_transition(&self, grant: &AccessGrant, transition: &Transition) {
        if transition.warning {
            self.publish(grant, EventType::Warning, transition.action, &transition.message)
                .await;
            return;
        }
        let once = Recorder::new(self.client.clone(), self.reporter.clone());
        publish_with(&once, grant, EventType::Normal, transition.action, &transition.message).await;
    }

    /// Publishes a Warning `ReviewIgnored` Event on the GrantReview `name` in `namespace`
    /// (on the review, so that every ignored review keeps its own message); logs a failure.
    pub async fn publish_on_review(&self, namespace: &str, name: &str, note: &str) {
        let Some(review) = self.reviews.get(&ObjectRef::new(name).within(namespace)) else {
            return;
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "ReviewIgnored".to_owned(),
            note: Some(truncate(note, 1024)),
            action: "ReviewIgnored".to_owned(),
            secondary: None,
        };
        // Each ignored review is reported once (the grant's status lists it): no series.
        let once = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(err) = once.publish(&event, &review.object_ref(&())).await {
            tracing::warn!(error = %err, review = name, "cannot publish event");
        }
    }

    /// Publishes one Event on `grant` with `reason` and `note`, folded into a series with
    /// the same Event published in the last six minutes (for warnings repeated on each
    /// retry); logs a failure.
    pub async fn publish(&self, grant: &AccessGrant, type_: EventType, reason: &str, note: &str) {
        publish_with(&self.recorder, grant, type_, reason, note).await;
    }
}

/// Publishes one Event on `grant` through `recorder`; logs a failure.
async fn publish_with(recorder: &Recorder, grant: &AccessGrant, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate(note, 1024)).filter(|n| !n.is_empty()),
        action: reason.to_owned(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, &grant.object_ref(&())).await {
        tracing::warn!(error = %err, reason, grant = %grant.name_any(), "cannot publish event");
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary (Event notes are limited to 1 kB).
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
