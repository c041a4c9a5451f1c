//! Errors of the IO shell.

/// Why a reconcile failed. Each variant names the step; kube errors already carry the API
/// server's message in their `Display`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Deleting a binding failed for a reason other than "already gone": access is not
    /// yet revoked. Retried quickly.
    #[error("cannot delete RoleBinding {namespace}/{name}, access is NOT revoked yet: {source}")]
    DeleteBinding {
        /// Namespace of the binding.
        namespace: String,
        /// Name of the binding.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// Reading, creating or replacing a binding failed transiently.
    #[error("writing binding {namespace}/{name}: {source}")]
    WriteBinding {
        /// Namespace of the binding.
        namespace: String,
        /// Name of the binding.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// Looking up the role a grant refers to failed transiently.
    #[error("looking up {role}: {source}")]
    LookupRole {
        /// `ClusterRole/edit`, `Role/deployer`.
        role: String,
        /// The API error.
        source: kube::Error,
    },
    /// Listing the managed bindings failed (sweeper).
    #[error("listing managed RoleBindings: {0}")]
    ListBindings(#[source] kube::Error),
    /// Reading the grant that owns a binding failed (sweeper).
    #[error("reading the grant of an overdue binding: {0}")]
    ReadGrant(#[source] kube::Error),
    /// A SubjectAccessReview (eligibility or a reviewer's permission) could not be made.
    #[error("asking the API server for a permission: {0}")]
    Authorize(#[source] kube::Error),
    /// The labels of a grant's namespace were needed (a policy selects namespaces by
    /// label) but could not be read.
    #[error("reading the grant's namespace: {0}")]
    ReadNamespace(#[source] kube::Error),
    /// Adding or removing the grant's finalizer failed.
    #[error("updating finalizer: {0}")]
    Finalizer(#[source] kube::Error),
    /// Writing the grant's status failed.
    #[error("writing status: {0}")]
    WriteStatus(#[source] kube::Error),
    /// The grant's status changed since it was read (another writer, or a stale cache);
    /// the grant is looked at again shortly with the newer version.
    #[error("status changed since it was read; retrying with the newer version")]
    StaleStatus,
    /// Serializing a status patch failed (a bug, not user input).
    #[error("building status patch: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// A CamelCase label for the error, used as a Warning event reason and in logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::DeleteBinding { .. } => "RevocationFailed",
            Self::Finalizer(_) => "FinalizerUpdateFailed",
            Self::ListBindings(_) => "ListBindingsFailed",
            Self::Authorize(_) => "AuthorizationCheckFailed",
            Self::ReadNamespace(_) => "ReadNamespaceFailed",
            Self::ReadGrant(_) => "ReadGrantFailed",
            Self::WriteBinding { .. } => "WriteBindingFailed",
            Self::LookupRole { .. } => "RoleLookupFailed",
            Self::WriteStatus(_) => "StatusWriteFailed",
            Self::StaleStatus => "StaleStatus",
            Self::Serialize(_) => "InternalError",
        }
    }
}

/// The HTTP status code of an API error response, if `err` is one.
pub fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
