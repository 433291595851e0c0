//! Leader preference against round-robin: writes and linearizable reads on a 3-member
//! cluster, with 1 and 8 caller threads, in alternating rounds so both see the same
//! machine. Prints ops/s and latency percentiles.
//!
//! `cargo bench --bench leader`; `LEADER_BENCH_SECS` sets each run's length (default 2).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::percentile;
use etcd_blocking::testing::Cluster;

mod common;
use etcd_blocking::{Client, Health};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: u64 = std::env::var("LEADER_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let cluster = Cluster::start(3)?;
    let clients = [false, true].map(|prefer| {
        Client::builder()
            .endpoints(cluster.endpoints())
            .prefer_leader(prefer)
            .connect()
    });
    let [round_robin, leader] = clients;
    let (round_robin, leader) = (round_robin?, leader?);
    for client in [&round_robin, &leader] {
        cluster.wait_until(Duration::from_secs(10), "every endpoint healthy", || {
            client
                .endpoint_health()
                .iter()
                .all(|h| h.health() == Health::Healthy)
        })?;
    }
    println!("| op | callers | routing | ops/s | p50 | p99 |");
    println!("|---|---|---|---|---|---|");
    for round in 0..2 {
        for write in [true, false] {
            for callers in [1, 8] {
                for (name, client) in [("round-robin", &round_robin), ("leader", &leader)] {
                    let (rate, p50, p99) =
                        run(client, write, callers, Duration::from_secs(secs), round);
                    println!(
                        "| {} | {} | {} | {:.0} | {:.0} us | {:.0} us |",
                        if write { "put" } else { "get" },
                        callers,
                        name,
                        rate,
                        p50,
                        p99
                    );
                }
            }
        }
    }
    Ok(())
}

/// Runs `callers` threads for `length`; returns ops/s and p50/p99 latency in microseconds.
fn run(
    client: &Client,
    write: bool,
    callers: usize,
    length: Duration,
    round: usize,
) -> (f64, f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..callers)
        .map(|t| {
            let kv = client.kv();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = format!("leader-bench/{round}/{t}/{}", n % 1000);
                    let started = Instant::now();
                    let ok = if write {
                        kv.put(key, "v").is_ok()
                    } else {
                        kv.get(key).is_ok()
                    };
                    if ok {
                        latencies.push(started.elapsed());
                    }
                }
                latencies
            })
        })
        .collect();
    thread::sleep(length);
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    all.sort();
    let pct = |p: f64| percentile(&all, p).as_secs_f64() * 1e6;
    (all.len() as f64 / length.as_secs_f64(), pct(0.5), pct(0.99))
}
