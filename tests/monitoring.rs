//! The chart's monitoring: the PrometheusRule and the Grafana dashboard, rendered by the
//! pinned `helm` (built by `tests/controlplane/build.sh`; no control plane needed).
//!
//! Every alert expression and every dashboard query is parsed with a real PromQL parser,
//! and may use only the metrics the operator exports (and `up`), with their labels and
//! label values; every alert has a summary, a description and a runbook link to a section
//! that exists in `docs/runbook.md`.

#![allow(missing_docs)]

#[path = "support/controlplane.rs"]
mod controlplane;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};
use serde_json::Value;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const RELEASE: &str = "jitrbac";
const NAMESPACE: &str = "jitrbac-system";
const RUNBOOK_BASE: &str = "https://github.com/jitrbac/jitrbac/blob/main/docs/runbook.md";

/// Values that turn all the monitoring on.
const MONITORING_ON: &[&str] = &[
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.grafanaDashboard.enabled=true",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    Histogram,
}

/// The operator's metrics (`src/metrics/mod.rs`, documented in `docs/metrics.md`): name,
/// type, labels.
const METRICS: &[(&str, Type, &[&str])] = &[
    ("jitrbac_grants", Type::Gauge, &["kind", "phase"]),
    ("jitrbac_grant_transitions_total", Type::Counter, &["kind", "phase"]),
    ("jitrbac_grants_denied_total", Type::Counter, &["kind", "reason"]),
    ("jitrbac_expiry_lag_seconds", Type::Histogram, &["kind"]),
    ("jitrbac_bindings_overdue", Type::Gauge, &[]),
    ("jitrbac_bindings_overdue_unverified", Type::Gauge, &[]),
    ("jitrbac_next_expiry_seconds", Type::Gauge, &["kind"]),
    ("jitrbac_break_glass_grants_active", Type::Gauge, &[]),
    ("jitrbac_reconcile_duration_seconds", Type::Histogram, &["kind"]),
    ("jitrbac_reconcile_errors_total", Type::Counter, &["kind", "reason"]),
    ("jitrbac_drift_repairs_total", Type::Counter, &["kind"]),
    (
        "jitrbac_admission_requests_total",
        Type::Counter,
        &["webhook", "decision"],
    ),
    ("jitrbac_admission_duration_seconds", Type::Histogram, &["webhook"]),
    ("jitrbac_leader", Type::Gauge, &[]),
    ("jitrbac_audit_sink_events_total", Type::Counter, &["result"]),
    ("jitrbac_audit_sink_buffered", Type::Gauge, &[]),
    ("jitrbac_build_info", Type::Gauge, &["version"]),
];

/// The values a label can take, where the operator fixes them.
const LABEL_VALUES: &[(&str, &[&str])] = &[
    ("kind", &["AccessGrant"]),
    (
        "phase",
        &[
            "Pending",
            "Scheduled",
            "Active",
            "Expired",
            "Revoked",
            "Denied",
            "Failed",
        ],
    ),
    ("decision", &["allowed", "denied", "error"]),
    ("result", &["delivered", "retried", "dropped"]),
];

/// Labels Prometheus attaches to every series scraped through the chart's ServiceMonitor.
const TARGET_LABELS: &[&str] = &[
    "job",
    "namespace",
    "pod",
    "instance",
    "service",
    "endpoint",
    "container",
];

/// The alerts the chart ships, all enabled by default.
const ALERTS: &[&str] = &[
    "JitrbacBindingOverdue",
    "JitrbacUnverifiedBindingOverdue",
    "JitrbacOperatorDown",
    "JitrbacNoLeader",
    "JitrbacMultipleLeaders",
    "JitrbacReconcileErrors",
    "JitrbacBreakGlassGrantActive",
    "JitrbacAdmissionErrors",
    "JitrbacAuditSinkDroppingEvents",
    "JitrbacExpiryLagHigh",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The pinned helm binary (built once and cached by `tests/controlplane/build.sh`).
fn helm() -> Result<&'static Path> {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    if let Some(h) = HELM.get() {
        return Ok(h);
    }
    let dir = controlplane::build_binaries()?;
    Ok(HELM.get_or_init(|| dir.join("helm")))
}

