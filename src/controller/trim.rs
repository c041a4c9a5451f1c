//! What the caches keep of each watched object: everything the operator reads, without the
//! bookkeeping that makes up much of a small object's size.

use kube::Resource;

use crate::api::AccessGrant;

/// The annotation `kubectl apply` (client-side) writes: a full copy of the applied manifest.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops `metadata.managedFields` (server-side apply's field owners) and the
/// `kubectl.kubernetes.io/last-applied-configuration` annotation from a watched object
/// before it is cached. The operator reads neither, and never writes an object back from
/// its cached copy (updates are built from scratch or are patches), so nothing is lost on
/// the server.
pub fn trim<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// [`trim`], then gives back the spare capacity decoding leaves in a grant's lists. A list
/// decoded from JSON grows one push at a time, and a list of one to three entries (the
/// usual subject, binding, condition or timeline entry) reserves room for four: some
/// 1 KB per cached grant in all. Changes no value.
pub fn trim_grant(grant: &mut AccessGrant) {
    trim(grant);
    if let Some(finalizers) = grant.metadata.finalizers.as_mut() {
        finalizers.shrink_to_fit();
    }
    let spec = &mut grant.spec;
    spec.subjects.shrink_to_fit();
    if let Some(requester) = spec.requester.as_mut() {
        requester.groups.shrink_to_fit();
        // Rebuilt from an exact-size iterator: the map's own vector gets no spare room.
        requester.extra = std::mem::take(&mut requester.extra)
            .into_iter()
            .map(|(k, mut v)| {
                v.shrink_to_fit();
                (k, v)
            })
            .collect();
    }
    if let Some(status) = grant.status.as_mut() {
        status.conditions.shrink_to_fit();
        status.ignored_reviews.shrink_to_fit();
        status.approvals.shrink_to_fit();
        status.bindings.shrink_to_fit();
        status.timeline.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::RoleBinding;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

    use super::*;

    #[test]
    fn trimming_keeps_the_annotations_the_operator_reads() {
        let mut rb = RoleBinding {
            metadata: ObjectMeta {
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                annotations: Some(
                    [
                        (LAST_APPLIED.to_owned(), "{}".to_owned()),
                        ("jitrbac.io/expires-at".to_owned(), "2026-11-29T18:00:00Z".to_owned()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            ..RoleBinding::default()
        };
        trim(&mut rb);
        assert_eq!(rb.metadata.managed_fields, None);
        let kept: Vec<_> = rb.metadata.annotations.unwrap_or_default().into_keys().collect();
        assert_eq!(kept, ["jitrbac.io/expires-at"]);
    }

    #[test]
    fn a_trimmed_grant_keeps_every_value_without_spare_room() {
        let json = serde_json::json!({
            "apiVersion": "jitrbac.io/v1alpha1",
            "kind": "AccessGrant",
            "metadata": {"name": "g", "namespace": "ns", "finalizers": ["jitrbac.io/bindings"]},
            "spec": {
                "subjects": [{"kind": "User", "name": "alice"}],
                "roleRef": {"kind": "ClusterRole", "name": "view"},
                "duration": "1h",
                "requester": {"username": "bob", "groups": ["dev"], "extra": {"scopes": ["a"]}}
            },
            "status": {
                "phase": "Active",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Active", "message": "",
                                "lastTransitionTime": "2026-11-29T16:00:00Z"}],
                "bindings": [{"kind": "RoleBinding", "namespace": "ns", "name": "rb", "uid": "u"}],
                "timeline": [{"time": "2026-11-29T16:00:00Z", "phase": "Active", "reason": "Granted"}]
            }
        });
        let mut grant: AccessGrant = serde_json::from_value(json).expect("grant");
        let before = grant.clone();
        trim_grant(&mut grant);
        assert_eq!(
            serde_json::to_value(&grant).expect("json"),
            serde_json::to_value(&before).expect("json")
        );
        let status = grant.status.as_ref().expect("status");
        assert_eq!(grant.spec.subjects.capacity(), 1);
        assert_eq!(status.conditions.capacity(), 1);
        assert_eq!(status.bindings.capacity(), 1);
        assert_eq!(status.timeline.capacity(), 1);
        let extra = &grant.spec.requester.as_ref().expect("requester").extra;
        assert_eq!(extra.get("scopes").map(Vec::capacity), Some(1));
    }
}
