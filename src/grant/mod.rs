//! The pure core of the operator: what a grant means, what its binding looks like, and
//! what to do next. Nothing here performs IO or reads a clock; every function takes "now"
//! as an argument, so the whole lifecycle is unit-tested with an injected clock.

pub mod binding;
pub mod gate;
pub mod plan;
pub mod policy;
pub mod request;
pub mod review;
pub mod settle;
pub mod sweep;
pub mod window;

#[cfg(test)]
mod tests;

pub use binding::Owner;
pub use gate::{Eligibility, Facts, Gate};
pub use plan::{BindingStep, Plan, plan};
pub use request::{GrantRequest, Limits, Refusal};
pub use settle::{Blocker, Change, Outcome, Settled, Transition, settle};
pub use window::Window;
