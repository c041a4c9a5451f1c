//! When each grant is next looked at: its activation, expiry notice or expiry. One compact
//! deadline index for every grant, instead of one entry per grant in the controller's
//! queue (kube's queue keeps each request twice, with a full object reference and a timer
//! slot: some 0.85 KB per active grant, where this index costs a third of that).
//!
//! A reconcile sets its grant's next deadline with [`Wakeups::set`]; when the deadline
//! comes, the grant's reference is sent into the controller (its `reconcile_on` stream),
//! which reconciles it like any other trigger. Deadlines are wall-clock instants, as are
//! the grants' own.

use futures::Stream;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use super::sweeper::sleep_until;
use crate::api::AccessGrant;
use crate::grant::sweep::Deadlines;

/// How many grants one wake-up sends at most before looking at new deadlines again.
const BATCH: usize = 1024;

/// A grant's place: `(namespace, name)`.
type Key = (String, String);

/// The handle reconciles use to set their grant's next deadline. Cheap to call: it only
/// sends the change to the task that keeps the index.
#[derive(Debug, Clone)]
pub struct Wakeups {
    changes: mpsc::UnboundedSender<(Key, Option<Timestamp>)>,
}

impl Wakeups {
    /// Starts the index (a task on the current Tokio runtime). Returns the handle, and the
    /// stream of grants whose deadline has come, soonest first, for
    /// `Controller::reconcile_on`. The task ends when every handle is dropped.
    pub fn start() -> (Self, impl Stream<Item = ObjectRef<AccessGrant>> + Send + 'static) {
        let (changes, rx) = mpsc::unbounded_channel();
        let (due_tx, due_rx) = mpsc::unbounded_channel();
        tokio::spawn(keep(rx, due_tx));
        let due = futures::stream::unfold(due_rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
        (Self { changes }, due)
    }

    /// Sets (or replaces) when `grant` is next reconciled: at `at` (wall clock; at once if
    /// it has passed), or never when `None`.
    pub fn set(&self, grant: &AccessGrant, at: Option<Timestamp>) {
        // The index lives as long as the process; a send error only happens at shutdown.
        let _ = self.changes.send((key_of(grant), at));
    }

    /// Forgets `grant`'s deadline (it was deleted).
    pub fn forget(&self, grant: &AccessGrant) {
        self.set(grant, None);
    }
}

fn key_of(grant: &AccessGrant) -> Key {
    (grant.namespace().unwrap_or_default(), grant.name_any())
}

/// Keeps the index: applies changes, and at each deadline sends the grants due.
async fn keep(
    mut changes: mpsc::UnboundedReceiver<(Key, Option<Timestamp>)>,
    due: mpsc::UnboundedSender<ObjectRef<AccessGrant>>,
) {
    let mut deadlines: Deadlines<Key> = Deadlines::default();
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Some((key, at)) => deadlines.set(key, at),
                None => return,
            },
            () = sleep_until(deadlines.next()) => {
                for (namespace, name) in deadlines.pop_due(Timestamp::now(), BATCH) {
                    if due.send(ObjectRef::new(&name).within(&namespace)).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use jiff::SignedDuration;

    use super::*;

    fn grant(name: &str) -> AccessGrant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "jitrbac.io/v1alpha1",
            "kind": "AccessGrant",
            "metadata": {"name": name, "namespace": "payments"},
            "spec": {"subjects": [{"kind": "User", "name": "alice"}], "roleRef": {"kind": "ClusterRole", "name": "view"}}
        }))
        .expect("grant")
    }

    async fn next(due: &mut (impl Stream<Item = ObjectRef<AccessGrant>> + Unpin)) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(5), due.next())
            .await
            .ok()
            .flatten()
            .map(|r| r.name)
    }

    #[tokio::test]
    async fn grants_come_due_soonest_first_and_a_replaced_or_forgotten_deadline_does_not_fire() {
        let (wakeups, due) = Wakeups::start();
        let mut due = Box::pin(due);
        let now = Timestamp::now();
        let ms = |n| now + SignedDuration::from_millis(n);
        wakeups.set(&grant("later"), Some(ms(60)));
        wakeups.set(&grant("moved"), Some(ms(10)));
        wakeups.set(&grant("moved"), Some(ms(90)));
        wakeups.set(&grant("gone"), Some(ms(20)));
        wakeups.forget(&grant("gone"));
        wakeups.set(&grant("past"), Some(ms(-1000)));
        wakeups.set(&grant("never"), None);
        assert_eq!(next(&mut due).await.as_deref(), Some("past"));
        assert_eq!(next(&mut due).await.as_deref(), Some("later"));
        assert_eq!(next(&mut due).await.as_deref(), Some("moved"));
        assert!(Timestamp::now() >= ms(90), "not before its deadline");
        let nothing = tokio::time::timeout(Duration::from_millis(50), due.next()).await;
        assert!(nothing.is_err(), "nothing else is due");
    }
}
