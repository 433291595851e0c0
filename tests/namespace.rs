//! Namespaced views against real etcd: every API with keys sees only the keys under its
//! prefix, stripped, and touches nothing outside it, the keys at the prefix's edges
//! included (the prefix itself, the byte before its end, the key just past it).

mod common;

use std::time::Duration;

use etcd_blocking::concurrency::{Mutex, Session};
use etcd_blocking::{
    Client, Compare, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};

/// Keys outside `ns/` that sit at its edges, and keys inside it.
const OUTSIDE: [&[u8]; 5] = [b"ns", b"ns/", b"ns.", b"ns0", b"nr\xff"];
const INSIDE: [&[u8]; 4] = [b"ns/a", b"ns/b", b"ns/\xff", b"ns/\xff\xff"];

fn keys(kvs: &[etcd_blocking::KeyValue]) -> Vec<Vec<u8>> {
    kvs.iter().map(|kv| kv.key().to_vec()).collect()
}

fn fill(root: &Client) {
    for key in OUTSIDE.iter().chain(INSIDE.iter()) {
        root.kv().put(*key, "v").expect("put");
    }
}

/// What the root sees outside the namespace: unchanged by anything the view did.
fn outside_untouched(root: &Client) {
    for key in OUTSIDE {
        let got = root.kv().get(key).expect("get");
        assert_eq!(got.count(), 1, "{key:?} is still there");
        assert_eq!(got.kvs()[0].version(), 1, "{key:?} was never written again");
    }
}

#[test]
fn kv_ranges_stay_inside_the_prefix_and_keys_come_back_stripped() {
    let cluster = common::cluster(1);
    let root = cluster.client().expect("client");
    fill(&root);
    let view = root.namespaced("ns/");
    assert_eq!(view.namespace(), b"ns/");
    let inside: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        b"b".to_vec(),
        b"\xff".to_vec(),
        b"\xff\xff".to_vec(),
    ];
    let every = view
        .kv()
        .get_with("", GetOptions::new().prefix())
        .expect("every key");
    assert_eq!(
        keys(every.kvs()),
        inside,
        "every key of the view, and only those"
    );
    let from = view
        .kv()
        .get_with("", GetOptions::new().from_key())
        .expect("from the first key");
    assert_eq!(keys(from.kvs()), inside);
    let from_b = view
        .kv()
        .get_with("b", GetOptions::new().from_key())
        .expect("from b");
    assert_eq!(
        keys(from_b.kvs()),
        inside[1..].to_vec(),
        "to the prefix's end, not further"
    );
    let high = view
        .kv()
        .get_with(b"\xff".to_vec(), GetOptions::new().prefix())
        .expect("the prefix 0xff");
    assert_eq!(keys(high.kvs()), inside[2..].to_vec());
    let ranged = view
        .kv()
        .get_with("a", GetOptions::new().range_end(b"\xff".to_vec()))
        .expect("a range");
    assert_eq!(keys(ranged.kvs()), inside[..2].to_vec());
    assert_eq!(view.kv().get("a").expect("get").kvs()[0].key(), b"a");
    // Writes land under the prefix; previous values come back stripped.
    let put = view
        .kv()
        .put_with("a", "w", PutOptions::new().prev_kv())
        .expect("put");
    assert_eq!(put.prev_kv().expect("the previous value").key(), b"a");
    assert_eq!(root.kv().get("ns/a").expect("get").kvs()[0].value(), b"w");
    let deleted = view
        .kv()
        .delete_with("", DeleteOptions::new().prefix().prev_kv())
        .expect("delete every key");
    assert_eq!(deleted.deleted(), 4);
    assert_eq!(keys(deleted.prev_kvs()), inside);
    outside_untouched(&root);
    // A view of a view nests.
    root.namespaced("ns/")
        .namespaced("in/")
        .kv()
        .put("k", "v")
        .expect("nested put");
    assert_eq!(root.kv().get("ns/in/k").expect("get").count(), 1);
}

#[test]
fn transactions_compare_and_answer_inside_the_prefix_all_the_way_down() {
    let cluster = common::cluster(1);
    let root = cluster.client().expect("client");
    fill(&root);
    let view = root.namespaced("ns/");
    let nested = Txn::new().and_then([TxnOp::put("z", "v"), TxnOp::get("a")]);
    let r = view
        .kv()
        .txn(
            Txn::new()
                .when([Compare::value("a").eq("v"), Compare::version("ns").eq(0)])
                .and_then([
                    TxnOp::get_with("", GetOptions::new().prefix()),
                    TxnOp::put_with("y", "v", PutOptions::new()),
                    TxnOp::txn(nested),
                ]),
        )
        .expect("txn");
    // "ns" compared inside the view is ns/ns, which does not exist; the root's ns does.
    assert!(r.succeeded(), "the compares saw the view's keys");
    let TxnOpResponse::Get(every) = &r.responses()[0] else {
        panic!("a get's answer");
    };
    assert_eq!(keys(every.kvs()).len(), 4);
    assert!(keys(every.kvs()).iter().all(|k| !k.starts_with(b"ns/")));
    let TxnOpResponse::Txn(inner) = &r.responses()[2] else {
        panic!("the nested txn's answer");
    };
    let TxnOpResponse::Get(a) = &inner.responses()[1] else {
        panic!("the nested get's answer");
    };
    assert_eq!(a.kvs()[0].key(), b"a");
    for key in ["ns/y", "ns/z"] {
        assert_eq!(root.kv().get(key).expect("get").count(), 1, "{key}");
    }
    outside_untouched(&root);
}

