//! The test runner shared by the integration test binaries (libtest-mimic): starts the
//! environment once, runs the selected tests, prints the logs when one failed, and stops
//! everything at the end.

use std::process::ExitCode;
use std::sync::{Mutex, OnceLock};

use libtest_mimic::{Arguments, Failed, Trial};

use super::{Env, TestFn, lock};

static ENV: OnceLock<Env> = OnceLock::new();
/// `<test>: <message>` of every failed test, in the order they failed.
static FAILURES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// How a test binary runs.
pub struct Options {
    /// Run tests one at a time (for tests that stop the operator or the API server).
    pub serial: bool,
    /// Start one `jitrbac run` process as cluster admin for the tests to share.
    pub operator: bool,
    /// Install the CRDs before the tests (off when the tests install them, e.g. with Helm).
    pub crds: bool,
}

/// Runs `tests` against one environment named `binary` (state under
/// `target/tmp/<binary>`).
pub fn main(binary: &str, tests: Vec<(&'static str, TestFn)>, options: Options) -> ExitCode {
    let mut args = Arguments::from_args();
    if options.serial {
        args.test_threads = Some(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start tokio: {err}");
            return ExitCode::FAILURE;
        }
    };
    let wanted = tests
        .iter()
        .filter(|(name, _)| !args.list && selected(&args, name))
        .count();
    if wanted > 0 {
        match runtime.block_on(Env::start(binary, options.operator, options.crds)) {
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
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            let handle = handle.clone();
            let serial = options.serial;
            Trial::test(name, move || {
                let env = ENV.get().ok_or_else(|| Failed::from("environment not started"))?;
                let mut result = handle.block_on(test(env)).map_err(|e| e.to_string());
                if serial {
                    // A test that stopped the operator or the webhook and then failed
                    // leaves them stopped; the tests after it must not fail for that.
                    match handle.block_on(env.restore()) {
                        Ok(restored) if restored.is_empty() => {}
                        Ok(restored) => eprintln!("{name}: restarted the stopped {}", restored.join(" and ")),
                        Err(err) => {
                            let restoring = format!("restoring the environment failed: {err}");
                            result = Err(match result {
                                Ok(()) => restoring,
                                Err(message) => format!("{message}; {restoring}"),
                            });
                        }
                    }
                }
                result.map_err(|message| {
                    lock(&FAILURES).push(format!("{name}: {message}"));
                    Failed::from(message)
                })
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(env) = ENV.get() {
        if conclusion.has_failed() {
            eprintln!(
                "\n===== logs of the control plane and every operator (tails) =====\n{}",
                env.log_tail(30)
            );
            // Last, so that the end of the output, which CI shows, says what failed.
            eprintln!("===== failed =====");
            for failure in lock(&FAILURES).iter() {
                eprintln!("{failure}");
            }
        }
        env.stop();
    }
    conclusion.exit_code()
}

/// Whether a test is selected by the command-line filter (same rules as libtest-mimic:
/// substring match, or exact match with `--exact`; `--skip` filters out).
fn selected(args: &Arguments, name: &str) -> bool {
    let matches = |f: &str| if args.exact { name == f } else { name.contains(f) };
    let included = args.filter.as_deref().is_none_or(matches);
    let skipped = args.skip.iter().any(|s| matches(s));
    included && !skipped && !args.ignored
}
