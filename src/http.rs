//! The operator's HTTP endpoints (axum): `/healthz` and `/readyz` on the health address,
//! `/metrics` on the metrics address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Errors while starting the HTTP servers.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address could not be bound (in use, or not permitted).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What `/readyz` reports: ready once every cache the controller decides from has seen its
/// first complete list.
#[derive(Clone)]
pub struct Readiness {
    synced: Vec<watch::Receiver<bool>>,
}

impl Readiness {
    /// Ready when every one of `synced` holds `true`.
    pub fn new(synced: Vec<watch::Receiver<bool>>) -> Self {
        Self { synced }
    }

    fn is_ready(&self) -> bool {
        self.synced.iter().all(|r| *r.borrow())
    }
}

/// Binds both addresses and serves until the process ends: `/healthz` (200 while the
/// process runs its event loop) and `/readyz` (200 once caches are synced, 503 before) on
/// `health`, `/metrics` (OpenMetrics text) on `metrics`. The two may be the same address.
///
/// Returns [`HttpError::Bind`] if an address cannot be bound; serving errors after that
/// are logged.
pub async fn serve(
    health: SocketAddr,
    metrics: SocketAddr,
    readiness: Readiness,
    registry: Arc<Metrics>,
) -> Result<(), HttpError> {
    let health_routes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(readiness);
    let metrics_routes = Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(registry);
    if health == metrics {
        spawn(health, health_routes.merge(metrics_routes)).await
    } else {
        spawn(health, health_routes).await?;
        spawn(metrics, metrics_routes).await
    }
}

async fn spawn(addr: SocketAddr, app: Router) -> Result<(), HttpError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    tracing::info!(%addr, "serving HTTP");
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(%addr, error = %err, "HTTP server stopped");
        }
    });
    Ok(())
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    if readiness.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    match metrics.render(jiff::Timestamp::now()) {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
