//! The Argo CD health check for AccessGrants (`deploy/argocd/accessgrant-health.lua`), run
//! in a real Lua 5.1 interpreter (Argo CD's gopher-lua implements Lua 5.1) with only the
//! libraries Argo CD opens for health checks configured in `argocd-cm`:
//!
//! - against the sample grants in `tests/argocd/grants.yaml`, which cover every phase, a
//!   grant without status, a status behind its generation, and approval versus blocked;
//! - against statuses written by the operator's own planner (`plan`, then `settle`), so
//!   that renaming a reason or changing the conditions the script relies on fails here;
//! - and the `argocd-cm` patch and the Helm values must carry the script unchanged.

use jiff::{SignedDuration, Timestamp};
use jitrbac::api::{AccessGrant, AccessGrantSpec, GrantDuration, Identity, RoleKind, RoleRef, Subject, SubjectKind};
use jitrbac::grant::binding::role_binding_ref;
use jitrbac::grant::policy::{BreakGlass, Defaults};
use jitrbac::grant::{BindingStep, Blocker, Change, Eligibility, Facts, Limits, Outcome, Plan, plan, settle};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;
use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaOptions, LuaSerdeExt, StdLib, Table, Value};
use serde::Deserialize;

const SCRIPT: &str = "deploy/argocd/accessgrant-health.lua";
const CM_PATCH: &str = "deploy/argocd/argocd-cm-patch.yaml";
const HELM_VALUES: &str = "deploy/argocd/helm-values.yaml";
const SAMPLES: &str = "tests/argocd/grants.yaml";
/// The `argocd-cm` key Argo CD reads a health check for `jitrbac.io/AccessGrant` from.
const CM_KEY: &str = "resource.customizations.health.jitrbac.io_AccessGrant";
const PHASES: [&str; 7] = [
    "Pending",
    "Scheduled",
    "Active",
    "Expired",
    "Revoked",
    "Denied",
    "Failed",
];

fn read(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// What the script answered: an Argo CD health status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Health {
    status: String,
    message: String,
}

/// A Lua state with what Argo CD gives health checks from `argocd-cm`: the base, table and
/// package libraries (Argo CD adds a reduced `os`, which the script does not use).
fn sandbox() -> Lua {
    Lua::new_with(StdLib::TABLE | StdLib::PACKAGE, LuaOptions::new()).unwrap_or_else(|e| panic!("a Lua 5.1 state: {e}"))
}

/// Runs the script on `obj` as Argo CD does: `obj` is a global holding the object (JSON
/// null is nil, arrays are plain tables), and the chunk returns `{status=..., message=...}`.
fn health(script: &str, obj: &serde_json::Value) -> Result<Health, String> {
    let lua = sandbox();
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    let value = lua.to_value_with(obj, options).map_err(|e| e.to_string())?;
    lua.globals().set("obj", value).map_err(|e| e.to_string())?;
    let table: Table = lua
        .load(script)
        .set_name("accessgrant-health.lua")
        .eval()
        .map_err(|e| e.to_string())?;
    let status: String = table.get("status").map_err(|e| format!("status: {e}"))?;
    let message: String = table.get("message").map_err(|e| format!("message: {e}"))?;
    // Argo CD turns anything else into Unknown ("Lua returned an invalid health status").
    let valid = ["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"];
    if !valid.contains(&status.as_str()) {
        return Err(format!("{status:?} is not an Argo CD health status"));
    }
    Ok(Health { status, message })
}

#[test]
fn the_sandbox_lacks_the_libraries_argo_cd_does_not_open() {
    let lua = sandbox();
    for missing in ["string", "io", "os", "debug"] {
        let v: Value = lua.globals().get(missing).expect("global lookup");
        assert!(v.is_nil(), "{missing} must not be available, as in Argo CD");
    }
    for present in ["table", "ipairs", "tonumber", "type"] {
        let v: Value = lua.globals().get(present).expect("global lookup");
        assert!(!v.is_nil(), "{present} must be available, as in Argo CD");
    }
}

#[test]
fn argocd_cm_patch_and_helm_values_carry_the_script_unchanged() {
    let script = read(SCRIPT);
    let cm: serde_json::Value = serde_saphyr::from_str(&read(CM_PATCH)).expect("argocd-cm patch is YAML");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    assert!(
        cm["data"][CM_KEY].as_str() == Some(script.as_str()),
        "{CM_PATCH}: data.{CM_KEY} differs from {SCRIPT}; paste the script there again (indented under the key)"
    );
    let helm: serde_json::Value = serde_saphyr::from_str(&read(HELM_VALUES)).expect("Helm values are YAML");
    assert!(
        helm["configs"]["cm"][CM_KEY].as_str() == Some(script.as_str()),
        "{HELM_VALUES}: configs.cm.{CM_KEY} differs from {SCRIPT}; paste the script there again (indented under the key)"
    );
}

/// One sample of `tests/argocd/grants.yaml`.
#[derive(Debug, Deserialize)]
struct Sample {
    case: String,
    health: String,
    message: String,
    grant: serde_json::Value,
}

