//! The keepalive benchmark: 10,000 leases kept alive by one client (the time to start the
//! keepalives, the client's CPU per second while it renews them, its RSS and threads), and
//! the first renewal after SIGKILL and SIGSTOP of the member serving the keepalive stream.
//! Prints a table.
//!
//! `cargo bench --bench lease`; `LEASE_COUNT` sets the leases (default 10,000),
//! `LEASE_TTL_S` their TTL (default 10 s), `LEASE_FAULT_ROUNDS` the runs of each fault
//! (default 3).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use etcd_blocking::testing::Cluster;
use etcd_blocking::{Client, KeepAlive};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Grants and keeps `count` leases from 8 threads; returns the handles.
fn keep_many(client: &Client, count: usize, ttl: Duration) -> Vec<KeepAlive> {
    thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let lease = client.lease();
                s.spawn(move || {
                    (w..count)
                        .step_by(8)
                        .map(|_| {
                            let id = lease.grant(ttl).expect("grant").id();
                            lease.keep_alive(id).expect("keep alive")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    })
}

fn many(count: usize, ttl: Duration) {
    let cluster = Cluster::start(1).expect("cluster");
    let client = cluster.client().expect("connect");
    // The keeper's thread starts with the first keepalive.
    let first = keep_many(&client, 1, ttl);
    let (rss, threads) = (common::status("VmRSS"), common::status("Threads"));
    let started = Instant::now();
    let kept = keep_many(&client, count, ttl);
    let took = started.elapsed();
    let (rss_after, threads_after) = (common::status("VmRSS"), common::status("Threads"));
    // Three TTLs of renewals (nine per lease), the client's CPU over them.
    let cpu = common::cpu_seconds();
    let window = Instant::now();
    while window.elapsed() < 3 * ttl {
        thread::sleep(Duration::from_millis(100));
    }
    let per_second = (common::cpu_seconds() - cpu) / window.elapsed().as_secs_f64();
    let alive = kept.iter().filter(|k| k.status().is_alive()).count();
    println!(
        "| {count} leases, TTL {} s | grants + keepalives in {:.2} s (8 threads) | client CPU {:.1}% of a core while renewing ({:.0} renewals/s) | RSS +{} MiB | threads +{} | {alive} alive after 3 TTLs |",
        ttl.as_secs(),
        took.as_secs_f64(),
        per_second * 100.0,
        count as f64 * 3.0 / ttl.as_secs_f64(),
        rss_after.saturating_sub(rss) / 1024,
        threads_after.saturating_sub(threads),
    );
    drop((first, kept));
}

/// The first renewal after a fault of the member serving the keepalive stream.
fn after_fault(name: &str, fault: impl Fn(&Cluster, usize), heal: impl Fn(&Cluster, usize)) {
    let cluster = Cluster::start(3).expect("cluster");
    let client = cluster.client().expect("connect");
    let lease = client.lease();
    let ttl = Duration::from_secs(2);
    let kept = lease
        .keep_alive(lease.grant(ttl).expect("grant").id())
        .expect("keep alive");
    kept.renewals()
        .recv_timeout(Duration::from_secs(10))
        .expect("renewed");
    let endpoints = cluster.endpoints();
    let serving = lease
        .keepalive_endpoint()
        .and_then(|e| endpoints.iter().position(|x| *x == e))
        .expect("a stream");
    let role = if cluster.leader().expect("a leader") == serving {
        "leader"
    } else {
        "follower"
    };
    let faulted = Instant::now();
    fault(&cluster, serving);
    let first = loop {
        let renewal = kept
            .renewals()
            .recv_timeout(ttl)
            .expect("a renewal within the TTL");
        if renewal.sent_at() >= faulted {
            break faulted.elapsed();
        }
    };
    heal(&cluster, serving);
    println!(
        "| {name} | {role} | {:.0} | {:?} |",
        first.as_secs_f64() * 1e3,
        kept.status()
    );
}

fn main() {
    let count = env("LEASE_COUNT", 10_000) as usize;
    let ttl = Duration::from_secs(env("LEASE_TTL_S", 10).max(1));
    let rounds = env("LEASE_FAULT_ROUNDS", 3);
    println!("# Lease keepalives");
    println!();
    many(count, ttl);
    println!();
    println!("First renewal landed after a fault of the member serving the keepalive stream (3 members, TTL 2 s; renewals every 667 ms), ms:");
    println!();
    println!("| fault | member serving the stream | first renewal | status |");
    println!("|---|---|---|---|");
    for _ in 0..rounds {
        after_fault(
            "SIGKILL",
            |c, i| c.kill(i).expect("kill"),
            |c, i| c.restart(i).expect("restart"),
        );
    }
    for _ in 0..rounds {
        after_fault(
            "SIGSTOP",
            |c, i| c.pause(i).expect("pause"),
            |c, i| c.resume(i).expect("resume"),
        );
    }
}
