//! Coalesced reads and writes against real etcd: concurrent requests go in batches, and
//! every one keeps the promise it has alone: a read sees every write acknowledged before it
//! began, a write is applied once, a bad request fails only its own caller, and batches
//! stay within the server's operation limit and never write a key twice.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use etcd_blocking::testing::Cluster;
use etcd_blocking::{Client, Error, GetOptions, Permission, PutOptions, ServerCode};

const READERS: usize = 64;

fn value(client: &Client, key: &str, serializable: bool) -> u64 {
    let options = if serializable {
        GetOptions::new().serializable()
    } else {
        GetOptions::new()
    };
    client
        .kv()
        .get_with(key, options)
        .expect("get")
        .kvs()
        .first()
        .map_or(0, |kv| {
            kv.value_str().expect("text").parse().expect("a number")
        })
}

/// 64 readers and a writer: a read begun after a write was acknowledged sees it (or a
/// newer one), for linearizable reads; serializable ones never go back in time. The reads
/// went in batches.
#[test]
fn a_read_begun_after_a_write_was_acknowledged_sees_it() {
    let cluster = common::cluster(3);
    let client = cluster.client().expect("client");
    let writer = cluster.client().expect("a client that writes");
    writer.kv().put("c", "0").expect("put");
    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(READERS + 1));
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (client, acknowledged, stop, start) = (
                client.clone(),
                acknowledged.clone(),
                stop.clone(),
                start.clone(),
            );
            thread::spawn(move || {
                let serializable = r % 4 == 3;
                let mut last = 0;
                let mut reads = 0u64;
                start.wait();
                while !stop.load(Ordering::Acquire) {
                    let before = acknowledged.load(Ordering::Acquire);
                    let got = value(&client, "c", serializable);
                    if !serializable {
                        assert!(
                            got >= before,
                            "reader {r}: read {got} after {before} was acknowledged"
                        );
                    }
                    assert!(got >= last, "reader {r}: {got} after {last}: back in time");
                    last = got;
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    start.wait();
    for n in 1..=300u64 {
        writer.kv().put("c", n.to_string()).expect("put");
        acknowledged.store(n, Ordering::Release);
    }
    stop.store(true, Ordering::Release);
    let reads: u64 = readers
        .into_iter()
        .map(|r| r.join().expect("a reader"))
        .sum();
    let stats = client.coalesced_reads();
    assert!(
        stats.batches > 0 && stats.requests >= 2 * stats.batches,
        "{reads} reads, none coalesced: {stats:?}"
    );
    assert!(stats.largest <= 128, "{stats:?}");
    eprintln!("{reads} reads; {stats:?}");
}

/// A read the server refuses (a key the user may not read) fails only its own caller,
/// with the error it has alone; the reads it was queued with get their answers.
#[test]
fn a_bad_read_in_a_batch_fails_only_its_own_caller() {
    let cluster = Cluster::builder()
        .auth("root-password")
        .start()
        .expect("a cluster with auth");
    let root = cluster
        .client_builder()
        .user("root", "root-password")
        .connect()
        .expect("root");
    root.kv().put("good", "1").expect("put");
    root.kv().put("secret", "s").expect("put");
    let auth = root.auth();
    auth.role_add("reader").expect("role");
    auth.role_grant_permission("reader", &Permission::read("good"))
        .expect("grant");
    auth.user_add("alice", "alice-password").expect("user");
    auth.user_grant_role("alice", "reader").expect("grant");
    let alice = cluster
        .client_builder()
        .user("alice", "alice-password")
        .connect()
        .expect("alice");
    let refused = alice.kv().get("secret").expect_err("refused alone");
    assert_eq!(
        refused.code(),
        Some(ServerCode::PermissionDenied),
        "{refused}"
    );
    for _round in 0..20 {
        let start = Arc::new(Barrier::new(17));
        let good: Vec<_> = (0..16)
            .map(|_| {
                let (alice, start) = (alice.clone(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    (0..20)
                        .map(|_| value(&alice, "good", false))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        start.wait();
        for _ in 0..10 {
            let err = alice.kv().get("secret").expect_err("refused");
            assert_eq!(err.code(), Some(ServerCode::PermissionDenied), "{err}");
        }
        for reader in good {
            assert!(reader.join().expect("reader").iter().all(|&v| v == 1));
        }
        // A batch that held a refused read failed, and its good reads were answered alone.
        if alice.coalesced_reads().failed > 0 {
            return;
        }
    }
    panic!(
        "no refused read was ever coalesced with others: {:?}",
        alice.coalesced_reads()
    );
}

/// Against a cluster that takes at most 16 operations a transaction, batches shrink to
/// pass, and every read is answered.
#[test]
fn batches_respect_the_servers_operation_limit() {
    let cluster = Cluster::builder()
        .arg("--max-txn-ops=16")
        .start()
        .expect("a cluster of 16 operations a transaction");
    let client = cluster.client().expect("client");
    client.kv().put("k", "7").expect("put");
    let start = Arc::new(Barrier::new(READERS));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (client, start) = (client.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                (0..50).all(|_| value(&client, "k", false) == 7)
            })
        })
        .collect();
    assert!(readers.into_iter().all(|r| r.join().expect("reader")));
    let stats = client.coalesced_reads();
    assert!(stats.batches > 0, "{stats:?}");
    assert!(
        stats.largest <= 16,
        "a batch over the limit passed: {stats:?}"
    );
    assert!(stats.failed > 0, "no batch met the limit: {stats:?}");
}

/// With coalescing off nothing is batched; a zero timeout is refused either way, and a
/// read at a past revision is never queued.
#[test]
fn coalescing_off_and_reads_it_leaves_alone() {
    let cluster = common::cluster(1);
    let off = cluster
        .client_builder()
        .coalesce_reads(false)
        .connect()
        .expect("client");
    let on = cluster.client().expect("client");
    let revision = on.kv().put("r", "1").expect("put").header().revision();
    let start = Arc::new(Barrier::new(8));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (off, on, start) = (off.clone(), on.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for _ in 0..50 {
                    assert_eq!(value(&off, "r", false), 1);
                    let at = on
                        .kv()
                        .get_with("r", GetOptions::new().revision(revision))
                        .expect("get at a revision");
                    assert_eq!(at.kvs().len(), 1);
                }
            })
        })
        .collect();
    for r in readers {
        r.join().expect("reader");
    }
    assert_eq!(off.coalesced_reads(), Default::default());
    assert_eq!(on.coalesced_reads().batches, 0, "reads at a revision queue");
    for client in [&off, &on] {
        let zero = client.kv().with_timeout(Duration::ZERO).get("r");
        assert!(
            matches!(zero, Err(Error::InvalidArgument { .. })),
            "{zero:?}"
        );
    }
}

