//! What the admission webhooks decide. Pure: an admission request in, a response out.
//!
//! - Grants and reviews: the requester (`spec.requester`) or reviewer (`spec.reviewer`)
//!   is stamped from the request's authenticated `userInfo` on CREATE, replacing anything
//!   the client sent. On UPDATE the stored value is put back, so nobody can change it and
//!   a client that leaves it out of a re-applied manifest does not trip the CRD's
//!   immutability rule.
//! - Policies: an AccessPolicy whose reason pattern does not compile, or whose durations
//!   do not parse, is rejected with a message that says why.

use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde_json::Value;

use crate::api::{AccessPolicy, GrantDuration, Identity};

/// The identity field stamped on an object: `spec.requester` or `spec.reviewer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// `spec.requester` of an AccessGrant.
    Requester,
    /// `spec.reviewer` of a GrantReview.
    Reviewer,
}

impl Stamp {
    fn field(self) -> &'static str {
        match self {
            Self::Requester => "requester",
            Self::Reviewer => "reviewer",
        }
    }
}

/// Stamps the identity field of the object in `request` (see the module docs). Returns
/// an allowing response, with a JSON patch when something changes; a request without an
/// object (or without `spec`) is allowed unchanged, for the schema to judge.
pub fn stamp(request: &AdmissionRequest<DynamicObject>, stamp: Stamp) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let field = stamp.field();
    let spec_of = |o: &Option<DynamicObject>| o.as_ref().and_then(|o| o.data.get("spec").cloned());
    let Some(spec) = spec_of(&request.object).filter(Value::is_object) else {
        return response;
    };
    let current = spec.get(field).cloned();
    let wanted = match request.operation {
        Operation::Create => {
            Some(serde_json::to_value(Identity::from_user_info(&request.user_info)).unwrap_or(Value::Null))
        }
        Operation::Update => spec_of(&request.old_object).and_then(|old| old.get(field).cloned()),
        Operation::Delete | Operation::Connect => return response,
    };
    let path = format!("/spec/{field}");
    let op = match (current, wanted) {
        (current, Some(value)) if current.as_ref() != Some(&value) => PatchOperation::Add(AddOperation {
            path: path.parse().unwrap_or_default(),
            value,
        }),
        (Some(_), None) => PatchOperation::Remove(RemoveOperation {
            path: path.parse().unwrap_or_default(),
        }),
        _ => return response,
    };
    match response.clone().with_patch(Patch(vec![op])) {
        Ok(patched) => patched,
        Err(err) => response.deny(format!("cannot stamp {field}: {err}")),
    }
}

/// Validates an AccessPolicy on CREATE and UPDATE: its reason pattern must compile and
/// its durations must follow the grant duration grammar.
pub fn validate_policy(request: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let Some(object) = &request.object else {
        return response;
    };
    let policy: AccessPolicy = match serde_json::to_value(object).and_then(serde_json::from_value) {
        Ok(p) => p,
        Err(err) => return response.deny(format!("not a valid AccessPolicy: {err}")),
    };
    match policy_problem(&policy) {
        Some(problem) => response.deny(problem),
        None => response,
    }
}

