//! The report: Markdown for people, JSON for machines, plots of the distributions.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::process::{Load, Machine};
use crate::scenarios::{Expiry, Latency, Physical, Restart, Scale, Sizes, Storm};
use crate::support::Result;

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started: String,
    /// `git describe --always --dirty` of the tree when the run started (the operator
    /// is built from it then).
    pub revision: Option<String>,
    pub suite: &'static str,
    pub machine: Machine,
    pub control_plane: String,
    pub operator: OperatorSettings,
    pub sizes: Sizes,
    pub physical: Option<Physical>,
    pub latency: Option<Latency>,
    pub expiry: Vec<Expiry>,
    pub storm: Option<Storm>,
    pub restart: Option<Restart>,
    pub scale: Option<Scale>,
}

/// How the operator ran.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorSettings {
    pub version: &'static str,
    pub build: &'static str,
    pub flags: Vec<String>,
    pub concurrency: String,
    pub client_rate_limit: String,
    pub log_level: &'static str,
}

/// The value of command-line flag `name` in `args`, given as `name value` or `name=value`.
pub fn flag_value(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .or_else(|| args.iter().find_map(|a| a.strip_prefix(&prefix).map(str::to_owned)))
}

impl OperatorSettings {
    /// The settings of an operator run with `flags` on top of its defaults.
    pub fn of(flags: Vec<String>) -> Self {
        let flag = |name: &str| flag_value(&flags, name);
        let client_rate_limit = match (flag("--kube-api-qps"), flag("--kube-api-burst")) {
            (Some(qps), burst) if qps != "0" => format!(
                "--kube-api-qps {qps}, --kube-api-burst {}",
                burst.unwrap_or_else(|| "(twice the qps)".to_owned())
            ),
            _ => "none (--kube-api-qps 0, the default: the API server's priority and fairness applies)".to_owned(),
        };
        Self {
            version: env!("CARGO_PKG_VERSION"),
            build: "release",
            concurrency: flag("--concurrency").unwrap_or_else(|| "16".to_owned()),
            client_rate_limit,
            flags,
            log_level: "info",
        }
    }
}

/// Writes `report.md`, `report.json` and the plots into `dir`.
pub fn write(report: &Report, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    // Plots of an earlier run's scenarios would pass for this run's.
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "png") {
            std::fs::remove_file(path)?;
        }
    }
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(report)?)?;
    let plots = plots(report, dir);
    let mut md = markdown(report, &plots);
    md.push_str(&history(
        &std::fs::read_to_string(dir.join("history.jsonl")).unwrap_or_default(),
    ));
    std::fs::write(dir.join("report.md"), md)?;
    Ok(())
}

/// How many earlier runs the history section shows.
const HISTORY_RUNS: usize = 20;

/// The history section: the headline numbers of the last runs (lines of `history.jsonl`,
/// oldest first), so a change shows its before and after.
fn history(jsonl: &str) -> String {
    let runs: Vec<serde_json::Value> = jsonl.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let mut md = String::from(
        "## History\n\nHeadline numbers of the latest runs on this machine (from `history.jsonl`), in milliseconds but for memory (MiB) and idle CPU (seconds); expiry lag p99 by number of active grants.\n\n\
         | run | revision | suite | operator flags | DELETE p50 | grant p99 | expiry lag p99 | storm last | restart all revoked | RSS | idle CPU |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for run in runs.iter().skip(runs.len().saturating_sub(HISTORY_RUNS)) {
        let num = |key: &str, digits: usize| match run.get(key).and_then(serde_json::Value::as_f64) {
            Some(v) => format!("{v:.digits$}"),
            None => "–".to_owned(),
        };
        let text = |key: &str| {
            run.get(key)
                .and_then(serde_json::Value::as_str)
                .unwrap_or("–")
                .to_owned()
        };
        let lag = run
            .get("expiryLagP99Ms")
            .and_then(serde_json::Value::as_object)
            .map(|m| {
                let mut sizes: Vec<(u64, f64)> = m
                    .iter()
                    .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_f64()?)))
                    .collect();
                sizes.sort_by_key(|(n, _)| *n);
                sizes
                    .iter()
                    .map(|(n, v)| format!("{n}: {v:.1}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            text("started"),
            text("revision"),
            // A run of some scenarios only (`--only`) says which.
            match run.get("scenarios").and_then(serde_json::Value::as_str) {
                Some(only) if only.split(',').count() < crate::SCENARIOS.len() => format!("{} ({only})", text("suite")),
                _ => text("suite"),
            },
            match text("operatorFlags").as_str() {
                "" | "–" => "(defaults)".to_owned(),
                flags => format!("`{flags}`"),
            },
            num("deleteRttP50Ms", 1),
            num("grantLatencyP99Ms", 1),
            if lag.is_empty() { "–".to_owned() } else { lag },
            num("stormLastMs", 0),
            num("restartAllRevokedMs", 0),
            num("scaleRssMib", 1),
            num("idleCpuSeconds", 3),
        );
    }
    md
}

