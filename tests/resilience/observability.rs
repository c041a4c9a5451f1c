//! Metrics, the expiry notice and the audit sink, followed through a grant's life. The
//! operator is restarted with special flags, so these run with the other serial tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use bytes::Bytes;
use jitrbac::api::{AccessGrant, GrantPhase, parse_timestamp};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, PostParams};

use crate::support::{
    Env, Result, TIMEOUT, ensure, eventually, expect_audit, grant_with, http_get, lock, metric, uid_of, wait_event,
    wait_phase,
};

const ACTIVE: &str = r#"jitrbac_grants{kind="AccessGrant",phase="Active"}"#;
const TO_ACTIVE: &str = r#"jitrbac_grant_transitions_total{kind="AccessGrant",phase="Active"}"#;
const TO_EXPIRED: &str = r#"jitrbac_grant_transitions_total{kind="AccessGrant",phase="Expired"}"#;
const DENIED_SYSTEM: &str = r#"jitrbac_grants_denied_total{kind="AccessGrant",reason="SystemSubject"}"#;
const LAG_COUNT: &str = r#"jitrbac_expiry_lag_seconds_count{kind="AccessGrant"}"#;
const LAG_1S: &str = r#"jitrbac_expiry_lag_seconds_bucket{le="1.0",kind="AccessGrant"}"#;
const NEXT_EXPIRY: &str = r#"jitrbac_next_expiry_seconds{kind="AccessGrant"}"#;
const OVERDUE: &str = "jitrbac_bindings_overdue";
const UNVERIFIED: &str = "jitrbac_bindings_overdue_unverified";
const RECONCILES: &str = r#"jitrbac_reconcile_duration_seconds_count{kind="AccessGrant"}"#;
const ADMITTED: &str = r#"jitrbac_admission_requests_total{webhook="mutate-accessgrants",decision="allowed"}"#;

async fn scrape(url: &str) -> Result<String> {
    let (code, body) = http_get(&format!("{url}/metrics")).await?;
    ensure(code == 200, format!("/metrics answered {code}"))?;
    Ok(body)
}

