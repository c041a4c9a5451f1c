//! One reconcile of one grant: observe, plan, act, record, requeue.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{debug, info, warn};

use super::context::Context;
use super::error::Error;
use super::{bindings, facts, finalizer, status};
use crate::api::{AccessGrant, GrantPhase, GrantStatus, parse_timestamp};
use crate::grant::{self, binding};
use crate::metrics::{ACCESS_GRANT, KindLabels, ReasonLabels};

/// How long after a grant's expiry its reconcile runs: the sweeper's timer deletes the
/// binding at the instant itself, with one API call, however many grants expire at once.
const EXPIRY_RECORD_DELAY: Duration = Duration::from_millis(250);
/// How long after an expiry its record may wait while the expiry timer is busy deleting.
const MAX_RECORD_DEFERRAL: SignedDuration = SignedDuration::from_secs(10);
/// How many ignored reviews a grant's status remembers (so each is reported once); more
/// are not reported.
const IGNORED_REVIEWS_LIMIT: usize = 32;
/// How soon to look again after a write lost a race with a newer version of the grant.
const STALE_RETRY: Duration = Duration::from_millis(100);
/// Longest wait before retrying a failed binding deletion: access that should be gone is
/// still granted, so retries stay frequent whatever the backoff says.
const REVOCATION_RETRY_MAX: Duration = Duration::from_secs(1);
/// How long to leave a grant alone whose namespace is being deleted (its deletion, which
/// triggers a reconcile, is imminent).
const TERMINATING_NAMESPACE_RETRY: Duration = Duration::from_secs(60);

