//! The bindings the operator creates (name, labels, annotations, owner) and the rules that
//! decide whether an existing binding is one of them: labels alone prove nothing; the uid
//! recorded in the grant's status (which only the operator may write) does.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};

use super::request::GrantRequest;
use super::window::Window;
use crate::api::{BindingRef, RBAC_API_GROUP, Subject, format_timestamp};

/// Label on every binding the operator creates: `app.kubernetes.io/managed-by: jitrbac`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "jitrbac";
/// Label carrying the uid of the grant a binding was created for.
pub const GRANT_UID_LABEL: &str = "jitrbac.io/grant-uid";
/// Annotation with the instant the binding must be gone by (RFC 3339, UTC).
pub const EXPIRES_AT_ANNOTATION: &str = "jitrbac.io/expires-at";
/// Annotation with the instant access began (RFC 3339, UTC).
pub const GRANTED_AT_ANNOTATION: &str = "jitrbac.io/granted-at";
/// Annotation naming the grant: `<namespace>/<name>`, or `<name>` for cluster-scoped grants.
pub const GRANT_ANNOTATION: &str = "jitrbac.io/grant";
/// Label selector matching every binding the operator manages (a necessary, never a
/// sufficient, condition of ownership: anyone can copy labels).
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=jitrbac";

/// Longest name Kubernetes accepts for a RoleBinding (a DNS subdomain length).
const MAX_NAME_LEN: usize = 253;
const NAME_PREFIX: &str = "jitrbac-";
const HASH_LEN: usize = 8;

/// The grant a binding belongs to: what an ownerReference to it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `jitrbac.io/v1alpha1`.
    pub api_version: String,
    /// `AccessGrant` or `ClusterAccessGrant`.
    pub kind: String,
    /// The grant's namespace; `None` for cluster-scoped grants.
    pub namespace: Option<String>,
    /// The grant's name.
    pub name: String,
    /// The grant's `metadata.uid`.
    pub uid: String,
}

impl Owner {
    /// `<namespace>/<name>` or `<name>`, the value of [`GRANT_ANNOTATION`].
    pub fn qualified_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }

    fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// The deterministic binding name for a grant: `jitrbac-<grant name, cut to fit>-<hash>`,
/// where the hash is the first 8 hex digits of SHA-256 over the grant uid (and, for
/// cluster-scoped grants, the target namespace). Always at most 253 characters.
pub fn binding_name(grant_name: &str, grant_uid: &str, target_namespace: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(grant_uid.as_bytes());
    if let Some(ns) = target_namespace {
        hasher.update(b"/");
        hasher.update(ns.as_bytes());
    }
    let digest = hasher.finalize();
    let hash: String = digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..HASH_LEN].to_owned();
    let room = MAX_NAME_LEN - NAME_PREFIX.len() - 1 - HASH_LEN;
    let cut: String = grant_name.chars().take(room).collect();
    format!("{NAME_PREFIX}{cut}-{hash}")
}

/// Builds the RoleBinding the operator wants for `request` in `namespace`: name from
/// [`binding_name`], managed-by and grant-uid labels, expires-at/granted-at/grant
/// annotations, a controller ownerReference to the grant, and the request's subjects and
/// roleRef. The grant's own labels are never copied.
pub fn desired_role_binding(
    owner: &Owner,
    namespace: &str,
    request: &GrantRequest,
    window: &Window,
) -> rbac::RoleBinding {
    let target = owner.namespace.is_none().then_some(namespace);
    rbac::RoleBinding {
        metadata: ObjectMeta {
            name: Some(binding_name(&owner.name, &owner.uid, target)),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
                (GRANT_UID_LABEL.to_owned(), owner.uid.clone()),
            ])),
            annotations: Some(BTreeMap::from([
                (EXPIRES_AT_ANNOTATION.to_owned(), format_timestamp(window.expires_at)),
                (GRANTED_AT_ANNOTATION.to_owned(), format_timestamp(window.starts_at)),
                (GRANT_ANNOTATION.to_owned(), owner.qualified_name()),
            ])),
            owner_references: Some(vec![owner.owner_reference()]),
            ..ObjectMeta::default()
        },
        role_ref: rbac::RoleRef {
            api_group: RBAC_API_GROUP.to_owned(),
            kind: request.role_ref.kind.as_str().to_owned(),
            name: request.role_ref.name.clone(),
        },
        subjects: Some(request.subjects.iter().map(to_rbac_subject).collect()),
    }
}

