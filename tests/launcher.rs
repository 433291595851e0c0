//! The test-cluster launcher itself: start, leader, kill, terminate, pause, resume, restart,
//! teardown, and its reports when etcd is missing or will not start.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{client, cluster};
use etcd_blocking::testing::{Cluster, LaunchError, ServerVersion};
use etcd_blocking::GetOptions;

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would still have one.
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_three_member_cluster_has_distinct_endpoints_and_one_leader() {
    let cluster = cluster(3);
    let endpoints = cluster.endpoints();
    assert_eq!(endpoints.len(), 3);
    assert!(endpoints.iter().all(|e| e.starts_with("127.0.0.1:")));
    let unique: std::collections::HashSet<&String> = endpoints.iter().collect();
    assert_eq!(unique.len(), 3);
    let leader = cluster.leader().expect("leader");
    assert!(leader < 3);
    let ids: Vec<u64> = (0..3)
        .map(|i| cluster.member_id(i).expect("member id"))
        .collect();
    assert!(ids.iter().all(|&id| id != 0) && ids[0] != ids[1] && ids[1] != ids[2]);
    // Each member serves the cluster's data.
    let client = client(&cluster);
    let rev = client.kv().put("k", "v").expect("put").header().revision();
    for endpoint in &endpoints {
        let one = etcd_blocking::Client::connect([endpoint]).expect("connect one");
        let got = one.kv().get("k").expect("linearizable get");
        assert_eq!(got.header().revision(), rev, "{endpoint}");
    }
}

#[test]
fn killing_the_leader_elects_another_and_restart_rejoins_with_its_data() {
    let cluster = cluster(3);
    let client = client(&cluster);
    let rev = client
        .kv()
        .put("k", "before")
        .expect("put")
        .header()
        .revision();
    let old = cluster.leader().expect("leader");
    let pid = cluster.pid(old).expect("pid");
    cluster.kill(old).expect("kill");
    assert!(!alive(pid), "a killed member is reaped");
    assert!(cluster.pid(old).is_none());
    let new = cluster.leader().expect("a new leader");
    assert_ne!(new, old);

    cluster.restart(old).expect("restart");
    cluster.wait_healthy().expect("healthy again");
    // The restarted member kept its data: a serializable read served by it alone.
    let alone = etcd_blocking::Client::connect([cluster.endpoint(old)]).expect("connect");
    let mut got = None;
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the restarted member to catch up",
            || {
                got = alone
                    .kv()
                    .get_with("k", GetOptions::new().serializable())
                    .ok();
                got.as_ref().is_some_and(|g| g.count() == 1)
            },
        )
        .expect("caught up");
    let got = got.expect("read");
    assert_eq!(got.first().map(|kv| kv.mod_revision()), Some(rev));
    assert_eq!(
        got.header().member_id(),
        cluster.member_id(old).expect("id")
    );
}

#[test]
fn a_terminated_leader_exits_on_its_own_and_restarts_with_its_data() {
    let cluster = cluster(3);
    let client = client(&cluster);
    let old = cluster.leader().expect("leader");
    let pid = cluster.pid(old).expect("pid");
    assert!(
        cluster.terminate(old).expect("terminate"),
        "etcd exits on SIGTERM by itself, without the SIGKILL that follows 10 s later"
    );
    assert!(!alive(pid), "a terminated member is reaped");
    assert!(cluster.pid(old).is_none());
    let new = cluster.leader().expect("a new leader");
    assert_ne!(new, old);
    let rev = client
        .kv()
        .put("k", "after")
        .expect("put")
        .header()
        .revision();
    cluster.restart(old).expect("restart");
    cluster.wait_healthy().expect("healthy again");
    let alone = etcd_blocking::Client::connect([cluster.endpoint(old)]).expect("connect");
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the restarted member to catch up",
            || {
                alone
                    .kv()
                    .get("k")
                    .is_ok_and(|g| g.header().revision() >= rev)
            },
        )
        .expect("caught up");
}

