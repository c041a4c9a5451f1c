//! Turning a grant's spec into a checked, normalised request — or a reason it is refused.
//!
//! The CRD schema rejects most bad input at admission; this module repeats every check so
//! that an object stored under an older schema, or written while the schema was not
//! installed, still ends in a clear reason instead of a binding.

use jiff::Timestamp;

use crate::api::subject::is_valid_role_name;
use crate::api::{
    AccessGrantSpec, DurationError, GrantDuration, RBAC_API_GROUP, RoleKind, RoleRef, Subject, SubjectKind, TimeError,
    parse_timestamp,
};

/// Settings that limit what any grant may ask for (operator flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest window a grant may span, from start to expiry.
    pub max_duration: GrantDuration,
    /// Whether subjects named `system:…` (users and groups such as `system:masters` or
    /// `system:authenticated`) may be granted access.
    pub allow_system_subjects: bool,
    /// Namespaces in which no grant is ever carried out: access there amounts to control
    /// of the cluster (e.g. `edit` in `kube-system` can impersonate its controllers) or of
    /// the operator itself.
    pub protected_namespaces: Vec<String>,
    /// How long before expiry an `ExpiringSoon` notice is given; `None` gives none. Grants
    /// whose whole window is not longer than this get no notice.
    pub expiry_notice: Option<GrantDuration>,
}

impl Default for Limits {
    /// Seven days; `system:` subjects refused; the [`SYSTEM_NAMESPACES`] protected; a
    /// notice ten minutes before expiry.
    fn default() -> Self {
        Self {
            max_duration: GrantDuration::WEEK,
            allow_system_subjects: false,
            protected_namespaces: SYSTEM_NAMESPACES.iter().map(|s| (*s).to_owned()).collect(),
            expiry_notice: GrantDuration::from_secs(600),
        }
    }
}

/// How the end of a grant is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A length counted from the start (`spec.duration`).
    After(GrantDuration),
    /// An absolute instant (`spec.expiresAt`).
    At(Timestamp),
}

/// A grant spec that passed every check, with subjects and roleRef normalised
/// (User/Group subjects carry `apiGroup: rbac.authorization.k8s.io`, ServiceAccounts none;
/// `roleRef.apiGroup` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    /// Normalised subjects, in the order written.
    pub subjects: Vec<Subject>,
    /// Normalised role reference.
    pub role_ref: RoleRef,
    /// `spec.startsAt`, if given.
    pub starts_at: Option<Timestamp>,
    /// `spec.duration` or `spec.expiresAt`.
    pub end: End,
}

/// Why a spec cannot be carried out. `Invalid` ends in phase `Failed`, `Denied` in phase
/// `Denied`; both are final.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The spec is malformed (the schema should have caught it).
    #[error("{0}")]
    Invalid(#[from] InvalidSpec),
    /// The spec is well-formed but asks for more than the operator allows.
    #[error("{0}")]
    Denied(#[from] Denial),
}

impl Refusal {
    /// The CamelCase reason recorded in conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(e) => e.reason(),
            Self::Denied(e) => e.reason(),
        }
    }
}

/// Malformed specs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSpec {
    /// Neither or both of `duration` and `expiresAt`.
    #[error("set exactly one of spec.duration or spec.expiresAt")]
    EndMissingOrAmbiguous,
    /// `spec.duration` does not follow the grammar.
    #[error("spec.duration: {0}")]
    Duration(#[from] DurationError),
    /// `spec.startsAt` or `spec.expiresAt` is not a zoned RFC 3339 time.
    #[error("spec.{field}: {source}")]
    Time {
        /// `startsAt` or `expiresAt`.
        field: &'static str,
        /// What is wrong with it.
        source: TimeError,
    },
    /// `startsAt` is not before `expiresAt`.
    #[error("spec.startsAt ({starts_at}) must be before spec.expiresAt ({expires_at})")]
    EmptyWindow {
        /// The start as written.
        starts_at: String,
        /// The end as written.
        expires_at: String,
    },
    /// No subjects, or more than 16.
    #[error("spec.subjects must list between 1 and 16 subjects")]
    SubjectCount,
    /// A subject that is not a valid rbac/v1 subject.
    #[error("spec.subjects[{index}]: {problem}")]
    Subject {
        /// Position in `spec.subjects`.
        index: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A roleRef that is not a valid rbac/v1 roleRef.
    #[error("spec.roleRef: {0}")]
    RoleRef(&'static str),
}

impl InvalidSpec {
    /// The CamelCase reason recorded in conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::EndMissingOrAmbiguous | Self::EmptyWindow { .. } => "InvalidWindow",
            Self::Duration(_) => "InvalidDuration",
            Self::Time { .. } => "InvalidTime",
            Self::SubjectCount | Self::Subject { .. } => "InvalidSubject",
            Self::RoleRef(_) => "InvalidRoleRef",
        }
    }
}

