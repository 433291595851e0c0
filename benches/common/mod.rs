//! What the benchmarks share.
#![allow(dead_code)] // each bench uses its own part

use std::time::Duration;

/// The `p` quantile (0 to 1) of durations sorted ascending; zero when there are none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let last = sorted.len().saturating_sub(1);
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(last))
        .copied()
        .unwrap_or_default()
}

/// A field of /proc/self/status, in kB or a count (0 if it cannot be read).
pub fn status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of a `/proc/.../stat` file's contents (10 ms ticks).
pub fn cpu_of(stat: &str) -> f64 {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// This process's user + system CPU seconds.
pub fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .map(|s| cpu_of(&s))
        .unwrap_or(0.0)
}

/// The comma-separated numbers of the environment variable `var`, or of `default` when it
/// is unset (entries that are not numbers are left out).
pub fn env_list(var: &str, default: &str) -> Vec<usize> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// The number in the environment variable `var`, or `default` when it is unset or not a
/// number.
pub fn env_number(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
