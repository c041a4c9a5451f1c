//! Resilience tests on a real local control plane: the operator killed and restarted,
//! `jitrbac sweep --once` while it is down, the API server restarted mid-grant. They stop
//! shared processes, so they run one at a time, in their own control plane.

#![allow(clippy::print_stderr, missing_docs)]

#[path = "../support/mod.rs"]
mod support;

mod observability;

use observability::{
    audit_records_reach_the_sink_as_cloudevents_and_a_dead_sink_never_delays_expiry,
    metrics_follow_a_grant_through_its_life_with_an_expiry_notice,
};

use std::process::{Command, ExitCode};
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use jitrbac::api::{AccessGrant, GrantPhase, parse_timestamp};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;
use kube::runtime::{WatchStreamExt, watcher};

use k8s_openapi::api::coordination::v1::Lease;
use support::{
    Env, Result, TIMEOUT, TestFn, clock_reaches, ensure, expect_audit, grant_with, in_secs, test_list, uid_of,
    wait_for, wait_phase,
};
use support::{Operator, events_about, eventually, http_get};

fn main() -> ExitCode {
    let tests: Vec<(&'static str, TestFn)> = test_list!(
        "resilience":
        overdue_bindings_are_revoked_by_the_start_up_sweep_of_a_restarted_operator,
        a_window_that_passed_while_the_operator_was_down_never_gets_a_binding,
        sweep_once_deletes_only_overdue_operator_bindings_while_the_operator_is_down,
        sweep_once_gives_up_after_its_timeout_when_the_api_server_never_answers,
        sigterm_ends_a_start_up_waiting_on_an_api_server_that_never_answers,
        a_webhook_port_in_use_stops_the_process_instead_of_serving_nothing,
        a_binding_expiring_while_the_api_server_is_down_is_revoked_as_soon_as_it_is_back,
        readyz_reports_ready_only_once_the_caches_are_synced,
        with_two_replicas_each_grant_is_bound_and_revoked_once_even_when_the_leader_dies,
        a_leader_asked_to_stop_hands_over_at_once,
        a_deleted_leader_lease_is_recreated_and_a_replica_leads_again,
        with_the_webhook_down_no_grant_can_be_created_but_grants_can_be_revoked,
        a_restart_never_activates_a_grant_waiting_for_approval,
        without_the_mutating_webhook_the_admission_policies_refuse_missing_and_forged_requesters,
        metrics_follow_a_grant_through_its_life_with_an_expiry_notice,
        audit_records_reach_the_sink_as_cloudevents_and_a_dead_sink_never_delays_expiry,
    );

    support::harness::main(
        "resilience",
        tests,
        support::harness::Options {
            serial: true,
            operator: true,
            crds: true,
        },
    )
}

/// Bindings per page of the sweep's LIST (`BINDING_PAGE` in the sweeper).
const SWEEP_PAGE: usize = 1000;

fn grant(ns: &str, name: &str, duration: &str) -> Result<AccessGrant> {
    grant_with(
        ns,
        name,
        &format!(
            "subjects: [{{kind: User, name: {name}}}]\nroleRef: {{kind: ClusterRole, name: view}}\nduration: {duration}"
        ),
    )
}

/// The grant's binding (recorded in status) once it is active, and its expiry.
async fn active(env: &Env, api: &Api<AccessGrant>, name: &str) -> Result<(RoleBinding, Timestamp)> {
    let g = wait_phase(api, name, GrantPhase::Active).await?;
    let status = g.status.unwrap_or_default();
    let b = status.bindings.first().ok_or("no binding recorded")?;
    let rb = Api::<RoleBinding>::namespaced(env.admin.clone(), b.namespace.as_deref().unwrap_or_default())
        .get(&b.name)
        .await?;
    Ok((rb, parse_timestamp(status.expires_at.as_deref().unwrap_or_default())?))
}

