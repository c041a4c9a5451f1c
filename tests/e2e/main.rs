//! Integration tests against a real local control plane: etcd, kube-apiserver with RBAC
//! and kube-controller-manager with the garbage collector, started once for this binary,
//! plus one `jitrbac run` process shared by all tests. Each test works in its own
//! namespace, so they run in parallel.
//!
//! Run with `cargo test --test e2e` (or `make test`); pass a filter like any cargo test.
//! When a test fails, the tails of the control-plane and operator logs are printed.

#![allow(clippy::print_stderr, missing_docs)]

#[path = "../support/mod.rs"]
mod support;

mod admission;
mod approvals;
mod drift;
mod eligibility;
mod inputs;
mod lifecycle;
mod people;
mod rbac;
mod revocation;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut tests = Vec::new();
    tests.extend(admission::tests());
    tests.extend(approvals::tests());
    tests.extend(eligibility::tests());
    tests.extend(drift::tests());
    tests.extend(inputs::tests());
    tests.extend(lifecycle::tests());
    tests.extend(rbac::tests());
    tests.extend(revocation::tests());
    support::harness::main(
        "e2e",
        tests,
        support::harness::Options {
            serial: false,
            operator: true,
            crds: true,
        },
    )
}
