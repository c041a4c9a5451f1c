//! Distributions of measured durations.

use serde::Serialize;

/// A distribution of durations, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Percentiles (nearest rank) and extremes, in milliseconds.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub min_ms: f64,
    pub mean_ms: f64,
}

impl Summary {
    /// Summarizes `samples_ms` (empty: all zero).
    pub fn of(samples_ms: &[f64]) -> Self {
        let mut s: Vec<f64> = samples_ms.iter().copied().filter(|v| v.is_finite()).collect();
        s.sort_by(f64::total_cmp);
        let rank = |p: f64| -> f64 {
            if s.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest value with at least p of the samples at or below it.
            let idx = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
            s[idx]
        };
        Self {
            n: s.len(),
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            max_ms: s.last().copied().unwrap_or(0.0),
            min_ms: s.first().copied().unwrap_or(0.0),
            mean_ms: if s.is_empty() {
                0.0
            } else {
                s.iter().sum::<f64>() / s.len() as f64
            },
        }
    }

    /// One Markdown table row: `| label | n | p50 | p90 | p99 | max |` (milliseconds).
    pub fn row(&self, label: &str) -> String {
        format!(
            "| {label} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            self.n, self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        )
    }
}

/// Milliseconds from `from` to `to` (negative if `to` is earlier).
pub fn ms(from: jiff::Timestamp, to: jiff::Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64() * 1000.0
}