fn run_helm(args: &[&str]) -> Result<Output> {
    let home = std::env::temp_dir().join(format!("jitrbac-monitoring-helm-{}", std::process::id()));
    Ok(Command::new(helm()?)
        .args(args)
        .current_dir(repo())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()?)
}

/// Helm arguments for `values`: `--set` for each, except those that are flags already
/// (`--set-json=...`: `--set` makes `0.25` a string, which the schema refuses).
fn value_args<'a>(values: &[&'a str]) -> Vec<&'a str> {
    let mut args = Vec::new();
    for v in values {
        if !v.starts_with("--") {
            args.push("--set");
        }
        args.push(*v);
    }
    args
}

/// `helm template` of the chart with `values` (see [`value_args`]), showing only
/// `template` (a file under `templates/`), parsed.
fn render(template: &str, values: &[&str]) -> Result<Value> {
    let show = format!("templates/{template}");
    let mut args = vec![
        "template",
        RELEASE,
        "charts/jitrbac",
        "-n",
        NAMESPACE,
        "--show-only",
        &show,
    ];
    args.extend(value_args(values));
    let out = run_helm(&args)?;
    if !out.status.success() {
        return Err(format!("helm {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_saphyr::from_str(&String::from_utf8(out.stdout)?)?)
}

/// The anchors GitHub gives the headings of a Markdown file.
fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut anchors = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let text = line.trim_start_matches('#').trim();
        let slug: String = text
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut unique = slug.clone();
        let mut n = 0;
        while anchors.contains(&unique) {
            n += 1;
            unique = format!("{slug}-{n}");
        }
        anchors.insert(unique);
    }
    anchors
}

/// What checking one PromQL expression found wrong.
#[derive(Default)]
struct Check {
    problems: Vec<String>,
    /// Every series selector of the expression.
    selectors: Vec<VectorSelector>,
}

impl Check {
    /// The labels a series of `name` may carry, or `None` if no exported series has it.
    fn series_labels(name: &str) -> Option<BTreeSet<&'static str>> {
        let mut labels: BTreeSet<&'static str> = TARGET_LABELS.iter().copied().collect();
        if name == "up" {
            return Some(labels);
        }
        for (metric, ty, own) in METRICS {
            let matches = match ty {
                Type::Histogram => {
                    if name == format!("{metric}_bucket") {
                        labels.insert("le");
                        true
                    } else {
                        name == format!("{metric}_sum") || name == format!("{metric}_count")
                    }
                }
                Type::Counter | Type::Gauge => name == *metric,
            };
            if matches {
                labels.extend(own.iter().copied());
                return Some(labels);
            }
        }
        None
    }

    /// Checks one series selector; returns the labels its series carry.
    fn selector(&mut self, vs: &VectorSelector) -> BTreeSet<String> {
        self.selectors.push(vs.clone());
        let by_matcher = vs
            .matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__" && m.op == MatchOp::Equal)
            .map(|m| m.value.clone());
        let Some(name) = vs.name.clone().or(by_matcher) else {
            self.problems.push(format!("{vs}: a selector without a metric name"));
            return BTreeSet::new();
        };
        let Some(allowed) = Self::series_labels(&name) else {
            self.problems
                .push(format!("{vs}: {name} is not a metric the operator exports"));
            return BTreeSet::new();
        };
        let all: Vec<&Matcher> = vs
            .matchers
            .matchers
            .iter()
            .chain(vs.matchers.or_matchers.iter().flatten())
            .collect();
        for m in all {
            if m.name == "__name__" {
                continue;
            }
            if !allowed.contains(m.name.as_str()) {
                self.problems.push(format!("{vs}: {name} has no label {:?}", m.name));
                continue;
            }
            let known = LABEL_VALUES.iter().find(|(l, _)| *l == m.name);
            if let (Some((_, values)), MatchOp::Equal | MatchOp::NotEqual) = (known, &m.op)
                && !values.contains(&m.value.as_str())
            {
                self.problems.push(format!(
                    "{vs}: label {} never has the value {:?} (only {values:?})",
                    m.name, m.value
                ));
            }
        }
        allowed.into_iter().map(String::from).collect()
    }

    /// Checks `expr` recursively; returns the labels its result may carry (roughly: the
    /// labels of the series beneath, narrowed by aggregations).
    fn expr(&mut self, expr: &Expr) -> BTreeSet<String> {
        match expr {
            Expr::VectorSelector(vs) => self.selector(vs),
            Expr::MatrixSelector(ms) => self.selector(&ms.vs),
            Expr::Aggregate(agg) => {
                let inner = self.expr(&agg.expr);
                if let Some(param) = &agg.param {
                    self.expr(param);
                }
                match &agg.modifier {
                    Some(LabelModifier::Include(by)) => {
                        for label in &by.labels {
                            if !inner.contains(label) {
                                self.problems.push(format!(
                                    "{expr}: aggregates by {label:?}, which the series beneath do not carry"
                                ));
                            }
                        }
                        by.labels.iter().cloned().collect()
                    }
                    Some(LabelModifier::Exclude(without)) => {
                        inner.into_iter().filter(|l| !without.labels.contains(l)).collect()
                    }
                    None => BTreeSet::new(),
                }
            }
            Expr::Binary(b) => {
                let mut labels = self.expr(&b.lhs);
                labels.extend(self.expr(&b.rhs));
                labels
            }
            Expr::Unary(u) => self.expr(&u.expr),
            Expr::Paren(p) => self.expr(&p.expr),
            Expr::Subquery(s) => self.expr(&s.expr),
            Expr::Call(call) => {
                let mut labels = BTreeSet::new();
                for arg in &call.args.args {
                    labels.extend(self.expr(arg));
                }
                if call.func.name == "histogram_quantile" {
                    labels.remove("le");
                }
                labels
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => BTreeSet::new(),
        }
    }
}

/// Parses `promql` and checks it; `what` names it in messages.
fn check_promql(what: &str, promql: &str) -> Check {
    let mut check = Check::default();
    match parser::parse(promql) {
        Ok(expr) => {
            check.expr(&expr);
            if check.selectors.is_empty() {
                check.problems.push("selects no series".into());
            }
        }
        Err(e) => check.problems.push(format!("{promql:?} does not parse: {e}")),
    }
    for problem in &mut check.problems {
        *problem = format!("{what}: {problem}");
    }
    check
}

/// Whether `vs` has the matcher `name op "value"`.
fn has_matcher(vs: &VectorSelector, name: &str, op: &MatchOp, value: &str) -> bool {
    vs.matchers
        .matchers
        .iter()
        .any(|m| m.name == name && &m.op == op && m.value == value)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Result<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no string at {pointer}").into())
}

fn fail_on(problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{} problem(s):\n{}", problems.len(), problems.join("\n")).into())
    }
}

