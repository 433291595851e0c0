//! A local copy of a prefix side by side (`COMPARE_MODE=mirror`), and this client's driver
//! for it.
//!
//! `--workload=mirror --prefix=P`: the driver keeps a copy of the prefix P
//! the way its client's users do (this client's `Mirror`; the Go client's `mirror.Syncer`,
//! its `SyncBase` into a map and then its `SyncUpdates` watch; jetcd and etcd-client,
//! which have no mirror, a paged get at one revision and a watch from the revision after),
//! times the first full copy and the RSS it added, then prints `READY`. This process then
//! writes
//! `COMPARE_MIRROR_UPDATES` updates (default 2,000) under `P/u/`, one at a time, each
//! value the wall-clock time of its sending in Unix nanoseconds, and `P/done` last. The
//! driver takes each update's latency when it has applied it to its copy (this client:
//! when the mirror's batch of changes that holds it arrives, which it publishes after the
//! copy moved) and counts its CPU from `READY` to `P/done`; it prints `keys`, `first_copy_s`,
//! `rss_delta_kib`, `updates`, `p50_us`, `p99_us`, `cpu_seconds` and `peak_rss_kib`.
//!
//! On a 1-member cluster filled with 10,000 and 200,000 keys of 64-byte values
//! (`COMPARE_MIRROR_KEYS`, default `10000,200000`), every peer with a watch (python-etcd3
//! left out), `COMPARE_MIRROR_ROUNDS` rounds (default 3, the order rotating), medians.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use etcd_blocking::testing::Cluster;
use etcd_blocking::{Client, MirrorChange, MirrorOptions};

use crate::{cpu_seconds, flag, json_number, status, Peer};

/// Where the updates go, under the prefix; and the key that ends them.
const UPDATES: &str = "u/";
const DONE: &str = "done";

/// Runs this client's side of `mirror`.
pub fn drive(args: &[String], client: &Client) -> Result<(), Box<dyn std::error::Error>> {
    let prefix = flag(args, "prefix").unwrap_or_else(|| "mirror/".to_owned());
    let rss_before = status("VmRSS");
    let started = Instant::now();
    // A buffer of changes that the updates cannot fill, as for the peers' unbounded ones.
    let mirror = client.mirror_with(&prefix, MirrorOptions::new().changes_buffer(1 << 16))?;
    let first_copy = started.elapsed().as_secs_f64();
    let keys = mirror.len();
    let rss_after = status("VmRSS");
    let (_, changes) = mirror.changes();
    let cpu = cpu_seconds();
    println!("READY");
    let (stamped, done) = (format!("{prefix}{UPDATES}"), format!("{prefix}{DONE}"));
    let mut latencies = Vec::new();
    let until = Instant::now() + Duration::from_secs(300);
    'follow: loop {
        let left = until.saturating_duration_since(Instant::now());
        let Some(change) = changes.recv_timeout(left)? else {
            return Err("the last update never came".into());
        };
        let MirrorChange::Events { events, .. } = change else {
            continue;
        };
        let now = unix_nanos();
        for event in events {
            let key = event.kv().key();
            if key == done.as_bytes() {
                break 'follow;
            }
            if key.starts_with(stamped.as_bytes()) {
                if let Some(sent) = event.kv().value_str().ok().and_then(|v| v.parse().ok()) {
                    latencies.push(Duration::from_nanos(now.saturating_sub(sent)));
                }
            }
        }
    }
    let cpu = cpu_seconds() - cpu;
    latencies.sort();
    let us = |p: f64| crate::common::percentile(&latencies, p).as_secs_f64() * 1e6;
    println!(
        "{{\"client\":\"{}\",\"workload\":\"mirror\",\"keys\":{keys},\"first_copy_s\":{first_copy},\
         \"rss_delta_kib\":{},\"updates\":{},\"p50_us\":{},\"p99_us\":{},\"cpu_seconds\":{cpu},\
         \"peak_rss_kib\":{}}}",
        crate::OURS,
        rss_after as i64 - rss_before as i64,
        latencies.len(),
        us(0.50),
        us(0.99),
        status("VmHWM"),
    );
    drop(mirror);
    Ok(())
}

/// Nanoseconds since the Unix epoch: the clock the drivers and this process share.
fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One driver's answer.
#[derive(Debug, Clone)]
struct Copied {
    keys: f64,
    first_copy: f64,
    rss_delta_kib: f64,
    updates: f64,
    p50: f64,
    p99: f64,
    cpu: f64,
}

impl Copied {
    fn parse(line: &str) -> Option<Copied> {
        let number = |name: &str| json_number(line, name);
        Some(Copied {
            keys: number("keys")?,
            first_copy: number("first_copy_s")?,
            rss_delta_kib: number("rss_delta_kib")?,
            updates: number("updates")?,
            p50: number("p50_us")?,
            p99: number("p99_us")?,
            cpu: number("cpu_seconds")?,
        })
    }
}