pub async fn metrics_follow_a_grant_through_its_life_with_an_expiry_notice(env: &'static Env) -> Result<()> {
    env.restart_operator("operator-with-notice", &["--expiry-notice", "3s"])?;
    let (_, url) = env.operator_urls().ok_or("no operator")?;
    let webhook_url = env.webhook_metrics_url().ok_or("no webhook server")?;
    eventually("the operator serves /metrics", TIMEOUT, || async {
        Ok(http_get(&format!("{url}/metrics")).await.is_ok_and(|(c, _)| c == 200))
    })
    .await?;
    let before = scrape(&url).await?;
    let admitted_before = metric(&scrape(&webhook_url).await?, ADMITTED);

    let ns = env.namespace("metrics").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let spec = "subjects: [{kind: User, name: erin}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 6s";
    let g = api
        .create(&PostParams::default(), &grant_with(&ns, "watched", spec)?)
        .await?;
    let uid = uid_of(&g)?;
    wait_phase(&api, "watched", GrantPhase::Active).await?;
    // The operator counts a transition once its status write has been answered, which can
    // be a moment after a watch shows the new status.
    eventually(
        "the grant is counted as Active, and its transition",
        TIMEOUT,
        || async {
            let now = scrape(&url).await?;
            Ok(metric(&now, ACTIVE) >= 1.0 && metric(&now, TO_ACTIVE) >= metric(&before, TO_ACTIVE) + 1.0)
        },
    )
    .await?;
    let during = scrape(&url).await?;
    let next = metric(&during, NEXT_EXPIRY);
    ensure(next > 0.0 && next <= 6.0, format!("next expiry in {next} s"))?;
    ensure(
        metric(&scrape(&webhook_url).await?, ADMITTED) >= admitted_before + 1.0,
        "the webhook counts the admitted grant",
    )?;

    // The notice comes 3 s before the expiry, then the grant expires.
    let notice = wait_event(&env.admin, &ns, &uid, "ExpiringSoon").await?;
    ensure(
        notice
            .note
            .as_deref()
            .is_some_and(|n| n.contains("request a new AccessGrant")),
        format!("notice: {:?}", notice.note),
    )?;
    let expired = wait_phase(&api, "watched", GrantPhase::Expired).await?;
    let status = expired.status.unwrap_or_default();
    ensure(
        status.expiry_notice_at.is_some(),
        "status records when the notice was given",
    )?;
    expect_audit(env, &uid, &["Granted", "ExpiringSoon", "Expired"]).await?;

    eventually("the transition to Expired is counted", TIMEOUT, || async {
        Ok(metric(&scrape(&url).await?, TO_EXPIRED) >= metric(&before, TO_EXPIRED) + 1.0)
    })
    .await?;
    let after = scrape(&url).await?;
    ensure(
        metric(&after, LAG_COUNT) >= metric(&before, LAG_COUNT) + 1.0,
        format!("the expiry lag is observed:\n{after}"),
    )?;
    ensure(
        metric(&after, LAG_1S) - metric(&before, LAG_1S) >= 1.0,
        "the lag of an expiry on time falls in the buckets below one second",
    )?;
    ensure(
        metric(&after, RECONCILES) > metric(&before, RECONCILES),
        "reconciles are timed",
    )?;
    eventually("no binding is overdue", TIMEOUT, || async {
        Ok(metric(&scrape(&url).await?, OVERDUE) == 0.0)
    })
    .await?;

    // A binding that copies the operator's labels, past its expiry: the operator may not
    // delete it, so a gauge shows it (and an alert fires on it).
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    let copy: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "jitrbac-copy-0000abcd",
            "labels": {"app.kubernetes.io/managed-by": "jitrbac", "jitrbac.io/grant-uid": "no-such-grant"},
            "annotations": {"jitrbac.io/expires-at": "2026-01-01T00:00:00Z"}
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "erin"}]
    }))?;
    // Earlier tests may have left copies of their own (the gauge counts every namespace).
    let base = metric(&scrape(&url).await?, UNVERIFIED);
    rbs.create(&PostParams::default(), &copy).await?;
    eventually("the copy is counted as unverified", TIMEOUT, || async {
        Ok(metric(&scrape(&url).await?, UNVERIFIED) >= base + 1.0)
    })
    .await?;
    let counted = metric(&scrape(&url).await?, UNVERIFIED);
    ensure(
        rbs.get_opt("jitrbac-copy-0000abcd").await?.is_some(),
        "the operator left the copy alone",
    )?;
    rbs.delete("jitrbac-copy-0000abcd", &Default::default()).await?;
    eventually("a deleted copy is no longer counted", TIMEOUT, || async {
        Ok(metric(&scrape(&url).await?, UNVERIFIED) <= counted - 1.0)
    })
    .await?;

    // A refusal is counted by reason.
    let spec =
        "subjects: [{kind: Group, name: system:masters}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h";
    api.create(&PostParams::default(), &grant_with(&ns, "masters", spec)?)
        .await?;
    wait_phase(&api, "masters", GrantPhase::Denied).await?;
    let denied = scrape(&url).await?;
    ensure(
        metric(&denied, DENIED_SYSTEM) >= metric(&before, DENIED_SYSTEM) + 1.0,
        "denials are counted by reason",
    )?;
    // Every family the operator exports is documented, and every documented one exported.
    let exported: std::collections::BTreeSet<String> = denied
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap_or((l, ""));
            if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            }
        })
        .collect();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))?;
    let documented: std::collections::BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_owned()))
        .filter(|name| name.starts_with("jitrbac_"))
        .collect();
    // Counters of open reason sets appear on first use; nothing is active any more.
    let absent: std::collections::BTreeSet<String> = documented.difference(&exported).cloned().collect();
    ensure(
        exported.is_subset(&documented)
            && absent
                .iter()
                .all(|m| ["jitrbac_reconcile_errors_total", "jitrbac_next_expiry_seconds"].contains(&m.as_str())),
        format!("exported {exported:?}\ndocumented {documented:?}"),
    )?;

    env.restart_operator("operator-after-metrics", &[])?;
    Ok(())
}

/// What the test audit endpoint received: (Content-Type, Authorization, body) per request.
type Received = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

/// An HTTPS endpoint on 127.0.0.1 standing in for a SIEM: answers 503 to the first
/// `failures` requests, then 202, and records every request. Returns its URL, the CA file
/// that makes it trusted, what it received, and a handle to stop it.
async fn audit_endpoint(env: &Env, failures: usize) -> Result<(String, PathBuf, Received, Handle<SocketAddr>)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bundle = jitrbac::webhook::certs::issue(&["127.0.0.1".to_owned()], jiff::Timestamp::now())?;
    let ca = env.dir.join("audit-sink-ca.pem");
    std::fs::write(&ca, &bundle.ca_cert)?;
    let tls = RustlsConfig::from_pem(bundle.cert.into_bytes(), bundle.key.into_bytes()).await?;
    let received: Received = Arc::default();
    let seen = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/events",
        post({
            let received = received.clone();
            move |headers: HeaderMap, body: Bytes| async move {
                let header = |name| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let json = serde_json::from_slice(&body).unwrap_or_default();
                lock(&received).push((header("content-type"), header("authorization"), json));
                if seen.fetch_add(1, Ordering::SeqCst) < failures {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::ACCEPTED
                }
            }
        }),
    );
    let port = crate::support::controlplane::free_port()?;
    let handle = Handle::new();
    let server = axum_server::bind_rustls(SocketAddr::from(([127, 0, 0, 1], port)), tls).handle(handle.clone());
    tokio::spawn(async move { server.serve(app.into_make_service()).await });
    Ok((format!("https://127.0.0.1:{port}/events"), ca, received, handle))
}