#[test]
fn every_alert_parses_uses_exported_metrics_and_links_to_its_runbook_section() -> Result<()> {
    let rule = render("prometheusrule.yaml", MONITORING_ON)?;
    let service = render("service.yaml", MONITORING_ON)?;
    let monitor = render("servicemonitor.yaml", MONITORING_ON)?;
    // The Prometheus Operator names the job after the Service unless told otherwise.
    assert!(
        monitor.pointer("/spec/jobLabel").is_none(),
        "the ServiceMonitor must leave the job label to the Service name"
    );
    let job = str_at(&service, "/metadata/name")?;
    let anchors = heading_anchors(&std::fs::read_to_string(repo().join("docs/runbook.md"))?);

    assert_eq!(str_at(&rule, "/apiVersion")?, "monitoring.coreos.com/v1");
    assert_eq!(str_at(&rule, "/kind")?, "PrometheusRule");
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    let groups = rule
        .pointer("/spec/groups")
        .and_then(Value::as_array)
        .ok_or("no groups")?;
    for rule in groups.iter().flat_map(|g| g["rules"].as_array().into_iter().flatten()) {
        let alert = rule["alert"].as_str().ok_or("a rule without an alert name")?;
        seen.push(alert.to_owned());
        let expr = rule["expr"].as_str().ok_or_else(|| format!("{alert}: no expr"))?;
        let check = check_promql(alert, expr);
        problems.extend(check.problems);
        for vs in &check.selectors {
            for (label, value) in [("job", job), ("namespace", NAMESPACE)] {
                if !has_matcher(vs, label, &MatchOp::Equal, value) {
                    problems.push(format!("{alert}: {vs} does not select {label}={value:?}"));
                }
            }
        }
        // Prometheus takes 0s (fire at once), which the PromQL parser refuses as a range.
        let for_ = rule["for"].as_str().unwrap_or_default();
        let digits = for_.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let zero = !digits.is_empty() && digits.chars().all(|c| c == '0');
        if !zero && promql_parser::util::parse_duration(for_).is_err() {
            problems.push(format!("{alert}: for {for_:?} is not a duration"));
        }
        let severity = rule.pointer("/labels/severity").and_then(Value::as_str);
        if !matches!(severity, Some("critical" | "warning" | "info")) {
            problems.push(format!("{alert}: severity {severity:?}"));
        }
        for annotation in ["summary", "description"] {
            let text = rule["annotations"][annotation].as_str().unwrap_or_default();
            if text.trim().len() < 20 {
                problems.push(format!("{alert}: {annotation} missing or too short: {text:?}"));
            }
        }
        let url = rule["annotations"]["runbook_url"].as_str().unwrap_or_default();
        match url.split_once('#') {
            Some((base, anchor)) if base == RUNBOOK_BASE && anchor == alert.to_lowercase() => {
                if !anchors.contains(anchor) {
                    problems.push(format!("{alert}: docs/runbook.md has no heading for #{anchor}"));
                }
            }
            _ => problems.push(format!("{alert}: runbook_url {url:?} is not {RUNBOOK_BASE}#<alert>")),
        }
    }
    assert_eq!(seen, ALERTS, "the alerts the chart ships by default");
    fail_on(problems)
}

