//! `make bench` / `make bench-quick`: how fast access is granted and, above all, how
//! precisely it ends, measured on the real local control plane with the operator built in
//! release mode, next to the API server's own round trip (the physical limit).
//!
//! ```text
//! cargo bench --bench scenarios -- [--quick] [--only physical,latency,expiry,storm,restart,scale]
//!     [--operator-args "--concurrency 32"] [--idle-seconds N]   (--help: every flag)
//! ```
//!
//! `--idle-seconds` shortens the scale scenario's idle period (300 s; 30 s with `--quick`),
//! e.g. to measure memory after a change without the wait; the report states it.
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

/// The benchmark's command line (after `cargo bench --bench scenarios --`).
#[derive(Debug, clap::Parser)]
#[command(
    name = "scenarios",
    bin_name = "cargo bench --bench scenarios --",
    about = "jitrbac's benchmarks on a local control plane; see docs/performance.md"
)]
struct Args {
    /// Set by `cargo bench`; without it (under `cargo test`) nothing runs.
    #[arg(long, hide = true)]
    bench: bool,
    /// Smaller counts: a few minutes instead of about 20.
    #[arg(long)]
    quick: bool,
    /// Only these scenarios, comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_parser = SCENARIOS)]
    only: Vec<String>,
    /// Flags added to `jitrbac run` in every scenario, as one string, e.g. "--concurrency 32".
    #[arg(long, value_name = "FLAGS", allow_hyphen_values = true)]
    operator_args: Option<String>,
    /// The scale scenario's idle period in seconds (default 300; 30 with --quick).
    #[arg(long, value_name = "SECONDS")]
    idle_seconds: Option<u64>,
}

