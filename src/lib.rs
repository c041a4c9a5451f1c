//! jitrbac: just-in-time Kubernetes RBAC.
//!
//! An `AccessGrant` asks for a role, for some subjects, for a bounded time; the operator
//! creates the RoleBinding when the grant becomes active, deletes it the moment the grant
//! ends, and records every step as Kubernetes Events, status and structured audit lines.
//!
//! Layout: [`api`] holds the resource types (the source of the CRDs), [`grant`] the pure
//! lifecycle planner, [`controller`] the IO shell that runs it against the API server.

pub mod api;
pub mod audit;
pub mod cli;
pub mod controller;
pub mod grant;
pub mod http;
pub mod metrics;
pub mod telemetry;
pub mod webhook;