/// Runs `peer`'s driver on `prefix`: waits for its `READY` line, writes the updates, then
/// reads its answer.
fn run(
    peer: &Peer,
    admin: &Client,
    endpoint: &str,
    prefix: &str,
    updates: usize,
) -> Result<Copied, Box<dyn std::error::Error>> {
    let (mut child, lines, reader) = crate::spawn_driver(
        peer,
        &[
            format!("--endpoints={endpoint}"),
            "--workload=mirror".to_owned(),
            format!("--prefix={prefix}"),
        ],
        Stdio::piped(),
    )?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let ready = lines
        .recv_timeout(Duration::from_secs(300))
        .is_ok_and(|line| line == "READY");
    if ready {
        for i in 0..updates {
            admin.kv().put(
                format!("{prefix}{UPDATES}{:03}", i % 100),
                unix_nanos().to_string(),
            )?;
        }
        admin.kv().put(format!("{prefix}{DONE}"), "1")?;
    } else {
        let _ = child.kill();
    }
    let status = child.wait()?;
    let _ = reader.join();
    let err = err.join().unwrap_or_default();
    if !ready {
        return Err(format!("{} never said READY ({status}): {err}", peer.name).into());
    }
    admin.kv().delete(format!("{prefix}{DONE}"))?;
    lines
        .try_iter()
        .collect::<Vec<_>>()
        .iter()
        .rev()
        .find_map(|line| Copied::parse(line))
        .ok_or_else(|| format!("{} gave no result ({status}): {err}", peer.name).into())
}

/// Runs every peer with a watch on each prefix size, `COMPARE_MIRROR_ROUNDS` rounds
/// (default 3, the order rotating), and writes `mirror-compare.md`.
pub fn compare(peers: &[Peer]) -> Result<(), Box<dyn std::error::Error>> {
    let (rounds, out) = crate::rounds_and_out("COMPARE_MIRROR_ROUNDS");
    let sizes = crate::common::env_list("COMPARE_MIRROR_KEYS", "10000,200000");
    let updates = crate::common::env_number("COMPARE_MIRROR_UPDATES", 2000);
    let peers: Vec<&Peer> = peers
        .iter()
        .filter(|p| p.name != crate::FLOOR && p.name != "python-etcd3")
        .collect();
    let mut lost = Vec::new();
    let mut table = format!(
        "# A local copy of a prefix, side by side\n\n\
         Made by `scripts/compare` (`COMPARE_MODE=mirror`, \
         `benches/compare/benches/peer_mirror/mod.rs`): every client its own process, \
         keeping a copy of a prefix of a 1-member cluster the way its users do \
         (etcd-blocking's `Mirror`; Go's `mirror.Syncer`, `SyncBase` into a map then \
         `SyncUpdates`; jetcd and etcd-client, which have no mirror, a get a page of 1,000 \
         keys at a time at one revision, then a watch from the revision after, each event \
         applied to a map). Values of 64 bytes. First copy: from the start to the whole \
         prefix in memory. RSS per key: what the copy added to the process's resident \
         memory, over the keys (the JVM's and Go's heaps grow by steps: a rough figure). \
         Then {updates} updates written one at a time by another process, each value its \
         sending time: put to visible is from that time to the update applied in the copy; \
         CPU is the driver's over the updates. {rounds} alternating round(s), medians.\n\n\
         | keys | client | first copy s | RSS B/key | put to visible p50 ms | p99 ms | CPU ms / 1,000 updates |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for keys in sizes {
        let cluster = Cluster::builder().start()?;
        let endpoint = cluster.endpoint(0);
        let admin = cluster.client()?;
        let prefix = "mirror/";
        let value = vec![b'v'; 64];
        for batch in 0..keys.div_ceil(100) {
            let ops = (batch * 100..((batch + 1) * 100).min(keys))
                .map(|i| etcd_blocking::TxnOp::put(format!("{prefix}k/{i:07}"), value.clone()));
            admin.kv().txn(etcd_blocking::Txn::new().and_then(ops))?;
        }
        eprintln!("mirror: {keys} keys written");
        let mut runs: Vec<Vec<Copied>> = peers.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            let mut order: Vec<usize> = (0..peers.len()).collect();
            order.rotate_left(round % peers.len().max(1));
            for &i in &order {
                match run(peers[i], &admin, &endpoint, prefix, updates) {
                    Ok(copied) if copied.keys as usize >= keys && copied.updates > 0.0 => {
                        eprintln!(
                            "mirror {keys} {:<15} first copy {:.3} s, p50 {:.2} ms",
                            peers[i].name,
                            copied.first_copy,
                            copied.p50 / 1e3
                        );
                        runs[i].push(copied);
                    }
                    Ok(copied) => lost.push(format!(
                        "- {keys} keys, {}: {} keys copied, {} updates seen",
                        peers[i].name, copied.keys, copied.updates
                    )),
                    Err(e) => lost.push(format!(
                        "- {keys} keys, {}: {}",
                        peers[i].name,
                        e.to_string().lines().next().unwrap_or("")
                    )),
                }
            }
        }
        for (i, peer) in peers.iter().enumerate() {
            let runs = &runs[i];
            if runs.is_empty() {
                continue;
            }
            let pick = |f: &dyn Fn(&Copied) -> f64| crate::median(runs, f);
            table.push_str(&format!(
                "| {keys} | {} | {:.3} | {:.0} | {:.2} | {:.2} | {:.0} |\n",
                peer.name,
                pick(&|r| r.first_copy),
                pick(&|r| r.rss_delta_kib * 1024.0 / r.keys.max(1.0)),
                pick(&|r| r.p50 / 1e3),
                pick(&|r| r.p99 / 1e3),
                pick(&|r| r.cpu * 1e3 / r.updates.max(1.0) * 1000.0),
            ));
        }
    }
    crate::write_table(&out, "mirror-compare.md", table, &lost)
}
