//! The sweeper's rules: which overdue bindings it may delete, and the index of deadlines
//! that tells it when to look. Pure.
//!
//! The sweeper is the second line of defence behind each grant's own timer: it deletes a
//! managed binding whose `jitrbac.io/expires-at` has passed even if its grant is broken or
//! gone. It must never delete a binding the operator did not create, so a binding is swept
//! only when all of these hold:
//!
//! 1. it carries the managed-by label and a grant-uid label;
//! 2. it has exactly one ownerReference, a controller reference to an `AccessGrant` of the
//!    `jitrbac.io` group whose uid equals the grant-uid label, and the name the operator
//!    derives from that grant's name and uid;
//! 3. its expires-at annotation is well-formed and has passed;
//! 4. either that grant no longer exists (then Kubernetes' garbage collector would delete
//!    the binding anyway, since its only owner is gone: the sweeper only does it sooner),
//!    or the grant exists with that uid and records the binding's uid in its status.
//!
//! A look-alike carrying copied labels fails 2 or 4 and is left alone.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::binding::{EXPIRES_AT_ANNOTATION, GRANT_UID_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::api::{AccessGrant, GROUP, parse_timestamp};

/// A managed binding that may be swept, with what the rules need to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Namespace of the binding (and of its grant).
    pub namespace: String,
    /// Name of the binding.
    pub name: String,
    /// uid of the binding.
    pub uid: String,
    /// Name of the owning grant.
    pub grant_name: String,
    /// uid of the owning grant.
    pub grant_uid: String,
    /// The instant the binding must be gone by.
    pub expires_at: Timestamp,
}

/// Reads a RoleBinding's metadata; returns `None` unless rules 1–2 hold and the expiry
/// annotation parses (rule 3's first half), i.e. unless the binding looks like one the
/// operator created for an AccessGrant.
pub fn candidate(meta: &ObjectMeta) -> Option<Candidate> {
    let labels = meta.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY_VALUE) {
        return None;
    }
    let grant_uid = labels.get(GRANT_UID_LABEL)?;
    let owners = meta.owner_references.as_deref()?;
    let [owner] = owners else {
        return None;
    };
    let group_ok = owner.api_version.split('/').next() == Some(GROUP);
    if owner.controller != Some(true) || owner.kind != "AccessGrant" || !group_ok || &owner.uid != grant_uid {
        return None;
    }
    // The operator names a grant's binding deterministically from the grant's name and uid.
    if meta.name.as_deref() != Some(super::binding::binding_name(&owner.name, grant_uid, None).as_str()) {
        return None;
    }
    let expires_at = parse_timestamp(meta.annotations.as_ref()?.get(EXPIRES_AT_ANNOTATION)?).ok()?;
    Some(Candidate {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        grant_name: owner.name.clone(),
        grant_uid: grant_uid.clone(),
        expires_at,
    })
}

/// What to do with a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not yet due.
    NotDue,
    /// Due, and the grant still exists and owns it: delete it (the grant's own reconcile
    /// announces the expiry).
    DeleteOwned,
    /// Due, and its grant is gone: delete it and say so in the audit log.
    DeleteOrphan,
    /// Due, but the grant exists and does not record it: not provably ours; the grant's
    /// reconcile decides.
    Leave,
}

/// Applies rules 3–4 to `candidate` given the grant currently stored under its owner's
/// name (`None` when there is none) and `now`.
pub fn verdict(candidate: &Candidate, grant: Option<&AccessGrant>, now: Timestamp) -> Verdict {
    if candidate.expires_at > now {
        return Verdict::NotDue;
    }
    let same_grant = grant.filter(|g| g.metadata.uid.as_deref() == Some(candidate.grant_uid.as_str()));
    match same_grant {
        None => Verdict::DeleteOrphan,
        Some(g) => {
            let recorded = g
                .status
                .as_ref()
                .is_some_and(|s| s.bindings.iter().any(|b| b.uid == candidate.uid));
            if recorded { Verdict::DeleteOwned } else { Verdict::Leave }
        }
    }
}