/// A client that coalesces its writes too.
fn writing_client(cluster: &Cluster) -> Client {
    cluster
        .client_builder()
        .coalesce_writes(true)
        .connect()
        .expect("client")
}

/// 64 threads each putting their own key: every put is applied once (each key's version
/// is its puts), answered with its own previous value, and the puts went in batches,
/// fewer raft entries (revisions) than puts.
#[test]
fn coalesced_writes_are_each_applied_once_and_answered_alone() {
    let cluster = common::cluster(3);
    let client = writing_client(&cluster);
    const EACH: u64 = 30;
    let before = client.kv().get("w").expect("get").header().revision();
    let start = Arc::new(Barrier::new(READERS));
    let writers: Vec<_> = (0..READERS)
        .map(|w| {
            let (client, start) = (client.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for n in 1..=EACH {
                    let put = client
                        .kv()
                        .put_with(format!("w/{w}"), n.to_string(), PutOptions::new().prev_kv())
                        .expect("put");
                    let prev = put
                        .prev_kv()
                        .map(|kv| kv.value_str().expect("text").to_owned());
                    let expected = (n > 1).then(|| (n - 1).to_string());
                    assert_eq!(prev, expected, "w/{w}: the previous value");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let got = client
        .kv()
        .get_with("w/", GetOptions::new().prefix())
        .expect("get");
    assert_eq!(got.kvs().len(), READERS);
    for kv in got.kvs() {
        assert_eq!(
            kv.value_str().expect("text"),
            EACH.to_string(),
            "the last put"
        );
        assert_eq!(kv.version(), EACH as i64, "one version per put");
    }
    let stats = client.coalesced_writes();
    let puts = READERS as i64 * EACH as i64;
    let revisions = got.header().revision() - before;
    assert!(stats.batches > 0, "{stats:?}");
    assert!(
        revisions < puts,
        "{puts} puts took {revisions} revisions: {stats:?}"
    );
    eprintln!("{puts} puts in {revisions} revisions; {stats:?}");
}

/// Writes of one key never share a batch (etcd refuses a transaction that writes a key
/// twice): 32 threads putting one key all succeed; a put the server refuses (a lease
/// that does not exist) fails only its own caller; deletes of one key go in batches.
#[test]
fn one_key_never_twice_in_a_batch_and_a_refused_write_fails_alone() {
    let cluster = common::cluster(1);
    let client = writing_client(&cluster);
    let start = Arc::new(Barrier::new(33));
    let same: Vec<_> = (0..32)
        .map(|_| {
            let (client, start) = (client.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for _ in 0..20 {
                    client
                        .kv()
                        .put("same", "v")
                        .expect("a put of the shared key");
                }
            })
        })
        .collect();
    start.wait();
    for t in same {
        t.join().expect("writer");
    }
    assert_eq!(
        client
            .kv()
            .get_one("same")
            .expect("get")
            .expect("the key")
            .version(),
        32 * 20
    );
    for _round in 0..20 {
        let start = Arc::new(Barrier::new(17));
        let good: Vec<_> = (0..16)
            .map(|t| {
                let (client, start) = (client.clone(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    for n in 0..10 {
                        client.kv().put(format!("g/{t}/{n}"), "v").expect("put");
                        client.kv().delete(format!("g/{t}/{n}")).expect("delete");
                    }
                })
            })
            .collect();
        start.wait();
        for n in 0..10 {
            let err = client
                .kv()
                .put_with(format!("leased/{n}"), "v", PutOptions::new().lease(0x7e57))
                .expect_err("a lease that does not exist");
            assert_eq!(err.code(), Some(ServerCode::LeaseNotFound), "{err}");
        }
        for t in good {
            t.join().expect("writer");
        }
        assert_eq!(
            client
                .kv()
                .get_with("g/", GetOptions::new().prefix().count_only())
                .expect("count")
                .count(),
            0,
            "every put deleted"
        );
        if client.coalesced_writes().failed > 0 {
            return;
        }
    }
    panic!(
        "no refused write was ever coalesced with others: {:?}",
        client.coalesced_writes()
    );
}
