//! Every KV feature against a real etcd: get with each Range option, put, delete, compact.

mod common;

use std::time::Duration;

use common::{client, cluster, keys, values};
use etcd_blocking::{
    CompactOptions, DeleteOptions, GetOptions, PutOptions, ServerCode, SortOrder, SortTarget,
};

#[test]
fn put_then_get_returns_the_value_and_its_metadata() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let put = kv.put("greeting", "hello").expect("put");
    let rev = put.header().revision();
    assert!(rev > 1, "a put advances the revision past 1, got {rev}");
    assert_ne!(put.header().cluster_id(), 0);
    assert_ne!(put.header().member_id(), 0);
    assert!(put.header().raft_term() > 0);

    let got = kv.get("greeting").expect("get");
    assert_eq!(got.count(), 1);
    let item = got.first().expect("the key exists");
    assert_eq!(item.key(), b"greeting");
    assert_eq!(item.value_str().ok(), Some("hello"));
    assert_eq!(item.create_revision(), rev);
    assert_eq!(item.mod_revision(), rev);
    assert_eq!(item.version(), 1);
    assert_eq!(item.lease(), 0);
    assert_eq!(got.header().revision(), rev);

    let again = kv.put("greeting", "hi").expect("second put");
    let item = kv.get("greeting").expect("get").into_kvs().remove(0);
    assert_eq!(item.version(), 2);
    assert_eq!(item.create_revision(), rev);
    assert_eq!(item.mod_revision(), again.header().revision());
}

#[test]
fn keys_and_values_are_bytes_of_any_kind() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let binary_key: Vec<u8> = vec![0, 0xff, 7];
    kv.put(binary_key.clone(), &b"\x00\x01"[..])
        .expect("put bytes");
    kv.put(String::from("s"), String::from("v"))
        .expect("put strings");
    kv.put(b"lit", b"eral").expect("put literals");
    let got = kv.get(&binary_key[..]).expect("get bytes");
    assert_eq!(got.first().map(|kv| kv.value()), Some(&b"\x00\x01"[..]));
    assert_eq!(values(&kv.get("s").expect("get")), ["v"]);
    assert_eq!(values(&kv.get(b"lit").expect("get")), ["eral"]);
}

#[test]
fn get_of_a_missing_key_is_empty() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let got = kv.get("nothing-here").expect("get");
    assert!(got.kvs().is_empty());
    assert_eq!(got.count(), 0);
    assert!(got.first().is_none());
    assert!(!got.more());
}

/// Puts `a`, `app/1`, `app/2`, `app/3`, `b`, `c` and returns the revision of each put.
fn fill(kv: &etcd_blocking::Kv) -> Vec<i64> {
    ["a", "app/1", "app/2", "app/3", "b", "c"]
        .iter()
        .map(|k| {
            kv.put(*k, format!("v-{k}"))
                .expect("put")
                .header()
                .revision()
        })
        .collect()
}

#[test]
fn get_ranges_prefix_range_end_from_key_and_all() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    fill(&kv);
    let prefix = kv
        .get_with("app/", GetOptions::new().prefix())
        .expect("prefix");
    assert_eq!(keys(&prefix), ["app/1", "app/2", "app/3"]);
    let range = kv
        .get_with("app/2", GetOptions::new().range_end("b"))
        .expect("range");
    assert_eq!(keys(&range), ["app/2", "app/3"]);
    let from = kv
        .get_with("b", GetOptions::new().from_key())
        .expect("from key");
    assert_eq!(keys(&from), ["b", "c"]);
    let all = kv.get_with("", GetOptions::new().prefix()).expect("all");
    assert_eq!(keys(&all), ["a", "app/1", "app/2", "app/3", "b", "c"]);
    let all = kv
        .get_with("", GetOptions::new().from_key())
        .expect("all from key");
    assert_eq!(all.count(), 6);
}

#[test]
fn get_with_a_limit_says_there_is_more_and_counts_all() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    fill(&kv);
    let page = kv
        .get_with("", GetOptions::new().prefix().limit(2))
        .expect("page");
    assert_eq!(keys(&page), ["a", "app/1"]);
    assert!(page.more());
    assert_eq!(page.count(), 6);
    let whole = kv
        .get_with("", GetOptions::new().prefix().limit(6))
        .expect("whole");
    assert!(!whole.more());
}