/// Whether `candidate` may be deleted right now on the word of the caches alone: its
/// grant (`grant`, as cached) records it and the grant's own recorded expiry has come.
/// Then the deletion needs no further question to the API server (the grant's status is
/// written only by the operator). Otherwise the caller waits for the grant's reconcile
/// and falls back to [`verdict`] with the grant read from the API server.
pub fn timely(candidate: &Candidate, grant: Option<&AccessGrant>, now: Timestamp) -> bool {
    let expired = grant
        .and_then(|g| g.status.as_ref()?.expires_at.as_deref())
        .and_then(|t| parse_timestamp(t).ok())
        .is_some_and(|at| at <= now);
    expired && verdict(candidate, grant, now) == Verdict::DeleteOwned
}

/// Deadlines of the bindings the sweeper knows about (and of the grants' next wake-ups),
/// soonest first. Keys are opaque (the IO shell uses namespaces and names); each is kept
/// once, shared by the two orders it is indexed in.
#[derive(Debug, Clone)]
pub struct Deadlines<K: Ord + Clone + std::hash::Hash> {
    by_time: BTreeSet<(Timestamp, Arc<K>)>,
    by_key: HashMap<Arc<K>, Timestamp>,
}

impl<K: Ord + Clone + std::hash::Hash> Default for Deadlines<K> {
    fn default() -> Self {
        Self {
            by_time: BTreeSet::new(),
            by_key: HashMap::new(),
        }
    }
}

impl<K: Ord + Clone + std::hash::Hash> Deadlines<K> {
    /// Sets (or replaces) the deadline of `key`; `None` forgets it.
    pub fn set(&mut self, key: K, at: Option<Timestamp>) {
        let key = match self.by_key.remove_entry(&key) {
            Some((shared, old)) => {
                self.by_time.remove(&(old, shared.clone()));
                shared
            }
            None => Arc::new(key),
        };
        if let Some(at) = at {
            self.by_time.insert((at, key.clone()));
            self.by_key.insert(key, at);
        }
    }

