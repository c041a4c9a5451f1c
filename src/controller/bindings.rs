//! Carrying out binding steps against the API server: create, adopt, repair, delete.
//!
//! Every write is guarded: creates fail when the name is taken (nothing is overwritten),
//! repairs and deletes carry the uid of the binding the operator created.

use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::{Client, ResourceExt};

use super::FIELD_MANAGER;
use super::context::Context;
use super::error::{Error, api_code};
use crate::api::{AccessGrant, BindingRef, RoleKind};
use crate::grant::{self, BindingStep, Blocker, Change, Outcome, binding};

/// Carries out `step` for `grant` and reports the [`Outcome`].
///
/// Returns `Err` only for transient failures worth a retry with backoff; refusals by the
/// API server that a retry will not fix soon (a missing role, a forbidden bind, a name
/// taken by someone else, an invalid binding) come back as [`Outcome::Blocked`].
pub async fn carry_out(ctx: &Context, grant: &AccessGrant, step: &BindingStep) -> Result<Outcome, Error> {
    let client = &ctx.client;
    let applied = |binding: Option<BindingRef>, change| Ok(Outcome::Applied { binding, change });
    match step {
        BindingStep::Nothing => applied(None, Change::None),
        BindingStep::Keep(r) => applied(Some(r.clone()), Change::None),
        BindingStep::Adopt(r) => applied(Some(r.clone()), Change::Adopted),
        BindingStep::Clash { name } => Ok(Outcome::Blocked(clash(name))),
        BindingStep::Create { binding, recreate } => create(ctx, grant, binding, *recreate).await,
        BindingStep::Repair { binding, uid, drift } => repair(client, binding, uid, *drift).await,
    }
}

