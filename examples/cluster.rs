//! `make cluster-up` / `make cluster-down`: a local control plane for development and the
//! demo, started by the same code the integration tests use.
//!
//! ```text
//! cargo run --example cluster -- up   [--dir .cluster]   # start (no-op if already running)
//! cargo run --example cluster -- down [--dir .cluster]   # stop everything it started
//! ```
//!
//! `up` writes the admin kubeconfig to `<dir>/kubeconfig`, a kubeconfig for user `alice`
//! (group `dev`) to `<dir>/alice.kubeconfig`, and process logs under `<dir>/logs/`.

#![allow(clippy::print_stdout)]

#[path = "../tests/support/controlplane.rs"]
mod controlplane;

use std::path::PathBuf;
use std::process::ExitCode;

use controlplane::{ControlPlane, Options};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".cluster"));
    let result = match args.first().map(String::as_str) {
        Some("up") => up(dir).await,
        Some("down") => down(&dir),
        _ => Err("usage: cluster up|down [--dir DIR]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cluster: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn up(dir: PathBuf) -> controlplane::Result<()> {
    let running = controlplane::running_pids(&std::fs::canonicalize(&dir).unwrap_or(dir.clone()));
    if running.len() == 3 {
        println!(
            "control plane already running (pids {running:?}); KUBECONFIG={}/kubeconfig",
            dir.display()
        );
        return Ok(());
    }
    if !running.is_empty() {
        println!("control plane partly running; restarting it");
        controlplane::stop_detached(&dir)?;
    }
    let cp = ControlPlane::start(Options {
        dir: dir.clone(),
        crds: jitrbac::api::crd::all(),
        detach: true,
    })
    .await?;
    println!("control plane running at {}", cp.server);
    println!("  export KUBECONFIG={}", cp.kubeconfig().display());
    println!("  kubectl: {}", cp.tool("kubectl").display());
    println!("  logs:    {}/logs/", cp.dir.display());
    cp.release();
    Ok(())
}

fn down(dir: &std::path::Path) -> controlplane::Result<()> {
    let n = controlplane::stop_detached(dir)?;
    println!("stopped {n} control-plane processes");
    Ok(())
}
