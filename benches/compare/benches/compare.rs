//! The side-by-side benchmark: this client against the official Go client, the async Rust
//! client `etcd-client` and python-etcd3, on one cluster per size, in alternating runs.
//!
//! Every client runs as a driver process of its own that takes the same arguments and prints
//! one JSON line (protocol: `benches/compare/peers/README.md`); this file is both the orchestrator
//! and, run with `--driver`, this client's driver. `scripts/compare` builds the peers and
//! runs it; by hand: `cargo bench --bench compare` with the peers named by
//! `COMPARE_GO_DRIVER`, `COMPARE_JAVA` + `COMPARE_JETCD_DRIVER` (a jar),
//! `COMPARE_RUST_DRIVER`, `COMPARE_PYTHON` + `COMPARE_PYTHON_DRIVER`
//! (missing peers are skipped). `COMPARE_ROUNDS` (default 3) sets the rounds,
//! `COMPARE_QUICK=1` runs a small matrix, `COMPARE_OUT` names the results folder, and
//! `COMPARE_POLL_THREADS` sets this client's grpcio poll threads (for experiments).
//! `COMPARE_STATS=1` makes this client's driver print its coalescing counts to stderr.
//! `COMPARE_MODE=failover` runs the failover side by side instead (`peer_failover`), with
//! `COMPARE_FAILOVER_ROUNDS` rounds (default 3); `COMPARE_MODE=watch` the watch side by
//! side (`peer_watch`), with `COMPARE_WATCH_ROUNDS` rounds (default 3); `COMPARE_MODE=lease`
//! keepalives, locks and elections (`peer_lease`), with `COMPARE_LEASE_ROUNDS` rounds (default 3);
//! `COMPARE_MODE=stm` the STM (`peer_stm`), with `COMPARE_STM_ROUNDS` rounds (default 3);
//! `COMPARE_MODE=tls` puts over mutual TLS and plaintext (`peer_tls`), with
//! `COMPARE_TLS_ROUNDS` rounds (default 3); `COMPARE_MODE=expiry` a mixed load across
//! token expiries (`peer_expiry`), with `COMPARE_EXPIRY_ROUNDS` rounds (default 3);
//! `COMPARE_MODE=snapshot` snapshots of 100 MiB and 1 GiB (`peer_snapshot`), with
//! `COMPARE_SNAPSHOT_ROUNDS` rounds (default 3); `COMPARE_MODE=mirror` a local copy of a
//! prefix of 10,000 and 200,000 keys (`peer_mirror`), with `COMPARE_MIRROR_ROUNDS` rounds
//! (default 3); `COMPARE_MODE=coalesce` reads with coalescing on and off (`--reads-alone`),
//! interleaved, beside the peers (`coalesce-compare.md`). `COMPARE_FLOOR=1` adds the floor
//! (`floor`, run as `--driver --floor`): not a client, an experiment that shows what a
//! blocking client without gRPC's C core would cost; it gets a standing of its own and is
//! never counted as a peer.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::percentile;
use etcd_blocking::testing::Cluster;
use etcd_blocking::{Client, Compare, GetOptions, Txn, TxnOp};

mod beside;
#[path = "../../common/mod.rs"]
mod common;
mod floor;
mod peer_expiry;
mod peer_failover;
mod peer_lease;
mod peer_mirror;
mod peer_snapshot;
mod peer_stm;
mod peer_tls;
mod peer_watch;

/// Keys the drivers fill before the timed phase and then cycle over.
const KEYS: usize = 1000;
/// This client's name in the results.
const OURS: &str = "etcd-blocking";
/// The floor's name in the results (`COMPARE_FLOOR=1`).
const FLOOR: &str = "floor (experiment)";
/// This client with read coalescing off, the B of `COMPARE_MODE=coalesce` for reads.
const ALONE: &str = "etcd-blocking, reads alone";
/// This client with write coalescing on, the A of `COMPARE_MODE=coalesce` for puts.
const WRITES: &str = "etcd-blocking, writes coalesced";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--driver") {
        return driver(&args);
    }
    beside::start();
    if std::env::var("COMPARE_MODE").is_ok_and(|m| m == "failover") {
        // The floor has no failover to measure: one connection, one endpoint.
        let mut peers = peers()?;
        peers.retain(|p| p.name != FLOOR);
        return peer_failover::compare(&peers);
    }
    if std::env::var("COMPARE_MODE").is_ok_and(|m| m == "watch") {
        return peer_watch::compare(&peers()?);
    }
    if std::env::var("COMPARE_MODE").is_ok_and(|m| m == "lease") {
        return peer_lease::compare(&peers()?);
    }
    if std::env::var("COMPARE_MODE").is_ok_and(|m| m == "stm") {
        return peer_stm::compare(&peers()?);
    }
    if std::env::var("COMPARE_MODE").is_ok_and(|m| m == "tls") {
        return peer_tls::compare(&peers()?);
    }
    if std::env::var("COMPARE_MODE").is_ok_and(|m| m == "expiry") {
        return peer_expiry::compare(&peers()?);
    }
    if std::env::var("COMPARE_MODE").is_ok_and(|m| m == "snapshot") {
        return peer_snapshot::compare(&peers()?);
    }
    if std::env::var("COMPARE_MODE").is_ok_and(|m| m == "coalesce") {
        return coalesce();
    }
    if std::env::var("COMPARE_MODE").is_ok_and(|m| m == "mirror") {
        return peer_mirror::compare(&peers()?);
    }
    orchestrate()
}

