//! Watches against real etcd, the API: what a watcher receives (order, atomic revisions,
//! prev_kv, filters, history and compaction, fragments, progress), bad input, slow
//! consumers, cancel and drop, and watchers sharing one server watch.

mod common;

use std::time::{Duration, Instant};

use common::{client, cluster, next_events};
use etcd_blocking::testing::Cluster;
use etcd_blocking::{Client, Error, EventKind, Txn, TxnOp, WatchOptions, WatchResponse, Watcher};

/// How long a test waits for a response it expects.
const WAIT: Duration = Duration::from_secs(10);

/// (kind, key, value, revision) of each event of a response.
fn summary(response: &WatchResponse) -> Vec<(EventKind, String, String, i64)> {
    response
        .events()
        .iter()
        .map(|e| {
            (
                e.kind(),
                String::from_utf8_lossy(e.kv().key()).into_owned(),
                String::from_utf8_lossy(e.kv().value()).into_owned(),
                e.revision(),
            )
        })
        .collect()
}

#[test]
fn a_prefix_watch_receives_every_change_in_order_one_revision_per_response() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let kv = client.kv();
    let watcher = client
        .watch()
        .watch_with("w/", WatchOptions::new().prefix().prev_kv())
        .expect("watch");
    let created = watcher.created_revision().expect("created");
    let r1 = kv.put("w/a", "1").expect("put").header().revision();
    let r2 = kv.put("w/a", "2").expect("put").header().revision();
    let r3 = kv.delete("w/a").expect("delete").header().revision();
    let r4 = kv
        .txn(Txn::new().and_then([TxnOp::put("w/b", "x"), TxnOp::put("w/c", "y")]))
        .expect("txn")
        .header()
        .revision();
    kv.put("other", "not watched").expect("put");
    assert!(created < r1, "{created} < {r1}");
    use EventKind::{Delete, Put};
    let s = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let first = next_events(&watcher);
    assert_eq!(
        summary(&first),
        vec![(Put, s("w/a", "1").0, "1".into(), r1)]
    );
    assert_eq!(first.events()[0].prev_kv(), None, "the key was new");
    let second = next_events(&watcher);
    assert_eq!(summary(&second), vec![(Put, "w/a".into(), "2".into(), r2)]);
    assert_eq!(
        second.events()[0].prev_kv().map(|p| p.value().to_vec()),
        Some(b"1".to_vec())
    );
    let third = next_events(&watcher);
    assert_eq!(
        summary(&third),
        vec![(Delete, "w/a".into(), String::new(), r3)]
    );
    assert_eq!(
        third.events()[0].prev_kv().map(|p| p.value().to_vec()),
        Some(b"2".to_vec())
    );
    // Both puts of the transaction, in one response.
    let fourth = next_events(&watcher);
    assert_eq!(
        summary(&fourth),
        vec![
            (Put, "w/b".into(), "x".into(), r4),
            (Put, "w/c".into(), "y".into(), r4)
        ]
    );
    assert_eq!(watcher.try_recv().expect("open"), None, "nothing else");
}

#[test]
fn filters_leave_out_puts_or_deletes() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let kv = client.kv();
    let watch = client.watch();
    let no_put = watch
        .watch_with("f", WatchOptions::new().no_put())
        .expect("watch");
    let no_delete = watch
        .watch_with("f", WatchOptions::new().no_delete())
        .expect("watch");
    no_put.created_revision().expect("created");
    no_delete.created_revision().expect("created");
    let put = kv.put("f", "v").expect("put").header().revision();
    let delete = kv.delete("f").expect("delete").header().revision();
    let only_delete = next_events(&no_put);
    assert_eq!(only_delete.events().len(), 1);
    assert_eq!(only_delete.events()[0].kind(), EventKind::Delete);
    assert_eq!(only_delete.events()[0].revision(), delete);
    let only_put = next_events(&no_delete);
    assert_eq!(only_put.events().len(), 1);
    assert_eq!(only_put.events()[0].kind(), EventKind::Put);
    assert_eq!(only_put.events()[0].revision(), put);
}

