//! What else ran on the machine while a comparison ran: every report says it, so that a
//! reader can tell figures made on a quiet machine from figures made beside other work.
//!
//! From the start of the comparison to its report: the machine's busy CPU time (all cores,
//! from `/proc/stat`) less this process's and its reaped children's (the drivers and the
//! etcd members it started, from `/proc/self/stat`). Both count 10 ms ticks, which over a
//! comparison of minutes is precise enough; the drivers' own CPU figures use the process
//! CPU clock.

use std::sync::OnceLock;
use std::time::Instant;

/// The counters at the start.
struct Start {
    at: Instant,
    machine_busy: f64,
    ours: f64,
}

static START: OnceLock<Start> = OnceLock::new();

/// Notes the counters; call once, before anything is measured.
pub fn start() {
    let _ = START.set(Start {
        at: Instant::now(),
        machine_busy: machine_busy_seconds(),
        ours: ours_seconds(),
    });
}

/// The sentence a report ends with: how much CPU other processes used while it ran.
pub fn note() -> String {
    let Some(start) = START.get() else {
        return String::new();
    };
    let wall = start.at.elapsed().as_secs_f64();
    let other = (machine_busy_seconds() - start.machine_busy) - (ours_seconds() - start.ours);
    let other = other.max(0.0);
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let verdict = if other / wall < 0.05 {
        "nothing else of note ran beside it"
    } else {
        "other work ran beside it: read the figures with that in mind"
    };
    format!(
        "\nBeside this comparison: over its {wall:.0} s, processes other than the harness, \
         its drivers and its etcd members used {other:.1} CPU-seconds ({:.1}% of one core, \
         of {cores:.0}); {verdict}.\n",
        other / wall * 100.0
    )
}

/// Busy CPU seconds of the whole machine since boot (every state but idle and iowait).
fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let ticks: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user already).
    let busy: f64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    busy / 100.0
}

/// This process's CPU seconds with its reaped children's (utime, stime, cutime, cstime).
fn ours_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    (11..15)
        .filter_map(|i| fields.get(i)?.parse::<f64>().ok())
        .sum::<f64>()
        / 100.0
}
