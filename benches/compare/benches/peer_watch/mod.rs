//! Watch side by side (`COMPARE_MODE=watch`), and this client's watch driver.
//!
//! Two parts, every client its own driver process (protocol: `peers/README.md`):
//!
//! - **Latency and cost** (`--workload=watch --watchers=N --puts=P [--distinct]`), on one
//!   1-member cluster: the driver creates N watches on the prefix `wbench/` (with
//!   `--distinct`, watch i covers `[wbench/, wbench/~i)` instead: a range of its own, so
//!   that every client makes N watches on the server) and reports the time
//!   until every one is created, its RSS and thread count then, and, over P sequential
//!   puts of its own, the time from each put until every watcher has its event (p50, p99,
//!   p99.9), the events per second that makes, and the CPU it took.
//! - **Faults** (`--workload=watch-fault`), on a fresh 3-member cluster per run: the driver
//!   watches `wfault/` and prints a line per response with events; this process writes
//!   `wfault/` keys with a client of its own, finds the member serving the driver's watch
//!   (the one whose `etcd_debugging_mvcc_watch_stream_total` is 1), and SIGKILLs or
//!   SIGSTOPs it. The figure is the time from the fault to the first event the driver
//!   receives of a write that started after the fault: events already on their way do
//!   not count. Ten seconds without one is "never".

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use etcd_blocking::testing::Cluster;
use etcd_blocking::{Client, WatchOptions, Watcher};

use crate::{cpu_seconds, flag, status, unix_micros, Peer};

/// How long a driver waits for an event, and we for a driver's first event after a fault.
const WAIT: Duration = Duration::from_secs(10);

/// Watchers per cell, the puts each is timed over, and whether every watch has a range of
/// its own (so that no client can serve two from one server watch, as this one does for
/// watches of one range). The distinct cells come first: they are the same work on the
/// server for every client.
const CELLS: [(usize, usize, bool); 5] = [
    (1, 300, true),
    (100, 300, true),
    (10_000, 30, true),
    (100, 300, false),
    (10_000, 30, false),
];

/// The range of watch `i` of a distinct cell: from `wbench/` to `wbench/~i`, which holds
/// every key the puts write (`wbench/<digits>`).
fn distinct_end(i: usize) -> String {
    format!("wbench/~{i}")
}

// ---------------------------------------------------------------------------------------
// This client's driver.

/// Runs this client's side of a watch workload (`watch` or `watch-fault`).
pub fn drive(args: &[String], client: &Client) -> Result<(), Box<dyn std::error::Error>> {
    match flag(args, "workload").as_deref() {
        Some("watch") => {
            let watchers: usize = flag(args, "watchers").map_or(Ok(1), |v| v.parse())?;
            let puts: usize = flag(args, "puts").map_or(Ok(300), |v| v.parse())?;
            let distinct = args.iter().any(|a| a == "--distinct");
            latency(client, watchers, puts, distinct)
        }
        _ => {
            let ms: u64 = flag(args, "duration-ms").map_or(Ok(20_000), |v| v.parse())?;
            follow(client, Duration::from_millis(ms))
        }
    }
}

/// Waits for the response that carries `revision` on `watcher`, skipping others.
fn wait_for(watcher: &Watcher, revision: i64) -> Result<(), Box<dyn std::error::Error>> {
    loop {
        let response = watcher.recv_timeout(WAIT)?.ok_or("no event in time")?;
        if response.events().iter().any(|e| e.revision() == revision) {
            return Ok(());
        }
    }
}

fn latency(
    client: &Client,
    watchers: usize,
    puts: usize,
    distinct: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let watch = client.watch();
    let options = |i: usize| {
        let options = WatchOptions::new().buffer(usize::MAX);
        if distinct {
            options.range_end(distinct_end(i))
        } else {
            options.prefix()
        }
    };
    let started = Instant::now();
    let all: Vec<Watcher> = (0..watchers)
        .map(|i| watch.watch_with("wbench/", options(i)))
        .collect::<Result<_, _>>()?;
    for w in &all {
        w.created_revision()?;
    }
    let create_ms = started.elapsed().as_secs_f64() * 1e3;
    let (rss, threads) = (status("VmRSS"), status("Threads"));
    let kv = client.kv();
    let mut latencies = Vec::with_capacity(puts);
    let cpu_before = cpu_seconds();
    let phase = Instant::now();
    for i in 0..puts {
        let t = Instant::now();
        let revision = kv.put(format!("wbench/{i}"), "v")?.header().revision();
        // One thread takes the watchers in turn: the last one's event ends the wait.
        for w in &all {
            wait_for(w, revision)?;
        }
        latencies.push(t.elapsed());
    }
    let elapsed = phase.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    latencies.sort();
    let us = |p: f64| crate::common::percentile(&latencies, p).as_secs_f64() * 1e6;
    println!(
        "{{\"client\":\"{}\",\"workload\":\"watch\",\"watchers\":{watchers},\"puts\":{puts},\
         \"create_ms\":{create_ms},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\
         \"events_per_sec\":{},\"cpu_seconds\":{cpu},\"rss_kib\":{rss},\"threads\":{threads}}}",
        crate::OURS,
        us(0.50),
        us(0.99),
        us(0.999),
        (watchers * puts) as f64 / elapsed.as_secs_f64(),
    );
    Ok(())
}

