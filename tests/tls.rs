//! TLS and mutual TLS against real members that serve certificates the launcher makes:
//! round trips of every kind of call, and each bad credential refused fast with a typed
//! error that names the endpoint.

mod common;

use std::time::{Duration, Instant};

use etcd_blocking::concurrency::{Mutex, Session};
use etcd_blocking::testing::{Authority, Cluster, Validity};
use etcd_blocking::{Client, Error, Tls, WatchOptions};

/// The dial timeout of the clients with bad credentials: a refusal must come well before.
const DIAL: Duration = Duration::from_secs(10);
/// How soon a bad credential must be refused: a handshake or two, not the dial timeout.
const REFUSED_WITHIN: Duration = Duration::from_secs(3);

fn start(builder: etcd_blocking::testing::ClusterBuilder) -> Cluster {
    builder
        .start()
        .unwrap_or_else(|e| panic!("starting a TLS cluster: {e}"))
}

/// A client of `endpoints` with the cluster's TLS settings.
fn connect_to(cluster: &Cluster, endpoints: Vec<String>) -> Result<Client, Error> {
    Client::builder()
        .endpoints(endpoints)
        .tls(cluster.client_tls().expect("TLS settings"))
        .connect()
}

/// A put, a get, a watch that sees an event, a lease kept alive, and a lock taken and
/// released: every kind of call and stream, through `client`.
fn round_trips(client: &Client) {
    let kv = client.kv();
    kv.put("tls/k", "v").expect("put");
    let got = kv.get("tls/k").expect("get");
    assert_eq!(got.kvs()[0].value(), b"v");

    let watcher = client
        .watch()
        .watch_with("tls/w/", WatchOptions::new().prefix())
        .expect("watch");
    watcher.created_revision().expect("the watch is created");
    kv.put("tls/w/1", "x").expect("put watched");
    let events = common::next_events(&watcher);
    assert_eq!(events.events()[0].kv().key(), b"tls/w/1");

    let lease = client.lease();
    let granted = lease.grant(Duration::from_secs(5)).expect("grant");
    let kept = lease.keep_alive(granted.id()).expect("keep alive");
    let renewed = kept
        .renewals()
        .recv_timeout(Duration::from_secs(5))
        .expect("a renewal over TLS");
    assert!(renewed.ttl() > Duration::ZERO);
    kept.stop();
    lease.revoke(granted.id()).expect("revoke");

    let session = Session::new(client, Duration::from_secs(5)).expect("session");
    let mutex = Mutex::new(&session, "tls/lock").expect("mutex");
    mutex
        .lock(Duration::from_secs(5))
        .expect("lock")
        .unlock()
        .expect("unlock");
    session.close().expect("close session");
}

#[test]
fn every_kind_of_call_over_tls() {
    let cluster = start(Cluster::builder().tls());
    assert!(cluster.endpoints()[0].starts_with("https://"));
    let client = cluster.client().expect("connect over TLS");
    round_trips(&client);
    client.close().expect("close");
    // A host name, checked against the certificate's DNS name, works as an IP does.
    let named: Vec<String> = cluster
        .endpoints()
        .iter()
        .map(|e| e.replace("127.0.0.1", "localhost"))
        .collect();
    let by_name = connect_to(&cluster, named).expect("connect by host name");
    by_name.kv().get("tls/k").expect("get by host name");
    by_name.close().expect("close");
}

#[test]
fn every_kind_of_call_over_mutual_tls_with_tls_between_members() {
    let cluster = start(Cluster::builder().members(3).mutual_tls().peer_tls());
    let client = cluster.client().expect("connect over mutual TLS");
    round_trips(&client);
    // Bare host:port endpoints with TLS settings are TLS too.
    let bare: Vec<String> = cluster
        .endpoints()
        .iter()
        .map(|e| e.trim_start_matches("https://").to_owned())
        .collect();
    let again = connect_to(&cluster, bare).expect("bare endpoints with TLS settings");
    again.kv().get("tls/k").expect("get");
    again.close().expect("close");
    client.close().expect("close");
}

