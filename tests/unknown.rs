//! Writes of unknown outcome, as a caller meets them.
//!
//! - A blind put given up can be applied seconds later, over a newer value: reading the key
//!   does not tell. A put guarded by a compare that arrives as late does nothing.
//! - During a leader cut off from its peers some writes come back `WriteOutcomeUnknown`,
//!   and a transaction guarded by a compare on the key's mod revision may be resent until
//!   it is decided, without ever being applied twice, whichever of its tries etcd applies,
//!   and whenever.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::all_healthy;
use etcd_blocking::{Client, Compare, Kv, Txn, TxnOp};

/// How long a retry loop of these tests may go on before it fails the test: a regression
/// that makes every try fail must fail, not hang.
const GIVE_UP: Duration = Duration::from_secs(60);

/// The key's value as a number and its mod revision (0, 0 if it does not exist).
fn read(kv: &Kv, key: &str) -> (u64, i64) {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        assert!(
            Instant::now() < deadline,
            "{key}: no read succeeded in {GIVE_UP:?}"
        );
        if let Ok(got) = kv.get_one(key) {
            return got.map_or((0, 0), |kv| {
                let v = kv
                    .value_str()
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .expect("a number");
                (v, kv.mod_revision())
            });
        }
    }
}

/// Increments `key` until `stop`, each increment a transaction guarded by the mod revision
/// read before it, resent as it is while its outcome is unknown. Returns the increments
/// made and how many tries came back of unknown outcome.
fn increment(kv: &Kv, key: &str, stop: &AtomicBool) -> (u64, u64) {
    let (mut value, mut revision) = read(kv, key);
    let mut unknown = 0;
    while !stop.load(Ordering::Acquire) {
        let txn = Txn::new()
            .when([Compare::mod_revision(key).eq(revision)])
            .and_then([TxnOp::put(key, (value + 1).to_string())]);
        let deadline = Instant::now() + GIVE_UP;
        loop {
            assert!(
                Instant::now() < deadline,
                "{key}: an increment undecided after {GIVE_UP:?} of resends"
            );
            match kv.txn(txn.clone()) {
                Ok(r) if r.succeeded() => {
                    value += 1;
                    revision = r.header().revision();
                    break;
                }
                Ok(_) => {
                    // The compare failed: with one writer per key, an earlier try of this
                    // increment was applied. The key says so.
                    let (now, at) = read(kv, key);
                    assert_eq!(
                        now,
                        value + 1,
                        "{key}: the compare failed, yet no try applied"
                    );
                    (value, revision) = (now, at);
                    break;
                }
                Err(e) if e.is_write_outcome_unknown() => unknown += 1,
                // Refused before it was applied (no endpoint, no leader): resend too.
                Err(_) => {}
            }
        }
    }
    (value, unknown)
}

