//! The IO shell around the planner: watches grants and managed bindings, runs the
//! reconcile loop, writes bindings, status, Events and audit lines.

pub mod bindings;
pub mod context;
pub mod error;
pub mod reconcile;
pub mod status;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tracing::{info, warn};

pub use context::Context;
pub use error::Error;

use crate::api::AccessGrant;
use crate::audit::AuditLog;
use crate::grant::{Limits, binding::MANAGED_SELECTOR};

/// The field manager of every write the operator makes (server-side apply and create).
pub const FIELD_MANAGER: &str = "jitrbac.io/controller";

/// Settings of the controller loop.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Limits applied to every grant.
    pub limits: Limits,
    /// How many grants are reconciled at the same time.
    pub concurrency: u16,
    /// Name of this process in Events (e.g. the pod name).
    pub instance: Option<String>,
}

/// Runs the controller until SIGINT/SIGTERM: watches every AccessGrant and every
/// RoleBinding labelled `app.kubernetes.io/managed-by=jitrbac`, and reconciles grants.
///
/// Returns when the process is asked to stop; errors of single reconciles are logged and
/// retried, never returned.
pub async fn run(client: Client, settings: Settings) {
    let (bindings, writer) = reflector::store::<RoleBinding>();
    let binding_api: Api<RoleBinding> = Api::all(client.clone());
    let binding_events = watcher(binding_api, watcher::Config::default().labels(MANAGED_SELECTOR))
        .default_backoff()
        .reflect(writer)
        .touched_objects();

    let ctx = Arc::new(Context::new(
        client.clone(),
        bindings,
        settings.limits,
        AuditLog::stdout(),
        settings.instance,
    ));
    let grants: Api<AccessGrant> = Api::all(client);
    info!(concurrency = settings.concurrency, "starting controller");
    Controller::new(grants, watcher::Config::default())
        .owns_stream(binding_events)
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                match err {
                    kube::runtime::controller::Error::ReconcilerFailed(..) => {}
                    kube::runtime::controller::Error::ObjectNotFound(_) => {}
                    other => warn!(error = %other, "controller"),
                }
            }
        })
        .await;
    info!("controller stopped");
}