#[test]
fn a_paused_member_stops_answering_until_resumed() {
    let cluster = cluster(3);
    let follower = (cluster.leader().expect("leader") + 1) % 3;
    let one = etcd_blocking::Client::connect([cluster.endpoint(follower)]).expect("connect");
    let kv = one.kv().with_timeout(Duration::from_millis(200));
    kv.get("k").expect("answers while running");
    cluster.pause(follower).expect("pause");
    // The call times out on the member, or the balancer finds it hung first.
    assert!(matches!(
        kv.get("k"),
        Err(etcd_blocking::Error::DeadlineExceeded { .. }
            | etcd_blocking::Error::NoHealthyEndpoint { .. })
    ));
    assert!(matches!(
        cluster.pause(follower),
        Err(LaunchError::Member { .. })
    ));
    cluster.resume(follower).expect("resume");
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the resumed member to answer",
            || kv.get("k").is_ok(),
        )
        .expect("answers again");
    assert!(matches!(
        cluster.resume(follower),
        Err(LaunchError::Member { .. })
    ));
}

#[test]
fn losing_quorum_stops_writes_and_restarting_restores_them() {
    let cluster = cluster(3);
    let leader = cluster.leader().expect("leader");
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    cluster.kill(others[0]).expect("kill");
    cluster.kill(others[1]).expect("kill");
    let lone = etcd_blocking::Client::connect([cluster.endpoint(leader)]).expect("connect");
    let kv = lone.kv().with_timeout(Duration::from_millis(500));
    let err = kv.put("during", "v").expect_err("no quorum, no write");
    assert!(
        err.is_unavailable() || err.is_deadline_exceeded() || err.is_write_outcome_unknown(),
        "{err:?}"
    );
    cluster.restart(others[0]).expect("restart");
    cluster.restart(others[1]).expect("restart");
    cluster.wait_healthy().expect("healthy");
    cluster
        .wait_until(Duration::from_secs(10), "a write to succeed", || {
            kv.put("k", "v").is_ok()
        })
        .expect("writes again");
    // A write through the old leader went through: whatever its log held is decided.
    common::failed_write_absent(&cluster, "during", &err);
}

#[test]
fn dropping_the_cluster_kills_every_member_and_removes_its_data() {
    let cluster = cluster(3);
    let pids: Vec<u32> = (0..3).map(|i| cluster.pid(i).expect("pid")).collect();
    let dir = cluster.dir().to_owned();
    assert!(dir.is_dir());
    cluster.pause(1).expect("a paused member is killed too");
    drop(cluster);
    for pid in pids {
        assert!(!alive(pid), "member {pid} still runs");
    }
    assert!(!dir.exists(), "{dir:?} remains");
}

#[test]
fn the_launcher_reports_the_version_its_members_run() {
    let cluster = cluster(1);
    let version = cluster.server_version();
    eprintln!("etcd {version} from {}", cluster.etcd_binary().display());
    // The binary's own word, against what the running member said in its status.
    let out = std::process::Command::new(cluster.etcd_binary())
        .arg("--version")
        .output()
        .expect("etcd --version");
    let text = String::from_utf8_lossy(&out.stdout);
    let printed = text
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version: "))
        .and_then(ServerVersion::parse);
    assert_eq!(printed, Some(version), "{text}");
    assert!(version >= ServerVersion::new(3, 4, 0), "{version}");
    // The project's scripts say which version they chose.
    let chosen = std::env::var("ETCD_VERSION").ok();
    if let Some(line) = chosen.filter(|l| l.starts_with(|c: char| c.is_ascii_digit())) {
        assert!(
            version.to_string().starts_with(line.as_str()),
            "ETCD_VERSION={line} but the members run {version}"
        );
    }
}

#[test]
fn a_missing_etcd_binary_says_how_to_install_it() {
    let err = Cluster::builder()
        .etcd_binary("/nonexistent/etcd")
        .start()
        .expect_err("no binary");
    assert!(matches!(err, LaunchError::EtcdMissing));
    let text = err.to_string();
    assert!(
        text.contains("ETCD_BIN") && text.contains("scripts/test"),
        "{text}"
    );
}