#[test]
fn a_start_revision_replays_history_and_a_compacted_one_ends_the_watch() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let kv = client.kv();
    let revisions: Vec<i64> = (0..5)
        .map(|i| kv.put("h", i.to_string()).expect("put").header().revision())
        .collect();
    let watch = client.watch();
    let replay = watch
        .watch_with("h", WatchOptions::new().start_revision(revisions[1]))
        .expect("watch");
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.extend(next_events(&replay).events().iter().map(|e| e.revision()));
    }
    assert_eq!(seen, revisions[1..].to_vec());
    kv.compact(revisions[3]).expect("compact");
    let compacted = watch
        .watch_with("h", WatchOptions::new().start_revision(revisions[1]))
        .expect("watch");
    match compacted.recv_timeout(WAIT) {
        Err(Error::WatchCompacted { compact_revision }) => {
            assert_eq!(compact_revision, revisions[3])
        }
        other => panic!("expected the watch ended as compacted, got {other:?}"),
    }
    // Ended for good: the same error again.
    assert!(matches!(
        compacted.recv(),
        Err(Error::WatchCompacted { .. })
    ));
}

#[test]
fn bad_input_is_refused_with_a_typed_error() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let watch = client.watch();
    let invalid = |r: Result<Watcher, Error>, argument: &str| match r {
        Err(Error::InvalidArgument { argument: a, .. }) => assert_eq!(a, argument),
        other => panic!("expected {argument} refused, got {other:?}"),
    };
    invalid(watch.watch(""), "key");
    invalid(
        watch.watch_with("k", WatchOptions::new().start_revision(-1)),
        "start_revision",
    );
    invalid(
        watch.watch_with("k", WatchOptions::new().buffer(0)),
        "buffer",
    );
    // The extremes that are allowed: a buffer of one, the largest buffer, every key.
    let _one = watch
        .watch_with("k", WatchOptions::new().buffer(1))
        .expect("buffer 1");
    let _largest = watch
        .watch_with("k", WatchOptions::new().buffer(usize::MAX))
        .expect("the largest buffer");
    let every = watch
        .watch_with("", WatchOptions::new().prefix())
        .expect("every key");
    every.created_revision().expect("created");
    let rev = client
        .kv()
        .put("any", "v")
        .expect("put")
        .header()
        .revision();
    assert_eq!(next_events(&every).events()[0].revision(), rev);
    assert_eq!(
        every.recv_timeout(Duration::ZERO).expect("open"),
        None,
        "a zero wait returns at once"
    );
    client.close().expect("close");
    assert!(matches!(watch.watch("k"), Err(Error::Closed)));
    assert!(matches!(every.recv(), Err(Error::Closed)));
}

#[test]
fn a_slow_consumer_ends_lagged_alone_and_says_where_to_resume() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let kv = client.kv();
    let watch = client.watch();
    let slow = watch
        .watch_with("s", WatchOptions::new().buffer(2))
        .expect("watch");
    let fast = watch.watch("s").expect("watch");
    slow.created_revision().expect("created");
    fast.created_revision().expect("created");
    let revisions: Vec<i64> = (0..6)
        .map(|i| kv.put("s", i.to_string()).expect("put").header().revision())
        .collect();
    let mut got = Vec::new();
    while got.len() < revisions.len() {
        got.extend(next_events(&fast).events().iter().map(|e| e.revision()));
    }
    assert_eq!(
        got, revisions,
        "the other watch on the stream got everything"
    );
    let mut delivered = Vec::new();
    let resume_from = loop {
        match slow.recv_timeout(WAIT) {
            Ok(Some(r)) => delivered.extend(r.events().iter().map(|e| e.revision())),
            Err(Error::WatchLagged {
                resume_from,
                buffer,
            }) => {
                assert_eq!(buffer, 2);
                break resume_from;
            }
            other => panic!("expected the slow watch lagged, got {other:?}"),
        }
    };
    assert_eq!(
        delivered,
        revisions[..2].to_vec(),
        "its buffer was delivered"
    );
    assert_eq!(resume_from, revisions[2], "it resumes right after");
}

