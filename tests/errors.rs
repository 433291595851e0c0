//! Bad input and failures: each answered by a typed error, never a panic, a hang or a silent
//! success.

mod common;

use std::time::{Duration, Instant};

use common::{client, cluster};
use etcd_blocking::{
    Client, CompactOptions, Error, GetOptions, PutOptions, ServerCode, Txn, TxnOp,
};

#[test]
fn an_empty_key_is_refused_by_the_server() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    for result in [
        kv.put("", "v").map(drop),
        kv.get("").map(drop),
        kv.delete("").map(drop),
        kv.txn(Txn::new().and_then([TxnOp::put("", "v")])).map(drop),
    ] {
        let err = result.expect_err("an empty key must fail");
        assert_eq!(err.code(), Some(ServerCode::KeyNotProvided), "{err}");
        assert_eq!(err.endpoint(), Some(cluster.endpoint(0).as_str()));
    }
}

#[test]
fn a_value_over_the_request_limits_is_refused() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    // Over etcd's default --max-request-bytes (1.5 MiB), under the client's 2 MiB.
    let err = kv
        .put("big", vec![b'x'; 1_600_000])
        .expect_err("too large for etcd");
    assert_eq!(err.code(), Some(ServerCode::RequestTooLarge), "{err}");
    assert!(err.is_request_too_large());
    // Over the client's own send limit: refused before it reaches etcd.
    let err = kv
        .put("bigger", vec![b'x'; 3 << 20])
        .expect_err("too large to send");
    assert!(matches!(err, Error::MessageTooLarge { .. }), "{err:?}");
    assert!(err.is_request_too_large());
    assert!(
        kv.get("big").expect("get").kvs().is_empty(),
        "nothing was written"
    );
}

#[test]
fn a_txn_over_the_operation_limit_is_refused_and_one_at_it_passes() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let ops = |n: usize| (0..n).map(|i| TxnOp::put(format!("k{i}"), "v"));
    let err = kv
        .txn(Txn::new().and_then(ops(129)))
        .expect_err("129 operations");
    assert_eq!(err.code(), Some(ServerCode::TooManyOps), "{err}");
    assert!(
        kv.get("k0").expect("get").kvs().is_empty(),
        "nothing was written"
    );
    let ok = kv
        .txn(Txn::new().and_then(ops(128)))
        .expect("128 operations");
    assert_eq!(ok.responses().len(), 128);
}

#[test]
fn a_txn_writing_one_key_twice_is_refused() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let err = kv
        .txn(Txn::new().and_then([TxnOp::put("k", "1"), TxnOp::put("k", "2")]))
        .expect_err("duplicate key");
    assert_eq!(err.code(), Some(ServerCode::DuplicateKey), "{err}");
}

#[test]
fn reads_at_compacted_and_future_revisions_are_refused() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    let first = kv.put("k", "1").expect("put").header().revision();
    let last = kv.put("k", "2").expect("put").header().revision();
    kv.compact(last).expect("compact");
    let err = kv
        .get_with("k", GetOptions::new().revision(first))
        .expect_err("compacted");
    assert_eq!(err.code(), Some(ServerCode::Compacted), "{err}");
    let err = kv
        .get_with("k", GetOptions::new().revision(last + 100))
        .expect_err("future");
    assert_eq!(err.code(), Some(ServerCode::FutureRevision), "{err}");
}

#[test]
fn leases_that_do_not_exist_are_reported() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let err = client.lease().revoke(12345).expect_err("no such lease");
    assert_eq!(err.code(), Some(ServerCode::LeaseNotFound), "{err}");
    let err = client
        .kv()
        .put_with("k", "v", PutOptions::new().lease(12345))
        .expect_err("put");
    assert_eq!(err.code(), Some(ServerCode::LeaseNotFound), "{err}");
    let ttl = client
        .lease()
        .time_to_live(12345)
        .expect("ttl of a missing lease");
    assert_eq!(ttl.ttl(), None);
}

#[test]
fn arguments_that_cannot_be_right_are_refused_before_sending() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let kv = client.kv();
    let refused = |result: Result<(), Error>, argument: &str| match result {
        Err(Error::InvalidArgument { argument: a, .. }) => assert_eq!(a, argument),
        other => panic!("{argument}: expected InvalidArgument, got {other:?}"),
    };
    refused(
        kv.get_with("k", GetOptions::new().limit(-1)).map(drop),
        "limit",
    );
    refused(
        kv.get_with("k", GetOptions::new().revision(-5)).map(drop),
        "revision",
    );
    refused(
        kv.get_with("k", GetOptions::new().min_mod_revision(-1))
            .map(drop),
        "min mod revision",
    );
    refused(
        kv.put_with("k", "v", PutOptions::new().lease(-1)).map(drop),
        "lease",
    );
    refused(kv.compact(0).map(drop), "compaction revision");
    refused(
        kv.compact_with(-3, CompactOptions::new()).map(drop),
        "compaction revision",
    );
    refused(
        kv.with_timeout(Duration::ZERO).get("k").map(drop),
        "timeout",
    );
    refused(client.lease().grant(Duration::ZERO).map(drop), "lease TTL");
    refused(
        client
            .lease()
            .with_timeout(Duration::ZERO)
            .revoke(1)
            .map(drop),
        "timeout",
    );
    refused(
        kv.txn(Txn::new().and_then([TxnOp::get_with("k", GetOptions::new().limit(-1))]))
            .map(drop),
        "limit",
    );
}

