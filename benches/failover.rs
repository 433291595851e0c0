//! The failover benchmark: per fault, the time from the fault to the first successful
//! request, and how long requests in flight stalled, with 1 and 8 caller threads, for
//! writes and linearizable reads, on a 3-member cluster with the launcher's flags and the
//! client's default settings. Prints a table.
//!
//! A second table: a rolling restart (each member stopped with SIGTERM and started again,
//! followers first, the leader last, as an upgrade does) under steady writers: how many
//! writes failed, how many ended of unknown outcome, and the longest stall.
//!
//! `cargo bench --bench failover`; `FAILOVER_WATCH_MS` sets how long each run watches after
//! its fault (default 3000); `FAILOVER_ONLY=leader` runs only the faults whose name contains
//! that text (`rolling` for the rolling restart).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::percentile;
use etcd_blocking::testing::{Cluster, Proxy};

mod common;
use etcd_blocking::Client;

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    TermLeader,
    KillLeader,
    KillFollower,
    StopLeader,
    StopFollower,
    IsolateFollower,
    IsolateLeader,
    Blackhole,
}

impl Fault {
    const ALL: [Fault; 8] = [
        Fault::TermLeader,
        Fault::KillLeader,
        Fault::KillFollower,
        Fault::StopLeader,
        Fault::StopFollower,
        Fault::IsolateFollower,
        Fault::IsolateLeader,
        Fault::Blackhole,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::TermLeader => "SIGTERM leader (graceful stop)",
            Fault::KillLeader => "SIGKILL leader",
            Fault::KillFollower => "SIGKILL follower",
            Fault::StopLeader => "SIGSTOP leader",
            Fault::StopFollower => "SIGSTOP follower",
            Fault::IsolateFollower => "follower cut off",
            Fault::IsolateLeader => "leader cut off",
            Fault::Blackhole => "leader's client port blackholed",
        }
    }

    /// The target the issue sets for the first success after this fault.
    fn target(self) -> Duration {
        match self {
            Fault::TermLeader | Fault::KillLeader | Fault::KillFollower => {
                Duration::from_millis(300)
            }
            _ => Duration::from_millis(1500),
        }
    }
}

/// One request: when it started, how long it took, whether it succeeded.
struct Sample {
    started: Instant,
    took: Duration,
    ok: bool,
}