fn follow(client: &Client, duration: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let watcher = client
        .watch()
        .watch_with("wfault/", WatchOptions::new().prefix().buffer(usize::MAX))?;
    watcher.created_revision()?;
    println!("READY");
    let until = Instant::now() + duration;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let Some(response) = watcher.recv_timeout(left)? else {
            return Ok(());
        };
        if let Some(last) = response.events().last() {
            println!("E {} {}", unix_micros(), last.revision());
        }
    }
}

// ---------------------------------------------------------------------------------------
// The orchestrator.

/// One driver's figures from the latency part.
#[derive(Debug, Clone, Default)]
struct Latency {
    create_ms: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    events_per_sec: f64,
    cpu: f64,
    rss: f64,
    threads: f64,
}

impl Latency {
    fn parse(line: &str) -> Option<Latency> {
        let number = |name: &str| crate::json_number(line, name);
        Some(Latency {
            create_ms: number("create_ms")?,
            p50: number("p50_us")?,
            p99: number("p99_us")?,
            p999: number("p999_us")?,
            events_per_sec: number("events_per_sec")?,
            cpu: number("cpu_seconds")?,
            rss: number("rss_kib")?,
            threads: number("threads")?,
        })
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Kill,
    Stop,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "SIGKILL",
            Fault::Stop => "SIGSTOP",
        }
    }
}

/// One run through a fault: the serving member's role, and the time to the first event of
/// a write after the fault (`None`: none within [`WAIT`]).
struct Outcome {
    role: &'static str,
    first_ms: Option<f64>,
}

/// Runs both parts for every peer that has a watch driver, `COMPARE_WATCH_ROUNDS` rounds
/// each (default 3, the order rotating), and writes `watch-compare.md`.
pub fn compare(peers: &[Peer]) -> Result<(), Box<dyn std::error::Error>> {
    let (rounds, out) = crate::rounds_and_out("COMPARE_WATCH_ROUNDS");
    let peers: Vec<&Peer> = peers
        .iter()
        .filter(|p| p.name != crate::FLOOR && p.name != "python-etcd3")
        .collect();
    eprintln!(
        "watch: comparing {} over {rounds} rounds",
        peers.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
    );
    let mut figures: BTreeMap<(usize, bool, &str), Vec<Latency>> = BTreeMap::new();
    let mut lost = Vec::new();
    {
        let cluster = Cluster::start(1)?;
        let admin = cluster.client()?;
        for (watchers, puts, distinct) in CELLS {
            for round in 0..rounds {
                let mut order = peers.clone();
                order.rotate_left(round % peers.len().max(1));
                for peer in order {
                    let endpoints = cluster.endpoints().join(",");
                    match run_latency(peer, &endpoints, watchers, puts, distinct) {
                        Ok(figure) => {
                            eprintln!(
                                "{watchers:>5} watchers {} {:<15} created in {:>8.1} ms, p50 {:>8.0} us",
                                ranges(watchers, distinct),
                                peer.name,
                                figure.create_ms,
                                figure.p50
                            );
                            figures
                                .entry((watchers, distinct, peer.name))
                                .or_default()
                                .push(figure);
                        }
                        Err(e) => {
                            let first = e.to_string().lines().next().unwrap_or("").to_owned();
                            eprintln!("{watchers} watchers, {}: {first}", peer.name);
                            lost.push(format!(
                                "- {watchers} watchers ({}), {}, round {}: {first}",
                                ranges(watchers, distinct),
                                peer.name,
                                round + 1
                            ));
                        }
                    }
                    let now = admin.kv().get("wbench/")?.header().revision();
                    admin.kv().compact(now)?;
                }
            }
        }
    }
    let mut faults: Vec<(Fault, &str, Vec<Outcome>)> = Vec::new();
    for fault in [Fault::Kill, Fault::Stop] {
        let mut outcomes: Vec<Vec<Outcome>> = peers.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            let mut order: Vec<usize> = (0..peers.len()).collect();
            order.rotate_left(round % peers.len().max(1));
            for i in order {
                match run_fault(peers[i], fault) {
                    Ok(outcome) => {
                        eprintln!(
                            "{} ({} served the watch) / {}: first event {}",
                            fault.name(),
                            outcome.role,
                            peers[i].name,
                            ms(outcome.first_ms)
                        );
                        outcomes[i].push(outcome);
                    }
                    Err(e) => {
                        let first = e.to_string().lines().next().unwrap_or("").to_owned();
                        eprintln!("{} / {}: {first}", fault.name(), peers[i].name);
                        lost.push(format!(
                            "- {}, {}, round {}: {first}",
                            fault.name(),
                            peers[i].name,
                            round + 1
                        ));
                    }
                }
            }
        }
        for (peer, runs) in peers.iter().zip(outcomes) {
            faults.push((fault, peer.name, runs));
        }
    }
    let table = report(&peers, rounds, &figures, &faults, &lost);
    crate::write_table(&out, "watch-compare.md", table, &[])
}

