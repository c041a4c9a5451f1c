//! The cache of managed RoleBindings, kept compact: per binding only what the operator
//! reads (uid, its own labels and annotations, ownerReferences, finalizers, roleRef,
//! subjects), with no maps and no spare capacity. A RoleBinding decoded from the API server costs some
//! 2.3 KB on the heap, more than half of it in its label and annotation maps; an entry
//! here costs under half of that, which is most of what 10,000 active grants cost.
//!
//! Readers get an ordinary [`RoleBinding`] back, built from the entry: the planner stays
//! written against the Kubernetes type, and sees every field it reads exactly as the API
//! server sent it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{PoisonError, RwLock};

use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::runtime::watcher;

use crate::api::RBAC_API_GROUP;
use crate::grant::binding::{
    EXPIRES_AT_ANNOTATION, GRANT_ANNOTATION, GRANT_UID_LABEL, GRANTED_AT_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};

/// A binding's place: `(namespace, name)`.
pub type Key = (String, String);

/// Values that recur in nearly every binding, kept once for the process instead of once
/// per binding.
const COMMON: &[&str] = &[
    RBAC_API_GROUP,
    MANAGED_BY_VALUE,
    "jitrbac.io/v1alpha1",
    "AccessGrant",
    "ClusterAccessGrant",
    "ClusterRole",
    "Role",
    "User",
    "Group",
    "ServiceAccount",
    "view",
    "edit",
    "admin",
];

/// A string from [`COMMON`], or one of its own (boxed: no spare capacity).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Text {
    Common(&'static str),
    Own(Box<str>),
}

impl Text {
    fn new(s: &str) -> Self {
        match COMMON.iter().find(|c| **c == s) {
            Some(c) => Self::Common(c),
            None => Self::Own(s.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Self::Common(s) => s,
            Self::Own(s) => s,
        }
    }
}

impl From<&Text> for String {
    fn from(t: &Text) -> Self {
        t.as_str().to_owned()
    }
}

/// What the operator reads of one RoleBinding.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    uid: Option<Box<str>>,
    /// The values of the operator's own labels and annotations (other keys are dropped:
    /// the operator never reads them), in the order of [`LABELS`] and [`ANNOTATIONS`].
    labels: [Option<Text>; 2],
    annotations: [Option<Box<str>>; 3],
    owners: Box<[Owner]>,
    /// Set by someone else (the operator sets none): drift, and kept to be seen as such.
    finalizers: Box<[Box<str>]>,
    role_ref: [Text; 3],
    subjects: Box<[Member]>,
}

/// The label keys kept, in the order of `Entry::labels`.
const LABELS: [&str; 2] = [MANAGED_BY_LABEL, GRANT_UID_LABEL];
/// The annotation keys kept, in the order of `Entry::annotations`.
const ANNOTATIONS: [&str; 3] = [EXPIRES_AT_ANNOTATION, GRANTED_AT_ANNOTATION, GRANT_ANNOTATION];
/// Where `jitrbac.io/expires-at` is in [`ANNOTATIONS`].
const EXPIRES_AT: usize = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    api_version: Text,
    kind: Text,
    name: Box<str>,
    uid: Box<str>,
    controller: Option<bool>,
    block_owner_deletion: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    kind: Text,
    name: Box<str>,
    namespace: Option<Box<str>>,
    api_group: Option<Text>,
}

fn unboxed(s: &Option<Box<str>>) -> Option<String> {
    s.as_deref().map(str::to_owned)
}

impl Entry {
    fn new(binding: &RoleBinding) -> Self {
        let meta = &binding.metadata;
        let own = |s: &String| s.as_str().into();
        let text = |s: &String| Text::new(s);
        Self {
            uid: meta.uid.as_ref().map(own),
            labels: LABELS.map(|k| meta.labels.as_ref().and_then(|l| l.get(k)).map(text)),
            annotations: ANNOTATIONS.map(|k| meta.annotations.as_ref().and_then(|a| a.get(k)).map(own)),
            owners: meta
                .owner_references
                .iter()
                .flatten()
                .map(|o| Owner {
                    api_version: text(&o.api_version),
                    kind: text(&o.kind),
                    name: own(&o.name),
                    uid: own(&o.uid),
                    controller: o.controller,
                    block_owner_deletion: o.block_owner_deletion,
                })
                .collect(),
            finalizers: meta.finalizers.iter().flatten().map(own).collect(),
            role_ref: [
                &binding.role_ref.api_group,
                &binding.role_ref.kind,
                &binding.role_ref.name,
            ]
            .map(text),
            subjects: binding
                .subjects
                .iter()
                .flatten()
                .map(|s| Member {
                    kind: text(&s.kind),
                    name: own(&s.name),
                    namespace: s.namespace.as_ref().map(own),
                    api_group: s.api_group.as_ref().map(text),
                })
                .collect(),
        }
    }

