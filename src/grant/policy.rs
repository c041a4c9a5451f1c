//! Which AccessPolicies apply to a grant, and the strictest combination of them. Pure.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use crate::api::{AccessPolicy, GrantDuration, RoleKind, RoleRef};

/// Break-glass maximum duration when a policy allowing it sets none.
pub const DEFAULT_BREAK_GLASS_MAX: GrantDuration = GrantDuration::HOUR;
/// Break-glass review deadline when a policy allowing it sets none.
pub const DEFAULT_REVIEW_DEADLINE: GrantDuration = GrantDuration::HOUR;

/// The rules that apply to one grant: the strictest value of each setting among the
/// matching policies, or the operator's defaults where none matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectivePolicy {
    /// Names of the matching policies (empty: the defaults apply).
    pub policies: Vec<String>,
    /// Longest grant allowed (the smallest maximum, never above the operator's).
    pub max_duration: GrantDuration,
    /// Whether a reason is required (any policy requiring one, or giving a pattern).
    pub require_reason: bool,
    /// Every pattern the reason must match.
    pub reason_patterns: Vec<String>,
    /// Distinct approvals required (the largest number).
    pub approvals: u8,
    /// How long the grant may wait for approval (the shortest timeout).
    pub pending_timeout: GrantDuration,
    /// Break-glass, if every matching policy allows it (and at least one matches).
    pub break_glass: Option<BreakGlass>,
}

impl EffectivePolicy {
    /// The operator's `defaults` alone: self-service (no approvals), no reason required,
    /// no break-glass, and no policy named.
    pub fn from_defaults(defaults: Defaults) -> Self {
        Self {
            policies: Vec::new(),
            max_duration: defaults.max_duration,
            require_reason: false,
            reason_patterns: Vec::new(),
            approvals: 0,
            pending_timeout: defaults.pending_timeout,
            break_glass: None,
        }
    }
}

/// Break-glass limits that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakGlass {
    /// Longest break-glass grant (the smallest maximum).
    pub max_duration: GrantDuration,
    /// Time from activation within which an approval must arrive (the shortest).
    pub review_deadline: GrantDuration,
}

/// The operator's defaults, used where no policy matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    /// `--max-duration`.
    pub max_duration: GrantDuration,
    /// `--pending-timeout`.
    pub pending_timeout: GrantDuration,
}

/// Whether `policy` governs a grant of `role` in `namespace` (whose labels are
/// `namespace_labels`, when known). A selector that cannot be evaluated (labels unknown,
/// or invalid) counts as matching: the stricter reading.
pub fn matches(
    policy: &AccessPolicy,
    role: &RoleRef,
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let role_matches = policy
        .spec
        .roles
        .iter()
        .any(|r| r.kind == role.kind && r.name == role.name && r.kind != RoleKind::Unknown);
    if !role_matches {
        return false;
    }
    let by_name = policy.spec.namespaces.iter().any(|n| n == namespace);
    let by_label = policy.spec.namespace_selector.as_ref().map(|selector| {
        match (Selector::try_from(selector.clone()), namespace_labels) {
            (Ok(selector), Some(labels)) => selector.matches(labels),
            _ => true,
        }
    });
    match (policy.spec.namespaces.is_empty(), by_label) {
        (true, None) => true,
        (_, Some(label_match)) => by_name || label_match,
        (false, None) => by_name,
    }
}

/// Whether any of `policies` uses a namespace selector for `role` (then the namespace's
/// labels are needed to decide).
pub fn needs_namespace_labels(policies: &[AccessPolicy], role: &RoleRef) -> bool {
    policies.iter().any(|p| {
        p.spec.namespace_selector.is_some() && p.spec.roles.iter().any(|r| r.kind == role.kind && r.name == role.name)
    })
}

