//! The mirror benchmark: the time to the first full copy of 10,000 and 200,000 keys, the
//! memory per key, the latency from a put to its value visible in the mirror (p50, p99),
//! and the CPU per 1,000 updates (the whole process, and the mirror's own thread). Prints
//! a table.
//!
//! `cargo bench --bench mirror`; `MIRROR_KEYS` sets the sizes (default `10000,200000`),
//! `MIRROR_UPDATES` the updates timed (default 1,000).

mod common;

use std::time::{Duration, Instant};

use etcd_blocking::testing::Cluster;
use etcd_blocking::{Client, MirrorOptions, Txn, TxnOp};

/// This process's CPU seconds, and those of its thread named `etcd-mirror` (0 if none).
fn cpu_seconds() -> (f64, f64) {
    let process = common::cpu_seconds();
    let mirror = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|c| c.trim() == "etcd-mirror")
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .map(|s| common::cpu_of(&s))
        .sum();
    (process, mirror)
}

fn fill(client: &Client, prefix: &str, keys: usize) -> Result<(), etcd_blocking::Error> {
    for batch in (0..keys).step_by(100) {
        client.kv().txn(
            Txn::new().and_then(
                (batch..(batch + 100).min(keys))
                    .map(|i| TxnOp::put(format!("{prefix}{i:07}"), vec![b'v'; 64])),
            ),
        )?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes = common::env_list("MIRROR_KEYS", "10000,200000");
    let updates = common::env_number("MIRROR_UPDATES", 1000);
    let cluster = Cluster::start(1)?;
    let client = cluster.client()?;
    println!(
        "| keys | first copy | memory per key | put to visible p50 | p99 | CPU per 1,000 updates (process / mirror thread) |"
    );
    println!("|---|---|---|---|---|---|");
    for keys in sizes {
        let prefix = format!("mb{keys}/");
        fill(&client, &prefix, keys)?;
        let rss_before = common::status("VmRSS");
        let started = Instant::now();
        let mirror = client.mirror_with(&prefix, MirrorOptions::new())?;
        let first = started.elapsed();
        assert_eq!(mirror.len(), keys, "the whole prefix");
        let per_key =
            (common::status("VmRSS").saturating_sub(rss_before) * 1024) as f64 / keys as f64;
        let (cpu0, mirror0) = cpu_seconds();
        let mut latencies = Vec::with_capacity(updates);
        for n in 0..updates {
            let key = format!("{prefix}{:07}", n * 7919 % keys);
            let value = format!("u{n}");
            let t = Instant::now();
            client.kv().put(key.as_str(), value.as_str())?;
            mirror.wait_until(
                |s| s.get(&key).is_some_and(|kv| kv.value() == value.as_bytes()),
                Duration::from_secs(5),
            )?;
            latencies.push(t.elapsed());
        }
        let (cpu1, mirror1) = cpu_seconds();
        latencies.sort();
        let per_thousand = 1000.0 / updates.max(1) as f64;
        println!(
            "| {keys} | {:.0} ms | {per_key:.0} B | {:.2} ms | {:.2} ms | {:.0} ms / {:.0} ms |",
            first.as_secs_f64() * 1e3,
            common::percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            common::percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            (cpu1 - cpu0) * per_thousand * 1e3,
            (mirror1 - mirror0) * per_thousand * 1e3,
        );
        drop(mirror);
    }
    Ok(())
}
