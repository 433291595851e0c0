//! No panic, no silent death, no false alarm: every duration setting at its extremes, a
//! balancer worker that panics, close waiting for calls by their own deadlines, and a
//! blackholed leader port that must not fail writes on healthy followers.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{all_healthy, alone};
use etcd_blocking::testing::{Cluster, Proxy};
use etcd_blocking::{Client, ClientBuilder, Error, Health};

/// A loopback port nothing listens on.
fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    addr
}

/// Waits until the balancer has probed `dead` and found it unhealthy: only a live worker
/// does that, as the test makes no call to it.
fn worker_alive(cluster: &Cluster, client: &Client, dead: &str, what: &str) {
    cluster
        .wait_until(Duration::from_secs(10), what, || {
            client
                .endpoint_health()
                .iter()
                .any(|h| h.endpoint() == dead && h.health() == Health::Unhealthy)
        })
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

#[test]
fn every_duration_setting_takes_zero_one_nanosecond_and_the_maximum() {
    let cluster = alone(1);
    type Set = fn(ClientBuilder, Duration) -> ClientBuilder;
    let settings: [(&str, Set); 7] = [
        ("dial timeout", |b, d| b.dial_timeout(d)),
        ("request timeout", |b, d| b.request_timeout(d)),
        ("keepalive time", |b, d| b.keepalive_time(d)),
        ("keepalive timeout", |b, d| b.keepalive_timeout(d)),
        ("probe interval", |b, d| b.probe_interval(d)),
        ("probe timeout", |b, d| b.probe_timeout(d)),
        ("auto-sync interval", |b, d| b.auto_sync_interval(d)),
    ];
    for (name, set) in settings {
        for d in [Duration::ZERO, Duration::from_nanos(1), Duration::MAX] {
            let dead = dead_endpoint();
            let builder = set(
                Client::builder().endpoints([cluster.endpoint(0), dead.clone()]),
                d,
            );
            let result = builder.connect();
            let below_keepalive_floor = name == "keepalive time" && d < Duration::from_secs(5);
            if d.is_zero() || below_keepalive_floor {
                match result {
                    Err(Error::InvalidArgument { argument, .. }) => assert_eq!(argument, name),
                    other => panic!("{name} {d:?}: expected InvalidArgument, got {other:?}"),
                }
                continue;
            }
            let client = match result {
                Ok(client) => client,
                // One nanosecond to connect is too short to connect in.
                Err(Error::ConnectFailed { .. }) if name == "dial timeout" => continue,
                Err(e) => panic!("{name} {d:?}: {e:?}"),
            };
            let what = format!("the worker to probe with {name} {d:?}");
            if name == "auto-sync interval" && d < Duration::MAX {
                // The worker syncs the table to the member list: the dead endpoint goes.
                cluster
                    .wait_until(Duration::from_secs(10), &what, || {
                        client.endpoints() == [cluster.endpoint(0)]
                    })
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            } else {
                worker_alive(&cluster, &client, &dead, &what);
            }
            let key = format!("setting/{name}/{d:?}");
            let put = client.kv().put(key.as_str(), "v");
            let one_ns_call = name == "request timeout" || name == "probe timeout";
            if d == Duration::MAX || !one_ns_call {
                put.unwrap_or_else(|e| panic!("{name} {d:?}: {e:?}"));
            } else if let Err(e) = put {
                // Too short to answer in: a typed failure, never a hang or a panic; and
                // unless the outcome is unknown, not applied.
                assert!(
                    e.is_deadline_exceeded()
                        || e.is_write_outcome_unknown()
                        || matches!(e, Error::NoHealthyEndpoint { .. }),
                    "{name} {d:?}: {e:?}"
                );
                common::failed_write_absent(&cluster, &key, &e);
            }
            client
                .close()
                .unwrap_or_else(|e| panic!("{name} {d:?}: {e}"));
        }
    }
}

#[test]
fn every_handle_timeout_takes_zero_one_nanosecond_and_the_maximum() {
    let cluster = alone(1);
    let client = Client::connect(cluster.endpoints()).expect("connect");
    let kv = client.kv();
    let lease = client.lease();
    for d in [Duration::ZERO, Duration::from_nanos(1), Duration::MAX] {
        let key = format!("handle/{d:?}");
        let put = kv.with_timeout(d).put(key.as_str(), "v");
        let leases = lease.with_timeout(d).leases();
        if d.is_zero() {
            assert!(matches!(put, Err(Error::InvalidArgument { .. })), "{put:?}");
            assert!(
                matches!(leases, Err(Error::InvalidArgument { .. })),
                "{leases:?}"
            );
        } else if d == Duration::MAX {
            put.expect("put with the longest deadline");
            leases.expect("leases with the longest deadline");
        } else {
            if let Err(e) = put {
                assert!(
                    e.is_write_outcome_unknown() || e.is_deadline_exceeded(),
                    "{e:?}"
                );
                common::failed_write_absent(&cluster, &key, &e);
            }
            if let Err(e) = leases {
                assert!(e.is_deadline_exceeded(), "{e:?}");
            }
        }
    }
    client.close().expect("close");
}

#[test]
fn a_panicking_balancer_worker_is_restarted_and_then_reported() {
    let cluster = alone(1);
    let dead = dead_endpoint();
    let client = Client::builder()
        .endpoints([cluster.endpoint(0), dead.clone()])
        .connect()
        .expect("connect");
    worker_alive(&cluster, &client, &dead, "the worker's first probes");
    // Five panics in a row: each is restarted, and the worker goes on probing.
    client.inject_balancer_panic(5).expect("inject");
    cluster.pause(0).expect("pause");
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the restarted worker to find the paused member",
            || client.endpoint_health()[0].health() == Health::Unhealthy,
        )
        .expect("probed after the restarts");
    cluster.resume(0).expect("resume");
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the restarted worker to find it back",
            || client.endpoint_health()[0].health() == Health::Healthy,
        )
        .expect("probed after the restarts");
    client.kv().put("k", "v").expect("the client works on");
    // A sixth in a row is one too many: the client says so on every call.
    client.inject_balancer_panic(1).expect("inject");
    cluster
        .wait_until(
            Duration::from_secs(10),
            "calls to report the dead worker",
            || {
                matches!(
                    client.kv().get("k"),
                    Err(Error::BackgroundThread {
                        thread: "etcd-balancer",
                        ..
                    })
                )
            },
        )
        .expect("reported");
    let err = client.kv().put("k", "v").expect_err("no balancer, no call");
    assert!(err.to_string().contains("etcd-balancer"), "{err}");
    client.close().expect("close");
}

