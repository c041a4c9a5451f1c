//! `AccessPolicy`: the rules a platform team sets for grants of some roles.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::subject::{ROLE_NAME_RULE, RoleKind};
use super::{DURATION_NONZERO_RULE, DURATION_SHAPE_RULE};

/// Rules for grants of some roles, cluster-wide or in some namespaces: how long they may
/// last, whether a reason (matching a pattern) is required, how many approvals they need,
/// how long they may wait for them, and whether break-glass is allowed. Where several
/// policies match a grant, the strictest value of each setting applies; where none
/// matches, the operator's defaults apply (self-service up to its maximum duration).
// Each printcolumn(...) is a separate column; clippy mistakes them for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "jitrbac.io",
    version = "v1alpha1",
    kind = "AccessPolicy",
    shortname = "ap",
    category = "jitrbac",
    doc = "AccessPolicy sets the rules for AccessGrants of some roles: maximum duration, required reason, number of approvals, pending timeout and break-glass. Where several policies match a grant, the strictest value of each setting applies.",
    printcolumn(name = "Approvals", type_ = "integer", json_path = ".spec.approvals"),
    printcolumn(name = "Max", type_ = "string", json_path = ".spec.maxDuration"),
    printcolumn(name = "Break-glass", type_ = "boolean", json_path = ".spec.breakGlass.allowed"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = Rule::new("!has(self.breakGlass) || !self.breakGlass.allowed || self.approvals > 0")
        .message("break-glass only makes sense where approvals are required (approvals > 0)")
)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicySpec {
    /// The roles this policy governs (1 to 32).
    #[schemars(length(min = 1, max = 32))]
    pub roles: Vec<PolicyRole>,

    /// Namespaces the policy applies in, by name. With neither `namespaces` nor
    /// `namespaceSelector` it applies in every namespace; with both, in the union.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 63)))]
    #[x_kube(validation = Rule::new("self.all(n, size(n) <= 63 && n.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))").message("namespaces must be namespace names: lower-case letters, digits and '-', at most 63 characters"))]
    pub namespaces: Vec<String>,

    /// Namespaces the policy applies in, by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Longest grant allowed, in the grant duration grammar (e.g. `4h`). Longer grants
    /// end `Denied` with reason `DurationTooLong`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new(DURATION_SHAPE_RULE).message("maxDuration must look like 90m, 1h30m, 8h or 1d (units d, h, m, s in that order, at most 6 digits each)"),
        validation = Rule::new(DURATION_NONZERO_RULE).message("maxDuration must be greater than zero")
    )]
    #[schemars(length(max = 32))]
    pub max_duration: Option<String>,

    /// Whether grants must state a `reason`.
    #[serde(default)]
    pub require_reason: bool,

    /// A regular expression (RE2 syntax) the grant's `reason` must match, e.g.
    /// `^(INC|CHG)-[0-9]+` for a ticket id. Implies `requireReason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub reason_pattern: Option<String>,

    /// Number of distinct approvers needed before the grant activates (0 = self-service).
    /// An approver needs the `approve` verb on the role in the grant's namespace and cannot
    /// be the requester.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub approvals: u8,

    /// How long a grant may wait for approval (grant duration grammar), from its creation.
    /// After that it ends `Expired` with reason `PendingTimeout`. Default: the operator's
    /// `--pending-timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new(DURATION_SHAPE_RULE).message("pendingTimeout must look like 30m, 1h or 1d (units d, h, m, s in that order, at most 6 digits each)"),
        validation = Rule::new(DURATION_NONZERO_RULE).message("pendingTimeout must be greater than zero")
    )]
    #[schemars(length(max = 32))]
    pub pending_timeout: Option<String>,

    /// Break-glass: emergency activation without waiting for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassPolicy>,
}

/// A role a policy governs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRole {
    /// `Role` or `ClusterRole`.
    pub kind: RoleKind,
    /// Name of the role.
    #[x_kube(validation = Rule::new(ROLE_NAME_RULE).message("name must be a role name"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Break-glass settings of a policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlassPolicy {
    /// Whether grants with `spec.breakGlass: true` may activate without approval.
    pub allowed: bool,

    /// Longest break-glass grant (grant duration grammar); longer requests are cut to it.
    /// Default: 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new(DURATION_SHAPE_RULE).message("maxDuration must look like 30m or 1h (units d, h, m, s in that order, at most 6 digits each)"),
        validation = Rule::new(DURATION_NONZERO_RULE).message("maxDuration must be greater than zero")
    )]
    #[schemars(length(max = 32))]
    pub max_duration: Option<String>,

    /// How long after activation an approving GrantReview must arrive; without one the
    /// grant is revoked (reason `BreakGlassNotReviewed`). Default: 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new(DURATION_SHAPE_RULE).message("reviewDeadline must look like 30m or 1h (units d, h, m, s in that order, at most 6 digits each)"),
        validation = Rule::new(DURATION_NONZERO_RULE).message("reviewDeadline must be greater than zero")
    )]
    #[schemars(length(max = 32))]
    pub review_deadline: Option<String>,
}
