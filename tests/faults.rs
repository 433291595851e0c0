//! The fault-injection suite: a real 3-member cluster under continuous load from several
//! threads, one fault per test. In each: every call returns within its deadline, service
//! resumes within the bound the test names, no acknowledged write is lost, and no write is
//! applied twice (every key is written once, so any version above 1 is a double apply).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::alone;
use etcd_blocking::testing::{Cluster, Proxy};
use etcd_blocking::{Client, Error, GetOptions};

/// Each call's deadline.
const DEADLINE: Duration = Duration::from_secs(2);
/// How late past its deadline a call may return: scheduling on a loaded 2-core machine.
const LATE: Duration = Duration::from_millis(500);
/// Caller threads.
const CALLERS: usize = 4;
/// Once the balancer has had time to judge the fault, no call may stall longer than this.
const SETTLED_STALL: Duration = Duration::from_millis(500);

/// One call of the load, as it went.
struct Record {
    /// The caller thread that made it.
    caller: usize,
    started: Instant,
    took: Duration,
    outcome: Outcome,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// An acknowledged put of this key.
    Written(String),
    /// A put whose outcome the client said is unknown.
    Unknown(String),
    /// A successful read.
    Read,
    /// A put that failed for sure (never applied, the client says): the key and why.
    FailedWrite(String, String),
    /// A read that failed.
    FailedRead(String),
}

/// Caller threads writing unique keys (and reading some back) until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    successes: Arc<AtomicUsize>,
    callers: Vec<JoinHandle<Vec<Record>>>,
}

