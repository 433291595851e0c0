//! Watches against real etcd, at scale: ten thousand watches on one stream and one
//! thread, each with its event.

mod common;

use std::time::Instant;

use common::{client, cluster, next_events};
use etcd_blocking::{WatchOptions, Watcher};

/// A count or kB field of this process's /proc status.
fn status_kib(field: &str) -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The names of this process's OS threads, sorted.
fn thread_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn ten_thousand_watches_share_one_thread_and_each_gets_its_event() {
    // In a process of its own, so that the thread count is this test's alone.
    let run = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "ten_thousand_watches_alone",
            "--ignored",
            "--nocapture",
        ])
        .args(["--test-threads=1"])
        .output()
        .expect("running the test binary");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}\n{out}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    // A filter that matched no test would pass too: it must have run exactly that one.
    assert!(
        out.contains("test result: ok. 1 passed"),
        "the child ran no test, or more than one:\n{out}"
    );
}

#[test]
#[ignore = "run in a process of its own by ten_thousand_watches_share_one_thread_and_each_gets_its_event"]
fn ten_thousand_watches_alone() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let watch = client.watch();
    // The hub's thread starts with the first watch.
    let first = watch.watch("many/first").expect("watch");
    first.created_revision().expect("created");
    let before = thread_names();
    let started = Instant::now();
    // Ranges that differ (so none shares a server watch with another) and all hold
    // "many/k": one put, 10,000 events.
    let watchers: Vec<Watcher> = (0..10_000)
        .map(|i| {
            watch
                .watch_with(
                    "many/",
                    WatchOptions::new().range_end(format!("many/k{i:05}")),
                )
                .expect("watch")
        })
        .collect();
    let queued = started.elapsed();
    for w in &watchers {
        w.created_revision().expect("created");
    }
    eprintln!(
        "10,000 watches: queued in {queued:?}, all created in {:?}, process RSS {} MiB",
        started.elapsed(),
        status_kib("VmRSS") / 1024
    );
    // gRPC's C core may start a thread of its own on a busy connection (its executor):
    // not the client's, and not one per watch.
    let mut new = thread_names();
    for name in &before {
        if let Some(at) = new.iter().position(|n| n == name) {
            new.remove(at);
        }
    }
    eprintln!("threads started meanwhile: {new:?}");
    assert!(
        new.len() <= 2
            && new.iter().all(|n| {
                [
                    "default-executo",
                    "resolver-execut",
                    "timer_manager",
                    "grpc_global_tim",
                    "event_engine",
                ]
                .contains(&n.as_str())
            }),
        "no thread per watch: new threads {new:?}"
    );
    let rev = client
        .kv()
        .put("many/k", "v")
        .expect("put")
        .header()
        .revision();
    for w in &watchers {
        assert_eq!(next_events(w).events()[0].revision(), rev);
    }
}
