//! Every API through etcd's gRPC proxy (`etcd grpc-proxy start`), which users put in front
//! of a cluster to spread watches: it numbers watches itself and answers creates out of
//! order, so nothing may assume its watch IDs are the client's.

mod common;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use common::cluster;
use etcd_blocking::concurrency::{Election, Mutex, Session};
use etcd_blocking::testing::{Cluster, GrpcProxy};
use etcd_blocking::{Client, Compare, EventKind, Txn, TxnOp, WatchOptions, Watcher};

const WAIT: Duration = Duration::from_secs(10);

/// A 3-member cluster, a proxy in front of it, and a client of the proxy alone.
fn behind_proxy() -> (Cluster, GrpcProxy, Client) {
    let cluster = cluster(3);
    let proxy = cluster
        .grpc_proxy()
        .unwrap_or_else(|e| panic!("starting etcd's grpc-proxy: {e}\n{}", cluster.logs()));
    let client = proxy.client().expect("a client of the proxy");
    (cluster, proxy, client)
}

/// The keys of the events `watcher` brings until `expected` are all in, in order of
/// arrival; fails after `WAIT`.
fn events(watcher: &Watcher, expected: usize, proxy: &GrpcProxy) -> Vec<(String, i64)> {
    let mut seen = Vec::new();
    while seen.len() < expected {
        let response = watcher
            .recv_timeout(WAIT)
            .expect("watching")
            .unwrap_or_else(|| {
                panic!(
                    "{} of {expected} events through the proxy: {seen:?}\n{}",
                    seen.len(),
                    proxy.logs()
                )
            });
        for event in response.events() {
            assert_eq!(event.kind(), EventKind::Put);
            seen.push((
                String::from_utf8_lossy(event.kv().key()).into_owned(),
                event.revision(),
            ));
        }
    }
    seen
}

#[test]
fn kv_and_watches_from_history_and_live_through_the_proxy() {
    let (_cluster, proxy, client) = behind_proxy();
    let kv = client.kv();
    let first = kv.put("p/0", "v").expect("put").header().revision();
    for i in 1..5 {
        kv.put(format!("p/{i}"), "v").expect("put");
    }
    assert_eq!(
        kv.get_with("p/", etcd_blocking::GetOptions::new().prefix())
            .expect("get")
            .kvs()
            .len(),
        5
    );
    let swapped = kv
        .txn(
            Txn::new()
                .when([Compare::version("p/0").eq(1)])
                .and_then([TxnOp::put("p/0", "w")]),
        )
        .expect("txn");
    assert!(swapped.succeeded());
    // A watch from the first revision gets the history, then what comes.
    let watcher = client
        .watch()
        .watch_with("p/", WatchOptions::new().prefix().start_revision(first))
        .expect("watch");
    let history = events(&watcher, 6, &proxy);
    let keys: Vec<&str> = history.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["p/0", "p/1", "p/2", "p/3", "p/4", "p/0"]);
    kv.put("p/live", "v").expect("put");
    let live = events(&watcher, 1, &proxy);
    assert_eq!(live[0].0, "p/live");
    let revisions: Vec<i64> = history.iter().chain(&live).map(|(_, r)| *r).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "in order: {revisions:?}"
    );
    // Writes elsewhere leave the stream behind the client's revision for longer than
    // its liveness check waits for an answer: the proxy answers no progress request,
    // so the check must ask it another way, or it would move the stream again and again.
    let busy = Instant::now();
    while busy.elapsed() < Duration::from_millis(600) {
        kv.put("elsewhere", "v").expect("put");
    }
    kv.put("p/after", "v").expect("put");
    assert_eq!(events(&watcher, 1, &proxy)[0].0, "p/after");
    assert_eq!(
        client.watch().streams_opened(),
        1,
        "the watch stream stayed where it was"
    );
}

