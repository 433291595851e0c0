//! Watches against real etcd, the faults: the move to another member when the one
//! serving the stream is killed, hung, cut off from its peers or blackholed, a quorum
//! loss, a rolling restart, and HTTP/2 pings within the server's policy.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{all_healthy, alone, client, next_events};
use etcd_blocking::testing::{Cluster, Proxy};
use etcd_blocking::{Client, WatchOptions, Watcher};

/// How long a test waits for a response it expects.
const WAIT: Duration = Duration::from_secs(10);

/// A writer of puts to keys under `prefix` until `stop`, recording each acknowledged
/// revision; `count` says how many so far.
fn write_history(
    client: &Client,
    prefix: &str,
    stop: &AtomicBool,
    count: &AtomicUsize,
) -> Vec<i64> {
    let kv = client.kv();
    let mut acknowledged = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        // Only acknowledged writes are in the history the watchers must see; a write of
        // unknown outcome may show up too, so the keys are unique and checked apart.
        if let Ok(r) = kv.put(format!("{prefix}{n}"), n.to_string()) {
            acknowledged.push(r.header().revision());
            count.fetch_add(1, Ordering::Release);
        }
        n += 1;
    }
    acknowledged
}

/// Receives until every revision in `expected` has been seen; checks order and uniqueness.
fn receive_history(watcher: &Watcher, expected: &[i64]) {
    let mut seen: BTreeSet<i64> = BTreeSet::new();
    let mut last = 0;
    let until = Instant::now() + WAIT;
    while !expected.iter().all(|r| seen.contains(r)) {
        let left = until.saturating_duration_since(Instant::now());
        let Some(r) = watcher.recv_timeout(left).expect("the watch goes on") else {
            let missing: Vec<_> = expected.iter().filter(|r| !seen.contains(r)).collect();
            panic!("events missing after {WAIT:?}: {missing:?}");
        };
        for e in r.events() {
            assert!(
                e.revision() > last,
                "revision {} after {last}",
                e.revision()
            );
            last = e.revision();
            seen.insert(e.revision());
        }
    }
}

/// [`history_through`] on a fresh 3-member cluster, with a client of every member.
fn on_three_members(
    movable: bool,
    fault: impl FnOnce(&Cluster, usize),
    heal: impl FnOnce(&Cluster, usize),
) {
    let cluster = alone(3);
    let client = client(&cluster);
    all_healthy(&cluster, &client);
    history_through(
        &cluster,
        &client,
        &cluster.endpoints(),
        movable,
        fault,
        heal,
    );
}

#[test]
fn a_watch_moves_off_a_killed_member() {
    on_three_members(
        true,
        |cluster, i| cluster.kill(i).expect("kill"),
        |cluster, i| {
            cluster.restart(i).expect("restart");
            cluster.wait_healthy().expect("healthy");
        },
    );
}

#[test]
fn a_watch_moves_off_a_hung_member() {
    on_three_members(
        true,
        |cluster, i| cluster.pause(i).expect("pause"),
        |cluster, i| {
            cluster.resume(i).expect("resume");
            cluster.wait_healthy().expect("healthy");
        },
    );
}

#[test]
fn a_stream_behind_the_client_moves_off_a_hung_follower_that_no_probe_has_found() {
    // Probes only at the start, and a probe timeout longer than the test's waits (so that
    // no probe of a spell of fast probing finds the member either): nothing but the watch
    // thread's own check can find that the member serving the stream hung, and no call
    // fails on it (writes go to the leader). The watch thread sees the stream fall behind
    // what the writer's calls saw, asks its member for progress, hears nothing for a
    // quarter of the probe timeout (5 s), and moves.
    let cluster = alone(3);
    let leader = cluster.leader().expect("a leader");
    let mut endpoints = cluster.endpoints();
    let leader_endpoint = endpoints.remove(leader);
    // The followers first: the stream takes the client's first pick.
    endpoints.push(leader_endpoint);
    let client = Client::builder()
        .endpoints(endpoints)
        .probe_interval(Duration::from_secs(86_400))
        .probe_timeout(Duration::from_secs(20))
        .connect()
        .expect("connect");
    all_healthy(&cluster, &client);
    let opener = client.watch().watch("open").expect("watch");
    opener.created_revision().expect("created");
    let serving = client.watch().stream_endpoint().expect("a stream");
    assert_ne!(
        serving,
        cluster.endpoint(leader),
        "the stream is on a follower"
    );
    history_through(
        &cluster,
        &client,
        &cluster.endpoints(),
        true,
        |cluster, i| cluster.pause(i).expect("pause"),
        |cluster, i| cluster.resume(i).expect("resume"),
    );
}

#[test]
fn a_watch_goes_on_through_a_rolling_restart() {
    on_three_members(
        true,
        // Every member in turn, the way an operator upgrades; the serving one last, so
        // that the stream ends up off it.
        |cluster, i| {
            for m in [(i + 1) % 3, (i + 2) % 3, i] {
                cluster.terminate(m).expect("terminate");
                cluster.restart(m).expect("restart");
                cluster.wait_healthy().expect("healthy");
            }
        },
        |_, _| {},
    );
}