/// Replaces Grafana's variables in a query by values a real query could have.
fn substitute_grafana_variables(query: &str) -> String {
    let mut out = query.to_owned();
    for (var, value) in [
        ("$__rate_interval", "2m"),
        ("$__interval", "30s"),
        ("$__range", "6h"),
        ("${namespace}", NAMESPACE),
        ("$namespace", NAMESPACE),
        ("${job}", "jitrbac-metrics"),
        ("$job", "jitrbac-metrics"),
    ] {
        out = out.replace(var, value);
    }
    out
}

/// Every panel of a dashboard, those inside rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    let mut todo: Vec<&Value> = dashboard["panels"].as_array().into_iter().flatten().collect();
    while let Some(p) = todo.pop() {
        todo.extend(p["panels"].as_array().into_iter().flatten());
        all.push(p);
    }
    all
}

#[test]
fn every_dashboard_query_parses_and_uses_exported_metrics() -> Result<()> {
    let file = std::fs::read_to_string(repo().join("charts/jitrbac/files/dashboards/jitrbac.json"))?;
    let config_map = render("dashboard.yaml", MONITORING_ON)?;
    assert_eq!(
        str_at(&config_map, "/metadata/labels/grafana_dashboard")?,
        "1",
        "the label the Grafana sidecar looks for"
    );
    assert_eq!(
        str_at(&config_map, "/data/jitrbac.json")?.trim_end(),
        file.trim_end(),
        "the ConfigMap carries the dashboard file as it is"
    );
    let dashboard: Value = serde_json::from_str(&file)?;
    let variables = dashboard
        .pointer("/templating/list")
        .and_then(Value::as_array)
        .ok_or("no template variables")?;
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus data source variable"
    );

    let mut problems = Vec::new();
    let mut queries = 0;
    // Variables' own queries: label_values(<selector>, <label>).
    for v in variables.iter().filter(|v| v["type"] == "query") {
        let name = v["name"].as_str().unwrap_or_default();
        let query = v.pointer("/query/query").and_then(Value::as_str).unwrap_or_default();
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.rsplit_once(','))
            .map(|(selector, _)| selector)
            .ok_or_else(|| format!("variable {name}: {query:?} is not label_values(<selector>, <label>)"))?;
        problems.extend(check_promql(&format!("variable {name}"), &substitute_grafana_variables(inner)).problems);
        if v["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("variable {name}: not on the ${{datasource}} data source"));
        }
    }
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        if panel["type"] == "row" {
            continue;
        }
        if panel["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("panel {title:?}: not on the ${{datasource}} data source"));
        }
        let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("panel {title:?}: no queries"));
        }
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            let what = format!("panel {title:?} query {}", target["refId"]);
            if target["datasource"]["uid"] != "${datasource}" {
                problems.push(format!("{what}: not on the ${{datasource}} data source"));
            }
            let check = check_promql(&what, &substitute_grafana_variables(expr));
            problems.extend(check.problems);
            // Every query is limited to the operator the variables pick.
            for vs in &check.selectors {
                for (label, value) in [("namespace", NAMESPACE), ("job", "jitrbac-metrics")] {
                    if !has_matcher(vs, label, &MatchOp::Equal, value) {
                        problems.push(format!("{what}: {vs} is not limited to ${label}"));
                    }
                }
            }
            queries += 1;
        }
    }
    assert!(queries >= 20, "the dashboard has {queries} queries");
    fail_on(problems)
}