/// etcd's count of watchers, from its metrics.
fn watchers_on_server(cluster: &Cluster) -> Option<u64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(cluster.endpoint(0)).ok()?;
    stream.set_read_timeout(Some(WAIT)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

#[test]
fn cancel_and_drop_reach_the_server() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let watch = client.watch();
    let before = watchers_on_server(&cluster).expect("metrics");
    let watchers: Vec<Watcher> = (0..20)
        .map(|i| watch.watch(format!("c/{i}")).expect("watch"))
        .collect();
    for w in &watchers {
        w.created_revision().expect("created");
    }
    assert_eq!(watchers_on_server(&cluster), Some(before + 20));
    let mut watchers = watchers.into_iter();
    for w in watchers.by_ref().take(10) {
        w.cancel();
    }
    cluster
        .wait_until(WAIT, "ten watchers cancelled", || {
            watchers_on_server(&cluster) == Some(before + 10)
        })
        .expect("cancelled");
    drop(watchers);
    cluster
        .wait_until(WAIT, "every watcher dropped", || {
            watchers_on_server(&cluster) == Some(before)
        })
        .expect("dropped");
}

#[test]
fn watchers_of_the_same_range_from_now_share_one_server_watch() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let watch = client.watch();
    let before = watchers_on_server(&cluster).expect("metrics");
    let shared = || {
        watch
            .watch_with("s/", WatchOptions::new().prefix().buffer(2))
            .expect("watch")
    };
    let first: Vec<Watcher> = (0..50).map(|_| shared()).collect();
    for w in &first {
        w.created_revision().expect("created");
    }
    // Other options, or a start revision, make watches of their own.
    let with_prev = watch
        .watch_with("s/", WatchOptions::new().prefix().prev_kv())
        .expect("watch");
    with_prev.created_revision().expect("created");
    let put1 = client
        .kv()
        .put("s/a", "1")
        .expect("put")
        .header()
        .revision();
    let from_put1 = watch
        .watch_with("s/", WatchOptions::new().prefix().start_revision(put1))
        .expect("watch");
    from_put1.created_revision().expect("created");
    assert_eq!(
        watchers_on_server(&cluster),
        Some(before + 3),
        "50 watchers of one shape, one with prev_kv, one with a start revision"
    );
    for w in first.iter().chain([&with_prev, &from_put1]) {
        assert_eq!(next_events(w).events()[0].revision(), put1);
    }
    // A watcher that joins later starts where the group has delivered everything up to,
    // and gets every change after it.
    let late = shared();
    let joined_at = late.created_revision().expect("created");
    assert_eq!(joined_at, put1, "joined where the group had come");
    let put2 = client
        .kv()
        .put("s/b", "2")
        .expect("put")
        .header()
        .revision();
    for w in first.iter().chain([&late]) {
        assert_eq!(next_events(w).events()[0].revision(), put2);
    }
    // One member falls behind (buffer 2): it ends alone, the others go on.
    let mut first = first.into_iter();
    let slow = first.next().expect("a watcher");
    let rest: Vec<Watcher> = first.chain([late]).collect();
    let mut last = put2;
    for i in 0..3 {
        last = client
            .kv()
            .put("s/c", i.to_string())
            .expect("put")
            .header()
            .revision();
        for w in &rest {
            assert_eq!(next_events(w).events()[0].revision(), last);
        }
    }
    let _ = last;
    let mut ended = None;
    while ended.is_none() {
        match slow.recv_timeout(WAIT) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the slow watcher neither got events nor ended"),
            Err(e) => ended = Some(e),
        }
    }
    assert!(
        matches!(ended, Some(Error::WatchLagged { .. })),
        "{ended:?}"
    );
    // The server watch ends with its last watcher.
    drop(rest);
    drop((with_prev, from_put1));
    cluster
        .wait_until(WAIT, "every watcher dropped", || {
            watchers_on_server(&cluster) == Some(before)
        })
        .expect("dropped");
}