fn main() -> ExitCode {
    // `cargo bench` passes --bench; `cargo test --all-targets` (make test) runs this binary
    // without it, in a debug build: it only checks that the suite compiles.
    if !std::env::args().any(|a| a == "--bench") {
        println!("bench: not run under `cargo test`; `make bench` or `make bench-quick` runs it");
        return ExitCode::SUCCESS;
    }
    // A mistyped flag would otherwise run the whole suite (20 minutes): refuse it.
    let args = <Args as clap::Parser>::parse();
    let quick = args.quick;
    let idle_seconds = args.idle_seconds;
    let only = match args.only {
        only if only.is_empty() => SCENARIOS.map(str::to_owned).to_vec(),
        only => only,
    };
    let operator_args: Vec<String> = args
        .operator_args
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    // On Ctrl-C or SIGTERM, or when cargo ends, the run is dropped, and with it the
    // control plane and the operator it started (their Drop stops them).
    let interruptible = async {
        tokio::select! {
            result = run(quick, idle_seconds, &only, operator_args) => result,
            () = jitrbac::controller::shutdown_signal() => Err("interrupted".into()),
            () = parent_gone() => Err("interrupted: the process that started it (cargo) has ended".into()),
        }
    };
    match runtime.block_on(interruptible) {
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

/// Returns once the process that started this one has ended (this process was given to
/// another parent). A signal sent to `cargo bench` alone (by a supervisor or a script,
/// where a terminal's Ctrl-C reaches the whole process group) ends cargo without passing
/// it on; the run then stops as if interrupted, instead of running on with its control
/// plane. Checked once a second.
async fn parent_gone() {
    let parent = std::os::unix::process::parent_id();
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    while std::os::unix::process::parent_id() == parent {
        every.tick().await;
    }
}

async fn run(quick: bool, idle_seconds: Option<u64>, only: &[String], operator_args: Vec<String>) -> Result<PathBuf> {
    let mut sizes = if quick { Sizes::quick() } else { Sizes::full() };
    sizes.idle_seconds = idle_seconds.unwrap_or(sizes.idle_seconds);
    let wanted = |s: &str| only.iter().any(|o| o == s);
    let started = Timestamp::now();
    let revision = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=7"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned());
    let mut suite = Suite {
        sizes: sizes.clone(),
        operator_args: operator_args.clone(),
        throughput: scenarios::DEFAULT_THROUGHPUT,
        control_plane: None,
    };
    let physical = suite
        .fresh_if(wanted("physical"), "physical limit", scenarios::physical)
        .await?;
    let latency = suite
        .fresh_if(wanted("latency"), "grant latency", scenarios::latency)
        .await?;
    let mut expiry = Vec::new();
    if wanted("expiry") {
        for &n in &sizes.expiry_active {
            let lag = suite
                .fresh(&format!("expiry lag, {n} active"), async |b| {
                    scenarios::expiry(b, n, scenarios::expiry_spread(n), "expiry").await
                })
                .await?;
            expiry.push(lag);
        }
    }
    let storm = suite
        .fresh_if(wanted("storm"), "expiry storm", scenarios::storm)
        .await?;
    let restart = suite
        .fresh_if(wanted("restart"), "restart catch-up", scenarios::restart)
        .await?;
    let scale = suite.fresh_if(wanted("scale"), "scale", scenarios::scale).await?;
    let report = Report {
        started: jitrbac::api::format_timestamp(started),
        revision,
        suite: if quick { "quick" } else { "full" },
        machine: process::machine(),
        control_plane: suite
            .control_plane
            .unwrap_or_else(|| "Kubernetes (version unknown)".to_owned()),
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
    append_history(&report, only, &dir)?;
    report::write(&report, &dir)?;
    Ok(dir)
}

/// What carries over from one scenario to the next: the settings, and what was learnt.
struct Suite {
    sizes: Sizes,
    operator_args: Vec<String>,
    /// Grants activated per second in bulk, as last measured (sizes later lead times).
    throughput: f64,
    /// The control plane's version, once known.
    control_plane: Option<String>,
}

impl Suite {
    /// [`Suite::fresh`] if the scenario is `wanted`.
    async fn fresh_if<T>(
        &mut self,
        wanted: bool,
        name: &str,
        scenario: impl AsyncFnOnce(&Bench) -> Result<T>,
    ) -> Result<Option<T>> {
        match wanted {
            true => self.fresh(name, scenario).await.map(Some),
            false => Ok(None),
        }
    }

    /// Runs one scenario on a fresh control plane and operator, so that no scenario
    /// measures what an earlier one left behind; stops both afterwards.
    async fn fresh<T>(&mut self, name: &str, scenario: impl AsyncFnOnce(&Bench) -> Result<T>) -> Result<T> {
        eprintln!("bench: {name} ({})", jitrbac::api::format_timestamp(Timestamp::now()));
        let bench = Bench::start(self.sizes.clone(), self.operator_args.clone(), self.throughput).await?;
        if self.control_plane.is_none() {
            self.control_plane = bench
                .env
                .admin
                .apiserver_version()
                .await
                .ok()
                .map(|v| format!("Kubernetes {}", v.git_version));
        }
        let result = scenario(&bench).await;
        self.throughput = bench.throughput();
        let Bench { env, bindings, .. } = bench;
        drop(bindings);
        env.stop();
        result
    }
}

/// Appends this run's headline numbers to `history.jsonl`.
fn append_history(r: &Report, only: &[String], dir: &std::path::Path) -> Result<()> {
    let line = serde_json::json!({
        "started": r.started,
        "suite": r.suite,
        "scenarios": only.join(","),
        "operatorFlags": r.operator.flags.join(" "),
        "revision": r.revision,
        "deleteRttP50Ms": r.physical.as_ref().map(|p| p.delete_rtt.p50_ms),
        "grantLatencyP99Ms": r.latency.as_ref().map(|l| l.apply_to_binding.p99_ms),
        "expiryLagP99Ms": r.expiry.iter().map(|e| (e.active.to_string(), e.expires_at_to_deletion.p99_ms)).collect::<std::collections::BTreeMap<_, _>>(),
        "expiryOutsideRunCpuS": r.expiry.iter().filter_map(|e| Some((e.active.to_string(), e.load?.outside_run_cpu_s))).collect::<std::collections::BTreeMap<_, _>>(),
        "stormLastMs": r.storm.as_ref().map(|s| s.last_deleted_ms),
        "restartAllRevokedMs": r.restart.as_ref().map(|x| x.start_to_all_revoked_ms),
        "scaleRssMib": r.scale.as_ref().map(|s| s.memory_active.rss_mib),
        "scaleIdleRssMib": r.scale.as_ref().map(|s| s.memory_idle.rss_mib),
        "idleCpuSeconds": r.scale.as_ref().map(|s| s.idle_cpu_seconds),
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("history.jsonl"))?;
    writeln!(f, "{line}")?;
    Ok(())
}