#[test]
fn alert_settings_reach_the_rules() -> Result<()> {
    let mut sets = MONITORING_ON.to_vec();
    sets.extend([
        "metrics.prometheusRule.alerts.multipleLeaders.enabled=false",
        "--set-json=metrics.prometheusRule.alerts.expiryLagHigh.threshold=0.25",
        "metrics.prometheusRule.alerts.expiryLagHigh.window=1h",
        "metrics.prometheusRule.alerts.breakGlassActive.severity=info",
        "metrics.prometheusRule.alerts.noLeader.for=90s",
        "metrics.prometheusRule.alertLabels.team=platform",
        "metrics.prometheusRule.labels.release=kube-prometheus",
        "metrics.prometheusRule.runbookBaseUrl=https://example.com/runbook",
    ]);
    let rule = render("prometheusrule.yaml", &sets)?;
    assert_eq!(str_at(&rule, "/metadata/labels/release")?, "kube-prometheus");
    let rules = rule
        .pointer("/spec/groups/0/rules")
        .and_then(Value::as_array)
        .ok_or("no rules")?;
    let find = |name: &str| rules.iter().find(|r| r["alert"] == name);
    assert!(find("JitrbacMultipleLeaders").is_none(), "a disabled alert is left out");
    let lag = find("JitrbacExpiryLagHigh").ok_or("no JitrbacExpiryLagHigh")?;
    let expr = str_at(lag, "/expr")?;
    assert!(expr.contains("[1h]") && expr.trim_end().ends_with("> 0.25"), "{expr}");
    let glass = find("JitrbacBreakGlassGrantActive").ok_or("no JitrbacBreakGlassGrantActive")?;
    assert_eq!(str_at(glass, "/labels/severity")?, "info");
    assert_eq!(str_at(glass, "/labels/team")?, "platform");
    assert_eq!(
        str_at(glass, "/annotations/runbook_url")?,
        "https://example.com/runbook#jitrbacbreakglassgrantactive"
    );
    let leader = find("JitrbacNoLeader").ok_or("no JitrbacNoLeader")?;
    assert_eq!(str_at(leader, "/for")?, "90s");
    Ok(())
}

