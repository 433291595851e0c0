//! TLS side by side (`COMPARE_MODE=tls`): puts of 64 B from 1 and 8 callers, every client
//! its own process, on a 1-member cluster with mutual TLS and, in the same run, on a
//! plaintext one, so that each client's cost of TLS shows beside its figures.
//!
//! Every driver takes `--cacert`, `--cert` and `--key` (PEM files) and `https://`
//! endpoints. The certificates are the launcher's (`testing::Authority`), written into
//! the cluster's directory; the client certificate's common name is `root`.

use etcd_blocking::testing::{Cluster, Validity};

use crate::{Peer, Run, Workload};

/// The cells: callers, each putting 64 B values.
const CELLS: [(usize, usize); 2] = [(1, 0), (8, 0)];

/// Runs the cells for every peer but the floor, `COMPARE_TLS_ROUNDS` rounds (default 3,
/// the order rotating), and writes `tls-compare.md`.
pub fn compare(peers: &[Peer]) -> Result<(), Box<dyn std::error::Error>> {
    let (rounds, out) = crate::rounds_and_out("COMPARE_TLS_ROUNDS");
    let peers: Vec<&Peer> = peers.iter().filter(|p| p.name != crate::FLOOR).collect();
    let mut tables = String::new();
    let mut lost = Vec::new();
    let mut rates: Vec<Vec<f64>> = Vec::new();
    for tls in [false, true] {
        let cluster = if tls {
            Cluster::builder().mutual_tls().start()?
        } else {
            Cluster::start(1)?
        };
        let endpoints = cluster.endpoints().join(",");
        let files = if tls {
            certificate_files(&cluster)?
        } else {
            Vec::new()
        };
        let admin = cluster.client()?;
        let mut runs: Vec<Vec<Vec<Run>>> = peers
            .iter()
            .map(|_| CELLS.iter().map(|_| Vec::new()).collect())
            .collect();
        for round in 0..rounds {
            let mut order: Vec<usize> = (0..peers.len()).collect();
            order.rotate_left(round % peers.len().max(1));
            for &i in &order {
                for (cell, &(callers, _)) in CELLS.iter().enumerate() {
                    let workload = Workload {
                        members: 1,
                        workload: "put",
                        callers,
                        value_size: 64,
                    };
                    // The fill and every put counted, or the run is failed.
                    let result = crate::writes_checked(
                        &admin,
                        |r: &Run| {
                            let least = (crate::KEYS as f64 + r.ops + r.warmup_ops) as i64;
                            (least, least + (r.errors + r.warmup_errors) as i64)
                        },
                        || crate::run_driver_with(peers[i], &endpoints, &workload, &files),
                    );
                    let now = crate::revision(&admin)?;
                    admin.kv().compact(now)?;
                    match result {
                        Ok(run) => {
                            eprintln!(
                                "{} {callers} caller(s) {:<15} {:.0} puts/s",
                                if tls { "mutual TLS" } else { "plaintext" },
                                peers[i].name,
                                run.rate()
                            );
                            runs[i][cell].push(run);
                        }
                        Err(e) => lost.push(format!(
                            "- {}, {callers} caller(s), {}: {}",
                            if tls { "mutual TLS" } else { "plaintext" },
                            peers[i].name,
                            e.to_string().lines().next().unwrap_or("")
                        )),
                    }
                }
            }
        }
        tables.push_str(&format!(
            "\n## {}\n\n| callers | client | puts/s | p50 ms | p99 ms | CPU ms / put |\n\
             |---|---|---|---|---|---|\n",
            if tls {
                "Mutual TLS"
            } else {
                "Plaintext, the same run"
            }
        ));
        crate::cell_rows(&mut tables, &CELLS, &peers, &runs);
        rates.push(
            runs.iter()
                .flat_map(|cells| cells.iter().map(|r| crate::median(r, Run::rate)))
                .collect(),
        );
    }
    let mut table = format!(
        "# TLS side by side\n\n\
         Made by `scripts/compare` (`COMPARE_MODE=tls`, \
         `benches/compare/benches/peer_tls/mod.rs`): puts of 64 B for {} s a run, every \
         client its own process on a 1-member cluster with mutual TLS (client certificates \
         required, ECDSA P-256 certificates made by the launcher), and in the same run on a \
         plaintext one; {rounds} alternating round(s), medians. Every run's writes were \
         checked against the store's revision.\n\n\
         ## TLS against plaintext, puts/s\n\n\
         | callers | client | plaintext | mutual TLS | TLS / plaintext |\n|---|---|---|---|---|\n",
        crate::RUN.as_secs()
    );
    for (cell, &(callers, _)) in CELLS.iter().enumerate() {
        for (i, peer) in peers.iter().enumerate() {
            let at = i * CELLS.len() + cell;
            let (plain, tls) = (rates[0][at], rates[1][at]);
            if plain == 0.0 || tls == 0.0 {
                continue;
            }
            table.push_str(&format!(
                "| {callers} | {} | {plain:.0} | {tls:.0} | {:.2} |\n",
                peer.name,
                tls / plain
            ));
        }
    }
    table.push_str(&tables);
    crate::write_table(&out, "tls-compare.md", table, &lost)
}

/// The CA, and a client certificate and key of the cluster's authority (common name
/// `root`), written as PEM files into the cluster's directory; the driver flags for them.
fn certificate_files(cluster: &Cluster) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let authority = cluster
        .authority()
        .ok_or("a TLS cluster has an authority")?;
    let client = authority.client("root", Validity::Current)?;
    let dir = cluster.dir();
    let write = |name: &str, content: &str| -> Result<String, Box<dyn std::error::Error>> {
        let path = dir.join(name);
        std::fs::write(&path, content)?;
        Ok(path.display().to_string())
    };
    Ok(vec![
        format!(
            "--cacert={}",
            write("bench-ca.pem", &authority.certificate())?
        ),
        format!("--cert={}", write("bench-client.pem", &client.certificate)?),
        format!("--key={}", write("bench-client.key", &client.key)?),
    ])
}