/// Converts a grant subject (already normalised) to the rbac/v1 shape.
pub fn to_rbac_subject(s: &Subject) -> rbac::Subject {
    rbac::Subject {
        api_group: s.api_group.clone(),
        kind: s.kind.as_str().to_owned(),
        name: s.name.clone(),
        namespace: s.namespace.clone(),
    }
}

/// How an existing binding relates to a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// Created by this grant: its uid is recorded in the grant's status, and it sits in
    /// the grant's namespace under the deterministic name. May be repaired and deleted.
    Owned,
    /// Not recorded, but exactly what the operator would create for this grant (same
    /// name, labels, annotations, ownerReference to the grant's uid, roleRef and subjects):
    /// left behind when the operator stopped between creating a binding and recording it.
    /// Adopting it grants nothing beyond what the grant asks for.
    Equivalent,
    /// Anything else, including look-alikes carrying the operator's labels: never modified
    /// or deleted.
    Foreign,
}

/// Decides how `existing` relates to the grant `owner`, given the binding uids recorded in
/// the grant's status and the binding the operator wants (`desired`).
pub fn relation(
    existing: &rbac::RoleBinding,
    owner: &Owner,
    recorded: &[BindingRef],
    desired: &rbac::RoleBinding,
) -> Relation {
    if is_owned(existing, owner, recorded) {
        Relation::Owned
    } else if !is_recorded(existing, recorded)
        && existing.metadata.name == desired.metadata.name
        && !drifted(existing, desired)
    {
        Relation::Equivalent
    } else {
        Relation::Foreign
    }
}

/// The start of access carried by a binding of `observed` that the operator made for the
/// grant `owner` but could not record (the status write failed, or the operator stopped
/// in between): one under the deterministic name in the grant's namespace, labelled with
/// and owned by (controller ownerReference) the grant's uid. Its `jitrbac.io/granted-at`
/// is then the grant's recorded start, so that the window computed again is the one the
/// binding was made for, and the binding is adopted rather than taken for a stranger's.
/// The planner still trusts that start only between the grant's creation and now.
pub fn unrecorded_start(observed: &[rbac::RoleBinding], owner: &Owner) -> Option<String> {
    let name = expected_name(owner);
    observed
        .iter()
        .filter(|b| b.metadata.name.as_deref() == Some(name.as_str()) && b.metadata.namespace == owner.namespace)
        .filter(|b| {
            b.metadata.labels.as_ref().and_then(|l| l.get(GRANT_UID_LABEL)) == Some(&owner.uid)
                && b.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.controller == Some(true) && o.uid == owner.uid)
        })
        .find_map(|b| b.metadata.annotations.as_ref()?.get(GRANTED_AT_ANNOTATION).cloned())
}

/// True when `existing` was created for the grant `owner` ([`Relation::Owned`]): its uid
/// is among `recorded` (the grant's `status.bindings`, which only the operator may write),
/// and it sits where the operator puts the grant's binding — the grant's namespace, under
/// the deterministic name. Labels and the ownerReference are not required: someone who
/// strips them from the operator's binding does not make it foreign (it is restored).
pub fn is_owned(existing: &rbac::RoleBinding, owner: &Owner, recorded: &[BindingRef]) -> bool {
    is_recorded(existing, recorded)
        && existing.metadata.namespace == owner.namespace
        && existing.metadata.name.as_deref() == Some(expected_name(owner).as_str())
}

