//! Leases and locks side by side (`COMPARE_MODE=lease`), and this client's drivers for them.
//!
//! - **Keepalives** (`--workload=keepalive --leases=N --ttl-s=T`), on a 1-member cluster:
//!   the driver grants N leases from 8 callers and keeps every one alive the way its
//!   client's users do, then reports its CPU over three TTLs, its RSS and threads. After
//!   the driver exits, this process counts the leases still alive (a lease not renewed
//!   would have run out during the three TTLs) and revokes them.
//! - **Locks** (`--workload=lock --callers=C --ops=N`): C callers, each with a lease or
//!   session of its own, share N lock + unlock pairs on one lock; the latency is of the
//!   pair.
//! - **Elections** (`--workload=election --ops=N`): N handovers. Candidate a leads,
//!   candidate b campaigns behind it, a's lease is revoked (its session is lost); the
//!   latency runs from the revoke sent to b's campaign returning.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use etcd_blocking::concurrency::{Election, Mutex, Session};
use etcd_blocking::testing::Cluster;
use etcd_blocking::{Client, GetOptions, KeepAlive};

use crate::{cpu_seconds, flag, json_number, status, Peer, Run};

/// The keepalive cell: leases and their TTL in seconds.
const LEASES: usize = 10_000;
const TTL_S: u64 = 5;

/// The lock cells: callers and lock + unlock pairs.
const LOCK_CELLS: [(usize, usize); 2] = [(1, 500), (8, 1000)];

/// The election cell: handovers.
const HANDOVERS: usize = 50;

// ---------------------------------------------------------------------------------------
// This client's drivers.

/// Runs this client's side of `keepalive` or `lock`.
pub fn drive(args: &[String], client: &Client) -> Result<(), Box<dyn std::error::Error>> {
    match flag(args, "workload").as_deref() {
        Some("keepalive") => {
            let leases: usize = flag(args, "leases").map_or(Ok(LEASES), |v| v.parse())?;
            let ttl: u64 = flag(args, "ttl-s").map_or(Ok(TTL_S), |v| v.parse())?;
            keep_alive(client, leases, Duration::from_secs(ttl.max(1)))
        }
        Some("election") => {
            let ops: usize = flag(args, "ops").map_or(Ok(HANDOVERS), |v| v.parse())?;
            election(client, ops)
        }
        _ => {
            let callers: usize = flag(args, "callers").map_or(Ok(1), |v| v.parse())?;
            let ops: usize = flag(args, "ops").map_or(Ok(500), |v| v.parse())?;
            lock(client, callers.max(1), ops)
        }
    }
}

fn keep_alive(
    client: &Client,
    leases: usize,
    ttl: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let kept: Vec<KeepAlive> = thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let lease = client.lease();
                s.spawn(move || {
                    (w..leases)
                        .step_by(8)
                        .map(|_| lease.keep_alive(lease.grant(ttl)?.id()))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        gather(workers)
    })?;
    let setup_ms = started.elapsed().as_secs_f64() * 1e3;
    let cpu = cpu_seconds();
    let window = Instant::now();
    // The renewals run on the keeper's thread; this one only waits.
    let until = window + 3 * ttl;
    while Instant::now() < until {
        thread::park_timeout(until.saturating_duration_since(Instant::now()));
    }
    println!(
        "{{\"client\":\"{}\",\"workload\":\"keepalive\",\"leases\":{leases},\
         \"setup_ms\":{setup_ms},\"cpu_seconds\":{},\"seconds\":{},\"rss_kib\":{},\
         \"threads\":{}}}",
        crate::OURS,
        cpu_seconds() - cpu,
        window.elapsed().as_secs_f64(),
        status("VmRSS"),
        status("Threads"),
    );
    // Leave them to run out: the orchestrator counts and revokes them.
    for k in kept {
        k.stop();
    }
    Ok(())
}

