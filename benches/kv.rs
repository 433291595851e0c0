//! Sequential put and get against a throwaway 1-member cluster: prints ops/s and latency
//! percentiles, for this client and for a bare grpcio call with no client logic, in
//! alternating rounds (runs vary: compare only figures of one run). Run with
//! `cargo bench --bench kv`; `ETCD_BENCH_OPS` sets the count per round (default 2000).

use std::time::{Duration, Instant};

use common::percentile;
use etcd_blocking::testing::{BareKv, Cluster};

mod common;
use etcd_blocking::{Client, GetOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ops: usize = std::env::var("ETCD_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let cluster = Cluster::start(1)?;
    let client = Client::connect(cluster.endpoints())?;
    let kv = client.kv();
    let bare = BareKv::connect(&cluster.endpoint(0));
    let value = vec![b'v'; 64];
    let text = |e: etcd_blocking::Error| e.to_string();
    println!(
        "{:<24} {:>8} {:>10} {:>10} {:>10}",
        "workload", "ops", "ops/s", "p50", "p99"
    );
    for round in 1..=3 {
        println!("round {round}");
        report("put 64 B", ops, |i| {
            kv.put(format!("bench/{i}"), value.clone())
                .map(drop)
                .map_err(text)
        })?;
        report("put 64 B, bare grpcio", ops, |i| {
            bare.put(format!("bench/{i}").into_bytes(), value.clone())
        })?;
        report("get linearizable", ops, |i| {
            kv.get(format!("bench/{i}")).map(drop).map_err(text)
        })?;
        report("get, bare grpcio", ops, |i| {
            bare.get(format!("bench/{i}").into_bytes())
        })?;
        report("get serializable", ops, |i| {
            kv.get_with(format!("bench/{i}"), GetOptions::new().serializable())
                .map(drop)
                .map_err(text)
        })?;
    }
    client.close()?;
    Ok(())
}

/// Runs `op` `ops` times in a row and prints throughput and latency percentiles.
fn report(
    name: &str,
    ops: usize,
    mut op: impl FnMut(usize) -> Result<(), String>,
) -> Result<(), String> {
    let mut latencies = Vec::with_capacity(ops);
    let started = Instant::now();
    for i in 0..ops {
        let t = Instant::now();
        op(i)?;
        latencies.push(t.elapsed());
    }
    let total = started.elapsed();
    latencies.sort();
    let pct = |p: f64| percentile(&latencies, p);
    println!(
        "{:<24} {:>8} {:>10.0} {:>10} {:>10}",
        name,
        ops,
        ops as f64 / total.as_secs_f64(),
        micros(pct(0.50)),
        micros(pct(0.99))
    );
    Ok(())
}

fn micros(d: Duration) -> String {
    format!("{} us", d.as_micros())
}
