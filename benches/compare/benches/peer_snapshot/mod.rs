//! Snapshots side by side (`COMPARE_MODE=snapshot`), and this client's driver for them.
//!
//! `--workload=snapshot --out=FILE`: the driver saves a snapshot of the first endpoint's
//! member to FILE the way its client's users do (this client's `snapshot_to_file`; the Go
//! client's `snapshot.SaveWithVersion`, which is etcdctl's `snapshot save`; jetcd's
//! `Maintenance.snapshot(OutputStream)`; etcd-client's snapshot stream written chunk by
//! chunk) and prints `bytes`, `seconds`, `cpu_seconds` and `peak_rss_kib`. This process
//! then checks the file: the database, a whole number of 512-byte pages, followed by its
//! SHA-256.
//!
//! On a 1-member cluster filled with values of 1 MiB to 100 MiB and to 1 GiB
//! (`COMPARE_SNAPSHOT_MIB`, default `100,1024`), every peer with a snapshot (python-etcd3
//! left out), `COMPARE_SNAPSHOT_ROUNDS` rounds (default 3), medians.

use std::io::Read;
use std::time::Instant;

use etcd_blocking::testing::Cluster;
use etcd_blocking::Client;
use sha2::{Digest, Sha256};

use crate::{cpu_seconds, flag, json_number, status, Peer};

/// Runs this client's side of `snapshot`.
pub fn drive(
    args: &[String],
    client: &Client,
    endpoint: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let out = flag(args, "out").ok_or("--out is required")?;
    let cpu = cpu_seconds();
    let started = Instant::now();
    let info = client.maintenance().snapshot_to_file(endpoint, &out)?;
    println!(
        "{{\"client\":\"{}\",\"workload\":\"snapshot\",\"bytes\":{},\"seconds\":{},\
         \"cpu_seconds\":{},\"peak_rss_kib\":{}}}",
        crate::OURS,
        info.size + 32,
        started.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
        status("VmHWM"),
    );
    Ok(())
}

/// One driver's answer.
#[derive(Debug, Clone)]
struct Saved {
    bytes: f64,
    seconds: f64,
    cpu: f64,
    rss_kib: f64,
}

impl Saved {
    fn parse(line: &str) -> Option<Saved> {
        let number = |name: &str| json_number(line, name);
        Some(Saved {
            bytes: number("bytes")?,
            seconds: number("seconds")?,
            cpu: number("cpu_seconds")?,
            rss_kib: number("peak_rss_kib")?,
        })
    }
}

/// Checks a saved snapshot: a database of whole 512-byte pages, then its SHA-256.
fn verify(path: &std::path::Path) -> Result<u64, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("no snapshot file: {e}"))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len < 32 || (len - 32) % 512 != 0 {
        return Err(format!("{len} bytes is not pages and a digest"));
    }
    let mut hasher = Sha256::new();
    let mut left = len - 32;
    let mut buffer = vec![0u8; 1 << 20];
    while left > 0 {
        let take = usize::try_from(left.min(buffer.len() as u64)).unwrap_or(buffer.len());
        file.read_exact(&mut buffer[..take])
            .map_err(|e| e.to_string())?;
        hasher.update(&buffer[..take]);
        left -= take as u64;
    }
    let mut digest = [0u8; 32];
    file.read_exact(&mut digest).map_err(|e| e.to_string())?;
    if hasher.finalize().as_slice() != digest {
        return Err("the digest does not match the database".to_owned());
    }
    Ok(len - 32)
}

