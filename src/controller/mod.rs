//! The IO shell around the planner: watches grants and managed bindings, runs the
//! reconcile loop, writes bindings, status, Events and audit lines.

pub mod binding_cache;
pub mod bindings;
pub mod context;
pub mod error;
pub mod facts;
pub mod finalizer;
pub mod leader;
pub mod permissions;
pub mod recent;
pub mod reconcile;
pub mod revocations;
pub mod status;
pub mod sweeper;
pub mod trim;
pub mod wakeups;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

pub use context::{Context, Parts};
pub use error::Error;
pub use leader::Election;

use self::binding_cache::BindingCache;
use self::revocations::Revocations;
use self::wakeups::Wakeups;
use crate::api::{AccessGrant, AccessPolicy, GrantReview};
use crate::audit::AuditLog;
use crate::audit::sink::{Forwarder, SinkConfig, SinkError};
use crate::grant::Limits;
use crate::grant::binding::{MANAGED_SELECTOR, grant_names};
use crate::grant::policy::Defaults;
use crate::http::{self, HttpError, Readiness};
use crate::metrics::Metrics;
use crate::webhook::{self, Tls, WebhookError};

/// How long reconciles in flight may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long the audit sink may take to deliver what it holds at shutdown.
const SINK_GRACE: Duration = Duration::from_secs(3);

/// The field manager of every write the operator makes (server-side apply and create).
pub const FIELD_MANAGER: &str = "jitrbac.io/controller";

