//! Authentication against real etcd: users and roles through the admin API, permissions
//! refused with typed errors, bad credentials refused at connect, tokens renewed when they
//! expire without a call failing, and auth turned on and off under a running client.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use etcd_blocking::testing::Cluster;
use etcd_blocking::{Client, Error, Permission, ServerCode, WatchOptions};

const ROOT_PASSWORD: &str = "root-secret-password";

/// Adds `root` with the root role and turns auth on, through `admin` (a client without
/// a user).
fn enable_auth(admin: &Client) {
    let auth = admin.auth();
    auth.user_add("root", ROOT_PASSWORD).expect("add root");
    auth.role_add("root").expect("add the root role");
    auth.user_grant_role("root", "root").expect("grant root");
    auth.enable().expect("enable auth");
}

fn user(cluster: &Cluster, name: &str, password: &str) -> Result<Client, Error> {
    cluster
        .client_builder()
        .user(name, password)
        .dial_timeout(Duration::from_secs(10))
        .connect()
}

/// Whether auth is on, where the server can say (etcd 3.4 has no `AuthStatus`: there the
/// call must fail `NotSupported`, and `None` is returned).
fn enabled(cluster: &Cluster, client: &Client) -> Option<bool> {
    let status = client.auth().status();
    if cluster.server_version() < etcd_blocking::testing::ServerVersion::new(3, 5, 0) {
        assert!(
            matches!(status, Err(Error::NotSupported { .. })),
            "etcd 3.4 has no AuthStatus: {status:?}"
        );
        return None;
    }
    Some(status.expect("status").enabled)
}

fn code(result: Result<impl std::fmt::Debug, Error>) -> Option<ServerCode> {
    match result {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => e.code(),
    }
}

#[test]
fn users_roles_and_permissions_are_enforced_with_typed_errors() {
    let cluster = common::cluster(1);
    let admin = cluster.client().expect("connect");
    enable_auth(&admin);
    // The client without a user is refused everything now.
    assert_eq!(code(admin.kv().get("app/x")), Some(ServerCode::UserEmpty));

    let root = user(&cluster, "root", ROOT_PASSWORD).expect("root connects");
    let auth = root.auth();
    assert_ne!(enabled(&cluster, &root), Some(false));
    auth.role_add("reader").expect("add a role");
    auth.role_grant_permission("reader", &Permission::read("app/").prefix())
        .expect("grant read of app/");
    auth.user_add("alice", "alice-password").expect("add alice");
    auth.user_grant_role("alice", "reader")
        .expect("grant reader");
    assert_eq!(auth.user_get("alice").expect("get"), ["reader"]);
    assert_eq!(
        auth.role_get("reader").expect("get role"),
        [Permission::read("app/").prefix()]
    );
    let mut users = auth.user_list().expect("list");
    users.sort();
    assert_eq!(users, ["alice", "root"]);
    root.kv().put("app/x", "1").expect("root writes");
    root.kv().put("other", "1").expect("root writes");

    let alice = user(&cluster, "alice", "alice-password").expect("alice connects");
    assert_eq!(
        alice.kv().get("app/x").expect("alice reads app/").count(),
        1
    );
    assert_eq!(
        code(alice.kv().put("app/x", "2")),
        Some(ServerCode::PermissionDenied)
    );
    assert_eq!(
        code(alice.kv().get("other")),
        Some(ServerCode::PermissionDenied)
    );
    assert_eq!(
        code(alice.auth().user_add("mallory", "x")),
        Some(ServerCode::PermissionDenied)
    );

    // Bad credentials are refused at connect, at once, typed.
    for (name, password) in [("alice", "wrong"), ("nobody", "x")] {
        let started = Instant::now();
        let refused = user(&cluster, name, password).map(drop);
        assert_eq!(code(refused), Some(ServerCode::AuthFailed), "{name}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{name}: refused fast"
        );
    }
    // Admin errors are typed too.
    assert_eq!(
        code(auth.user_get("nobody")),
        Some(ServerCode::UserNotFound)
    );
    assert_eq!(
        code(auth.role_get("nobody")),
        Some(ServerCode::RoleNotFound)
    );
    assert_eq!(
        code(auth.user_add("alice", "again")),
        Some(ServerCode::UserAlreadyExists)
    );
    auth.user_revoke_role("alice", "reader").expect("revoke");
    auth.role_revoke_permission("reader", &Permission::read("app/").prefix())
        .expect("revoke the permission");
    auth.role_delete("reader").expect("delete the role");
    auth.user_delete("alice").expect("delete alice");
    auth.disable().expect("disable auth");
    assert_ne!(enabled(&cluster, &root), Some(true));
}

#[test]
fn the_password_never_shows() {
    let builder = Client::builder()
        .endpoints(["127.0.0.1:2379"])
        .user("root", ROOT_PASSWORD)
        .token("ignored");
    let shown = format!("{builder:?}");
    assert!(!shown.contains(ROOT_PASSWORD), "{shown}");
    assert!(!shown.contains("ignored"), "{shown}");
    // A user and a token together are refused, without the secrets in the error.
    let err = builder.connect().map(drop).expect_err("user and token");
    assert!(!err.to_string().contains(ROOT_PASSWORD), "{err}");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}

/// Idles `client` longer than the token's TTL: the next call finds its token expired.
fn idle_past(ttl: Duration) {
    let until = Instant::now() + ttl + Duration::from_millis(1500);
    while Instant::now() < until {
        thread::park_timeout(until.saturating_duration_since(Instant::now()));
    }
}