#[test]
fn connecting_where_nothing_listens_fails_within_the_dial_timeout() {
    // Ports in the launcher's range that nobody bound: connection refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let endpoints = [dead.clone(), "127.0.0.1:1".to_owned()];
    let dial = Duration::from_millis(500);
    let started = Instant::now();
    let err = Client::builder()
        .endpoints(&endpoints)
        .dial_timeout(dial)
        .connect()
        .expect_err("nothing listens");
    let waited = started.elapsed();
    match &err {
        Error::ConnectFailed {
            endpoints: named,
            timeout,
        } => {
            let names: Vec<&str> = named.iter().map(|f| f.endpoint.as_str()).collect();
            assert_eq!(names, endpoints);
            for failure in named {
                assert!(
                    failure.reason.to_lowercase().contains("refused"),
                    "each endpoint names its cause: {failure}"
                );
            }
            assert_eq!(*timeout, dial);
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&dead) && text.contains("127.0.0.1:1"),
        "{text}"
    );
    assert!(waited < dial + Duration::from_secs(1), "took {waited:?}");
}

#[test]
fn malformed_endpoints_and_settings_are_refused() {
    for endpoint in [
        "",
        "localhost",
        "http://h:0",
        "https://127.0.0.1:2379/v3",
        "ftp://127.0.0.1:2379",
        "a b:1",
        "[::1:2",
    ] {
        match Client::connect([endpoint]) {
            Err(Error::InvalidEndpoint { endpoint: e, .. }) => assert_eq!(e, endpoint),
            other => panic!("{endpoint:?}: expected InvalidEndpoint, got {other:?}"),
        }
    }
    let settings: [(&str, etcd_blocking::ClientBuilder); 6] = [
        ("endpoints", Client::builder()),
        (
            "endpoints",
            Client::builder().endpoints(["127.0.0.1:2", "http://127.0.0.1:2"]),
        ),
        (
            "dial timeout",
            Client::builder()
                .endpoints(["127.0.0.1:2"])
                .dial_timeout(Duration::ZERO),
        ),
        (
            "keepalive time",
            Client::builder()
                .endpoints(["127.0.0.1:2"])
                .keepalive_time(Duration::from_secs(1)),
        ),
        (
            "max send message size",
            Client::builder()
                .endpoints(["127.0.0.1:2"])
                .max_send_message_size(0),
        ),
        (
            "poll threads",
            Client::builder().endpoints(["127.0.0.1:2"]).poll_threads(0),
        ),
    ];
    for (argument, builder) in settings {
        match builder.connect() {
            Err(Error::InvalidArgument { argument: a, .. }) => assert_eq!(a, argument),
            other => panic!("{argument}: expected InvalidArgument, got {other:?}"),
        }
    }
}

#[test]
fn a_closed_client_refuses_calls_on_every_clone() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let clone = client.clone();
    let kv = client.kv();
    kv.put("k", "v").expect("put before close");
    client.close().expect("close");
    assert!(matches!(kv.get("k"), Err(Error::Closed)));
    assert!(matches!(clone.kv().put("k", "v"), Err(Error::Closed)));
    assert!(clone.endpoints().is_empty());
}

#[test]
fn a_hung_member_fails_the_call_at_its_deadline() {
    let cluster = cluster(1);
    let kv = client(&cluster).kv();
    kv.put("k", "v").expect("put");
    cluster.pause(0).expect("pause");
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = kv
        .with_timeout(timeout)
        .get("k")
        .expect_err("a paused member cannot answer");
    let waited = started.elapsed();
    cluster.resume(0).expect("resume");
    // Either the call itself ran out of time on the member, or the balancer found the
    // member hung first and the call then waited, in vain, for a healthy endpoint.
    match &err {
        Error::DeadlineExceeded {
            endpoint,
            timeout: t,
        } => {
            assert_eq!(*endpoint, cluster.endpoint(0));
            assert_eq!(*t, timeout);
        }
        Error::NoHealthyEndpoint { endpoints, .. } => {
            assert_eq!(endpoints[0].endpoint, cluster.endpoint(0));
        }
        other => panic!("expected DeadlineExceeded or NoHealthyEndpoint, got {other:?}"),
    }
    assert!(
        waited >= timeout,
        "returned before the deadline: {waited:?}"
    );
    assert!(waited < timeout + Duration::from_secs(1), "took {waited:?}");
    let value = kv.get("k").expect("the member answers again once resumed");
    assert_eq!(value.count(), 1);
}