/// Well-formed specs the operator refuses by policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The window is longer than the operator's maximum.
    #[error("the grant would last {requested}, longer than the maximum of {max}; ask for a shorter grant")]
    DurationTooLong {
        /// The requested window, canonical form (`1d2h`).
        requested: String,
        /// The limit, canonical form.
        max: GrantDuration,
    },
    /// A `system:` user or group, refused unless the operator allows them.
    #[error("{subject} is a system identity; the operator does not grant access to system: users or groups")]
    SystemSubject {
        /// The subject as `Kind/name`.
        subject: String,
    },
}

impl Denial {
    /// The CamelCase reason recorded in conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::DurationTooLong { .. } => "DurationTooLong",
            Self::SystemSubject { .. } => "SystemSubject",
        }
    }
}

/// Checks and normalises a spec.
///
/// Returns the [`GrantRequest`], or the first [`Refusal`] found, checking in this order:
/// subjects, roleRef, timing (malformed values are `Invalid`), then limits (`Denied`). The
/// window length is checked against `limits.max_duration` only when both ends are known
/// from the spec (a duration, or startsAt with expiresAt); see [`check_window_length`].
pub fn check(spec: &AccessGrantSpec, limits: &Limits) -> Result<GrantRequest, Refusal> {
    let subjects = normalise_subjects(&spec.subjects)?;
    let role_ref = normalise_role_ref(&spec.role_ref)?;
    let starts_at = parse_field("startsAt", spec.starts_at.as_deref())?;
    let end = match (&spec.duration, &spec.expires_at) {
        (Some(d), None) => End::After(GrantDuration::parse(d).map_err(InvalidSpec::from)?),
        (None, Some(_)) => match parse_field("expiresAt", spec.expires_at.as_deref())? {
            Some(at) => End::At(at),
            None => return Err(InvalidSpec::EndMissingOrAmbiguous.into()),
        },
        _ => return Err(InvalidSpec::EndMissingOrAmbiguous.into()),
    };
    if let (Some(start), End::At(at)) = (starts_at, end)
        && start >= at
    {
        return Err(InvalidSpec::EmptyWindow {
            starts_at: spec.starts_at.clone().unwrap_or_default(),
            expires_at: spec.expires_at.clone().unwrap_or_default(),
        }
        .into());
    }
    if !limits.allow_system_subjects
        && let Some(s) = subjects
            .iter()
            .find(|s| is_system_identity(s) || is_protected_service_account(s, &limits.protected_namespaces))
    {
        return Err(Denial::SystemSubject { subject: s.to_string() }.into());
    }
    if let End::After(d) = end
        && d > limits.max_duration
    {
        return Err(Denial::DurationTooLong {
            requested: d.to_string(),
            max: limits.max_duration,
        }
        .into());
    }
    if let (Some(start), End::At(at)) = (starts_at, end) {
        check_window_length(start, at, limits)?;
    }
    Ok(GrantRequest {
        subjects,
        role_ref,
        starts_at,
        end,
    })
}

/// Checks that a window from `start` to `end` is no longer than `limits.max_duration`.
///
/// Returns [`Denial::DurationTooLong`] when it is longer; the requested length is given in
/// whole seconds, rounded up.
pub fn check_window_length(start: Timestamp, end: Timestamp, limits: &Limits) -> Result<(), Denial> {
    let span = end.duration_since(start);
    let max = limits.max_duration.to_signed();
    if span > max {
        let secs = u64::try_from(span.as_secs()).unwrap_or(u64::MAX) + u64::from(span.subsec_nanos() > 0);
        return Err(Denial::DurationTooLong {
            requested: GrantDuration::from_secs(secs)
                .map(|d| d.to_string())
                .unwrap_or_default(),
            max: limits.max_duration,
        });
    }
    Ok(())
}

/// Namespaces whose ServiceAccounts are Kubernetes' own components (controllers, the
/// garbage collector, ...): granting to them is granting to the system.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// True for subjects that are Kubernetes' own identities: User or Group names starting with
/// `system:` (the prefix Kubernetes reserves for itself: `system:masters`,
/// `system:authenticated`, `system:serviceaccount:…`), and ServiceAccounts of the
/// [`SYSTEM_NAMESPACES`], whose user names are `system:serviceaccount:kube-system:…`.
pub fn is_system_identity(subject: &Subject) -> bool {
    match subject.kind {
        SubjectKind::User | SubjectKind::Group => subject.name.starts_with("system:"),
        SubjectKind::ServiceAccount => subject
            .namespace
            .as_deref()
            .is_some_and(|ns| SYSTEM_NAMESPACES.contains(&ns)),
        SubjectKind::Unknown => false,
    }
}

