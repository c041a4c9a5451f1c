//! The operator checks its own permissions with SelfSubjectAccessReview.
//!
//! Kubernetes lets a client create a RoleBinding to a role in two cases: it has the `bind`
//! verb on that role, or it already holds every permission the role grants (the RBAC
//! escalation check). The second case would let the operator bind any role made of its
//! own permissions (managing RoleBindings, for one). So before binding, the operator asks
//! whether it has `bind` on the role itself, and binds only roles it was explicitly allowed
//! to bind (the chart's `grantableRoles`). At start-up it also warns loudly if it holds
//! permissions that would make it an escalation path.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::Client;
use kube::api::{Api, PostParams};
use tracing::{error, info, warn};

use crate::api::{RBAC_API_GROUP, RoleKind};

/// How long an answer about `bind` is reused before asking the API server again.
const CACHE_TTL: Duration = Duration::from_secs(30);

/// A role in a namespace, as asked about.
type RoleKey = (RoleKind, String, String);
/// Cached answers: allowed, and when that was asked.
type Answers = HashMap<RoleKey, (bool, Instant)>;

/// Answers "may the operator bind this role here?", caching answers briefly.
pub struct BindPermissions {
    client: Client,
    cache: Mutex<Answers>,
}

impl BindPermissions {
    /// Creates the checker.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the operator has the `bind` verb on the role `kind`/`name` in `namespace`
    /// (for a ClusterRole bound in a namespace, Kubernetes checks `bind` on the ClusterRole
    /// cluster-wide or in that namespace).
    ///
    /// Returns the API error if the review cannot be created.
    pub async fn may_bind(&self, kind: RoleKind, name: &str, namespace: &str) -> Result<bool, kube::Error> {
        let key = (kind, name.to_owned(), namespace.to_owned());
        if let Some((allowed, at)) = self.lock().get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(*allowed);
        }
        let resource = match kind {
            RoleKind::Role => "roles",
            _ => "clusterroles",
        };
        let allowed = review(&self.client, "bind", resource, Some(name), Some(namespace)).await?;
        self.lock().insert(key, (allowed, Instant::now()));
        Ok(allowed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Logs what the operator may do, and an error-level warning for each permission that
/// makes it a path to escalation: `escalate` on roles, `bind` on `cluster-admin`,
/// `impersonate`, or any verb on everything (`*`). Failures to ask are logged.
pub async fn audit_own_permissions(client: &Client) {
    let dangerous: [(&str, &str, &str, Option<&str>); 5] = [
        ("escalate", RBAC_API_GROUP, "clusterroles", None),
        ("bind", RBAC_API_GROUP, "clusterroles", Some("cluster-admin")),
        ("impersonate", "", "users", None),
        ("impersonate", "", "groups", None),
        ("*", "*", "*", None),
    ];
    // Asked together: this runs before anything else at start-up.
    let answers = futures::future::join_all(
        dangerous.map(|(verb, group, resource, name)| review_in_group(client, verb, group, resource, name, None)),
    )
    .await;
    let mut found = Vec::new();
    let mut unchecked = 0;
    for ((verb, _, resource, name), answer) in dangerous.into_iter().zip(answers) {
        match answer {
            Ok(true) => found.push(format!(
                "{verb} {resource}{}",
                name.map(|n| format!("/{n}")).unwrap_or_default()
            )),
            Ok(false) => {}
            Err(err) => {
                unchecked += 1;
                warn!(error = %err, verb, resource, "cannot check the operator's own permissions");
            }
        }
    }
    if found.is_empty() && unchecked > 0 {
        warn!("own permissions not fully checked; each binding is still checked before it is created");
        return;
    }
    if found.is_empty() {
        info!("own permissions checked: no escalate, no bind on cluster-admin, no impersonate");
    } else {
        error!(
            permissions = ?found,
            "THE OPERATOR HOLDS PERMISSIONS THAT MAKE IT AN ESCALATION PATH; it still binds only roles it has the bind verb on, \
             but run it with the least-privilege RBAC of the Helm chart (grantableRoles) in production"
        );
    }
}

async fn review(
    client: &Client,
    verb: &str,
    resource: &str,
    name: Option<&str>,
    namespace: Option<&str>,
) -> Result<bool, kube::Error> {
    review_in_group(client, verb, RBAC_API_GROUP, resource, name, namespace).await
}

async fn review_in_group(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    name: Option<&str>,
    namespace: Option<&str>,
) -> Result<bool, kube::Error> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                name: name.map(str::to_owned),
                namespace: namespace.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Whether `identity` may use the custom `verb` (`request` or `approve`) on the virtual
/// resource `roles.jitrbac.io/<name>` or `clusterroles.jitrbac.io/<name>` in `namespace`:
/// the eligibility model, plain RBAC asked through a SubjectAccessReview with the full
/// identity (user, uid, groups, extra) as stamped at admission.
///
/// Returns the allowed flag and, when denied, the API server's reason (may be empty);
/// fails with the API error if the review cannot be created.
pub async fn identity_may(
    client: &Client,
    identity: &crate::api::Identity,
    verb: &str,
    kind: RoleKind,
    name: &str,
    namespace: &str,
) -> Result<(bool, String), kube::Error> {
    use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewSpec};
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(identity.username.clone()),
            uid: identity.uid.clone(),
            groups: Some(identity.groups.clone()),
            extra: Some(identity.extra.clone().into_iter().collect()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(crate::api::GROUP.to_owned()),
                resource: Some(virtual_resource(kind).to_owned()),
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    let status = answer.status.unwrap_or_default();
    Ok((status.allowed, status.reason.unwrap_or_default()))
}

/// The virtual resource of the eligibility model for a role kind: `roles` or
/// `clusterroles` (in the `jitrbac.io` group).
pub fn virtual_resource(kind: RoleKind) -> &'static str {
    match kind {
        RoleKind::Role => "roles",
        _ => "clusterroles",
    }
}