#[test]
fn a_guarded_write_resent_after_an_unknown_outcome_is_applied_once() {
    let cluster = common::alone_with_peer_proxies(3);
    let client = Client::builder()
        .endpoints(cluster.endpoints())
        .request_timeout(Duration::from_secs(1))
        .connect()
        .expect("connect");
    all_healthy(&cluster, &client);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (kv, stop) = (client.kv(), stop.clone());
            std::thread::spawn(move || increment(&kv, &format!("counter/{w}"), &stop))
        })
        .collect();
    let kv = client.kv();
    cluster
        .wait_until(Duration::from_secs(10), "the counters to count", || {
            (0..4).all(|w| read(&kv, &format!("counter/{w}")).0 >= 10)
        })
        .expect("counting");
    let leader = cluster.leader().expect("leader");
    cluster.isolate(leader).expect("isolate");
    cluster
        .wait_until(Duration::from_secs(10), "a new leader", || {
            cluster.leader().is_ok_and(|l| l != leader)
        })
        .expect("elected");
    // Counting goes on with the new leader, then the old one comes back.
    let elected: Vec<u64> = (0..4)
        .map(|w| read(&kv, &format!("counter/{w}")).0)
        .collect();
    cluster
        .wait_until(
            Duration::from_secs(10),
            "counting under the new leader",
            || (0..4).all(|w| read(&kv, &format!("counter/{w}")).0 >= elected[w] + 10),
        )
        .expect("counting");
    cluster.heal().expect("heal");
    let healed = Instant::now();
    cluster
        .wait_until(Duration::from_secs(10), "the old leader to rejoin", || {
            cluster.wait_healthy().is_ok()
        })
        .expect("rejoined");
    let rejoined: Vec<u64> = (0..4)
        .map(|w| read(&kv, &format!("counter/{w}")).0)
        .collect();
    cluster
        .wait_until(Duration::from_secs(10), "counting after the heal", || {
            (0..4).all(|w| read(&kv, &format!("counter/{w}")).0 >= rejoined[w] + 10)
        })
        .expect("counting");
    stop.store(true, Ordering::Release);
    let mut unknown = 0;
    for (w, writer) in writers.into_iter().enumerate() {
        let (made, unsure) = writer.join().expect("writer");
        unknown += unsure;
        let key = format!("counter/{w}");
        let got = kv.get_one(key.as_str()).expect("get").expect("the counter");
        let value: u64 = got.value_str().expect("text").parse().expect("a number");
        assert_eq!(value, made, "{key}: the counter is what its writer counted");
        // Every applied put adds one to the version: none was applied twice or lost.
        assert_eq!(got.version() as u64, made, "{key}: one put per increment");
    }
    assert!(
        unknown > 0,
        "no try came back of unknown outcome, so nothing was tested ({:?} after the heal)",
        healed.elapsed()
    );
}

/// How many keys of each kind (blind, guarded) one round writes.
const KEYS: usize = 24;

/// How long the old leader stays paused. With 3 s, every run so far saw the forwarded
/// writes applied after it came back; with 6 s (past etcd's request timeout for the test
/// cluster, 5 s plus two election timeouts), 2 rounds in 6 did: the request timeout does
/// not bound how long a forwarded proposal stays pending.
const HOLD: Duration = Duration::from_secs(3);

/// What one round saw: blind puts applied after a newer value, and guarded ones whose
/// else-branch left its marker after the newer value (they arrived late too, and their
/// compare refused them).
struct Late {
    blind: usize,
    guarded: usize,
    unknown: usize,
    reads: usize,
}

