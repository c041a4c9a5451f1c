//! The state the gauges report, computed from the caches. Pure.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;

use crate::api::{AccessGrant, GrantPhase, parse_timestamp};

/// What the gauges about current state say.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Grants per phase, every phase listed (0 included). A grant the operator has not
    /// looked at yet (no status) counts as `Pending`.
    pub by_phase: Vec<(GrantPhase, i64)>,
    /// Bindings the operator created (their uid is recorded in a cached grant's status)
    /// whose `jitrbac.io/expires-at` is before `now`. Look-alikes carrying the labels are
    /// not counted: they are not the operator's to delete.
    pub overdue_bindings: i64,
    /// Bindings carrying the managed-by label whose `jitrbac.io/expires-at` is before
    /// `now` but that no cached grant records: look-alikes, or bindings a grant left when
    /// it was deleted without the operator (an orphan). The operator cannot prove it
    /// created them, so it never deletes them; someone has to look.
    pub unverified_overdue_bindings: i64,
    /// Seconds from `now` to the earliest `status.expiresAt` of an `Active` grant
    /// (negative when it has passed); `None` when no grant is active.
    pub next_expiry_seconds: Option<f64>,
    /// `Active` grants with `spec.breakGlass: true`.
    pub break_glass_active: i64,
}

/// Summarizes the cached `grants` and managed `bindings` at `now`. Each binding comes as
/// its uid and its raw `jitrbac.io/expires-at` annotation (RFC 3339; a malformed one
/// counts as no expiry).
pub fn summarize<'a>(
    grants: &[Arc<AccessGrant>],
    bindings: &mut dyn Iterator<Item = (&'a str, Option<&'a str>)>,
    now: Timestamp,
) -> Summary {
    let phase_of = |g: &AccessGrant| g.status.as_ref().and_then(|s| s.phase).unwrap_or(GrantPhase::Pending);
    let by_phase = GrantPhase::ALL
        .iter()
        .map(|&p| (p, count(grants.iter().filter(|g| phase_of(g) == p))))
        .collect();
    let active = || grants.iter().filter(|g| phase_of(g) == GrantPhase::Active);
    let next_expiry_seconds = active()
        .filter_map(|g| g.status.as_ref()?.expires_at.as_deref())
        .filter_map(|t| parse_timestamp(t).ok())
        .min()
        .map(|at| at.duration_since(now).as_secs_f64());
    let recorded: HashSet<&str> = grants
        .iter()
        .filter_map(|g| g.status.as_ref())
        .flat_map(|s| s.bindings.iter().map(|b| b.uid.as_str()))
        .collect();
    let overdue = |at: Option<&str>| at.and_then(|t| parse_timestamp(t).ok()).is_some_and(|at| at < now);
    let (mut overdue_bindings, mut unverified_overdue_bindings) = (0_i64, 0_i64);
    for (uid, _) in bindings.filter(|(_, at)| overdue(*at)) {
        let counter = if recorded.contains(uid) {
            &mut overdue_bindings
        } else {
            &mut unverified_overdue_bindings
        };
        *counter = counter.saturating_add(1);
    }
    Summary {
        by_phase,
        overdue_bindings,
        unverified_overdue_bindings,
        next_expiry_seconds,
        break_glass_active: count(active().filter(|g| g.spec.break_glass)),
    }
}

fn count<T>(items: impl Iterator<Item = T>) -> i64 {
    i64::try_from(items.count()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GrantStatus;

    fn grant(phase: Option<GrantPhase>, expires_at: Option<&str>, break_glass: bool) -> Arc<AccessGrant> {
        let mut g: AccessGrant = serde_json::from_value(serde_json::json!({
            "apiVersion": "jitrbac.io/v1alpha1",
            "kind": "AccessGrant",
            "metadata": {"name": "g", "namespace": "ns"},
            "spec": {
                "subjects": [{"kind": "User", "name": "alice"}],
                "roleRef": {"kind": "ClusterRole", "name": "view"},
                "duration": "1h",
                "breakGlass": break_glass
            }
        }))
        .expect("grant");
        g.status = phase.map(|p| GrantStatus {
            phase: Some(p),
            expires_at: expires_at.map(str::to_owned),
            ..GrantStatus::default()
        });
        Arc::new(g)
    }

    #[test]
    fn counts_phases_overdue_bindings_next_expiry_and_break_glass() {
        let now: Timestamp = "2026-11-29T12:00:00Z".parse().expect("now");
        let mut active = grant(Some(GrantPhase::Active), Some("2026-11-29T12:10:00Z"), true);
        Arc::make_mut(&mut active).status.as_mut().expect("status").bindings =
            ["rb-late", "rb-now", "rb-none", "rb-malformed"]
                .map(|uid| crate::api::BindingRef {
                    kind: "RoleBinding".into(),
                    namespace: Some("ns".into()),
                    name: uid.into(),
                    uid: uid.into(),
                })
                .to_vec();
        let grants = [
            grant(None, None, false),
            active,
            grant(Some(GrantPhase::Active), Some("2026-11-29T12:00:30.5Z"), false),
            grant(Some(GrantPhase::Expired), Some("2026-11-29T11:00:00Z"), true),
        ];
        let bindings = [
            ("rb-late", Some("2026-11-29T11:59:59Z")),
            ("look-alike", Some("2026-11-29T11:00:00Z")),
            ("rb-now", Some("2026-11-29T12:00:00Z")),
            ("rb-none", None),
            ("rb-malformed", Some("yesterday")),
        ];
        let s = summarize(&grants, &mut bindings.into_iter(), now);
        let phase = |p| s.by_phase.iter().find(|(q, _)| *q == p).map(|(_, n)| *n);
        assert_eq!(s.by_phase.len(), 7, "every phase is reported");
        assert_eq!(phase(GrantPhase::Pending), Some(1), "no status yet counts as Pending");
        assert_eq!(phase(GrantPhase::Active), Some(2));
        assert_eq!(phase(GrantPhase::Expired), Some(1));
        assert_eq!(phase(GrantPhase::Denied), Some(0));
        assert_eq!(
            s.overdue_bindings, 1,
            "only the operator's bindings strictly past their expiry"
        );
        assert_eq!(s.unverified_overdue_bindings, 1, "the look-alike past its expiry");
        assert_eq!(s.next_expiry_seconds, Some(30.5));
        assert_eq!(s.break_glass_active, 1, "an expired break-glass grant is not active");
    }

    #[test]
    fn nothing_active_means_no_next_expiry() {
        let now: Timestamp = "2026-11-29T12:00:00Z".parse().expect("now");
        let s = summarize(
            &[grant(Some(GrantPhase::Revoked), None, false)],
            &mut std::iter::empty(),
            now,
        );
        assert_eq!(s.next_expiry_seconds, None);
        assert_eq!(s.overdue_bindings, 0);
        assert_eq!(s.unverified_overdue_bindings, 0);
    }
}
