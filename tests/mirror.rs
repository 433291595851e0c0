//! Mirrors against real etcd: the copy equals a fresh read of the prefix at its revision
//! after a random load; snapshots never show half a transaction; a compaction past the
//! mirror's revision makes it list again and apply the difference, deletions included; a
//! large prefix loads a page at a time; consumers of changes follow it exactly.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_blocking::{Client, GetOptions, MirrorChange, MirrorOptions, MirrorSnapshot, Txn, TxnOp};

const WAIT: Duration = Duration::from_secs(20);

/// The prefix as the cluster has it at `revision`: key to (value, mod revision).
fn read_at(client: &Client, prefix: &str, revision: i64) -> BTreeMap<Vec<u8>, (Vec<u8>, i64)> {
    client
        .kv()
        .get_with(prefix, GetOptions::new().prefix().revision(revision))
        .expect("read the prefix")
        .kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), (kv.value().to_vec(), kv.mod_revision())))
        .collect()
}

fn copy_of(snapshot: &MirrorSnapshot) -> BTreeMap<Vec<u8>, (Vec<u8>, i64)> {
    snapshot
        .iter()
        .map(|kv| (kv.key().to_vec(), (kv.value().to_vec(), kv.mod_revision())))
        .collect()
}

/// A small deterministic generator, so that a failing load can be run again.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Puts, deletes and transactions over 50 keys of `m/`, and one key outside it.
fn random_load(client: &Client, steps: usize, seed: u64) -> i64 {
    let kv = client.kv();
    let mut rng = Lcg(seed);
    let mut revision = 0;
    for step in 0..steps {
        let n = rng.next(50);
        let key = format!("m/{n:02}");
        revision = match rng.next(4) {
            0 => kv.delete(key).expect("delete").header().revision(),
            // Three distinct keys: etcd refuses a txn that writes one key twice.
            1 => kv
                .txn(Txn::new().and_then([
                    TxnOp::put(key, format!("t{step}")),
                    TxnOp::put(format!("m/{:02}", (n + 1) % 50), format!("t{step}")),
                    TxnOp::delete(format!("m/{:02}", (n + 2) % 50)),
                ]))
                .expect("txn")
                .header()
                .revision(),
            2 => kv
                .put("outside", format!("{step}"))
                .expect("put")
                .header()
                .revision(),
            _ => kv
                .put(key, format!("v{step}"))
                .expect("put")
                .header()
                .revision(),
        };
    }
    let _ = revision;
    // The last write goes under the prefix, so that a consumer sees its revision.
    kv.put("m/last", format!("{seed}"))
        .expect("put")
        .header()
        .revision()
}

#[test]
fn the_copy_equals_the_prefix_at_its_revision_after_a_random_load() {
    let cluster = common::cluster(1);
    let client = cluster.client().expect("client");
    random_load(&client, 100, 1);
    let mirror = client
        .mirror_with("m/", MirrorOptions::new().page_size(7))
        .expect("mirror");
    let first = mirror.snapshot();
    assert_eq!(
        copy_of(&first),
        read_at(&client, "m/", first.revision()),
        "the listing"
    );
    let (start, changes) = mirror.changes();
    let last = random_load(&client, 300, 2);
    let snapshot = mirror
        .wait_for_revision(last, WAIT)
        .expect("the mirror reaches the last write");
    assert_eq!(
        copy_of(&snapshot),
        read_at(&client, "m/", snapshot.revision()),
        "the copy at revision {}",
        snapshot.revision()
    );
    // A consumer that applies every batch to its starting snapshot gets the same copy.
    let mut followed = copy_of(&start);
    let mut at = start.revision();
    while at < snapshot.revision() {
        let Some(change) = changes.recv_timeout(WAIT).expect("changes") else {
            panic!("no batch up to revision {}", snapshot.revision());
        };
        let MirrorChange::Events { revision, events } = change else {
            panic!("no reset without a compaction");
        };
        assert!(revision > at, "batches in revision order");
        at = revision;
        for event in events {
            let key = event.kv().key().to_vec();
            match event.kind() {
                etcd_blocking::EventKind::Put => {
                    followed.insert(key, (event.kv().value().to_vec(), revision));
                }
                etcd_blocking::EventKind::Delete => {
                    followed.remove(&key);
                }
            }
        }
        if at >= last {
            break;
        }
    }
    assert_eq!(at, last, "the consumer saw the last write's revision");
    assert_eq!(followed, copy_of(&snapshot), "the consumer's copy");
}

#[test]
fn snapshots_never_show_half_a_transaction() {
    let cluster = common::cluster(1);
    let client = cluster.client().expect("client");
    client.kv().put("pair/a", "0").expect("put");
    client.kv().put("pair/b", "0").expect("put");
    let mirror = Arc::new(client.mirror("pair/").expect("mirror"));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (mirror, stop) = (mirror.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut looked = 0;
            while !stop.load(Ordering::Relaxed) {
                let s = mirror.snapshot();
                let a = s.get("pair/a").map(|kv| kv.value().to_vec());
                let b = s.get("pair/b").map(|kv| kv.value().to_vec());
                assert_eq!(a, b, "half a transaction at revision {}", s.revision());
                looked += 1;
            }
            looked
        })
    };
    let mut last = 0;
    for i in 1..=300 {
        let value = i.to_string();
        last = client
            .kv()
            .txn(Txn::new().and_then([
                TxnOp::put("pair/a", value.clone()),
                TxnOp::put("pair/b", value),
            ]))
            .expect("txn")
            .header()
            .revision();
    }
    mirror.wait_for_revision(last, WAIT).expect("caught up");
    stop.store(true, Ordering::Relaxed);
    let looked = reader
        .join()
        .expect("the reader saw whole transactions only");
    assert!(looked > 0);
    assert_eq!(mirror.get("pair/a").expect("a").value(), b"300");
}

