//! The finalizer that makes deleting a grant a revocation.
//!
//! While a grant may still have a binding (any phase before a final one), it carries
//! [`FINALIZER`]: the API server keeps the object until the operator has deleted the
//! binding and written the `Revoked` Event and audit line, so "grant gone, binding left
//! behind" cannot happen. Final grants have no binding, so the operator removes the
//! finalizer from them and they can be deleted even while the operator is down.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use super::error::{Error, api_code};
use crate::api::AccessGrant;

/// Name of the finalizer.
pub const FINALIZER: &str = "jitrbac.io/revoke-access";

/// Whether `grant` carries the finalizer.
pub fn present(grant: &AccessGrant) -> bool {
    grant.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds the finalizer and returns the updated grant.
///
/// The patch carries the grant's `resourceVersion`, so it fails with
/// [`Error::StaleStatus`] instead of overwriting a concurrent change of the finalizer
/// list; other failures are [`Error::Finalizer`].
pub async fn add(api: &Api<AccessGrant>, grant: &AccessGrant) -> Result<AccessGrant, Error> {
    let mut finalizers = grant.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    set(api, grant, finalizers).await
}

/// Removes the finalizer (the grant may then disappear at once if it is being deleted).
/// Errors as for [`add`]; a grant that is already gone counts as done.
pub async fn remove(api: &Api<AccessGrant>, grant: &AccessGrant) -> Result<(), Error> {
    let finalizers = grant.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    match set(api, grant, finalizers).await {
        Err(Error::Finalizer(err)) if api_code(&err) == Some(404) => Ok(()),
        other => other.map(|_| ()),
    }
}

async fn set(api: &Api<AccessGrant>, grant: &AccessGrant, finalizers: Vec<String>) -> Result<AccessGrant, Error> {
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": grant.resource_version(),
        }
    });
    match api
        .patch(&grant.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(updated) => Ok(updated),
        Err(err) if api_code(&err) == Some(409) => Err(Error::StaleStatus),
        Err(err) => Err(Error::Finalizer(err)),
    }
}
