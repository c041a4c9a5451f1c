//! TLS for the admission webhooks, managed by the operator itself.
//!
//! A private CA (valid 10 years) signs the serving certificate (valid 1 year, renewed when
//! less than 30 days remain). Both live in one Secret of type `kubernetes.io/tls` with the
//! extra keys `ca.crt` and `ca.key`, so every replica serves the same certificate and the
//! CA bundle in the webhook configurations stays valid across renewals. Each replica
//! creates the Secret if it is missing (the first writer wins; the others read its
//! result), patches the CA into the webhook configurations, and checks every few minutes
//! for a renewal.
//!
//! With `--webhook-cert-dir` (cert-manager) none of this runs: the certificate is read
//! from the mounted files and cert-manager injects the CA.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

/// Annotation on the Secret with the serving certificate's expiry (RFC 3339, UTC).
const NOT_AFTER_ANNOTATION: &str = "jitrbac.io/not-after";
/// Renew the serving certificate when less than this remains.
const RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(30 * 24);
const CA_VALIDITY: SignedDuration = SignedDuration::from_hours(10 * 365 * 24);
const LEAF_VALIDITY: SignedDuration = SignedDuration::from_hours(365 * 24);

/// Errors while managing webhook certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Generating a key or certificate failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The Secret exists but lacks a key or holds something unreadable.
    #[error("Secret {0} does not hold a usable CA and certificate (delete it to have it regenerated)")]
    Unusable(String),
    /// Reading or writing the Secret or a webhook configuration failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done.
        action: String,
        /// The API error.
        source: kube::Error,
    },
    /// A time computation overflowed (a clock far in the future).
    #[error("certificate validity out of range: {0}")]
    Time(#[from] jiff::Error),
}

/// PEM-encoded certificates and keys for the webhook server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The CA certificate, for the webhook configurations' `caBundle`.
    pub ca_cert: String,
    /// The CA key (kept in the Secret to sign renewals).
    pub ca_key: String,
    /// The serving certificate.
    pub cert: String,
    /// The serving key.
    pub key: String,
    /// When the serving certificate expires.
    pub not_after: Timestamp,
}

/// Creates a CA and a serving certificate for `hosts` (DNS names or IP addresses), valid
/// from `now`.
pub fn issue(hosts: &[String], now: Timestamp) -> Result<Bundle, CertError> {
    let ca_key = KeyPair::generate()?;
    let mut ca = ca_params()?;
    ca.not_before = to_offset(now - SignedDuration::from_mins(5))?;
    ca.not_after = to_offset(now.checked_add(CA_VALIDITY)?)?;
    let ca_cert = ca.self_signed(&ca_key)?.pem();
    let ca_key_pem = ca_key.serialize_pem();
    leaf(&Issuer::new(ca, ca_key), ca_cert, ca_key_pem, hosts, now)
}

/// Issues a new serving certificate for `hosts` from the CA in `bundle`, keeping the CA.
pub fn renew(bundle: &Bundle, hosts: &[String], now: Timestamp) -> Result<Bundle, CertError> {
    // The issuer is rebuilt from the CA's fixed subject and its key: the new certificate
    // names the same issuer and authority key id, so it chains to the stored CA.
    let ca_key = KeyPair::from_pem(&bundle.ca_key)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    leaf(&issuer, bundle.ca_cert.clone(), bundle.ca_key.clone(), hosts, now)
}

/// The CA's subject and usages (everything but its validity), the same at issue and renewal.
fn ca_params() -> Result<CertificateParams, CertError> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "jitrbac webhook CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(ca)
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    ca_cert: String,
    ca_key: String,
    hosts: &[String],
    now: Timestamp,
) -> Result<Bundle, CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(
        DnType::CommonName,
        hosts.first().map(String::as_str).unwrap_or("jitrbac-webhook"),
    );
    params.subject_alt_names = hosts
        .iter()
        .map(|h| match h.parse() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => h.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let not_after = now.checked_add(LEAF_VALIDITY)?;
    params.not_before = to_offset(now - SignedDuration::from_mins(5))?;
    params.not_after = to_offset(not_after)?;
    let cert = params.signed_by(&key, issuer)?.pem();
    Ok(Bundle {
        ca_cert,
        ca_key,
        cert,
        key: key.serialize_pem(),
        not_after,
    })
}

