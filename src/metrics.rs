//! Prometheus metrics of the operator, served at `/metrics`.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Every metric the operator exports, registered once at start-up.
pub struct Metrics {
    registry: Registry,
    /// 1 while this replica holds the leader lease and acts, 0 otherwise
    /// (`jitrbac_leader`).
    pub leader: Gauge<i64, AtomicI64>,
}

impl Metrics {
    /// Creates and registers every metric under the `jitrbac_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("jitrbac");
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease and acts",
            leader.clone(),
        );
        Self { registry, leader }
    }

    /// Renders every metric in the OpenMetrics text format.
    ///
    /// Returns an error only if formatting into a `String` fails, which does not happen in
    /// practice.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
