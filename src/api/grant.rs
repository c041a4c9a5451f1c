//! `AccessGrant`: time-bound access to one role inside one namespace.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::identity::Identity;
use super::status::GrantStatus;
use super::subject::{RoleRef, Subject};
use super::{DURATION_NONZERO_RULE, DURATION_SHAPE_RULE, TIMESTAMP_SHAPE_RULE};

/// CEL: a real instant (February 30 fails to parse) in a sane range.
const TIMESTAMP_RANGE_RULE: &str =
    "timestamp(self) >= timestamp('2000-01-01T00:00:00Z') && timestamp(self) < timestamp('9000-01-01T00:00:00Z')";
const TIMESTAMP_RANGE_MESSAGE: &str = "must be a real date and time between the years 2000 and 9000";

const TIMESTAMP_MESSAGE: &str =
    "must be an RFC 3339 time with an upper-case T and a zone, e.g. 2026-11-29T18:00:00Z or 2026-11-29T19:00:00+01:00";

/// CEL for free text shown to people (a grant's reason, a review's comment): no control
/// characters but tab and line feed (no carriage return, no escape sequences, C1 controls
/// included), and no Unicode format characters (category Cf: bidirectional overrides,
/// zero-width characters), which could rewrite what an approver sees in a terminal.
pub const TEXT_RULE: &str = r"!self.matches('[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\p{Cf}]')";

/// Grants a Role or ClusterRole to subjects inside the grant's own namespace for a bounded
/// time: the operator creates one RoleBinding when the grant becomes active and deletes it
/// the moment the grant expires or is revoked.
// Each printcolumn(...) is a separate column; clippy mistakes them for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "jitrbac.io",
    version = "v1alpha1",
    kind = "AccessGrant",
    namespaced,
    status = "GrantStatus",
    shortname = "ag",
    category = "jitrbac",
    doc = "AccessGrant gives subjects a Role or ClusterRole inside the grant's namespace for a bounded time. The operator creates one RoleBinding when the grant becomes Active and deletes it when the grant expires or is revoked; every step is recorded as an Event and in status.",
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.roleRef.name"),
    printcolumn(
        name = "Subject",
        type_ = "string",
        json_path = ".spec.subjects[0].name",
        description = "The first subject of the grant"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.expiresAt",
        description = "When access ends (UTC)"
    ),
    printcolumn(name = "Reason", type_ = "string", json_path = ".spec.reason", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 200")
        .message("AccessGrant names are limited to 200 characters (the names of its Events need room for a suffix)")
)]
#[x_kube(
    validation = Rule::new("has(self.duration) != has(self.expiresAt)")
        .message("set exactly one of duration (e.g. 2h) or expiresAt (e.g. 2026-11-29T18:00:00Z)"),
    validation = Rule::new(WINDOW_RULE).message("startsAt must be before expiresAt"),
    validation = Rule::new(IMMUTABLE_RULE).message(IMMUTABLE_MESSAGE),
    validation = Rule::new("!self.breakGlass || !has(self.startsAt)")
        .message("a break-glass grant starts at once; remove startsAt"),
    validation = Rule::new(REVOKE_ONE_WAY_RULE)
        .message("revoked cannot be undone; to grant access again, create a new AccessGrant")
)]
#[serde(rename_all = "camelCase")]
pub struct AccessGrantSpec {
    /// Who receives access: 1 to 16 rbac/v1 subjects (User, Group or ServiceAccount).
    #[schemars(length(min = 1, max = 16))]
    pub subjects: Vec<Subject>,

    /// The Role (in this namespace) or ClusterRole to grant inside this namespace.
    pub role_ref: RoleRef,

