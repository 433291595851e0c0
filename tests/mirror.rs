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
        .map(|(key, kv)| {
            assert_eq!(key, kv.key(), "kept under its own key");
            (key.to_vec(), (kv.value().to_vec(), kv.mod_revision()))
        })
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
    // A decoded mirror beside it, on the same watch stream: listing again decodes only
    // what changed.
    let decoded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = decoded.clone();
    let lengths = client
        .mirror_with(
            "c/",
            MirrorOptions::new().decode(move |kv| {
                counter.fetch_add(1, Ordering::Relaxed);
                Ok::<_, String>(kv.value().len())
            }),
        )
        .expect("a decoded mirror");
    assert_eq!(decoded.load(Ordering::Relaxed), 20);
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
    let s = lengths
        .wait_for_revision(last, WAIT)
        .expect("the decoded mirror catches up");
    assert_eq!(s.len(), 11);
    assert_eq!(s.get("c/new"), Some(&1));
    assert_eq!(
        decoded.load(Ordering::Relaxed),
        21,
        "the new key alone decoded when listed again"
    );
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
    assert!(
        snapshot.iter().all(|(_, kv)| kv.value().is_empty()),
        "keys only"
    );
    assert_eq!(
        snapshot.iter().next().expect("a first key").0,
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

/// A number, as a decoder of a mirror takes it.
fn number(kv: &etcd_blocking::KeyValue) -> Result<u64, String> {
    std::str::from_utf8(kv.value())
        .map_err(|e| e.to_string())?
        .parse()
        .map_err(|e: std::num::ParseIntError| format!("not a number: {e}"))
}

/// A decoded mirror keeps what its decoder made of each key, decoding once per change
/// and never on a read; a value the decoder refuses leaves its key out, listed with the
/// reason, until a good value or a deletion replaces it; the revision still moves past
/// changes elsewhere.
#[test]
fn a_decoded_mirror_decodes_each_change_once_and_lists_what_it_refused() {
    let cluster = common::cluster(1);
    let client = cluster.client().expect("client");
    let kv = client.kv();
    for (key, value) in [("n/a", "1"), ("n/b", "x"), ("n/c", "3")] {
        kv.put(key, value).expect("put");
    }
    let decoded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = decoded.clone();
    let mirror = client
        .mirror_with(
            "n/",
            MirrorOptions::new().page_size(1).decode(move |kv| {
                counter.fetch_add(1, Ordering::Relaxed);
                number(kv)
            }),
        )
        .expect("mirror");
    let rejected = |s: &MirrorSnapshot<u64>| -> Vec<(String, String)> {
        s.rejected()
            .map(|(k, why)| (String::from_utf8_lossy(k).into_owned(), why.to_owned()))
            .collect()
    };
    let first = mirror.snapshot();
    assert_eq!(first.get("n/a"), Some(&1));
    assert_eq!(first.get("n/b"), None, "refused");
    assert_eq!(first.len(), 2);
    let refused = rejected(&first);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, "n/b");
    assert!(refused[0].1.starts_with("not a number"), "{refused:?}");
    for _ in 0..100 {
        assert_eq!(mirror.get("n/c"), Some(3));
    }
    assert_eq!(
        decoded.load(Ordering::Relaxed),
        3,
        "once per key, not per read"
    );
    // A good value replaces the refused one; a bad one takes a key out.
    kv.put("n/b", "2").expect("put");
    let at = kv.put("n/a", "one").expect("put").header().revision();
    let s = mirror.wait_for_revision(at, WAIT).expect("caught up");
    assert_eq!(
        (s.get("n/a"), s.get("n/b"), s.get("n/c")),
        (None, Some(&2), Some(&3))
    );
    assert_eq!(
        rejected(&s)
            .iter()
            .map(|r| r.0.as_str())
            .collect::<Vec<_>>(),
        ["n/a"]
    );
    assert_eq!(decoded.load(Ordering::Relaxed), 5);
    // A refused key counts as a key when the mirror asks whether a revision that changed
    // nothing under its prefix is reached.
    let elsewhere = kv.put("other", "1").expect("put").header().revision();
    let s = mirror
        .wait_for_revision(elsewhere, Duration::from_secs(5))
        .expect("a revision without a change of the prefix is reached");
    assert!(s.revision() >= elsewhere);
    let at = kv.delete("n/a").expect("delete").header().revision();
    let s = mirror.wait_for_revision(at, WAIT).expect("caught up");
    assert_eq!(rejected(&s), [], "a deleted key is no longer refused");
    assert_eq!(s.len(), 2);
}

