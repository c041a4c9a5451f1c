//! The `jitrbac.io/v1alpha1` API: custom resource types, the duration grammar and the
//! timestamp rules. Pure data and parsing; no IO.
//!
//! These Rust types are the single source of truth for the CRDs in `crds/`
//! (see [`crd::all`]).

pub mod crd;
pub mod duration;
pub mod eligibility;
pub mod grant;
pub mod identity;
pub mod policy;
pub mod review;
pub mod status;
pub mod subject;
pub mod time;

pub use duration::{DURATION_NONZERO_RULE, DURATION_PATTERN, DURATION_SHAPE_RULE, DurationError, GrantDuration};
pub use grant::{AccessGrant, AccessGrantSpec};
pub use identity::Identity;
pub use policy::{AccessPolicy, AccessPolicySpec, BreakGlassPolicy, PolicyRole};
pub use review::{Decision, GrantReference, GrantReview, GrantReviewSpec};
pub use status::{ApprovalRecord, BindingRef, GrantPhase, GrantStatus, TIMELINE_LIMIT, TimelineEntry};
pub use subject::{RBAC_API_GROUP, RoleKind, RoleRef, Subject, SubjectKind};
pub use time::{TIMESTAMP_PATTERN, TIMESTAMP_SHAPE_RULE, TimeError, format_timestamp, parse_timestamp};

/// The API group of every jitrbac resource.
pub const GROUP: &str = "jitrbac.io";
