//! A map that forgets: entries by string key, each dropped a fixed time after it was last
//! written. For what the operator must remember about a grant only for a while (the
//! timer's deletions, the versions it wrote on top of), so that memory follows the recent
//! activity, not every grant the process ever saw.

use std::collections::{HashMap, VecDeque};

use jiff::{SignedDuration, Timestamp};

/// Entries by key, forgotten `keep` after their last write. Writes and lookups are
/// amortised constant time: old entries are dropped in the order written, on each write.
#[derive(Debug)]
pub struct Recent<V> {
    keep: SignedDuration,
    by_key: HashMap<String, (Timestamp, V)>,
    /// Every write, oldest first (a key written twice appears twice; only its last write
    /// keeps it).
    order: VecDeque<(Timestamp, String)>,
}

impl<V> Recent<V> {
    /// An empty map whose entries live `keep` after their last write.
    pub fn new(keep: SignedDuration) -> Self {
        Self {
            keep,
            by_key: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Returns the entry of `key` for writing, inserted with `V::default()` if missing,
    /// and marks it written at `now` (wall clock). First forgets entries last written
    /// `keep` or more before `now`.
    pub fn write(&mut self, key: &str, now: Timestamp) -> &mut V
    where
        V: Default,
    {
        self.forget_before(now - self.keep);
        self.order.push_back((now, key.to_owned()));
        let entry = self.by_key.entry(key.to_owned()).or_insert_with(|| (now, V::default()));
        entry.0 = now;
        &mut entry.1
    }

    /// The entry of `key`, if written within `keep` of its last write being forgotten.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.by_key.get(key).map(|(_, v)| v)
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn forget_before(&mut self, cutoff: Timestamp) {
        while let Some((at, _)) = self.order.front() {
            if *at > cutoff {
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

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn forgets_an_entry_keep_after_its_last_write() {
        let mut r: Recent<u32> = Recent::new(SignedDuration::from_mins(10));
        *r.write("a", at("2026-11-29T12:00:00Z")) = 1;
        *r.write("b", at("2026-11-29T12:05:00Z")) = 2;
        *r.write("a", at("2026-11-29T12:06:00Z")) += 1;
        r.write("c", at("2026-11-29T12:14:00Z"));
        assert_eq!(r.get("a"), Some(&2), "rewritten at 12:06, kept until 12:16");
        r.write("c", at("2026-11-29T12:15:30Z"));
        assert_eq!(r.get("b"), None, "written at 12:05, forgotten at 12:15");
        assert_eq!(r.get("a"), Some(&2));
        r.write("c", at("2026-11-29T12:16:00Z"));
        assert_eq!(r.get("a"), None);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn holds_one_entry_per_key() {
        let mut r: Recent<Vec<u8>> = Recent::new(SignedDuration::from_mins(10));
        let t = at("2026-11-29T12:00:00Z");
        for i in 0..5 {
            r.write("a", t).push(i);
        }
        assert_eq!(r.len(), 1);
        assert_eq!(r.get("a").map(Vec::len), Some(5));
        assert!(!r.is_empty());
    }
}