// ---------------------------------------------------------------------------------------
// This client's driver.

/// The value of `--name=value` or `--name value`.
fn flag(args: &[String], name: &str) -> Option<String> {
    let long = format!("--{name}");
    args.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix(&format!("{long}=")) {
            Some(v.to_owned())
        } else if *a == long {
            args.get(i + 1).cloned()
        } else {
            None
        }
    })
}

fn driver(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let endpoints = flag(args, "endpoints").ok_or("--endpoints is required")?;
    let workload = flag(args, "workload").unwrap_or_else(|| "put".to_owned());
    let value_size: usize = flag(args, "value-size").map_or(Ok(64), |v| v.parse())?;

    // The deadline every client of the comparison has on every request (etcdctl's; also
    // this client's default, set here so that the comparison does not depend on it).
    let mut builder = Client::builder()
        .endpoints(endpoints.split(','))
        .request_timeout(Duration::from_secs(5));
    if let Some(ca) = flag(args, "cacert") {
        let mut tls = etcd_blocking::Tls::new().ca_file(ca);
        if let (Some(cert), Some(key)) = (flag(args, "cert"), flag(args, "key")) {
            tls = tls.identity_files(cert, key);
        }
        builder = builder.tls(tls);
    }
    if let (Some(user), Some(password)) = (flag(args, "user"), flag(args, "password")) {
        builder = builder.user(user, password);
    }
    if args.iter().any(|a| a == "--reads-alone") {
        builder = builder.coalesce_reads(false);
    }
    if args.iter().any(|a| a == "--coalesce-writes") {
        builder = builder.coalesce_writes(true);
    }
    if let Some(threads) = std::env::var("COMPARE_POLL_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder = builder.poll_threads(threads);
    }
    let client = builder.connect()?;
    if workload.starts_with("watch") {
        peer_watch::drive(args, &client)?;
        client.close()?;
        return Ok(());
    }
    if workload == "snapshot" {
        let first = endpoints.split(',').next().unwrap_or_default();
        peer_snapshot::drive(args, &client, first)?;
        client.close()?;
        return Ok(());
    }
    if workload == "mirror" {
        peer_mirror::drive(args, &client)?;
        client.close()?;
        return Ok(());
    }
    if workload == "expiry" {
        peer_expiry::drive(args, &client)?;
        client.close()?;
        return Ok(());
    }
    if workload == "stm" {
        peer_stm::drive(args, &client)?;
        client.close()?;
        return Ok(());
    }
    if workload == "keepalive" || workload == "lock" || workload == "election" {
        peer_lease::drive(args, &client)?;
        client.close()?;
        return Ok(());
    }
    let kv = client.kv();
    let value = vec![b'v'; value_size];
    for i in 0..KEYS {
        kv.put(format!("bench/k/{i}"), value.clone())?;
    }
    if !["put", "get", "get-serializable", "txn"].contains(&workload.as_str()) {
        return Err(format!("unknown workload {workload}").into());
    }
    if args.iter().any(|a| a == "--floor") {
        let first = endpoints.split(',').next().unwrap_or_default();
        let floor = floor::Floor::open(first, &workload, value)?;
        let writes = ["put", "txn"].contains(&workload.as_str());
        let before = kv.get("bench/k/0")?.header().revision();
        let done = measure(args, FLOOR, |n| floor.op(n))?;
        let moved = kv.get("bench/k/0")?.header().revision() - before;
        if writes && usize::try_from(moved) != Ok(done) {
            return Err(
                format!("{done} writes acknowledged, but the revision moved {moved}").into(),
            );
        }
    } else {
        measure(args, OURS, |n| {
            let key = format!("bench/k/{}", n % KEYS);
            match workload.as_str() {
                "put" => kv.put(key, value.clone()).map(drop),
                "get" => kv.get(key).map(drop),
                "get-serializable" => kv.get_with(key, GetOptions::new().serializable()).map(drop),
                _ => kv
                    .txn(
                        Txn::new()
                            .when([Compare::version(key.clone()).gt(-1)])
                            .and_then([TxnOp::put(key, value.clone())]),
                    )
                    .map(drop),
            }
            .is_ok()
        })?;
    }
    if std::env::var("COMPARE_STATS").is_ok_and(|v| v == "1") {
        eprintln!(
            "reads {:?} writes {:?}",
            client.coalesced_reads(),
            client.coalesced_writes()
        );
    }
    client.close()?;
    Ok(())
}

