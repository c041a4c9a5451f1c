//! The optional audit sink: every audit record is also POSTed, as a CloudEvent, to an
//! HTTPS endpoint (a SIEM, a log collector). Delivery never holds up the operator: records
//! go into a bounded in-memory buffer and a background task sends them one by one, in
//! order, retrying failures with exponential backoff. When the buffer is full, or a record
//! has used up its attempts, it is dropped and counted
//! (`jitrbac_audit_sink_events_total{result="dropped"}`); standard output keeps every
//! record regardless.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::AuditRecord;
use super::cloudevent::{self, CONTENT_TYPE};
use crate::metrics::{Metrics, SinkLabels};

/// Longest a single delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest wait between attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where and how to send audit records.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The endpoint: an `https://` URL without credentials in it.
    pub url: Uri,
    /// PEM file of CA certificates to trust instead of the system's, for a private
    /// endpoint.
    pub ca_file: Option<PathBuf>,
    /// File holding a bearer token sent as `Authorization: Bearer <token>`; read before
    /// every attempt, so a rotated token is picked up. Never logged.
    pub token_file: Option<PathBuf>,
    /// The CloudEvent `source` (a URI-reference naming this cluster, e.g. `//jitrbac/prod-eu`).
    pub source: String,
    /// How many records may wait for delivery (at least 1).
    pub buffer: usize,
    /// Attempts per record before it is dropped (at least 1).
    pub max_attempts: u32,
}

/// Why the sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The URL is not `https://host[:port]/path`, or carries credentials.
    #[error(
        "audit sink URL {0}: must be https://host[:port][/path], without user or password (use --audit-sink-token-file)"
    )]
    Url(String),
    /// The CA file could not be read or holds no certificate.
    #[error("audit sink CA file {path}: {reason}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// No trust anchors at all (no CA file and no system certificates).
    #[error("audit sink: no CA certificates found in the system store; give --audit-sink-ca-file")]
    NoRoots,
    /// rustls refused the trust anchors.
    #[error("audit sink TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Accepted (2xx).
    Delivered,
    /// Worth trying again: no connection, a timeout, 408, 429 or a 5xx.
    Retry,
    /// Refused for good (other 4xx, e.g. a bad token): retrying cannot help.
    Refused,
}

/// Classifies the HTTP status of one attempt.
pub fn classify(status: StatusCode) -> Attempt {
    if status.is_success() {
        Attempt::Delivered
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Attempt::Retry
    } else {
        Attempt::Refused
    }
}