/// A prefix watch through `fault` of the member serving its stream (by its index in
/// `endpoints`, the client's endpoints) and `heal`, with a writer going on throughout:
/// every acknowledged revision arrives once, in order. With `movable`, the stream must
/// move off the faulted member before the heal; without, the fault leaves no member to
/// move to, and the stream must be given up before the heal and reopen after it.
fn history_through(
    cluster: &Cluster,
    client: &Client,
    endpoints: &[String],
    movable: bool,
    fault: impl FnOnce(&Cluster, usize),
    heal: impl FnOnce(&Cluster, usize),
) {
    let watch = client.watch();
    // Read only at the end: room for the whole history.
    let watcher = watch
        .watch_with("f/", WatchOptions::new().prefix().buffer(usize::MAX))
        .expect("watch");
    watcher.created_revision().expect("created");
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (client, stop, count) = (client.clone(), stop.clone(), count.clone());
        std::thread::spawn(move || write_history(&client, "f/", &stop, &count))
    };
    let writes = |at_least: usize, when: &str| {
        cluster
            .wait_until(WAIT, &format!("writes {when}"), || {
                count.load(Ordering::Acquire) >= at_least
            })
            .expect("writes");
    };
    writes(20, "before the fault");
    let serving = || {
        let endpoint = watch.stream_endpoint()?;
        endpoints.iter().position(|e| *e == endpoint)
    };
    cluster
        .wait_until(WAIT, "the stream to open", || serving().is_some())
        .expect("open");
    let faulted = serving().expect("serving");
    fault(cluster, faulted);
    if movable {
        cluster
            .wait_until(WAIT, "the stream to move", || {
                serving().is_some_and(|i| i != faulted)
            })
            .expect("moved");
        heal(cluster, faulted);
    } else {
        cluster
            .wait_until(WAIT, "the stream to be given up", || serving().is_none())
            .expect("given up");
        heal(cluster, faulted);
        cluster
            .wait_until(WAIT, "the stream to reopen", || serving().is_some())
            .expect("reopened");
    }
    let healed = count.load(Ordering::Acquire);
    writes(healed + 20, "after the heal");
    stop.store(true, Ordering::Release);
    let acknowledged = writer.join().expect("writer");
    // Strictly increasing revisions: none lost (every acknowledged one arrives), none
    // twice, none out of order.
    receive_history(&watcher, &acknowledged);
}

#[test]
fn a_watch_moves_off_a_member_cut_off_from_its_peers() {
    let cluster = common::alone_with_peer_proxies(3);
    let client = client(&cluster);
    all_healthy(&cluster, &client);
    history_through(
        &cluster,
        &client,
        &cluster.endpoints(),
        true,
        |cluster, i| cluster.isolate(i).expect("isolate"),
        |cluster, _| {
            cluster.heal().expect("heal");
            cluster.wait_healthy().expect("healthy");
        },
    );
}

#[test]
fn a_watch_moves_off_a_blackholed_member() {
    let cluster = alone(3);
    let proxies: Vec<Proxy> = (0..3)
        .map(|i| Proxy::start(0, cluster.client_port(i)).expect("proxy"))
        .collect();
    let endpoints: Vec<String> = proxies.iter().map(|p| p.endpoint()).collect();
    let client = Client::connect(endpoints.clone()).expect("connect");
    all_healthy(&cluster, &client);
    history_through(
        &cluster,
        &client,
        &endpoints,
        true,
        |_, i| proxies[i].blackhole(),
        |_, i| proxies[i].pass(),
    );
}

#[test]
fn a_watch_waits_out_a_quorum_loss_and_goes_on() {
    // The serving member and the next: no quorum, no healthy member.
    on_three_members(
        false,
        |cluster, i| {
            cluster.pause((i + 1) % 3).expect("pause");
            cluster.kill(i).expect("kill");
        },
        |cluster, i| {
            cluster.resume((i + 1) % 3).expect("resume");
            cluster.restart(i).expect("restart");
            cluster.wait_healthy().expect("healthy");
        },
    );
}

/// A client that pings every 5 s (the least etcd allows by default) and sends nothing
/// else: no probes for a day, so that only the watch stream's pings cross the connection.
fn pinging_client(cluster: &Cluster) -> Client {
    Client::builder()
        .endpoints(cluster.endpoints())
        .keepalive_time(Duration::from_secs(5))
        .probe_interval(Duration::from_secs(86_400))
        .connect()
        .expect("connect")
}

/// Three ping intervals and a little: long enough for a server to refuse the pings.
const THREE_PINGS: Duration = Duration::from_secs(17);

#[test]
fn an_idle_watch_pings_within_the_servers_policy() {
    let cluster = alone(1);
    let client = pinging_client(&cluster);
    let watch = client.watch();
    let watcher = watch.watch("idle").expect("watch");
    watcher.created_revision().expect("created");
    let started = Instant::now();
    // Fails early if the server closes the connection (GOAWAY "too_many_pings").
    let _ = cluster.wait_until(THREE_PINGS, "a stream reopened", || {
        watch.streams_opened() > 1
    });
    assert_eq!(
        watch.streams_opened(),
        1,
        "reopened {:?} in",
        started.elapsed()
    );
    let rev = client
        .kv()
        .put("idle", "v")
        .expect("put")
        .header()
        .revision();
    assert_eq!(next_events(&watcher).events()[0].revision(), rev);
}

#[test]
fn pings_more_often_than_the_server_allows_close_the_connection() {
    // The other side of the test above: it can fail.
    let cluster = Cluster::builder()
        .arg("--grpc-keepalive-min-time=60s")
        .alone()
        .start()
        .expect("cluster");
    let client = pinging_client(&cluster);
    let watch = client.watch();
    let watcher = watch.watch("strict").expect("watch");
    watcher.created_revision().expect("created");
    cluster
        .wait_until(
            THREE_PINGS + Duration::from_secs(10),
            "a stream reopened",
            || watch.streams_opened() > 1,
        )
        .expect("the server refused the pings");
    // And the watch went on.
    let rev = client
        .kv()
        .put("strict", "v")
        .expect("put")
        .header()
        .revision();
    assert_eq!(next_events(&watcher).events()[0].revision(), rev);
}