/// Combines the policies matching a grant of `role` in `namespace` into the rules that
/// apply. Durations a policy states in an invalid form (impossible past admission) are
/// ignored, never loosened.
pub fn effective(
    policies: &[AccessPolicy],
    role: &RoleRef,
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
    defaults: Defaults,
) -> EffectivePolicy {
    let matching: Vec<&AccessPolicy> = policies
        .iter()
        .filter(|p| matches(p, role, namespace, namespace_labels))
        .collect();
    let parse = |s: &Option<String>| s.as_deref().and_then(|v| GrantDuration::parse(v).ok());
    let min = |current: GrantDuration, other: Option<GrantDuration>| other.map_or(current, |o| current.min(o));
    let mut effective = EffectivePolicy {
        policies: matching.iter().map(|p| p.name_any()).collect(),
        ..EffectivePolicy::from_defaults(defaults)
    };
    let mut break_glass = BreakGlass {
        max_duration: DEFAULT_BREAK_GLASS_MAX,
        review_deadline: DEFAULT_REVIEW_DEADLINE,
    };
    let mut break_glass_allowed = !matching.is_empty();
    for p in &matching {
        let spec = &p.spec;
        effective.max_duration = min(effective.max_duration, parse(&spec.max_duration));
        effective.require_reason |= spec.require_reason || spec.reason_pattern.is_some();
        effective.reason_patterns.extend(spec.reason_pattern.iter().cloned());
        effective.approvals = effective.approvals.max(spec.approvals);
        effective.pending_timeout = min(effective.pending_timeout, parse(&spec.pending_timeout));
        match &spec.break_glass {
            Some(b) if b.allowed => {
                break_glass.max_duration = min(break_glass.max_duration, parse(&b.max_duration));
                break_glass.review_deadline = min(break_glass.review_deadline, parse(&b.review_deadline));
            }
            _ => break_glass_allowed = false,
        }
    }
    effective.reason_patterns.sort();
    effective.reason_patterns.dedup();
    if break_glass_allowed && effective.approvals > 0 {
        break_glass.max_duration = break_glass.max_duration.min(effective.max_duration);
        effective.break_glass = Some(break_glass);
    }
    effective
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, spec: serde_json::Value) -> AccessPolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "jitrbac.io/v1alpha1", "kind": "AccessPolicy", "metadata": {"name": name}, "spec": spec
        }))
        .expect("valid policy")
    }

    fn edit() -> RoleRef {
        RoleRef {
            kind: RoleKind::ClusterRole,
            name: "edit".into(),
            api_group: None,
        }
    }

    fn defaults() -> Defaults {
        Defaults {
            max_duration: GrantDuration::WEEK,
            pending_timeout: GrantDuration::DAY,
        }
    }

    #[test]
    fn without_a_matching_policy_the_defaults_apply() {
        let other = policy(
            "other",
            serde_json::json!({"roles": [{"kind": "ClusterRole", "name": "admin"}], "approvals": 2}),
        );
        let e = effective(&[other], &edit(), "team-a", None, defaults());
        assert!(e.policies.is_empty());
        assert_eq!(
            (e.approvals, e.max_duration, e.break_glass),
            (0, GrantDuration::WEEK, None)
        );
    }

    #[test]
    fn the_strictest_value_of_each_setting_applies() {
        let a = policy(
            "a",
            serde_json::json!({
                "roles": [{"kind": "ClusterRole", "name": "edit"}], "maxDuration": "8h", "approvals": 1,
                "reasonPattern": "^INC-", "pendingTimeout": "2h",
                "breakGlass": {"allowed": true, "maxDuration": "2h", "reviewDeadline": "30m"}
            }),
        );
        let b = policy(
            "b",
            serde_json::json!({
                "roles": [{"kind": "ClusterRole", "name": "edit"}], "namespaces": ["team-a"], "maxDuration": "4h",
                "approvals": 2, "requireReason": true, "pendingTimeout": "1d",
                "breakGlass": {"allowed": true, "maxDuration": "1h"}
            }),
        );
        let e = effective(&[a.clone(), b], &edit(), "team-a", None, defaults());
        assert_eq!(e.policies, ["a", "b"]);
        assert_eq!(e.max_duration.as_secs(), 4 * 3600);
        assert_eq!(e.approvals, 2);
        assert!(e.require_reason);
        assert_eq!(e.reason_patterns, ["^INC-"]);
        assert_eq!(e.pending_timeout.as_secs(), 2 * 3600);
        let bg = e.break_glass.expect("allowed by both");
        assert_eq!((bg.max_duration.as_secs(), bg.review_deadline.as_secs()), (3600, 1800));

        let c = policy(
            "c",
            serde_json::json!({"roles": [{"kind": "ClusterRole", "name": "edit"}], "approvals": 1}),
        );
        let e = effective(&[a, c], &edit(), "team-b", None, defaults());
        assert_eq!(
            e.break_glass, None,
            "one matching policy without break-glass forbids it"
        );
    }

    #[test]
    fn namespaces_by_name_or_label() {
        let p = policy(
            "p",
            serde_json::json!({
                "roles": [{"kind": "ClusterRole", "name": "edit"}], "namespaces": ["prod-a"],
                "namespaceSelector": {"matchLabels": {"env": "prod"}}
            }),
        );
        let prod = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
        let dev = BTreeMap::from([("env".to_owned(), "dev".to_owned())]);
        assert!(matches(&p, &edit(), "prod-a", Some(&dev)));
        assert!(matches(&p, &edit(), "prod-b", Some(&prod)));
        assert!(!matches(&p, &edit(), "dev-a", Some(&dev)));
        assert!(
            matches(&p, &edit(), "dev-a", None),
            "labels unknown: the stricter reading"
        );
        assert!(needs_namespace_labels(&[p], &edit()));
    }
}