/// Runs `op` (request number to success) from `--callers` threads, `--ops` requests in all
/// or for `--duration-ms`, and prints the JSON line of the driver protocol for `client`.
/// Returns how many requests succeeded.
fn measure(
    args: &[String],
    client: &str,
    op: impl Fn(usize) -> bool + Sync,
) -> Result<usize, Box<dyn std::error::Error>> {
    let workload = flag(args, "workload").unwrap_or_else(|| "put".to_owned());
    let callers: usize = flag(args, "callers").map_or(Ok(1), |v| v.parse())?;
    let value_size: usize = flag(args, "value-size").map_or(Ok(64), |v| v.parse())?;
    let ops: usize = flag(args, "ops").map_or(Ok(2000), |v| v.parse())?;
    let duration: Option<Duration> = flag(args, "duration-ms")
        .map(|v| v.parse().map(Duration::from_millis))
        .transpose()?;
    let trace = args.iter().any(|a| a == "--trace");
    let done = Arc::new(AtomicBool::new(false));
    let threads = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, threads) = (done.clone(), threads.clone());
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                // Not counting the sampler itself.
                threads.fetch_max(status("Threads").saturating_sub(1), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    if trace {
        println!("START {}", unix_micros());
    }
    let (latencies, errors) = thread::scope(|s| {
        let workers: Vec<_> = (0..callers)
            .map(|c| {
                let op = &op;
                s.spawn(move || {
                    let mut latencies = Vec::new();
                    let mut errors = 0usize;
                    let mut n = c;
                    loop {
                        let more = match duration {
                            Some(d) => started.elapsed() < d,
                            None => n < ops,
                        };
                        if !more {
                            break;
                        }
                        let at = unix_micros();
                        let t = Instant::now();
                        let ok = op(n);
                        let took = t.elapsed();
                        if ok {
                            latencies.push(took);
                        } else {
                            errors += 1;
                        }
                        if trace {
                            trace_line(format_args!(
                                "R {at} {} {}",
                                took.as_micros(),
                                u8::from(ok)
                            ));
                        }
                        n += callers;
                    }
                    if trace {
                        trace_line(format_args!("D"));
                    }
                    (latencies, errors)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(ops);
        let mut errors = 0;
        for w in workers {
            let (l, e) = w.join().unwrap_or_default();
            all.extend(l);
            errors += e;
        }
        (all, errors)
    });
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let mut latencies = latencies;
    latencies.sort();
    let us = |p: f64| percentile(&latencies, p).as_secs_f64() * 1e6;
    println!(
        "{{\"client\":\"{client}\",\"workload\":\"{workload}\",\"callers\":{callers},\
         \"value_size\":{value_size},\"ops\":{},\"errors\":{errors},\"seconds\":{},\
         \"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"cpu_seconds\":{cpu},\
         \"peak_rss_kib\":{},\"threads\":{}}}",
        latencies.len(),
        elapsed.as_secs_f64(),
        us(0.50),
        us(0.99),
        us(0.999),
        status("VmHWM"),
        threads.load(Ordering::Relaxed)
    );
    Ok(latencies.len())
}

/// Microseconds since the Unix epoch: the clock drivers and the orchestrator share.
fn unix_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// This process's CPU clock (user + system, every thread), in seconds.
fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Prints one trace line at once (stdout's lock keeps lines whole), so that a driver
/// killed while hung has told everything up to then.
fn trace_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// A number from `/proc/self/status` (`Threads`, `VmHWM` in KiB).
fn status(name: &str) -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// The orchestrator.

/// One driver's answer.
#[derive(Debug, Clone, Default)]
struct Run {
    ops: f64,
    errors: f64,
    seconds: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    cpu: f64,
    rss: f64,
    threads: f64,
    /// Requests of an untimed warm-up that succeeded and failed (jetcd's driver only).
    warmup_ops: f64,
    warmup_errors: f64,
}

impl Run {
    /// Reads the numbers out of a driver's JSON line (flat, numbers only: no JSON crate
    /// needed).
    fn parse(line: &str) -> Option<Run> {
        let number = |name: &str| json_number(line, name);
        Some(Run {
            ops: number("ops")?,
            errors: number("errors")?,
            seconds: number("seconds")?,
            p50: number("p50_us")?,
            p99: number("p99_us")?,
            p999: number("p999_us")?,
            cpu: number("cpu_seconds")?,
            rss: number("peak_rss_kib")?,
            threads: number("threads")?,
            warmup_ops: number("warmup_ops").unwrap_or(0.0),
            warmup_errors: number("warmup_errors").unwrap_or(0.0),
        })
    }

    fn rate(&self) -> f64 {
        self.ops / self.seconds.max(1e-9)
    }

    fn cpu_per_10k(&self) -> f64 {
        self.cpu / self.ops.max(1.0) * 10_000.0
    }
}

/// The number `name` in a driver's flat JSON line (numbers only: no JSON crate needed).
fn json_number(line: &str, name: &str) -> Option<f64> {
    let at = line.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = line[at..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// A client to compare: its name and the command that runs its driver.
pub struct Peer {
    name: &'static str,
    command: Vec<String>,
    /// The workloads it runs in the matrix (empty: every one): this client's variants
    /// only where they differ from its default.
    only: &'static [&'static str],
}

fn peers() -> Result<Vec<Peer>, Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?.display().to_string();
    let mut peers = vec![Peer {
        name: OURS,
        command: vec![exe.clone(), "--driver".to_owned()],
        only: &[],
    }];
    if std::env::var("COMPARE_FLOOR").is_ok_and(|v| v == "1") {
        peers.push(Peer {
            name: FLOOR,
            command: vec![exe, "--driver".to_owned(), "--floor".to_owned()],
            only: &[],
        });
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(go) = var("COMPARE_GO_DRIVER") {
        peers.push(Peer {
            name: "go-clientv3 3.7",
            command: vec![go],
            only: &[],
        });
    }
    if let (Some(java), Some(jar)) = (var("COMPARE_JAVA"), var("COMPARE_JETCD_DRIVER")) {
        peers.push(Peer {
            name: "jetcd 0.8",
            command: vec![java, "-jar".to_owned(), jar],
            only: &[],
        });
    }
    if let Some(rust) = var("COMPARE_RUST_DRIVER") {
        peers.push(Peer {
            name: "etcd-client",
            command: vec![rust],
            only: &[],
        });
    }
    if let (Some(python), Some(script)) = (var("COMPARE_PYTHON"), var("COMPARE_PYTHON_DRIVER")) {
        peers.push(Peer {
            name: "python-etcd3",
            command: vec![python, script],
            only: &[],
        });
    }
    Ok(peers)
}

/// One cell of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Workload {
    members: usize,
    workload: &'static str,
    callers: usize,
    value_size: usize,
}

fn matrix(quick: bool) -> Vec<Workload> {
    let members: &[usize] = if quick { &[1] } else { &[1, 3] };
    let callers: &[usize] = if quick { &[1, 8] } else { &[1, 8, 64] };
    let sizes: &[usize] = if quick { &[64] } else { &[64, 4096] };
    let mut all = Vec::new();
    for &m in members {
        for workload in ["put", "get", "get-serializable", "txn"] {
            for &c in callers {
                for &v in sizes {
                    all.push(Workload {
                        members: m,
                        workload,
                        callers: c,
                        value_size: v,
                    });
                }
            }
        }
    }
    all
}

/// How long each run's timed phase lasts: long enough that scheduling noise and the CPU
/// clock's start and end are small against it, for every client and cell.
const RUN: Duration = Duration::from_secs(3);

/// The columns of `compare-runs.tsv`: every run's own figures, beside the medians.
const RAW_HEADER: &str = "members\tworkload\tcallers\tvalue_size\tclient\tround\tops\terrors\t\
                          seconds\tops_per_sec\tp50_us\tp99_us\tp999_us\tcpu_seconds\t\
                          peak_rss_kib\tthreads\n";

/// One run's row of `compare-runs.tsv`.
fn raw_row(cell: &Workload, client: &str, round: usize, run: &Run) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{client}\t{round}\t{}\t{}\t{:.6}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{:.6}\t{}\t{}\n",
        cell.members,
        cell.workload,
        cell.callers,
        cell.value_size,
        run.ops,
        run.errors,
        run.seconds,
        run.rate(),
        run.p50,
        run.p99,
        run.p999,
        run.cpu,
        run.rss,
        run.threads
    )
}

/// Checks that a run wrote what it counted: the versions of the benchmark's keys, added
/// up, moved by the driver's fill ([`KEYS`] puts), plus, for a write workload, every write it reports as done
/// (warm-up included). A write that failed may or may not have been applied, so each
/// failed one widens the range by one. A client that wrote more or fewer than it said
/// fails the run.
fn written_as_counted(
    cell: &Workload,
    run: &Run,
    moved: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    let writes = ["put", "txn"].contains(&cell.workload);
    let (done, failed) = if writes {
        (run.ops + run.warmup_ops, run.errors + run.warmup_errors)
    } else {
        (0.0, 0.0)
    };
    let least = KEYS as f64 + done;
    let moved = moved as f64;
    if moved < least || moved > least + failed {
        return Err(format!(
            "the keys' versions moved {moved}, but the run counted {KEYS} fill puts, \
             {done} writes done and {failed} failed"
        )
        .into());
    }
    Ok(())
}

/// The versions of the benchmark's keys (`bench/k/`), added up.
fn versions(admin: &Client) -> Result<i64, Box<dyn std::error::Error>> {
    Ok(admin
        .kv()
        .get_with("bench/k/", GetOptions::new().prefix().keys_only())?
        .kvs()
        .iter()
        .map(|kv| kv.version())
        .sum())
}

/// The store's revision now, read through `admin`.
fn revision(admin: &Client) -> Result<i64, Box<dyn std::error::Error>> {
    Ok(admin.kv().get("bench/k/0")?.header().revision())
}

/// Runs `run` and checks that the store's revision moved by what `writes` says its result
/// wrote, from the least to the most, when every step succeeded (a driver fails its run
/// on any error, so nothing may be of unknown outcome): a client that wrote more or fewer
/// fails the run. A driver's untimed warm-up (jetcd's, for the JIT) counts, as it reports
/// it.
fn writes_checked<T>(
    admin: &Client,
    writes: impl Fn(&T) -> (i64, i64),
    run: impl FnOnce() -> Result<T, Box<dyn std::error::Error>>,
) -> Result<T, Box<dyn std::error::Error>> {
    let before = revision(admin)?;
    let out = run()?;
    let moved = revision(admin)? - before;
    let (least, most) = writes(&out);
    if !(least..=most).contains(&moved) {
        let expected = if least == most {
            format!("exactly {least}")
        } else {
            format!("{least} to {most}")
        };
        return Err(format!(
            "the store's revision moved {moved}, but the workload writes {expected}"
        )
        .into());
    }
    Ok(out)
}

fn orchestrate() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::var("COMPARE_QUICK").is_ok_and(|v| v == "1");
    orchestrate_cells(&matrix(quick), &peers()?, "compare")
}

/// `COMPARE_MODE=coalesce`: reads with coalescing on (this client's default) and off
/// (`--reads-alone`), puts with writes coalesced (`--coalesce-writes`) and not (the
/// default), interleaved in the same rounds, beside the peers (python-etcd3 left out),
/// on 1 and 3 members, 1, 8 and 64 callers, 64 B; `coalesce-compare.md`. Each variant
/// runs only in the cells where it differs from the default.
fn coalesce() -> Result<(), Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?.display().to_string();
    let mut peers = peers()?;
    peers.retain(|p| p.name != FLOOR && p.name != "python-etcd3");
    peers.insert(
        1,
        Peer {
            name: ALONE,
            command: vec![
                exe.clone(),
                "--driver".to_owned(),
                "--reads-alone".to_owned(),
            ],
            only: &["get", "get-serializable"],
        },
    );
    peers.insert(
        2,
        Peer {
            name: WRITES,
            command: vec![exe, "--driver".to_owned(), "--coalesce-writes".to_owned()],
            only: &["put"],
        },
    );
    // COMPARE_QUICK=1: one member, linearizable reads, 8 and 64 callers.
    let quick = std::env::var("COMPARE_QUICK").is_ok_and(|v| v == "1");
    let (members, workloads, callers): (&[usize], &[&str], &[usize]) = if quick {
        (&[1], &["get", "put"], &[8, 64])
    } else {
        (&[1, 3], &["get", "get-serializable", "put"], &[1, 8, 64])
    };
    let mut cells = Vec::new();
    for &members in members {
        for &workload in workloads {
            for &callers in callers {
                cells.push(Workload {
                    members,
                    workload,
                    callers,
                    value_size: 64,
                });
            }
        }
    }
    orchestrate_cells(&cells, &peers, "coalesce-compare")
}

/// When the run has this client with reads alone beside it (`COMPARE_MODE=coalesce`):
/// coalescing on against off, cell by cell, from the same rounds; else nothing.
fn a_against_b(results: &BTreeMap<(Workload, &'static str), Vec<Run>>) -> String {
    let mut cells: Vec<&Workload> = results.keys().map(|(w, _)| w).collect();
    cells.dedup();
    let mut rows = String::new();
    for cell in cells {
        // Reads: the default (coalesced) against reads alone; puts: writes coalesced
        // against the default (not).
        let (a, b) = if cell.workload == "put" {
            (WRITES, OURS)
        } else {
            (OURS, ALONE)
        };
        let (Some(on), Some(off)) = (
            results.get(&(cell.clone(), a)),
            results.get(&(cell.clone(), b)),
        ) else {
            continue;
        };
        let p99 = |runs: &[Run]| median(runs, |r| r.p99);
        rows.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.0} | {:+.0}% | {:.3} | {:.3} | {:.0} | {:.0} |\n",
            cell.members,
            cell.workload,
            cell.callers,
            median(on, Run::rate),
            median(off, Run::rate),
            (median(on, Run::rate) / median(off, Run::rate).max(1e-9) - 1.0) * 100.0,
            median(on, Run::cpu_per_10k),
            median(off, Run::cpu_per_10k),
            p99(on),
            p99(off),
        ));
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "## Coalescing: on against off\n\n\
         This client with coalescing on and off, interleaved in the same rounds on the \
         same cluster: for reads, its default (coalesced) against `--reads-alone`; for \
         puts, `--coalesce-writes` against its default (not coalesced). Ops/s, CPU s per \
         10k requests, p99 µs.\n\n\
         | members | workload | callers | ops/s on | ops/s off | on/off | CPU on | CPU off | p99 on | p99 off |\n\
         |---|---|---|---|---|---|---|---|---|---|\n{rows}\n"
    )
}

