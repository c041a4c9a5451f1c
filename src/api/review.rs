//! `GrantReview`: a reviewer's decision on one grant.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::grant::TEXT_RULE;
use super::identity::Identity;

/// A reviewer approves or denies one AccessGrant of this namespace. Create-only: a review
/// cannot be changed once made. It counts only if the reviewer has the `approve` verb on
/// the grant's role in this namespace (`kubectl auth can-i approve clusterroles.jitrbac.io/<role>`),
/// is not the requester, and names the grant's current uid.
// Each printcolumn(...) is a separate column; clippy mistakes them for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "jitrbac.io",
    version = "v1alpha1",
    kind = "GrantReview",
    namespaced,
    shortname = "gr",
    category = "jitrbac",
    doc = "GrantReview records a reviewer's decision (Approve or Deny) on one AccessGrant of this namespace. Create-only. It counts only if the reviewer may approve the grant's role here, is not the requester, and names the grant's current uid.",
    printcolumn(name = "Grant", type_ = "string", json_path = ".spec.grantRef.name"),
    printcolumn(name = "Decision", type_ = "string", json_path = ".spec.decision"),
    printcolumn(name = "Reviewer", type_ = "string", json_path = ".spec.reviewer.username"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("a GrantReview cannot be changed; create another one"))]
#[serde(rename_all = "camelCase")]
pub struct GrantReviewSpec {
    /// The grant reviewed: its name in this namespace and its uid (so that a review never
    /// applies to a different grant later created under the same name).
    pub grant_ref: GrantReference,

    /// `Approve` or `Deny`.
    pub decision: Decision,

    /// Why, for the audit trail. Line breaks and tabs are allowed; other control
    /// characters and invisible formatting characters are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new(TEXT_RULE).message("comment cannot contain control characters other than line breaks and tabs, nor invisible formatting characters"))]
    pub comment: Option<String>,

    /// Who reviewed, as the API server authenticated them. Set by the operator's admission
    /// webhook; anything a client writes here is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<Identity>,
}

/// A reference to one grant, down to its uid.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct GrantReference {
    /// Name of the AccessGrant, in the review's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `metadata.uid` of the AccessGrant (`kubectl get ag <name> -o jsonpath='{.metadata.uid}'`).
    #[schemars(length(min = 1, max = 64))]
    pub uid: String,
}

/// A reviewer's decision.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Counts towards the approvals the grant needs.
    Approve,
    /// Ends the grant `Denied` (reason `DeniedByReviewer`), whatever the approvals.
    Deny,
    /// Any other value (rejected by the CRD schema; see `SubjectKind::Unknown`).
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}
