//! STM side by side (`COMPARE_MODE=stm`), and this client's driver for it. Of the peers
//! only the Go client has an STM (`concurrency.NewSTM`); jetcd and etcd-client have none.
//!
//! `--workload=stm --callers=C --ops=N`: C callers share N increments of one counter,
//! each a run of the client's STM at its default isolation (serializable snapshot) that
//! reads the counter and writes it plus one. The latency is of a run, conflicts and
//! reruns included; the orchestrator checks that the counter ends at N and that the
//! store's revision moved by exactly N (N + 1 for this client, whose STM deletes the
//! fences of its last commits when dropped).

use std::thread;
use std::time::{Duration, Instant};

use etcd_blocking::concurrency::Stm;
use etcd_blocking::testing::Cluster;
use etcd_blocking::Client;

use crate::{cpu_seconds, flag, Peer, Run};

/// The cells: callers and increments.
const CELLS: [(usize, usize); 2] = [(1, 500), (8, 1000)];

/// The counter every run increments.
const COUNTER: &str = "bench-stm";

/// Runs this client's side of `stm`.
pub fn drive(args: &[String], client: &Client) -> Result<(), Box<dyn std::error::Error>> {
    let callers: usize = flag(args, "callers").map_or(Ok(1), |v| v.parse())?;
    let ops: usize = flag(args, "ops").map_or(Ok(500), |v| v.parse())?;
    let callers = callers.max(1);
    let cpu = cpu_seconds();
    let started = Instant::now();
    let stm = Stm::new(client);
    let latencies: Vec<Duration> = thread::scope(|s| {
        let workers: Vec<_> = (0..callers)
            .map(|c| {
                let stm = &stm;
                s.spawn(move || -> Result<Vec<Duration>, etcd_blocking::Error> {
                    let mut mine = Vec::new();
                    for _ in (c..ops).step_by(callers) {
                        let t = Instant::now();
                        stm.run(|tx| {
                            let n: u64 = tx
                                .get(COUNTER)?
                                .map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap_or(0));
                            tx.put(COUNTER, (n + 1).to_string());
                            Ok::<_, etcd_blocking::Error>(())
                        })?;
                        mine.push(t.elapsed());
                    }
                    Ok(mine)
                })
            })
            .collect();
        crate::peer_lease::gather(workers)
    })?;
    crate::peer_lease::report(
        "stm",
        callers,
        latencies,
        started.elapsed(),
        cpu_seconds() - cpu,
    );
    Ok(())
}

/// Runs the cells for the peers that have an STM, `COMPARE_STM_ROUNDS` rounds (default
/// 3, the order rotating), and writes `stm-compare.md`.
pub fn compare(peers: &[Peer]) -> Result<(), Box<dyn std::error::Error>> {
    let (rounds, out) = crate::rounds_and_out("COMPARE_STM_ROUNDS");
    let peers: Vec<&Peer> = peers
        .iter()
        .filter(|p| p.name == crate::OURS || p.name.starts_with("go-clientv3"))
        .collect();
    let cluster = Cluster::start(1)?;
    let endpoints = cluster.endpoints().join(",");
    let admin = cluster.client()?;
    let mut runs: Vec<Vec<Vec<Run>>> = peers
        .iter()
        .map(|_| CELLS.iter().map(|_| Vec::new()).collect())
        .collect();
    let mut lost = Vec::new();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..peers.len()).collect();
        order.rotate_left(round % peers.len().max(1));
        for &i in &order {
            for (cell, &(callers, ops)) in CELLS.iter().enumerate() {
                admin.kv().delete(COUNTER)?;
                // Every increment commits one transaction; a conflict writes nothing.
                // etcd-blocking's STM also deletes the fences its last commits left when
                // it is dropped: one transaction more, or none if none were left.
                let most = ops as i64 + i64::from(peers[i].name == crate::OURS);
                let run = crate::writes_checked(
                    &admin,
                    |_| (ops as i64, most),
                    || {
                        crate::run_peer(
                            peers[i],
                            &[
                                format!("--endpoints={endpoints}"),
                                "--workload=stm".to_owned(),
                                format!("--callers={callers}"),
                                format!("--ops={ops}"),
                            ],
                            Run::parse,
                        )
                    },
                );
                let counted = admin.kv().get_one(COUNTER)?.map_or(0, |kv| {
                    String::from_utf8_lossy(kv.value())
                        .parse::<usize>()
                        .unwrap_or(0)
                });
                match run {
                    Ok(run) if counted == ops => {
                        eprintln!(
                            "stm {callers} caller(s) {:<15} p50 {:.0} us",
                            peers[i].name, run.p50
                        );
                        runs[i][cell].push(run);
                    }
                    Ok(_) => lost.push(format!(
                        "- stm {callers}, {}: the counter ended at {counted}, not {ops}",
                        peers[i].name
                    )),
                    Err(e) => lost.push(format!("- stm {callers}, {}: {e}", peers[i].name)),
                }
            }
        }
    }
    let mut table = format!(
        "# STM side by side\n\n\
         Made by `scripts/compare` (`COMPARE_MODE=stm`, \
         `benches/compare/benches/peer_stm/mod.rs`): every client its own process on one \
         1-member cluster, {rounds} alternating round(s), medians. Callers share increments \
         of one counter, each a run of the client's STM (serializable snapshot); the latency \
         is of a run, conflicts and reruns included; every run's counter ended exact and the \
         store's revision moved by exactly the increments (etcd-blocking: plus at most one \
         transaction, the fences its STM deletes when dropped). \
         Only the Go client has an STM among the peers.\n\n\
         | callers | client | runs/s | p50 ms | p99 ms | CPU ms / run |\n|---|---|---|---|---|---|\n"
    );
    crate::cell_rows(&mut table, &CELLS, &peers, &runs);
    crate::write_table(&out, "stm-compare.md", table, &lost)
}
