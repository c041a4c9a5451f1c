//! The audit trail: one JSON line per grant transition on standard output.
//!
//! Kubernetes Events expire (after one hour by default); these lines are the durable
//! record, meant for a log pipeline. Each line is one [`AuditRecord`] serialized as a
//! single-line JSON object. Operational logs go to standard error, so standard output
//! carries nothing but audit records. Optionally every record is also sent as a
//! CloudEvent to an HTTPS endpoint ([`sink`]). `docs/audit.md` is the schema.

pub mod cloudevent;
pub mod sink;

use std::io::Write;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use k8s_openapi::api::rbac::v1::RoleBinding;

use crate::api::{AccessGrant, BindingRef, GrantStatus, Identity, RoleKind, RoleRef, Subject, format_timestamp};
use crate::grant::Transition;
use crate::grant::sweep::Candidate;

/// Version of the audit line format; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// One audit line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Always `jitrbac.io/audit`, so the lines are easy to select in a mixed log stream.
    pub kind: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Unique id of this record (32 hex digits): the same transition of the same grant gets
    /// the same id even when written twice around a crash, so a pipeline can drop
    /// duplicates. Derived from the grant uid, the action and the binding concerned (its
    /// uid; the time for `DriftRepaired` and `BindingSwept`).
    pub id: String,
    /// When the transition happened (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// `ApprovalRequested`, `Approved`, `Scheduled`, `Granted`, `ExpiringSoon`, `Expired`,
    /// `Revoked`, `Denied`, `Failed`, `DriftRepaired`, `Blocked`, `ReviewIgnored`, or
    /// `BindingSwept` (the sweeper deleted an overdue binding). See `docs/audit.md`.
    pub action: &'static str,
    /// The specific reason (`DurationTooLong`, `Expired`, ...).
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// The grant.
    pub grant: GrantId,
    /// Who received (or would have received) access.
    pub subjects: Vec<Subject>,
    /// The role granted.
    pub role_ref: RoleRef,
    /// The bindings created for the grant, with uids.
    pub bindings: Vec<BindingRef>,
    /// Start of access (RFC 3339, UTC), once known.
    pub starts_at: Option<String>,
    /// End of access (RFC 3339, UTC), once known.
    pub expires_at: Option<String>,
    /// When access actually ended (binding deleted), for `Expired`/`Revoked` of a grant
    /// that was active.
    pub ended_at: Option<String>,
    /// The justification written in the grant (`spec.reason`).
    pub justification: Option<String>,
    /// Who asked for the grant, as stamped at admission.
    pub requester: Option<Identity>,
    /// The reviewers whose approvals counted (user names).
    pub approvers: Vec<String>,
    /// For a grant ended by a reviewer's denial (`reason: DeniedByReviewer`): that
    /// reviewer's user name.
    pub denied_by: Option<String>,
    /// True for break-glass grants (activated without prior approval).
    pub break_glass: bool,
}

/// Identifies a grant in an audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantId {
    /// `AccessGrant`.
    pub kind: &'static str,
    /// Namespace of the grant.
    pub namespace: Option<String>,
    /// Name of the grant.
    pub name: String,
    /// `metadata.uid` of the grant.
    pub uid: String,
}