#[test]
fn watches_deliver_only_the_views_keys_stripped_even_when_shared() {
    let cluster = common::cluster(1);
    let root = cluster.client().expect("client");
    let view = root.namespaced("ns/");
    let everything = view
        .watch()
        .watch_with("", WatchOptions::new().prefix().prev_kv())
        .expect("watch the view");
    everything.created_revision().expect("created");
    // The root's watch of the same range, [ns/\0, ns0), shares the server watch; it sees
    // full keys.
    let shared = root
        .watch()
        .watch_with(b"ns/\0".to_vec(), WatchOptions::new().range_end("ns0"))
        .expect("watch the view's range");
    shared.created_revision().expect("created");
    let plain = view
        .watch()
        .watch_with("", WatchOptions::new().prefix())
        .expect("watch the view without previous values");
    plain.created_revision().expect("created");
    for key in OUTSIDE {
        root.kv().put(key, "v").expect("put outside");
    }
    root.kv().put("ns/w", "1").expect("put inside");
    root.kv().put("ns/w", "2").expect("put inside again");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        for event in common::next_events(&everything).events() {
            let prev = event.prev_kv().map(|p| p.key().to_vec());
            seen.push((event.kv().key().to_vec(), prev));
        }
    }
    assert_eq!(
        seen,
        [(b"w".to_vec(), None), (b"w".to_vec(), Some(b"w".to_vec()))],
        "only the view's keys, stripped, previous values too"
    );
    // One server watch for both (same range, same flags): each watcher gets its keys.
    let root_seen = common::next_events(&shared);
    assert_eq!(root_seen.events()[0].kv().key(), b"ns/w");
    let view_seen = common::next_events(&plain);
    assert_eq!(view_seen.events()[0].kv().key(), b"w");
}

#[test]
fn leases_locks_elections_and_recipes_live_under_the_prefix() {
    let cluster = common::cluster(1);
    let root = cluster.client().expect("client");
    let view = root.namespaced("ns/");
    let lease = view.lease().grant(Duration::from_secs(30)).expect("grant");
    view.kv()
        .put_with("l", "v", PutOptions::new().lease(lease.id()))
        .expect("put with the lease");
    root.kv()
        .put_with("elsewhere", "v", PutOptions::new().lease(lease.id()))
        .expect("a key outside with the same lease");
    let ttl = view
        .lease()
        .time_to_live_with_keys(lease.id())
        .expect("ttl");
    assert_eq!(
        ttl.keys(),
        [b"l".to_vec()],
        "only the view's keys, stripped"
    );

    let locks = view.lock_service();
    let held = locks.lock("L", lease.id()).expect("lock");
    assert!(held.key().starts_with(b"L/"), "{:?}", held.key());
    let mut full = b"ns/".to_vec();
    full.extend_from_slice(held.key());
    assert_eq!(root.kv().get(full).expect("get").count(), 1);
    locks.unlock(&held).expect("unlock by the stripped key");

    let elections = view.election_service();
    let leader = elections.campaign("E", lease.id(), "me").expect("campaign");
    assert!(leader.key().starts_with(b"E/"));
    assert_eq!(leader.name(), b"E");
    elections.proclaim(&leader, "still me").expect("proclaim");
    let now = elections
        .leader("E")
        .expect("leader")
        .expect("someone leads");
    assert_eq!(now.key(), leader.key());
    assert_eq!(now.value(), b"still me");
    elections.resign(&leader).expect("resign");

    let session = Session::new(&view, Duration::from_secs(30)).expect("session");
    let mutex = Mutex::new(&session, "m/").expect("mutex");
    let guard = mutex.lock(Duration::from_secs(5)).expect("lock the mutex");
    assert!(guard.key().starts_with(b"m/"), "{:?}", guard.key());
    let under = root
        .kv()
        .get_with("ns/m/", GetOptions::new().prefix())
        .expect("get");
    assert_eq!(
        under.count(),
        1,
        "the mutex's key is under the view's prefix"
    );
    drop(guard);
}