/// The CloudEvents the endpoint accepted or refused for grant `uid`, by audit action.
fn events_for(received: &Received, uid: &str) -> Vec<(String, String, serde_json::Value)> {
    lock(received)
        .iter()
        .filter(|(_, _, e)| e["data"]["grant"]["uid"] == uid)
        .cloned()
        .collect()
}

pub async fn audit_records_reach_the_sink_as_cloudevents_and_a_dead_sink_never_delays_expiry(
    env: &'static Env,
) -> Result<()> {
    let (url, ca, received, handle) = audit_endpoint(env, 2).await?;
    let token = env.dir.join("audit-sink-token");
    std::fs::write(&token, "s3cret-sink-token\n")?;
    let (ca, token) = (ca.display().to_string(), token.display().to_string());
    env.restart_operator(
        "operator-with-sink",
        &[
            "--audit-sink-url",
            &url,
            "--audit-sink-ca-file",
            &ca,
            "--audit-sink-token-file",
            &token,
            "--audit-sink-source",
            "//jitrbac/test",
            "--audit-sink-max-attempts",
            "4",
        ],
    )?;
    let ns = env.namespace("sink").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let spec = "subjects: [{kind: User, name: frank}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 2s";
    let g = api
        .create(&PostParams::default(), &grant_with(&ns, "sent", spec)?)
        .await?;
    let uid = uid_of(&g)?;
    wait_phase(&api, "sent", GrantPhase::Expired).await?;
    // The first two attempts were refused with 503 and retried; both records arrive, in
    // order, exactly as written to standard output.
    eventually("Granted and Expired reach the sink", TIMEOUT, || async {
        let accepted: Vec<String> = events_for(&received, &uid)
            .iter()
            .map(|(_, _, e)| e["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        Ok(accepted.ends_with(&[
            "io.jitrbac.audit.v1.Granted".to_owned(),
            "io.jitrbac.audit.v1.Expired".to_owned(),
        ]))
    })
    .await?;
    let audit = env
        .audit_lines()
        .into_iter()
        .filter(|l| l["grant"]["uid"] == uid.as_str())
        .collect::<Vec<_>>();
    for (content_type, authorization, event) in events_for(&received, &uid) {
        ensure(
            content_type == "application/cloudevents+json",
            format!("Content-Type {content_type}"),
        )?;
        ensure(
            authorization == "Bearer s3cret-sink-token",
            "the token file is sent as a bearer token",
        )?;
        ensure(
            event["specversion"] == "1.0" && event["source"] == "//jitrbac/test",
            format!("{event}"),
        )?;
        ensure(
            audit.iter().any(|l| l["id"] == event["id"] && *l == event["data"]),
            format!("the event carries an audit line with its id: {event}"),
        )?;
    }
    let (_, metrics_url) = env.operator_urls().ok_or("no operator")?;
    let body = http_get(&format!("{metrics_url}/metrics")).await?.1;
    ensure(
        metric(&body, r#"jitrbac_audit_sink_events_total{result="retried"}"#) >= 2.0
            && metric(&body, r#"jitrbac_audit_sink_events_total{result="delivered"}"#) >= 2.0,
        format!("sink counters:\n{body}"),
    )?;

    // With the endpoint gone, grants still expire on time and failures are counted.
    handle.shutdown();
    let g = api
        .create(&PostParams::default(), &grant_with(&ns, "unsent", spec)?)
        .await?;
    let expired = wait_phase(&api, "unsent", GrantPhase::Expired).await?;
    let ended = expired.status.unwrap_or_default();
    let late = parse_timestamp(ended.ended_at.as_deref().unwrap_or_default())?
        .duration_since(parse_timestamp(ended.expires_at.as_deref().unwrap_or_default())?);
    ensure(
        late < jiff::SignedDuration::from_secs(1),
        format!("expiry with a dead sink was {late:?} late"),
    )?;
    expect_audit(env, &uid_of(&g)?, &["Granted", "Expired"]).await?;
    let retried = metric(&body, r#"jitrbac_audit_sink_events_total{result="retried"}"#);
    eventually("failed deliveries are counted", TIMEOUT, || async {
        let now = http_get(&format!("{metrics_url}/metrics")).await?.1;
        Ok(metric(&now, r#"jitrbac_audit_sink_events_total{result="retried"}"#) > retried)
    })
    .await?;
    env.restart_operator("operator-after-sink", &[])?;
    Ok(())
}
