//! Writes of unknown outcome, as a caller meets them: during a leader cut off from its
//! peers some writes come back `WriteOutcomeUnknown`, and a transaction guarded by a
//! compare on the key's mod revision may be resent until it is decided, without ever being
//! applied twice, whichever of its tries etcd applies, and whenever.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::all_healthy;
use etcd_blocking::{Client, Compare, Kv, Txn, TxnOp};

/// The key's value as a number and its mod revision (0, 0 if it does not exist).
fn read(kv: &Kv, key: &str) -> (u64, i64) {
    loop {
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
        loop {
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
    let cluster = common::cluster_with_peer_proxies(3);
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