/// The state letter of a thread of this process (`S` while it sleeps), from /proc.
fn thread_state(tid: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let after = stat.rsplit_once(") ")?.1;
    after.chars().next()
}

#[test]
fn close_waits_for_a_call_in_flight_until_its_own_deadline() {
    let cluster = alone(1);
    // Probes a minute apart: nothing but the call's deadline ends it.
    let client = Client::builder()
        .endpoints(cluster.endpoints())
        .request_timeout(Duration::from_millis(100))
        .probe_interval(Duration::from_secs(60))
        .probe_timeout(Duration::from_secs(60))
        .connect()
        .expect("connect");
    client.kv().put("k", "v").expect("put");
    cluster.pause(0).expect("pause");
    let long = Duration::from_secs(4);
    let kv = client.kv().with_timeout(long);
    let tid = Arc::new(std::sync::Mutex::new(None::<String>));
    let t = tid.clone();
    let caller = std::thread::spawn(move || {
        let me = std::fs::read_link("/proc/thread-self").expect("thread-self");
        *t.lock().expect("tid") = me.file_name().map(|n| n.to_string_lossy().into_owned());
        let started = Instant::now();
        (kv.get("k"), started.elapsed())
    });
    cluster
        .wait_until(
            Duration::from_secs(10),
            "the call to wait on the member",
            || {
                tid.lock()
                    .expect("tid")
                    .as_deref()
                    .and_then(thread_state)
                    .is_some_and(|s| s == 'S')
            },
        )
        .expect("in flight");
    let closing = Instant::now();
    client
        .close()
        .expect("close waits for the call instead of timing out");
    let (result, took) = caller.join().expect("caller");
    assert!(
        matches!(&result, Err(e) if e.is_deadline_exceeded()),
        "the call ran to its own deadline: {result:?}"
    );
    assert!(took >= long, "{took:?}");
    assert!(
        closing.elapsed() >= long / 2,
        "close returned before the call ended"
    );
    cluster.resume(0).expect("resume");
}

#[test]
fn a_blackholed_leader_port_fails_no_write_on_a_follower() {
    let cluster = alone(3);
    let proxies: Vec<Proxy> = (0..3)
        .map(|i| Proxy::start(0, cluster.client_port(i)).expect("proxy"))
        .collect();
    let client = Client::builder()
        .endpoints(proxies.iter().map(Proxy::endpoint))
        .connect()
        .expect("connect");
    all_healthy(&cluster, &client);
    let leader = cluster.leader().expect("leader");
    let leader_id = cluster.member_id(leader).expect("leader id");
    let kv = client.kv();
    cluster
        .wait_until(
            Duration::from_secs(10),
            "writes to go to the leader",
            || {
                kv.put("k", "v")
                    .is_ok_and(|p| p.header().member_id() == leader_id)
            },
        )
        .expect("leader known");
    proxies[leader].blackhole();
    let blackholed = proxies[leader].endpoint();
    // Eight probe intervals (500 ms each) of writes from four threads: the leader keeps
    // leading, so a write on a follower has no reason to fail.
    let until = Instant::now() + Duration::from_secs(4);
    let succeeded = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (kv, succeeded) = (kv.clone(), succeeded.clone());
            let blackholed = blackholed.clone();
            std::thread::spawn(move || {
                let mut wrong = Vec::new();
                let mut i = 0;
                while Instant::now() < until {
                    match kv.put(format!("w{w}/{i}"), "v") {
                        Ok(_) => {
                            succeeded.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.endpoint() == Some(blackholed.as_str()) => {}
                        Err(e) => wrong.push(e.to_string()),
                    }
                    i += 1;
                }
                wrong
            })
        })
        .collect();
    let wrong: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer"))
        .collect();
    assert!(
        wrong.is_empty(),
        "writes failed off the blackholed endpoint: {wrong:?}"
    );
    assert!(
        succeeded.load(Ordering::Relaxed) > 0,
        "no write succeeded on a follower"
    );
    assert_eq!(
        cluster.leader().expect("leader"),
        leader,
        "the leader kept leading"
    );
    proxies[leader].pass();
}