#[test]
fn get_at_a_revision_sees_the_past() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let first = kv.put("k", "old").expect("put").header().revision();
    kv.put("k", "new").expect("put");
    let past = kv
        .get_with("k", GetOptions::new().revision(first))
        .expect("get at rev");
    assert_eq!(values(&past), ["old"]);
    assert_eq!(values(&kv.get("k").expect("get")), ["new"]);
}

#[test]
fn get_sorts_by_every_target_in_both_orders() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    // Created in the order z, y, x; values in the order 1, 3, 2; y written twice.
    kv.put("s/z", "1").expect("put");
    kv.put("s/y", "3").expect("put");
    kv.put("s/x", "2").expect("put");
    kv.put("s/y", "3").expect("put");
    let sorted = |target, order| {
        keys(
            &kv.get_with("s/", GetOptions::new().prefix().sort(target, order))
                .expect("get"),
        )
    };
    assert_eq!(
        sorted(SortTarget::Key, SortOrder::Ascend),
        ["s/x", "s/y", "s/z"]
    );
    assert_eq!(
        sorted(SortTarget::Key, SortOrder::Descend),
        ["s/z", "s/y", "s/x"]
    );
    assert_eq!(
        sorted(SortTarget::CreateRevision, SortOrder::Ascend),
        ["s/z", "s/y", "s/x"]
    );
    assert_eq!(
        sorted(SortTarget::CreateRevision, SortOrder::Descend),
        ["s/x", "s/y", "s/z"]
    );
    assert_eq!(
        sorted(SortTarget::ModRevision, SortOrder::Descend),
        ["s/y", "s/x", "s/z"]
    );
    assert_eq!(
        sorted(SortTarget::Value, SortOrder::Ascend),
        ["s/z", "s/x", "s/y"]
    );
    assert_eq!(sorted(SortTarget::Version, SortOrder::Descend)[0], "s/y");
    assert_eq!(
        sorted(SortTarget::Key, SortOrder::None),
        ["s/x", "s/y", "s/z"]
    );
}

#[test]
fn get_serializable_keys_only_and_count_only() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    fill(&kv);
    let serial = kv
        .get_with("app/", GetOptions::new().prefix().serializable())
        .expect("get");
    assert_eq!(keys(&serial), ["app/1", "app/2", "app/3"]);
    let keys_only = kv
        .get_with("app/", GetOptions::new().prefix().keys_only())
        .expect("get");
    assert_eq!(keys(&keys_only), ["app/1", "app/2", "app/3"]);
    assert!(keys_only.kvs().iter().all(|kv| kv.value().is_empty()));
    let count = kv
        .get_with("app/", GetOptions::new().prefix().count_only())
        .expect("get");
    assert!(count.kvs().is_empty());
    assert_eq!(count.count(), 3);
}

#[test]
fn get_filters_on_mod_and_create_revisions() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let revs = fill(&kv); // a, app/1, app/2, app/3, b, c
    kv.put("a", "again").expect("put"); // a's mod revision moves past every other
    let all = || GetOptions::new().prefix();
    let got = kv
        .get_with("", all().min_mod_revision(revs[4]))
        .expect("get");
    assert_eq!(keys(&got), ["a", "b", "c"]);
    let got = kv
        .get_with("", all().max_mod_revision(revs[2]))
        .expect("get");
    assert_eq!(keys(&got), ["app/1", "app/2"]);
    let got = kv
        .get_with("", all().min_create_revision(revs[3]))
        .expect("get");
    assert_eq!(keys(&got), ["app/3", "b", "c"]);
    let got = kv
        .get_with("", all().max_create_revision(revs[1]))
        .expect("get");
    assert_eq!(keys(&got), ["a", "app/1"]);
}

#[test]
fn put_returns_the_previous_key_value_when_asked() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let first = kv
        .put_with("k", "1", PutOptions::new().prev_kv())
        .expect("put");
    assert!(first.prev_kv().is_none(), "no previous value for a new key");
    let second = kv
        .put_with("k", "2", PutOptions::new().prev_kv())
        .expect("put");
    assert_eq!(second.prev_kv().map(|kv| kv.value()), Some(&b"1"[..]));
    let third = kv.put("k", "3").expect("put");
    assert!(third.prev_kv().is_none(), "not asked for");
}

