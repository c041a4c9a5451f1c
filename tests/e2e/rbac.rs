//! RBAC is really in force: access exists only while the grant is active.

use jitrbac::api::{AccessGrant, GrantPhase};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};

use crate::lifecycle::grant;
use crate::support::{Env, Result, TIMEOUT, TestFn, eventually, grant_yaml, test_list, wait_phase};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    test_list!("rbac": alice_can_list_secrets_only_while_her_grant_is_active, a_service_account_with_a_real_token_gets_access_for_the_grant_window)
}

/// Whether `client` may list `K` in `ns`, asked by really listing (403 = no).
async fn can_list<K>(client: &Client, ns: &str) -> Result<bool>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    match Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default().limit(1))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn alice_can_list_secrets_only_while_her_grant_is_active(env: &'static Env) -> Result<()> {
    let ns = env.namespace("rbac").await?;
    let alice = env.alice().await?;
    eventually("alice cannot list secrets before the grant", TIMEOUT, || async {
        Ok(!can_list::<Secret>(&alice, &ns).await?)
    })
    .await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    api.create(
        &PostParams::default(),
        &grant(&ns, "alice-edit", "alice", "edit", "5s")?,
    )
    .await?;
    wait_phase(&api, "alice-edit", GrantPhase::Active).await?;
    eventually("alice can list secrets during the grant", TIMEOUT, || async {
        can_list::<Secret>(&alice, &ns).await
    })
    .await?;
    wait_phase(&api, "alice-edit", GrantPhase::Expired).await?;
    eventually("alice cannot list secrets after the grant", TIMEOUT, || async {
        Ok(!can_list::<Secret>(&alice, &ns).await?)
    })
    .await?;
    Ok(())
}

async fn a_service_account_with_a_real_token_gets_access_for_the_grant_window(env: &'static Env) -> Result<()> {
    let ns = env.namespace("sa").await?;
    let deployer = env.service_account(&ns, "deployer").await?;
    eventually("deployer cannot list pods before the grant", TIMEOUT, || async {
        Ok(!can_list::<Pod>(&deployer, &ns).await?)
    })
    .await?;
    let api: Api<AccessGrant> = Api::namespaced(env.admin.clone(), &ns);
    let g = grant_yaml(&format!(
        "apiVersion: jitrbac.io/v1alpha1\nkind: AccessGrant\nmetadata:\n  name: deployer-view\n  namespace: {ns}\nspec:\n  subjects:\n  - kind: ServiceAccount\n    name: deployer\n    namespace: {ns}\n  roleRef:\n    kind: ClusterRole\n    name: view\n  duration: 5s\n"
    ))?;
    api.create(&PostParams::default(), &g).await?;
    wait_phase(&api, "deployer-view", GrantPhase::Active).await?;
    eventually("deployer can list pods during the grant", TIMEOUT, || async {
        can_list::<Pod>(&deployer, &ns).await
    })
    .await?;
    wait_phase(&api, "deployer-view", GrantPhase::Expired).await?;
    eventually("deployer cannot list pods after the grant", TIMEOUT, || async {
        Ok(!can_list::<Pod>(&deployer, &ns).await?)
    })
    .await?;
    Ok(())
}