struct Row {
    first_success: Option<Duration>,
    stall_p50: Duration,
    stall_p99: Duration,
    stall_max: Duration,
    failed: usize,
    total: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let watch = Duration::from_millis(
        std::env::var("FAILOVER_WATCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000),
    );
    println!(
        "| fault | op | callers | first success | target | stall p50 | stall p99 | stall max | failed/total |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let only = std::env::var("FAILOVER_ONLY").unwrap_or_default();
    for fault in Fault::ALL
        .into_iter()
        .filter(|f| f.name().contains(only.as_str()))
    {
        for write in [true, false] {
            for callers in [1, 8] {
                let row = run(fault, write, callers, watch)?;
                let first = row
                    .first_success
                    .map_or("never".to_owned(), |d| format!("{:.0} ms", ms(d)));
                println!(
                    "| {} | {} | {} | {} | {:.0} ms | {:.1} ms | {:.1} ms | {:.0} ms | {}/{} |",
                    fault.name(),
                    if write { "put" } else { "get" },
                    callers,
                    first,
                    ms(fault.target()),
                    ms(row.stall_p50),
                    ms(row.stall_p99),
                    ms(row.stall_max),
                    row.failed,
                    row.total
                );
            }
        }
    }
    if "rolling restart".contains(only.as_str()) {
        println!();
        println!(
            "| rolling restart | callers | writes | failed | unknown outcome | longest stall |"
        );
        println!("|---|---|---|---|---|---|");
        for callers in [1, 8] {
            let row = rolling(callers)?;
            println!(
                "| SIGTERM and restart, each member in turn | {callers} | {} | {} | {} | {:.0} ms |",
                row.total,
                row.failed,
                row.unknown,
                ms(row.stall_max)
            );
        }
    }
    Ok(())
}

/// What a rolling restart did to the writes.
struct Rolling {
    total: usize,
    failed: usize,
    unknown: usize,
    stall_max: Duration,
}

/// A rolling restart of a 3-member cluster under `callers` steady writers.
fn rolling(callers: usize) -> Result<Rolling, Box<dyn std::error::Error>> {
    let cluster = Cluster::start(3)?;
    let client = Client::connect(cluster.endpoints())?;
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..callers)
        .map(|t| {
            let (kv, stop) = (client.kv(), stop.clone());
            thread::spawn(move || {
                let mut outcomes = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    let result = kv.put(format!("bench/{t}/{n}"), "v");
                    let unknown = result.as_ref().is_err_and(|e| e.is_write_outcome_unknown());
                    outcomes.push((started.elapsed(), result.is_ok(), unknown));
                }
                outcomes
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let leader = cluster.leader()?;
    for member in (0..3).filter(|&m| m != leader).chain([leader]) {
        cluster.terminate(member)?;
        thread::sleep(Duration::from_millis(300));
        cluster.restart(member)?;
        cluster.wait_healthy()?;
        thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<(Duration, bool, bool)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    client.close()?;
    Ok(Rolling {
        total: outcomes.len(),
        failed: outcomes
            .iter()
            .filter(|(_, ok, unknown)| !ok && !unknown)
            .count(),
        unknown: outcomes.iter().filter(|(_, _, unknown)| *unknown).count(),
        stall_max: outcomes
            .iter()
            .map(|(took, _, _)| *took)
            .max()
            .unwrap_or_default(),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Starts a cluster, loads it, injects the fault, watches, and sums up.
fn run(
    fault: Fault,
    write: bool,
    callers: usize,
    watch: Duration,
) -> Result<Row, Box<dyn std::error::Error>> {
    let isolating = matches!(fault, Fault::IsolateFollower | Fault::IsolateLeader);
    let mut builder = Cluster::builder().members(3);
    if isolating {
        builder = builder.peer_proxies();
    }
    let cluster = builder.start()?;
    let leader = cluster.leader()?;
    let follower = (leader + 1) % 3;
    // The client reaches the leader through a proxy that the blackhole fault swallows.
    let proxy = Proxy::start(0, cluster.client_port(leader))?;
    let mut endpoints = cluster.endpoints();
    if fault == Fault::Blackhole {
        endpoints[leader] = proxy.endpoint();
    }
    let client = Client::connect(&endpoints)?;
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..callers)
        .map(|t| {
            let kv = client.kv();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut samples = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    let ok = if write {
                        kv.put(format!("bench/{t}/{n}"), "v").is_ok()
                    } else {
                        kv.get(format!("bench/{t}/{}", n.saturating_sub(1))).is_ok()
                    };
                    samples.push(Sample {
                        started,
                        took: started.elapsed(),
                        ok,
                    });
                }
                samples
            })
        })
        .collect();
    // Warm up: every endpoint connected and probed, the load running.
    thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    match fault {
        // In effect from the signal on: etcd hands leadership over and stops by itself.
        Fault::TermLeader => {
            cluster.terminate(leader)?;
        }
        Fault::KillLeader => cluster.kill(leader)?,
        Fault::KillFollower => cluster.kill(follower)?,
        Fault::StopLeader => cluster.pause(leader)?,
        Fault::StopFollower => cluster.pause(follower)?,
        Fault::IsolateFollower => cluster.isolate(follower)?,
        Fault::IsolateLeader => cluster.isolate(leader)?,
        Fault::Blackhole => proxy.blackhole(),
    }
    // The fault is in effect from here: pause and kill return once the process has
    // stopped or died.
    let fault_at = if fault == Fault::TermLeader {
        signalled
    } else {
        Instant::now()
    };
    thread::sleep(watch);
    stop.store(true, Ordering::Relaxed);
    // A paused member must run again for the callers stuck on it to finish.
    match fault {
        Fault::StopLeader => cluster.resume(leader)?,
        Fault::StopFollower => cluster.resume(follower)?,
        _ => {}
    }
    let samples: Vec<Sample> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    client.close()?;
    Ok(summarize(&samples, fault_at, watch))
}

fn summarize(samples: &[Sample], fault_at: Instant, watch: Duration) -> Row {
    let first_success = samples
        .iter()
        .filter(|s| s.ok && s.started >= fault_at)
        .map(|s| s.started + s.took - fault_at)
        .min();
    // Requests in flight at the fault or started while the watch lasted.
    let mut stalls: Vec<Duration> = samples
        .iter()
        .filter(|s| s.started + s.took >= fault_at && s.started < fault_at + watch)
        .map(|s| s.took)
        .collect();
    stalls.sort();
    let pct = |p: f64| percentile(&stalls, p);
    Row {
        first_success,
        stall_p50: pct(0.50),
        stall_p99: pct(0.99),
        stall_max: stalls.last().copied().unwrap_or_default(),
        failed: samples
            .iter()
            .filter(|s| !s.ok && s.started + s.took >= fault_at)
            .count(),
        total: stalls.len(),
    }
}
