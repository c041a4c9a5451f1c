//! People for the eligibility and approval tests: users who may request or approve roles
//! in a namespace, through plain RBAC on the jitrbac.io virtual resources.

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::support::{Env, Result};

/// What a person may do about a ClusterRole in a namespace.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum May {
    /// Create grants for the role (`request`).
    Request,
    /// Review grants of the role (`approve`).
    Approve,
    /// Both.
    RequestAndApprove,
    /// Neither, but may create grants and reviews (to prove RBAC on the role decides).
    Nothing,
}

/// Gives `user` the permissions `may` for ClusterRole `role` in `ns` (a Role and a
/// RoleBinding named after them), and returns a client acting as `user` in group `dev`.
pub async fn person(env: &Env, ns: &str, user: &str, role: &str, may: May) -> Result<Client> {
    let mut rules = vec![PolicyRule {
        api_groups: Some(vec!["jitrbac.io".into()]),
        resources: Some(vec!["accessgrants".into(), "grantreviews".into()]),
        verbs: vec!["create".into(), "get".into(), "list".into(), "watch".into()],
        ..PolicyRule::default()
    }];
    let verbs: Vec<String> = match may {
        May::Request => vec!["request".into()],
        May::Approve => vec!["approve".into()],
        May::RequestAndApprove => vec!["request".into(), "approve".into()],
        May::Nothing => vec![],
    };
    if !verbs.is_empty() {
        rules.push(PolicyRule {
            api_groups: Some(vec!["jitrbac.io".into()]),
            resources: Some(vec!["clusterroles".into()]),
            resource_names: Some(vec![role.into()]),
            verbs,
            ..PolicyRule::default()
        });
    }
    let name = format!("{user}-{role}");
    let meta = ObjectMeta {
        name: Some(name.clone()),
        ..ObjectMeta::default()
    };
    Api::<Role>::namespaced(env.admin.clone(), ns)
        .create(
            &PostParams::default(),
            &Role {
                metadata: meta.clone(),
                rules: Some(rules),
            },
        )
        .await?;
    let binding = RoleBinding {
        metadata: meta,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: user.into(),
            namespace: None,
        }]),
    };
    Api::<RoleBinding>::namespaced(env.admin.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await?;
    env.impersonate(user, &["dev"])
}

/// Removes what [`person`] gave `user` for `role` in `ns`.
pub async fn forget(env: &Env, ns: &str, user: &str, role: &str) -> Result<()> {
    let name = format!("{user}-{role}");
    Api::<RoleBinding>::namespaced(env.admin.clone(), ns)
        .delete(&name, &Default::default())
        .await?;
    Ok(())
}
