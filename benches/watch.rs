//! The watch benchmark: put-to-event latency with 1, 100 and 10,000 watchers on one
//! prefix, the events per second they take in, the time to create 10,000 watches with the
//! client's RSS and threads, and the first event after SIGKILL and SIGSTOP of the member
//! serving the stream. Prints a table.
//!
//! `cargo bench --bench watch`; `WATCH_PUTS` sets the puts per latency run (default 300),
//! `WATCH_FAULT_ROUNDS` the runs of each fault (default 3), `WATCH_ONLY=faults` runs the
//! faults alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::percentile;
use etcd_blocking::testing::Cluster;
use etcd_blocking::{Client, WatchOptions, Watcher};

mod common;

const WAIT: Duration = Duration::from_secs(10);

/// Waits for `watcher`'s next event, skipping progress reports.
fn next_event(watcher: &Watcher) -> i64 {
    loop {
        let response = watcher
            .recv_timeout(WAIT)
            .expect("the watch goes on")
            .expect("an event in time");
        if let Some(event) = response.events().first() {
            return event.revision();
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// Put-to-event latency until every one of `n` watchers has the event, over `puts` puts.
fn latency(client: &Client, n: usize, puts: usize) {
    let watch = client.watch();
    let watchers: Vec<Watcher> = (0..n)
        .map(|_| {
            watch
                .watch_with("lat/", WatchOptions::new().prefix().buffer(usize::MAX))
                .expect("watch")
        })
        .collect();
    for w in &watchers {
        w.created_revision().expect("created");
    }
    let kv = client.kv();
    let mut first = Vec::with_capacity(puts);
    let mut all = Vec::with_capacity(puts);
    let started = Instant::now();
    for i in 0..puts {
        let t = Instant::now();
        let rev = kv
            .put(format!("lat/{i}"), "v")
            .expect("put")
            .header()
            .revision();
        for (j, w) in watchers.iter().enumerate() {
            assert_eq!(next_event(w), rev);
            if j == 0 {
                first.push(t.elapsed());
            }
        }
        all.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    first.sort();
    all.sort();
    println!(
        "| {n} | {} | {} | {} | {} | {} | {:.0} |",
        ms(percentile(&first, 0.5)),
        ms(percentile(&first, 0.99)),
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
        ms(percentile(&all, 0.999)),
        (n * puts) as f64 / elapsed.as_secs_f64()
    );
}

/// Creation of 10,000 watches: time to queue and to have all created, RSS and threads.
fn creation(client: &Client) -> String {
    let watch = client.watch();
    let first = watch.watch("create/first").expect("watch");
    first.created_revision().expect("created");
    let (rss, threads) = (common::status("VmRSS"), common::status("Threads"));
    let started = Instant::now();
    let watchers: Vec<Watcher> = (0..10_000)
        .map(|i| watch.watch(format!("create/{i}")).expect("watch"))
        .collect();
    let queued = started.elapsed();
    for w in &watchers {
        w.created_revision().expect("created");
    }
    let created = started.elapsed();
    format!(
        "| 10,000 watches | queued in {} ms, all created in {} ms | RSS +{} MiB | threads +{} |",
        ms(queued),
        ms(created),
        common::status("VmRSS").saturating_sub(rss) / 1024,
        common::status("Threads").saturating_sub(threads)
    )
}

/// The first event after a fault of the member serving the stream, with a writer going on.
fn after_fault(name: &str, fault: impl Fn(&Cluster, usize), heal: impl Fn(&Cluster, usize)) {
    let cluster = Cluster::start(3).expect("cluster");
    let client = cluster.client().expect("connect");
    let watch = client.watch();
    let watcher = watch
        .watch_with("fault/", WatchOptions::new().prefix().buffer(usize::MAX))
        .expect("watch");
    watcher.created_revision().expect("created");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (kv, stop) = (client.kv(), stop.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                let _ = kv.put(format!("fault/{n}"), "v");
                n += 1;
            }
        })
    };
    // Events flow before the fault.
    next_event(&watcher);
    let endpoints = cluster.endpoints();
    let serving = watch
        .stream_endpoint()
        .and_then(|e| endpoints.iter().position(|x| *x == e))
        .expect("a stream");
    let role = if cluster.leader().expect("a leader") == serving {
        "leader"
    } else {
        "follower"
    };
    while watcher.try_recv().expect("open").is_some() {}
    eprintln!(
        "DBG {:?} fault {role} opened {}",
        std::time::SystemTime::now(),
        watch.streams_opened()
    );
    // From the moment the fault is dealt (a kill returns once the process is reaped).
    let faulted = Instant::now();
    fault(&cluster, serving);
    // Responses already on their way count as before the fault.
    let mut first = None;
    while first.is_none() {
        let response = watcher
            .recv_timeout(WAIT)
            .expect("the watch goes on")
            .expect("an event in time");
        if watch
            .stream_endpoint()
            .is_some_and(|e| e != endpoints[serving])
            && !response.events().is_empty()
        {
            first = Some(faulted.elapsed());
        }
    }
    stop.store(true, Ordering::Release);
    writer.join().expect("writer");
    heal(&cluster, serving);
    println!(
        "| {name} | {role} | {} |",
        ms(first.expect("an event after the fault"))
    );
}

fn main() {
    let puts: usize = std::env::var("WATCH_PUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let fault_rounds: usize = std::env::var("WATCH_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    if std::env::var("WATCH_ONLY").is_ok_and(|v| v == "faults") {
        faults(fault_rounds);
        return;
    }
    let cluster = Cluster::start(1).expect("cluster");
    let client = cluster.client().expect("connect");
    // First, while the process's memory is its own: watchers dropped later leave RSS up.
    let created = creation(&client);
    println!(
        "# Watch: etcd {}, one member unless said",
        cluster.server_version()
    );
    println!();
    println!("Put-to-event latency in ms ({puts} sequential puts; \"all\": until every watcher has the event):");
    println!();
    println!("| watchers | first p50 | first p99 | all p50 | all p99 | all p99.9 | events/s |");
    println!("|---|---|---|---|---|---|---|");
    for n in [1, 100, 10_000] {
        latency(&client, n, if n == 10_000 { puts / 10 } else { puts });
    }
    println!();
    println!("{created}");
    drop(client);
    drop(cluster);
    faults(fault_rounds);
}

/// The fault rows, `rounds` of each.
fn faults(fault_rounds: usize) {
    println!();
    println!("First event on another member after a fault of the one serving the stream (3 members, a writer going on), ms:");
    println!();
    println!("| fault | member serving the stream | first event |");
    println!("|---|---|---|");
    for _ in 0..fault_rounds {
        after_fault(
            "SIGKILL",
            |c, i| c.kill(i).expect("kill"),
            |c, i| c.restart(i).expect("restart"),
        );
    }
    for _ in 0..fault_rounds {
        after_fault(
            "SIGSTOP",
            |c, i| c.pause(i).expect("pause"),
            |c, i| c.resume(i).expect("resume"),
        );
    }
}