#[test]
fn the_chart_lints_with_monitoring_on_and_renders_none_by_default() -> Result<()> {
    let mut args = vec!["lint", "--strict", "charts/jitrbac"];
    args.extend(value_args(MONITORING_ON));
    let out = run_helm(&args)?;
    assert!(
        out.status.success(),
        "helm lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_helm(&["template", RELEASE, "charts/jitrbac", "-n", NAMESPACE])?;
    let rendered = String::from_utf8(out.stdout)?;
    assert!(out.status.success());
    assert!(
        !rendered.contains("kind: PrometheusRule"),
        "no PrometheusRule by default"
    );
    assert!(!rendered.contains("grafana_dashboard"), "no dashboard by default");
    Ok(())
}

#[test]
fn bad_monitoring_values_fail_with_a_readable_error() -> Result<()> {
    let cases: &[(&[&str], &str)] = &[
        (&["metrics.prometheusRule.alerts.noLeader.severity=page"], "severity"),
        (&["metrics.prometheusRule.alerts.noLeader.for=5 minutes"], "for"),
        (&["metrics.prometheusRule.alerts.expiryLagHigh.window=0s"], "window"),
        (
            &["metrics.prometheusRule.alerts.admissionErrors.threshold=2"],
            "threshold",
        ),
        (&["metrics.prometheusRule.alerts.nonsense.enabled=true"], "nonsense"),
        (&["metrics.prometheusRule.alertLabels.severity=page"], "alertLabels"),
        (&["metrics.grafanaDashboard.labelValue=1"], "labelValue"),
        (
            &["metrics.prometheusRule.enabled=true", "metrics.service.enabled=false"],
            "needs metrics.service.enabled",
        ),
    ];
    for (sets, expected) in cases {
        let mut args = vec!["template", RELEASE, "charts/jitrbac", "-n", NAMESPACE];
        args.extend(value_args(sets));
        let out = run_helm(&args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {sets:?} was accepted");
        assert!(
            stderr.contains(expected),
            "--set {sets:?}: the error does not name {expected:?}: {stderr}"
        );
    }
    // Every alert off with the rule on is a mistake, not an empty PrometheusRule.
    let mut args = vec!["template", RELEASE, "charts/jitrbac", "-n", NAMESPACE];
    let off: Vec<String> = ALERTS_KEYS
        .iter()
        .map(|k| format!("metrics.prometheusRule.alerts.{k}.enabled=false"))
        .collect();
    args.extend(["--set", "metrics.prometheusRule.enabled=true"]);
    for set in &off {
        args.extend(["--set", set.as_str()]);
    }
    let out = run_helm(&args)?;
    assert!(!out.status.success(), "a PrometheusRule without alerts was rendered");
    assert!(String::from_utf8_lossy(&out.stderr).contains("every alert"));
    Ok(())
}

/// The keys of the alerts under `metrics.prometheusRule.alerts`.
const ALERTS_KEYS: &[&str] = &[
    "bindingOverdue",
    "unverifiedBindingOverdue",
    "operatorDown",
    "noLeader",
    "multipleLeaders",
    "reconcileErrors",
    "breakGlassActive",
    "admissionErrors",
    "auditSinkDropping",
    "expiryLagHigh",
];

/// The metrics table of `docs/metrics.md`: name, type and labels of every row.
fn documented_metrics() -> Result<Vec<(String, String, Vec<String>)>> {
    let doc = std::fs::read_to_string(repo().join("docs/metrics.md"))?;
    Ok(doc
        .lines()
        .filter(|l| l.starts_with("| `jitrbac_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let labels = cells[3]
                .split(',')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .filter(|c| !c.is_empty())
                .collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].to_owned(), labels)
        })
        .collect())
}

#[test]
fn the_metrics_checked_here_are_the_documented_ones() -> Result<()> {
    let documented = documented_metrics()?;
    let known: Vec<(String, String, Vec<String>)> = METRICS
        .iter()
        .map(|(name, t, labels)| {
            let t = match t {
                Type::Counter => "counter",
                Type::Gauge => "gauge",
                Type::Histogram => "histogram",
            };
            (
                (*name).to_owned(),
                t.to_owned(),
                labels.iter().map(|l| (*l).to_owned()).collect(),
            )
        })
        .collect();
    let sorted = |mut v: Vec<(String, String, Vec<String>)>| {
        v.sort();
        v
    };
    assert_eq!(sorted(known), sorted(documented), "docs/metrics.md and METRICS differ");
    Ok(())
}