    fn role_binding(&self, (namespace, name): &Key) -> RoleBinding {
        let map = |keys: &[&str], values: Vec<Option<String>>| {
            let map: BTreeMap<String, String> = keys
                .iter()
                .zip(values)
                .filter_map(|(k, v)| Some(((*k).to_owned(), v?)))
                .collect();
            (!map.is_empty()).then_some(map)
        };
        RoleBinding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                uid: unboxed(&self.uid),
                labels: map(
                    &LABELS,
                    self.labels.iter().map(|v| v.as_ref().map(String::from)).collect(),
                ),
                annotations: map(&ANNOTATIONS, self.annotations.iter().map(unboxed).collect()),
                owner_references: (!self.owners.is_empty()).then(|| {
                    self.owners
                        .iter()
                        .map(|o| OwnerReference {
                            api_version: String::from(&o.api_version),
                            kind: String::from(&o.kind),
                            name: o.name.to_string(),
                            uid: o.uid.to_string(),
                            controller: o.controller,
                            block_owner_deletion: o.block_owner_deletion,
                        })
                        .collect()
                }),
                finalizers: (!self.finalizers.is_empty())
                    .then(|| self.finalizers.iter().map(|f| f.to_string()).collect()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: String::from(&self.role_ref[0]),
                kind: String::from(&self.role_ref[1]),
                name: String::from(&self.role_ref[2]),
            },
            subjects: (!self.subjects.is_empty()).then(|| {
                self.subjects
                    .iter()
                    .map(|s| Subject {
                        kind: String::from(&s.kind),
                        name: s.name.to_string(),
                        namespace: unboxed(&s.namespace),
                        api_group: s.api_group.as_ref().map(String::from),
                    })
                    .collect()
            }),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Entries are boxed: the table keeps an eighth or more of its slots free, and an
    /// entry is four times the size of a pointer.
    bindings: HashMap<Key, Box<Entry>>,
    /// The list in progress while the watch (re)lists: it replaces `bindings` whole once
    /// complete, so a binding deleted while the watch was down does not linger.
    relist: Option<HashMap<Key, Box<Entry>>>,
}

/// The managed RoleBindings as the watch last reported them, by namespace and name. Fed
/// with [`BindingCache::apply`]; safe to share between tasks.
#[derive(Debug, Default)]
pub struct BindingCache {
    state: RwLock<State>,
}

/// The cache's key for `binding`: its namespace and name (empty when missing).
pub fn key_of(binding: &RoleBinding) -> Key {
    (
        binding.metadata.namespace.clone().unwrap_or_default(),
        binding.metadata.name.clone().unwrap_or_default(),
    )
}

impl BindingCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one watch event, as kube's reflector does: `Apply` and `Delete` change one
    /// entry; `Init`, `InitApply` and `InitDone` build a complete list on the side, which
    /// replaces the cache at `InitDone` (until then readers see the previous list).
    pub fn apply(&self, event: &watcher::Event<RoleBinding>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(b) => {
                state.bindings.insert(key_of(b), Box::new(Entry::new(b)));
            }
            watcher::Event::Delete(b) => {
                state.bindings.remove(&key_of(b));
            }
            watcher::Event::Init => state.relist = Some(HashMap::new()),
            watcher::Event::InitApply(b) => {
                state
                    .relist
                    .get_or_insert_with(HashMap::new)
                    .insert(key_of(b), Box::new(Entry::new(b)));
            }
            watcher::Event::InitDone => {
                if let Some(mut listed) = state.relist.take() {
                    listed.shrink_to_fit();
                    state.bindings = listed;
                }
            }
        }
    }

    /// The cached binding `name` in `namespace`, with the fields the operator reads: name,
    /// namespace, uid, its own labels (`app.kubernetes.io/managed-by`,
    /// `jitrbac.io/grant-uid`) and annotations (`jitrbac.io/expires-at`,
    /// `jitrbac.io/granted-at`, `jitrbac.io/grant`), ownerReferences, finalizers, roleRef
    /// and subjects.
    /// Everything else (other labels and annotations, resourceVersion, timestamps) is
    /// absent. `None` if the cache holds no such binding.
    pub fn get(&self, namespace: &str, name: &str) -> Option<RoleBinding> {
        let key = (namespace.to_owned(), name.to_owned());
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.bindings.get(&key).map(|e| e.role_binding(&key))
    }

    /// Calls `f` with the uid (empty if missing) and the raw `jitrbac.io/expires-at`
    /// annotation (if any) of every cached binding, under the cache's read lock, and
    /// returns what `f` returns. For summaries over all bindings without copying them.
    pub fn scan<R>(&self, f: impl for<'a> FnOnce(&mut dyn Iterator<Item = (&'a str, Option<&'a str>)>) -> R) -> R {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut entries = state.bindings.values().map(|e| {
            (
                e.uid.as_deref().unwrap_or_default(),
                e.annotations[EXPIRES_AT].as_deref(),
            )
        });
        f(&mut entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str) -> RoleBinding {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "namespace": "payments",
                "uid": format!("uid-{name}"),
                "resourceVersion": "42",
                "labels": {
                    "app.kubernetes.io/managed-by": "jitrbac",
                    "jitrbac.io/grant-uid": "grant-uid",
                    "team": "payments"
                },
                "annotations": {
                    "jitrbac.io/expires-at": "2026-11-29T18:00:00Z",
                    "jitrbac.io/granted-at": "2026-11-29T16:00:00Z",
                    "jitrbac.io/grant": "payments/alice-edit",
                    "note": "kept elsewhere"
                },
                "finalizers": ["example.com/keep"],
                "ownerReferences": [{
                    "apiVersion": "jitrbac.io/v1alpha1",
                    "kind": "AccessGrant",
                    "name": "alice-edit",
                    "uid": "grant-uid",
                    "controller": true,
                    "blockOwnerDeletion": true
                }]
            },
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "payments-operator"},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
                {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}
            ]
        }))
        .expect("binding")
    }

    fn filled(names: &[&str]) -> BindingCache {
        let cache = BindingCache::new();
        for name in names {
            cache.apply(&watcher::Event::Apply(binding(name)));
        }
        cache
    }

    #[test]
    fn a_cached_binding_reads_back_with_every_field_the_operator_reads() {
        let cache = filled(&["rb"]);
        let mut want = binding("rb");
        want.metadata.resource_version = None;
        let kept = |map: &mut Option<BTreeMap<String, String>>, keys: &[&str]| {
            map.as_mut().expect("map").retain(|k, _| keys.contains(&k.as_str()));
        };
        kept(&mut want.metadata.labels, &LABELS);
        kept(&mut want.metadata.annotations, &ANNOTATIONS);
        assert_eq!(cache.get("payments", "rb"), Some(want));
    }

    #[test]
    fn a_binding_without_labels_owners_or_subjects_reads_back_without_them() {
        let mut bare = binding("bare");
        bare.metadata.labels = None;
        bare.metadata.annotations = None;
        bare.metadata.owner_references = None;
        bare.metadata.finalizers = None;
        bare.metadata.resource_version = None;
        bare.subjects = None;
        let cache = BindingCache::new();
        cache.apply(&watcher::Event::Apply(bare.clone()));
        assert_eq!(cache.get("payments", "bare"), Some(bare));
    }

    #[test]
    fn deletes_remove_and_other_places_are_absent() {
        let cache = filled(&["a", "b"]);
        cache.apply(&watcher::Event::Delete(binding("a")));
        assert_eq!(cache.get("payments", "a"), None);
        assert_eq!(cache.get("other", "b"), None);
        assert!(cache.get("payments", "b").is_some());
        assert_eq!(cache.scan(|entries| entries.count()), 1);
    }

    #[test]
    fn a_relist_replaces_the_cache_only_once_complete() {
        let cache = filled(&["gone", "kept"]);
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(binding("kept")));
        cache.apply(&watcher::Event::InitApply(binding("new")));
        assert!(
            cache.get("payments", "gone").is_some(),
            "the old list stays until the new one is complete"
        );
        assert_eq!(cache.get("payments", "new"), None);
        cache.apply(&watcher::Event::InitDone);
        assert_eq!(cache.get("payments", "gone"), None);
        assert!(cache.get("payments", "kept").is_some());
        assert!(cache.get("payments", "new").is_some());
    }

    #[test]
    fn a_scan_sees_each_uid_with_its_raw_expiry() {
        let cache = filled(&["a", "b"]);
        let mut seen = cache.scan(|entries| {
            entries
                .map(|(uid, at)| (uid.to_owned(), at.map(str::to_owned)))
                .collect::<Vec<_>>()
        });
        seen.sort();
        let at = Some("2026-11-29T18:00:00Z".to_owned());
        assert_eq!(seen, [("uid-a".to_owned(), at.clone()), ("uid-b".to_owned(), at)]);
    }
}
