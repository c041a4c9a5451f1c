//! When bindings appear and disappear, as a watch observes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

/// When one binding was first seen and when its deletion was seen.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    pub added: Option<Timestamp>,
    pub deleted: Option<Timestamp>,
}

/// Watch-observed times of the RoleBindings matching a label selector, keyed by a key
/// derived from each binding (e.g. the grant it belongs to).
#[derive(Clone)]
pub struct BindingLog {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    changed: Arc<Notify>,
}

impl BindingLog {
    /// Starts watching RoleBindings in every namespace matching `selector`; `key` names
    /// each binding (bindings it maps to `None` are ignored). Returns once the watch has
    /// delivered its first list, so later events are real changes.
    pub async fn start(client: Client, selector: &str, key: fn(&RoleBinding) -> Option<String>) -> Self {
        let log = Self {
            seen: Arc::default(),
            changed: Arc::new(Notify::new()),
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = log.clone();
        let config = watcher::Config::default().labels(selector);
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let stream = watcher(Api::<RoleBinding>::all(client), config);
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let now = Timestamp::now();
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(watcher::Event::Apply(b)) if ready.is_none() => task.record(&b, key, now, false),
                    Ok(watcher::Event::Delete(b)) if ready.is_none() => task.record(&b, key, now, true),
                    _ => {}
                }
            }
        });
        let _ = ready_rx.await;
        log
    }

    fn record(&self, b: &RoleBinding, key: fn(&RoleBinding) -> Option<String>, at: Timestamp, deleted: bool) {
        let Some(k) = key(b) else { return };
        {
            let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = seen.entry(k).or_default();
            if deleted {
                entry.deleted.get_or_insert(at);
            } else {
                entry.added.get_or_insert(at);
            }
        }
        self.changed.notify_waiters();
    }

    /// What was seen of `key`.
    pub fn get(&self, key: &str) -> Seen {
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.get(key).copied().unwrap_or_default()
    }

    /// Waits until `done` holds for the log (checked after every change), or `timeout`
    /// passes; returns whether it held.
    pub async fn wait(&self, timeout: Duration, done: impl Fn(&HashMap<String, Seen>) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            {
                let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if done(&seen) {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }
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
