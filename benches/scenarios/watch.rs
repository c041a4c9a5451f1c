//! When bindings appear and disappear, as a watch observes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

/// When one binding was first seen and when its deletion was seen.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    pub added: Option<Timestamp>,
    pub deleted: Option<Timestamp>,
}

/// Watch-observed times of the RoleBindings matching a label selector, keyed by a key
/// derived from each binding (e.g. the grant it belongs to). The watch stops when the log
/// is dropped.
pub struct BindingLog {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    changed: Arc<Notify>,
    watch: tokio::task::JoinHandle<()>,
}

impl Drop for BindingLog {
    /// Stops the watch: the control plane it watches is usually stopped next, and a
    /// watch left running would retry against it, using CPU the next scenario measures.
    fn drop(&mut self) {
        self.watch.abort();
    }
}

impl BindingLog {
    /// Starts watching RoleBindings in every namespace matching `selector`; `key` names
    /// each binding (bindings it maps to `None` are ignored). Returns once the watch has
    /// delivered its first list, so later events are real changes.
    pub async fn start(client: Client, selector: &str, key: fn(&RoleBinding) -> Option<String>) -> Self {
        let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
        let changed = Arc::new(Notify::new());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let config = watcher::Config::default().labels(selector);
        let (log, notify) = (seen.clone(), changed.clone());
        let watch = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let stream = watcher(Api::<RoleBinding>::all(client), config).default_backoff();
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let now = Timestamp::now();
                let (b, deleted) = match event {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    Ok(watcher::Event::Apply(b)) if ready.is_none() => (b, false),
                    Ok(watcher::Event::Delete(b)) if ready.is_none() => (b, true),
                    _ => continue,
                };
                if let Some(k) = key(&b) {
                    record(&log, k, now, deleted);
                    notify.notify_waiters();
                }
            }
        });
        let _ = ready_rx.await;
        Self { seen, changed, watch }
    }

    /// What was seen of `key`.
    pub fn get(&self, key: &str) -> Seen {
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.get(key).copied().unwrap_or_default()
    }

    /// Waits until `done` holds for what was seen of every one of `keys`, or `timeout`
    /// passes; returns whether it held. `done` must stay true once true (a binding's
    /// times are only ever set once): each key is checked until it holds, in order, so a
    /// wait costs O(keys + changes), not O(keys × changes) — the bench shares the CPU
    /// with what it measures.
    pub async fn wait_all(&self, timeout: Duration, keys: &[String], done: impl Fn(Seen) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut next = 0;
        loop {
            let changed = self.changed.notified();
            {
                let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                while next < keys.len() && done(seen.get(&keys[next]).copied().unwrap_or_default()) {
                    next += 1;
                }
            }
            if next == keys.len() {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }
}

/// Notes that the binding keyed `key` was seen added (or `deleted`) at `at`; only the
/// first sighting of each counts.
fn record(seen: &Mutex<HashMap<String, Seen>>, key: String, at: Timestamp, deleted: bool) {
    let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let entry = seen.entry(key).or_default();
    if deleted {
        entry.deleted.get_or_insert(at);
    } else {
        entry.added.get_or_insert(at);
    }
}

/// Whether a binding was seen created.
pub fn added(s: Seen) -> bool {
    s.added.is_some()
}

/// Whether a binding was seen deleted.
pub fn deleted(s: Seen) -> bool {
    s.deleted.is_some()
}

/// The key of an operator-created binding: the grant it belongs to, `<namespace>/<name>`
/// (its `jitrbac.io/grant` annotation).
pub fn grant_of(b: &RoleBinding) -> Option<String> {
    b.annotations().get("jitrbac.io/grant").cloned()
}

/// The key of a plain binding: `<namespace>/<name>`.
pub fn name_of(b: &RoleBinding) -> Option<String> {
    Some(format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any()))
}
