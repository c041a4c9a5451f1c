//! When the operator's expiry timer deleted a binding, so that the grant's reconcile can
//! record the real end of access instead of the moment it got round to the grant.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::recent::Recent;

/// How long a deletion is remembered: far longer than a grant's reconcile can be delayed,
/// short enough to stay small.
const KEEP: Duration = Duration::from_secs(600);

/// Deletions by the expiry timer, by binding uid. Lost at restart (the grant's reconcile
/// then records the time it saw the binding gone, and the audit log keeps the sweeper's
/// record of a late deletion).
///
/// Also tells whether the timer is deleting right now ([`Revocations::busy`]): the grants'
/// reconciles then hold back their bookkeeping (status, Event, finalizer), so that in an
/// expiry storm the API server serves the deletions first.
#[derive(Debug)]
pub struct Revocations {
    deleted: Mutex<Recent<Option<Timestamp>>>,
    in_flight: AtomicUsize,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            deleted: Mutex::new(Recent::new(KEEP)),
            in_flight: AtomicUsize::new(0),
        }
    }
}

/// Marks one of the timer's deletions as in flight for as long as it lives (see
/// [`Revocations::deleting`]).
#[derive(Debug)]
pub struct InFlight<'a>(&'a Revocations);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Revocations {
    /// Marks a deletion as in flight until the returned guard is dropped.
    pub fn deleting(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// True while the expiry timer is deleting bindings.
    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    /// Records that the binding with uid `uid` was deleted at `at` (wall clock, as
    /// recorded in the grant's status); it is remembered for ten minutes. Amortised
    /// constant time.
    pub fn record(&self, uid: &str, at: Timestamp) {
        let mut deleted = self.deleted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *deleted.write(uid, Instant::now()) = Some(at);
    }

    /// When the binding with uid `uid` was deleted by the expiry timer, if it was, in the
    /// last ten minutes.
    pub fn deleted_at(&self, uid: &str) -> Option<Timestamp> {
        let mut deleted = self.deleted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        deleted.get(uid, Instant::now()).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_deletions_by_binding_uid() {
        // Forgetting after ten minutes is the job of `Recent`, tested there.
        let r = Revocations::default();
        let t0: Timestamp = "2026-11-29T12:00:00Z".parse().expect("time");
        r.record("a", t0);
        assert_eq!(r.deleted_at("a"), Some(t0));
        assert_eq!(r.deleted_at("b"), None);
    }

    #[test]
    fn is_busy_while_deletions_are_in_flight() {
        let r = Revocations::default();
        assert!(!r.busy());
        let one = r.deleting();
        let two = r.deleting();
        drop(one);
        assert!(r.busy(), "busy until the last deletion ends");
        drop(two);
        assert!(!r.busy());
    }
}