async fn create(ctx: &Context, grant: &AccessGrant, desired: &RoleBinding, recreate: bool) -> Result<Outcome, Error> {
    let client = &ctx.client;
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    if let Some(blocker) = not_grantable(ctx, &namespace, desired).await? {
        return Ok(Outcome::Blocked(blocker));
    }
    if let Some(blocker) = missing_role(client, &namespace, desired).await? {
        return Ok(Outcome::Blocked(blocker));
    }
    let api: Api<RoleBinding> = Api::namespaced(client.clone(), &namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api.create(&params, desired).await {
        Ok(created) => Ok(Outcome::Applied {
            binding: Some(binding::role_binding_ref(&created)),
            change: if recreate { Change::Recreated } else { Change::Created },
        }),
        Err(err) if api_code(&err) == Some(409) => {
            // The name is taken: our cache was behind, or someone else holds it. Look and
            // decide again with what is really there.
            let write_err = |source| Error::WriteBinding {
                namespace: namespace.clone(),
                name: name.clone(),
                source,
            };
            let Some(existing) = api.get_opt(&name).await.map_err(write_err)? else {
                return Err(write_err(err));
            };
            let status = grant.status.clone().unwrap_or_default();
            let owner = grant::plan::owner_of(grant);
            match grant::plan::binding_step(&owner, &status, &[existing], desired.clone()) {
                BindingStep::Repair { binding, uid, drift } => repair(client, &binding, &uid, drift).await,
                BindingStep::Keep(r) => Ok(Outcome::Applied {
                    binding: Some(r),
                    change: Change::None,
                }),
                BindingStep::Adopt(r) => Ok(Outcome::Applied {
                    binding: Some(r),
                    change: Change::Adopted,
                }),
                _ => Ok(Outcome::Blocked(clash(&name))),
            }
        }
        Err(err) => refused(&err).map(Outcome::Blocked).ok_or(Error::WriteBinding {
            namespace,
            name,
            source: err,
        }),
    }
}

/// Overwrites an edited binding (`drift`), or one whose expiry moved, with the desired one.
/// The request carries the uid of the binding the operator created, so it fails instead
/// of touching a different object that took the same name.
async fn repair(client: &Client, desired: &RoleBinding, uid: &str, drift: bool) -> Result<Outcome, Error> {
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let api: Api<RoleBinding> = Api::namespaced(client.clone(), &namespace);
    let mut replacement = desired.clone();
    replacement.metadata.uid = Some(uid.to_owned());
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api.replace(&name, &params, &replacement).await {
        Ok(repaired) => Ok(Outcome::Applied {
            binding: Some(binding::role_binding_ref(&repaired)),
            change: if drift { Change::Repaired } else { Change::Updated },
        }),
        Err(err) => refused(&err).map(Outcome::Blocked).ok_or(Error::WriteBinding {
            namespace,
            name,
            source: err,
        }),
    }
}

/// Deletes one binding with a uid precondition. Returns `true` if this call deleted it,
/// `false` if it was already gone or its name now belongs to a different object (uid
/// mismatch) — both count as deleted.
///
/// A binding someone gave a finalizer is not gone after its DELETE: it stays, and RBAC
/// still honours it, until the finalizer is removed. The operator sets no finalizer on
/// its bindings, so it removes any it finds (an update carrying the version the DELETE
/// returned and the binding's uid) and the API server completes the deletion. Fails with
/// [`Error::DeleteBinding`] if either call fails (a conflict included: a retry deletes
/// again).
pub async fn delete(client: &Client, target: &BindingRef) -> Result<bool, Error> {
    let namespace = target.namespace.clone().unwrap_or_default();
    let api: Api<RoleBinding> = Api::namespaced(client.clone(), &namespace);
    let failed = |source| Error::DeleteBinding {
        namespace: namespace.clone(),
        name: target.name.clone(),
        source,
    };
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(target.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    // The API server answers with the object while its deletion is pending, and with a
    // Status once it is gone.
    let pending = match api.delete(&target.name, &params).await.map(|answer| answer.left()) {
        Ok(Some(pending)) => pending,
        Ok(None) => return Ok(true),
        Err(err) if matches!(api_code(&err), Some(404 | 409)) => return Ok(false),
        Err(source) => return Err(failed(source)),
    };
    if pending.metadata.finalizers.as_ref().is_none_or(Vec::is_empty) {
        return Ok(true);
    }
    let mut released = pending;
    released.metadata.finalizers = None;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api.replace(&target.name, &params, &released).await {
        Ok(_) => Ok(true),
        Err(err) if api_code(&err) == Some(404) => Ok(true),
        Err(source) => Err(failed(source)),
    }
}

/// Refuses roles the operator was not explicitly allowed to bind (the `bind` verb on the
/// role, granted by the chart's `grantableRoles`), even where the API server would accept
/// the binding because the operator happens to hold the role's permissions itself.
async fn not_grantable(ctx: &Context, namespace: &str, desired: &RoleBinding) -> Result<Option<Blocker>, Error> {
    let kind = role_kind(desired);
    let name = &desired.role_ref.name;
    let role = format!("{}/{name}", kind.as_str());
    match ctx.permissions.may_bind(kind, name, namespace).await {
        Ok(true) => Ok(None),
        Ok(false) => Ok(Some(Blocker {
            reason: "Forbidden",
            message: format!(
                "the operator is not allowed to bind {role} in namespace {namespace}; \
                 a platform admin can make it grantable (Helm value grantableRoles)"
            ),
            stalled: true,
        })),
        Err(source) => Err(Error::LookupRole { role, source }),
    }
}

fn role_kind(binding: &RoleBinding) -> RoleKind {
    if binding.role_ref.kind == RoleKind::Role.as_str() {
        RoleKind::Role
    } else {
        RoleKind::ClusterRole
    }
}

/// Checks that the role a binding refers to exists. Creating a binding to a missing role
/// succeeds in Kubernetes (RBAC resolves roles lazily), so without this check a grant
/// would look active while granting nothing — and would silently start granting if
/// someone created the role later.
async fn missing_role(client: &Client, namespace: &str, desired: &RoleBinding) -> Result<Option<Blocker>, Error> {
    let name = &desired.role_ref.name;
    let kind = role_kind(desired);
    let found = match kind {
        RoleKind::Role => Api::<Role>::namespaced(client.clone(), namespace)
            .get_metadata_opt(name)
            .await
            .map(|r| r.is_some()),
        _ => Api::<ClusterRole>::all(client.clone())
            .get_metadata_opt(name)
            .await
            .map(|r| r.is_some()),
    };
    let role = format!("{}/{name}", kind.as_str());
    match found {
        Ok(true) => Ok(None),
        Ok(false) => Ok(Some(Blocker {
            reason: "RoleNotFound",
            message: format!(
                "{role} does not exist; checked again every few seconds, the binding is created once it exists"
            ),
            stalled: false,
        })),
        // Without read access to roles, let the API server judge the binding itself.
        Err(err) if api_code(&err) == Some(403) => Ok(None),
        Err(source) => Err(Error::LookupRole { role, source }),
    }
}

fn clash(name: &str) -> Blocker {
    Blocker {
        reason: "NameClash",
        message: format!(
            "RoleBinding {name} exists but was not created by this grant; it is left alone. Delete or rename it, or create the grant under another name"
        ),
        stalled: true,
    }
}

/// Blocker reason when the grant's namespace is being deleted: nothing can be created in
/// it, and the grant itself is about to be deleted.
pub const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";

/// Maps API refusals that a quick retry will not fix to a [`Blocker`].
fn refused(err: &kube::Error) -> Option<Blocker> {
    let kube::Error::Api(status) = err else {
        return None;
    };
    let terminating = status
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == NAMESPACE_TERMINATING));
    if status.code == 403 && (terminating || status.message.contains("is being terminated")) {
        return Some(Blocker {
            reason: NAMESPACE_TERMINATING,
            message: "the namespace is being deleted".to_owned(),
            stalled: false,
        });
    }
    match status.code {
        403 => Some(Blocker {
            reason: "Forbidden",
            message: format!("the API server refused the binding: {}", status.message),
            stalled: true,
        }),
        422 => Some(Blocker {
            reason: "InvalidBinding",
            message: format!("the API server rejected the binding: {}", status.message),
            stalled: true,
        }),
        _ => None,
    }
}