/// Whether the serving certificate should be renewed at `now`.
pub fn needs_renewal(bundle: &Bundle, now: Timestamp) -> bool {
    bundle.not_after.duration_since(now) < RENEW_BEFORE
}

fn to_offset(at: Timestamp) -> Result<time::OffsetDateTime, CertError> {
    time::OffsetDateTime::from_unix_timestamp(at.as_second()).map_err(|_| CertError::Unusable("validity".into()))
}

/// Where the operator keeps and publishes its webhook certificate.
#[derive(Debug, Clone)]
pub struct Managed {
    /// Namespace of the Secret (the operator's namespace).
    pub namespace: String,
    /// Name of the Secret.
    pub secret: String,
    /// Names the certificate is valid for: the Service DNS names, or 127.0.0.1 for a
    /// webhook reached by URL during development.
    pub hosts: Vec<String>,
    /// Name of the MutatingWebhookConfiguration and ValidatingWebhookConfiguration whose
    /// webhooks get the CA bundle.
    pub configuration: String,
}

/// Makes sure the Secret holds a valid bundle (creating or renewing it), publishes the CA
/// into the webhook configurations, and returns the bundle.
///
/// Fails with [`CertError::Api`] when the Secret cannot be read or written, or a webhook
/// configuration cannot be read or patched (for example when it does not exist yet).
pub async fn ensure(client: &Client, managed: &Managed) -> Result<Bundle, CertError> {
    let bundle = ensure_secret(client, managed).await?;
    publish_ca(client, &managed.configuration, &bundle.ca_cert).await?;
    Ok(bundle)
}

async fn ensure_secret(client: &Client, managed: &Managed) -> Result<Bundle, CertError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &managed.namespace);
    let what = format!("{}/{}", managed.namespace, managed.secret);
    let api_err = |action: &str| {
        let action = format!("{action} Secret {what}");
        move |source| CertError::Api { action, source }
    };
    let now = Timestamp::now();
    match api.get_opt(&managed.secret).await.map_err(api_err("reading"))? {
        None => {
            let bundle = issue(&managed.hosts, now)?;
            match api
                .create(&PostParams::default(), &to_secret(managed, &bundle, None))
                .await
            {
                Ok(_) => Ok(bundle),
                // Another replica was first: use its bundle.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let secret = api.get(&managed.secret).await.map_err(api_err("reading"))?;
                    from_secret(&secret).ok_or(CertError::Unusable(what))
                }
                Err(source) => Err(api_err("creating")(source)),
            }
        }
        Some(secret) => {
            let current = from_secret(&secret).ok_or_else(|| CertError::Unusable(what.clone()))?;
            if !needs_renewal(&current, now) {
                return Ok(current);
            }
            let renewed = renew(&current, &managed.hosts, now)?;
            let updated = to_secret(managed, &renewed, secret.resource_version());
            match api.replace(&managed.secret, &PostParams::default(), &updated).await {
                Ok(_) => Ok(renewed),
                // Another replica renewed it first: use its bundle.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let secret = api.get(&managed.secret).await.map_err(api_err("reading"))?;
                    from_secret(&secret).ok_or(CertError::Unusable(what))
                }
                Err(source) => Err(api_err("renewing")(source)),
            }
        }
    }
}

/// Sets `caBundle` on every webhook of the MutatingWebhookConfiguration and the
/// ValidatingWebhookConfiguration named `name` that lack it or carry another one.
///
/// Fails with [`CertError::Api`] when a configuration cannot be read or patched.
pub async fn publish_ca(client: &Client, name: &str, ca_pem: &str) -> Result<(), CertError> {
    let bundle = ByteString(ca_pem.as_bytes().to_vec());
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    publish_to(&mutating, name, &bundle, |c| {
        c.webhooks
            .iter()
            .flatten()
            .map(|w| (w.name.clone(), w.client_config.ca_bundle.clone()))
            .collect()
    })
    .await?;
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    publish_to(&validating, name, &bundle, |c| {
        c.webhooks
            .iter()
            .flatten()
            .map(|w| (w.name.clone(), w.client_config.ca_bundle.clone()))
            .collect()
    })
    .await
}