fn run_latency(
    peer: &Peer,
    endpoints: &str,
    watchers: usize,
    puts: usize,
    distinct: bool,
) -> Result<Latency, Box<dyn std::error::Error>> {
    let mut args = vec![
        format!("--endpoints={endpoints}"),
        "--workload=watch".to_owned(),
        format!("--watchers={watchers}"),
        format!("--puts={puts}"),
    ];
    if distinct {
        args.push("--distinct".to_owned());
    }
    crate::run_peer(peer, &args, Latency::parse)
}

/// What the watches of a cell cover, for the table.
fn ranges(watchers: usize, distinct: bool) -> &'static str {
    match (watchers, distinct) {
        (1, _) => "one range",
        (_, true) => "a range each",
        (_, false) => "one prefix, shared",
    }
}

/// etcd's count of watch streams on the member at `endpoint`, from its metrics.
fn watch_streams(endpoint: &str) -> Option<u64> {
    let mut stream = std::net::TcpStream::connect(endpoint).ok()?;
    stream.set_read_timeout(Some(WAIT)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watch_stream_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// The writer's puts: when each started (unix µs), and its revision if acknowledged.
type Writes = Arc<Mutex<Vec<(u128, Option<i64>)>>>;

fn run_fault(peer: &Peer, fault: Fault) -> Result<Outcome, Box<dyn std::error::Error>> {
    let cluster = Cluster::start(3)?;
    let endpoints = cluster.endpoints();
    let (mut child, lines, reader) = crate::spawn_driver(
        peer,
        &[
            format!("--endpoints={}", endpoints.join(",")),
            "--workload=watch-fault".to_owned(),
            format!("--duration-ms={}", 3 * WAIT.as_millis()),
        ],
        Stdio::null(),
    )?;
    let outcome = (|| -> Result<Outcome, Box<dyn std::error::Error>> {
        lines
            .recv_timeout(Duration::from_secs(60))
            .ok()
            .filter(|l| l == "READY")
            .ok_or_else(|| format!("{} did not start its watch", peer.name))?;
        // A writer of our own.
        let writes: Writes = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (client, writes, stop) = (cluster.client()?, writes.clone(), stop.clone());
            thread::spawn(move || {
                let kv = client.kv();
                let mut n = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let at = unix_micros();
                    let revision = kv.put(format!("wfault/{n}"), "v").ok();
                    writes
                        .lock()
                        .expect("writes")
                        .push((at, revision.map(|r| r.header().revision())));
                    n += 1;
                }
            })
        };
        let result = (|| -> Result<Outcome, Box<dyn std::error::Error>> {
            // Events flow before the fault, for a while.
            for _ in 0..100 {
                lines
                    .recv_timeout(WAIT)
                    .ok()
                    .filter(|l| l.starts_with("E "))
                    .ok_or_else(|| format!("{} received no event before the fault", peer.name))?;
            }
            let serving = (0..endpoints.len())
                .find(|&i| watch_streams(&endpoints[i]) == Some(1))
                .ok_or("no member serves exactly one watch stream")?;
            let role = if cluster.leader()? == serving {
                "leader"
            } else {
                "follower"
            };
            while lines.try_recv().is_ok() {}
            match fault {
                Fault::Kill => cluster.kill(serving)?,
                Fault::Stop => cluster.pause(serving)?,
            }
            // From when the fault has taken hold: the process is reaped, or every one of
            // its threads stopped (writes that started before can still land before that).
            let fault_at = unix_micros();
            let deadline = Instant::now() + WAIT;
            let mut events: Vec<(u128, i64)> = Vec::new();
            let mut first_ms = None;
            while first_ms.is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if let Ok(line) = lines.recv_timeout(left.min(Duration::from_millis(20))) {
                    let mut fields = line.strip_prefix("E ").unwrap_or("").split(' ');
                    if let (Some(Ok(at)), Some(Ok(revision))) = (
                        fields.next().map(str::parse::<u128>),
                        fields.next().map(str::parse::<i64>),
                    ) {
                        events.push((at, revision));
                    }
                }
                // The first write that started after the fault and was acknowledged.
                let after = writes
                    .lock()
                    .expect("writes")
                    .iter()
                    .find(|(at, revision)| *at >= fault_at && revision.is_some())
                    .and_then(|(_, revision)| *revision);
                if let Some(after) = after {
                    first_ms = events
                        .iter()
                        .find(|(_, revision)| *revision >= after)
                        .map(|(at, _)| at.saturating_sub(fault_at) as f64 / 1e3);
                }
            }
            if fault == Fault::Stop {
                cluster.resume(serving)?;
            }
            Ok(Outcome { role, first_ms })
        })();
        stop.store(true, Ordering::Release);
        let _ = writer.join();
        result
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    outcome
}

fn ms(first: Option<f64>) -> String {
    first.map_or("never".to_owned(), |ms| format!("{ms:.0} ms"))
}

fn report(
    peers: &[&Peer],
    rounds: usize,
    figures: &BTreeMap<(usize, bool, &str), Vec<Latency>>,
    faults: &[(Fault, &str, Vec<Outcome>)],
    lost: &[String],
) -> String {
    let mut table = format!(
        "# Watch side by side\n\n\
         Made by `scripts/compare` (`COMPARE_MODE=watch`, `benches/compare/benches/peer_watch/mod.rs`): \
         every client its own process, {rounds} alternating round(s), medians. Each driver \
         creates N watches (the time is until every one is confirmed created; RSS and \
         threads are the process's then), then makes sequential puts of its own and waits, \
         for each, until every watcher has its event. CPU is the client process's CPU \
         clock over the puts, per 1,000 events delivered.\n\n\
         **\"a range each\"**: watch i covers `[wbench/, wbench/~i)`, a range of its own \
         that holds every key put, so every client makes N watches on the server and etcd \
         sends every event N times: the same work on the server for every client. \
         **\"one prefix, shared\"**: every watch is of the prefix `wbench/`. The peers still \
         make one server watch each; etcd-blocking makes one server watch for all the \
         watchers of one range and copies each event to them, so etcd sends each event \
         once: a design difference, not the same work.\n\n\
         | watchers | ranges | client | create all ms | p50 ms | p99 ms | p99.9 ms | events/s | CPU ms / 1k events | RSS MiB | threads |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for (watchers, puts, distinct) in CELLS {
        for peer in peers {
            let Some(runs) = figures.get(&(watchers, distinct, peer.name)) else {
                continue;
            };
            let events = |r: &Latency| r.events_per_sec;
            table.push_str(&format!(
                "| {watchers} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {:.1} | {:.0} |\n",
                ranges(watchers, distinct),
                peer.name,
                crate::median(runs, |r| r.create_ms),
                crate::median(runs, |r| r.p50) / 1e3,
                crate::median(runs, |r| r.p99) / 1e3,
                crate::median(runs, |r| r.p999) / 1e3,
                crate::median(runs, events),
                // CPU seconds over the puts, in ms per 1,000 events delivered.
                crate::median(runs, |r| r.cpu * 1e6 / (watchers * puts) as f64),
                crate::median(runs, |r| r.rss) / 1024.0,
                crate::median(runs, |r| r.threads),
            ));
        }
    }
    table.push_str(
        "\n## First event after a fault of the member serving the watch\n\n\
         A fresh 3-member cluster per run. The driver watches `wfault/` with all three \
         endpoints; a writer outside it puts `wfault/` keys without pause. The member \
         serving the driver's watch stream (from etcd's metrics) is SIGKILLed or SIGSTOPped; \
         the figure is from the fault to the first event the driver receives of a write \
         that started after it (so events already on their way do not count, and a fault \
         of the leader includes the election and the writer's own failover). \"never\": \
         none within 10 s. Each cell lists the rounds in order, with the role of the member \
         that served the watch.\n\n\
         | fault | client | each round |\n|---|---|---|\n",
    );
    for (fault, client, runs) in faults {
        let each: Vec<String> = runs
            .iter()
            .map(|o| format!("{} ({})", ms(o.first_ms), o.role))
            .collect();
        table.push_str(&format!(
            "| {} | {client} | {} |\n",
            fault.name(),
            each.join(" / ")
        ));
    }
    if !lost.is_empty() {
        table.push_str(&format!(
            "\nRuns that gave no result:\n\n{}\n",
            lost.join("\n")
        ));
    }
    table
}
