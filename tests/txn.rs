//! Transactions against a real etcd: each compare target and relation, range compares,
//! both branches, every operation kind, nesting.

mod common;

use std::time::Duration;

use common::{client, cluster, keys};
use etcd_blocking::{Compare, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};

/// Runs `compare` in a transaction and says which branch ran.
fn holds(kv: &etcd_blocking::Kv, compare: Compare) -> bool {
    kv.txn(Txn::new().when([compare])).expect("txn").succeeded()
}

#[test]
fn value_compares_with_every_relation() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    kv.put("k", "m").expect("put");
    assert!(holds(&kv, Compare::value("k").eq("m")));
    assert!(!holds(&kv, Compare::value("k").eq("n")));
    assert!(holds(&kv, Compare::value("k").ne("n")));
    assert!(!holds(&kv, Compare::value("k").ne("m")));
    assert!(holds(&kv, Compare::value("k").lt("n")));
    assert!(!holds(&kv, Compare::value("k").lt("m")));
    assert!(holds(&kv, Compare::value("k").gt("a")));
    assert!(!holds(&kv, Compare::value("k").gt("z")));
}

#[test]
fn version_create_and_mod_revision_compares() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    assert!(
        holds(&kv, Compare::version("k").eq(0)),
        "a missing key has version 0"
    );
    let created = kv.put("k", "1").expect("put").header().revision();
    let modified = kv.put("k", "2").expect("put").header().revision();
    assert!(holds(&kv, Compare::version("k").eq(2)));
    assert!(holds(&kv, Compare::version("k").gt(1)));
    assert!(holds(&kv, Compare::version("k").lt(3)));
    assert!(holds(&kv, Compare::version("k").ne(1)));
    assert!(holds(&kv, Compare::create_revision("k").eq(created)));
    assert!(!holds(&kv, Compare::create_revision("k").eq(modified)));
    assert!(holds(&kv, Compare::mod_revision("k").eq(modified)));
    assert!(holds(&kv, Compare::mod_revision("k").gt(created)));
    assert!(holds(&kv, Compare::mod_revision("k").lt(modified + 1)));
}

#[test]
fn lease_compares() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let kv = client.kv();
    let lease = client
        .lease()
        .grant(Duration::from_secs(60))
        .expect("grant")
        .id();
    kv.put_with("k", "v", PutOptions::new().lease(lease))
        .expect("put");
    kv.put("plain", "v").expect("put");
    assert!(holds(&kv, Compare::lease("k").eq(lease)));
    assert!(holds(&kv, Compare::lease("plain").eq(0)));
    assert!(holds(&kv, Compare::lease("plain").ne(lease)));
}

#[test]
fn compares_over_a_prefix_and_a_range_hold_for_every_key() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    kv.put("p/1", "a").expect("put");
    kv.put("p/2", "a").expect("put");
    kv.put("q", "b").expect("put");
    assert!(holds(&kv, Compare::value("p/").eq("a").prefix()));
    kv.put("p/3", "c").expect("put");
    assert!(!holds(&kv, Compare::value("p/").eq("a").prefix()));
    assert!(holds(&kv, Compare::value("p/1").eq("a").range_end("p/3")));
    assert!(holds(&kv, Compare::version("p/").gt(0).prefix()));
    assert!(!holds(&kv, Compare::value("p/").eq("a").from_key()));
}

#[test]
fn success_and_failure_branches_run_their_operations_in_order() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let create = || {
        Txn::new()
            .when([Compare::version("lock").eq(0)])
            .and_then([TxnOp::put("lock", "me"), TxnOp::get("lock")])
            .or_else([TxnOp::get("lock")])
    };
    let first = kv.txn(create()).expect("txn");
    assert!(first.succeeded());
    let rev = first.header().revision();
    match first.responses() {
        [TxnOpResponse::Put(put), TxnOpResponse::Get(get)] => {
            assert_eq!(put.header().revision(), rev);
            assert_eq!(get.first().map(|kv| kv.value()), Some(&b"me"[..]));
        }
        other => panic!("unexpected responses {other:?}"),
    }
    let second = kv.txn(create()).expect("txn");
    assert!(!second.succeeded());
    assert_eq!(second.responses().len(), 1);
    let get = second.responses()[0].as_get().expect("a get");
    assert_eq!(get.first().map(|kv| kv.mod_revision()), Some(rev));
}

#[test]
fn every_operation_kind_with_options() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    kv.put("d/1", "x").expect("put");
    kv.put("d/2", "y").expect("put");
    let response = kv
        .txn(Txn::new().and_then([
            TxnOp::put_with("n", "1", PutOptions::new().prev_kv()),
            TxnOp::get_with("d/", GetOptions::new().prefix().keys_only()),
            TxnOp::delete_with("d/", DeleteOptions::new().prefix().prev_kv()),
            TxnOp::delete("never-there"),
        ]))
        .expect("txn");
    assert!(response.succeeded(), "no comparison: success");
    let ops = response.into_responses();
    assert!(ops[0].as_put().is_some_and(|p| p.prev_kv().is_none()));
    let get = ops[1].as_get().expect("get");
    assert_eq!(keys(get), ["d/1", "d/2"]);
    assert!(get.kvs().iter().all(|kv| kv.value().is_empty()));
    let delete = ops[2].as_delete().expect("delete");
    assert_eq!(delete.deleted(), 2);
    assert_eq!(delete.prev_kvs().len(), 2);
    assert_eq!(ops[3].as_delete().map(|d| d.deleted()), Some(0));
}

#[test]
fn nested_transactions_run_their_own_branch() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    kv.put("flag", "on").expect("put");
    let inner = Txn::new()
        .when([Compare::value("flag").eq("off")])
        .and_then([TxnOp::put("inner", "success")])
        .or_else([TxnOp::put("inner", "failure")]);
    let outer = kv
        .txn(
            Txn::new()
                .when([Compare::value("flag").eq("on")])
                .and_then([TxnOp::txn(inner)]),
        )
        .expect("txn");
    assert!(outer.succeeded());
    let nested = outer.responses()[0].as_txn().expect("a nested txn");
    assert!(!nested.succeeded());
    assert!(nested.responses()[0].as_put().is_some());
    assert_eq!(
        kv.get("inner")
            .expect("get")
            .first()
            .map(|kv| kv.value().to_vec()),
        Some(b"failure".to_vec())
    );
}

#[test]
fn a_failed_guard_writes_nothing() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let before = kv.put("counter", "1").expect("put").header().revision();
    let response = kv
        .txn(
            Txn::new()
                .when([Compare::mod_revision("counter").eq(before - 1)])
                .and_then([TxnOp::put("counter", "2")]),
        )
        .expect("txn");
    assert!(!response.succeeded());
    assert!(response.responses().is_empty());
    assert_eq!(response.header().revision(), before, "nothing was written");
    let value = kv.get("counter").expect("get");
    assert_eq!(value.first().map(|kv| kv.value()), Some(&b"1"[..]));
}