/// Reconciles one grant if this replica is the acting leader; otherwise does nothing (the
/// leader handles it, and every grant is reconciled again when this replica becomes the
/// leader). A reconcile in progress is abandoned the moment leadership is lost, so a
/// replica that lost the lease never writes after another may have started.
pub async fn reconcile_when_acting(grant: Arc<AccessGrant>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.is_acting() {
        return Ok(Action::await_change());
    }
    let started = std::time::Instant::now();
    let result = tokio::select! {
        biased;
        () = ctx.stopped_acting() => Ok(Action::await_change()),
        result = reconcile(grant, ctx.clone()) => result,
    };
    ctx.metrics
        .reconcile_duration
        .get_or_create(&KindLabels { kind: ACCESS_GRANT })
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Reconciles one grant.
///
/// Reads the grant's bindings from the cache, asks the planner what to do at this instant,
/// deletes and creates bindings, writes the status, announces each transition (Event +
/// audit line), manages the finalizer, and sets the grant's next deadline (activation,
/// expiry notice or expiry) in [`Context::wakeups`], so expiry needs no polling. Returns
/// an [`Error`] for failures worth a retry with backoff.
// Field names are prefixed: the JSON log format uses `name` for the span's own name.
#[tracing::instrument(skip_all, fields(
    grant.namespace = grant.namespace().unwrap_or_default(),
    grant.name = grant.name_any(),
    grant.uid = grant.uid().unwrap_or_default(),
))]
pub async fn reconcile(grant: Arc<AccessGrant>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Decide only with a complete picture: the managed bindings, the policies and the
    // reviews (an empty policy cache would make every grant look self-service).
    if !ctx.caches_synced().await {
        return Ok(Action::requeue(STALE_RETRY));
    }
    let namespace = grant.namespace().unwrap_or_default();
    let api: Api<AccessGrant> = Api::namespaced(ctx.client.clone(), &namespace);
    let deleting = grant.metadata.deletion_timestamp.is_some();
    let terminal = grant
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| p.is_terminal());
    if deleting && !finalizer::present(&grant) {
        return Ok(Action::await_change());
    }
    // A version this process has already written on top of is stale: the newer one is on
    // its way through the watch. Deciding on it again would repeat transitions.
    if ctx.superseded(&grant) {
        return Ok(Action::requeue(STALE_RETRY));
    }
    // A grant that may get a binding carries the finalizer before the binding exists.
    let grant = if !deleting && !terminal && !finalizer::present(&grant) {
        match finalizer::add(&api, &grant).await {
            Err(Error::StaleStatus) => return Ok(Action::requeue(STALE_RETRY)),
            other => {
                // Only a write that happened supersedes the version it was made on: after
                // a failed one, this version is still the latest and must be retried.
                let added = other?;
                ctx.supersede(&grant);
                Arc::new(added)
            }
        }
    } else {
        grant
    };

    let status = grant.status.clone().unwrap_or_default();
    let deterministic = binding::binding_name(&grant.name_any(), &grant.uid().unwrap_or_default(), None);
    let names = std::iter::once(deterministic.as_str()).chain(status.bindings.iter().map(|b| b.name.as_str()));
    let observed = ctx.cached_bindings(&namespace, names);

    if defer_record(&ctx, &grant, &status, deleting, Timestamp::now()) {
        return Ok(Action::requeue(EXPIRY_RECORD_DELAY));
    }
    let facts = if terminal {
        None
    } else {
        Some(facts::gather(&ctx, &grant).await?)
    };
    let facts = facts.unwrap_or_else(|| grant::Facts::self_service(ctx.defaults));
    let plan = grant::plan(&grant, &observed, Timestamp::now(), &ctx.limits, &facts);
    let expiry = plan
        .window
        .map(|w| w.expires_at)
        .or_else(|| status.expires_at.as_deref().and_then(|t| parse_timestamp(t).ok()));
    for target in &plan.delete {
        // The expiry timer deleted it already (the API server said so): asking again would
        // only cost the API server a 404 per expiry.
        if ctx.revocations.deleted_at(&target.uid).is_some() {
            continue;
        }
        let deleted = bindings::delete(&ctx.client, target).await?;
        // A grant cut short into the past was not late: it ends as soon as the cut is seen.
        if deleted
            && plan.phase == GrantPhase::Expired
            && plan.shortened_from.is_none()
            && let Some(expiry) = expiry
        {
            ctx.metrics
                .expired(Timestamp::now().duration_since(expiry).as_secs_f64());
        }
    }
    let outcome = bindings::carry_out(&ctx, &grant, &plan.binding).await?;
    // An expiry carried out by the sweeper's timer happened when it deleted the binding.
    let done = match facts.revoked_at {
        Some(at) if plan.phase == GrantPhase::Expired => at,
        _ => Timestamp::now(),
    };
    let mut settled = grant::settle(&grant, &plan, &outcome, done);
    // Reviews that do not count are reported once each (recorded in status). Beyond the
    // limit they are no longer reported: forgetting old ones to make room would report
    // them again, for ever.
    let room = IGNORED_REVIEWS_LIMIT.saturating_sub(status.ignored_reviews.len());
    let ignored: Vec<_> = facts
        .reviews
        .ignored
        .iter()
        .filter(|i| !status.ignored_reviews.contains(&i.review))
        .take(room)
        .collect();
    settled
        .status
        .ignored_reviews
        .extend(ignored.iter().map(|i| i.review.clone()));
    let denied_by = facts.reviews.denial.as_ref().map(|(reviewer, _, _)| reviewer.as_str());

    // The transition is recorded (audit line, Event) before the status is committed: a
    // crash in between repeats the record on the next reconcile (same audit id, so log
    // pipelines drop the duplicate) instead of losing it.
    for t in &settled.transitions {
        info!(action = t.action, reason = %t.reason, phase = %plan.phase, "{}", t.message);
        let by = denied_by.filter(|_| t.reason == "DeniedByReviewer");
        ctx.audit(&grant, &settled.status, t, done, by);
        ctx.publish_transition(&grant, t).await;
    }
    for i in ignored {
        let by = if i.reviewer.is_empty() { "nobody" } else { &i.reviewer };
        let message = format!("GrantReview {} by {by} does not count: {}", i.review, i.reason);
        warn!(review = %i.review, reviewer = by, "{}", i.reason);
        let t = grant::Transition {
            action: "ReviewIgnored",
            warning: true,
            reason: "ReviewIgnored".to_owned(),
            message: message.clone(),
        };
        ctx.audit(&grant, &settled.status, &t, done, None);
        ctx.publish_on_review(
            &namespace,
            &i.review,
            &format!("{message} (grant {})", grant.name_any()),
        )
        .await;
    }
    let current = if grant.status.as_ref() != Some(&settled.status) {
        match status::write(&api, &grant, &settled.status).await {
            Err(Error::StaleStatus) => return Ok(Action::requeue(STALE_RETRY)),
            other => {
                let written = other?;
                ctx.supersede(&grant);
                Arc::new(written)
            }
        }
    } else {
        grant.clone()
    };
    // Counted once the status is committed: a write that lost a race is tried again.
    count(&ctx, &status, &settled);
    if plan.phase.is_terminal() && finalizer::present(&current) {
        // Every binding is gone and the transition is on record: release the grant.
        match finalizer::remove(&api, &current).await {
            Err(Error::StaleStatus) => return Ok(Action::requeue(STALE_RETRY)),
            // The version still carrying the finalizer is on its way through the watch:
            // without this, its reconcile would try to remove the finalizer again and
            // lose the race (409) for every expiry.
            other => {
                other?;
                ctx.supersede(&current);
            }
        }
    }
    if let Some(blocker) = &settled.blocker {
        // The first time a grant is blocked for a reason, it goes into the audit trail too
        // (e.g. a request for a role the operator may not bind).
        let was = grant
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        if blocker.reason != bindings::NAMESPACE_TERMINATING && was.is_none_or(|c| c.reason != blocker.reason) {
            let blocked = grant::Transition {
                action: "Blocked",
                warning: true,
                reason: blocker.reason.to_owned(),
                message: blocker.message.clone(),
            };
            ctx.audit(&grant, &settled.status, &blocked, done, None);
        }
        if blocker.reason == bindings::NAMESPACE_TERMINATING {
            debug!("namespace is being deleted; waiting for the grant's deletion");
            return Ok(Action::requeue(TERMINATING_NAMESPACE_RETRY));
        }
        warn!(reason = blocker.reason, "{}", blocker.message);
        ctx.publish(&grant, EventType::Warning, blocker.reason, &blocker.message)
            .await;
        // Never wait past the grant's next deadline: an expiry must not be missed because
        // the binding could not be repaired.
        let retry = ctx.next_backoff(&grant, blocker.retry_cap());
        return Ok(Action::requeue(plan.wake_at.map_or(retry, |at| retry.min(until(at)))));
    }
    ctx.reset_backoff(&grant);
    let wake_at = match plan.wake_at {
        // At the expiry the sweeper's timer deletes the binding; the grant is looked at a
        // moment later to record it (or to delete it itself if the timer could not).
        Some(at) if plan.phase == GrantPhase::Active && plan.window.is_some_and(|w| w.expires_at == at) => {
            Some(at.checked_add(EXPIRY_RECORD_DELAY).unwrap_or(at))
        }
        other => other,
    };
    ctx.wakeups.set(&grant, wake_at);
    Ok(Action::await_change())
}