fn lock(client: &Client, callers: usize, ops: usize) -> Result<(), Box<dyn std::error::Error>> {
    let cpu = cpu_seconds();
    let started = Instant::now();
    let latencies: Vec<Duration> = thread::scope(|s| {
        let workers: Vec<_> = (0..callers)
            .map(|c| {
                s.spawn(move || -> Result<Vec<Duration>, etcd_blocking::Error> {
                    let session = Session::new(client, Duration::from_secs(10))?;
                    let mutex = Mutex::new(&session, "bench-lock")?;
                    let mut mine = Vec::new();
                    for _ in (c..ops).step_by(callers) {
                        let t = Instant::now();
                        mutex.lock(Duration::from_secs(30))?.unlock()?;
                        mine.push(t.elapsed());
                    }
                    session.close()?;
                    Ok(mine)
                })
            })
            .collect();
        gather(workers)
    })?;
    report(
        "lock",
        callers,
        latencies,
        started.elapsed(),
        cpu_seconds() - cpu,
    );
    Ok(())
}

/// What every worker thread gave, in one list (a thread that panicked gave nothing).
pub fn gather<T>(
    workers: Vec<thread::ScopedJoinHandle<'_, Result<Vec<T>, etcd_blocking::Error>>>,
) -> Result<Vec<T>, etcd_blocking::Error> {
    workers
        .into_iter()
        .map(|w| w.join().unwrap_or_else(|_| Ok(Vec::new())))
        .collect::<Result<Vec<_>, _>>()
        .map(|all| all.into_iter().flatten().collect())
}

/// Prints a driver's line in the KV protocol: latencies and what the run cost.
pub fn report(
    workload: &str,
    callers: usize,
    mut latencies: Vec<Duration>,
    elapsed: Duration,
    cpu: f64,
) {
    latencies.sort();
    let us = |p: f64| crate::common::percentile(&latencies, p).as_secs_f64() * 1e6;
    println!(
        "{{\"client\":\"{}\",\"workload\":\"{workload}\",\"callers\":{callers},\
         \"value_size\":0,\"ops\":{},\"errors\":0,\"seconds\":{},\"p50_us\":{},\
         \"p99_us\":{},\"p999_us\":{},\"cpu_seconds\":{cpu},\"peak_rss_kib\":{},\
         \"threads\":{}}}",
        crate::OURS,
        latencies.len(),
        elapsed.as_secs_f64(),
        us(0.50),
        us(0.99),
        us(0.999),
        status("VmHWM"),
        status("Threads"),
    );
}