/// Runs `cells` for `peers` in alternating rounds and writes `{name}.md`, `{name}.tsv`
/// and `{name}-runs.tsv`.
fn orchestrate_cells(
    cells: &[Workload],
    peers: &[Peer],
    name: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::var("COMPARE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let out = std::env::var("COMPARE_OUT").unwrap_or_else(|_| "results".to_owned());
    eprintln!(
        "comparing {} over {rounds} alternating rounds",
        peers.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
    );
    let mut results: BTreeMap<(Workload, &'static str), Vec<Run>> = BTreeMap::new();
    let mut lost: Vec<String> = Vec::new();
    let mut raw = String::from(RAW_HEADER);
    for members in [1, 3] {
        let here: Vec<&Workload> = cells.iter().filter(|w| w.members == members).collect();
        if here.is_empty() {
            continue;
        }
        let cluster = Cluster::start(members)?;
        let endpoints = cluster.endpoints().join(",");
        // Every run rewrites the same keys; compacting after each keeps the store (and the
        // snapshots etcd takes every 10,000 writes) from growing with the run's history, so
        // late runs meet the same store as early ones.
        let admin = cluster.client()?;
        for cell in here {
            for round in 0..rounds {
                // Alternate the order too, so no client always runs first.
                let mut order: Vec<&Peer> = peers
                    .iter()
                    .filter(|p| p.only.is_empty() || p.only.contains(&cell.workload))
                    .collect();
                let len = order.len().max(1);
                order.rotate_left(round % len);
                for peer in order {
                    // A run that fails is recorded as failed, with why, and never tried
                    // again: a retry would hide how often a client fails.
                    // Versions, not the revision: coalesced writes share revisions, but
                    // every put still adds one to its key's version.
                    let before = versions(&admin)?;
                    let run = run_driver(peer, &endpoints, cell);
                    let now = admin.kv().get("bench/k/0")?.header().revision();
                    admin.kv().compact(now)?;
                    let moved = versions(&admin)? - before;
                    let run =
                        run.and_then(|run| written_as_counted(cell, &run, moved).map(|()| run));
                    let run = match run {
                        Ok(run) => run,
                        Err(e) => {
                            let first_line = e.to_string().lines().next().unwrap_or("").to_owned();
                            eprintln!("{}: {first_line}", peer.name);
                            lost.push(format!(
                                "- {members} member(s), {}, {} caller(s), {} B, {}, round {}: \
                                 {first_line}",
                                cell.workload,
                                cell.callers,
                                cell.value_size,
                                peer.name,
                                round + 1
                            ));
                            continue;
                        }
                    };
                    eprintln!(
                        "{members} member(s) {:<16} {:>2} callers {:>4} B {:<13} {:>8.0} ops/s",
                        cell.workload,
                        cell.callers,
                        cell.value_size,
                        peer.name,
                        run.rate()
                    );
                    raw.push_str(&raw_row(cell, peer.name, round + 1, &run));
                    results
                        .entry((cell.clone(), peer.name))
                        .or_default()
                        .push(run);
                }
            }
        }
    }
    let lost = if lost.is_empty() {
        String::new()
    } else {
        format!(
            "Runs that failed (left out of the medians, not tried again):\n\n{}\n\n",
            lost.join("\n")
        )
    };
    let table = format!(
        "{}\n{lost}{}{}\n## All figures\n\n{}",
        preface(rounds),
        a_against_b(&results),
        peers
            .iter()
            .filter(|p| p.name == OURS || p.name == FLOOR)
            .map(|p| standing(&results, peers, p.name))
            .collect::<Vec<_>>()
            .join("\n"),
        report(&results, peers)
    );
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        format!("{out}/{name}.md"),
        format!("{table}{}", beside::note()),
    )?;
    std::fs::write(format!("{out}/{name}.tsv"), tsv(&results))?;
    std::fs::write(format!("{out}/{name}-runs.tsv"), raw)?;
    println!("{table}");
    Ok(())
}

fn run_driver(
    peer: &Peer,
    endpoints: &str,
    cell: &Workload,
) -> Result<Run, Box<dyn std::error::Error>> {
    run_driver_with(peer, endpoints, cell, &[])
}

/// [`run_driver`] with `extra` flags (TLS files).
fn run_driver_with(
    peer: &Peer,
    endpoints: &str,
    cell: &Workload,
    extra: &[String],
) -> Result<Run, Box<dyn std::error::Error>> {
    let mut args = vec![
        format!("--endpoints={endpoints}"),
        format!("--workload={}", cell.workload),
        format!("--callers={}", cell.callers),
        format!("--value-size={}", cell.value_size),
        format!("--duration-ms={}", RUN.as_millis()),
    ];
    args.extend(extra.iter().cloned());
    run_peer(peer, &args, Run::parse)
}

/// A driver started by [`spawn_driver`]: the child, its stdout's lines, and their reader.
type Spawned = (
    std::process::Child,
    crossbeam_channel::Receiver<String>,
    thread::JoinHandle<()>,
);

/// Starts `peer`'s driver with `args`, its stderr going to `stderr`; its stdout is read
/// line by line on a thread of its own, so that a hung driver cannot hang the harness.
/// The child, its lines, and the reader (which ends with the driver's stdout).
fn spawn_driver(
    peer: &Peer,
    args: &[String],
    stderr: std::process::Stdio,
) -> Result<Spawned, Box<dyn std::error::Error>> {
    use std::io::BufRead;
    let mut child = Command::new(&peer.command[0])
        .args(&peer.command[1..])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (lines_tx, lines) = crossbeam_channel::unbounded::<String>();
    let reader = thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, lines, reader))
}