#[test]
fn a_member_that_will_not_start_is_reported_with_its_log() {
    let err = Cluster::builder()
        .arg("--no-such-flag-anywhere")
        .start()
        .expect_err("etcd refuses an unknown flag");
    match &err {
        LaunchError::StartFailed { logs, .. } => {
            assert!(logs.contains("no-such-flag-anywhere"), "{logs}");
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
}

#[test]
fn bad_sizes_and_member_indexes_are_refused() {
    assert!(matches!(Cluster::start(0), Err(LaunchError::Size(0))));
    assert!(matches!(Cluster::start(8), Err(LaunchError::Size(8))));
    let cluster = cluster(1);
    assert!(matches!(
        cluster.kill(5),
        Err(LaunchError::Member { index: 5, .. })
    ));
    assert!(matches!(
        cluster.restart(0),
        Err(LaunchError::Member { index: 0, .. })
    ));
}

#[test]
fn an_isolated_member_loses_its_leader_and_rejoins_when_healed() {
    let cluster = common::cluster_with_peer_proxies(3);
    let cut = (cluster.leader().expect("leader") + 1) % 3;
    let alone = etcd_blocking::Client::builder()
        .endpoints([cluster.endpoint(cut)])
        .request_timeout(Duration::from_millis(300))
        .connect()
        .expect("connect");
    let others = etcd_blocking::Client::builder()
        .endpoints((0..3).filter(|&i| i != cut).map(|i| cluster.endpoint(i)))
        .connect()
        .expect("connect");
    others.kv().put("k", "1").expect("put");
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the member to see the write",
            || {
                alone
                    .kv()
                    .get_with("k", GetOptions::new().serializable())
                    .is_ok_and(|g| g.count() == 1)
            },
        )
        .expect("replicated");

    cluster.isolate(cut).expect("isolate");
    others
        .kv()
        .put("k", "2")
        .expect("the majority still writes");
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the cut-off member to fail reads",
            || alone.kv().get("k").is_err(),
        )
        .expect("linearizable reads fail");
    // A client that has not seen the revision of "2" gets the member's stale answer, if it
    // asks before its balancer has judged the leaderless member unhealthy (after which it
    // sends nothing there): ask with fresh clients until one does.
    let mut stale = None;
    cluster
        .wait_until(
            Duration::from_secs(10),
            "a serializable read of the cut-off member",
            || {
                let fresh = etcd_blocking::Client::connect([cluster.endpoint(cut)]);
                stale = fresh
                    .ok()
                    .and_then(|c| c.kv().get_with("k", GetOptions::new().serializable()).ok());
                stale.is_some()
            },
        )
        .expect("a serializable read served");
    let stale = stale.expect("a read");
    assert_eq!(stale.first().map(|kv| kv.value()), Some(&b"1"[..]));

    cluster.heal().expect("heal");
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the healed member to catch up",
            || {
                alone
                    .kv()
                    .get("k")
                    .is_ok_and(|g| g.first().is_some_and(|kv| kv.value() == b"2"))
            },
        )
        .expect("caught up");
}

#[test]
fn a_blackholed_proxy_keeps_connections_open_and_answers_nothing() {
    let cluster = cluster(1);
    let proxy = etcd_blocking::testing::Proxy::start(0, cluster.client_port(0)).expect("proxy");
    let client = etcd_blocking::Client::builder()
        .endpoints([proxy.endpoint()])
        .request_timeout(Duration::from_millis(300))
        .connect()
        .expect("connect through the proxy");
    client.kv().put("k", "v").expect("put through the proxy");
    proxy.blackhole();
    // A connection to it is taken and kept open, and nothing comes back: a read times
    // out, where a closed connection would read end-of-file or a reset.
    {
        use std::io::{Read, Write};
        let mut raw = std::net::TcpStream::connect(proxy.endpoint()).expect("connect");
        raw.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .expect("the black hole takes bytes");
        raw.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("read timeout");
        let mut buf = [0u8; 64];
        match raw.read(&mut buf) {
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the connection failed instead of staying open: {e}"
            ),
            Ok(0) => panic!("the black hole closed the connection"),
            Ok(n) => panic!("the black hole answered {n} bytes"),
        }
    }
    let err = client
        .kv()
        .get("k")
        .expect_err("a black hole answers nothing");
    // The call waited for an answer that never came (a closed connection would fail
    // it at once as unavailable), or the balancer found the endpoint answering nothing.
    assert!(
        err.is_deadline_exceeded() || matches!(err, etcd_blocking::Error::NoHealthyEndpoint { .. }),
        "{err:?}"
    );
    proxy.pass();
    cluster
        .wait_until(
            Duration::from_secs(10),
            "calls through the proxy to work again",
            || client.kv().get("k").is_ok(),
        )
        .expect("passes again");
}
