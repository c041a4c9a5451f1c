//! The virtual resources of the eligibility model: `roles.jitrbac.io` and
//! `clusterroles.jitrbac.io`.
//!
//! Eligibility is plain RBAC on these resources with the custom verbs `request` and
//! `approve`, the pattern Kubernetes uses for `bind` and for certificate signers. They hold
//! no objects (every create is rejected); they are registered only so that RBAC tooling can
//! name them: `kubectl create role --verb=request --resource=clusterroles.jitrbac.io
//! --resource-name=edit` and `kubectl auth can-i request clusterroles.jitrbac.io/edit`
//! need the API server's discovery to know the resource.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A ClusterRole as a target of eligibility (`request`, `approve`).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "jitrbac.io",
    version = "v1alpha1",
    kind = "RequestableClusterRole",
    plural = "clusterroles",
    singular = "requestableclusterrole",
    namespaced,
    doc = "Names a ClusterRole in RBAC rules of the jitrbac eligibility model: the verbs request and approve on clusterroles.jitrbac.io/<name> say who may ask for, and who may approve, that ClusterRole in a namespace. Holds no objects.",
    validation = Rule::new("false").message("clusterroles.jitrbac.io only names ClusterRoles in RBAC rules (verbs request and approve); it holds no objects")
)]
pub struct RequestableClusterRoleSpec {}

/// A namespaced Role as a target of eligibility (`request`, `approve`).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "jitrbac.io",
    version = "v1alpha1",
    kind = "RequestableRole",
    plural = "roles",
    singular = "requestablerole",
    namespaced,
    doc = "Names a Role in RBAC rules of the jitrbac eligibility model: the verbs request and approve on roles.jitrbac.io/<name> say who may ask for, and who may approve, the Role of that name in a namespace. Holds no objects.",
    validation = Rule::new("false").message("roles.jitrbac.io only names Roles in RBAC rules (verbs request and approve); it holds no objects")
)]
pub struct RequestableRoleSpec {}
