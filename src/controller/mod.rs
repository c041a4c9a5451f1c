//! The IO shell around the planner: watches grants and managed bindings, runs the
//! reconcile loop, writes bindings, status, Events and audit lines.

pub mod bindings;
pub mod context;
pub mod error;
pub mod finalizer;
pub mod reconcile;
pub mod status;
pub mod sweeper;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::mpsc;
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
    /// How often the sweeper re-lists every managed binding as a backstop for lost watch
    /// events.
    pub resync: Duration,
}

/// Runs the operator until SIGINT/SIGTERM.
///
/// First sweeps: every managed binding already past its expiry is deleted before anything
/// else runs (so a restart after downtime revokes overdue access first). Then watches every
/// AccessGrant and every RoleBinding labelled `app.kubernetes.io/managed-by=jitrbac`,
/// reconciles grants, and runs the sweeper beside the controller. Errors of single
/// reconciles are logged and retried, never returned.
pub async fn run(client: Client, settings: Settings) {
    let audit = Arc::new(AuditLog::stdout());
    match sweeper::sweep_all(&client, &audit).await {
        Ok(report) => info!(?report, "start-up sweep done"),
        Err(err) => warn!(error = %err, "start-up sweep failed; the sweeper retries periodically"),
    }

    let (bindings, writer) = reflector::store::<RoleBinding>();
    let (updates_tx, updates_rx) = mpsc::unbounded_channel();
    let binding_api: Api<RoleBinding> = Api::all(client.clone());
    let binding_events = watcher(binding_api, watcher::Config::default().labels(MANAGED_SELECTOR))
        .default_backoff()
        .map(move |event| {
            if let Ok(e) = &event {
                sweeper::feed(&updates_tx, e);
            }
            event
        })
        .reflect(writer)
        .touched_objects();
    tokio::spawn(sweeper::run(
        client.clone(),
        audit.clone(),
        bindings.clone(),
        updates_rx,
        settings.resync,
    ));

    let ctx = Arc::new(Context::new(
        client.clone(),
        bindings,
        settings.limits,
        audit,
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
