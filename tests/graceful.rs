//! Graceful stops (SIGTERM, how every rolling upgrade of etcd stops its members) under a
//! steady writer: a write ends of unknown outcome only when it was in flight while a
//! member was stopping (sent before it exited, answered after the signal); one sent after
//! the stopped member has exited (its leadership handed over first) succeeds.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{all_healthy, alone};
use etcd_blocking::testing::Cluster;
use etcd_blocking::{Client, Error};

const WAIT: Duration = Duration::from_secs(20);

/// One write: when it was sent, when it ended, and how.
struct Write {
    sent: Instant,
    ended: Instant,
    result: Result<(), Error>,
}

/// Writers that put keys of their own as fast as they are answered, until stopped.
struct Writers {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    threads: Vec<thread::JoinHandle<Vec<Write>>>,
}

impl Writers {
    fn start(client: &Client, count: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let threads = (0..count)
            .map(|w| {
                let (kv, stop, done) = (client.kv(), stop.clone(), done.clone());
                thread::spawn(move || {
                    let mut writes = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) && n < 100_000 {
                        let sent = Instant::now();
                        let result = kv.put(format!("w{w}/{n}"), "v").map(drop);
                        if result.is_ok() {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        writes.push(Write {
                            sent,
                            ended: Instant::now(),
                            result,
                        });
                        n += 1;
                    }
                    writes
                })
            })
            .collect();
        Writers {
            stop,
            done,
            threads,
        }
    }

    /// Waits until `more` writes have succeeded from now.
    fn wait_for(&self, cluster: &Cluster, more: usize) {
        let target = self.done.load(Ordering::Relaxed) + more;
        cluster
            .wait_until(WAIT, "writes to go through", || {
                self.done.load(Ordering::Relaxed) >= target
            })
            .expect("writes go through");
    }

    fn stop(self) -> Vec<Write> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().expect("writer"))
            .collect()
    }
}

/// Stops member `index` with SIGTERM; the time from the signal until it had exited.
fn terminate(cluster: &Cluster, index: usize) -> (Instant, Instant) {
    let from = Instant::now();
    assert!(
        cluster.terminate(index).expect("terminate"),
        "etcd exits on SIGTERM by itself"
    );
    (from, Instant::now())
}

/// Every write succeeded, or ended of unknown outcome while in flight during one of the
/// `stopping` windows (a write sent a moment before the signal is in flight while the
/// member stops); nothing else failed.
fn check(writes: &[Write], stopping: &[(Instant, Instant)]) {
    let mut unknown = 0;
    for write in writes {
        match &write.result {
            Ok(()) => {}
            Err(e) if e.is_write_outcome_unknown() => {
                unknown += 1;
                assert!(
                    stopping
                        .iter()
                        .any(|(from, to)| write.sent <= *to && write.ended >= *from),
                    "a write in flight while no member was stopping ended unknown: {e:?}; \
                     it was in flight {} while the members stopped {}",
                    span(write.sent, write.ended, stopping[0].0),
                    stopping
                        .iter()
                        .map(|(from, to)| span(*from, *to, stopping[0].0))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Err(e) => panic!("a write failed: {e:?}"),
        }
    }
    let ok = writes.len() - unknown;
    assert!(ok > 100, "only {ok} writes went through");
    eprintln!("{ok} writes succeeded, {unknown} of unknown outcome while a member stopped");
}

/// `from`..`to` in milliseconds after (or before, negative) `origin`, for messages.
fn span(from: Instant, to: Instant, origin: Instant) -> String {
    let ms = |t: Instant| match t.checked_duration_since(origin) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(origin - t).as_secs_f64() * 1e3,
    };
    format!("{:.1}..{:.1} ms", ms(from), ms(to))
}

/// A client that learns of a new leader from its probes, not from its writes (they go
/// round-robin), so that it learns while writes sent after the stop are in flight.
fn round_robin(cluster: &Cluster) -> Client {
    Client::builder()
        .endpoints(cluster.endpoints())
        .prefer_leader(false)
        .connect()
        .expect("connect")
}

#[test]
fn writes_through_a_graceful_stop_of_the_leader_are_unknown_only_while_it_stops() {
    let cluster = alone(3);
    let client = round_robin(&cluster);
    all_healthy(&cluster, &client);
    let writers = Writers::start(&client, 4);
    writers.wait_for(&cluster, 50);
    let leader = cluster.leader().expect("leader");
    let stopping = terminate(&cluster, leader);
    // Writes go on with the new leader; the client learns of it meanwhile.
    writers.wait_for(&cluster, 300);
    cluster.restart(leader).expect("restart");
    cluster.wait_healthy().expect("healthy");
    writers.wait_for(&cluster, 100);
    check(&writers.stop(), &[stopping]);
}

#[test]
fn writes_through_a_rolling_restart_are_unknown_only_while_a_member_stops() {
    let cluster = alone(3);
    let client = round_robin(&cluster);
    all_healthy(&cluster, &client);
    let writers = Writers::start(&client, 4);
    writers.wait_for(&cluster, 50);
    let mut stopping = Vec::new();
    // Followers first, the leader last, as an upgrade does.
    let leader = cluster.leader().expect("leader");
    let order: Vec<usize> = (0..3).filter(|&i| i != leader).chain([leader]).collect();
    for member in order {
        stopping.push(terminate(&cluster, member));
        writers.wait_for(&cluster, 100);
        cluster.restart(member).expect("restart");
        cluster.wait_healthy().expect("healthy");
        all_healthy(&cluster, &client);
        writers.wait_for(&cluster, 100);
    }
    check(&writers.stop(), &stopping);
}