/// Runs `peer`'s driver with `args` to its end, and reads its result: the last line of
/// its output that `parse` takes; else an error with its exit status and its stderr.
fn run_peer<T>(
    peer: &Peer,
    args: &[String],
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, Box<dyn std::error::Error>> {
    run_peer_telling(peer, args, parse).map(|(result, _)| result)
}

/// [`run_peer`], and what the driver wrote on stderr.
fn run_peer_telling<T>(
    peer: &Peer,
    args: &[String],
    parse: impl Fn(&str) -> Option<T>,
) -> Result<(T, String), Box<dyn std::error::Error>> {
    let output = Command::new(&peer.command[0])
        .args(&peer.command[1..])
        .args(args)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    match stdout.lines().rev().find_map(parse) {
        Some(result) => Ok((result, stderr)),
        None => Err(format!("{} gave no result ({}): {stderr}", peer.name, output.status).into()),
    }
}

/// Where and how the figures were made.
fn preface(rounds: usize) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, m)| m.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = thread::available_parallelism().map_or(0, usize::from);
    let etcd = etcd_blocking::testing::etcd_binary()
        .ok()
        .and_then(|bin| Command::new(bin).arg("--version").output().ok())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("etcd Version: "))
                .map(|v| format!("etcd {v}"))
        })
        .unwrap_or_else(|| "etcd of unknown version".to_owned());
    format!(
        "# Side by side: etcd-blocking and its peers\n\n\
         Made by `scripts/compare` on {cores} cores ({cpu}), {etcd}, launcher flags (no fsync); \
         each figure is the median of {rounds} alternating round(s), every client its own \
         process on the same cluster, each run a timed phase of {} s. CPU is the client \
         process's CPU clock (user + system, every thread; the jetcd driver adds up its \
         threads' clocks) over that phase. Every request has a deadline of 5 s, in every \
         client. After every run the versions of the benchmark's keys are checked against the writes the \
         driver counted; a run that fails that check, or fails at all, is listed as failed \
         and not tried again. Every run's own figures are in `compare-runs.tsv`.\n",
        RUN.as_secs()
    )
}

