//! Integration tests against a real local control plane: etcd, kube-apiserver with RBAC
//! and kube-controller-manager with the garbage collector, started once for this binary,
//! plus one `jitrbac run` process. Each test works in its own namespace.
//!
//! Run with `cargo test --test e2e` (or `make test`); pass a filter like any cargo test.
//! When a test fails, the tails of the control-plane and operator logs are printed.

#![allow(clippy::print_stderr, missing_docs)]

#[path = "../support/mod.rs"]
mod support;

mod admission;
mod lifecycle;
mod rbac;

use std::process::ExitCode;
use std::sync::OnceLock;

use libtest_mimic::{Arguments, Failed, Trial};
use support::{Env, TestFn};

static ENV: OnceLock<Env> = OnceLock::new();

fn tests() -> Vec<(&'static str, TestFn)> {
    let mut all = Vec::new();
    all.extend(admission::tests());
    all.extend(lifecycle::tests());
    all.extend(rbac::tests());
    all
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start tokio: {err}");
            return ExitCode::FAILURE;
        }
    };
    let wanted = tests()
        .into_iter()
        .filter(|(name, _)| !args.list && selected(&args, name))
        .count();
    if wanted > 0 {
        match runtime.block_on(Env::start("e2e")) {
            Ok(env) => {
                let _ = ENV.set(env);
            }
            Err(err) => {
                eprintln!("{err}");
                return ExitCode::FAILURE;
            }
        }
    }
    let handle = runtime.handle().clone();
    let trials = tests()
        .into_iter()
        .map(|(name, test)| {
            let handle = handle.clone();
            Trial::test(name, move || {
                let env = ENV.get().ok_or_else(|| Failed::from("environment not started"))?;
                handle.block_on(test(env)).map_err(|e| Failed::from(e.to_string()))
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(env) = ENV.get() {
        if conclusion.has_failed() {
            eprintln!(
                "\n===== logs of the control plane and operator (tails) =====\n{}",
                env.log_tail(40)
            );
        }
        env.stop();
    }
    conclusion.exit_code()
}

/// Whether a test is selected by the command-line filter (same rules as libtest-mimic:
/// substring match, or exact match with `--exact`; `--skip` filters out).
fn selected(args: &Arguments, name: &str) -> bool {
    let matches = |f: &str| {
        if args.exact { name == f } else { name.contains(f) }
    };
    let included = args.filter.as_deref().is_none_or(matches);
    let skipped = args.skip.iter().any(|s| matches(s));
    included && !skipped && !args.ignored
}
