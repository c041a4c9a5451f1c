//! A map that forgets: entries by string key, each dropped once a fixed time has passed
//! since it was last written. For what the operator must remember about a grant only for
//! a while (the timer's deletions, the versions it wrote on top of), so that memory
//! follows the recent activity, not every grant the process ever saw.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// Entries by key, each forgotten `keep` after its last write. Ages are measured on the
/// monotonic clock ([`Instant`]), so a step of the wall clock neither keeps nor drops
/// anything. Old entries are dropped, oldest first, on every write and lookup: both are
/// amortised constant time. Between calls, memory holds at most what was written in the
/// last `keep` before the latest call.
///
/// Keys are remembered by a 64-bit fingerprint (SipHash with a key chosen per map), not
/// as strings: the keys are uids, some 36 bytes each, written for every grant the
/// operator changes. Two keys share an entry only if their fingerprints collide, about
/// once in 2^64 pairs.
#[derive(Debug)]
pub struct Recent<V> {
    keep: Duration,
    hasher: RandomState,
    by_key: HashMap<u64, (Instant, V)>,
    /// Every write, oldest first (a key written twice appears twice; only its last write
    /// keeps it).
    order: VecDeque<(Instant, u64)>,
}

impl<V> Recent<V> {
    /// An empty map whose entries live `keep` after their last write.
    pub fn new(keep: Duration) -> Self {
        Self {
            keep,
            hasher: RandomState::new(),
            by_key: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The 64-bit fingerprint this map gives `text` (the same for the same text, for the
    /// life of the map): for values that only need comparing, kept without their text.
    pub fn fingerprint(&self, text: &str) -> u64 {
        self.hasher.hash_one(text)
    }

    /// Forgets what has expired by `now`, then returns the entry of `key` for writing
    /// (inserted as `V::default()` if missing) and marks it written at `now`.
    pub fn write(&mut self, key: &str, now: Instant) -> &mut V
    where
        V: Default,
    {
        self.forget_expired(now);
        let key = self.fingerprint(key);
        self.order.push_back((now, key));
        let entry = self.by_key.entry(key).or_insert_with(|| (now, V::default()));
        entry.0 = now;
        &mut entry.1
    }

    /// Forgets what has expired by `now`, then returns the entry of `key`, if any.
    pub fn get(&mut self, key: &str, now: Instant) -> Option<&V> {
        self.forget_expired(now);
        let key = self.fingerprint(key);
        self.by_key.get(&key).map(|(_, v)| v)
    }

    /// How many keys are remembered (expired ones included until the next call).
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Drops every entry last written `keep` or more before `now`.
    fn forget_expired(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.keep {
                break;
            }
            let Some((at, key)) = self.order.pop_front() else { break };
            if self.by_key.get(&key).is_some_and(|(last, _)| *last == at) {
                self.by_key.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn forgets_an_entry_keep_after_its_last_write() {
        let t0 = Instant::now();
        let mut r: Recent<u32> = Recent::new(10 * MIN);
        *r.write("a", t0) = 1;
        *r.write("b", t0 + 5 * MIN) = 2;
        *r.write("a", t0 + 6 * MIN) += 1;
        assert_eq!(r.get("a", t0 + 14 * MIN), Some(&2), "rewritten at 6 min, kept until 16");
        assert_eq!(r.get("b", t0 + 15 * MIN), None, "written at 5 min, gone at 15");
        assert_eq!(r.get("a", t0 + 15 * MIN), Some(&2));
        assert_eq!(r.get("a", t0 + 16 * MIN), None);
        assert!(r.is_empty(), "a lookup forgets too");
    }

    #[test]
    fn a_fingerprint_is_stable_and_tells_texts_apart() {
        let r: Recent<()> = Recent::new(MIN);
        assert_eq!(r.fingerprint("12345"), r.fingerprint("12345"));
        assert_ne!(r.fingerprint("12345"), r.fingerprint("12346"));
    }

    #[test]
    fn holds_one_entry_per_key() {
        let t0 = Instant::now();
        let mut r: Recent<Vec<u8>> = Recent::new(10 * MIN);
        for i in 0..5 {
            r.write("a", t0).push(i);
        }
        assert_eq!(r.len(), 1);
        assert_eq!(r.get("a", t0).map(Vec::len), Some(5));
    }
}