#[test]
fn sample_grants_get_the_documented_health() {
    let script = read(SCRIPT);
    let samples: Vec<Sample> = serde_saphyr::from_str(&read(SAMPLES)).expect("samples are YAML");
    assert!(samples.len() >= 15, "the samples file lost its cases");
    let mut failures = Vec::new();
    for s in &samples {
        let want = Health {
            status: s.health.clone(),
            message: s.message.clone(),
        };
        match health(&script, &s.grant) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!("{}:\n  want {want:?}\n  got  {got:?}", s.case)),
            Err(e) => failures.push(format!("{}: the script failed: {e}", s.case)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every phase is covered.
    for phase in PHASES {
        assert!(
            samples.iter().any(|s| s.grant["status"]["phase"] == phase),
            "no sample in phase {phase}"
        );
    }
}

// ---- Statuses written by the operator's planner -------------------------------------------

const T0: &str = "2026-11-29T12:00:00Z";

fn at(offset_secs: i64) -> Timestamp {
    let t0: Timestamp = T0.parse().unwrap_or_else(|e| panic!("{T0}: {e}"));
    t0 + SignedDuration::from_secs(offset_secs)
}

fn grant(name: &str, duration: Option<&str>, starts_at: Option<&str>, expires_at: Option<&str>) -> AccessGrant {
    let mut g = AccessGrant::new(
        name,
        AccessGrantSpec {
            subjects: vec![Subject {
                kind: SubjectKind::User,
                name: "alice".into(),
                namespace: None,
                api_group: None,
            }],
            role_ref: RoleRef {
                kind: RoleKind::ClusterRole,
                name: "edit".into(),
                api_group: None,
            },
            duration: duration.map(Into::into),
            expires_at: expires_at.map(Into::into),
            starts_at: starts_at.map(Into::into),
            reason: Some("INC-1234".into()),
            revoked: false,
            break_glass: false,
            requester: Some(Identity {
                username: "alice".into(),
                ..Identity::default()
            }),
        },
    );
    g.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some("payments".into()),
        uid: Some(format!("{name}-uid")),
        generation: Some(1),
        creation_timestamp: Some(Time(at(0))),
        ..ObjectMeta::default()
    };
    g
}

fn self_service() -> Facts {
    Facts::self_service(Defaults {
        max_duration: GrantDuration::WEEK,
        pending_timeout: GrantDuration::DAY,
    })
}

fn needs_approval() -> Facts {
    let mut facts = self_service();
    facts.policy.approvals = 1;
    facts
}

/// The result of carrying out a plan, as the operator's IO shell reports it.
enum Io {
    /// Everything the plan asked for worked.
    Works,
    /// The binding could not be made or restored.
    Blocked(Blocker),
}

/// One reconcile of `g` at `now`: plan, carry out (as `io` says), settle, store the status.
/// Returns the binding, if this reconcile created one.
fn reconcile(
    g: &mut AccessGrant,
    observed: &[RoleBinding],
    now: Timestamp,
    facts: &Facts,
    io: Io,
) -> Option<RoleBinding> {
    let p: Plan = plan(g, observed, now, &Limits::default(), facts);
    let mut exists = None;
    let outcome = match io {
        Io::Blocked(b) => Outcome::Blocked(b),
        Io::Works => match &p.binding {
            BindingStep::Create { binding, .. } => {
                let mut created = (**binding).clone();
                created.metadata.uid = Some("rb-uid".into());
                exists = Some(created.clone());
                Outcome::Applied {
                    binding: Some(role_binding_ref(&created)),
                    change: Change::Created,
                }
            }
            BindingStep::Keep(r) => Outcome::Applied {
                binding: Some(r.clone()),
                change: Change::None,
            },
            BindingStep::Nothing => Outcome::Applied {
                binding: None,
                change: Change::None,
            },
            other => panic!("unexpected binding step {other:?}"),
        },
    };
    let settled = settle(g, &p, &outcome, now);
    g.status = Some(settled.status);
    exists
}

fn blocker(reason: &'static str, stalled: bool) -> Blocker {
    Blocker {
        reason,
        message: format!("blocked: {reason}"),
        stalled,
    }
}

/// The grant's health, and the message of its Ready condition.
fn judge(script: &str, g: &AccessGrant) -> (Health, String) {
    let obj = serde_json::to_value(g).unwrap_or_else(|e| panic!("a grant serializes: {e}"));
    let got = health(script, &obj).unwrap_or_else(|e| panic!("the script failed on {obj}: {e}"));
    let ready = g
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    (got, ready)
}

/// Asserts the health of a grant the operator has reconciled: `status`, with the Ready
/// condition's message (which must contain `hint`).
#[track_caller]
fn assert_health(script: &str, g: &AccessGrant, status: &str, hint: &str) {
    let (got, ready) = judge(script, g);
    let phase = g.status.as_ref().and_then(|s| s.phase);
    assert_eq!(got.status, status, "phase {phase:?}: {got:?}");
    assert_eq!(got.message, ready, "the message is the Ready condition's");
    assert!(got.message.contains(hint), "{:?} should mention {hint:?}", got.message);
}

