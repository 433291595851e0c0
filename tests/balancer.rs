//! The balancer against real etcd: health as callers see it, rejoining, spreading calls,
//! refusing a foreign cluster, never going back in time, leaving a leader cut off from its
//! peers, serving serializable reads without a quorum, and the error when nothing is
//! healthy.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{all_healthy, alone};
use etcd_blocking::{Client, Error, GetOptions, Health, Txn, TxnOp};

fn health_of(client: &Client, endpoint: &str) -> Health {
    client
        .endpoint_health()
        .into_iter()
        .find(|h| h.endpoint() == endpoint)
        .map(|h| h.health())
        .expect("a known endpoint")
}

#[test]
fn a_killed_member_turns_unhealthy_and_rejoins_as_soon_as_it_serves() {
    let cluster = alone(3);
    let client = Client::connect(cluster.endpoints()).expect("connect");
    let endpoint = cluster.endpoint(1);
    all_healthy(&cluster, &client);
    cluster.kill(1).expect("kill");
    cluster
        .wait_until(
            Duration::from_secs(5),
            "the killed member to be unhealthy",
            || health_of(&client, &endpoint) == Health::Unhealthy,
        )
        .expect("unhealthy");
    let reason = client.endpoint_health()[1].reason().to_owned();
    assert!(!reason.is_empty());
    cluster.restart(1).expect("restart");
    let serving = Instant::now();
    cluster
        .wait_until(
            Duration::from_secs(5),
            "the restarted member to rejoin",
            || health_of(&client, &endpoint) == Health::Healthy,
        )
        .expect("rejoined");
    // No fixed hold-out: back within the longest re-probe backoff and a probe.
    assert!(
        serving.elapsed() < Duration::from_millis(1500),
        "{:?}",
        serving.elapsed()
    );
}

#[test]
fn calls_go_round_robin_over_the_healthy_members() {
    let cluster = alone(3);
    let client = Client::connect(cluster.endpoints()).expect("connect");
    all_healthy(&cluster, &client);
    let kv = client.kv();
    let members: Vec<u64> = (0..12)
        .map(|_| {
            let got = kv
                .get_with("k", GetOptions::new().serializable())
                .expect("get");
            got.header().member_id()
        })
        .collect();
    // Round robin, not chance: every window of three calls has each member once (random
    // picks would pass "every member served some" 98% of the time).
    for window in members.chunks(3) {
        let distinct: HashSet<&u64> = window.iter().collect();
        assert_eq!(distinct.len(), 3, "{members:?}");
    }
}

#[test]
fn nothing_healthy_fails_at_the_deadline_listing_every_endpoint() {
    let cluster = alone(3);
    let client = Client::builder()
        .endpoints(cluster.endpoints())
        .request_timeout(Duration::from_millis(400))
        .connect()
        .expect("connect");
    client.kv().put("k", "v").expect("put");
    for i in 0..3 {
        cluster.kill(i).expect("kill");
    }
    cluster
        .wait_until(
            Duration::from_secs(5),
            "every endpoint to be unhealthy",
            || {
                client
                    .endpoint_health()
                    .iter()
                    .all(|h| h.health() == Health::Unhealthy)
            },
        )
        .expect("unhealthy");
    let started = Instant::now();
    let err = client.kv().get("k").expect_err("nothing is up");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_millis(900),
        "{waited:?}"
    );
    match &err {
        Error::NoHealthyEndpoint { endpoints, .. } => {
            let named: Vec<&str> = endpoints.iter().map(|e| e.endpoint.as_str()).collect();
            let expected = cluster.endpoints();
            assert_eq!(
                named,
                expected.iter().map(String::as_str).collect::<Vec<_>>()
            );
            assert!(endpoints.iter().all(|e| !e.reason.is_empty()));
        }
        other => panic!("expected NoHealthyEndpoint, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        cluster
            .endpoints()
            .iter()
            .all(|e| text.contains(e.as_str())),
        "{text}"
    );
}

#[test]
fn an_endpoint_of_another_cluster_is_refused() {
    let ours = common::cluster(1);
    let theirs = common::cluster(1);
    let client = Client::connect([ours.endpoint(0), theirs.endpoint(0)]).expect("connect");
    let mut verdict = Vec::new();
    ours.wait_until(
        Duration::from_secs(10),
        "one endpoint refused for its cluster",
        || {
            verdict = client.endpoint_health();
            verdict
                .iter()
                .filter(|h| h.health() == Health::Healthy)
                .count()
                == 1
                && verdict.iter().any(|h| {
                    h.health() == Health::Unhealthy && h.reason().contains("belongs to cluster")
                })
        },
    )
    .unwrap_or_else(|e| panic!("{verdict:?}: {e}"));
    let clusters: HashSet<u64> = (0..10)
        .map(|_| client.kv().get("k").expect("get").header().cluster_id())
        .collect();
    assert_eq!(clusters.len(), 1, "every call went to one cluster");
}

