//! Gathering what the planner needs to know from the API server about a grant: the
//! policies that apply, whether the requester may request the role, and its reviews.

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::Api;

use super::context::Context;
use super::error::Error;
use super::permissions::{identity_may, virtual_resource};
use crate::api::{AccessGrant, GrantReview};
use crate::grant::review::{self, Checked, Tally};
use crate::grant::{Eligibility, Facts, policy};

/// Gathers the [`Facts`] for `grant`. Asks the API server only what the grant's state
/// needs: the requester's eligibility before the first activation, the reviewers'
/// permissions while approvals are awaited (or a break-glass grant awaits its review).
///
/// Fails with [`Error::Authorize`] when a SubjectAccessReview cannot be created, and with
/// [`Error::ReadNamespace`] when a namespace's labels are needed but cannot be read.
pub async fn gather(ctx: &Context, grant: &AccessGrant) -> Result<Facts, Error> {
    let status = grant.status.clone().unwrap_or_default();
    let namespace = grant.namespace().unwrap_or_default();
    let role = &grant.spec.role_ref;
    let policies: Vec<_> = ctx.policies.state().iter().map(|p| (**p).clone()).collect();
    let labels = if policy::needs_namespace_labels(&policies, role) {
        Api::<Namespace>::all(ctx.client.clone())
            .get_opt(&namespace)
            .await
            .map_err(Error::ReadNamespace)?
            .map(|ns| ns.labels().clone())
    } else {
        None
    };
    let policy = policy::effective(&policies, role, &namespace, labels.as_ref(), ctx.defaults);

    let activated = !status.bindings.is_empty();
    let eligibility = match (&grant.spec.requester, activated) {
        (Some(requester), false) => {
            let (allowed, reason) = identity_may(&ctx.client, requester, "request", role.kind, &role.name, &namespace)
                .await
                .map_err(Error::Authorize)?;
            if allowed {
                Eligibility::Eligible
            } else {
                Eligibility::NotEligible(missing_permission(
                    "request", role.kind, &role.name, &namespace, &reason,
                ))
            }
        }
        _ => Eligibility::Unchecked,
    };

    let awaiting_review = if activated {
        grant.spec.break_glass && status.approvals.is_empty()
    } else {
        policy.approvals > 0 || grant.spec.break_glass
    };
    let reviews = if awaiting_review {
        count_reviews(ctx, grant, &namespace).await?
    } else {
        Tally::default()
    };
    Ok(Facts {
        policy,
        eligibility,
        reviews,
        revoked_at: status.bindings.iter().find_map(|b| ctx.revocations.deleted_at(&b.uid)),
    })
}

/// The reviews of `grant`, screened and checked: does each reviewer have `approve`?
async fn count_reviews(ctx: &Context, grant: &AccessGrant, namespace: &str) -> Result<Tally, Error> {
    let name = grant.name_any();
    let reviews: Vec<GrantReview> = ctx
        .reviews
        .state()
        .iter()
        .filter(|r| r.namespace().as_deref() == Some(namespace) && r.spec.grant_ref.name == name)
        .map(|r| (**r).clone())
        .collect();
    let (candidates, ignored) = review::screen(grant, &reviews);
    let role = &grant.spec.role_ref;
    let mut allowed = Vec::new();
    for reviewer in review::reviewers(&candidates) {
        let (may, _) = identity_may(&ctx.client, &reviewer, "approve", role.kind, &role.name, namespace)
            .await
            .map_err(Error::Authorize)?;
        if may {
            allowed.push(reviewer);
        }
    }
    let checked = candidates
        .into_iter()
        .map(|r| Checked {
            may_approve: r.spec.reviewer.as_ref().is_some_and(|id| allowed.contains(id)),
            review: r.clone(),
        })
        .collect();
    Ok(review::tally(checked, ignored))
}

/// "needs the request verb on clusterroles.jitrbac.io/edit in namespace team-a".
fn missing_permission(verb: &str, kind: crate::api::RoleKind, name: &str, namespace: &str, reason: &str) -> String {
    let base = format!(
        "needs the {verb} verb on {}.jitrbac.io/{name} in namespace {namespace} \
         (check with: kubectl auth can-i {verb} {}.jitrbac.io/{name} -n {namespace} --as <user>)",
        virtual_resource(kind),
        virtual_resource(kind)
    );
    if reason.is_empty() {
        base
    } else {
        format!("{base}; {reason}")
    }
}