/// Builds the audit record of `transition` of `grant`, whose status after the transition
/// is `status`, happening at `at`.
pub fn record(grant: &AccessGrant, status: &GrantStatus, transition: &Transition, at: Timestamp) -> AuditRecord {
    let time = format_timestamp(at);
    let uid = grant.uid().unwrap_or_default();
    // The same transition written twice (a crash, or a lost status write, between the
    // audit line and the status commit) gets the same id: it is identified by what happens
    // at most once per grant for that action, never by anything that can differ between
    // the attempts (such as the time, or whether the binding was recorded yet).
    let token = match transition.action {
        // Can repeat for one binding: identified by the time.
        "DriftRepaired" => time.clone(),
        // One record per ignored review; the message names the review. One per new
        // expiry of a grant cut short; the message names it.
        "ReviewIgnored" | "Shortened" => transition.message.clone(),
        // Once per grant (or per reason: a grant can be blocked for several in turn).
        "ApprovalRequested" | "Approved" | "Scheduled" | "ExpiringSoon" | "Blocked" => transition.reason.clone(),
        // Access granted: once per binding.
        "Granted" => status.bindings.first().map(|b| b.uid.clone()).unwrap_or_default(),
        // The end: once per grant.
        _ => "end".to_owned(),
    };
    let id = record_id(&uid, transition.action, &token);
    AuditRecord {
        kind: "jitrbac.io/audit",
        schema_version: SCHEMA_VERSION,
        id,
        time,
        action: transition.action,
        reason: transition.reason.clone(),
        message: transition.message.clone(),
        grant: GrantId {
            kind: "AccessGrant",
            namespace: grant.namespace(),
            name: grant.name_any(),
            uid,
        },
        subjects: grant.spec.subjects.clone(),
        role_ref: grant.spec.role_ref.clone(),
        bindings: status.bindings.clone(),
        starts_at: status.starts_at.clone(),
        expires_at: status.expires_at.clone(),
        ended_at: status.ended_at.clone(),
        justification: grant.spec.reason.clone(),
        requester: grant.spec.requester.clone(),
        approvers: status.approvals.iter().map(|a| a.reviewer.clone()).collect(),
        denied_by: None,
        break_glass: grant.spec.break_glass,
    }
}

/// Builds the audit record of the sweeper deleting an overdue binding (action
/// `BindingSwept`, at `at`, the actual deletion time): reason `Overdue` when its grant still
/// exists (the grant's own `Expired` record follows when its reconcile catches up), reason
/// `GrantGone` when the grant no longer exists (then the grant named is only what the
/// binding claimed, and Kubernetes' garbage collector would have deleted it too).
pub fn swept(binding: &RoleBinding, candidate: &Candidate, grant_gone: bool, at: Timestamp) -> AuditRecord {
    let time = format_timestamp(at);
    let subjects = binding
        .subjects
        .iter()
        .flatten()
        .filter_map(|s| serde_json::from_value(serde_json::to_value(s).ok()?).ok())
        .collect();
    let role_ref = RoleRef {
        kind: serde_json::from_value(serde_json::Value::String(binding.role_ref.kind.clone()))
            .unwrap_or(RoleKind::Unknown),
        name: binding.role_ref.name.clone(),
        api_group: Some(binding.role_ref.api_group.clone()),
    };
    AuditRecord {
        kind: "jitrbac.io/audit",
        schema_version: SCHEMA_VERSION,
        id: record_id(&candidate.grant_uid, "BindingSwept", &time),
        action: "BindingSwept",
        reason: if grant_gone { "GrantGone" } else { "Overdue" }.to_owned(),
        message: format!(
            "deleted RoleBinding {}/{}, {} late: expired at {}{}",
            candidate.namespace,
            candidate.name,
            late(at.duration_since(candidate.expires_at)),
            format_timestamp(candidate.expires_at),
            if grant_gone {
                "; the grant it names no longer exists (its owner could not be verified)"
            } else {
                ""
            }
        ),
        grant: GrantId {
            kind: "AccessGrant",
            namespace: Some(candidate.namespace.clone()),
            name: candidate.grant_name.clone(),
            uid: candidate.grant_uid.clone(),
        },
        subjects,
        role_ref,
        bindings: vec![BindingRef {
            kind: "RoleBinding".to_owned(),
            namespace: Some(candidate.namespace.clone()),
            name: candidate.name.clone(),
            uid: candidate.uid.clone(),
        }],
        starts_at: None,
        expires_at: Some(format_timestamp(candidate.expires_at)),
        ended_at: Some(time.clone()),
        time,
        justification: None,
        requester: None,
        approvers: Vec::new(),
        denied_by: None,
        break_glass: false,
    }
}

/// "1.5 s", for messages.
fn late(d: jiff::SignedDuration) -> String {
    format!("{:.1} s", d.as_secs_f64().max(0.0))
}