/// The entries of `recorded` that can be the grant's binding: a RoleBinding in the grant's
/// namespace under the deterministic name. Anything else in `status.bindings` is never
/// acted on (a forged entry cannot make the operator delete another binding).
pub fn plausible(recorded: &[BindingRef], owner: &Owner) -> Vec<BindingRef> {
    let name = expected_name(owner);
    recorded
        .iter()
        .filter(|r| r.kind == "RoleBinding" && r.namespace == owner.namespace && r.name == name)
        .cloned()
        .collect()
}

/// The name the operator gives the binding of `owner` (in the grant's own namespace).
pub fn expected_name(owner: &Owner) -> String {
    binding_name(&owner.name, &owner.uid, None)
}

fn is_recorded(existing: &rbac::RoleBinding, recorded: &[BindingRef]) -> bool {
    let uid = existing.metadata.uid.as_deref().unwrap_or_default();
    !uid.is_empty() && recorded.iter().any(|r| r.uid == uid)
}

/// True when `existing` differs from `desired` in anything the operator sets: subjects,
/// roleRef, its labels and annotations (other keys are ignored), or the ownerReferences
/// (exactly the grant's: another owner would let the garbage collector or a sweep treat
/// the binding differently). A binding carrying finalizers has drifted too: the operator
/// sets none, and a finalizer keeps a deleted binding, and the access it gives, in place.
pub fn drifted(existing: &rbac::RoleBinding, desired: &rbac::RoleBinding) -> bool {
    let subset = |want: &Option<BTreeMap<String, String>>, have: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let owners = |b: &rbac::RoleBinding| b.metadata.owner_references.clone().unwrap_or_default();
    existing.role_ref != desired.role_ref
        || existing.subjects.as_deref().unwrap_or_default() != desired.subjects.as_deref().unwrap_or_default()
        || !subset(&desired.metadata.labels, &existing.metadata.labels)
        || !subset(&desired.metadata.annotations, &existing.metadata.annotations)
        || owners(existing) != owners(desired)
        || existing.metadata.finalizers.as_ref().is_some_and(|f| !f.is_empty())
}

/// True when `existing` differs from `desired` only in its `jitrbac.io/expires-at`, and
/// that still says `recorded` (the expiry in the grant's status, RFC 3339): the grant's
/// expiry moved and the binding has not followed yet. Nobody edited it.
pub fn only_expiry_moved(existing: &rbac::RoleBinding, desired: &rbac::RoleBinding, recorded: Option<&str>) -> bool {
    let expiry = |b: &rbac::RoleBinding| {
        b.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(EXPIRES_AT_ANNOTATION))
            .cloned()
    };
    let Some(had) = expiry(existing) else {
        return false;
    };
    let mut followed = existing.clone();
    if let (Some(annotations), Some(want)) = (followed.metadata.annotations.as_mut(), expiry(desired)) {
        annotations.insert(EXPIRES_AT_ANNOTATION.to_owned(), want);
    }
    recorded == Some(had.as_str()) && !drifted(&followed, desired)
}

/// The names of the grants a change to `binding` may concern, all in the binding's
/// namespace: those its ownerReferences name (kind `AccessGrant`), the one its
/// `jitrbac.io/grant` annotation names, and the one its own name was made from
/// (`jitrbac-<grant name>-<hash>`, see [`binding_name`]; cut names give a prefix of the
/// grant's, which names no grant or another one, and either is harmless: a grant only
/// ever acts on the binding recorded in its status). The last cannot be edited away:
/// whoever strips a binding's ownerReference and annotation does not hide the change
/// from the grant it belongs to. Without duplicates.
pub fn grant_names(binding: &rbac::RoleBinding) -> Vec<String> {
    let namespace = binding.metadata.namespace.as_deref().unwrap_or_default();
    let owners = binding
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == "AccessGrant")
        .map(|o| o.name.clone());
    let annotated = binding
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(GRANT_ANNOTATION))
        .and_then(|g| g.split_once('/'))
        .filter(|(ns, _)| *ns == namespace)
        .map(|(_, name)| name.to_owned());
    let named = binding
        .metadata
        .name
        .as_deref()
        .and_then(|n| n.strip_prefix(NAME_PREFIX))
        .and_then(|n| n.rsplit_once('-'))
        .filter(|(grant, hash)| !grant.is_empty() && hash.len() == HASH_LEN)
        .map(|(grant, _)| grant.to_owned());
    let mut names: Vec<String> = owners.chain(annotated).chain(named).collect();
    names.sort();
    names.dedup();
    names
}