/// The wait after failed attempt number `attempt` (1-based): 0.5 s doubling, at most 30 s.
pub fn backoff(attempt: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)))
        .min(BACKOFF_MAX)
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The handle through which the audit log hands records to the sink.
pub struct Forwarder {
    tx: Mutex<Option<mpsc::Sender<AuditRecord>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl Forwarder {
    /// Checks `config`, builds the HTTPS client and starts the delivery task.
    ///
    /// Fails with [`SinkError`] when the URL is not plain `https://`, or the trust anchors
    /// cannot be loaded. Must be called within a Tokio runtime.
    pub fn start(config: SinkConfig, metrics: Arc<Metrics>) -> Result<Self, SinkError> {
        let url = &config.url;
        if url.scheme_str() != Some("https")
            || url.host().is_none()
            || url.authority().is_some_and(|a| a.as_str().contains('@'))
        {
            return Err(SinkError::Url(url.to_string()));
        }
        let client = https_client(config.ca_file.as_ref())?;
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
        let task = tokio::spawn(deliver_all(client, config, rx, metrics.clone()));
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
            metrics,
        })
    }

    /// Queues `record` for delivery without waiting; when the buffer is full the record
    /// is dropped, counted and logged.
    pub fn offer(&self, record: &AuditRecord) {
        let tx = self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(tx) = tx.as_ref() else { return };
        match tx.try_send(record.clone()) {
            Ok(()) => {
                self.metrics.audit_sink_buffered.inc();
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                count(&self.metrics, "dropped");
                warn!(id = %record.id, action = record.action, "audit sink buffer full: record dropped (it is still on standard output)");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Stops accepting records and gives the delivery task up to `grace` to send what is
    /// buffered (at shutdown).
    pub async fn close(&self, grace: Duration) {
        drop(self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task
            && tokio::time::timeout(grace, task).await.is_err()
        {
            warn!(
                buffered = self.metrics.audit_sink_buffered.get(),
                "audit sink: records still undelivered at shutdown"
            );
        }
    }
}

fn count(metrics: &Metrics, result: &'static str) {
    metrics.audit_sink.get_or_create(&SinkLabels { result }).inc();
}

/// An HTTPS-only client trusting `ca_file`, or the system's CA certificates.
fn https_client(ca_file: Option<&PathBuf>) -> Result<HttpsClient, SinkError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca = |reason: String| SinkError::Ca {
                path: path.clone(),
                reason,
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| ca(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca("no PEM certificate in it".to_owned()));
            }
            for cert in certs {
                roots.add(cert)?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(SinkError::NoRoots);
            }
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Sends every record received on `rx`, in order, until the channel closes.
async fn deliver_all(
    client: HttpsClient,
    config: SinkConfig,
    mut rx: mpsc::Receiver<AuditRecord>,
    metrics: Arc<Metrics>,
) {
    while let Some(record) = rx.recv().await {
        let delivered = deliver(&client, &config, &record, &metrics).await;
        // Counted as waiting until delivered or given up (the one in flight included).
        metrics.audit_sink_buffered.dec();
        count(&metrics, if delivered { "delivered" } else { "dropped" });
    }
}

/// Tries to deliver one record, up to `max_attempts` times; returns whether it arrived.
async fn deliver(client: &HttpsClient, config: &SinkConfig, record: &AuditRecord, metrics: &Metrics) -> bool {
    let body = match serde_json::to_vec(&cloudevent::wrap(record, &config.source)) {
        Ok(body) => Bytes::from(body),
        Err(err) => {
            warn!(error = %err, id = %record.id, "audit sink: cannot serialize the record");
            return false;
        }
    };
    let host = config.url.host().unwrap_or_default();
    for attempt in 1..=config.max_attempts.max(1) {
        let outcome = match request(config, body.clone()) {
            Ok(req) => match tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(req)).await {
                Ok(Ok(response)) => {
                    let status = response.status();
                    let outcome = classify(status);
                    if outcome != Attempt::Delivered {
                        warn!(%host, %status, id = %record.id, attempt, "audit sink refused a record");
                    }
                    outcome
                }
                Ok(Err(err)) => {
                    warn!(%host, error = %err, id = %record.id, attempt, "audit sink unreachable");
                    Attempt::Retry
                }
                Err(_) => {
                    warn!(%host, id = %record.id, attempt, "audit sink did not answer in time");
                    Attempt::Retry
                }
            },
            Err(err) => {
                warn!(error = %err, id = %record.id, "audit sink: cannot build the request");
                Attempt::Retry
            }
        };
        match outcome {
            Attempt::Delivered => {
                debug!(id = %record.id, attempt, "audit record delivered");
                return true;
            }
            Attempt::Refused => return false,
            Attempt::Retry if attempt < config.max_attempts => {
                count(metrics, "retried");
                tokio::time::sleep(backoff(attempt)).await;
            }
            Attempt::Retry => {}
        }
    }
    warn!(id = %record.id, attempts = config.max_attempts, "audit sink: giving up on a record (it is still on standard output)");
    false
}

/// The POST of one attempt; the token file is read now, so rotation needs no restart.
fn request(config: &SinkConfig, body: Bytes) -> Result<Request<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let mut req = Request::post(config.url.clone()).header(header::CONTENT_TYPE, CONTENT_TYPE);
    if let Some(path) = &config.token_file {
        let token =
            std::fs::read_to_string(path).map_err(|e| format!("reading the token file {}: {e}", path.display()))?;
        req = req.header(header::AUTHORIZATION, format!("Bearer {}", token.trim()));
    }
    Ok(req.body(Full::new(body))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_server_side_and_throttling_failures_are_retried() {
        assert_eq!(classify(StatusCode::OK), Attempt::Delivered);
        assert_eq!(classify(StatusCode::ACCEPTED), Attempt::Delivered);
        for s in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::REQUEST_TIMEOUT,
        ] {
            assert_eq!(classify(s), Attempt::Retry, "{s}");
        }
        for s in [StatusCode::BAD_REQUEST, StatusCode::UNAUTHORIZED, StatusCode::NOT_FOUND] {
            assert_eq!(classify(s), Attempt::Refused, "{s}");
        }
    }

    #[test]
    fn backoff_doubles_from_half_a_second_to_thirty() {
        let waits: Vec<u128> = (1..=9).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[tokio::test]
    async fn refuses_plain_http_and_credentials_in_the_url() {
        let metrics = Arc::new(Metrics::new());
        for url in ["http://siem.example/events", "https://user:pw@siem.example/events"] {
            let config = SinkConfig {
                url: url.parse().expect("uri"),
                ca_file: None,
                token_file: None,
                source: "/jitrbac".into(),
                buffer: 10,
                max_attempts: 1,
            };
            let err = Forwarder::start(config, metrics.clone()).err().expect("refused");
            assert!(matches!(err, SinkError::Url(_)), "{url}: {err}");
        }
    }
}