fn markdown(r: &Report, plots: &[(String, String)]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# jitrbac benchmark ({} suite)\n", r.suite);
    let _ = writeln!(
        md,
        "Run {} at revision `{}` on {} CPUs, {:.1} GiB, Linux {}; control plane {} (etcd, kube-apiserver, kube-controller-manager on the same machine). \
         Operator {} ({} build), flags `{}`: {} reconciles at a time, client rate limit: {}; log level {}.\n",
        r.started,
        r.revision.as_deref().unwrap_or("unknown"),
        r.machine.cpus,
        r.machine.memory_gib,
        r.machine.kernel,
        r.control_plane,
        r.operator.version,
        r.operator.build,
        if r.operator.flags.is_empty() {
            "(defaults)".to_owned()
        } else {
            r.operator.flags.join(" ")
        },
        r.operator.concurrency,
        r.operator.client_rate_limit,
        r.operator.log_level,
    );
    let _ = writeln!(
        md,
        "Each scenario ran on a fresh control plane with a fresh operator; the admission webhooks are served by a second operator process. \
         Times are milliseconds, observed from outside the operator (bindings through a watch, authorization by SubjectAccessReview, timed at the request of the first one answered no, polled every 5 ms), \
         except where the operator's own measure is quoted. \
         The workload is deterministic (no random input): each suite has fixed counts, rates and schedules (sizes in `report.json`), so runs compare.\n"
    );
    let header = "| measurement | n | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|";
    let limit = r
        .physical
        .as_ref()
        .map(|p| (p.delete_rtt.p50_ms, p.delete_to_watch.p50_ms));
    let ratio = |v: f64| match limit {
        Some((rtt, _)) if rtt > 0.0 => format!("{:.1}× one DELETE round trip", v / rtt),
        _ => "n/a (the physical scenario did not run)".to_owned(),
    };
    if let Some(p) = &r.physical {
        let _ = writeln!(
            md,
            "## The physical limit\n\nWhat the API server itself takes for the work an expiry needs.\n\n{header}"
        );
        let _ = writeln!(md, "{}", p.delete_rtt.row("RoleBinding DELETE round trip"));
        let _ = writeln!(
            md,
            "{}",
            p.delete_to_watch.row("DELETE call to the deletion seen by a watch")
        );
        let _ = writeln!(md, "{}\n", p.create_rtt.row("RoleBinding CREATE round trip"));
    }
    if let Some(l) = &r.latency {
        let _ = writeln!(
            md,
            "## Grant latency\n\n{} grants applied at {}/s; from the grant's CREATE call to its RoleBinding seen by a watch. Missing: {}.\n\n{header}\n{}\n",
            l.grants,
            l.rate_per_s,
            l.missing,
            l.apply_to_binding.row("apply → binding")
        );
        let _ = writeln!(md, "p99 = {}.\n", ratio(l.apply_to_binding.p99_ms));
    }
    if !r.expiry.is_empty() {
        let _ = writeln!(
            md,
            "## Expiry lag\n\nGrants with `expiresAt` spread evenly over 10 s, or longer so that at most {} expire per second, all active at once; from `expiresAt` to the deletion seen by a watch, and (a sample of {} per size) to a SubjectAccessReview for the subject turning false, the moment the API server actually stops authorizing.\n\n{header}",
            crate::scenarios::EXPIRIES_PER_SECOND,
            crate::scenarios::SAR_SAMPLE_DOC
        );
        for e in &r.expiry {
            let _ = writeln!(
                md,
                "{}",
                e.expires_at_to_deletion
                    .row(&format!("{} active: expiresAt → binding deleted", e.active))
            );
            let _ = writeln!(
                md,
                "{}",
                e.expires_at_to_unauthorized
                    .row(&format!("{} active: expiresAt → unauthorized", e.active))
            );
        }
        md.push('\n');
        for e in &r.expiry {
            let _ = writeln!(
                md,
                "- {} active: p50 {}, p99 {}; the operator settled {} before the first expiry; its own measure (DELETE answered): {} within 100 ms; not active in time: {}, not seen deleted: {}.",
                e.active,
                ratio(e.expires_at_to_deletion.p50_ms),
                ratio(e.expires_at_to_deletion.p99_ms),
                e.settled_before_first_expiry_s
                    .map_or_else(|| "**not**".to_owned(), |s| format!("{s:.1} s")),
                e.operator_within_100ms
                    .map_or_else(|| "n/a".to_owned(), |f| format!("{:.1}%", f * 100.0)),
                e.not_active_in_time,
                e.not_deleted
            );
            if let Some(l) = &e.load {
                let _ = writeln!(md, "  {}", load_line(l));
            }
        }
        md.push('\n');
    }
    if let Some(s) = &r.storm {
        let _ = writeln!(
            md,
            "## Expiry storm\n\n{} grants with the same `expiresAt`: the last binding was deleted {:.1} ms after it.\n\n{header}\n{}\n",
            s.grants,
            s.last_deleted_ms,
            s.lag.expires_at_to_deletion.row("expiresAt → binding deleted")
        );
    }
    if let Some(x) = &r.restart {
        let _ = writeln!(
            md,
            "## Restart catch-up\n\nOperator stopped, {} grants expired, operator started 2 s later: ready after {:.1} ms, every overdue binding gone {:.1} ms after the start.\n\n{header}\n{}\n",
            x.grants,
            x.start_to_ready_ms,
            x.start_to_all_revoked_ms,
            x.start_to_revoked.row("start → binding deleted")
        );
    }
    if let Some(s) = &r.scale {
        let _ = writeln!(
            md,
            "## Scale\n\n| measurement | value |\n|---|---|\n\
             | active grants | {} (in 10 namespaces; {} grants in the cluster in all) |\n\
             | time to create them and see every binding | {:.1} s |\n\
             | operator memory with all active (RSS / peak) | {:.1} MiB / {:.1} MiB |\n\
             | operator CPU while idle for {} s | {:.3} CPU-seconds ({:.2} ms per second) |\n\
             | operator memory at the end of the idle period (RSS / peak) | {:.1} MiB / {:.1} MiB |\n\
             | cold start to ready | {:.1} ms |\n\
             | cold start to every grant reconciled | {:.1} ms |\n\
             | memory after the cold start (RSS / peak) | {:.1} MiB / {:.1} MiB |\n\
             | `jitrbac sweep --once` over every binding: time / peak RSS | {:.1} ms / {:.1} MiB |\n",
            s.active,
            s.grants_in_cluster,
            s.setup_seconds,
            s.memory_active.rss_mib,
            s.memory_active.peak_rss_mib,
            s.idle_seconds,
            s.idle_cpu_seconds,
            s.idle_cpu_seconds * 1000.0 / s.idle_seconds.max(1) as f64,
            s.memory_idle.rss_mib,
            s.memory_idle.peak_rss_mib,
            s.cold_start_to_ready_ms,
            s.cold_start_to_caught_up_ms,
            s.memory_after_cold_start.rss_mib,
            s.memory_after_cold_start.peak_rss_mib,
            s.sweep_once_ms,
            s.sweep_once_peak_rss_mib,
        );
    }
    if !plots.is_empty() {
        let _ = writeln!(
            md,
            "## Distributions\n\nEach plot runs up to the 99.5th percentile; the few values above it are counted in its last bar.\n"
        );
        for (title, file) in plots {
            let _ = writeln!(md, "![{title}]({file})\n");
        }
    }
    md
}

