//! The admission layer of a test environment, taken from the Helm chart itself: webhook
//! configurations (reached by URL on 127.0.0.1), the ValidatingAdmissionPolicies and the
//! eligibility ClusterRoles, plus a `jitrbac run --webhook-only` process serving the
//! webhooks for the whole test binary (so operators can be stopped without stopping
//! admission).

use std::path::Path;
use std::process::Command;

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};

use super::Result;

/// The kinds of the chart's objects that make up the admission layer.
const KINDS: [&str; 4] = [
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// Renders the chart with `helm template` (release `jitrbac`, namespace `default`), the
/// webhooks reached at `webhook_url`, and `status_writers` allowed to write grant status;
/// returns its admission objects and eligibility ClusterRoles.
pub fn render(helm: &Path, webhook_url: &str, status_writers: &[&str]) -> Result<Vec<serde_json::Value>> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let writers = format!("admissionPolicies.extraStatusWriters={{{}}}", status_writers.join(","));
    let out = Command::new(helm)
        .args(["template", "jitrbac", "charts/jitrbac", "--namespace", "default"])
        .args(["--set", &format!("webhook.url={webhook_url}"), "--set", &writers])
        .current_dir(repo)
        .output()?;
    if !out.status.success() {
        return Err(format!("helm template failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)?;
    Ok(docs
        .into_iter()
        .filter(|d| {
            let kind = d["kind"].as_str().unwrap_or_default();
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            KINDS.contains(&kind)
                || (kind == "ClusterRole"
                    && (name.starts_with("jitrbac-requester-") || name.starts_with("jitrbac-approver-")))
        })
        .collect())
}

/// Applies `objects` (cluster-scoped, or namespaced with `metadata.namespace`) with
/// server-side apply.
pub async fn apply(client: &Client, objects: &[serde_json::Value]) -> Result<()> {
    for object in objects {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let kind = object["kind"].as_str().unwrap_or_default();
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        api.patch(
            name,
            &PatchParams::apply("jitrbac-tests").force(),
            &Patch::Apply(object),
        )
        .await?;
    }
    Ok(())
}