/// Reads the webhook configuration `name` through `api` and patches `bundle` into those of
/// its webhooks (listed by `webhooks` as name and current `caBundle`) that lack it.
async fn publish_to<K>(
    api: &Api<K>,
    name: &str,
    bundle: &ByteString,
    webhooks: impl Fn(&K) -> Vec<(String, Option<ByteString>)>,
) -> Result<(), CertError>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&());
    let api_err = |action: String| move |source| CertError::Api { action, source };
    let config = api.get(name).await.map_err(api_err(format!("reading {kind} {name}")))?;
    let stale: Vec<String> = webhooks(&config)
        .into_iter()
        .filter(|(_, current)| current.as_ref() != Some(bundle))
        .map(|(webhook, _)| webhook)
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    patch_bundles(api, name, &stale, bundle)
        .await
        .map_err(api_err(format!("patching {kind} {name}")))
}

/// Strategic merge patch: `webhooks` merge by `name`, so only `caBundle` changes.
async fn patch_bundles<K>(api: &Api<K>, name: &str, webhooks: &[String], bundle: &ByteString) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "webhooks": webhooks.iter().map(|w| serde_json::json!({"name": w, "clientConfig": {"caBundle": bundle}})).collect::<Vec<_>>()
    });
    api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map(|_| ())
}

fn to_secret(managed: &Managed, bundle: &Bundle, resource_version: Option<String>) -> Secret {
    let data = |s: &str| ByteString(s.as_bytes().to_vec());
    Secret {
        metadata: ObjectMeta {
            name: Some(managed.secret.clone()),
            namespace: Some(managed.namespace.clone()),
            resource_version,
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "jitrbac".to_owned(),
            )])),
            annotations: Some(BTreeMap::from([(
                NOT_AFTER_ANNOTATION.to_owned(),
                crate::api::format_timestamp(bundle.not_after),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(BTreeMap::from([
            ("ca.crt".to_owned(), data(&bundle.ca_cert)),
            ("ca.key".to_owned(), data(&bundle.ca_key)),
            ("tls.crt".to_owned(), data(&bundle.cert)),
            ("tls.key".to_owned(), data(&bundle.key)),
        ])),
        ..Secret::default()
    }
}

fn from_secret(secret: &Secret) -> Option<Bundle> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok());
    let not_after = secret
        .annotations()
        .get(NOT_AFTER_ANNOTATION)
        .and_then(|v| crate::api::parse_timestamp(v).ok())?;
    Some(Bundle {
        ca_cert: text("ca.crt")?,
        ca_key: text("ca.key")?,
        cert: text("tls.crt")?,
        key: text("tls.key")?,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_then_renews_from_the_same_ca() {
        let now: Timestamp = "2026-11-29T12:00:00Z".parse().expect("valid");
        let hosts = vec!["jitrbac-webhook.jitrbac-system.svc".to_owned(), "127.0.0.1".to_owned()];
        let first = issue(&hosts, now).expect("issued");
        assert!(first.cert.contains("BEGIN CERTIFICATE") && first.key.contains("PRIVATE KEY"));
        assert!(!needs_renewal(&first, now));
        let later = now + SignedDuration::from_hours(340 * 24);
        assert!(needs_renewal(&first, later));
        let renewed = renew(&first, &hosts, later).expect("renewed");
        assert_eq!(renewed.ca_cert, first.ca_cert, "the CA bundle stays valid");
        assert_ne!(renewed.cert, first.cert);
        assert!(renewed.not_after > first.not_after);
    }

    #[test]
    fn the_secret_round_trips() {
        let now: Timestamp = "2026-11-29T12:00:00Z".parse().expect("valid");
        let bundle = issue(&["127.0.0.1".to_owned()], now).expect("issued");
        let managed = Managed {
            namespace: "ns".into(),
            secret: "s".into(),
            hosts: vec![],
            configuration: "c".into(),
        };
        let back = from_secret(&to_secret(&managed, &bundle, None)).expect("readable");
        assert_eq!(
            back,
            Bundle {
                not_after: crate::api::time::truncate_to_millis(bundle.not_after),
                ..bundle.clone()
            }
        );
    }
}