/// Draws a histogram per distribution; returns (title, file name) of each drawn. Plots
/// need a TrueType font for their labels: without one (see [`font`]) none are drawn.
fn plots(r: &Report, dir: &Path) -> Vec<(String, String)> {
    let Some(font) = font() else {
        eprintln!("bench: no TrueType font found (fc-match, /usr/share/fonts); skipping the plots");
        return Vec::new();
    };
    if plotters::style::register_font("sans-serif", FontStyle::Normal, font).is_err() {
        return Vec::new();
    }
    let mut series: Vec<(String, String, &[f64])> = Vec::new();
    if let Some(l) = &r.latency {
        series.push((
            "Grant latency: apply → binding (ms)".into(),
            "latency.png".into(),
            &l.samples_ms,
        ));
    }
    for e in &r.expiry {
        series.push((
            format!("Expiry lag with {} active grants: expiresAt → deleted (ms)", e.active),
            format!("expiry-{}.png", e.active),
            &e.samples_ms,
        ));
    }
    if let Some(s) = &r.storm {
        series.push((
            format!("Expiry storm, {} grants: expiresAt → deleted (ms)", s.grants),
            "storm.png".into(),
            &s.lag.samples_ms,
        ));
    }
    series
        .into_iter()
        .filter(|(_, _, v)| !v.is_empty())
        .filter_map(
            |(title, file, values)| match histogram(&dir.join(&file), &title, values) {
                Ok(()) => Some((title, file)),
                Err(e) => {
                    eprintln!("bench: cannot draw {file}: {e}");
                    None
                }
            },
        )
        .collect()
}