#[test]
fn a_revision_too_large_for_one_message_comes_whole_from_its_fragments() {
    // Each fragment etcd sends is at most its max request size plus 512 KiB; the delete
    // below makes one revision of about 2 MiB of events, more than the client takes in
    // one message: only fragments get it through.
    let cluster = Cluster::builder()
        .arg("--max-request-bytes=4096")
        .start()
        .expect("cluster");
    let client = Client::builder()
        .endpoints(cluster.endpoints())
        .max_receive_message_size(1 << 20)
        .connect()
        .expect("connect");
    let kv = client.kv();
    let value = "v".repeat(1500);
    let keys = 1400;
    for i in 0..keys {
        kv.put(format!("big/{i:04}"), value.as_str()).expect("put");
    }
    let watcher = client
        .watch()
        .watch_with("big/", WatchOptions::new().prefix().prev_kv())
        .expect("watch");
    watcher.created_revision().expect("created");
    let deleted = kv
        .delete_with("big/", etcd_blocking::DeleteOptions::new().prefix())
        .expect("delete");
    let response = next_events(&watcher);
    assert_eq!(
        response.events().len(),
        keys,
        "the whole revision in one response"
    );
    assert!(response
        .events()
        .iter()
        .all(|e| e.revision() == deleted.header().revision()
            && e.kind() == EventKind::Delete
            && e.prev_kv().is_some_and(|p| p.value().len() == 1500)));
}

#[test]
fn a_requested_progress_report_comes_after_what_was_delivered() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let watch = client.watch();
    let watcher = watch.watch("p").expect("watch");
    let other = watch.watch("p-other").expect("watch");
    watcher.created_revision().expect("created");
    other.created_revision().expect("created");
    let rev = client.kv().put("p", "v").expect("put").header().revision();
    assert_eq!(next_events(&watcher).events()[0].revision(), rev);
    watcher.request_progress().expect("progress");
    // The report goes to every watch of the stream, and says how far the store has come.
    for w in [&watcher, &other] {
        let report = w.recv_timeout(WAIT).expect("open").expect("a report");
        assert!(report.is_progress(), "{report:?}");
        assert!(report.header().revision() >= rev, "{report:?}");
    }
}

/// A 1-member cluster that sends watch progress notifications every 100 ms (the flag lost
/// its `experimental-` prefix in 3.6, and the old name in 3.7).
fn progress_cluster() -> Cluster {
    let with = |flag: &str| {
        Cluster::builder()
            .members(1)
            .arg(format!("--{flag}=100ms"))
            .start()
    };
    with("experimental-watch-progress-notify-interval")
        .or_else(|_| with("watch-progress-notify-interval"))
        .expect("a cluster with progress notifications")
}

#[test]
fn progress_notify_reports_the_revision_to_a_quiet_watcher_that_asked_for_it() {
    let cluster = progress_cluster();
    let client = client(&cluster);
    let watch = client.watch();
    let notified = watch
        .watch_with("quiet/a", WatchOptions::new().progress_notify())
        .expect("watch");
    let silent = watch.watch("quiet/b").expect("watch");
    notified.created_revision().expect("created");
    silent.created_revision().expect("created");
    let rev = client
        .kv()
        .put("elsewhere", "v")
        .expect("put")
        .header()
        .revision();
    // Nothing happens to either key: only the asking watcher hears how far the store is.
    let deadline = Instant::now() + WAIT;
    let report = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let report = notified
            .recv_timeout(left)
            .expect("open")
            .expect("a progress notification before the deadline");
        assert!(report.is_progress(), "an event on a quiet key: {report:?}");
        if report.header().revision() >= rev {
            break report;
        }
    };
    assert!(report.events().is_empty());
    assert!(
        silent.try_recv().expect("open").is_none(),
        "a watcher that did not ask was notified"
    );
}

#[test]
fn a_watcher_dropped_with_responses_unread_is_cancelled_on_the_server() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let before = watchers_on_server(&cluster).expect("metrics");
    let watcher = client.watch().watch("unread").expect("watch");
    watcher.created_revision().expect("created");
    for i in 0..10 {
        client.kv().put("unread", i.to_string()).expect("put");
    }
    cluster
        .wait_until(WAIT, "the responses to be queued", || {
            watcher.receiver().len() == 10
        })
        .expect("queued");
    assert_eq!(watchers_on_server(&cluster), Some(before + 1));
    drop(watcher);
    cluster
        .wait_until(WAIT, "the watcher cancelled", || {
            watchers_on_server(&cluster) == Some(before)
        })
        .expect("cancelled");
}
