//! `concurrency::txn_settled`: a transaction applied exactly once, whether its answer was
//! lost (found applied, with the branch it ran) or it never went (sealed, then resent).

mod common;

use common::{client, cluster};
use etcd_blocking::concurrency::{txn_settled, txn_settled_with_faults, CommitFault};
use etcd_blocking::{Compare, GetOptions, Kv, Txn, TxnOp};

const FENCES: &str = "__etcd-blocking/fence/";

/// Creates `key` with "1" if it does not exist; else puts "else" at `key`-else.
fn create(key: &str) -> Txn {
    Txn::new()
        .when([Compare::version(key).eq(0)])
        .and_then([TxnOp::put(key, "1")])
        .or_else([TxnOp::put(format!("{key}-else"), "else")])
}

fn version(kv: &Kv, key: &str) -> i64 {
    kv.get_one(key).expect("get").map_or(0, |kv| kv.version())
}

fn fences(kv: &Kv) -> Vec<String> {
    kv.get_with(FENCES, GetOptions::new().prefix())
        .expect("fences")
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        .collect()
}

#[test]
fn answered_tries_say_their_branch_and_leave_no_fence() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let first = txn_settled(&kv, create("a")).expect("settled");
    assert!(first.succeeded());
    assert_eq!(first.tries(), 1);
    assert!(first.response().is_some_and(|r| r.succeeded()));
    let second = txn_settled(&kv, create("a")).expect("settled");
    assert!(
        !second.succeeded(),
        "the key exists: the failure branch ran"
    );
    assert_eq!(version(&kv, "a-else"), 1);
    assert_eq!(version(&kv, "a"), 1);
    assert!(fences(&kv).is_empty(), "{:?}", fences(&kv));
}

#[test]
fn a_try_whose_answer_was_lost_is_found_applied_and_not_resent() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let settled =
        txn_settled_with_faults(&kv, create("b"), [CommitFault::AnswerLost]).expect("settled");
    // A plain resend would find the key there and run the failure branch.
    assert!(settled.succeeded(), "the lost try was the one applied");
    assert_eq!(settled.tries(), 1);
    assert!(settled.response().is_none(), "its answer is gone");
    assert_eq!(version(&kv, "b"), 1);
    assert_eq!(version(&kv, "b-else"), 0, "nothing ran twice");
    assert!(fences(&kv).is_empty(), "{:?}", fences(&kv));
    // The failure branch, lost the same way, is found too.
    let settled =
        txn_settled_with_faults(&kv, create("b"), [CommitFault::AnswerLost]).expect("settled");
    assert!(!settled.succeeded());
    assert_eq!(version(&kv, "b-else"), 1);
}

#[test]
fn a_try_that_never_went_is_sealed_then_resent_once() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let settled = txn_settled_with_faults(
        &kv,
        create("c"),
        [CommitFault::NotSent, CommitFault::NotSent],
    )
    .expect("settled");
    assert!(settled.succeeded());
    assert_eq!(settled.tries(), 3);
    assert!(settled.response().is_some());
    assert_eq!(version(&kv, "c"), 1);
    // The sealed fences stay: no copy of those tries can ever be applied.
    assert_eq!(fences(&kv), ["sealed", "sealed"]);
}
