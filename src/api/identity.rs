//! Who asked: the identity the API server authenticated, as stamped at admission.

use std::collections::BTreeMap;

use litemap::LiteMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An authenticated Kubernetes identity (the `userInfo` of an admission request): who
/// created a grant (its requester) or a review (its reviewer). Stamped by the operator's
/// admission webhook from the request itself; whatever a client writes here is replaced,
/// and it cannot be changed afterwards.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// User name as authenticated, e.g. `alice` or
    /// `system:serviceaccount:ci:deployer`.
    #[schemars(length(max = 512))]
    pub username: String,

    /// Unique id of the user, when the authenticator provides one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub uid: Option<String>,

    /// Groups the user belonged to at that moment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub groups: Vec<String>,

    /// Extra attributes from the authenticator (e.g. scopes), by key.
    // A map kept in one sorted vector: nearly every identity has one or two keys (the API
    // server adds a credential id for certificate and token users), and a BTreeMap costs
    // half a kilobyte even for one; the operator caches one identity per grant.
    #[serde(default, skip_serializing_if = "LiteMap::is_empty")]
    #[schemars(with = "BTreeMap<String, Vec<String>>")]
    pub extra: LiteMap<String, Vec<String>>,
}

impl Identity {
    /// Builds an identity from an admission request's `userInfo`.
    pub fn from_user_info(info: &k8s_openapi::api::authentication::v1::UserInfo) -> Self {
        Self {
            username: info.username.clone().unwrap_or_default(),
            uid: info.uid.clone().filter(|u| !u.is_empty()),
            groups: info.groups.clone().unwrap_or_default(),
            extra: info.extra.clone().unwrap_or_default().into_iter().collect(),
        }
    }

    /// Whether two identities are the same person for the four-eyes rule: the same user
    /// name. The uid is not compared: it can differ between sessions of one person (some
    /// authenticators) and between incarnations of one ServiceAccount name, and RBAC itself
    /// grants by name.
    pub fn same_person(&self, other: &Identity) -> bool {
        self.username == other.username
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_attributes_read_and_write_as_a_map_of_string_lists() {
        let json = serde_json::json!({
            "username": "alice",
            "extra": {"scopes": ["a", "b"], "authentication.kubernetes.io/credential-id": ["X509SHA256=ab"]}
        });
        let identity: Identity = serde_json::from_value(json.clone()).expect("identity");
        assert_eq!(
            identity.extra.get("scopes").map(Vec::as_slice),
            Some(&["a".into(), "b".into()][..])
        );
        assert_eq!(serde_json::to_value(&identity).expect("json"), json);
        let bare: Identity = serde_json::from_value(serde_json::json!({"username": "bob"})).expect("identity");
        assert_eq!(
            serde_json::to_value(&bare).expect("json"),
            serde_json::json!({"username": "bob"})
        );
    }

    #[test]
    fn the_same_name_is_the_same_person_whatever_the_uid() {
        let a = |uid: &str| Identity {
            username: "erin".into(),
            uid: Some(uid.into()),
            ..Identity::default()
        };
        assert!(a("uid-1").same_person(&a("uid-2")));
        let bob = Identity {
            username: "bob".into(),
            ..Identity::default()
        };
        assert!(!a("uid-1").same_person(&bob));
    }
}