fn election(client: &Client, ops: usize) -> Result<(), Box<dyn std::error::Error>> {
    const WAIT: Duration = Duration::from_secs(30);
    let cpu = cpu_seconds();
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(ops);
    for _ in 0..ops {
        let (a, b) = (
            Session::new(client, Duration::from_secs(10))?,
            Session::new(client, Duration::from_secs(10))?,
        );
        let _leading = Election::new(&a, "bench-election")?.campaign("a", WAIT)?;
        let behind = Election::new(&b, "bench-election")?;
        let (won, at) = thread::scope(|s| -> Result<_, Box<dyn std::error::Error>> {
            let candidate = s.spawn(|| {
                let won = behind.campaign("b", WAIT);
                (won, Instant::now())
            });
            let kv = client.kv();
            let queued = || {
                kv.get_with("bench-election/", GetOptions::new().prefix().count_only())
                    .map(|r| r.count())
            };
            while queued()? < 2 {}
            let t = Instant::now();
            client.lease().revoke(a.lease_id())?;
            let (won, at) = candidate.join().map_err(|_| "the candidate panicked")?;
            Ok((won?, at.saturating_duration_since(t)))
        })?;
        latencies.push(at);
        won.resign()?;
        // Its lease is gone already: closing it finds nothing to revoke.
        let _ = a.close();
        b.close()?;
    }
    report(
        "election",
        1,
        latencies,
        started.elapsed(),
        cpu_seconds() - cpu,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The orchestrator.

/// One keepalive run: the driver's figures and the leases found alive after it.
#[derive(Debug, Clone, Default)]
struct Kept {
    setup_ms: f64,
    cpu_per_second: f64,
    rss: f64,
    threads: f64,
    alive: f64,
}

/// Runs both parts for the peers that have them, `COMPARE_LEASE_ROUNDS` rounds (default
/// 3, the order rotating), and writes `lease-compare.md`.
pub fn compare(peers: &[Peer]) -> Result<(), Box<dyn std::error::Error>> {
    let (rounds, out) = crate::rounds_and_out("COMPARE_LEASE_ROUNDS");
    let peers: Vec<&Peer> = peers
        .iter()
        .filter(|p| p.name != crate::FLOOR && p.name != "python-etcd3")
        .collect();
    let cluster = Cluster::start(1)?;
    let endpoints = cluster.endpoints().join(",");
    let admin = cluster.client()?;
    let mut kept: Vec<Vec<Kept>> = peers.iter().map(|_| Vec::new()).collect();
    let mut locks: Vec<Vec<Vec<Run>>> = peers
        .iter()
        .map(|_| LOCK_CELLS.iter().map(|_| Vec::new()).collect())
        .collect();
    let mut elections: Vec<Vec<Run>> = peers.iter().map(|_| Vec::new()).collect();
    let mut lost = Vec::new();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..peers.len()).collect();
        order.rotate_left(round % peers.len().max(1));
        for &i in &order {
            // Leases without keys: granting, renewing and revoking them writes nothing.
            match crate::writes_checked(
                &admin,
                |_| (0, 0),
                || run_keepalive(peers[i], &endpoints, &admin),
            ) {
                Ok(k) => {
                    eprintln!(
                        "keepalive {:<15} {:.1}% of a core, {} alive",
                        peers[i].name,
                        k.cpu_per_second * 100.0,
                        k.alive
                    );
                    kept[i].push(k);
                }
                Err(e) => lost.push(format!("- keepalive, {}: {e}", peers[i].name)),
            }
            for (cell, &(callers, ops)) in LOCK_CELLS.iter().enumerate() {
                // A pair is a put of the caller's key and its delete.
                let pairs = |r: &Run| 2 * (ops as i64 + r.warmup_ops as i64);
                match crate::writes_checked(
                    &admin,
                    |r| (pairs(r), pairs(r)),
                    || run_lock(peers[i], &endpoints, callers, ops),
                ) {
                    Ok(run) => {
                        eprintln!(
                            "lock {callers} caller(s) {:<15} p50 {:.0} us",
                            peers[i].name, run.p50
                        );
                        locks[i][cell].push(run);
                    }
                    Err(e) => lost.push(format!("- lock {callers}, {}: {e}", peers[i].name)),
                }
            }
            // A handover: a's and b's campaign puts, the delete of a's key by the revoke,
            // and b's resignation.
            let handovers = |r: &Run| 4 * (HANDOVERS as i64 + r.warmup_ops as i64);
            match crate::writes_checked(
                &admin,
                |r| (handovers(r), handovers(r)),
                || run_election(peers[i], &endpoints),
            ) {
                Ok(run) => {
                    eprintln!("election {:<15} p50 {:.0} us", peers[i].name, run.p50);
                    elections[i].push(run);
                }
                Err(e) => lost.push(format!("- election, {}: {e}", peers[i].name)),
            }
        }
    }
    let mut table = format!(
        "# Leases and locks side by side\n\n\
         Made by `scripts/compare` (`COMPARE_MODE=lease`, \
         `benches/compare/benches/peer_lease/mod.rs`): every client its own process on one \
         1-member cluster, {rounds} alternating round(s), medians. After every run the \
         store's revision moved by exactly what the workload writes (nothing for the \
         keepalives, two writes a lock pair, four a handover, untimed warm-up included), \
         or the run is listed as failed.\n\n\
         ## {LEASES} leases kept alive by one client\n\n\
         TTL {TTL_S} s (a renewal every {:.1} s: {:.0} renewals/s). CPU is the client \
         process's user + system time over three TTLs, per second; RSS and threads are the \
         process's; \"alive\" counts the leases the server still had after the driver's \
         three TTLs.\n\n\
         | client | grant + keep all, s | CPU, % of a core | RSS MiB | threads | alive |\n\
         |---|---|---|---|---|---|\n",
        TTL_S as f64 / 3.0,
        LEASES as f64 * 3.0 / TTL_S as f64
    );
    for (peer, runs) in peers.iter().zip(&kept) {
        if runs.is_empty() {
            continue;
        }
        let pick = |f: &dyn Fn(&Kept) -> f64| crate::median(runs, f);
        table.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} |\n",
            peer.name,
            pick(&|k| k.setup_ms) / 1e3,
            pick(&|k| k.cpu_per_second) * 100.0,
            pick(&|k| k.rss) / 1024.0,
            pick(&|k| k.threads),
            pick(&|k| k.alive),
        ));
    }
    table.push_str(
        "\n## Lock acquire + release\n\n\
         Each caller has a session (etcd-blocking, clientv3) or a lease (etcd-client, jetcd, \
         through etcd's lock service) of its own; the latency is of one lock + unlock pair.\n\n\
         | callers | client | pairs/s | p50 ms | p99 ms | CPU ms / pair |\n|---|---|---|---|---|---|\n",
    );
    crate::cell_rows(&mut table, &LOCK_CELLS, &peers, &locks);
    table.push_str(&format!(
        "\n## Leader handover\n\n\
         Candidate a leads, candidate b campaigns behind it, and a's lease is revoked (what \
         the server does when a lost session's TTL runs out, without the wait); the time runs \
         from the revoke sent to b's campaign returning, {HANDOVERS} handovers a run. \
         etcd-blocking and clientv3 use their election recipes, etcd-client and jetcd etcd's \
         election service.\n\n\
         | client | p50 ms | p99 ms | CPU ms / handover |\n|---|---|---|---|\n"
    ));
    for (peer, runs) in peers.iter().zip(&elections) {
        if runs.is_empty() {
            continue;
        }
        let pick = |f: &dyn Fn(&Run) -> f64| crate::median(runs, f);
        table.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.3} |\n",
            peer.name,
            pick(&|r| r.p50) / 1e3,
            pick(&|r| r.p99) / 1e3,
            pick(&|r| r.cpu / r.ops.max(1.0)) * 1e3,
        ));
    }
    crate::write_table(&out, "lease-compare.md", table, &lost)
}

