//! Subjects and role references, in the shape of `rbac.authorization.k8s.io/v1`.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// CEL rule on `roleRef.name`: a valid path-segment name, as Kubernetes requires of RBAC
/// object names (`ValidateRBACName`), without characters that would change the meaning of
/// an API URL.
pub const ROLE_NAME_RULE: &str = "!self.matches('[/%?#[:space:][:cntrl:]]') && self != '.' && self != '..'";

/// Whether `name` passes [`ROLE_NAME_RULE`].
pub fn is_valid_role_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| matches!(c, '/' | '%' | '?' | '#') || c.is_whitespace() || c.is_control())
}

/// The API group of RBAC objects; User and Group subjects and every `roleRef` use it.
pub const RBAC_API_GROUP: &str = "rbac.authorization.k8s.io";

/// CEL: subject names contain no control characters (C0 and C1), no Unicode format
/// characters (category Cf: bidirectional overrides, zero-width characters), no spaces
/// other than the ASCII one, and no Hangul fillers: characters that make a name look like
/// another one in `kubectl` output and to approvers.
pub const SUBJECT_NAME_TEXT_RULE: &str = r"!self.name.matches('[\\p{Cc}\\p{Cf}\\x{00A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{115F}\\x{1160}\\x{3164}\\x{FFA0}]')";

/// Who receives access: a user, a group or a ServiceAccount, as in an rbac/v1 RoleBinding.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.kind != 'ServiceAccount' || has(self.__namespace__)")
        .message("a ServiceAccount subject needs a namespace"),
    validation = Rule::new("self.kind == 'ServiceAccount' || !has(self.__namespace__) || self.__namespace__ == ''")
        .message("namespace applies only to ServiceAccount subjects; remove it from User and Group subjects"),
    validation = Rule::new("self.kind == 'ServiceAccount' ? (!has(self.apiGroup) || self.apiGroup == '') : (!has(self.apiGroup) || self.apiGroup == 'rbac.authorization.k8s.io')")
        .message("apiGroup must be rbac.authorization.k8s.io for User and Group subjects (or left out) and empty for ServiceAccount subjects"),
    validation = Rule::new("self.kind != 'ServiceAccount' || self.name.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')")
        .message("a ServiceAccount name must be a lowercase DNS subdomain, e.g. deployer"),
    validation = Rule::new("self.kind != 'ServiceAccount' || !has(self.__namespace__) || self.__namespace__.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("a ServiceAccount namespace must be a lowercase DNS label, e.g. ci"),
    validation = Rule::new(SUBJECT_NAME_TEXT_RULE).message("subject names cannot contain control characters or invisible formatting characters (such as right-to-left overrides, zero-width or non-ASCII spaces, Hangul fillers)")
)]
pub struct Subject {
    /// Kind of subject: `User`, `Group` or `ServiceAccount`.
    pub kind: SubjectKind,

    /// Name of the user, group or ServiceAccount, exactly as the API server authenticates
    /// it (e.g. `alice@example.com`, `sre-oncall`, `deployer`).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Namespace of a ServiceAccount subject. Required for ServiceAccount; not allowed for
    /// User and Group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,

    /// API group of the subject: `rbac.authorization.k8s.io` for User and Group (filled
    /// in when left out), empty for ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub api_group: Option<String>,
}

/// The kinds of subject RBAC knows.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    /// A user name as authenticated by the API server.
    User,
    /// A group name as authenticated by the API server.
    Group,
    /// A ServiceAccount (`system:serviceaccount:<namespace>:<name>`).
    ServiceAccount,
    /// Any other value. The CRD schema rejects it at admission; this variant exists so an
    /// object stored under an older schema cannot stop the operator from reading others.
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

impl SubjectKind {
    /// The spelling Kubernetes uses (`User`, `Group`, `ServiceAccount`; `Unknown` otherwise).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
            Self::ServiceAccount => "ServiceAccount",
            Self::Unknown => "Unknown",
        }
    }
}

/// The role to grant: a Role in the grant's namespace or a ClusterRole.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    /// `Role` (defined in the grant's namespace) or `ClusterRole`.
    pub kind: RoleKind,

    /// Name of the Role or ClusterRole, e.g. `edit` or `view`.
    #[x_kube(validation = Rule::new(ROLE_NAME_RULE).message("roleRef.name must be a role name: no spaces, control characters, '/', '%', '?' or '#', and not . or .."))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// API group of the role; only `rbac.authorization.k8s.io` is valid. May be left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["rbac.authorization.k8s.io"]))]
    pub api_group: Option<String>,
}

/// The kinds of role a binding can refer to.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoleKind {
    /// A namespaced Role.
    Role,
    /// A cluster-wide ClusterRole (bound here only inside the grant's namespace).
    ClusterRole,
    /// Any other value; rejected by the CRD schema (see [`SubjectKind::Unknown`]).
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

impl RoleKind {
    /// The spelling Kubernetes uses (`Role`, `ClusterRole`; `Unknown` otherwise).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Role => "Role",
            Self::ClusterRole => "ClusterRole",
            Self::Unknown => "Unknown",
        }
    }
}

impl std::fmt::Display for Subject {
    /// `User/alice`, `Group/dev`, `ServiceAccount/ci/deployer`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.kind, &self.namespace) {
            (SubjectKind::ServiceAccount, Some(ns)) => {
                write!(f, "ServiceAccount/{ns}/{}", self.name)
            }
            (kind, _) => write!(f, "{}/{}", kind.as_str(), self.name),
        }
    }
}

impl std::fmt::Display for RoleRef {
    /// `ClusterRole/edit`, `Role/deployer`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}