/// The first problem the schema cannot see in `policy`, if any.
pub fn policy_problem(policy: &AccessPolicy) -> Option<String> {
    if let Some(pattern) = &policy.spec.reason_pattern
        && let Err(err) = regex::Regex::new(pattern)
    {
        return Some(format!("spec.reasonPattern is not a valid regular expression: {err}"));
    }
    if let Some(selector) = &policy.spec.namespace_selector
        && let Err(err) = kube::core::Selector::try_from(selector.clone())
    {
        return Some(format!(
            "spec.namespaceSelector is not a valid label selector (operators: In, NotIn, Exists, DoesNotExist): {err}"
        ));
    }
    let durations = [
        ("spec.maxDuration", policy.spec.max_duration.as_deref()),
        ("spec.pendingTimeout", policy.spec.pending_timeout.as_deref()),
        (
            "spec.breakGlass.maxDuration",
            policy.spec.break_glass.as_ref().and_then(|b| b.max_duration.as_deref()),
        ),
        (
            "spec.breakGlass.reviewDeadline",
            policy
                .spec
                .break_glass
                .as_ref()
                .and_then(|b| b.review_deadline.as_deref()),
        ),
    ];
    durations
        .into_iter()
        .find_map(|(field, value)| GrantDuration::parse(value?).err().map(|e| format!("{field}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::admission::AdmissionReview;

    fn request(operation: &str, object: Value, old: Option<Value>) -> AdmissionRequest<DynamicObject> {
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "req-1",
                "kind": {"group": "jitrbac.io", "version": "v1alpha1", "kind": "AccessGrant"},
                "resource": {"group": "jitrbac.io", "version": "v1alpha1", "resource": "accessgrants"},
                "operation": operation,
                "userInfo": {"username": "alice", "uid": "u-1", "groups": ["dev", "system:authenticated"],
                             "extra": {"scopes": ["a"]}},
                "object": object,
                "oldObject": old,
            }
        }))
        .expect("valid review");
        review.try_into().expect("has a request")
    }

    fn grant(requester: Option<Value>) -> Value {
        let mut spec =
            serde_json::json!({"subjects": [], "roleRef": {"kind": "ClusterRole", "name": "view"}, "duration": "1h"});
        if let Some(r) = requester {
            spec["requester"] = r;
        }
        serde_json::json!({"apiVersion": "jitrbac.io/v1alpha1", "kind": "AccessGrant", "metadata": {"name": "g"}, "spec": spec})
    }

    fn patch_of(response: &AdmissionResponse) -> Value {
        let review = response.clone().into_review();
        let encoded = review.response.and_then(|r| r.patch).unwrap_or_default();
        serde_json::from_slice(&encoded).unwrap_or(Value::Null)
    }

    #[test]
    fn create_stamps_the_caller_over_whatever_was_sent() {
        let forged = serde_json::json!({"username": "mallory"});
        let r = stamp(&request("CREATE", grant(Some(forged)), None), Stamp::Requester);
        assert!(r.allowed);
        let patch = patch_of(&r);
        assert_eq!(patch[0]["op"], "add");
        assert_eq!(patch[0]["path"], "/spec/requester");
        assert_eq!(patch[0]["value"]["username"], "alice");
        assert_eq!(patch[0]["value"]["uid"], "u-1");
        assert_eq!(patch[0]["value"]["groups"][0], "dev");
        assert_eq!(patch[0]["value"]["extra"]["scopes"][0], "a");
    }

    #[test]
    fn update_puts_the_stored_requester_back() {
        let stored = serde_json::json!({"username": "bob"});
        let old = grant(Some(stored.clone()));
        let changed = stamp(
            &request(
                "UPDATE",
                grant(Some(serde_json::json!({"username": "alice"}))),
                Some(old.clone()),
            ),
            Stamp::Requester,
        );
        assert_eq!(patch_of(&changed)[0]["value"], stored);
        let omitted = stamp(&request("UPDATE", grant(None), Some(old.clone())), Stamp::Requester);
        assert_eq!(patch_of(&omitted)[0]["value"], stored);
        let same = stamp(&request("UPDATE", grant(Some(stored)), Some(old)), Stamp::Requester);
        assert_eq!(patch_of(&same), Value::Null, "nothing to change");
    }

    #[test]
    fn policies_with_broken_patterns_are_refused() {
        let policy = |pattern: &str| -> AccessPolicy {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "jitrbac.io/v1alpha1", "kind": "AccessPolicy", "metadata": {"name": "p"},
                "spec": {"roles": [{"kind": "ClusterRole", "name": "edit"}], "reasonPattern": pattern}
            }))
            .expect("valid policy")
        };
        assert!(policy_problem(&policy("^(INC|CHG)-[0-9]+")).is_none());
        let problem = policy_problem(&policy("^(INC")).expect("refused");
        assert!(problem.contains("reasonPattern"), "{problem}");
    }

    #[test]
    fn policies_with_bogus_selector_operators_are_refused() {
        let policy: AccessPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "jitrbac.io/v1alpha1", "kind": "AccessPolicy", "metadata": {"name": "p"},
            "spec": {
                "roles": [{"kind": "ClusterRole", "name": "edit"}],
                "namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "Bogus", "values": ["prod"]}]}
            }
        }))
        .expect("valid shape");
        let problem = policy_problem(&policy).expect("refused");
        assert!(problem.contains("namespaceSelector"), "{problem}");
    }
}
