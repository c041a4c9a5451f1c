//! What the caches keep of each watched object: everything the operator reads, without the
//! bookkeeping that makes up much of a small object's size.

use kube::Resource;

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
}
