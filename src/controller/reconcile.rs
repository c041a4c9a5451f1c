//! One reconcile of one grant: observe, plan, act, record, requeue.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::context::Context;
use super::error::Error;
use super::{bindings, status};
use crate::api::AccessGrant;
use crate::grant::{self, binding};

/// How soon to look again after the status write lost a race with a newer version.
const STALE_RETRY: Duration = Duration::from_millis(100);

/// Reconciles one grant.
///
/// Reads the grant's bindings from the cache, asks the planner what to do at this instant,
/// deletes and creates bindings, writes the status, announces each transition (Event +
/// audit line) and asks to be woken at the next deadline (activation or expiry), so expiry
/// needs no polling. Returns an [`Error`] for failures worth a retry with backoff.
#[tracing::instrument(skip_all, fields(namespace = grant.namespace().unwrap_or_default(), name = grant.name_any(), uid = grant.uid().unwrap_or_default()))]
pub async fn reconcile(grant: Arc<AccessGrant>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Decide only with a complete picture of the managed bindings (after the first list).
    if ctx.bindings.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(STALE_RETRY));
    }
    let namespace = grant.namespace().unwrap_or_default();
    let status = grant.status.clone().unwrap_or_default();
    let deterministic = binding::binding_name(&grant.name_any(), &grant.uid().unwrap_or_default(), None);
    let names = std::iter::once(deterministic.as_str()).chain(status.bindings.iter().map(|b| b.name.as_str()));
    let observed = ctx.cached_bindings(&namespace, names);

    let plan = grant::plan(&grant, &observed, Timestamp::now(), &ctx.limits);
    for target in &plan.delete {
        bindings::delete(&ctx.client, target).await?;
    }
    let outcome = bindings::carry_out(&ctx.client, &grant, &plan.binding).await?;
    let done = Timestamp::now();
    let settled = grant::settle(&grant, &plan, &outcome, done);

    if grant.status.as_ref() != Some(&settled.status) {
        let api: Api<AccessGrant> = Api::namespaced(ctx.client.clone(), &namespace);
        match status::write(&api, &grant, &settled.status).await {
            Err(Error::StaleStatus) => return Ok(Action::requeue(STALE_RETRY)),
            other => other?,
        }
    }
    for t in &settled.transitions {
        info!(action = t.action, reason = %t.reason, phase = %plan.phase, "{}", t.message);
        ctx.announce(&grant, &settled.status, t, done).await;
    }
    if let Some(blocker) = &settled.blocker {
        warn!(reason = blocker.reason, "{}", blocker.message);
        ctx.publish(&grant, EventType::Warning, blocker.reason, &blocker.message)
            .await;
        return Ok(Action::requeue(ctx.next_backoff(&grant)));
    }
    ctx.reset_backoff(&grant);
    Ok(match plan.wake_at {
        Some(at) => Action::requeue(until(at)),
        None => Action::await_change(),
    })
}

/// Decides the retry of a failed reconcile: logs the error, publishes a Warning event on
/// the grant, and waits with per-grant exponential backoff. Other grants are unaffected.
pub fn error_policy(grant: Arc<AccessGrant>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.next_backoff(&grant);
    warn!(
        namespace = grant.namespace().unwrap_or_default(),
        name = grant.name_any(),
        reason = err.reason(),
        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        "reconcile failed: {err}"
    );
    let (ctx2, grant2, reason, note) = (ctx.clone(), grant.clone(), err.reason(), err.to_string());
    if !matches!(err, Error::StaleStatus) {
        tokio::spawn(async move { ctx2.publish(&grant2, EventType::Warning, reason, &note).await });
    }
    Action::requeue(delay)
}

/// Time from now until `at`, zero if it has passed. Millisecond precision is enough: the
/// planner re-checks the clock when woken and sleeps again if woken a hair early.
fn until(at: Timestamp) -> Duration {
    let left = at.duration_since(Timestamp::now());
    Duration::try_from(left).unwrap_or(Duration::ZERO)
}
