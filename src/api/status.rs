//! The status the operator writes on grants (through the status subresource only).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most recent entries kept in `status.timeline`.
pub const TIMELINE_LIMIT: usize = 16;

/// Observed state of a grant. Written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantStatus {
    /// Where the grant is in its life: `Pending`, `Scheduled`, `Active`, `Expired`,
    /// `Revoked`, `Denied` or `Failed`. The last four are final: the grant never grants
    /// access again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<GrantPhase>,

    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current conditions. `Ready` is `True` while the grant is in the state its spec asks
    /// for (access granted while active, removed once ended); `Stalled` is `True` when an
    /// error needs a person to fix it. Compatible with kstatus (Flux, Argo CD).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// When access began or begins, in UTC (RFC 3339). Fixed once computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,

    /// When access ends, in UTC (RFC 3339). Fixed once computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,

    /// When access actually ended (binding deleted), in UTC (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,

    /// When the operator announced the coming expiry (Event `ExpiringSoon`), in UTC
    /// (RFC 3339). Set once per grant; absent for grants shorter than the notice period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_notice_at: Option<String>,

    /// How many approvals the grant needs, fixed when it started waiting for them: a
    /// policy deleted or relaxed later never lets it through with fewer (a stricter one
    /// can ask for more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_approvals: Option<u8>,

    /// GrantReviews naming this grant that do not count (already reported by a
    /// `ReviewIgnored` Event on the review and an audit record); at most 32, in the order
    /// reported (further ignored reviews are not reported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub ignored_reviews: Vec<String>,

    /// The approving reviews that counted, when the grant needed approval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalRecord>,

    /// For a break-glass grant: when an approving review must have arrived by, in UTC
    /// (RFC 3339); without one the grant is revoked then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_deadline: Option<String>,

    /// The bindings the operator created for this grant, with their uids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<BindingRef>,

    /// The most recent phase transitions, oldest first (at most 16 entries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineEntry>,
}

/// The phases of a grant's life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum GrantPhase {
    /// Not active yet: waiting for approval, or for something the `Ready` condition
    /// names (e.g. a role that does not exist yet).
    Pending,
    /// Approved; waiting for `startsAt`.
    Scheduled,
    /// Access is granted: the binding exists.
    Active,
    /// Access ended at `expiresAt` (final).
    Expired,
    /// Access was revoked before expiry (final).
    Revoked,
    /// The grant was refused by policy (final).
    Denied,
    /// The grant cannot be carried out as written (final).
    Failed,
}

impl GrantPhase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Scheduled,
        Self::Active,
        Self::Expired,
        Self::Revoked,
        Self::Denied,
        Self::Failed,
    ];

    /// True for the one-way phases `Expired`, `Revoked`, `Denied` and `Failed`: a grant in
    /// one of them never grants access again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Expired | Self::Revoked | Self::Denied | Self::Failed)
    }

    /// The spelling used in the API (`Active`, `Expired`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Scheduled => "Scheduled",
            Self::Active => "Active",
            Self::Expired => "Expired",
            Self::Revoked => "Revoked",
            Self::Denied => "Denied",
            Self::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for GrantPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A binding the operator created, identified down to its uid.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BindingRef {
    /// `RoleBinding` or `ClusterRoleBinding`.
    pub kind: String,
    /// Namespace of a RoleBinding; empty for a ClusterRoleBinding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the binding.
    pub name: String,
    /// The binding's `metadata.uid`, as returned when the operator created it.
    pub uid: String,
}

/// An approving review that counted towards a grant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    /// The reviewer's user name.
    pub reviewer: String,
    /// Name of the GrantReview.
    pub review: String,
    /// When the review was created, in UTC (RFC 3339).
    pub time: String,
}

/// One phase transition, for `kubectl describe` readers and auditors.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    /// When the transition happened, in UTC (RFC 3339).
    pub time: String,
    /// The phase entered.
    pub phase: GrantPhase,
    /// Machine-readable reason in CamelCase, e.g. `Granted`, `Expired`, `DurationTooLong`.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
