//! Writing a grant's status through the status subresource.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use super::FIELD_MANAGER;
use super::error::{Error, api_code};
use crate::api::{AccessGrant, GrantStatus};

/// Writes `status` on `grant` with server-side apply, owning the whole status under the
/// operator's field manager, and returns the updated grant.
///
/// The patch carries the `resourceVersion` the decision was based on, so a decision made
/// on a stale copy of the grant is refused by the API server and returned as
/// [`Error::StaleStatus`] instead of overwriting newer state; other failures are
/// [`Error::WriteStatus`].
pub async fn write(api: &Api<AccessGrant>, grant: &AccessGrant, status: &GrantStatus) -> Result<AccessGrant, Error> {
    let patch = serde_json::json!({
        "apiVersion": "jitrbac.io/v1alpha1",
        "kind": "AccessGrant",
        "metadata": {
            "name": grant.name_any(),
            "resourceVersion": grant.resource_version(),
        },
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch_status(&grant.name_any(), &params, &Patch::Apply(&patch))
        .await
    {
        Ok(updated) => Ok(updated),
        Err(err) if api_code(&err) == Some(409) => Err(Error::StaleStatus),
        Err(err) => Err(Error::WriteStatus(err)),
    }
}
