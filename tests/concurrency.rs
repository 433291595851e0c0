//! The concurrency recipes against real etcd clusters: sessions, and a mutex that keeps
//! its holders apart through member faults and fences out a holder that lost its session.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{all_healthy, alone, client};
use etcd_blocking::concurrency::{Election, Mutex, MutexGuard, Session};
use etcd_blocking::{Client, Compare, Error, GetOptions, Txn, TxnOp};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn bad_input_is_refused_with_a_typed_error() {
    let cluster = alone(1);
    let client = client(&cluster);
    assert!(matches!(
        Session::new(&client, Duration::ZERO),
        Err(Error::InvalidArgument { .. })
    ));
    let session = Session::new(&client, Duration::from_secs(5)).expect("session");
    assert!(matches!(
        Mutex::new(&session, ""),
        Err(Error::InvalidArgument { .. })
    ));
}

fn queued(client: &Client, prefix: &str) -> i64 {
    client
        .kv()
        .get_with(prefix, GetOptions::new().prefix().count_only())
        .expect("count")
        .count()
}

#[test]
fn try_lock_says_none_while_held_and_lock_waits_its_turn() {
    let cluster = alone(1);
    let client = client(&cluster);
    let a = Session::new(&client, Duration::from_secs(5)).expect("session");
    let b = Session::new(&client, Duration::from_secs(5)).expect("session");
    let held = Mutex::new(&a, "m")
        .expect("mutex")
        .lock(WAIT)
        .expect("lock");
    let other = Mutex::new(&b, "m").expect("mutex");
    assert!(other.try_lock().expect("try").is_none(), "held by a");
    assert_eq!(queued(&client, "m/"), 1, "a failed try leaves no key");
    // Waiting past the deadline: a typed error, and the waiter's key gone.
    assert!(matches!(
        other.lock(Duration::from_millis(300)),
        Err(Error::WaitTimeout { .. })
    ));
    assert_eq!(queued(&client, "m/"), 1);
    // Waiting its turn: taken once the holder lets go.
    let waiter = thread::spawn(move || other.lock(WAIT).map(|g| g.revision()));
    cluster
        .wait_until(WAIT, "the waiter to queue", || queued(&client, "m/") == 2)
        .expect("queued");
    let first = held.revision();
    held.unlock().expect("unlock");
    let second = waiter.join().expect("waiter").expect("locked");
    assert!(second > first, "{second} after {first}");
}

#[test]
fn a_holder_whose_session_is_lost_is_fenced_out() {
    let cluster = alone(1);
    let client = client(&cluster);
    let a = Session::new(&client, Duration::from_secs(5)).expect("session");
    let b = Session::new(&client, Duration::from_secs(5)).expect("session");
    let stale = Mutex::new(&a, "f")
        .expect("mutex")
        .lock(WAIT)
        .expect("lock");
    // a's lease goes (as it would with a partition longer than its TTL).
    let done = a.done();
    client.lease().revoke(a.lease_id()).expect("revoke");
    assert!(done.recv_timeout(WAIT).is_err(), "a's session ended");
    let fresh = Mutex::new(&b, "f")
        .expect("mutex")
        .lock(WAIT)
        .expect("lock");
    let write = |guard: &MutexGuard, value: &str| {
        client
            .kv()
            .txn(
                Txn::new()
                    .when([guard.fence()])
                    .and_then([TxnOp::put("f-data", value)]),
            )
            .expect("txn")
            .succeeded()
    };
    assert!(!write(&stale, "from a"), "the stale holder is fenced out");
    assert!(write(&fresh, "from b"), "the holder writes");
    drop(stale);
    fresh.unlock().expect("unlock");
}

#[test]
fn a_session_ends_when_no_quorum_is_in_reach_past_its_ttl() {
    let cluster = alone(3);
    let client = client(&cluster);
    all_healthy(&cluster, &client);
    let ttl = Duration::from_secs(2);
    let session = Session::new(&client, ttl).expect("session");
    let done = session.done();
    cluster.pause(0).expect("pause");
    cluster.pause(1).expect("pause");
    let paused = Instant::now();
    let ended = done.recv_timeout(ttl + WAIT).is_err();
    let took = paused.elapsed();
    cluster.resume(0).expect("resume");
    cluster.resume(1).expect("resume");
    assert!(ended, "done disconnected");
    assert!(!session.is_alive());
    // Ended once the last renewal's TTL ran out: never later than a TTL after the fault
    // (plus the thread's wake-up), and not before: the last renewal was at most a third
    // of the TTL (and a batch's early margin) before the fault.
    assert!(
        took <= ttl + Duration::from_millis(500),
        "ended after {took:?}"
    );
    assert!(
        took >= ttl / 2,
        "ended after {took:?}, before the lease could run out"
    );
}

