//! When the operator's expiry timer deleted a binding, so that the grant's reconcile can
//! record the real end of access instead of the moment it got round to the grant.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

/// How long a deletion is remembered: far longer than a grant's reconcile can be delayed,
/// short enough to stay small.
const KEEP: SignedDuration = SignedDuration::from_mins(10);

/// Deletions by the expiry timer, by binding uid. Lost at restart (the grant's reconcile
/// then records the time it saw the binding gone, and the audit log keeps the sweeper's
/// record of a late deletion).
#[derive(Debug, Default)]
pub struct Revocations {
    deleted: Mutex<HashMap<String, Timestamp>>,
}

impl Revocations {
    /// Records that the binding with uid `uid` was deleted at `at`; forgets deletions
    /// older than ten minutes.
    pub fn record(&self, uid: &str, at: Timestamp) {
        let mut deleted = self.deleted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        deleted.retain(|_, t| at.duration_since(*t) < KEEP);
        deleted.insert(uid.to_owned(), at);
    }

    /// When the binding with uid `uid` was deleted by the expiry timer, if it was.
    pub fn deleted_at(&self, uid: &str) -> Option<Timestamp> {
        let deleted = self.deleted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        deleted.get(uid).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_recent_deletions_only() {
        let r = Revocations::default();
        let t0: Timestamp = "2026-11-29T12:00:00Z".parse().expect("time");
        r.record("a", t0);
        assert_eq!(r.deleted_at("a"), Some(t0));
        r.record("b", t0 + SignedDuration::from_mins(11));
        assert_eq!(r.deleted_at("a"), None, "forgotten after ten minutes");
        assert!(r.deleted_at("b").is_some());
    }
}
