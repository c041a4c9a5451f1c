//! The admission webhooks the operator serves over TLS (axum + rustls): stamping the
//! requester of grants and the reviewer of reviews, and validating policies. Every
//! replica serves them, leader or not.

pub mod admission;
pub mod certs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::routing::post;
use axum_server::tls_rustls::RustlsConfig;
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use kube::Client;
use kube::api::Api;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::{info, warn};

use self::admission::Stamp;
use crate::metrics::{AdmissionLabels, Metrics, WebhookLabels};

/// How often the certificate is checked for renewal (managed) or change (files).
const REFRESH: Duration = Duration::from_secs(600);

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum Tls {
    /// Managed by the operator (see [`certs`]).
    Managed(certs::Managed),
    /// Files `tls.crt` and `tls.key` in this directory (e.g. mounted from a cert-manager
    /// Secret); re-read when they change.
    Files(PathBuf),
}

/// Errors while starting the webhook server.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The certificate could not be set up.
    #[error("webhook certificate: {0}")]
    Cert(#[from] certs::CertError),
    /// The certificate files could not be read.
    #[error("reading webhook certificate files in {dir}: {source}")]
    Files {
        /// The directory.
        dir: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// rustls refused the certificate or key.
    #[error("loading the webhook certificate: {0}")]
    Tls(std::io::Error),
    /// The webhook address could not be listened on (e.g. the port is in use).
    #[error("cannot listen on {addr} for the admission webhooks: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The IO error.
        source: std::io::Error,
    },
}

/// Sets up TLS, starts serving the webhooks on `addr` in the background, and keeps the
/// certificate fresh; counts and times every admission request in `metrics`. Returns once
/// the server is listening.
///
/// Fails with [`WebhookError`] if the certificate cannot be obtained or loaded, or with
/// [`WebhookError::Listen`] if `addr` cannot be listened on.
pub async fn serve(client: Client, addr: SocketAddr, tls: Tls, metrics: Arc<Metrics>) -> Result<(), WebhookError> {
    // rustls needs one process-wide crypto provider; kube's TLS already uses ring. A second
    // call (e.g. in tests) finds it installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (cert, key) = load(&client, &tls).await?;
    if let Tls::Managed(managed) = &tls {
        let ca = certs::ensure(&client, managed).await?.ca_cert;
        tokio::spawn(keep_ca_published(client.clone(), managed.configuration.clone(), ca));
    }
    let config = RustlsConfig::from_pem(cert.clone().into_bytes(), key.clone().into_bytes())
        .await
        .map_err(WebhookError::Tls)?;
    tokio::spawn(refresh(client, tls, config.clone(), cert));
    let (m1, m2, m3) = (metrics.clone(), metrics.clone(), metrics);
    let app = Router::new()
        .route(
            "/mutate-accessgrants",
            post(move |body| {
                respond(body, "mutate-accessgrants", m1, |r| {
                    admission::stamp(r, Stamp::Requester)
                })
            }),
        )
        .route(
            "/mutate-grantreviews",
            post(move |body| {
                respond(body, "mutate-grantreviews", m2, |r| {
                    admission::stamp(r, Stamp::Reviewer)
                })
            }),
        )
        .route(
            "/validate-accesspolicies",
            post(move |body| respond(body, "validate-accesspolicies", m3, admission::validate_policy)),
        );
    // Listen here, not in the task: a port in use must stop the process, not leave it
    // reporting ready while every admission request fails.
    let listen = |source| WebhookError::Listen { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(listen)?;
    let server = axum_server::from_tcp_rustls(listener, config).map_err(listen)?;
    info!(%addr, "serving admission webhooks");
    tokio::spawn(async move {
        if let Err(err) = server.serve(app.into_make_service()).await {
            tracing::error!(%addr, error = %err, "webhook server stopped");
        }
    });
    Ok(())
}

/// Turns an AdmissionReview into the response review, using `decide` for a request, and
/// counts and times it as `webhook` in `metrics`.
async fn respond(
    Json(review): Json<AdmissionReview<DynamicObject>>,
    webhook: &'static str,
    metrics: Arc<Metrics>,
    decide: impl Fn(&AdmissionRequest<DynamicObject>) -> AdmissionResponse,
) -> Json<AdmissionReview<DynamicObject>> {
    let started = Instant::now();
    let request: Result<AdmissionRequest<DynamicObject>, _> = review.try_into();
    let (response, decision) = match request {
        Ok(request) => {
            let response = decide(&request);
            let decision = if response.allowed { "allowed" } else { "denied" };
            (response, decision)
        }
        Err(err) => (
            AdmissionResponse::invalid(format!("not an admission request: {err}")),
            "error",
        ),
    };
    metrics
        .admission_requests
        .get_or_create(&AdmissionLabels { webhook, decision })
        .inc();
    metrics
        .admission_duration
        .get_or_create(&WebhookLabels { webhook })
        .observe(started.elapsed().as_secs_f64());
    Json(response.into_review())
}

async fn load(client: &Client, tls: &Tls) -> Result<(String, String), WebhookError> {
    match tls {
        Tls::Managed(managed) => {
            let bundle = certs::ensure(client, managed).await?;
            Ok((bundle.cert, bundle.key))
        }
        Tls::Files(dir) => {
            let read = |name: &str| {
                std::fs::read_to_string(dir.join(name)).map_err(|source| WebhookError::Files {
                    dir: dir.clone(),
                    source,
                })
            };
            Ok((read("tls.crt")?, read("tls.key")?))
        }
    }
}

/// Puts the CA bundle back whenever a webhook configuration changes (e.g. `helm upgrade`
/// re-applies it without a bundle, or a GitOps tool reverts it).
async fn keep_ca_published(client: Client, name: String, ca: String) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mutating = watcher(Api::<MutatingWebhookConfiguration>::all(client.clone()), config.clone())
        .default_backoff()
        .applied_objects()
        .map(|r| r.map(|_| ()));
    let validating = watcher(Api::<ValidatingWebhookConfiguration>::all(client.clone()), config)
        .default_backoff()
        .applied_objects()
        .map(|r| r.map(|_| ()));
    let mut changes = futures::stream::select(mutating, validating).boxed();
    while let Some(change) = changes.next().await {
        if let Err(err) = change {
            warn!(error = %err, "watching the webhook configurations failed; retrying");
            continue;
        }
        if let Err(err) = certs::publish_ca(&client, &name, &ca).await {
            warn!(error = %err, "cannot publish the webhook CA bundle");
        }
    }
}

/// Re-checks the certificate every [`REFRESH`] and reloads it when it changed.
async fn refresh(client: Client, tls: Tls, config: RustlsConfig, mut current: String) {
    loop {
        tokio::time::sleep(REFRESH).await;
        match load(&client, &tls).await {
            Ok((cert, key)) if cert != current => {
                match config
                    .reload_from_pem(cert.clone().into_bytes(), key.into_bytes())
                    .await
                {
                    Ok(()) => {
                        info!("webhook certificate reloaded");
                        current = cert;
                    }
                    Err(err) => warn!(error = %err, "cannot reload the webhook certificate"),
                }
            }
            Ok(_) => {}
            Err(err) => warn!(error = %err, "cannot refresh the webhook certificate"),
        }
    }
}