fn run_keepalive(
    peer: &Peer,
    endpoints: &str,
    admin: &Client,
) -> Result<Kept, Box<dyn std::error::Error>> {
    let line = crate::run_peer(
        peer,
        &[
            format!("--endpoints={endpoints}"),
            "--workload=keepalive".to_owned(),
            format!("--leases={LEASES}"),
            format!("--ttl-s={TTL_S}"),
        ],
        |l| l.contains("\"keepalive\"").then(|| l.to_owned()),
    )?;
    let number = |name: &str| json_number(&line, name).unwrap_or(0.0);
    // Alive now means renewed within the last TTL; then clear them for the next run.
    let ids = admin.lease().leases()?.ids().to_vec();
    revoke_all(admin, &ids);
    Ok(Kept {
        setup_ms: number("setup_ms"),
        cpu_per_second: number("cpu_seconds") / number("seconds").max(1e-9),
        rss: number("rss_kib"),
        threads: number("threads"),
        alive: ids.len() as f64,
    })
}

fn revoke_all(admin: &Client, ids: &[i64]) {
    let ids = Arc::new(ids.to_vec());
    thread::scope(|s| {
        for w in 0..8 {
            let (ids, lease) = (ids.clone(), admin.lease());
            s.spawn(move || {
                for id in ids.iter().skip(w).step_by(8) {
                    let _ = lease.revoke(*id);
                }
            });
        }
    });
}

fn run_lock(
    peer: &Peer,
    endpoints: &str,
    callers: usize,
    ops: usize,
) -> Result<Run, Box<dyn std::error::Error>> {
    crate::run_peer(
        peer,
        &[
            format!("--endpoints={endpoints}"),
            "--workload=lock".to_owned(),
            format!("--callers={callers}"),
            format!("--ops={ops}"),
        ],
        Run::parse,
    )
}

fn run_election(peer: &Peer, endpoints: &str) -> Result<Run, Box<dyn std::error::Error>> {
    crate::run_peer(
        peer,
        &[
            format!("--endpoints={endpoints}"),
            "--workload=election".to_owned(),
            format!("--ops={HANDOVERS}"),
        ],
        Run::parse,
    )
}