/// One round: through a client of one follower only, blind puts and guarded puts race the
/// pause of the leader. Those the follower forwarded to the paused leader come back of
/// unknown outcome; a linearizable read then finds none of them, a newer value is written,
/// and the old leader comes back.
fn round(cluster: &etcd_blocking::testing::Cluster, kv: &Kv, n: usize) -> Late {
    let leader = cluster.leader().expect("leader");
    let follower = (leader + 1) % 3;
    let via = common::client_of(cluster, follower);
    // Writer `w` writes key `w / 2`, blind if `w` is even, guarded if odd.
    let blind = |i: usize| format!("late/{n}/blind/{i}");
    let guarded = |i: usize| format!("late/{n}/guarded/{i}");
    let marker = |i: usize| format!("late/{n}/refused/{i}");
    let key = |w: usize| {
        if w.is_multiple_of(2) {
            blind(w / 2)
        } else {
            guarded(w / 2)
        }
    };
    let mut first = Vec::new();
    for i in 0..KEYS {
        kv.put(blind(i), "before").expect("put");
        first.push(
            kv.put(guarded(i), "before")
                .expect("put")
                .header()
                .revision(),
        );
    }
    let start = Arc::new(std::sync::Barrier::new(2 * KEYS + 1));
    let writers: Vec<_> = (0..2 * KEYS)
        .map(|w| {
            let (via, start) = (via.kv(), start.clone());
            let (i, key) = (w / 2, key(w));
            let txn = (w % 2 == 1).then(|| {
                Txn::new()
                    .when([Compare::mod_revision(key.as_str()).eq(first[i])])
                    .and_then([TxnOp::put(key.as_str(), "late")])
                    .or_else([TxnOp::put(marker(i), "refused")])
            });
            std::thread::spawn(move || {
                start.wait();
                match txn {
                    None => via.put(key, "late").map(|_| ()),
                    Some(txn) => via.txn(txn).map(|_| ()),
                }
            })
        })
        .collect();
    cluster.pause(leader).expect("pause");
    let paused = Instant::now();
    start.wait();
    let unknown: Vec<bool> = writers
        .into_iter()
        .map(|w| match w.join().expect("writer") {
            Err(e) => e.is_write_outcome_unknown(),
            Ok(()) => false,
        })
        .collect();
    // What "read the key to find out" sees: not applied. The caller writes a newer value.
    let mut newer = vec![0i64; 2 * KEYS];
    let given_up: Vec<usize> = (0..2 * KEYS).filter(|&w| unknown[w]).collect();
    for &w in &given_up {
        let key = key(w);
        let got = kv.get_one(key.as_str()).expect("get").expect("the key");
        assert_eq!(got.value(), b"before", "{key}: applied before the read");
        newer[w] = kv.put(key, "newer").expect("put").header().revision();
    }
    // While the old leader is away, every read finds the newer value.
    let elected = cluster.leader().expect("a new leader");
    eprintln!(
        "round {n}: leader {leader} paused, follower {follower} forwarded, {elected} elected"
    );
    let mut reads = 0;
    while paused.elapsed() < HOLD {
        for &w in &given_up {
            let key = key(w);
            let got = kv.get_one(key.as_str()).expect("get").expect("the key");
            assert_eq!(
                got.value(),
                b"newer",
                "{key}, {:?} into the pause",
                paused.elapsed()
            );
            reads += 1;
        }
    }
    cluster.resume(leader).expect("resume");
    let count = || {
        let (mut late_blind, mut late_guarded) = (0, 0);
        for &w in &given_up {
            let i = w / 2;
            if w.is_multiple_of(2) {
                let got = kv.get_one(blind(i)).expect("get").expect("the key");
                if got.value() == b"late" && got.mod_revision() > newer[w] {
                    late_blind += 1;
                }
            } else {
                let got = kv.get_one(guarded(i)).expect("get").expect("the key");
                // The safe kind: never applied over the newer value.
                assert_eq!(
                    got.value(),
                    b"newer",
                    "{}: a guarded put applied late",
                    guarded(i)
                );
                if kv
                    .get_one(marker(i))
                    .expect("get")
                    .is_some_and(|m| m.mod_revision() > newer[w])
                {
                    late_guarded += 1;
                }
            }
        }
        (late_blind, late_guarded)
    };
    let _ = cluster.wait_until(Duration::from_secs(10), "late writes to be applied", || {
        count() != (0, 0) && cluster.wait_healthy().is_ok()
    });
    via.close().expect("close");
    let (blind, guarded) = count();
    Late {
        blind,
        guarded,
        unknown: given_up.len(),
        reads,
    }
}

#[test]
fn a_blind_put_of_unknown_outcome_can_be_applied_seconds_later_over_a_newer_value() {
    let cluster = common::alone(3);
    let client = common::client(&cluster);
    all_healthy(&cluster, &client);
    let kv = client.kv();
    let mut seen = Vec::new();
    for n in 0..4 {
        let late = round(&cluster, &kv, n);
        eprintln!(
            "round {n}: {} unknown, {} linearizable reads saw none applied for {HOLD:?}, then \
             {} blind puts applied over the newer value, {} guarded ones refused late",
            late.unknown, late.reads, late.blind, late.guarded
        );
        let found = late.blind > 0;
        seen.push(late);
        if found {
            return;
        }
        cluster.wait_healthy().expect("healthy");
        all_healthy(&cluster, &client);
    }
    panic!(
        "no blind put of unknown outcome was applied late in {} rounds",
        seen.len()
    );
}