/// Increments the counter under `guard`: a write fenced to the holder and guarded by the
/// value read, resent while its outcome is unknown (a late copy finds the value changed).
fn increment(client: &Client, guard: &MutexGuard) {
    let kv = client.kv();
    // A regression that makes every try fail must fail the test, not hang it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let in_time = || {
        assert!(
            Instant::now() < deadline,
            "an increment undecided after 60 s"
        )
    };
    let read = loop {
        in_time();
        match kv.get("counter") {
            Ok(r) => break r,
            Err(e) => assert!(e.is_unavailable() || e.is_deadline_exceeded(), "{e}"),
        }
    };
    let old: u64 = read.first().map_or(0, |kv| {
        String::from_utf8_lossy(kv.value())
            .parse()
            .expect("a number")
    });
    let same = match read.first() {
        Some(kv) => Compare::mod_revision("counter").eq(kv.mod_revision()),
        None => Compare::create_revision("counter").eq(0),
    };
    loop {
        in_time();
        let txn = Txn::new()
            .when([guard.fence(), same.clone()])
            .and_then([TxnOp::put("counter", (old + 1).to_string())]);
        match kv.txn(txn) {
            Ok(r) if r.succeeded() => return,
            Ok(_) => {
                // An earlier copy landed, or the lock is lost: the value tells.
                let now = kv.get("counter").expect("read back");
                let value: u64 = now.first().map_or(0, |kv| {
                    String::from_utf8_lossy(kv.value())
                        .parse()
                        .expect("a number")
                });
                assert_eq!(value, old + 1, "the increment landed, and nothing else");
                return;
            }
            Err(e) => assert!(
                matches!(e, Error::WriteOutcomeUnknown { .. })
                    || e.is_unavailable()
                    || e.is_deadline_exceeded(),
                "{e}"
            ),
        }
    }
}