#[test]
fn operator_statuses_through_a_grants_life_get_the_documented_health() {
    let script = read(SCRIPT);

    let fresh = grant("fresh", Some("1h"), None, None);
    let (got, _) = judge(&script, &fresh);
    assert_eq!(got.status, "Progressing");

    // Active, then expired at expiresAt.
    let mut g = grant("active", Some("1h"), None, None);
    let binding = reconcile(&mut g, &[], at(0), &self_service(), Io::Works).expect("a binding");
    assert_health(&script, &g, "Healthy", "granted to User/alice");
    reconcile(&mut g, &[binding], at(3600), &self_service(), Io::Works);
    assert_health(&script, &g, "Healthy", "access ended at");

    // Scheduled for later.
    let mut g = grant("scheduled", Some("1h"), Some("2026-11-29T13:00:00Z"), None);
    reconcile(&mut g, &[], at(0), &self_service(), Io::Works);
    assert_health(&script, &g, "Healthy", "access begins at 2026-11-29T13:00:00Z");

    // Waiting for approval, then the request lapsing.
    let mut g = grant("approval", None, None, Some("2026-12-05T12:00:00Z"));
    reconcile(&mut g, &[], at(0), &needs_approval(), Io::Works);
    assert_health(&script, &g, "Suspended", "waiting for approval");
    reconcile(&mut g, &[], at(2 * 86_400), &needs_approval(), Io::Works);
    assert_health(&script, &g, "Degraded", "the request expired");

    // Refused: not eligible, too long; impossible as written.
    let mut g = grant("not-eligible", Some("1h"), None, None);
    let mut facts = self_service();
    facts.eligibility = Eligibility::NotEligible("needs the request verb".into());
    reconcile(&mut g, &[], at(0), &facts, Io::Works);
    assert_health(&script, &g, "Degraded", "may not request this role");
    let mut g = grant("too-long", Some("30d"), None, None);
    reconcile(&mut g, &[], at(0), &self_service(), Io::Works);
    assert_health(&script, &g, "Degraded", "longer than the maximum");
    let mut g = grant("ambiguous", Some("1h"), None, Some("2026-12-05T12:00:00Z"));
    reconcile(&mut g, &[], at(0), &self_service(), Io::Works);
    assert_eq!(
        g.status.as_ref().and_then(|s| s.phase).map(|p| p.as_str()),
        Some("Failed")
    );
    assert_health(&script, &g, "Degraded", "exactly one of");

    // Blocked: retried by the operator, or needing a person.
    let mut g = grant("role-missing", Some("1h"), None, None);
    reconcile(
        &mut g,
        &[],
        at(0),
        &self_service(),
        Io::Blocked(blocker("RoleNotFound", false)),
    );
    assert_health(&script, &g, "Progressing", "RoleNotFound");
    for reason in ["NameClash", "Forbidden", "InvalidBinding"] {
        let mut g = grant("blocked", Some("1h"), None, None);
        reconcile(&mut g, &[], at(0), &self_service(), Io::Blocked(blocker(reason, true)));
        assert_health(&script, &g, "Degraded", reason);
    }

    // Active, but an edited binding cannot be restored: access continues, a person must act.
    let mut g = grant("drift", Some("1h"), None, None);
    let mut edited = reconcile(&mut g, &[], at(0), &self_service(), Io::Works).expect("a binding");
    edited.subjects = None;
    reconcile(
        &mut g,
        &[edited],
        at(60),
        &self_service(),
        Io::Blocked(blocker("Forbidden", true)),
    );
    assert_eq!(
        g.status.as_ref().and_then(|s| s.phase).map(|p| p.as_str()),
        Some("Active")
    );
    assert_health(&script, &g, "Degraded", "Forbidden");

    // Revoked in the spec: Progressing until the operator has seen the new generation.
    let mut g = grant("revoked", Some("1h"), None, None);
    let binding = reconcile(&mut g, &[], at(0), &self_service(), Io::Works).expect("a binding");
    g.spec.revoked = true;
    g.metadata.generation = Some(2);
    let (got, _) = judge(&script, &g);
    assert_eq!(
        got,
        Health {
            status: "Progressing".into(),
            message: "waiting for the jitrbac operator to observe generation 2 (status describes generation 1)".into(),
        }
    );
    reconcile(&mut g, &[binding], at(60), &self_service(), Io::Works);
    assert_health(&script, &g, "Healthy", "spec.revoked is true");

    // Break-glass without an approving review by the deadline.
    let mut g = grant("break-glass", Some("1h"), None, None);
    g.spec.break_glass = true;
    let mut facts = needs_approval();
    facts.policy.break_glass = Some(BreakGlass {
        max_duration: GrantDuration::from_secs(3600).expect("non-zero"),
        review_deadline: GrantDuration::from_secs(600).expect("non-zero"),
    });
    let binding = reconcile(&mut g, &[], at(0), &facts, Io::Works).expect("a binding");
    assert_health(&script, &g, "Healthy", "granted to User/alice");
    reconcile(&mut g, &[binding], at(600), &facts, Io::Works);
    assert_health(&script, &g, "Healthy", "was not approved by");
}