/// The median of one figure over the rounds.
fn median<T>(runs: &[T], figure: impl Fn(&T) -> f64) -> f64 {
    let mut values: Vec<f64> = runs.iter().map(figure).collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The rows of a table of cells (callers) by client: rate, p50 and p99 in ms, CPU ms per
/// operation, each the median of the client's runs of the cell.
fn cell_rows(
    table: &mut String,
    cells: &[(usize, usize)],
    peers: &[&Peer],
    runs: &[Vec<Vec<Run>>],
) {
    for (cell, &(callers, _)) in cells.iter().enumerate() {
        for (i, peer) in peers.iter().enumerate() {
            let runs = &runs[i][cell];
            if runs.is_empty() {
                continue;
            }
            let pick = |f: &dyn Fn(&Run) -> f64| median(runs, f);
            table.push_str(&format!(
                "| {callers} | {} | {:.0} | {:.2} | {:.2} | {:.3} |\n",
                peer.name,
                pick(&|r| r.rate()),
                pick(&|r| r.p50) / 1e3,
                pick(&|r| r.p99) / 1e3,
                pick(&|r| r.cpu / r.ops.max(1.0)) * 1e3,
            ));
        }
    }
}

/// Ends a side-by-side table with the runs that gave no result and what ran beside the
/// comparison, writes it to `{out}/{file}` and prints it.
fn write_table(
    out: &str,
    file: &str,
    mut table: String,
    lost: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    if !lost.is_empty() {
        table.push_str(&format!(
            "\nRuns that gave no result (not tried again):\n\n{}\n",
            lost.join("\n")
        ));
    }
    table.push_str(&beside::note());
    std::fs::create_dir_all(out)?;
    std::fs::write(format!("{out}/{file}"), &table)?;
    println!("{table}");
    Ok(())
}

/// The rounds the environment variable `var` asks for: 3 unless it says otherwise, 1 at
/// least; and where results go (`COMPARE_OUT`, default `results`).
fn rounds_and_out(var: &str) -> (usize, String) {
    let rounds = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let out = std::env::var("COMPARE_OUT").unwrap_or_else(|_| "results".to_owned());
    (rounds, out)
}

fn report(results: &BTreeMap<(Workload, &'static str), Vec<Run>>, peers: &[Peer]) -> String {
    let mut table = String::from(
        "| members | workload | callers | value | client | ops/s | p50 us | p99 us | p99.9 us \
         | CPU s / 10k ops | peak RSS MiB | threads | errors |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut cells: Vec<&Workload> = results.keys().map(|(w, _)| w).collect();
    cells.dedup();
    for cell in cells {
        for peer in peers {
            let Some(runs) = results.get(&(cell.clone(), peer.name)) else {
                continue;
            };
            table.push_str(&format!(
                "| {} | {} | {} | {} B | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} | {:.1} | {:.0} | {:.0} |\n",
                cell.members,
                cell.workload,
                cell.callers,
                cell.value_size,
                peer.name,
                median(runs, Run::rate),
                median(runs, |r| r.p50),
                median(runs, |r| r.p99),
                median(runs, |r| r.p999),
                median(runs, Run::cpu_per_10k),
                median(runs, |r| r.rss) / 1024.0,
                median(runs, |r| r.threads),
                median(runs, |r| r.errors),
            ));
        }
    }
    table
}

/// Where this client stands against the bar it is held to: at least as many ops/s as the
/// best peer, and less CPU per operation than every peer, in every cell. Lists each cell
/// where it falls short, by how much.
/// How `subject` (this client, or the floor) fares against the peers, cell by cell: the
/// checked-by bar of issue 4. The floor is never counted as a peer.
fn standing(
    results: &BTreeMap<(Workload, &'static str), Vec<Run>>,
    peers: &[Peer],
    subject: &str,
) -> String {
    let ours = subject;
    let is_peer = |name: &str| name != OURS && name != FLOOR && name != ALONE && name != WRITES;
    let mut cells: Vec<&Workload> = results.keys().map(|(w, _)| w).collect();
    cells.dedup();
    let (mut total, mut fast, mut lean) = (0, 0, 0);
    let (mut slower, mut heavier) = (String::new(), String::new());
    for cell in cells {
        let Some(mine) = results.get(&(cell.clone(), ours)) else {
            continue;
        };
        total += 1;
        let label = format!(
            "{} member(s), {}, {} caller(s), {} B",
            cell.members, cell.workload, cell.callers, cell.value_size
        );
        let (rate, cpu) = (median(mine, Run::rate), median(mine, Run::cpu_per_10k));
        let others = peers.iter().filter(|p| is_peer(p.name)).filter_map(|p| {
            results.get(&(cell.clone(), p.name)).map(|runs| {
                (
                    p.name,
                    median(runs, Run::rate),
                    median(runs, Run::cpu_per_10k),
                )
            })
        });
        let others: Vec<_> = others.collect();
        match others.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
            Some(best) if best.1 > rate => slower.push_str(&format!(
                "- {label}: {rate:.0} ops/s, {} {:.0} ({:+.0}%)\n",
                best.0,
                best.1,
                (rate / best.1 - 1.0) * 100.0
            )),
            _ => fast += 1,
        }
        match others.iter().min_by(|a, b| a.2.total_cmp(&b.2)) {
            Some(least) if least.2 <= cpu => heavier.push_str(&format!(
                "- {label}: {cpu:.3} CPU s / 10k ops, {} {:.3} ({:+.0}%)\n",
                least.0,
                least.2,
                (cpu / least.2 - 1.0) * 100.0
            )),
            _ => lean += 1,
        }
    }
    let (title, about) = if subject == FLOOR {
        (
            "Where the floor would stand",
            "The floor is an experiment, not a client: `benches/compare/benches/floor/mod.rs` speaks HTTP/2 \
             itself instead of through gRPC's C core; `why.md` says what it leaves out.",
        )
    } else {
        (
            "Where etcd-blocking stands",
            "Why it loses where it does, and what is left to do about it: `why.md`, next to \
             this file.",
        )
    };
    format!(
        "## {title}\n\n\
         At least as many ops/s as the best peer in {fast} of {total} cells; less CPU per \
         operation than every peer in {lean} of {total}. {about}\n\n\
         Cells where a peer is faster:\n\n{}\n\
         Cells where a peer uses no more CPU per operation:\n\n{}\n",
        if slower.is_empty() {
            "- none\n"
        } else {
            &slower
        },
        if heavier.is_empty() {
            "- none\n"
        } else {
            &heavier
        },
    )
}

/// Medians as tab-separated values, for the chart.
fn tsv(results: &BTreeMap<(Workload, &'static str), Vec<Run>>) -> String {
    let mut out =
        String::from("members\tworkload\tcallers\tvalue_size\tclient\tops_per_sec\tcpu_per_10k\n");
    for ((cell, client), runs) in results {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{:.1}\t{:.4}\n",
            cell.members,
            cell.workload,
            cell.callers,
            cell.value_size,
            client,
            median(runs, Run::rate),
            median(runs, Run::cpu_per_10k)
        ));
    }
    out
}
