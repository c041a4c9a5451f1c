//! `make bench` / `make bench-quick`: how fast access is granted and, above all, how
//! precisely it ends, measured on the real local control plane with the operator built in
//! release mode, next to the API server's own round trip (the physical limit).
//!
//! ```text
//! cargo bench --bench scenarios -- [--quick] [--only physical,latency,expiry,storm,restart,scale]
//!     [--operator-args "--kube-api-qps 50 --concurrency 32"]
//! ```
//!
//! Writes `report.md`, `report.json` and PNG plots to `target/bench/`, and appends the
//! headline numbers to `target/bench/history.jsonl`. Nothing is asserted: the numbers are
//! for people (see docs/performance.md).

#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]

// The integration tests' harness; the benchmark uses its control plane and processes,
// not its test list.
#[allow(unused_macros, unused_imports)]
#[path = "../../tests/support/mod.rs"]
mod support;

mod process;
mod report;
mod scenarios;
mod stats;
mod watch;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use jiff::Timestamp;

use crate::report::{OperatorSettings, Report};
use crate::scenarios::{Bench, Sizes};
use crate::support::Result;

const SCENARIOS: [&str; 6] = ["physical", "latency", "expiry", "storm", "restart", "scale"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` (make test) runs this binary
    // without it, in a debug build: it only checks that the suite compiles.
    if !args.iter().any(|a| a == "--bench") {
        println!("bench: not run under `cargo test`; `make bench` or `make bench-quick` runs it");
        return ExitCode::SUCCESS;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| report::flag_value(&args, flag);
    let only: Vec<String> = value("--only")
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| SCENARIOS.map(str::to_owned).to_vec());
    let operator_args: Vec<String> = value("--operator-args")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(bad) = only.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
        eprintln!("bench: unknown scenario {bad}; known: {}", SCENARIOS.join(", "));
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(quick, &only, operator_args)) {
        Ok(dir) => {
            println!("bench: report in {}", dir.join("report.md").display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(quick: bool, only: &[String], operator_args: Vec<String>) -> Result<PathBuf> {
    let sizes = if quick { Sizes::quick() } else { Sizes::full() };
    let wanted = |s: &str| only.iter().any(|o| o == s);
    let started = Timestamp::now();
    eprintln!("bench: starting the control plane and the operator (release build)");
    let bench = Bench::start(sizes.clone(), operator_args.clone()).await?;
    let result = scenarios_in_order(&bench, &wanted).await;
    let control_plane = bench
        .env
        .admin
        .apiserver_version()
        .await
        .map(|v| format!("Kubernetes {}", v.git_version))
        .unwrap_or_else(|_| "Kubernetes (version unknown)".to_owned());
    bench.env.stop();
    let (physical, latency, expiry, storm, restart, scale) = result?;
    let report = Report {
        started: jitrbac::api::format_timestamp(started),
        suite: if quick { "quick" } else { "full" },
        machine: process::machine(),
        control_plane,
        operator: OperatorSettings::of(operator_args),
        sizes,
        physical,
        latency,
        expiry,
        storm,
        restart,
        scale,
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("bench"))
        .ok_or("no target directory")?;
    std::fs::create_dir_all(&dir)?;
    append_history(&report, &dir)?;
    report::write(&report, &dir)?;
    Ok(dir)
}

type Results = (
    Option<scenarios::Physical>,
    Option<scenarios::Latency>,
    Vec<scenarios::Expiry>,
    Option<scenarios::Storm>,
    Option<scenarios::Restart>,
    Option<scenarios::Scale>,
);

async fn scenarios_in_order(b: &Bench, wanted: &dyn Fn(&str) -> bool) -> Result<Results> {
    let step = |name: &str| eprintln!("bench: {name} ({})", jitrbac::api::format_timestamp(Timestamp::now()));
    let physical = if wanted("physical") {
        step("physical limit");
        Some(scenarios::physical(b).await?)
    } else {
        None
    };
    let latency = if wanted("latency") {
        step("grant latency");
        Some(scenarios::latency(b).await?)
    } else {
        None
    };
    let mut expiry = Vec::new();
    if wanted("expiry") {
        for &n in &b.sizes.expiry_active {
            step(&format!("expiry lag, {n} active"));
            expiry.push(scenarios::expiry(b, n, scenarios::expiry_spread(n), "expiry").await?);
        }
    }
    let storm = if wanted("storm") {
        step("expiry storm");
        Some(scenarios::storm(b).await?)
    } else {
        None
    };
    let restart = if wanted("restart") {
        step("restart catch-up");
        Some(scenarios::restart(b).await?)
    } else {
        None
    };
    let scale = if wanted("scale") {
        step("scale");
        Some(scenarios::scale(b).await?)
    } else {
        None
    };
    Ok((physical, latency, expiry, storm, restart, scale))
}

/// Appends this run's headline numbers to `history.jsonl`.
fn append_history(r: &Report, dir: &std::path::Path) -> Result<()> {
    let line = serde_json::json!({
        "started": r.started,
        "suite": r.suite,
        "operatorFlags": r.operator.flags.join(" "),
        "revision": std::process::Command::new("git").args(["describe", "--always", "--dirty", "--abbrev=7"]).output().ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()).map(|s| s.trim().to_owned()),
        "deleteRttP50Ms": r.physical.as_ref().map(|p| p.delete_rtt.p50_ms),
        "grantLatencyP99Ms": r.latency.as_ref().map(|l| l.apply_to_binding.p99_ms),
        "expiryLagP99Ms": r.expiry.iter().map(|e| (e.active.to_string(), e.expires_at_to_deletion.p99_ms)).collect::<std::collections::BTreeMap<_, _>>(),
        "stormLastMs": r.storm.as_ref().map(|s| s.last_deleted_ms),
        "restartAllRevokedMs": r.restart.as_ref().map(|x| x.start_to_all_revoked_ms),
        "scaleRssMib": r.scale.as_ref().map(|s| s.memory_active.rss_mib),
        "idleCpuSeconds": r.scale.as_ref().map(|s| s.idle_cpu_seconds),
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("history.jsonl"))?;
    writeln!(f, "{line}")?;
    Ok(())
}