#[test]
fn writes_stalled_on_a_leader_cut_off_from_its_peers_move_to_the_next_leader() {
    let cluster = common::alone_with_peer_proxies(3);
    // Regular probes a minute apart, and a long deadline: only the stalled calls
    // themselves can make the balancer look for the new leader in time.
    let client = Client::builder()
        .endpoints(cluster.endpoints())
        .probe_interval(Duration::from_secs(60))
        .request_timeout(Duration::from_secs(20))
        .connect()
        .expect("connect");
    all_healthy(&cluster, &client);
    let kv = client.kv();
    let old = cluster.leader().expect("leader");
    let old_id = cluster.member_id(old).expect("leader id");
    cluster
        .wait_until(
            Duration::from_secs(10),
            "writes to reach the leader",
            || {
                kv.put("k", "1")
                    .is_ok_and(|p| p.header().member_id() == old_id)
            },
        )
        .expect("leader known");
    cluster.isolate(old).expect("isolate");
    // The write waits on the old leader, which cannot commit it. etcd would end it only
    // after its own request timeout (about 5 s); the client ends it as soon as a probe
    // finds the old leader stepped down or names the new one, and with probes a minute
    // apart, only the stalled write can have asked for that probe.
    match kv.put("k", "2") {
        Err(Error::WriteOutcomeUnknown { source, .. })
            if matches!(*source, Error::Abandoned { .. }) => {}
        other => panic!("expected the balancer to end the write, got {other:?}"),
    }
    let cut = Instant::now();
    let mut written = false;
    while !written && cut.elapsed() < Duration::from_secs(10) {
        written = kv.put("k", "2").is_ok();
    }
    assert!(written, "no write succeeded on the new leader");
    assert_ne!(cluster.leader().expect("leader"), old);
    cluster.heal().expect("heal");
}

#[test]
fn serializable_reads_are_served_while_the_quorum_is_lost() {
    let cluster = alone(3);
    let client = Client::builder()
        .endpoints(cluster.endpoints())
        .request_timeout(Duration::from_secs(1))
        .connect()
        .expect("connect");
    all_healthy(&cluster, &client);
    let written = client.kv().put("k", "v").expect("put").header().revision();
    let survivor = 0;
    // The survivor must have applied the put before the others go, or its reads would be
    // older than the client has seen (and rightly refused).
    let direct = Client::connect([cluster.endpoint(survivor)]).expect("connect");
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the survivor to apply the put",
            || {
                direct
                    .kv()
                    .get_with("k", GetOptions::new().serializable())
                    .is_ok_and(|g| g.header().revision() >= written)
            },
        )
        .expect("applied");
    cluster.kill(1).expect("kill");
    cluster.kill(2).expect("kill");
    let survivor = cluster.endpoint(survivor);
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the survivor to lose its leader",
            || {
                client
                    .endpoint_health()
                    .iter()
                    .all(|h| h.health() == Health::Unhealthy)
                    && client
                        .endpoint_health()
                        .iter()
                        .any(|h| h.endpoint() == survivor && h.reason().contains("no leader"))
            },
        )
        .expect("leaderless");
    // Nothing is healthy, yet the member that is up still serves what it has.
    for _ in 0..5 {
        let got = client
            .kv()
            .get_with("k", GetOptions::new().serializable())
            .expect("a serializable read without a quorum");
        assert_eq!(got.first().map(|kv| kv.value()), Some(&b"v"[..]));
        assert!(got.header().revision() >= written);
    }
    // A linearizable read needs the quorum: it fails, within its deadline.
    let started = Instant::now();
    let err = client.kv().get("k").expect_err("no quorum");
    assert!(started.elapsed() < Duration::from_millis(1500), "{err}");
    assert!(err.is_unavailable(), "{err:?}");
}