async fn overdue_bindings_are_revoked_by_the_start_up_sweep_of_a_restarted_operator(env: &'static Env) -> Result<()> {
    let ns = env.namespace("restart").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    // Enough overdue in one namespace for the sweep to read their grants with one LIST.
    const SHORT: usize = 16;
    for i in 0..SHORT {
        api.create(&PostParams::default(), &grant(&ns, &format!("short-{i}"), "5s")?)
            .await?;
    }
    api.create(&PostParams::default(), &grant(&ns, "long", "1h")?).await?;
    let mut short = Vec::new();
    let mut last_expiry = Timestamp::UNIX_EPOCH;
    for i in 0..SHORT {
        let (rb, expiry) = active(env, &api, &format!("short-{i}")).await?;
        last_expiry = last_expiry.max(expiry);
        short.push(rb);
    }
    let (long_rb, _) = active(env, &api, "long").await?;

    env.kill_operator();
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    // A finalizer keeps a deleted binding, and the access it gives, in place: revoking
    // this one takes removing it.
    let held = serde_json::json!({"metadata": {"finalizers": ["example.com/keep"]}});
    rbs.patch(&short[0].name_any(), &PatchParams::default(), &Patch::Merge(&held))
        .await?;
    clock_reaches(last_expiry + SignedDuration::from_secs(1)).await;
    for rb in &short {
        ensure(
            rbs.get_opt(&rb.name_any()).await?.is_some(),
            "with the operator down the binding outlives its expiry",
        )?;
    }
    // How fast is for the benchmark (restart catch-up); this checks what is revoked.
    env.restart_operator("operator-restarted", &[])?;
    for rb in &short {
        wait_for(
            &rbs,
            &rb.name_any(),
            "deleted",
            TIMEOUT,
            conditions::is_deleted(&uid_of(rb)?),
        )
        .await?;
    }
    ensure(
        rbs.get_opt(&long_rb.name_any()).await?.is_some(),
        "the unexpired binding stays",
    )?;
    for i in 0..SHORT {
        let name = format!("short-{i}");
        let g = wait_phase(&api, &name, GrantPhase::Expired).await?;
        // The start-up sweep records the actual removal; the grant's own record follows.
        expect_audit(env, &uid_of(&g)?, &["BindingSwept", "Expired"]).await?;
    }
    Ok(())
}

