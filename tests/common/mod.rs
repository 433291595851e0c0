//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own part

use std::time::Duration;

use etcd_blocking::testing::Cluster;
use etcd_blocking::{Client, GetResponse, Health, Kv};

/// A cluster of `members` members, or a panic that carries the launcher's report.
pub fn cluster(members: usize) -> Cluster {
    Cluster::start(members).unwrap_or_else(|e| panic!("starting a {members}-member cluster: {e}"))
}

/// The other half of the write promise, for a write of `key` (a key no other write
/// touches) that failed with `err`: unless its outcome was reported unknown, it was not
/// applied. Read through a client of its own after a write of its own (so after what the
/// failed write could have raced with), since the failed write's client may not answer.
pub fn failed_write_absent(cluster: &Cluster, key: &str, err: &etcd_blocking::Error) {
    if err.is_write_outcome_unknown() {
        return;
    }
    let reader = cluster.client().expect("a client to read back");
    reader.kv().put("promise-barrier", "x").expect("barrier");
    assert_eq!(
        reader.kv().get(key).expect("read back").count(),
        0,
        "the write of {key} failed with {err:?}, so it must not be applied, yet it was"
    );
    reader.close().expect("close");
}

/// A cluster of `members` members that runs alone: no other launched cluster runs beside
/// it (`ClusterBuilder::alone`). The fault binaries use it, so that their timing bounds
/// meet the same load on every run.
pub fn alone(members: usize) -> Cluster {
    Cluster::builder()
        .members(members)
        .alone()
        .start()
        .unwrap_or_else(|e| panic!("starting a {members}-member cluster: {e}"))
}

/// [`alone`], with elections ten times slower than the launcher's (100 ms heartbeats, a
/// 1 s election timeout), for the tests that pause a leader and need the writes sent
/// through a follower just after it to be forwarded to the paused leader: with the
/// launcher's 100 ms timeout, under load, a new leader often served them first.
pub fn alone_slow_elections(members: usize) -> Cluster {
    Cluster::builder()
        .members(members)
        .arg("--heartbeat-interval=100")
        .arg("--election-timeout=1000")
        .alone()
        .start()
        .unwrap_or_else(|e| panic!("starting a {members}-member cluster: {e}"))
}

/// [`alone`], behind peer proxies (see [`cluster_with_peer_proxies`]).
pub fn alone_with_peer_proxies(members: usize) -> Cluster {
    Cluster::builder()
        .members(members)
        .peer_proxies()
        .alone()
        .start()
        .unwrap_or_else(|e| panic!("starting a {members}-member cluster with peer proxies: {e}"))
}

/// A cluster of `members` members behind peer proxies, so that a member can be cut off
/// from its peers ([`Cluster::isolate`]).
pub fn cluster_with_peer_proxies(members: usize) -> Cluster {
    Cluster::builder()
        .members(members)
        .peer_proxies()
        .start()
        .unwrap_or_else(|e| panic!("starting a {members}-member cluster with peer proxies: {e}"))
}

/// A client of every member of the cluster.
pub fn client(cluster: &Cluster) -> Client {
    cluster
        .client()
        .unwrap_or_else(|e| panic!("connecting to {:?}: {e}", cluster.endpoints()))
}

/// The keys of a get, as text.
pub fn keys(response: &GetResponse) -> Vec<String> {
    response
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

/// The values of a get, as text.
pub fn values(response: &GetResponse) -> Vec<String> {
    response
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        .collect()
}

/// Waits until the client sees every endpoint healthy.
pub fn all_healthy(cluster: &Cluster, client: &Client) {
    cluster
        .wait_until(
            Duration::from_secs(10),
            "every endpoint to be healthy",
            || {
                client
                    .endpoint_health()
                    .iter()
                    .all(|h| h.health() == Health::Healthy)
            },
        )
        .expect("healthy");
}

/// A client of one member only, with a 2 s request timeout: while the leader is paused,
/// what it writes the member forwards to the paused leader, and the write comes back of
/// unknown outcome.
pub fn client_of(cluster: &Cluster, member: usize) -> Client {
    Client::builder()
        .endpoints([cluster.endpoint(member)])
        .request_timeout(Duration::from_secs(2))
        .connect()
        .unwrap_or_else(|e| panic!("connecting to member {member}: {e}"))
}

/// A blind put through a follower just after its leader is paused, and a newer value
/// written once there is a leader again: whether the blind put is applied after the old
/// leader comes back shows whether forwarded writes were (see tests/unknown.rs).
pub struct LateWitness {
    key: String,
    newer: Option<i64>,
}

impl LateWitness {
    /// Puts "before" at `key` through `kv` (a client of every member): before the pause.
    pub fn new(kv: &Kv, key: String) -> LateWitness {
        kv.put(key.as_str(), "before").expect("put");
        LateWitness { key, newer: None }
    }

    /// The blind put through `via` (a client of a follower), just after the pause; when
    /// its outcome is unknown, a newer value through `kv`. Whether it was unknown: if not,
    /// it never waited on the paused leader (a new leader served it), and the round cannot
    /// show a late write.
    pub fn send(&mut self, cluster: &Cluster, kv: &Kv, via: &Client) -> bool {
        let Err(e) = via.kv().put(self.key.as_str(), "late") else {
            return false;
        };
        if !e.is_write_outcome_unknown() {
            return false;
        }
        // A copy of unknown outcome of the newer value that lands late can only hide a
        // late witness, not fake one.
        cluster
            .wait_until(Duration::from_secs(20), "a newer value written", || {
                self.newer = kv
                    .put(self.key.as_str(), "newer")
                    .ok()
                    .map(|put| put.header().revision());
                self.newer.is_some()
            })
            .expect("written");
        true
    }

    /// True once the blind put was applied over the newer value.
    pub fn applied_late(&self, kv: &Kv) -> bool {
        self.newer.is_some_and(|newer| {
            kv.get_one(self.key.as_str())
                .expect("get")
                .is_some_and(|got| got.value() == b"late" && got.mod_revision() > newer)
        })
    }

    /// Waits, at most 10 s, for the blind put to be applied late and the cluster to be
    /// healthy; whether it was.
    pub fn wait(&self, cluster: &Cluster, kv: &Kv) -> bool {
        if self.newer.is_none() {
            // The blind put's outcome was known: it cannot be applied late.
            return false;
        }
        let _ = cluster.wait_until(Duration::from_secs(10), "late writes to be applied", || {
            self.applied_late(kv) && cluster.wait_healthy().is_ok()
        });
        self.applied_late(kv)
    }
}

/// How many keys are under `prefix`: a lock's or an election's queue.
pub fn queued(client: &Client, prefix: &str) -> i64 {
    client
        .kv()
        .get_with(
            prefix,
            etcd_blocking::GetOptions::new().prefix().count_only(),
        )
        .expect("count")
        .count()
}

/// The next watch response with events (progress reports are skipped), waiting up to
/// 10 s; a panic if none comes or the watch ends.
pub fn next_events(watcher: &etcd_blocking::Watcher) -> etcd_blocking::WatchResponse {
    let wait = Duration::from_secs(10);
    let until = std::time::Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        match watcher.recv_timeout(left) {
            Ok(Some(r)) if r.is_progress() => continue,
            Ok(Some(r)) => return r,
            Ok(None) => panic!("no response within {wait:?}"),
            Err(e) => panic!("the watch ended: {e}"),
        }
    }
}

/// Polls `f` every 20 ms until it gives `Some`, failing with `what` after `wait`.
pub fn eventually<T>(what: &str, wait: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Some(found) = f() {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {wait:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