/// True for a ServiceAccount of one of the `protected` namespaces (the operator's own
/// among them): granting to the operator's or another system component's identity is
/// granting to the system.
pub fn is_protected_service_account(subject: &Subject, protected: &[String]) -> bool {
    subject.kind == SubjectKind::ServiceAccount
        && subject
            .namespace
            .as_deref()
            .is_some_and(|ns| protected.iter().any(|p| p == ns))
}

/// A lowercase RFC 1123 label (what Kubernetes requires of namespace names).
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn parse_field(field: &'static str, value: Option<&str>) -> Result<Option<Timestamp>, InvalidSpec> {
    value
        .map(|v| parse_timestamp(v).map_err(|source| InvalidSpec::Time { field, source }))
        .transpose()
}

/// Applies the rbac/v1 subject rules (`ValidateRoleBindingSubject` in Kubernetes):
/// User and Group use apiGroup `rbac.authorization.k8s.io` and no namespace; a
/// ServiceAccount uses an empty apiGroup and needs a namespace.
fn normalise_subjects(subjects: &[Subject]) -> Result<Vec<Subject>, InvalidSpec> {
    if subjects.is_empty() || subjects.len() > 16 {
        return Err(InvalidSpec::SubjectCount);
    }
    subjects
        .iter()
        .enumerate()
        .map(|(index, s)| {
            let bad = |problem| InvalidSpec::Subject { index, problem };
            if s.name.is_empty() {
                return Err(bad("name must not be empty"));
            }
            if s.name.chars().any(char::is_control) {
                return Err(bad("name must not contain control characters"));
            }
            let api_group = s.api_group.as_deref().unwrap_or_default();
            let namespace = s.namespace.as_deref().unwrap_or_default();
            match s.kind {
                SubjectKind::User | SubjectKind::Group => {
                    if !(api_group.is_empty() || api_group == RBAC_API_GROUP) {
                        return Err(bad("apiGroup must be rbac.authorization.k8s.io for User and Group"));
                    }
                    if !namespace.is_empty() {
                        return Err(bad("namespace applies only to ServiceAccount subjects"));
                    }
                    Ok(Subject {
                        kind: s.kind,
                        name: s.name.clone(),
                        namespace: None,
                        api_group: Some(RBAC_API_GROUP.to_owned()),
                    })
                }
                SubjectKind::ServiceAccount => {
                    if !api_group.is_empty() {
                        return Err(bad("apiGroup must be empty for ServiceAccount"));
                    }
                    if namespace.is_empty() {
                        return Err(bad("a ServiceAccount subject needs a namespace"));
                    }
                    if !is_dns_label(namespace) {
                        return Err(bad("a ServiceAccount namespace must be a lowercase DNS label"));
                    }
                    Ok(Subject {
                        kind: s.kind,
                        name: s.name.clone(),
                        namespace: Some(namespace.to_owned()),
                        api_group: None,
                    })
                }
                SubjectKind::Unknown => Err(bad("kind must be User, Group or ServiceAccount")),
            }
        })
        .collect()
}

