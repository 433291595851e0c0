//! The client's threads: named, and gone after `close` or after the last handle is dropped.
//! One test in its own binary, so no other test's clients are counted.

mod common;

use std::time::Duration;

use common::cluster;
use etcd_blocking::{Client, KeepAlive, KeepAliveStatus, Kv, Lease, Watch};

/// How many threads of this process have a name starting with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// How many file descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Threads a client starts: grpcio's poll threads, the balancer's worker, and the watch
/// and keepalive threads once they are needed.
fn client_threads() -> usize {
    threads_named("etcd-grpc")
        + threads_named("etcd-balancer")
        + threads_named("etcd-watch")
        + threads_named("etcd-keepalive")
}

#[test]
fn handles_are_cheap_shared_values() {
    fn shared<T: Clone + Send + Sync + 'static>() {}
    shared::<Client>();
    shared::<Kv>();
    shared::<Lease>();
    shared::<Watch>();
    fn sent<T: Send + Sync + 'static>() {}
    sent::<KeepAlive>();
}

#[test]
fn close_and_drop_stop_every_client_thread() {
    let cluster = cluster(1);
    let stopped = |what: &str| {
        cluster
            .wait_until(Duration::from_secs(10), what, || client_threads() == 0)
            .expect("threads stopped");
    };
    assert_eq!(client_threads(), 0);

    let client = Client::builder()
        .endpoints(cluster.endpoints())
        .poll_threads(3)
        .connect()
        .expect("connect");
    // A new thread names itself as it starts: wait for the names, then count exactly.
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the client's threads to be named",
            || client_threads() == 4,
        )
        .expect("three poll threads and a balancer");
    assert_eq!(
        threads_named("etcd-grpc"),
        3,
        "poll threads, as many as asked"
    );
    assert_eq!(threads_named("etcd-balancer"), 1, "one balancer worker");
    client.kv().put("k", "v").expect("put");
    client.close().expect("close");
    stopped("close to stop the poll threads and the balancer");

    let client = Client::connect(cluster.endpoints()).expect("connect");
    let kv = client.kv();
    kv.get("k").expect("get");
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the client's threads to be named",
            || client_threads() == 2,
        )
        .expect("a poll thread and a balancer");
    drop(client);
    kv.get("k").expect("a handle keeps the client alive");
    drop(kv);
    stopped("dropping the last handle to stop the poll threads");

    // The watch and keepalive threads start with the first watch and keepalive, one each
    // however many there are, and close stops them too.
    let client = Client::connect(cluster.endpoints()).expect("connect");
    let watchers: Vec<_> = (0..3)
        .map(|i| client.watch().watch(format!("w{i}")).expect("watch"))
        .collect();
    let lease = client.lease();
    let kept: Vec<KeepAlive> = (0..3)
        .map(|_| {
            let id = lease.grant(Duration::from_secs(10)).expect("grant").id();
            lease.keep_alive(id).expect("keep alive")
        })
        .collect();
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the client's threads to be named",
            || client_threads() == 4,
        )
        .expect("a poll thread, a balancer, a watch thread and a keepalive thread");
    assert_eq!(threads_named("etcd-watch"), 1, "one watch thread");
    assert_eq!(threads_named("etcd-keepalive"), 1, "one keepalive thread");
    client.close().expect("close");
    stopped("close to stop the watch and keepalive threads");
    for k in &kept {
        let end = k.wait(Duration::from_secs(10)).expect("ended by close");
        assert!(matches!(end, KeepAliveStatus::Lost(_)), "{end:?}");
    }
    drop((watchers, kept));

    let fds_before = open_fds();
    for _ in 0..20 {
        let client = Client::connect(cluster.endpoints()).expect("connect");
        client.kv().get("k").expect("get");
        client.close().expect("close");
    }
    stopped("repeated clients to leave no thread behind");
    // Sockets close as gRPC tears its connections down: wait for the count to settle.
    cluster
        .wait_until(
            Duration::from_secs(10),
            "file descriptors to be released",
            || open_fds() <= fds_before,
        )
        .unwrap_or_else(|e| panic!("{} open before, {} after: {e}", fds_before, open_fds()));
}