/// Runs every peer with a snapshot on each size, `COMPARE_SNAPSHOT_ROUNDS` rounds
/// (default 3, the order rotating), and writes `snapshot-compare.md`.
pub fn compare(peers: &[Peer]) -> Result<(), Box<dyn std::error::Error>> {
    let (rounds, out) = crate::rounds_and_out("COMPARE_SNAPSHOT_ROUNDS");
    let sizes = crate::common::env_list("COMPARE_SNAPSHOT_MIB", "100,1024");
    let peers: Vec<&Peer> = peers
        .iter()
        .filter(|p| p.name != crate::FLOOR && p.name != "python-etcd3")
        .collect();
    let mut lost = Vec::new();
    let mut table = format!(
        "# Snapshots side by side\n\n\
         Made by `scripts/compare` (`COMPARE_MODE=snapshot`, \
         `benches/compare/benches/peer_snapshot/mod.rs`): every client its own process, \
         saving a snapshot of a 1-member cluster's database to a file the way its users do \
         (etcd-blocking's `snapshot_to_file`; Go's `snapshot.SaveWithVersion`, which is \
         etcdctl's `snapshot save`; jetcd's `Maintenance.snapshot(OutputStream)`; \
         etcd-client's snapshot stream, each chunk written as it comes); {rounds} \
         alternating round(s), medians. Every file was checked afterwards: the database in \
         whole pages, then its SHA-256. \"Verifies\" says whether the client itself checks \
         the digest before it reports success.\n\n\
         | database | client | seconds | MiB/s | CPU s | peak RSS MiB | verifies |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for mib in sizes {
        let cluster = Cluster::builder()
            .arg("--quota-backend-bytes=8589934592")
            .arg("--max-request-bytes=2097152")
            .start()?;
        let endpoint = cluster.endpoint(0);
        let admin = cluster.client()?;
        let value = vec![b'v'; 1 << 20];
        for i in 0..mib {
            admin.kv().put(format!("snap/{i:06}"), value.clone())?;
        }
        let db = admin.maintenance().status(&endpoint)?.db_size;
        eprintln!(
            "snapshot: {mib} MiB written, the database is {} MiB",
            db >> 20
        );
        let mut runs: Vec<Vec<Saved>> = peers.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            let mut order: Vec<usize> = (0..peers.len()).collect();
            order.rotate_left(round % peers.len().max(1));
            for &i in &order {
                let path = cluster.dir().join(format!("bench-{i}.db"));
                let _ = std::fs::remove_file(&path);
                let result = crate::run_peer(
                    peers[i],
                    &[
                        format!("--endpoints={endpoint}"),
                        "--workload=snapshot".to_owned(),
                        format!("--out={}", path.display()),
                    ],
                    Saved::parse,
                );
                let checked = result
                    .map_err(|e| e.to_string())
                    .and_then(|saved| verify(&path).map(|_| saved));
                let _ = std::fs::remove_file(&path);
                match checked {
                    Ok(saved) => {
                        eprintln!(
                            "snapshot {mib} MiB {:<15} {:.2} s, {:.0} MiB peak RSS",
                            peers[i].name,
                            saved.seconds,
                            saved.rss_kib / 1024.0
                        );
                        runs[i].push(saved);
                    }
                    Err(e) => lost.push(format!(
                        "- {mib} MiB, {}: {}",
                        peers[i].name,
                        e.lines().next().unwrap_or("")
                    )),
                }
            }
        }
        for (i, peer) in peers.iter().enumerate() {
            let runs = &runs[i];
            if runs.is_empty() {
                continue;
            }
            let pick = |f: &dyn Fn(&Saved) -> f64| crate::median(runs, f);
            let seconds = pick(&|r| r.seconds);
            table.push_str(&format!(
                "| {} MiB | {} | {seconds:.2} | {:.0} | {:.2} | {:.0} | {} |\n",
                db >> 20,
                peer.name,
                pick(&|r| r.bytes) / (1 << 20) as f64 / seconds.max(1e-9),
                pick(&|r| r.cpu),
                pick(&|r| r.rss_kib) / 1024.0,
                verifies(peer.name),
            ));
        }
    }
    crate::write_table(&out, "snapshot-compare.md", table, &lost)
}

/// Whether a client checks the snapshot's digest itself, from its code: this client
/// does; Go's `SaveWithVersion` checks only that the size is pages plus a digest (etcdutl
/// checks the digest at restore); jetcd and etcd-client write what comes.
fn verifies(client: &str) -> &'static str {
    match client {
        crate::OURS => "SHA-256 and sizes",
        c if c.starts_with("go-clientv3") => "size only",
        _ => "no",
    }
}
