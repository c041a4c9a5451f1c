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

use crate::api::{AccessGrant, GrantStatus};
use crate::audit::{self, AuditLog};
use crate::grant::{Limits, Transition};

/// Shortest and longest wait before retrying a grant whose reconcile failed.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Everything a reconcile needs: the client, the Event recorder, the cache of managed
/// bindings, the operator's limits and the audit log.
pub struct Context {
    /// Client for the API server.
    pub client: Client,
    /// Publishes `events.k8s.io/v1` Events (deduplicated into series).
    pub recorder: Recorder,
    /// Cache of the RoleBindings carrying the managed-by label.
    pub bindings: Store<RoleBinding>,
    bindings_synced: watch::Receiver<bool>,
    /// What any grant may ask for.
    pub limits: Limits,
    /// The audit trail.
    pub audit: Arc<AuditLog>,
    failures: Mutex<HashMap<ObjectRef<AccessGrant>, u32>>,
}

impl Context {
    /// Builds the context. `instance` names this operator process in Events
    /// (`reportingInstance`), e.g. the pod name.
    pub fn new(
        client: Client,
        bindings: Store<RoleBinding>,
        limits: Limits,
        audit: Arc<AuditLog>,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: "jitrbac.io/controller".to_owned(),
            instance,
        };
        // `Store::wait_until_ready` wakes only one of several concurrent waiters (it polls a
        // single oneshot receiver), so one task waits on it and broadcasts the result.
        let (synced_tx, bindings_synced) = watch::channel(false);
        let store = bindings.clone();
        tokio::spawn(async move {
            if store.wait_until_ready().await.is_ok() {
                let _ = synced_tx.send(true);
            }
        });
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            bindings,
            bindings_synced,
            limits,
            audit,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until the binding cache holds the first complete list; returns false if it
    /// never will (the watch was dropped, i.e. the process is stopping).
    pub async fn bindings_synced(&self) -> bool {
        self.bindings_synced.clone().wait_for(|synced| *synced).await.is_ok()
    }

    /// The cached RoleBindings in `namespace` with any of `names` (missing ones skipped).
    pub fn cached_bindings<'a>(&self, namespace: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<RoleBinding> {
        names
            .into_iter()
            .filter_map(|n| self.bindings.get(&ObjectRef::new(n).within(namespace)))
            .map(|b| (*b).clone())
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

    /// Forgets earlier failures of `grant` after a successful reconcile.
    pub fn reset_backoff(&self, grant: &AccessGrant) {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failures.remove(&ObjectRef::from_obj(grant));
    }

    /// Writes the audit line of a transition. A failure to write is logged, never
    /// returned: recording must not undo or delay the transition itself.
    pub fn audit(&self, grant: &AccessGrant, status: &GrantStatus, transition: &Transition, at: jiff::Timestamp) {
        let line = audit::record(grant, status, transition, at);
        if let Err(err) = self.audit.write(&line) {
            tracing::error!(error = %err, action = transition.action, "cannot write audit line");
        }
    }

    /// Publishes the Event of a transition on the grant (Warning for refusals and drift).
    pub async fn publish_transition(&self, grant: &AccessGrant, transition: &Transition) {
        let type_ = if transition.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        self.publish(grant, type_, transition.action, &transition.message).await;
    }

    /// Publishes one Event on `grant` with `reason` and `note`; logs a failure.
    pub async fn publish(&self, grant: &AccessGrant, type_: EventType, reason: &str, note: &str) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(note, 1024)).filter(|n| !n.is_empty()),
            action: reason.to_owned(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, &grant.object_ref(&())).await {
            tracing::warn!(error = %err, reason, grant = %grant.name_any(), "cannot publish event");
        }
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