#[test]
fn many_watches_on_one_stream_each_get_their_own_events_through_the_proxy() {
    let (_cluster, proxy, client) = behind_proxy();
    let watch = client.watch();
    let kv = client.kv();
    let start = kv.put("m/start", "v").expect("put").header().revision();
    // Some from now (several on one key, which the proxy coalesces), some from history.
    let mut watchers = Vec::new();
    for i in 0..40 {
        let options = if i % 2 == 0 {
            WatchOptions::new()
        } else {
            WatchOptions::new().start_revision(start)
        };
        let key = format!("m/{}", i % 20);
        watchers.push((key.clone(), watch.watch_with(key, options).expect("watch")));
    }
    for (_, watcher) in &watchers {
        watcher.created_revision().expect("created");
    }
    for i in 0..20 {
        kv.put(format!("m/{i}"), "v").expect("put");
    }
    for (key, watcher) in &watchers {
        let got = events(watcher, 1, &proxy);
        assert_eq!(&got[0].0, key, "a watch of {key} got another key's event");
    }
    // A cancelled watch makes no trouble for the others.
    let (_, gone) = watchers.remove(0);
    gone.cancel();
    kv.put("m/1", "again").expect("put");
    let still: BTreeSet<String> = watchers
        .iter()
        .filter(|(key, _)| key == "m/1")
        .map(|(_, w)| events(w, 1, &proxy)[0].0.clone())
        .collect();
    assert_eq!(still, BTreeSet::from(["m/1".to_owned()]));
}

#[test]
fn keepalive_lock_and_election_through_the_proxy() {
    let (_cluster, proxy, client) = behind_proxy();
    // A kept lease is renewed through the proxy.
    let lease = client.lease();
    let id = lease.grant(Duration::from_secs(2)).expect("grant").id();
    let kept = lease.keep_alive(id).expect("keep");
    for _ in 0..2 {
        kept.renewals()
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("a renewal through the proxy: {e}\n{}", proxy.logs()));
    }
    assert!(kept.status().is_alive());
    // A lock contended by two sessions: the second waits for the first.
    let a = Session::new(&client, Duration::from_secs(5)).expect("session");
    let b = Session::new(&client, Duration::from_secs(5)).expect("session");
    let held = Mutex::new(&a, "pl")
        .expect("mutex")
        .lock(WAIT)
        .expect("lock");
    let waiting = {
        let m = Mutex::new(&b, "pl").expect("mutex");
        thread::spawn(move || m.lock(WAIT).map(|g| g.revision()))
    };
    let first = held.revision();
    // Wait until b stands in the queue, then let go.
    _cluster
        .wait_until(WAIT, "b to queue", || common::queued(&client, "pl/") == 2)
        .expect("queued");
    held.unlock().expect("unlock");
    let second = waiting.join().expect("waiter").expect("b locks after a");
    assert!(second > first);
    // An election, observed through the proxy's watch.
    let election = Election::new(&a, "pe").expect("election");
    let mut observer = election.observe().expect("observe");
    let leading = election.campaign("one", WAIT).expect("campaign");
    leading.proclaim("two").expect("proclaim");
    let mut values = Vec::new();
    while values.len() < 2 {
        let kv = observer
            .recv_timeout(WAIT)
            .expect("observing")
            .unwrap_or_else(|| panic!("leaders so far: {values:?}\n{}", proxy.logs()));
        values.push(String::from_utf8_lossy(kv.value()).into_owned());
    }
    assert_eq!(values, ["one", "two"]);
    leading.resign().expect("resign");
    // etcd's own lock and election services, through the proxy too.
    let service = client.lock_service();
    let lock = service.lock("svc-pl", a.lease_id()).expect("service lock");
    service.unlock(&lock).expect("service unlock");
    let elections = client.election_service();
    let leader = elections
        .campaign("svc-pe", a.lease_id(), "x")
        .expect("service campaign");
    assert_eq!(
        elections
            .leader("svc-pe")
            .expect("leader")
            .map(|kv| kv.value().to_vec()),
        Some(b"x".to_vec())
    );
    elections.resign(&leader).expect("resign");
}