/// Settings of the controller loop.
#[derive(Clone)]
pub struct Settings {
    /// Limits applied to every grant.
    pub limits: Limits,
    /// Defaults where no AccessPolicy applies.
    pub defaults: Defaults,
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
    /// The admission webhooks to serve, if any: address and certificate source.
    pub webhook: Option<(SocketAddr, Tls)>,
    /// Whether to reconcile at all (false: serve webhooks and health endpoints only).
    pub reconcile: bool,
    /// Where to send audit records as CloudEvents, if anywhere.
    pub audit_sink: Option<SinkConfig>,
    /// The client the grants' reconciles use (creating bindings, status, Events,
    /// SubjectAccessReviews), e.g. one with a client-side rate limit (`--kube-api-qps`).
    /// `None`: the same client as everything else. The expiry timer, the sweeps, leader
    /// election and the webhooks always use the unlimited one, so revocations on time and
    /// keeping the lease are never throttled.
    pub reconcile_client: Option<Client>,
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
    /// The audit sink could not be set up.
    #[error(transparent)]
    AuditSink(#[from] SinkError),
    /// The admission webhooks could not be served.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
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
    // Listen before anything else: a SIGTERM during start-up (a rollout replacing a pod
    // that just took the Lease) must release the Lease rather than end the process, and
    // must stop a start-up that waits on an unresponsive API server.
    let signal = ShutdownSignal::listen();
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        signal.recv().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let metrics = Arc::new(Metrics::new());
    if let Some((addr, tls)) = settings.webhook.clone() {
        tokio::select! {
            served = webhook::serve(client.clone(), addr, tls, metrics.clone()) => served?,
            () = stopped() => return Ok(()),
        }
    }
    if !settings.reconcile {
        http::serve(
            settings.health_addr,
            settings.metrics_addr,
            Readiness::new(Vec::new()),
            metrics,
        )
        .await?;
        info!("serving admission webhooks only; not reconciling");
        stopped().await;
        return Ok(());
    }
    tokio::select! {
        () = permissions::audit_own_permissions(&client) => {}
        () = stopped() => return Ok(()),
    }
    let audit = match settings.audit_sink.clone() {
        Some(config) => {
            let host = config.url.host().unwrap_or_default().to_owned();
            let forwarder = Forwarder::start(config, metrics.clone())?;
            info!(%host, "sending audit records to the audit sink");
            AuditLog::stdout().forwarding_to(Arc::new(forwarder))
        }
        None => AuditLog::stdout(),
    };
    let audit = Arc::new(audit);

    // Leadership: fenced lease, or always for a single replica.
    let (always_tx, always) = watch::channel(true);
    let (leadership, leader) = match settings.election {
        Some(election) => {
            let leadership = tokio::select! {
                elected = leader::elect(client.clone(), election) => elected?,
                () = stopped() => return Ok(()),
            };
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

    let bindings = Arc::new(BindingCache::new());
    let (updates_tx, updates_rx) = mpsc::unbounded_channel();
    let (bindings_synced_tx, bindings_synced) = watch::channel(false);
    let binding_api: Api<RoleBinding> = Api::all(client.clone());
    let cache = bindings.clone();
    let binding_events = watcher(binding_api, watcher::Config::default().labels(MANAGED_SELECTOR))
        .default_backoff()
        .map(move |event| {
            if let Ok(e) = &event {
                // The cache first: the sweeper reads it when the binding's deadline comes.
                cache.apply(e);
                mark_synced(&bindings_synced_tx, e);
                sweeper::feed(&updates_tx, e);
            }
            event
        })
        .touched_objects();
    let (grants, grant_writer) = reflector::store::<AccessGrant>();
    let revocations = Arc::new(Revocations::default());
    tokio::spawn(sweeper::run(
        client.clone(),
        audit.clone(),
        metrics.clone(),
        sweeper::Timer {
            bindings: bindings.clone(),
            grants: grants.clone(),
            revocations: revocations.clone(),
        },
        updates_rx,
        settings.resync,
        acting.clone(),
    ));

    let (grants_synced_tx, grants_synced) = watch::channel(false);
    let (wakeups, due) = Wakeups::start();
    let forget = wakeups.clone();
    let grant_events = watcher(Api::<AccessGrant>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(trim::trim_grant)
        .reflect(grant_writer)
        .map(move |event| {
            if let Ok(e) = &event {
                mark_synced(&grants_synced_tx, e);
                if let watcher::Event::Delete(grant) = e {
                    forget.forget(grant);
                }
            }
            event
        })
        .applied_objects();
    metrics.watch_caches(grants.clone(), bindings.clone());
    let (policies, policy_events, policies_synced) = watched::<AccessPolicy>(&client);
    let (reviews, review_events, reviews_synced) = watched::<GrantReview>(&client);
    let grants_for_policies = grants.clone();
    let controller = Controller::for_stream(grant_events, grants)
        // A review concerns the grant it names.
        .watches_stream(review_events, |review: GrantReview| {
            Some(ObjectRef::new(&review.spec.grant_ref.name).within(&review.namespace().unwrap_or_default()))
        })
        // A policy change concerns every grant not yet final: it applies at once (it can
        // only shorten an active grant, never lengthen it).
        .watches_stream(policy_events, move |_policy: AccessPolicy| {
            grants_for_policies
                .state()
                .iter()
                .filter(|g| {
                    g.status
                        .as_ref()
                        .is_none_or(|s| !s.phase.is_some_and(|p| p.is_terminal()))
                })
                .map(|g| ObjectRef::from_obj(&**g))
                .collect::<Vec<_>>()
        });
    // Reconciles wait for these caches too: a decision made before the policies are
    // listed would treat a grant that needs approval as self-service.
    let synced = vec![bindings_synced, policies_synced, reviews_synced];
    let readiness = Readiness::new([vec![grants_synced.clone()], synced.clone()].concat());
    http::serve(settings.health_addr, settings.metrics_addr, readiness, metrics.clone()).await?;

    let ctx = Arc::new(Context::new(Parts {
        client: settings.reconcile_client.unwrap_or(client),
        bindings,
        synced,
        acting: acting.clone(),
        limits: settings.limits,
        defaults: settings.defaults,
        policies,
        reviews,
        audit: audit.clone(),
        metrics,
        revocations,
        wakeups,
        instance: settings.instance,
    }));
    info!(
        concurrency = settings.concurrency,
        protected_namespaces = ?ctx.limits.protected_namespaces,
        "starting controller"
    );
    let controller = controller
        // A binding concerns the grants it names: by ownerReference, annotation, and the
        // name the operator gave it (which survives edits to the other two).
        .watches_stream(binding_events, |binding: RoleBinding| {
            let namespace = binding.namespace().unwrap_or_default();
            grant_names(&binding)
                .into_iter()
                .map(move |name| ObjectRef::new(&name).within(&namespace))
        })
        .reconcile_on(due)
        .reconcile_all_on(rising_edges(acting.clone()))
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(stopped())
        .run(reconcile::reconcile_when_acting, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                match err {
                    kube::runtime::controller::Error::ReconcilerFailed(..) => {}
                    kube::runtime::controller::Error::ObjectNotFound(_) => {}
                    other => warn!(error = %other, "controller"),
                }
            }
        });
    // Reconciles in flight get a few seconds to finish. None can be in flight while this
    // replica does not act, or before the grant cache is listed (kube holds the reconciles
    // until then, and such a controller would never stop by itself): stop at once. Either
    // way, dropping the controller cancels whatever it still runs before the Lease goes.
    let deadline = async move {
        stopped().await;
        let draining = *acting.borrow() && *grants_synced.borrow();
        if draining {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        }
        draining
    };
    tokio::select! {
        () = controller => {}
        drained = deadline => if drained {
            warn!("reconciles did not finish within {SHUTDOWN_GRACE:?} of the shutdown request; stopping anyway");
        },
    }
    info!("controller stopped");
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    audit.close(SINK_GRACE).await;
    drop(always_tx);
    Ok(())
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM (how Kubernetes stops a pod) received
/// after the call; never resolves for a signal that cannot be listened for.
pub async fn shutdown_signal() {
    ShutdownSignal::listen().recv().await;
}

/// A request to stop: SIGINT (Ctrl-C) or SIGTERM (how Kubernetes stops a pod).
///
/// The handlers are installed when it is created, so a signal that arrives before
/// [`ShutdownSignal::recv`] is awaited is kept, not lost, and no longer ends the process
/// at once (the default action of both signals).
pub struct ShutdownSignal {
    terminate: Option<Signal>,
    interrupt: Option<Signal>,
}

impl ShutdownSignal {
    /// Installs the SIGTERM and SIGINT handlers. A handler that cannot be installed (the
    /// runtime has no signal driver) is left out: that signal keeps its default action and
    /// [`ShutdownSignal::recv`] never resolves for it. Must be called within a Tokio runtime.
    #[must_use]
    pub fn listen() -> Self {
        Self {
            terminate: signal(SignalKind::terminate()).ok(),
            interrupt: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// Resolves on the first SIGTERM or SIGINT received since [`ShutdownSignal::listen`].
    pub async fn recv(self) {
        tokio::select! {
            () = received(self.terminate) => {}
            () = received(self.interrupt) => {}
        }
    }
}

/// Resolves when `signal` is received; never without a handler.
async fn received(signal: Option<Signal>) {
    match signal {
        Some(mut s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
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
        let record = sweeper::Record {
            audit: &audit,
            metrics: &metrics,
        };
        // Leadership lost (or released at shutdown) during the sweep ends it: deletions in
        // flight are dropped, so two replicas never act at once.
        let mut lost = leader.clone();
        tokio::select! {
            swept = sweeper::sweep_all(&client, record, sweeper::BINDING_PAGE) => match swept {
                Ok(report) => info!(?report, "start-up sweep done"),
                Err(err) => warn!(error = %err, "start-up sweep failed; the sweeper retries periodically"),
            },
            _ = lost.wait_for(|l| !*l) => warn!("leadership lost during the start-up sweep; stopped it"),
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

/// A cache of every `K` in the cluster, its watch stream (to drive the controller), and a
/// flag that turns true after the first complete list.
#[allow(clippy::type_complexity)]
fn watched<K>(
    client: &Client,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    watch::Receiver<bool>,
)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let (synced_tx, synced) = watch::channel(false);
    let events = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(trim::trim)
        .reflect(writer)
        .map(move |event| {
            if let Ok(e) = &event {
                mark_synced(&synced_tx, e);
            }
            event
        })
        .touched_objects();
    (store, events, synced)
}

/// Sets `synced` once a watch has delivered its first complete list (`InitDone`), after
/// the reflector stored it. (`Store::wait_until_ready` is not used: it wakes only one of
/// several concurrent waiters, and the controller already waits on its store.)
fn mark_synced<K>(synced: &watch::Sender<bool>, event: &watcher::Event<K>) {
    if matches!(event, watcher::Event::InitDone) && !*synced.borrow() {
        synced.send_replace(true);
    }
}