/// A compaction past the revision the mirror's watch must resume from (its member hung
/// while the others went on) makes the mirror list the prefix again: the copy comes out
/// equal to the cluster's, deletions included, and consumers get a reset.
#[test]
fn a_compaction_past_the_mirror_makes_it_list_again_deletions_included() {
    let cluster = common::cluster(3);
    let client = cluster.client().expect("client");
    for i in 0..20 {
        client.kv().put(format!("c/{i:02}"), "v").expect("put");
    }
    let mirror = client.mirror("c/").expect("mirror");
    let (_, changes) = mirror.changes();
    // Hang the member under the mirror's watch; write, delete and compact through the
    // others; the watch must move, and finds its revision compacted.
    let watched = common::eventually("the mirror's watch stream to open", WAIT, || {
        client.watch().stream_endpoint()
    });
    let index = (0..3)
        .find(|&i| cluster.endpoint(i).ends_with(&watched))
        .expect("the member under the watch");
    cluster.pause(index).expect("pause");
    let others = cluster
        .client_builder()
        .endpoints(
            (0..3)
                .filter(|&i| i != index)
                .map(|i| cluster.endpoint(i))
                .collect::<Vec<_>>(),
        )
        .connect()
        .expect("a client of the others");
    // The hung member may have led: writes sent during the election may end of unknown
    // outcome. Deletes and this put can be sent again.
    for i in 0..10 {
        common::eventually("a delete", WAIT, || {
            others.kv().delete(format!("c/{i:02}")).ok()
        });
    }
    let last = common::eventually("a put", WAIT, || others.kv().put("c/new", "x").ok())
        .header()
        .revision();
    common::eventually("a compaction", WAIT, || match others.kv().compact(last) {
        Ok(_) => Some(()),
        // A compaction sent again after an unknown outcome finds itself done.
        Err(e) if e.code() == Some(etcd_blocking::ServerCode::Compacted) => Some(()),
        Err(_) => None,
    });
    let snapshot = mirror
        .wait_for_revision(last, WAIT)
        .expect("the mirror catches up");
    cluster.resume(index).expect("resume");
    assert_eq!(
        copy_of(&snapshot),
        read_at(&client, "c/", snapshot.revision())
    );
    assert_eq!(snapshot.len(), 11);
    let reset = common::eventually("a reset among the changes", WAIT, || {
        match changes.recv_timeout(Duration::from_millis(100)).ok()?? {
            MirrorChange::Reset { deleted, put, .. } => Some((deleted, put)),
            MirrorChange::Events { .. } => None,
        }
    });
    assert_eq!(reset.0.len(), 10, "every deletion: {:?}", reset.0);
    assert_eq!(reset.1.len(), 1, "the one new key: {:?}", reset.1);
}

#[test]
fn a_large_prefix_loads_a_page_at_a_time() {
    let cluster = common::cluster(1);
    let client = cluster.client().expect("client");
    let total = 200_000;
    for batch in 0..total / 100 {
        client
            .kv()
            .txn(
                Txn::new().and_then(
                    (0..100).map(|i| TxnOp::put(format!("big/{:07}", batch * 100 + i), "v")),
                ),
            )
            .expect("a batch of puts");
    }
    let mirror = client
        .mirror_with("big/", MirrorOptions::new().page_size(5000).keys_only())
        .expect("mirror");
    assert_eq!(mirror.len(), total);
    let snapshot = mirror.snapshot();
    assert!(snapshot.iter().all(|kv| kv.value().is_empty()), "keys only");
    assert_eq!(
        snapshot.iter().next().expect("a first key").key(),
        b"big/0000000"
    );
    let bad = client.mirror_with("big/", MirrorOptions::new().page_size(0));
    assert!(bad.is_err(), "a page of no key is refused");
}

/// A consumer that falls behind its buffer is dropped with a typed lag error that says
/// where to catch up from; settings at their extremes are refused or work.
#[test]
fn a_consumer_that_falls_behind_is_dropped_with_a_lag_error() {
    let cluster = common::cluster(1);
    let client = cluster.client().expect("client");
    for bad in [
        MirrorOptions::new().changes_buffer(0),
        MirrorOptions::new().page_size(0),
        MirrorOptions::new().page_size(-1),
    ] {
        let err = client.mirror_with("lag/", bad).expect_err("refused");
        assert!(
            matches!(err, etcd_blocking::Error::InvalidArgument { .. }),
            "{err:?}"
        );
    }
    let mirror = client
        .mirror_with(
            "lag/",
            MirrorOptions::new().changes_buffer(1).page_size(i64::MAX),
        )
        .expect("mirror");
    let (_, changes) = mirror.changes();
    let mut last = 0;
    for i in 0..5 {
        last = client
            .kv()
            .put(format!("lag/{i}"), "v")
            .expect("put")
            .header()
            .revision();
    }
    mirror.wait_for_revision(last, WAIT).expect("caught up");
    assert_eq!(mirror.len(), 5);
    let first = changes
        .recv_timeout(WAIT)
        .expect("the one batch it had room for");
    assert!(first.is_some());
    match changes.recv_timeout(WAIT) {
        Err(etcd_blocking::Error::WatchLagged {
            resume_from,
            buffer,
        }) => {
            assert_eq!(buffer, 1);
            assert!(resume_from > 0 && resume_from <= last, "{resume_from}");
        }
        other => panic!("a lagging consumer: {other:?}"),
    }
    drop(mirror);
    assert!(
        matches!(
            changes.recv_timeout(WAIT),
            Err(etcd_blocking::Error::WatchLagged { .. })
        ),
        "it stays dropped"
    );
}