async fn a_window_that_passed_while_the_operator_was_down_never_gets_a_binding(env: &'static Env) -> Result<()> {
    let ns = env.namespace("missed-window").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    // Watch every RoleBinding that ever appears in the namespace.
    let mut seen = watcher(rbs.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    env.kill_operator();
    let (starts, ends) = (in_secs(1), in_secs(2));
    let spec = format!(
        "subjects: [{{kind: User, name: alice}}]\nroleRef: {{kind: ClusterRole, name: view}}\nstartsAt: \"{starts}\"\nexpiresAt: \"{ends}\""
    );
    let created = api
        .create(&PostParams::default(), &grant_with(&ns, "missed", &spec)?)
        .await?;
    clock_reaches(parse_timestamp(&ends)? + SignedDuration::from_millis(200)).await;
    env.restart_operator("operator-after-missed-window", &[])?;
    let expired = wait_phase(&api, "missed", GrantPhase::Expired).await?;
    ensure(
        expired.status.unwrap_or_default().bindings.is_empty(),
        "no binding recorded",
    )?;
    expect_audit(env, &uid_of(&created)?, &["Expired"]).await?;
    // Nothing appeared in the namespace at any point (the watch saw the whole history).
    let appeared = tokio::time::timeout(Duration::from_millis(1), seen.next()).await;
    ensure(appeared.is_err(), format!("a RoleBinding appeared: {appeared:?}"))?;
    ensure(rbs.list(&Default::default()).await?.items.is_empty(), "no RoleBinding")?;
    Ok(())
}

async fn sweep_once_deletes_only_overdue_operator_bindings_while_the_operator_is_down(env: &'static Env) -> Result<()> {
    let ns = env.namespace("sweep-once").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    api.create(&PostParams::default(), &grant(&ns, "short", "2s")?).await?;
    api.create(&PostParams::default(), &grant(&ns, "long", "1h")?).await?;
    let (short, expiry) = active(env, &api, "short").await?;
    let (long, _) = active(env, &api, "long").await?;
    // A look-alike: the operator's labels and a past expiry, but not created by it.
    let mut look_alike = short.clone();
    look_alike.metadata = kube::api::ObjectMeta {
        name: Some("look-alike".into()),
        labels: short.metadata.labels.clone(),
        annotations: short.metadata.annotations.clone(),
        ..Default::default()
    };
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    rbs.create(&PostParams::default(), &look_alike).await?;
    // More look-alikes than a page of the sweep's LIST holds, named to come first, so the
    // overdue binding is only on a later page.
    let fillers: Vec<RoleBinding> = (0..=SWEEP_PAGE)
        .map(|i| {
            let mut filler = look_alike.clone();
            filler.metadata.name = Some(format!("filler-{i:03}"));
            filler
        })
        .collect();
    let created: Vec<_> = futures::stream::iter(fillers.clone())
        .map(|f| {
            let rbs = rbs.clone();
            async move { rbs.create(&PostParams::default(), &f).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    created.into_iter().collect::<std::result::Result<Vec<_>, _>>()?;

    env.kill_operator();
    clock_reaches(expiry + SignedDuration::from_millis(200)).await;
    let out = Command::new(env!("CARGO_BIN_EXE_jitrbac"))
        .args(["sweep", "--once", "--log-format", "json"])
        .env("KUBECONFIG", env.dir.join("kubeconfig"))
        .output()?;
    ensure(
        out.status.success(),
        format!("sweep --once failed: {}", String::from_utf8_lossy(&out.stderr)),
    )?;
    ensure(
        rbs.get_opt(&short.name_any()).await?.is_none(),
        "the overdue binding is deleted",
    )?;
    ensure(
        rbs.get_opt(&long.name_any()).await?.is_some(),
        "the unexpired binding stays",
    )?;
    ensure(
        rbs.get_opt("look-alike").await?.is_some(),
        "the look-alike is never touched",
    )?;
    let left = rbs.list(&Default::default()).await?.items.len();
    ensure(
        left == fillers.len() + 2,
        format!("{left} bindings left: every filler, the look-alike and the long one"),
    )?;
    env.restart_operator("operator-after-sweep", &[])?;
    wait_phase(&api, "short", GrantPhase::Expired).await?;
    Ok(())
}

async fn sweep_once_gives_up_after_its_timeout_when_the_api_server_never_answers(env: &'static Env) -> Result<()> {
    // Without a timeout the sweep would wait for the client's own read timeout, minutes
    // per request.
    let (silent, kubeconfig) = silent_api_server(env, "sweep").await?;
    let stderr = fails_alone(&kubeconfig, &["sweep", "--once", "--timeout", "1s"]).await?;
    drop(silent);
    ensure(
        stderr.contains("did not finish within 1s"),
        format!("the error names the timeout: {stderr}"),
    )?;
    Ok(())
}

async fn a_webhook_port_in_use_stops_the_process_instead_of_serving_nothing(env: &'static Env) -> Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let webhook = env.webhook_args_at(&addr);
    let mut args = vec!["run", "--metrics-addr", "127.0.0.1:0", "--health-addr", "127.0.0.1:0"];
    args.extend(webhook.iter().map(String::as_str));
    let stderr = fails_alone(&env.dir.join("kubeconfig"), &args).await?;
    drop(taken);
    ensure(
        stderr.contains(&format!("cannot listen on {addr} for the admission webhooks")),
        format!("the error names the address: {stderr}"),
    )?;
    Ok(())
}

/// A TCP listener that accepts connections and never answers (an API server that hangs),
/// and a kubeconfig `<name>.kubeconfig` pointing at it.
async fn silent_api_server(env: &Env, name: &str) -> Result<(tokio::net::TcpListener, std::path::PathBuf)> {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = silent.local_addr()?.port();
    let kubeconfig = env.dir.join(format!("{name}.kubeconfig"));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}}}]\n\
             users: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n"
        ),
    )?;
    Ok((silent, kubeconfig))
}