impl Load {
    fn start(client: &Client) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let successes = Arc::new(AtomicUsize::new(0));
        let callers = (0..CALLERS)
            .map(|t| {
                let kv = client.kv();
                let (stop, successes) = (stop.clone(), successes.clone());
                std::thread::spawn(move || {
                    let mut records = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let key = format!("load/{t}/{n}");
                        let started = Instant::now();
                        let outcome = if n.is_multiple_of(4) {
                            match kv.get_with(
                                format!("load/{t}/{}", n - 1),
                                GetOptions::new().serializable(),
                            ) {
                                Ok(_) => Outcome::Read,
                                Err(e) => Outcome::FailedRead(e.to_string()),
                            }
                        } else {
                            match kv.put(key.clone(), key.clone()) {
                                Ok(_) => Outcome::Written(key),
                                Err(Error::WriteOutcomeUnknown { .. }) => Outcome::Unknown(key),
                                Err(e) => Outcome::FailedWrite(key, e.to_string()),
                            }
                        };
                        if matches!(outcome, Outcome::Written(_) | Outcome::Read) {
                            successes.fetch_add(1, Ordering::Relaxed);
                        }
                        records.push(Record {
                            caller: t,
                            started,
                            took: started.elapsed(),
                            outcome,
                        });
                    }
                    records
                })
            })
            .collect();
        Load {
            stop,
            successes,
            callers,
        }
    }

    /// Waits until `more` calls have succeeded from now on.
    fn wait_for_successes(&self, cluster: &Cluster, more: usize, what: &str) {
        let target = self.successes.load(Ordering::Relaxed) + more;
        cluster
            .wait_until(Duration::from_secs(30), what, || {
                self.successes.load(Ordering::Relaxed) >= target
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn stop(self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        self.callers
            .into_iter()
            .flat_map(|c| c.join().expect("caller thread"))
            .collect()
    }
}

/// Runs `fault` (then `recover`) under load and checks the promises: calls end within
/// their deadline; a call started after the fault succeeds within `resume_bound`; calls
/// started later than that, until the recovery, do not stall (the faulty member is
/// avoided); no acknowledged write is lost and none is applied twice. Returns the time
/// from the fault to the first success.
fn under_load<T>(
    fault: impl FnOnce(&Cluster) -> T,
    recover: impl FnOnce(&Cluster, T),
    resume_bound: Duration,
) -> Duration {
    let cluster = alone(3);
    under_load_on(&cluster, &cluster.endpoints(), fault, recover, resume_bound)
}

/// [`under_load`] on a given cluster, through the given endpoints.
fn under_load_on<T>(
    cluster: &Cluster,
    endpoints: &[String],
    fault: impl FnOnce(&Cluster) -> T,
    recover: impl FnOnce(&Cluster, T),
    resume_bound: Duration,
) -> Duration {
    let client = cluster
        .client_builder()
        .endpoints(endpoints)
        .request_timeout(DEADLINE)
        .connect()
        .expect("connect");
    let load = Load::start(&client);
    load.wait_for_successes(cluster, 100, "the load to run before the fault");
    let fault_at = Instant::now();
    let faulted = fault(cluster);
    load.wait_for_successes(cluster, 100, "service to resume after the fault");
    // Enough calls after the bound to judge that the faulty member is avoided.
    cluster
        .wait_until(Duration::from_secs(30), "the resume bound to pass", || {
            fault_at.elapsed() > resume_bound
        })
        .unwrap_or_else(|e| panic!("{e}"));
    load.wait_for_successes(cluster, 200, "calls after the resume bound");
    let recover_at = Instant::now();
    recover(cluster, faulted);
    cluster.wait_healthy().unwrap_or_else(|e| panic!("{e}"));
    load.wait_for_successes(cluster, 100, "the load to run after recovery");
    let records = load.stop();

    let slow: Vec<_> = records
        .iter()
        .filter(|r| r.took > DEADLINE + LATE)
        .collect();
    assert!(
        slow.is_empty(),
        "{} calls overran their deadline of {DEADLINE:?}, the slowest took {:?}",
        slow.len(),
        slow.iter().map(|r| r.took).max()
    );

    let resumed = records
        .iter()
        .filter(|r| r.started >= fault_at)
        .filter(|r| matches!(r.outcome, Outcome::Written(_) | Outcome::Read))
        .map(|r| r.started + r.took - fault_at)
        .min()
        .expect("calls succeeded after the fault");
    assert!(
        resumed <= resume_bound,
        "first success {resumed:?} after the fault, bound {resume_bound:?}"
    );

    let stalled: Vec<Duration> = records
        .iter()
        .filter(|r| r.started >= fault_at + resume_bound && r.started < recover_at)
        .map(|r| r.took)
        .filter(|&took| took > SETTLED_STALL)
        .collect();
    assert!(
        stalled.is_empty(),
        "{} calls stalled once the fault should have been handled: {stalled:?}",
        stalled.len()
    );
    eprintln!("first success {resumed:?} after the fault (bound {resume_bound:?})");

    settle_late_writes(cluster);
    check_writes(&client, &records);
    client.close().expect("close");
    resumed
}

/// Waits out writes that may still be applied late: a write through each member on its
/// own, once every member is back and agrees on the leader, so that what any member had
/// forwarded before is ahead of it.
fn settle_late_writes(cluster: &Cluster) {
    cluster.wait_healthy().unwrap_or_else(|e| panic!("{e}"));
    for member in 0..cluster.size() {
        let alone = cluster
            .client_builder()
            .endpoints([cluster.endpoint(member)])
            .request_timeout(Duration::from_secs(10))
            .connect()
            .expect("connect to one member");
        cluster
            .wait_until(
                Duration::from_secs(20),
                "a write through every member",
                || alone.kv().put(format!("barrier/{member}"), "x").is_ok(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        alone.close().expect("close");
    }
}

/// Both halves of the write promise. Every acknowledged write is there, once, and each
/// caller's acknowledged writes have increasing mod revisions (in the order it made them);
/// every write of unknown outcome is there once or not at all; and no write that failed
/// for sure is there: a write that may have been applied always ends
/// `WriteOutcomeUnknown`.
fn check_writes(client: &Client, records: &[Record]) {
    let kv = client.kv().with_timeout(Duration::from_secs(10));
    let stored: std::collections::HashMap<Vec<u8>, (Vec<u8>, i64, i64)> = kv
        .get_with("load/", GetOptions::new().prefix())
        .expect("read back")
        .into_kvs()
        .into_iter()
        .map(|kv| {
            let (version, revision) = (kv.version(), kv.mod_revision());
            let (k, v) = kv.into_key_value();
            (k, (v, version, revision))
        })
        .collect();
    let mut acknowledged = 0;
    let mut last_revision: std::collections::HashMap<usize, (i64, &str)> = Default::default();
    for record in records {
        match &record.outcome {
            Outcome::Written(key) => {
                acknowledged += 1;
                let (value, version, revision) = stored
                    .get(key.as_bytes())
                    .unwrap_or_else(|| panic!("acknowledged write {key} was lost"));
                assert_eq!(value, key.as_bytes(), "{key}");
                assert_eq!(*version, 1, "{key} was applied {version} times");
                if let Some((before, earlier)) = last_revision.get(&record.caller) {
                    assert!(
                        revision > before,
                        "{key} (revision {revision}) was applied before {earlier} \
                         (revision {before}), which its caller wrote first"
                    );
                }
                last_revision.insert(record.caller, (*revision, key));
            }
            Outcome::Unknown(key) => {
                if let Some((_, version, _)) = stored.get(key.as_bytes()) {
                    assert_eq!(*version, 1, "{key} was applied {version} times");
                }
            }
            Outcome::FailedWrite(key, why) => assert!(
                !stored.contains_key(key.as_bytes()),
                "{key} failed ({why}), yet it was applied: it should have ended \
                 WriteOutcomeUnknown"
            ),
            Outcome::Read | Outcome::FailedRead(_) => {}
        }
    }
    assert!(acknowledged > 0, "the load wrote something");
}

fn leader(c: &Cluster) -> usize {
    c.leader().expect("leader")
}

fn follower(c: &Cluster) -> usize {
    (leader(c) + 1) % 3
}

/// SIGKILLs the picked member under load, then restarts it.
fn kill_and_restart(pick: fn(&Cluster) -> usize, bound: Duration) {
    under_load(
        |c| {
            let member = pick(c);
            c.kill(member).expect("kill");
            member
        },
        |c, member| c.restart(member).expect("restart"),
        bound,
    );
}

/// SIGSTOPs the picked member under load, then resumes it.
fn pause_and_resume(pick: fn(&Cluster) -> usize, bound: Duration) {
    under_load(
        |c| {
            let member = pick(c);
            c.pause(member).expect("pause");
            member
        },
        |c, member| c.resume(member).expect("resume"),
        bound,
    );
}

/// Cuts the picked member off from its peers under load (clients still reach it), then
/// heals the links.
fn cut_off_and_heal(pick: fn(&Cluster) -> usize, bound: Duration) {
    cut_off_and_heal_on(&common::alone_with_peer_proxies(3), pick, bound);
}

/// [`cut_off_and_heal`] on a given cluster (one with peer proxies).
fn cut_off_and_heal_on(cluster: &Cluster, pick: fn(&Cluster) -> usize, bound: Duration) {
    under_load_on(
        cluster,
        &cluster.endpoints(),
        |c| c.isolate(pick(c)).expect("isolate"),
        |c, ()| c.heal().expect("heal"),
        bound,
    );
}

#[test]
fn sigkill_of_the_leader() {
    kill_and_restart(leader, Duration::from_secs(1));
}

#[test]
fn sigkill_of_a_follower() {
    kill_and_restart(follower, Duration::from_secs(1));
}

#[test]
fn sigstop_of_a_member_in_use() {
    pause_and_resume(follower, Duration::from_millis(1500));
}

#[test]
fn sigstop_of_the_leader() {
    pause_and_resume(leader, Duration::from_millis(1500));
}

#[test]
fn a_member_cut_off_from_its_peers_but_reachable() {
    cut_off_and_heal(follower, Duration::from_millis(1500));
}

#[test]
fn the_leader_cut_off_from_its_peers_but_reachable() {
    cut_off_and_heal(leader, Duration::from_millis(1500));
}

/// A 3-member cluster, alone, with mutual TLS for clients and between members.
fn alone_with_tls(peer_proxies: bool) -> Cluster {
    let mut builder = Cluster::builder()
        .members(3)
        .mutual_tls()
        .peer_tls()
        .alone();
    if peer_proxies {
        builder = builder.peer_proxies();
    }
    builder
        .start()
        .unwrap_or_else(|e| panic!("starting a TLS cluster: {e}"))
}

#[test]
fn sigkill_of_the_leader_under_mutual_tls() {
    let cluster = alone_with_tls(false);
    under_load_on(
        &cluster,
        &cluster.endpoints(),
        |c| {
            let member = leader(c);
            c.kill(member).expect("kill");
            member
        },
        |c, member| c.restart(member).expect("restart"),
        Duration::from_secs(1),
    );
}

#[test]
fn the_leader_cut_off_from_its_peers_under_mutual_tls() {
    cut_off_and_heal_on(&alone_with_tls(true), leader, Duration::from_millis(1500));
}

#[test]
fn a_blackhole_between_client_and_member() {
    let cluster = alone(3);
    let proxy = Proxy::start(0, cluster.client_port(1)).unwrap_or_else(|e| panic!("{e}"));
    let endpoints = [cluster.endpoint(0), proxy.endpoint(), cluster.endpoint(2)];
    under_load_on(
        &cluster,
        &endpoints,
        |_| proxy.blackhole(),
        |_, ()| proxy.pass(),
        Duration::from_millis(1500),
    );
}

#[test]
fn loss_of_quorum_and_its_recovery() {
    let cluster = alone(3);
    let client = Client::builder()
        .endpoints(cluster.endpoints())
        .request_timeout(Duration::from_millis(500))
        .connect()
        .expect("connect");
    let kv = client.kv();
    kv.put("before", "1").expect("put");
    let leader = cluster.leader().expect("leader");
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    cluster.kill(others[0]).expect("kill");
    cluster.kill(others[1]).expect("kill");
    // Without quorum every write fails, within its deadline, and says why: unknown
    // outcome if it may have been applied, else a failure that says it was not.
    let mut failed_for_sure = Vec::new();
    for i in 0..5 {
        let key = format!("during/{i}");
        let started = Instant::now();
        let err = kv.put(key.as_str(), "x").expect_err("no quorum");
        assert!(
            started.elapsed() <= Duration::from_millis(500) + LATE,
            "took {:?}",
            started.elapsed()
        );
        eprintln!("{key}: {err}");
        if !err.is_write_outcome_unknown() {
            assert!(
                err.is_unavailable() || err.is_deadline_exceeded(),
                "{err:?}"
            );
            failed_for_sure.push((key, err));
        }
    }
    cluster.restart(others[0]).expect("restart");
    let back = Instant::now();
    cluster
        .wait_until(
            Duration::from_secs(10),
            "a write after quorum returns",
            || kv.put("after", "1").is_ok(),
        )
        .expect("writes resume");
    let resumed = back.elapsed();
    assert!(
        resumed < Duration::from_secs(5),
        "writes resumed after {resumed:?}"
    );
    assert_eq!(kv.get("before").expect("get").count(), 1);
    assert_eq!(kv.get("after").expect("get").count(), 1);
    cluster.restart(others[1]).expect("restart");
    // The other half of the promise: once nothing can be applied late any more, no write
    // that failed for sure is in the store (the old leader's log may have held it, and
    // an election it wins would commit it).
    settle_late_writes(&cluster);
    for (key, err) in failed_for_sure {
        assert_eq!(
            kv.get(key.as_str()).expect("read back").count(),
            0,
            "{key} failed with {err:?}, yet it was applied"
        );
    }
}

#[test]
fn rolling_restart_of_every_member() {
    under_load(
        |c| {
            for i in 0..3 {
                c.kill(i).expect("kill");
                c.restart(i).expect("restart");
                c.wait_healthy().expect("healthy between restarts");
            }
        },
        |_, ()| {},
        Duration::from_secs(1),
    );
}

#[test]
fn calls_forwarded_to_a_dead_leader_end_long_before_their_deadline() {
    // A follower that has not yet noticed its leader died forwards a write to it, and the
    // write would wait out its whole deadline. The client notices the leader change and
    // ends such calls early instead: a read is retried, a write's outcome reported unknown.
    let cluster = alone(3);
    let leader = leader(&cluster);
    let mut endpoints = vec![cluster.endpoint(leader)];
    endpoints.extend((0..3).filter(|&i| i != leader).map(|i| cluster.endpoint(i)));
    let deadline = Duration::from_secs(5);
    let client = Client::builder()
        .endpoints(&endpoints)
        .request_timeout(deadline)
        .connect()
        .expect("connect");
    let kv = client.kv();
    for i in 0..100 {
        kv.put(format!("warm/{i}"), "v").expect("put");
    }
    cluster.kill(leader).expect("kill");
    let killed = Instant::now();
    let mut succeeded = None;
    for i in 0..20 {
        let started = Instant::now();
        let result = kv.put(format!("after/{i}"), "v");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "put {i} took {took:?}: {result:?}"
        );
        if let Err(e) = &result {
            assert!(
                matches!(e, Error::WriteOutcomeUnknown { .. }) || e.is_unavailable(),
                "{e:?}"
            );
        } else if succeeded.is_none() {
            succeeded = Some(killed.elapsed());
        }
    }
    let succeeded = succeeded.expect("writes succeed again");
    assert!(
        succeeded < Duration::from_secs(2),
        "first success {succeeded:?} after the kill"
    );
}
