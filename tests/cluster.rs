//! Cluster membership against real etcd: members added as voters and learners by the
//! launcher and seen through `client.cluster()`, a learner promoted once it has caught up,
//! the leader's own member removed, peer URLs updated, bad input refused before anything
//! is sent, and the endpoints following a change made through the client.

mod common;

use std::time::Duration;

use etcd_blocking::testing::Cluster;
use etcd_blocking::{Error, GetOptions, ServerCode};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn a_learner_is_added_serves_no_linearizable_call_and_is_promoted() {
    let cluster = common::cluster(1);
    let index = cluster.add_learner().expect("a learner joins");
    let client = cluster.client().expect("a client of both members");
    let id = cluster.member_id(index).expect("the learner's ID");
    let members = client.cluster().member_list().expect("member list");
    let learner = members
        .members
        .iter()
        .find(|m| m.id == id)
        .expect("the learner is listed");
    assert!(learner.is_learner, "{learner:?}");
    assert_eq!(members.members.len(), 2, "{members:?}");
    let status = client
        .maintenance()
        .status(&cluster.endpoint(index))
        .expect("a learner answers Status");
    assert_eq!(status.member_id(), id);
    assert_eq!(status.is_learner, Some(true), "{status:?}");
    // Linearizable calls through a client that has the learner's endpoint: every one
    // succeeds (the learner refuses them, and the client takes that as "not this member").
    let kv = client.kv();
    for i in 0..50 {
        kv.put(format!("l/{i}"), "v")
            .expect("a put beside a learner");
        kv.get(format!("l/{i}"))
            .expect("a linearizable get beside a learner");
    }
    // The learner serves serializable reads of what it has caught up with.
    let learner_only = cluster
        .client_builder()
        .endpoints([cluster.endpoint(index)])
        .connect()
        .expect("a client of the learner alone");
    // Once probed, the learner is no use for linearizable calls (its probe is one), yet
    // it still serves serializable reads.
    common::eventually("the learner's probe to find it a learner", WAIT, || {
        let health = learner_only.endpoint_health();
        health[0].reason().contains("learner").then_some(())
    });
    common::eventually("the learner to catch up", WAIT, || {
        let r = learner_only
            .kv()
            .get_with("l/49", GetOptions::new().serializable())
            .ok()?;
        (r.count() == 1).then_some(())
    });
    // Promoted once in sync: the leader may say "not ready" for a while.
    let after = common::eventually("the learner to be promoted", WAIT, || {
        match client.cluster().member_promote(id) {
            Ok(members) => Some(members),
            Err(e) if e.code() == Some(ServerCode::LearnerNotReady) => None,
            Err(e) => panic!("promote: {e}"),
        }
    });
    assert!(
        after.iter().all(|m| !m.is_learner),
        "no learner is left: {after:?}"
    );
    let again = client
        .cluster()
        .member_promote(id)
        .expect_err("a voter again");
    assert_eq!(
        again.code(),
        Some(ServerCode::MemberNotLearner),
        "{again:?}"
    );
    cluster.wait_healthy().expect("both vote");
}

#[test]
fn the_leader_removes_its_own_member_and_the_cluster_goes_on() {
    let cluster = common::cluster(3);
    let client = cluster.client().expect("client");
    let leader = cluster.leader().expect("a leader");
    let id = cluster.member_id(leader).expect("the leader's ID");
    cluster.remove_member(leader).expect("remove the leader");
    let members = client.cluster().member_list().expect("member list");
    assert_eq!(members.members.len(), 2, "{members:?}");
    assert!(members.members.iter().all(|m| m.id != id), "{members:?}");
    // A put sent while the leader steps down may end of unknown outcome; one ends well
    // once the others have elected a leader.
    common::eventually("a put to succeed after the removal", WAIT, || {
        client.kv().put("after-removal", "x").ok()
    });
    let new = cluster.leader().expect("a new leader");
    assert_ne!(new, leader);
}

#[test]
fn a_member_added_as_voter_joins_and_catches_up() {
    let cluster = common::cluster(1);
    let client = cluster.client().expect("client");
    for i in 0..20 {
        client.kv().put(format!("c/{i}"), "v").expect("put");
    }
    let index = cluster.add_member().expect("a voter joins");
    cluster
        .wait_healthy()
        .expect("two members agree on a leader");
    let members = client.cluster().member_list().expect("member list");
    assert_eq!(members.members.len(), 2);
    assert!(members
        .members
        .iter()
        .all(|m| m.is_started() && !m.is_learner));
    let joined = cluster
        .client_builder()
        .endpoints([cluster.endpoint(index)])
        .connect()
        .expect("a client of the new member");
    let r = joined
        .kv()
        .get_with("c/", GetOptions::new().prefix())
        .expect("a linearizable read from the new member");
    assert_eq!(r.count(), 20, "it has every key");
}

#[test]
fn peer_urls_are_updated_and_bad_input_is_refused_before_it_is_sent() {
    let cluster = common::cluster(1);
    let client = cluster.client().expect("client");
    let api = client.cluster();
    let id = cluster.member_id(0).expect("ID");
    // A single member needs no peer: its advertised peer URL may change freely.
    let url = "http://127.0.0.1:1".to_owned();
    let members = api.member_update(id, [url.as_str()]).expect("update");
    assert_eq!(members[0].peer_urls, std::slice::from_ref(&url));
    let listed = api.member_list().expect("list");
    assert_eq!(listed.members[0].peer_urls, [url]);
    for bad in [
        vec![],
        vec!["127.0.0.1:2380"],
        vec!["http://127.0.0.1:2380/x"],
    ] {
        let err = api.member_add(bad.clone()).expect_err("refused");
        assert!(
            matches!(
                err,
                Error::InvalidArgument {
                    argument: "peer URLs",
                    ..
                }
            ),
            "{bad:?}: {err:?}"
        );
    }
    let err = api.member_remove(0x1234).expect_err("no such member");
    assert_eq!(err.code(), Some(ServerCode::MemberNotFound), "{err:?}");
    let err = api.member_promote(id).expect_err("a voter");
    assert_eq!(err.code(), Some(ServerCode::MemberNotLearner), "{err:?}");
    // The member list's serializable form answers too.
    let local = api.member_list_serializable().expect("serializable list");
    assert_eq!(local.members.len(), 1);
}

/// With auto-sync on, a member removed through this client leaves its endpoints at once,
/// not at the next sync (an hour away here).
#[test]
fn the_endpoints_follow_a_removal_made_through_the_client() {
    let cluster: Cluster = common::cluster(3);
    let client = cluster
        .client_builder()
        .auto_sync_interval(Duration::from_secs(3600))
        .connect()
        .expect("client");
    let leader = cluster.leader().expect("leader");
    let gone = (leader + 1) % 3;
    let id = cluster.member_id(gone).expect("ID");
    let target = cluster
        .endpoint(gone)
        .trim_start_matches("https://")
        .to_owned();
    assert!(client.endpoints().contains(&target));
    // etcd refuses membership changes until its links to the others are 5 s old
    // ("unhealthy cluster"): the client retries that refusal within the call's deadline.
    client
        .cluster()
        .with_timeout(WAIT)
        .member_remove(id)
        .expect("remove");
    common::eventually("the endpoints to drop the removed member", WAIT, || {
        (!client.endpoints().contains(&target)).then_some(())
    });
    assert_eq!(client.endpoints().len(), 2, "{:?}", client.endpoints());
}