#[test]
fn put_with_a_lease_attaches_the_key_and_revoke_removes_it() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let kv = client.kv();
    let lease = client
        .lease()
        .grant(Duration::from_secs(60))
        .expect("grant");
    assert!(lease.id() > 0);
    assert_eq!(lease.ttl(), Duration::from_secs(60));
    kv.put_with("leased", "v", PutOptions::new().lease(lease.id()))
        .expect("put");
    assert_eq!(
        kv.get("leased").expect("get").first().map(|kv| kv.lease()),
        Some(lease.id())
    );
    let ttl = client
        .lease()
        .time_to_live_with_keys(lease.id())
        .expect("ttl");
    assert_eq!(ttl.keys(), [b"leased".to_vec()]);
    assert!(ttl.ttl().is_some_and(|t| !t.is_zero()));
    assert_eq!(ttl.granted_ttl(), Duration::from_secs(60));
    client.lease().revoke(lease.id()).expect("revoke");
    assert!(kv.get("leased").expect("get").kvs().is_empty());
}

#[test]
fn put_with_ignore_value_and_ignore_lease_keeps_them() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let kv = client.kv();
    let lease = client
        .lease()
        .grant(Duration::from_secs(60))
        .expect("grant")
        .id();
    kv.put_with("k", "kept", PutOptions::new().lease(lease))
        .expect("put");
    kv.put_with("k", "", PutOptions::new().ignore_value())
        .expect("ignore value");
    let item = kv.get("k").expect("get").into_kvs().remove(0);
    assert_eq!(item.value(), b"kept");
    assert_eq!(
        item.lease(),
        0,
        "a put without ignore_lease detaches the lease"
    );

    kv.put_with("k", "v", PutOptions::new().lease(lease))
        .expect("put");
    kv.put_with("k", "new", PutOptions::new().ignore_lease())
        .expect("ignore lease");
    let item = kv.get("k").expect("get").into_kvs().remove(0);
    assert_eq!((item.value(), item.lease()), (&b"new"[..], lease));

    let missing = kv.put_with("missing", "", PutOptions::new().ignore_value());
    assert_eq!(
        missing.err().and_then(|e| e.code()),
        Some(ServerCode::KeyNotFound)
    );
    let both = kv.put_with("k", "x", PutOptions::new().ignore_value());
    assert_eq!(
        both.err().and_then(|e| e.code()),
        Some(ServerCode::ValueProvided)
    );
}

#[test]
fn delete_one_prefix_range_and_from_key_with_prev_kvs() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    fill(&kv);
    let one = kv.delete("a").expect("delete");
    assert_eq!(one.deleted(), 1);
    assert!(one.prev_kvs().is_empty(), "not asked for");
    assert_eq!(kv.delete("a").expect("delete again").deleted(), 0);

    let prefix = kv
        .delete_with("app/", DeleteOptions::new().prefix().prev_kv())
        .expect("delete prefix");
    assert_eq!(prefix.deleted(), 3);
    let old: Vec<&[u8]> = prefix.prev_kvs().iter().map(|kv| kv.value()).collect();
    assert_eq!(old, [&b"v-app/1"[..], b"v-app/2", b"v-app/3"]);

    fill(&kv);
    let range = kv
        .delete_with("app/2", DeleteOptions::new().range_end("b"))
        .expect("range");
    assert_eq!(range.deleted(), 2);
    let from = kv
        .delete_with("b", DeleteOptions::new().from_key())
        .expect("from key");
    assert_eq!(from.deleted(), 2);
    let left = kv.get_with("", GetOptions::new().prefix()).expect("get");
    assert_eq!(keys(&left), ["a", "app/1"]);
    let all = kv
        .delete_with("", DeleteOptions::new().prefix())
        .expect("all");
    assert_eq!(all.deleted(), 2);
}

#[test]
fn compact_removes_history_before_the_revision() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let first = kv.put("k", "1").expect("put").header().revision();
    let second = kv.put("k", "2").expect("put").header().revision();
    kv.put("k", "3").expect("put");
    kv.compact(second).expect("compact");
    let old = kv.get_with("k", GetOptions::new().revision(first));
    assert_eq!(
        old.err().and_then(|e| e.code()),
        Some(ServerCode::Compacted)
    );
    let at = kv
        .get_with("k", GetOptions::new().revision(second))
        .expect("at compaction");
    assert_eq!(values(&at), ["2"]);

    let latest = kv.put("k", "4").expect("put").header().revision();
    kv.compact_with(latest, CompactOptions::new().physical())
        .expect("physical");
    let old = kv.get_with("k", GetOptions::new().revision(second));
    assert_eq!(
        old.err().and_then(|e| e.code()),
        Some(ServerCode::Compacted)
    );
    let again = kv.compact(second);
    assert_eq!(
        again.err().and_then(|e| e.code()),
        Some(ServerCode::Compacted)
    );
}