async fn sigterm_ends_a_start_up_waiting_on_an_api_server_that_never_answers(env: &'static Env) -> Result<()> {
    for (name, mode) in [
        ("start-up", &[][..]),
        (
            "start-up-elected",
            &["--leader-election", "--leader-election-namespace", "default"][..],
        ),
    ] {
        // A server per run: connections of an earlier run wait in the backlog.
        let (silent, kubeconfig) = silent_api_server(env, name).await?;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitrbac"))
            .args(["run", "--metrics-addr", "127.0.0.1:0", "--health-addr", "127.0.0.1:0"])
            .args(mode)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        // Its first request has reached the server: it is waiting in start-up.
        let (_held, _) = tokio::time::timeout(TIMEOUT, silent.accept())
            .await
            .map_err(|_| "the operator never connected")??;
        let pid = child.id().ok_or("exited before the signal")?;
        Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
        let status = tokio::time::timeout(TIMEOUT, child.wait())
            .await
            .map_err(|_| format!("run {mode:?} still running after SIGTERM"))??;
        ensure(status.success(), format!("run {mode:?} stopped cleanly: {status}"))?;
    }
    Ok(())
}

/// Runs `jitrbac <args>` with `kubeconfig` and expects it to exit by itself, unsuccessfully,
/// within [`TIMEOUT`]; returns its standard error. Fails if it succeeds or keeps running.
async fn fails_alone(kubeconfig: &std::path::Path, args: &[&str]) -> Result<String> {
    let out = tokio::time::timeout(
        TIMEOUT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_jitrbac"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("jitrbac {} still running after {TIMEOUT:?}", args.join(" ")))??;
    ensure(!out.status.success(), format!("jitrbac {} succeeded", args.join(" ")))?;
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn a_binding_expiring_while_the_api_server_is_down_is_revoked_as_soon_as_it_is_back(
    env: &'static Env,
) -> Result<()> {
    let ns = env.namespace("apiserver-down").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    api.create(&PostParams::default(), &grant(&ns, "through-outage", "4s")?)
        .await?;
    let (rb, expiry) = active(env, &api, "through-outage").await?;
    let back = env
        .with_apiserver_down(async {
            clock_reaches(expiry + SignedDuration::from_secs(3)).await;
            Ok(())
        })
        .await?;
    // The admin client reconnects on its own; the operator's timers kept running.
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    wait_for(
        &rbs,
        &rb.name_any(),
        "deleted",
        TIMEOUT,
        conditions::is_deleted(&uid_of(&rb)?),
    )
    .await?;
    let lag = Timestamp::now().duration_since(back);
    ensure(
        lag < SignedDuration::from_secs(2),
        format!("revoked {lag:?} after the API server was back (must be < 2 s)"),
    )?;
    wait_phase(&api, "through-outage", GrantPhase::Expired).await?;
    Ok(())
}

async fn readyz_reports_ready_only_once_the_caches_are_synced(env: &'static Env) -> Result<()> {
    env.kill_operator();
    let mut urls = None;
    env.with_apiserver_down(async {
        env.restart_operator("operator-started-without-apiserver", &[])?;
        let (health, metrics) = env.operator_urls().ok_or("no operator")?;
        eventually("the operator serves /healthz", TIMEOUT, || async {
            Ok(http_get(&format!("{health}/healthz"))
                .await
                .is_ok_and(|(code, _)| code == 200))
        })
        .await?;
        let (code, body) = http_get(&format!("{health}/readyz")).await?;
        ensure(code == 503, format!("/readyz before any list: {code} {body}"))?;
        urls = Some((health, metrics));
        Ok(())
    })
    .await?;
    let (health, metrics) = urls.ok_or("no operator urls")?;
    eventually("/readyz turns ready once the API server is back", TIMEOUT, || async {
        Ok(http_get(&format!("{health}/readyz"))
            .await
            .is_ok_and(|(code, _)| code == 200))
    })
    .await?;
    let (code, body) = http_get(&format!("{metrics}/metrics")).await?;
    ensure(
        code == 200 && body.contains("jitrbac_leader 1"),
        format!("/metrics: {code}\n{body}"),
    )?;
    Ok(())
}

/// The holder of a Lease, if any.
fn holder(lease: Option<&Lease>) -> Option<String> {
    lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.holder_identity.clone())
}

/// Starts two operator replicas named `instances` with leader election on the Lease
/// `default/<lease_name>` (lease duration `lease_seconds`), waits until one holds it, and
/// returns both and the first holder's identity (`<instance>_<suffix>`).
async fn start_replicas(
    env: &Env,
    lease_name: &str,
    lease_seconds: u32,
    instances: [&str; 2],
) -> Result<(Operator, Operator, String)> {
    let kubeconfig = env.dir.join("kubeconfig");
    let start = |instance: &str| {
        let seconds = lease_seconds.to_string();
        let args = [
            "--leader-election",
            "--leader-election-namespace",
            "default",
            "--leader-election-lease-name",
            lease_name,
            "--lease-duration-seconds",
            &seconds,
            "--instance",
            instance,
        ];
        Operator::start(&env.dir, instance, &kubeconfig, &args)
    };
    let (a, b) = (start(instances[0])?, start(instances[1])?);
    let leases: Api<Lease> = Api::namespaced(env.admin.clone(), "default");
    let first = wait_for(&leases, lease_name, "held", TIMEOUT, |l: Option<&Lease>| {
        holder(l).is_some()
    })
    .await?;
    let first = holder(first.as_ref()).ok_or("no holder")?;
    Ok((a, b, first))
}

async fn with_two_replicas_each_grant_is_bound_and_revoked_once_even_when_the_leader_dies(
    env: &'static Env,
) -> Result<()> {
    env.kill_operator();
    let ns = env.namespace("two-replicas").await?;
    let lease_name = format!("jitrbac-{ns}");
    let (mut a, mut b, first) = start_replicas(env, &lease_name, 6, ["replica-a", "replica-b"]).await?;
    let leases: Api<Lease> = Api::namespaced(env.admin.clone(), "default");

    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    for i in 0..6 {
        api.create(&PostParams::default(), &grant(&ns, &format!("g{i}"), "10s")?)
            .await?;
    }
    let mut uids = Vec::new();
    for i in 0..6 {
        uids.push(uid_of(&wait_phase(&api, &format!("g{i}"), GrantPhase::Active).await?)?);
    }
    // Kill the leader mid-run: the grants are active and expire in a few seconds.
    let (leader, survivor) = if first.starts_with("replica-a_") {
        (&mut a, "replica-b_")
    } else {
        (&mut b, "replica-a_")
    };
    leader.kill();
    let killed_at = Timestamp::now();
    wait_for(&leases, &lease_name, "taken over", TIMEOUT, move |l: Option<&Lease>| {
        holder(l).is_some_and(|h| h.starts_with(survivor))
    })
    .await?;
    let took = Timestamp::now().duration_since(killed_at);
    ensure(
        took <= SignedDuration::from_secs(8),
        format!("the new leader took over after {took:?} (lease: 6 s)"),
    )?;

    for i in 0..6 {
        wait_phase(&api, &format!("g{i}"), GrantPhase::Expired).await?;
    }
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    ensure(
        rbs.list(&Default::default()).await?.items.is_empty(),
        "every binding is gone",
    )?;
    let mut lines: Vec<serde_json::Value> = a.audit_lines().into_iter().chain(b.audit_lines()).collect();
    // Either replica may have been the first leader: order the records by their time.
    lines.sort_by(|x, y| x["time"].as_str().cmp(&y["time"].as_str()));
    for uid in &uids {
        let actions: Vec<&str> = lines
            .iter()
            .filter(|l| l["grant"]["uid"] == uid.as_str())
            .filter_map(|l| l["action"].as_str())
            .collect();
        ensure(
            actions == ["Granted", "Expired"],
            format!("{uid}: bound once and revoked once: {actions:?}"),
        )?;
        let events = events_about(&env.admin, &ns, uid).await?;
        let mut reasons: Vec<(String, i32)> = events;
        reasons.sort();
        ensure(
            reasons == [("Expired".to_owned(), 1), ("Granted".to_owned(), 1)],
            format!("{uid}: one pair of events: {reasons:?}"),
        )?;
    }
    drop(a);
    drop(b);
    env.restart_operator("operator-after-leader-test", &[])?;
    Ok(())
}

async fn a_leader_asked_to_stop_hands_over_at_once(env: &'static Env) -> Result<()> {
    env.kill_operator();
    let lease_name = "jitrbac-handover";
    let (mut a, mut b, first) = start_replicas(env, lease_name, 15, ["handover-a", "handover-b"]).await?;
    let leases: Api<Lease> = Api::namespaced(env.admin.clone(), "default");
    let (leader, survivor) = if first.starts_with("handover-a_") {
        (&mut a, "handover-b_")
    } else {
        (&mut b, "handover-a_")
    };
    let asked = Timestamp::now();
    leader.terminate()?;
    wait_for(&leases, lease_name, "handed over", TIMEOUT, move |l: Option<&Lease>| {
        holder(l).is_some_and(|h| h.starts_with(survivor))
    })
    .await?;
    let took = Timestamp::now().duration_since(asked);
    // The leader is asked to stop right after taking the Lease, typically before its
    // caches are listed: it has nothing to drain, so it releases the Lease at once and the
    // standby takes it — well before the 5 s shutdown grace for reconciles in flight, or
    // the 15 s a silent leader's lease would take to expire.
    ensure(
        took < SignedDuration::from_secs(4),
        format!("handed over after {took:?}"),
    )?;
    drop(a);
    drop(b);
    env.restart_operator("operator-after-handover", &[])?;
    Ok(())
}

async fn a_deleted_leader_lease_is_recreated_and_a_replica_leads_again(env: &'static Env) -> Result<()> {
    env.kill_operator();
    let ns = env.namespace("lease-deleted").await?;
    let lease_name = format!("jitrbac-{ns}");
    let (a, b, _) = start_replicas(env, &lease_name, 6, ["recreate-a", "recreate-b"]).await?;
    let leases: Api<Lease> = Api::namespaced(env.admin.clone(), "default");
    let before = leases.get(&lease_name).await?;
    leases.delete(&lease_name, &Default::default()).await?;
    let old_uid = uid_of(&before)?;
    wait_for(
        &leases,
        &lease_name,
        "recreated and held",
        TIMEOUT,
        move |l: Option<&Lease>| {
            l.is_some_and(|l| l.metadata.uid.as_deref() != Some(old_uid.as_str())) && holder(l).is_some()
        },
    )
    .await?;
    // The new leader acts: a grant made now is bound.
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    api.create(&PostParams::default(), &grant(&ns, "after-deletion", "1h")?)
        .await?;
    wait_phase(&api, "after-deletion", GrantPhase::Active).await?;
    drop(a);
    drop(b);
    env.restart_operator("operator-after-lease-deletion", &[])?;
    Ok(())
}

async fn with_the_webhook_down_no_grant_can_be_created_but_grants_can_be_revoked(env: &'static Env) -> Result<()> {
    let ns = env.namespace("webhook-down").await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    api.create(&PostParams::default(), &grant(&ns, "before", "1h")?).await?;
    wait_phase(&api, "before", GrantPhase::Active).await?;
    env.kill_webhook();
    let refused = api
        .create(&PostParams::default(), &grant(&ns, "while-down", "1h")?)
        .await;
    // Updates fail open: an administrator can still end access while admission is down.
    let revoke = serde_json::json!({"spec": {"revoked": true}});
    let revoked = api
        .patch("before", &PatchParams::default(), &Patch::Merge(&revoke))
        .await;
    let ended = match &revoked {
        Ok(_) => wait_phase(&api, "before", GrantPhase::Revoked).await.map(|_| ()),
        Err(e) => Err(format!("revoking with the webhook down failed: {e}").into()),
    };
    env.restart_webhook().await?;
    ended?;
    match refused {
        Err(kube::Error::Api(s)) => ensure(
            s.message.contains("webhook"),
            format!("refused by the webhook call: {}", s.message),
        )?,
        other => return Err(format!("a grant was created without the webhook: {other:?}").into()),
    }
    ensure(api.get_opt("while-down").await?.is_none(), "nothing was stored")?;
    Ok(())
}

async fn without_the_mutating_webhook_the_admission_policies_refuse_missing_and_forged_requesters(
    env: &'static Env,
) -> Result<()> {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let ns = env.namespace("no-mutation").await?;
    let configs: Api<MutatingWebhookConfiguration> = Api::all(env.admin.clone());
    let saved = configs.get("jitrbac").await?;
    configs.delete("jitrbac", &Default::default()).await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let missing = grant(&ns, "unstamped", "1h")?;
    let spec = "subjects: [{kind: User, name: alice}]\nroleRef: {kind: ClusterRole, name: view}\nduration: 1h\nrequester: {username: alice}";
    let forged = grant_with(&ns, "forged", spec)?;
    // The API server's admission caches may take a moment to see the configuration gone.
    let mut outcomes = Vec::new();
    support::eventually(
        "creates reach the policies without the mutating webhook",
        TIMEOUT,
        || async {
            match api
                .create(
                    &PostParams {
                        dry_run: true,
                        ..PostParams::default()
                    },
                    &missing,
                )
                .await
            {
                Err(kube::Error::Api(s)) => Ok(s.message.contains("spec.requester is missing")),
                _ => Ok(false),
            }
        },
    )
    .await?;
    for g in [&missing, &forged] {
        outcomes.push(api.create(&PostParams::default(), g).await);
    }
    let mut restored = saved.clone();
    restored.metadata = kube::api::ObjectMeta {
        name: Some("jitrbac".into()),
        ..Default::default()
    };
    configs.create(&PostParams::default(), &restored).await?;
    support::eventually("admission is back", TIMEOUT, || async {
        Ok(api
            .create(
                &PostParams {
                    dry_run: true,
                    ..PostParams::default()
                },
                &missing,
            )
            .await
            .is_ok_and(|g| g.spec.requester.is_some()))
    })
    .await?;
    let messages: Vec<String> = outcomes
        .into_iter()
        .map(|o| match o {
            Err(kube::Error::Api(s)) => s.message,
            other => format!("ACCEPTED: {other:?}"),
        })
        .collect();
    ensure(
        messages[0].contains("spec.requester is missing"),
        format!("missing requester: {}", messages[0]),
    )?;
    ensure(
        messages[1].contains("must be the caller"),
        format!("forged requester: {}", messages[1]),
    )?;
    ensure(api.get_opt("while-down").await?.is_none(), "nothing was stored")?;
    Ok(())
}

async fn a_restart_never_activates_a_grant_waiting_for_approval(env: &'static Env) -> Result<()> {
    let ns = env.namespace("restart-pending").await?;
    let policy: jitrbac::api::AccessPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "jitrbac.io/v1alpha1", "kind": "AccessPolicy", "metadata": {"name": format!("{ns}-view")},
        "spec": {"roles": [{"kind": "ClusterRole", "name": "view"}], "namespaces": [ns], "approvals": 1}
    }))?;
    Api::<jitrbac::api::AccessPolicy>::all(env.admin.clone())
        .create(&PostParams::default(), &policy)
        .await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    for i in 0..4 {
        api.create(&PostParams::default(), &grant(&ns, &format!("waiting-{i}"), "1h")?)
            .await?;
    }
    for i in 0..4 {
        wait_phase(&api, &format!("waiting-{i}"), GrantPhase::Pending).await?;
    }
    env.restart_operator("operator-restarted-with-pending", &[])?;
    // Once the new operator has reconciled every grant in the cluster, the pending ones
    // must still be pending: the policy cache is read before any decision.
    let (_, metrics) = env.operator_urls().ok_or("no operator")?;
    let all = Api::<AccessGrant>::all(env.admin.clone())
        .list(&Default::default())
        .await?
        .items
        .len();
    eventually("the restarted operator reconciled every grant", TIMEOUT, || async {
        let body = http_get(&format!("{metrics}/metrics"))
            .await
            .map(|(_, b)| b)
            .unwrap_or_default();
        Ok(support::metric(&body, r#"jitrbac_reconcile_duration_seconds_count{kind="AccessGrant"}"#) >= all as f64)
    })
    .await?;
    for g in api.list(&Default::default()).await?.items {
        ensure(
            g.status.as_ref().and_then(|s| s.phase) == Some(GrantPhase::Pending),
            format!(
                "{} is {:?} after the restart",
                g.name_any(),
                g.status.and_then(|s| s.phase)
            ),
        )?;
    }
    let rbs: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    ensure(
        rbs.list(&Default::default()).await?.items.is_empty(),
        "nothing was bound",
    )?;
    Ok(())
}