    /// The soonest deadline, if any.
    pub fn next(&self) -> Option<Timestamp> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Removes and returns the keys whose deadline is at or before `now`, soonest first:
    /// at most `limit` of them (the rest stay for the next call).
    pub fn pop_due(&mut self, now: Timestamp, limit: usize) -> Vec<K> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.by_time.first() {
            if *at > now || due.len() >= limit {
                break;
            }
            if let Some((_, key)) = self.by_time.pop_first() {
                self.by_key.remove(&key);
                due.push(Arc::unwrap_or_clone(key));
            }
        }
        due
    }

    /// How many deadlines are held.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when no deadline is held.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;
    use crate::api::{AccessGrantSpec, BindingRef, GrantStatus, RoleKind, RoleRef};

    fn at(s: &str) -> Timestamp {
        s.parse().expect("valid")
    }

    fn meta() -> ObjectMeta {
        ObjectMeta {
            name: Some(crate::grant::binding::binding_name("g", "g-uid", None)),
            namespace: Some("ns".into()),
            uid: Some("rb-uid".into()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into()),
                (GRANT_UID_LABEL.into(), "g-uid".into()),
            ])),
            annotations: Some(BTreeMap::from([(
                EXPIRES_AT_ANNOTATION.into(),
                "2026-11-29T12:00:00Z".into(),
            )])),
            owner_references: Some(vec![OwnerReference {
                api_version: "jitrbac.io/v1alpha1".into(),
                kind: "AccessGrant".into(),
                name: "g".into(),
                uid: "g-uid".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        }
    }

    fn grant(uid: &str, recorded: &[&str]) -> AccessGrant {
        let mut g = AccessGrant::new(
            "g",
            AccessGrantSpec {
                subjects: vec![],
                role_ref: RoleRef {
                    kind: RoleKind::ClusterRole,
                    name: "view".into(),
                    api_group: None,
                },
                duration: Some("1h".into()),
                expires_at: None,
                starts_at: None,
                reason: None,
                revoked: false,
                break_glass: false,
                requester: None,
            },
        );
        g.metadata.uid = Some(uid.into());
        g.status = Some(GrantStatus {
            bindings: recorded
                .iter()
                .map(|u| BindingRef {
                    kind: "RoleBinding".into(),
                    namespace: Some("ns".into()),
                    name: crate::grant::binding::binding_name("g", "g-uid", None),
                    uid: (*u).into(),
                })
                .collect(),
            ..GrantStatus::default()
        });
        g
    }

    #[test]
    fn only_operator_shaped_bindings_are_candidates() {
        assert!(candidate(&meta()).is_some());
        let mut m = meta();
        m.owner_references = None;
        assert_eq!(candidate(&m), None, "labels alone prove nothing");
        let mut m = meta();
        if let Some(refs) = m.owner_references.as_mut() {
            refs[0].uid = "other".into();
        }
        assert_eq!(candidate(&m), None, "owner uid must match the label");
        let mut m = meta();
        if let Some(refs) = m.owner_references.as_mut() {
            refs.push(refs[0].clone());
            refs[1].uid = "second-owner".into();
        }
        assert_eq!(candidate(&m), None, "a second owner means GC would not delete it");
        let mut m = meta();
        if let Some(refs) = m.owner_references.as_mut() {
            refs[0].api_version = "evil.example.com/v1".into();
        }
        assert_eq!(candidate(&m), None);
        let mut m = meta();
        m.annotations = None;
        assert_eq!(candidate(&m), None);
    }

    #[test]
    fn verdicts() {
        let c = candidate(&meta()).expect("candidate");
        let before = at("2026-11-29T11:59:59.999Z");
        let after = at("2026-11-29T12:00:00Z");
        assert_eq!(verdict(&c, None, before), Verdict::NotDue);
        assert_eq!(verdict(&c, None, after), Verdict::DeleteOrphan);
        assert_eq!(
            verdict(&c, Some(&grant("g-uid", &["rb-uid"])), after),
            Verdict::DeleteOwned
        );
        assert_eq!(verdict(&c, Some(&grant("g-uid", &[])), after), Verdict::Leave);
        assert_eq!(
            verdict(&c, Some(&grant("new-uid", &[])), after),
            Verdict::DeleteOrphan,
            "a re-created grant with the same name is a different owner"
        );
    }

    #[test]
    fn only_a_recorded_binding_of_a_grant_whose_own_expiry_came_is_timely() {
        let c = candidate(&meta()).expect("candidate");
        let now = at("2026-11-29T12:00:00Z");
        let with_expiry = |uid: &str, recorded: &[&str], expiry: &str| {
            let mut g = grant(uid, recorded);
            if let Some(s) = g.status.as_mut() {
                s.expires_at = Some(expiry.into());
            }
            g
        };
        assert!(timely(
            &c,
            Some(&with_expiry("g-uid", &["rb-uid"], "2026-11-29T12:00:00Z")),
            now
        ));
        assert!(
            !timely(
                &c,
                Some(&with_expiry("g-uid", &["rb-uid"], "2026-11-29T13:00:00Z")),
                now
            ),
            "an annotation earlier than the grant's own expiry is not enough"
        );
        assert!(!timely(
            &c,
            Some(&with_expiry("g-uid", &[], "2026-11-29T12:00:00Z")),
            now
        ));
        assert!(
            !timely(&c, None, now),
            "a grant missing from the cache needs the API server's word"
        );
    }

    #[test]
    fn deadlines_pop_in_order_and_can_be_replaced() {
        let mut d = Deadlines::default();
        d.set("a", Some(at("2026-11-29T12:00:02Z")));
        d.set("b", Some(at("2026-11-29T12:00:01Z")));
        d.set("c", Some(at("2026-11-29T12:00:03Z")));
        d.set("c", None);
        d.set("a", Some(at("2026-11-29T12:00:00Z")));
        assert_eq!(d.len(), 2);
        assert_eq!(d.next(), Some(at("2026-11-29T12:00:00Z")));
        assert_eq!(d.pop_due(at("2026-11-29T12:00:01Z"), 10), vec!["a", "b"]);
        assert!(d.is_empty());
        assert_eq!(d.next(), None);
    }

    #[test]
    fn deadlines_pop_at_most_the_limit() {
        let mut d = Deadlines::default();
        d.set("a", Some(at("2026-11-29T12:00:00Z")));
        d.set("b", Some(at("2026-11-29T12:00:01Z")));
        let now = at("2026-11-29T12:00:05Z");
        assert_eq!(d.pop_due(now, 1), vec!["a"]);
        assert_eq!(d.next(), Some(at("2026-11-29T12:00:01Z")), "the rest stay, in order");
        assert_eq!(d.pop_due(now, 0), Vec::<&str>::new());
        assert_eq!(d.pop_due(now, 1), vec!["b"]);
    }
}
