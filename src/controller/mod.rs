//! The IO shell around the planner: watches grants and managed bindings, runs the
//! reconcile loop, writes bindings, status, Events and audit lines.

pub mod bindings;
pub mod context;
pub mod error;
pub mod finalizer;
pub mod leader;
pub mod permissions;
pub mod reconcile;
pub mod status;
pub mod sweeper;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

pub use context::{Context, Parts};
pub use error::Error;
pub use leader::Election;

use crate::api::AccessGrant;
use crate::audit::AuditLog;
use crate::grant::{Limits, binding::MANAGED_SELECTOR};
use crate::http::{self, HttpError, Readiness};
use crate::metrics::Metrics;

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
    /// Leader election; `None` means this process always acts (a single replica).
    pub election: Option<Election>,
    /// Address of `/healthz` and `/readyz`.
    pub health_addr: SocketAddr,
    /// Address of `/metrics`.
    pub metrics_addr: SocketAddr,
}

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The HTTP endpoints could not be served.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// Leader election could not be set up.
    #[error(transparent)]
    Leader(#[from] leader::LeaderError),
}

/// Runs the operator until SIGINT/SIGTERM.
///
/// Serves `/healthz`, `/readyz` and `/metrics`; checks its own permissions; watches every
/// AccessGrant and every RoleBinding labelled `app.kubernetes.io/managed-by=jitrbac` (all
/// replicas keep warm caches); and, while it is the leader (always, without election),
/// reconciles grants and sweeps overdue bindings. On becoming the leader it first deletes
/// every managed binding already past its expiry, so access that expired while no leader
/// acted is revoked before anything else. Returns [`RunError`] if it cannot start; errors
/// of single reconciles are logged and retried, never returned.
pub async fn run(client: Client, settings: Settings) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new());
    permissions::audit_own_permissions(&client).await;
    let audit = Arc::new(AuditLog::stdout());

    // Leadership: fenced lease, or always for a single replica.
    let (always_tx, always) = watch::channel(true);
    let (leadership, leader) = match settings.election {
        Some(election) => {
            let leadership = leader::elect(client.clone(), election).await?;
            let leader = leadership.leader.clone();
            (Some(leadership), leader)
        }
        None => (None, always),
    };
    let (acting_tx, acting) = watch::channel(false);
    tokio::spawn(activate(
        client.clone(),
        audit.clone(),
        leader,
        acting_tx,
        metrics.clone(),
    ));

    let (bindings, writer) = reflector::store::<RoleBinding>();
    let (updates_tx, updates_rx) = mpsc::unbounded_channel();
    let (bindings_synced_tx, bindings_synced) = watch::channel(false);
    let binding_api: Api<RoleBinding> = Api::all(client.clone());
    let binding_events = watcher(binding_api, watcher::Config::default().labels(MANAGED_SELECTOR))
        .default_backoff()
        .reflect(writer)
        .map(move |event| {
            if let Ok(e) = &event {
                mark_synced(&bindings_synced_tx, e);
                sweeper::feed(&updates_tx, e);
            }
            event
        })
        .touched_objects();
    tokio::spawn(sweeper::run(
        client.clone(),
        audit.clone(),
        bindings.clone(),
        updates_rx,
        settings.resync,
        acting.clone(),
    ));

    let (grants, grant_writer) = reflector::store::<AccessGrant>();
    let (grants_synced_tx, grants_synced) = watch::channel(false);
    let grant_events = watcher(Api::<AccessGrant>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(grant_writer)
        .map(move |event| {
            if let Ok(e) = &event {
                mark_synced(&grants_synced_tx, e);
            }
            event
        })
        .applied_objects();
    let controller = Controller::for_stream(grant_events, grants);
    let readiness = Readiness::new(vec![grants_synced, bindings_synced.clone()]);
    http::serve(settings.health_addr, settings.metrics_addr, readiness, metrics).await?;

    let ctx = Arc::new(Context::new(Parts {
        client,
        bindings,
        bindings_synced,
        acting: acting.clone(),
        limits: settings.limits,
        audit,
        instance: settings.instance,
    }));
    info!(concurrency = settings.concurrency, "starting controller");
    controller
        .owns_stream(binding_events)
        .reconcile_all_on(rising_edges(acting))
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .shutdown_on_signal()
        .run(reconcile::reconcile_when_acting, reconcile::error_policy, ctx)
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
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    drop(always_tx);
    Ok(())
}

/// Follows leadership: on becoming the leader, sweeps everything overdue, then acts; on
/// losing it, stops acting at once.
async fn activate(
    client: Client,
    audit: Arc<AuditLog>,
    mut leader: watch::Receiver<bool>,
    acting: watch::Sender<bool>,
    metrics: Arc<Metrics>,
) {
    loop {
        if leader.wait_for(|l| *l).await.is_err() {
            break;
        }
        match sweeper::sweep_all(&client, &audit).await {
            Ok(report) => info!(?report, "start-up sweep done"),
            Err(err) => warn!(error = %err, "start-up sweep failed; the sweeper retries periodically"),
        }
        if *leader.borrow() {
            info!("acting as the leader");
            acting.send_replace(true);
            metrics.leader.set(1);
        }
        if leader.wait_for(|l| !*l).await.is_err() {
            break;
        }
        acting.send_replace(false);
        metrics.leader.set(0);
        warn!("lost leadership: stopped acting");
    }
    acting.send_replace(false);
    metrics.leader.set(0);
}

/// A stream that yields each time `flag` turns from false to true.
fn rising_edges(flag: watch::Receiver<bool>) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold((flag, false), |(mut flag, mut was)| async move {
        loop {
            let now = *flag.borrow_and_update();
            if now && !was {
                return Some(((), (flag, true)));
            }
            was = now;
            flag.changed().await.ok()?;
        }
    })
}

/// Sets `synced` once a watch has delivered its first complete list (`InitDone`), after
/// the reflector stored it. (`Store::wait_until_ready` is not used: it wakes only one of
/// several concurrent waiters, and the controller already waits on its store.)
fn mark_synced<K>(synced: &watch::Sender<bool>, event: &watcher::Event<K>) {
    if matches!(event, watcher::Event::InitDone) && !*synced.borrow() {
        synced.send_replace(true);
    }
}