#[test]
fn holders_never_overlap_and_every_increment_counts_through_member_faults() {
    const ROUNDS: usize = 12;
    let cluster = alone(3);
    let clients: Vec<Client> = (0..2).map(|_| client(&cluster)).collect();
    for c in &clients {
        all_healthy(&cluster, c);
    }
    let holds: Arc<StdMutex<Vec<(i64, Instant, Instant)>>> = Arc::default();
    let stop_faults = Arc::new(AtomicBool::new(false));
    let faults = {
        let (stop, holds, cluster) = (stop_faults.clone(), holds.clone(), &cluster);
        move || {
            // A member killed and brought back, then another paused and resumed, each step
            // once the holders have made some progress since the last.
            let after = |count: usize| {
                let _ = cluster.wait_until(Duration::from_secs(60), "holders to go on", || {
                    stop.load(Ordering::Acquire) || holds.lock().expect("holds").len() >= count
                });
            };
            after(4);
            cluster.kill(0).expect("kill");
            after(12);
            cluster.restart(0).expect("restart");
            cluster.wait_healthy().expect("healthy");
            after(20);
            // A follower: a paused leader that comes back may revoke leases the new
            // leader kept (etcd #15247, see tests/lease.rs), which would end the sessions,
            // and that is not this test's point.
            let paused = match cluster.leader() {
                Ok(leader) => (leader + 1) % 3,
                Err(_) => 1,
            };
            cluster.pause(paused).expect("pause");
            after(32);
            cluster.resume(paused).expect("resume");
            // How many holds there were by then: the faults must have come while the
            // holders went on.
            holds.lock().expect("holds").len()
        }
    };
    thread::scope(|s| {
        let fault_thread = s.spawn(faults);
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let client = clients[w % 2].clone();
                let holds = holds.clone();
                s.spawn(move || {
                    let session = Session::new(&client, Duration::from_secs(5)).expect("session");
                    let mutex = Mutex::new(&session, "counter-lock").expect("mutex");
                    for _ in 0..ROUNDS {
                        let guard = mutex.lock(Duration::from_secs(60)).unwrap_or_else(|e| {
                            // What the queue held, for the report.
                            let queue = client
                                .kv()
                                .get_with("counter-lock/", GetOptions::new().prefix())
                                .map(|r| {
                                    r.kvs()
                                        .iter()
                                        .map(|kv| {
                                            (
                                                String::from_utf8_lossy(kv.key()).into_owned(),
                                                kv.create_revision(),
                                                kv.lease(),
                                            )
                                        })
                                        .collect::<Vec<_>>()
                                });
                            panic!("lock: {e}; the queue: {queue:?}")
                        });
                        let start = Instant::now();
                        increment(&client, &guard);
                        let end = Instant::now();
                        holds
                            .lock()
                            .expect("holds")
                            .push((guard.revision(), start, end));
                        guard.unlock().expect("unlock");
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        stop_faults.store(true, Ordering::Release);
        let by_the_last_fault = fault_thread.join().expect("faults");
        assert!(
            by_the_last_fault < 4 * ROUNDS,
            "the faults came after the holders were done"
        );
    });
    let total = clients[0].kv().get("counter").expect("get");
    assert_eq!(
        total.first().map(|kv| kv.value().to_vec()),
        Some((4 * ROUNDS).to_string().into_bytes()),
        "every increment counted once"
    );
    let mut holds = holds.lock().expect("holds").clone();
    holds.sort_by_key(|h| h.0);
    for pair in holds.windows(2) {
        assert!(pair[0].0 < pair[1].0, "one revision per hold");
        assert!(
            pair[0].2 <= pair[1].1,
            "holds overlap: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn observe_sees_every_leader_in_order_and_a_lost_leader_is_replaced() {
    let cluster = alone(1);
    let client = client(&cluster);
    let session = |ttl: u64| Session::new(&client, Duration::from_secs(ttl)).expect("session");
    let watcher_session = session(5);
    assert!(matches!(
        Election::new(&watcher_session, ""),
        Err(Error::InvalidArgument { .. })
    ));
    let election = |s: &Session| Election::new(s, "e").expect("election");
    let mut observer = election(&watcher_session).observe().expect("observe");
    assert!(election(&watcher_session)
        .leader()
        .expect("leader")
        .is_none());
    let (a, b, c) = (session(5), session(5), session(5));
    let leader_a = election(&a).campaign("a", WAIT).expect("a leads");
    // b and c stand behind a, in that order.
    let (eb, ec) = (election(&b), election(&c));
    let b_wins = thread::spawn(move || eb.campaign("b", 3 * WAIT));
    cluster
        .wait_until(WAIT, "b to stand", || queued(&client, "e/") == 2)
        .expect("b stands");
    let c_wins = thread::spawn(move || ec.campaign("c", 3 * WAIT));
    cluster
        .wait_until(WAIT, "c to stand", || queued(&client, "e/") == 3)
        .expect("c stands");
    // Not b's turn yet: a campaign with a short deadline gives up, typed.
    assert!(matches!(
        election(&session(5)).campaign("d", Duration::from_millis(300)),
        Err(Error::WaitTimeout { .. })
    ));
    leader_a.proclaim("a2").expect("proclaim");
    leader_a.resign().expect("resign");
    let leader_b = b_wins.join().expect("b").expect("b leads");
    // b's session is lost (its lease goes): c takes over, and b is leader no more.
    client.lease().revoke(b.lease_id()).expect("revoke");
    let leader_c = c_wins.join().expect("c").expect("c leads");
    assert!(matches!(
        leader_b.proclaim("b2"),
        Err(Error::NotLeader { .. })
    ));
    assert_eq!(
        election(&watcher_session)
            .leader()
            .expect("leader")
            .map(|kv| kv.value().to_vec()),
        Some(b"c".to_vec())
    );
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let kv = observer
            .recv_timeout(WAIT)
            .expect("observing")
            .expect("a leader in time");
        seen.push(String::from_utf8_lossy(kv.value()).into_owned());
    }
    assert_eq!(
        seen,
        ["a", "a2", "b", "c"],
        "every leader and value, in order"
    );
    assert!(observer
        .recv_timeout(Duration::from_millis(200))
        .expect("observing")
        .is_none());
    leader_c.resign().expect("resign");
}

#[test]
fn the_servers_lock_and_election_services_through_their_thin_handles() {
    let cluster = alone(1);
    let client = client(&cluster);
    let lease = || {
        client
            .lease()
            .grant(Duration::from_secs(30))
            .expect("grant")
            .id()
    };
    let locks = client.lock_service();
    assert!(matches!(
        locks.lock("", lease()),
        Err(Error::InvalidArgument { .. })
    ));
    let (a, b) = (lease(), lease());
    let held = locks.lock("svc-lock", a).expect("lock");
    assert!(held.key().starts_with(b"svc-lock/"), "{held:?}");
    locks.unlock(&held).expect("unlock");
    let next = locks.lock("svc-lock", b).expect("lock after the unlock");
    locks.unlock(&next).expect("unlock");

    let elections = client.election_service();
    assert!(elections.leader("svc-e").expect("leader").is_none());
    let leader_lease = lease();
    let leader = elections
        .campaign("svc-e", leader_lease, "a")
        .expect("campaign");
    assert_eq!(leader.lease(), leader_lease);
    elections.proclaim(&leader, "a2").expect("proclaim");
    assert_eq!(
        elections
            .leader("svc-e")
            .expect("leader")
            .map(|kv| kv.value().to_vec()),
        Some(b"a2".to_vec())
    );
    client.lease().revoke(leader_lease).expect("revoke");
    assert!(matches!(
        elections.proclaim(&leader, "a3"),
        Err(Error::NotLeader { .. })
    ));
    assert!(elections.leader("svc-e").expect("leader").is_none());
}

/// What one round of [`late_lock_round`] saw.
struct LateLocks {
    /// Whether forwarded writes were applied after the leader came back.
    late: bool,
    /// The keys left in the lock's queue once they could have been applied.
    left: Vec<String>,
    /// Enqueues whose outcome was unknown: each sealed a fence of its own (put with its
    /// session's lease, and only then), so the fences of the round's sessions count them.
    unknown: usize,
}

/// One round: sessions of a client of one follower each take and release the lock once,
/// their enqueues sent just after the leader is paused (so that the follower forwards
/// them to it), then stop locking but stay alive; a blind put through the same follower
/// shows whether forwarded writes were applied after the leader came back.
fn late_lock_round(
    cluster: &etcd_blocking::testing::Cluster,
    kv: &etcd_blocking::Kv,
    n: usize,
) -> LateLocks {
    const LOCKERS: usize = 12;
    let leader = cluster.leader().expect("leader");
    let follower = (leader + 1) % 3;
    let via = common::client_of(cluster, follower);
    let name = format!("late-lock-{n}");
    let sessions: Vec<Session> = (0..LOCKERS)
        .map(|_| Session::new(&via, Duration::from_secs(30)).expect("session"))
        .collect();
    let start = Arc::new(std::sync::Barrier::new(LOCKERS + 1));
    let lockers: Vec<_> = sessions
        .iter()
        .map(|session| {
            let (mutex, start) = (
                Mutex::new(session, name.as_str()).expect("mutex"),
                start.clone(),
            );
            thread::spawn(move || {
                start.wait();
                // Taken or not, the attempt ends here, its key deleted.
                if let Ok(Some(guard)) = mutex.try_lock() {
                    let _ = guard.unlock();
                }
            })
        })
        .collect();
    let mut witness = common::LateWitness::new(kv, format!("late-lock-{n}-witness"));
    cluster.pause(leader).expect("pause");
    let paused = Instant::now();
    start.wait();
    let _ = witness.send(cluster, kv, &via);
    for locker in lockers {
        locker.join().expect("locker");
    }
    cluster
        .wait_until(WAIT, "the pause to last", || {
            paused.elapsed() >= Duration::from_secs(3)
        })
        .expect("paused");
    cluster.resume(leader).expect("resume");
    let late = witness.wait(cluster, kv);
    let left = common::keys(
        &kv.get_with(format!("{name}/"), GetOptions::new().prefix())
            .expect("get"),
    );
    assert!(
        sessions.iter().all(Session::is_alive),
        "the sessions are alive"
    );
    let leases: Vec<i64> = sessions.iter().map(Session::lease_id).collect();
    let unknown = kv
        .get_with("__etcd-blocking/fence/", GetOptions::new().prefix())
        .expect("fences")
        .kvs()
        .iter()
        .filter(|f| leases.contains(&f.lease()))
        .count();
    drop(sessions);
    via.close().expect("close");
    LateLocks {
        late,
        left,
        unknown,
    }
}

#[test]
fn a_lock_attempt_of_unknown_outcome_leaves_no_key_when_applied_late() {
    let cluster = alone(3);
    let client = client(&cluster);
    all_healthy(&cluster, &client);
    let kv = client.kv();
    for n in 0..4 {
        let LateLocks {
            late,
            left,
            unknown,
        } = late_lock_round(&cluster, &kv, n);
        eprintln!(
            "round {n}: forwarded writes applied late: {late}; enqueues of unknown outcome: \
             {unknown}; keys left: {left:?}"
        );
        // A key left would hold the lock for a session that no longer locks.
        assert!(
            left.is_empty(),
            "round {n}: keys left in the queue: {left:?}"
        );
        // The name's case: attempts of unknown outcome, with writes applied late.
        if late && unknown > 0 {
            return;
        }
        cluster.wait_healthy().expect("healthy");
        all_healthy(&cluster, &client);
    }
    panic!("no round saw lock attempts of unknown outcome with forwarded writes applied late");
}