    /// How long access lasts, counted from activation: digits with the units d, h, m, s in
    /// that order, e.g. `90m`, `1h30m`, `8h`, `1d`. Set exactly one of duration and
    /// expiresAt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new(DURATION_SHAPE_RULE)
            .message("duration must be digits with the units d, h, m, s in that order, e.g. 90m, 1h30m, 8h or 1d"),
        validation = Rule::new(DURATION_NONZERO_RULE).message("duration must be greater than zero")
    )]
    #[schemars(length(max = 32))]
    pub duration: Option<String>,

    /// When access ends: an RFC 3339 time with a zone, e.g. `2026-11-29T18:00:00Z` or
    /// `2026-11-29T19:00:00+01:00`. Set exactly one of duration and expiresAt. Preferred
    /// for grants kept in Git, because the end does not depend on when the grant is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new(TIMESTAMP_SHAPE_RULE).message(TIMESTAMP_MESSAGE),
        validation = Rule::new(TIMESTAMP_RANGE_RULE).message(TIMESTAMP_RANGE_MESSAGE)
    )]
    #[schemars(length(max = 64))]
    pub expires_at: Option<String>,

    /// When access begins: an RFC 3339 time with a zone. Until then the grant is
    /// `Scheduled` and no binding exists. Left out, access begins as soon as the operator
    /// activates the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new(TIMESTAMP_SHAPE_RULE).message(TIMESTAMP_MESSAGE),
        validation = Rule::new(TIMESTAMP_RANGE_RULE).message(TIMESTAMP_RANGE_MESSAGE)
    )]
    #[schemars(length(max = 64))]
    pub starts_at: Option<String>,

    /// Why access is needed, e.g. a ticket or incident id (`INC-1234: payments outage`).
    /// Recorded in Events and the audit log. Line breaks and tabs are allowed; other
    /// control characters (such as terminal escape sequences) and invisible formatting
    /// characters are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new(TEXT_RULE).message("reason cannot contain control characters other than line breaks and tabs, nor invisible formatting characters"))]
    pub reason: Option<String>,

    /// Set to `true` to end access now: the binding is deleted at once and the grant
    /// becomes `Revoked`. One-way: it cannot be set back to `false`. Deleting the grant
    /// revokes it too.
    #[serde(default)]
    pub revoked: bool,

    /// Emergency access: activate at once, without waiting for approval, where an
    /// AccessPolicy allows break-glass for this role. Capped by the policy's break-glass
    /// maximum, announced with a Warning event, and revoked unless an approving
    /// GrantReview follows within the policy's review deadline.
    #[serde(default)]
    pub break_glass: bool,

    /// Who asked for this grant, as the API server authenticated them. Set by the
    /// operator's admission webhook when the grant is created; anything written here by a
    /// client is replaced, and it cannot be changed afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Identity>,
}

/// CEL: a window given by `startsAt` and `expiresAt` must open before it closes.
const WINDOW_RULE: &str =
    "!has(self.startsAt) || !has(self.expiresAt) || timestamp(self.startsAt) < timestamp(self.expiresAt)";

/// CEL transition rule: every field except `revoked` keeps its value (present or absent)
/// across updates.
const IMMUTABLE_RULE: &str = concat!(
    "self.subjects == oldSelf.subjects && self.roleRef == oldSelf.roleRef",
    " && has(self.duration) == has(oldSelf.duration) && (!has(self.duration) || self.duration == oldSelf.duration)",
    " && has(self.expiresAt) == has(oldSelf.expiresAt) && (!has(self.expiresAt) || self.expiresAt == oldSelf.expiresAt)",
    " && has(self.startsAt) == has(oldSelf.startsAt) && (!has(self.startsAt) || self.startsAt == oldSelf.startsAt)",
    " && has(self.reason) == has(oldSelf.reason) && (!has(self.reason) || self.reason == oldSelf.reason)",
    " && self.breakGlass == oldSelf.breakGlass",
    " && has(self.requester) == has(oldSelf.requester) && (!has(self.requester) || self.requester == oldSelf.requester)"
);

const IMMUTABLE_MESSAGE: &str = "spec is immutable once created, except setting revoked to true; to change who gets which role or for how long, create a new AccessGrant (and revoke this one)";

/// CEL transition rule: `revoked` may go from false to true, never back.
const REVOKE_ONE_WAY_RULE: &str = "!oldSelf.revoked || self.revoked";