#[test]
fn serializable_reads_never_go_back_in_time() {
    let cluster = common::alone_with_peer_proxies(3);
    let leader = cluster.leader().expect("leader");
    let lagging = (leader + 1) % 3;
    // Probes so rare that the client keeps using the lagging member: only the revision
    // check can keep its stale answers out. Not preferring the leader, so that a
    // transaction of serializable gets, which etcd serves anywhere, goes round-robin too.
    let client = Client::builder()
        .endpoints([cluster.endpoint(leader), cluster.endpoint(lagging)])
        .probe_interval(Duration::from_secs(600))
        .prefer_leader(false)
        .connect()
        .expect("connect");
    all_healthy(&cluster, &client);
    let kv = client.kv();
    kv.put("k", "1").expect("put");
    cluster.isolate(lagging).expect("isolate");
    let majority = Client::connect([cluster.endpoint(leader)]).expect("connect");
    let newer = majority
        .kv()
        .put("k", "2")
        .expect("put")
        .header()
        .revision();
    // Serializable reads reach the up-to-date member half of the time: once one has
    // answered, the client has seen the newer revision.
    cluster
        .wait_until(
            Duration::from_secs(10),
            "a read to see the newer revision",
            || {
                kv.get_with("k", GetOptions::new().serializable())
                    .is_ok_and(|g| g.header().revision() >= newer)
            },
        )
        .expect("seen");
    for _ in 0..30 {
        let got = kv
            .get_with("k", GetOptions::new().serializable())
            .expect("get");
        assert!(
            got.header().revision() >= newer,
            "went back from {newer} to {}",
            got.header().revision()
        );
        assert_eq!(got.first().map(|kv| kv.value()), Some(&b"2"[..]));
        // A user's transaction of serializable gets is held to the same floor.
        let txn = kv
            .txn(Txn::new().and_then([TxnOp::get_with("k", GetOptions::new().serializable())]))
            .expect("txn");
        assert!(
            txn.header().revision() >= newer,
            "a transaction went back from {newer} to {}",
            txn.header().revision()
        );
    }
    assert_eq!(
        health_of(&client, &cluster.endpoint(lagging)),
        Health::Healthy,
        "the lagging member was still in use: the revision check did the work"
    );
    cluster.heal().expect("heal");
}

#[test]
fn auto_sync_adds_members_and_drops_endpoints_that_are_not_members() {
    let cluster = alone(3);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let not_a_member = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let client = Client::builder()
        .endpoints([cluster.endpoint(0), not_a_member.clone()])
        .auto_sync_interval(Duration::from_millis(100))
        .connect()
        .expect("connect");
    let mut members = cluster.endpoints();
    members.sort();
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the endpoints to match the members",
            || {
                let mut now = client.endpoints();
                now.sort();
                now == members
            },
        )
        .unwrap_or_else(|e| panic!("{:?}: {e}", client.endpoints()));
    assert!(!client.endpoints().contains(&not_a_member));
    cluster
        .wait_until(
            Duration::from_secs(10),
            "every synced endpoint to be healthy",
            || {
                let health = client.endpoint_health();
                health.len() == 3 && health.iter().all(|h| h.health() == Health::Healthy)
            },
        )
        .expect("healthy");
    let served: HashSet<u64> = (0..12)
        .map(|_| {
            let got = client.kv().get_with("k", GetOptions::new().serializable());
            got.expect("get").header().member_id()
        })
        .collect();
    assert_eq!(served.len(), 3, "the added members serve calls");
}

#[test]
fn writes_and_linearizable_reads_go_to_the_leader_by_default() {
    let cluster = alone(3);
    let client = Client::connect(cluster.endpoints()).expect("connect");
    let leader = cluster.leader().expect("leader");
    let leader_id = cluster.member_id(leader).expect("leader id");
    let kv = client.kv();
    cluster
        .wait_until(Duration::from_secs(10), "calls to reach the leader", || {
            (0..6).all(|_| {
                kv.get("k")
                    .is_ok_and(|g| g.header().member_id() == leader_id)
                    && kv
                        .put("k", "v")
                        .is_ok_and(|p| p.header().member_id() == leader_id)
            })
        })
        .expect("leader preferred");
    let spread = Client::builder()
        .endpoints(cluster.endpoints())
        .prefer_leader(false)
        .connect()
        .expect("connect");
    cluster
        .wait_until(
            Duration::from_secs(10),
            "round-robin to reach every member",
            || {
                let members: HashSet<u64> = (0..12)
                    .filter_map(|_| spread.kv().get("k").ok())
                    .map(|g| g.header().member_id())
                    .collect();
                members.len() == 3
            },
        )
        .expect("round-robin without the preference");
}