/// The store as the cluster has it now, through any member that answers.
fn read_now(
    cluster: &etcd_blocking::testing::Cluster,
    prefix: &str,
    revision: i64,
) -> BTreeMap<Vec<u8>, (Vec<u8>, i64)> {
    let client = cluster.client().expect("client");
    common::eventually("a read of the prefix", WAIT, || {
        client
            .kv()
            .get_with(prefix, GetOptions::new().prefix().revision(revision))
            .ok()
    })
    .kvs()
    .iter()
    .map(|kv| (kv.key().to_vec(), (kv.value().to_vec(), kv.mod_revision())))
    .collect()
}

/// Puts and deletes over 20 keys of `f/`, each sent again until it is known applied
/// (a blind put or delete may be): the revision of the last.
fn writes(client: &Client, round: usize) -> i64 {
    let kv = client.kv();
    let mut last = 0;
    for i in 0..40 {
        let key = format!("f/{:02}", (i * 7 + round) % 20);
        last = if i % 5 == 4 {
            common::eventually("a delete", WAIT, || kv.delete(key.as_str()).ok())
                .header()
                .revision()
        } else {
            let value = format!("r{round}/{i}");
            common::eventually("a put", WAIT, || kv.put(key.as_str(), value.as_str()).ok())
                .header()
                .revision()
        };
    }
    last
}

/// The member under the client's watch stream.
fn watched(cluster: &etcd_blocking::testing::Cluster, client: &Client) -> usize {
    let endpoint = common::eventually("the mirror's watch stream to open", WAIT, || {
        client.watch().stream_endpoint()
    });
    (0..cluster.size())
        .find(|&i| cluster.endpoint(i).ends_with(&endpoint))
        .expect("the member under the watch")
}

/// Through a kill, a pause and an isolation of the member under its watch, and a
/// restart of the whole cluster, the copy comes out equal to the cluster's prefix at its
/// revision; once its client is closed, the mirror keeps its last copy and its waits end
/// with `Closed`.
#[test]
fn the_copy_follows_through_member_faults_and_a_full_cluster_restart() {
    let cluster = common::cluster_with_peer_proxies(3);
    let client = cluster.client().expect("client");
    let writer = cluster.client().expect("a client that writes");
    writes(&writer, 0);
    let mirror = client.mirror("f/").expect("mirror");
    let check = |what: &str, last: i64| {
        let s = mirror
            .wait_for_revision(last, WAIT)
            .unwrap_or_else(|e| panic!("{what}: the mirror reaches revision {last}: {e}"));
        assert_eq!(
            copy_of(&s),
            read_now(&cluster, "f/", s.revision()),
            "{what}: the copy at revision {}",
            s.revision()
        );
    };
    for (round, fault) in ["kill", "pause", "isolate"].into_iter().enumerate() {
        let member = watched(&cluster, &client);
        match fault {
            "kill" => cluster.kill(member),
            "pause" => cluster.pause(member),
            _ => cluster.isolate(member),
        }
        .expect("the fault");
        let last = writes(&writer, round + 1);
        check(fault, last);
        match fault {
            "kill" => cluster.restart(member),
            "pause" => cluster.resume(member),
            _ => cluster.heal(),
        }
        .expect("the repair");
        cluster.wait_healthy().expect("healthy");
    }
    for member in 0..3 {
        cluster.kill(member).expect("kill");
    }
    for member in 0..3 {
        cluster.restart(member).expect("restart");
    }
    cluster.wait_healthy().expect("healthy after the restart");
    let last = writes(&writer, 9);
    check("the full restart", last);
    let before = mirror.snapshot();
    client.close().expect("close");
    assert!(
        matches!(
            mirror.wait_for_revision(last + 1_000, WAIT),
            Err(etcd_blocking::Error::Closed)
        ),
        "a wait after the client closed"
    );
    assert_eq!(
        copy_of(&mirror.snapshot()),
        copy_of(&before),
        "the last copy stays"
    );
}