fn histogram(path: &Path, title: &str, values: &[f64]) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Up to the 99.5th percentile, so one outlier does not flatten the picture.
    let top = sorted[((sorted.len() as f64 * 0.995) as usize).min(sorted.len() - 1)].max(1.0);
    let buckets = 50usize;
    let width = top / buckets as f64;
    let mut counts = vec![0u32; buckets];
    for v in &sorted {
        let i = ((v.max(0.0) / width) as usize).min(buckets - 1);
        counts[i] += 1;
    }
    let highest = counts.iter().copied().max().unwrap_or(1);
    let root = BitMapBackend::new(path, (900, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..top, 0u32..highest + highest / 10 + 1)?;
    chart.configure_mesh().x_desc("milliseconds").y_desc("grants").draw()?;
    chart.draw_series(counts.iter().enumerate().map(|(i, c)| {
        let x0 = i as f64 * width;
        Rectangle::new([(x0, 0), (x0 + width, *c)], BLUE.mix(0.6).filled())
    }))?;
    root.present()?;
    Ok(())
}

/// A TrueType font for plot labels: fontconfig's sans-serif, or DejaVu Sans where Debian
/// puts it. Leaked: plotters keeps registered fonts for the life of the process.
fn font() -> Option<&'static [u8]> {
    let from_fc = std::process::Command::new("fc-match")
        .args(["-f", "%{file}", "sans-serif"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .filter(|p| p.ends_with(".ttf"));
    let candidates = from_fc
        .into_iter()
        .chain(["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".to_owned()]);
    for path in candidates {
        if let Ok(bytes) = std::fs::read(&path) {
            return Some(Box::leak(bytes.into_boxed_slice()));
        }
    }
    None
}

/// How busy the machine was during a measurement, and how much of it was not this run.
fn load_line(l: &Load) -> String {
    format!(
        "From the first expiry to the last deletion ({:.1} s), the machine was busy {:.1} of {:.1} CPU-seconds ({:.0}%): this run's processes {:.1}, others (other programs, the kernel) {:.1}, and the hypervisor took {:.1} (steal).",
        l.window_s,
        l.busy_cpu_s,
        l.available_cpu_s,
        100.0 * l.busy_cpu_s / l.available_cpu_s.max(f64::EPSILON),
        l.run_cpu_s,
        l.outside_run_cpu_s,
        l.steal_cpu_s
    )
}