/// The record id: hex SHA-256 of grant uid, action and a distinguishing token, first 32
/// digits.
fn record_id(grant_uid: &str, action: &str, token: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [grant_uid, action, token] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Writes audit records as JSON lines (standard output in the operator) and, when
/// configured, hands them to the audit sink.
pub struct AuditLog {
    out: Mutex<Box<dyn Write + Send>>,
    forward: Option<Arc<sink::Forwarder>>,
}

impl AuditLog {
    /// An audit log writing to standard output.
    pub fn stdout() -> Self {
        Self::to(Box::new(std::io::stdout()))
    }

    /// An audit log writing to any writer (tests use a buffer).
    pub fn to(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Mutex::new(out),
            forward: None,
        }
    }

    /// The same log, also handing every record to `forwarder` (the CloudEvents sink).
    pub fn forwarding_to(self, forwarder: Arc<sink::Forwarder>) -> Self {
        Self {
            forward: Some(forwarder),
            ..self
        }
    }

    /// Writes one record as a single line and flushes, then queues it for the sink
    /// (without waiting for delivery).
    ///
    /// Returns the IO error if the writer refuses the write; the caller logs it (an audit
    /// line that cannot be written must never stop a revocation). The record is queued
    /// for the sink either way.
    pub fn write(&self, record: &AuditRecord) -> std::io::Result<()> {
        if let Some(forward) = &self.forward {
            forward.offer(record);
        }
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        out.write_all(&line)?;
        out.flush()
    }

    /// At shutdown: gives the sink up to `grace` to deliver what it holds.
    pub async fn close(&self, grace: std::time::Duration) {
        if let Some(forward) = &self.forward {
            forward.close(grace).await;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::{AccessGrantSpec, RoleKind, SubjectKind};

    /// A grant `ns/g` (uid `u`) granting ClusterRole view to alice, reason `INC-1`.
    fn sample_grant() -> AccessGrant {
        let mut g = AccessGrant::new(
            "g",
            AccessGrantSpec {
                subjects: vec![Subject {
                    kind: SubjectKind::User,
                    name: "alice".into(),
                    namespace: None,
                    api_group: None,
                }],
                role_ref: RoleRef {
                    kind: RoleKind::ClusterRole,
                    name: "view".into(),
                    api_group: None,
                },
                duration: Some("1h".into()),
                expires_at: None,
                starts_at: None,
                reason: Some("INC-1".into()),
                revoked: false,
                break_glass: false,
                requester: None,
            },
        );
        g.metadata.uid = Some("u".into());
        g.metadata.namespace = Some("ns".into());
        g
    }

    fn t(action: &'static str) -> Transition {
        Transition {
            action,
            warning: false,
            reason: action.to_owned(),
            message: String::new(),
        }
    }

    /// The `Granted` record of [`sample_grant`] at 2026-11-29T12:00:00Z.
    pub(crate) fn sample_record() -> AuditRecord {
        let now: Timestamp = "2026-11-29T12:00:00Z".parse().expect("valid");
        record(&sample_grant(), &GrantStatus::default(), &t("Granted"), now)
    }

    #[test]
    fn ids_are_stable_per_transition_and_distinct_across_them() {
        let g = sample_grant();
        let now: Timestamp = "2026-11-29T12:00:00Z".parse().expect("valid");
        let status = GrantStatus::default();
        let a = record(&g, &status, &t("Granted"), now);
        let later = now + jiff::SignedDuration::from_secs(5);
        assert_eq!(
            a.id,
            record(&g, &status, &t("Granted"), later).id,
            "a repeat has the same id"
        );
        assert_ne!(a.id, record(&g, &status, &t("Expired"), now).id);
        assert_eq!(a.id.len(), 32);
        let json = serde_json::to_value(&a).expect("serializes");
        assert_eq!(json["grant"]["namespace"], "ns");
        assert_eq!(json["roleRef"]["name"], "view");
        assert_eq!(json["justification"], "INC-1");
    }
}