/// Connects with `builder` and expects a handshake failure, soon, naming the endpoint.
fn refused(builder: etcd_blocking::ClientBuilder, endpoint: &str, what: &str) -> String {
    let started = Instant::now();
    let result = builder.dial_timeout(DIAL).connect();
    let took = started.elapsed();
    let err = match result {
        Ok(_) => panic!("{what}: connected"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(
        matches!(err, Error::HandshakeFailed { .. }),
        "{what}: expected HandshakeFailed, got {err:?}"
    );
    let port = endpoint.rsplit(':').next().expect("a port");
    assert!(
        text.contains(port),
        "{what}: the error names the endpoint: {text}"
    );
    assert!(
        took < REFUSED_WITHIN,
        "{what}: refused after {took:?}, not within {REFUSED_WITHIN:?}: {text}"
    );
    eprintln!("{what}: {took:?}: {text}");
    text
}

#[test]
fn bad_credentials_are_refused_fast_with_a_typed_error() {
    let cluster = start(Cluster::builder().mutual_tls());
    let endpoint = cluster.endpoint(0);
    let authority = cluster.authority().expect("an authority");
    let root = authority
        .client("root", Validity::Current)
        .expect("a client certificate");
    let with = |tls: Tls| Client::builder().endpoints([endpoint.clone()]).tls(tls);

    let stranger = Authority::new("another authority").expect("authority");
    let theirs = stranger
        .client("root", Validity::Current)
        .expect("a certificate of theirs");
    refused(
        with(stranger.tls(Some(&theirs))),
        &endpoint,
        "a CA that did not sign the member's certificate",
    );
    refused(
        with(authority.tls(None)),
        &endpoint,
        "no client certificate where the member asks for one",
    );
    let expired = authority
        .client("root", Validity::Expired)
        .expect("an expired certificate");
    refused(
        with(authority.tls(Some(&expired))),
        &endpoint,
        "an expired client certificate",
    );
    refused(
        with(authority.tls(Some(&theirs))),
        &endpoint,
        "a client certificate of another authority",
    );
    refused(
        with(authority.tls(Some(&root)).server_name("etcd.example.com")),
        &endpoint,
        "a member certificate that does not name the host",
    );
    let plain = endpoint.replace("https://", "http://");
    refused(
        Client::builder().endpoints([plain.clone()]),
        &plain,
        "a plaintext client at a TLS member",
    );
    // And the right credentials work.
    with(authority.tls(Some(&root)))
        .connect()
        .expect("the right credentials")
        .close()
        .expect("close");
}

#[test]
fn a_tls_client_at_a_plaintext_member_is_refused_fast() {
    let cluster = common::cluster(1);
    let authority = Authority::new("an authority").expect("authority");
    let endpoint = format!("https://{}", cluster.endpoint(0));
    refused(
        Client::builder()
            .endpoints([endpoint.clone()])
            .tls(authority.tls(None)),
        &endpoint,
        "a TLS client at a plaintext member",
    );
}

#[test]
fn tls_settings_that_cannot_work_are_refused_before_dialling() {
    let invalid = |builder: etcd_blocking::ClientBuilder| match builder.connect() {
        Err(Error::InvalidArgument { reason, .. }) => reason,
        other => panic!(
            "expected InvalidArgument, got {:?}",
            other.map(|_| "a client")
        ),
    };
    let reason =
        invalid(Client::builder().endpoints(["https://127.0.0.1:1", "http://127.0.0.1:2"]));
    assert!(reason.contains("all TLS or all plaintext"), "{reason}");
    let reason = invalid(
        Client::builder()
            .endpoints(["http://127.0.0.1:1"])
            .tls(Tls::new()),
    );
    assert!(reason.contains("http://"), "{reason}");
    let reason = invalid(
        Client::builder()
            .endpoints(["127.0.0.1:1"])
            .tls(Tls::new().ca_file("/nonexistent/ca.pem")),
    );
    assert!(reason.contains("/nonexistent/ca.pem"), "{reason}");
}