/// Whether to put off recording an expiry: access already ended (the expiry timer deleted
/// the grant's binding at its recorded expiry), the timer is still deleting others, and the
/// expiry was less than [`MAX_RECORD_DEFERRAL`] ago. In a storm of expiries the API server
/// then serves the deletions first; the record keeps the real end time. Decided from the
/// cached grant alone, so a deferred reconcile costs no API call.
fn defer_record(ctx: &Context, grant: &AccessGrant, status: &GrantStatus, deleting: bool, now: Timestamp) -> bool {
    let active = status.phase == Some(GrantPhase::Active) && !grant.spec.revoked && !deleting;
    let expired_at = status.expires_at.as_deref().and_then(|t| parse_timestamp(t).ok());
    active
        && expired_at.is_some_and(|at| at <= now && now < at + MAX_RECORD_DEFERRAL)
        && !status.bindings.is_empty()
        && status
            .bindings
            .iter()
            .all(|b| ctx.revocations.deleted_at(&b.uid).is_some())
        && ctx.revocations.busy()
}

/// Counts a phase change and drift repairs in the metrics.
fn count(ctx: &Context, before: &GrantStatus, settled: &grant::Settled) {
    if let Some(phase) = settled.status.phase
        && before.phase != Some(phase)
    {
        let reason = settled
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == grant::settle::READY)
            .map_or(phase.as_str(), |c| c.reason.as_str());
        ctx.metrics.transition(phase, reason);
    }
    let repairs = settled
        .transitions
        .iter()
        .filter(|t| t.action == "DriftRepaired")
        .count();
    if repairs > 0 {
        ctx.metrics
            .drift_repairs
            .get_or_create(&KindLabels { kind: ACCESS_GRANT })
            .inc_by(u64::try_from(repairs).unwrap_or(u64::MAX));
    }
}

/// Decides the retry of a failed reconcile: logs the error, publishes a Warning event on
/// the grant (naming the binding when a revocation failed), and waits with per-grant
/// exponential backoff — at most one second when access that should be gone is still
/// granted. Other grants are unaffected.
pub fn error_policy(grant: Arc<AccessGrant>, err: &Error, ctx: Arc<Context>) -> Action {
    let cap = match err {
        Error::DeleteBinding { .. } => Some(REVOCATION_RETRY_MAX),
        _ => None,
    };
    let delay = ctx.next_backoff(&grant, cap);
    // A write that lost a race with a newer version is routine, not an error.
    if !matches!(err, Error::StaleStatus) {
        ctx.metrics
            .reconcile_errors
            .get_or_create(&ReasonLabels {
                kind: ACCESS_GRANT,
                reason: err.reason().to_owned(),
            })
            .inc();
    }
    warn!(
        namespace = grant.namespace().unwrap_or_default(),
        name = grant.name_any(),
        reason = err.reason(),
        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        "reconcile failed: {err}"
    );
    if !matches!(err, Error::StaleStatus) {
        let (reason, note) = (err.reason(), err.to_string());
        tokio::spawn(async move { ctx.publish(&grant, EventType::Warning, reason, &note).await });
    }
    Action::requeue(delay)
}

/// Time from now until `at`, zero if it has passed. Millisecond precision is enough: the
/// planner re-checks the clock when woken and sleeps again if woken a hair early.
fn until(at: Timestamp) -> Duration {
    let left = at.duration_since(Timestamp::now());
    Duration::try_from(left).unwrap_or(Duration::ZERO)
}