/// The expiry a managed binding carries in its [`EXPIRES_AT_ANNOTATION`], if present and
/// well-formed.
pub fn annotated_expiry(binding: &rbac::RoleBinding) -> Option<Timestamp> {
    binding
        .metadata
        .annotations
        .as_ref()?
        .get(EXPIRES_AT_ANNOTATION)
        .and_then(|v| crate::api::parse_timestamp(v).ok())
}

/// A [`BindingRef`] for a RoleBinding the API server returned (with its uid).
pub fn role_binding_ref(binding: &rbac::RoleBinding) -> BindingRef {
    BindingRef {
        kind: "RoleBinding".to_owned(),
        namespace: binding.metadata.namespace.clone(),
        name: binding.metadata.name.clone().unwrap_or_default(),
        uid: binding.metadata.uid.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GrantDuration;
    use crate::api::{RoleKind, RoleRef, SubjectKind};
    use crate::grant::request::End;

    fn owner() -> Owner {
        Owner {
            api_version: "jitrbac.io/v1alpha1".into(),
            kind: "AccessGrant".into(),
            namespace: Some("payments".into()),
            name: "alice-edit".into(),
            uid: "0b6c6f4e-2f6a-4f0e-9d57-0f7a2b7d1c11".into(),
        }
    }

    fn request() -> GrantRequest {
        GrantRequest {
            subjects: vec![Subject {
                kind: SubjectKind::User,
                name: "alice".into(),
                namespace: None,
                api_group: Some(RBAC_API_GROUP.into()),
            }],
            role_ref: RoleRef {
                kind: RoleKind::ClusterRole,
                name: "edit".into(),
                api_group: Some(RBAC_API_GROUP.into()),
            },
            starts_at: None,
            end: End::After(GrantDuration::from_secs(60).expect("non-zero")),
        }
    }

    fn window() -> Window {
        let start: Timestamp = "2026-11-29T12:00:00Z".parse().expect("valid");
        Window {
            starts_at: start,
            expires_at: start + jiff::SignedDuration::from_secs(60),
        }
    }

    #[test]
    fn names_are_deterministic_prefixed_and_bounded() {
        let a = binding_name("alice-edit", "uid-1", None);
        assert_eq!(a, binding_name("alice-edit", "uid-1", None));
        assert!(a.starts_with("jitrbac-alice-edit-"));
        assert_ne!(a, binding_name("alice-edit", "uid-2", None));
        assert_ne!(
            binding_name("g", "uid-1", Some("a")),
            binding_name("g", "uid-1", Some("b"))
        );
        let long = "x".repeat(253);
        assert_eq!(binding_name(&long, "uid-1", None).len(), 253);
    }

    #[test]
    fn desired_binding_carries_labels_annotations_and_owner() {
        let rb = desired_role_binding(&owner(), "payments", &request(), &window());
        let labels = rb.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(MANAGED_BY_LABEL).map(String::as_str), Some("jitrbac"));
        assert_eq!(labels.get(GRANT_UID_LABEL), Some(&owner().uid));
        assert_eq!(labels.len(), 2);
        let ann = rb.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            ann.get(EXPIRES_AT_ANNOTATION).map(String::as_str),
            Some("2026-11-29T12:01:00Z")
        );
        assert_eq!(
            ann.get(GRANT_ANNOTATION).map(String::as_str),
            Some("payments/alice-edit")
        );
        let refs = rb.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].controller, Some(true));
        assert_eq!(rb.role_ref.name, "edit");
        assert_eq!(annotated_expiry(&rb), Some(window().expires_at));
    }

    #[test]
    fn ownership_needs_the_recorded_uid_not_just_labels() {
        let desired = desired_role_binding(&owner(), "payments", &request(), &window());
        let mut existing = desired.clone();
        existing.metadata.uid = Some("binding-uid".into());
        let recorded = vec![role_binding_ref(&existing)];
        assert_eq!(relation(&existing, &owner(), &recorded, &desired), Relation::Owned);
        assert_eq!(relation(&existing, &owner(), &[], &desired), Relation::Equivalent);

        let mut edited = existing.clone();
        edited.subjects = Some(vec![]);
        assert!(drifted(&edited, &desired));
        assert_eq!(relation(&edited, &owner(), &recorded, &desired), Relation::Owned);
        assert_eq!(relation(&edited, &owner(), &[], &desired), Relation::Foreign);

        let mut look_alike = existing.clone();
        look_alike.metadata.owner_references = None;
        look_alike.metadata.uid = Some("other".into());
        assert_eq!(relation(&look_alike, &owner(), &recorded, &desired), Relation::Foreign);

        // Stripped of labels and owner reference, the operator's binding is still its own.
        let mut stripped = existing.clone();
        stripped.metadata.labels = None;
        stripped.metadata.owner_references = None;
        assert_eq!(relation(&stripped, &owner(), &recorded, &desired), Relation::Owned);
    }

    #[test]
    fn forged_status_entries_elsewhere_are_never_plausible() {
        let mut ours = desired_role_binding(&owner(), "payments", &request(), &window());
        ours.metadata.uid = Some("rb".into());
        let elsewhere = BindingRef {
            kind: "RoleBinding".into(),
            namespace: Some("other".into()),
            name: "important".into(),
            uid: "victim".into(),
        };
        let same_ns = BindingRef {
            namespace: Some("payments".into()),
            ..elsewhere.clone()
        };
        let recorded = vec![elsewhere, same_ns, role_binding_ref(&ours)];
        assert_eq!(plausible(&recorded, &owner()), vec![role_binding_ref(&ours)]);
    }

    #[test]
    fn finalizers_and_other_owners_on_a_binding_are_drift() {
        let desired = desired_role_binding(&owner(), "payments", &request(), &window());
        let mut kept = desired.clone();
        kept.metadata.finalizers = Some(vec!["example.com/keep".into()]);
        assert!(drifted(&kept, &desired), "a finalizer keeps a deleted binding in force");
        kept.metadata.finalizers = Some(vec![]);
        assert!(!drifted(&kept, &desired));
        let mut adopted = desired.clone();
        adopted
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "other".into(),
                uid: "cm-uid".into(),
                ..OwnerReference::default()
            });
        assert!(drifted(&adopted, &desired));
    }

    #[test]
    fn a_binding_names_its_grant_even_stripped_of_owner_and_annotation() {
        let desired = desired_role_binding(&owner(), "payments", &request(), &window());
        assert_eq!(grant_names(&desired), ["alice-edit"]);
        let mut stripped = desired.clone();
        stripped.metadata.owner_references = None;
        stripped.metadata.annotations = None;
        assert_eq!(grant_names(&stripped), ["alice-edit"]);
        let mut pointed_elsewhere = desired.clone();
        if let Some(owners) = pointed_elsewhere.metadata.owner_references.as_mut() {
            owners[0].name = "g3".into();
        }
        pointed_elsewhere
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(GRANT_ANNOTATION.into(), "other-ns/g4".into());
        assert_eq!(grant_names(&pointed_elsewhere), ["alice-edit", "g3"]);
        let mut foreign = desired;
        foreign.metadata.name = Some("team-admins".into());
        foreign.metadata.owner_references = None;
        foreign.metadata.annotations = None;
        assert!(grant_names(&foreign).is_empty());
    }

    #[test]
    fn extra_labels_on_a_binding_are_not_drift() {
        let desired = desired_role_binding(&owner(), "payments", &request(), &window());
        let mut existing = desired.clone();
        existing
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("team".into(), "payments".into());
        assert!(!drifted(&existing, &desired));
        existing.metadata.annotations = None;
        assert!(drifted(&existing, &desired));
    }
}
