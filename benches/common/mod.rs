//! What the benchmarks share.

use std::time::Duration;

/// The `p` quantile (0 to 1) of durations sorted ascending; zero when there are none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let last = sorted.len().saturating_sub(1);
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(last))
        .copied()
        .unwrap_or_default()
}