fn normalise_role_ref(role_ref: &RoleRef) -> Result<RoleRef, InvalidSpec> {
    if matches!(role_ref.kind, RoleKind::Unknown) {
        return Err(InvalidSpec::RoleRef("kind must be Role or ClusterRole"));
    }
    if !is_valid_role_name(&role_ref.name) {
        return Err(InvalidSpec::RoleRef(
            "name must be a role name: not empty, no spaces, control characters, '/', '%', '?' or '#', not . or ..",
        ));
    }
    if !matches!(role_ref.api_group.as_deref(), None | Some("") | Some(RBAC_API_GROUP)) {
        return Err(InvalidSpec::RoleRef("apiGroup must be rbac.authorization.k8s.io"));
    }
    Ok(RoleRef {
        kind: role_ref.kind,
        name: role_ref.name.clone(),
        api_group: Some(RBAC_API_GROUP.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(duration: Option<&str>, expires_at: Option<&str>) -> AccessGrantSpec {
        AccessGrantSpec {
            subjects: vec![Subject {
                kind: SubjectKind::User,
                name: "alice".into(),
                namespace: None,
                api_group: None,
            }],
            role_ref: RoleRef {
                kind: RoleKind::ClusterRole,
                name: "edit".into(),
                api_group: None,
            },
            duration: duration.map(Into::into),
            expires_at: expires_at.map(Into::into),
            starts_at: None,
            reason: None,
            revoked: false,
            break_glass: false,
            requester: None,
        }
    }

    #[test]
    fn normalises_api_groups() {
        let req = check(&spec(Some("1h"), None), &Limits::default()).expect("valid");
        assert_eq!(req.subjects[0].api_group.as_deref(), Some(RBAC_API_GROUP));
        assert_eq!(req.role_ref.api_group.as_deref(), Some(RBAC_API_GROUP));
        assert_eq!(req.end, End::After(GrantDuration::from_secs(3600).expect("non-zero")));
    }

    #[test]
    fn refuses_both_or_neither_end() {
        let both = spec(Some("1h"), Some("2026-11-29T18:00:00Z"));
        let neither = spec(None, None);
        for s in [both, neither] {
            assert_eq!(
                check(&s, &Limits::default()),
                Err(Refusal::Invalid(InvalidSpec::EndMissingOrAmbiguous))
            );
        }
    }

    #[test]
    fn refuses_windows_that_do_not_open() {
        let mut s = spec(None, Some("2026-11-29T18:00:00Z"));
        s.starts_at = Some("2026-11-29T19:00:00+01:00".into());
        let err = check(&s, &Limits::default()).expect_err("empty window");
        assert_eq!(err.reason(), "InvalidWindow");
    }

    #[test]
    fn denies_durations_over_the_limit() {
        let err = check(&spec(Some("8d"), None), &Limits::default()).expect_err("too long");
        assert_eq!(err.reason(), "DurationTooLong");
        assert!(err.to_string().contains("8d"), "{err}");
        let mut s = spec(None, Some("2026-12-09T00:00:00Z"));
        s.starts_at = Some("2026-12-01T00:00:00Z".into());
        assert_eq!(
            check(&s, &Limits::default()).expect_err("too long").reason(),
            "DurationTooLong"
        );
    }

    #[test]
    fn denies_system_identities_unless_allowed() {
        for name in ["system:masters", "system:authenticated"] {
            let mut s = spec(Some("1h"), None);
            s.subjects[0].kind = SubjectKind::Group;
            s.subjects[0].name = name.into();
            assert_eq!(
                check(&s, &Limits::default()).expect_err("system").reason(),
                "SystemSubject"
            );
            let allow = Limits {
                allow_system_subjects: true,
                ..Limits::default()
            };
            assert!(check(&s, &allow).is_ok());
        }
    }

    #[test]
    fn system_namespace_service_accounts_are_system_identities() {
        let mut s = spec(Some("1h"), None);
        s.subjects[0].kind = SubjectKind::ServiceAccount;
        s.subjects[0].name = "namespace-controller".into();
        s.subjects[0].namespace = Some("kube-system".into());
        assert_eq!(
            check(&s, &Limits::default()).expect_err("system").reason(),
            "SystemSubject"
        );
        s.subjects[0].namespace = Some("ci".into());
        assert!(check(&s, &Limits::default()).is_ok());
        // The operator's own namespace is protected, and so are its ServiceAccounts.
        let limits = Limits {
            protected_namespaces: vec!["jitrbac-system".into()],
            ..Limits::default()
        };
        s.subjects[0].namespace = Some("jitrbac-system".into());
        assert_eq!(
            check(&s, &limits).expect_err("the operator's own").reason(),
            "SystemSubject"
        );
    }

    #[test]
    fn refuses_role_names_that_are_not_names() {
        for bad in [".", "..", "view ", "view?x=1", "a/b", "50%", "x#y", ""] {
            let mut s = spec(Some("1h"), None);
            s.role_ref.name = bad.into();
            assert_eq!(
                check(&s, &Limits::default()).expect_err(bad).reason(),
                "InvalidRoleRef",
                "{bad:?}"
            );
        }
        let mut s = spec(Some("1h"), None);
        s.role_ref.name = "system:aggregate-to-edit".into();
        assert!(check(&s, &Limits::default()).is_ok());
    }

    #[test]
    fn refuses_malformed_subjects() {
        let mut s = spec(Some("1h"), None);
        s.subjects[0].kind = SubjectKind::ServiceAccount;
        assert_eq!(
            check(&s, &Limits::default()).expect_err("no ns").reason(),
            "InvalidSubject"
        );
        s.subjects[0].namespace = Some("ci".into());
        let req = check(&s, &Limits::default()).expect("valid");
        assert_eq!(req.subjects[0].api_group, None);
        let mut s = spec(Some("1h"), None);
        s.subjects[0].api_group = Some("example.com".into());
        assert_eq!(
            check(&s, &Limits::default()).expect_err("group").reason(),
            "InvalidSubject"
        );
        let mut s = spec(Some("1h"), None);
        s.subjects[0].kind = SubjectKind::Unknown;
        assert_eq!(
            check(&s, &Limits::default()).expect_err("kind").reason(),
            "InvalidSubject"
        );
    }

    #[test]
    fn reports_malformed_times_and_durations() {
        assert_eq!(
            check(&spec(Some("forever"), None), &Limits::default())
                .expect_err("bad")
                .reason(),
            "InvalidDuration"
        );
        assert_eq!(
            check(&spec(None, Some("2026-11-29T18:00:00")), &Limits::default())
                .expect_err("bad")
                .reason(),
            "InvalidTime"
        );
    }
}