#[test]
fn expired_tokens_are_renewed_and_no_call_fails() {
    let ttl = Duration::from_secs(2);
    let cluster = Cluster::builder()
        .arg("--auth-token-ttl=2")
        .start()
        .expect("start");
    let admin = cluster.client().expect("connect");
    enable_auth(&admin);
    let root = user(&cluster, "root", ROOT_PASSWORD).expect("root connects");
    let kv = root.kv();
    for round in 0..3 {
        idle_past(ttl);
        // A write, a read, a watch opened on a stream of its own, a lease granted: none
        // may fail for the token that expired meanwhile.
        kv.put(format!("t/{round}"), "v")
            .unwrap_or_else(|e| panic!("round {round}: put after expiry: {e}"));
        assert_eq!(kv.get(format!("t/{round}")).expect("get").count(), 1);
        root.lease()
            .grant(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("round {round}: grant after expiry: {e}"));
    }
    // A watch opened after an expiry, on a fresh stream, sees its events.
    let watcher = root
        .watch()
        .watch_with("w/", WatchOptions::new().prefix())
        .expect("watch");
    watcher.created_revision().expect("created");
    kv.put("w/1", "x").expect("put");
    let events = common::next_events(&watcher);
    assert_eq!(events.events()[0].kv().key(), b"w/1");
}

#[test]
fn auth_turned_on_and_off_under_a_running_client() {
    let cluster = common::cluster(1);
    // A client with a user, connected while auth is off: it goes without a token.
    let admin = cluster.client().expect("connect");
    admin
        .auth()
        .user_add("root", ROOT_PASSWORD)
        .expect("add root");
    admin.auth().role_add("root").expect("root role");
    admin.auth().user_grant_role("root", "root").expect("grant");
    let client = user(&cluster, "root", ROOT_PASSWORD).expect("connect with auth off");
    client.kv().put("k", "1").expect("put with auth off");
    admin.auth().enable().expect("enable");
    // Refused for the missing token, it authenticates and sends the call again.
    client
        .kv()
        .put("k", "2")
        .expect("put after auth is turned on");
    assert_eq!(client.kv().get("k").expect("get").kvs()[0].value(), b"2");
    client.auth().disable().expect("disable");
    client
        .kv()
        .put("k", "3")
        .expect("put after auth is turned off");
    admin
        .kv()
        .put("k", "4")
        .expect("a client without a user writes again");
    assert_ne!(enabled(&cluster, &admin), Some(true));
}

/// A watch created on a stream whose token has expired is refused by the member ("invalid
/// auth token", as a created-and-canceled answer, not a gRPC error): the client renews the
/// token and moves every watch to a new stream, so the new watch is created and the old
/// one goes on without losing or repeating an event.
#[test]
fn a_watch_refused_for_an_expired_stream_token_is_created_with_a_new_one() {
    let ttl = Duration::from_secs(2);
    let cluster = Cluster::builder()
        .arg("--auth-token-ttl=2")
        .start()
        .expect("start");
    let admin = cluster.client().expect("connect");
    enable_auth(&admin);
    let root = user(&cluster, "root", ROOT_PASSWORD).expect("root connects");
    let writer = user(&cluster, "root", ROOT_PASSWORD).expect("a second client");
    let first = root
        .watch()
        .watch_with("a/", WatchOptions::new().prefix())
        .expect("the first watch");
    first.created_revision().expect("created");
    writer.kv().put("a/1", "x").expect("put");
    idle_past(ttl);
    // The stream's token has expired: the member refuses a watch created on it.
    let second = root
        .watch()
        .watch_with("b/", WatchOptions::new().prefix())
        .expect("the second watch");
    second
        .created_revision()
        .unwrap_or_else(|e| panic!("the second watch after the token expired: {e}"));
    writer.kv().put("a/2", "x").expect("put");
    writer.kv().put("b/1", "x").expect("put");
    let keys = |watcher: &etcd_blocking::Watcher, n: usize| {
        let mut seen = Vec::new();
        while seen.len() < n {
            for event in common::next_events(watcher).events() {
                seen.push(String::from_utf8_lossy(event.kv().key()).into_owned());
            }
        }
        seen
    };
    assert_eq!(keys(&first, 2), ["a/1", "a/2"], "nothing lost or repeated");
    assert_eq!(keys(&second, 1), ["b/1"]);
}

/// With mutual TLS and auth on, a client certificate's common name is the user: a client
/// without a password acts as the user its certificate names.
#[test]
fn a_client_certificate_names_the_user() {
    let cluster = Cluster::builder()
        .mutual_tls()
        .start()
        .expect("start a mutual TLS cluster");
    // Cluster::client shows a certificate whose common name is root.
    let root = cluster.client().expect("connect");
    enable_auth(&root);
    root.kv()
        .put("cn/k", "v")
        .expect("root, by its certificate, writes");
    root.auth()
        .user_add_without_password("alice")
        .expect("alice, who has no password");
    let authority = cluster.authority().expect("an authority");
    let alice = authority
        .client("alice", etcd_blocking::testing::Validity::Current)
        .expect("alice's certificate");
    let as_alice = Client::builder()
        .endpoints(cluster.endpoints())
        .tls(authority.tls(Some(&alice)))
        .connect()
        .expect("alice connects");
    assert_eq!(
        code(as_alice.kv().get("cn/k")),
        Some(ServerCode::PermissionDenied),
        "alice has no role"
    );
    // Without a password she cannot authenticate.
    let refused = cluster
        .client_builder()
        .user("alice", "anything")
        .connect()
        .map(drop);
    let refused = refused.expect_err("alice has no password");
    assert_eq!(refused.code(), Some(ServerCode::AuthFailed), "{refused:?}");
}
