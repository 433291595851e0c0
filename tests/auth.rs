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
    add_root(admin);
    admin.auth().enable().expect("enable auth");
}

/// Adds `root` with the root role, through `admin`, leaving auth as it is.
fn add_root(admin: &Client) {
    let auth = admin.auth();
    auth.user_add("root", ROOT_PASSWORD).expect("add root");
    auth.role_add("root").expect("add the root role");
    auth.user_grant_role("root", "root").expect("grant root");
}

/// The keys of the next `n` events of `watcher`.
fn keys_of(watcher: &etcd_blocking::Watcher, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < n {
        for event in common::next_events(watcher).events() {
            seen.push(String::from_utf8_lossy(event.kv().key()).into_owned());
        }
    }
    seen
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

/// A watch of `prefix` through `client`, created before it returns.
fn watch_prefix(client: &Client, prefix: &str) -> etcd_blocking::Watcher {
    let watcher = client
        .watch()
        .watch_with(prefix, WatchOptions::new().prefix())
        .unwrap_or_else(|e| panic!("watch {prefix}: {e}"));
    watcher
        .created_revision()
        .unwrap_or_else(|e| panic!("watch {prefix} created: {e}"));
    watcher
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

/// A cluster with auth on (root) whose JWT tokens expire 2 s after they are issued.
fn short_jwt_tokens() -> Cluster {
    Cluster::builder()
        .auth(ROOT_PASSWORD)
        .jwt_tokens(Duration::from_secs(2))
        .start()
        .expect("start")
}

/// A cluster with auth on (root) whose simple tokens expire after 2 s unused.
fn short_simple_tokens() -> Cluster {
    Cluster::builder()
        .auth(ROOT_PASSWORD)
        .arg("--auth-token-ttl=2")
        .start()
        .expect("start")
}

#[test]
fn expired_tokens_are_renewed_and_no_call_fails() {
    let ttl = Duration::from_secs(2);
    let cluster = short_simple_tokens();
    let root = cluster.client().expect("root connects");
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
    let watcher = watch_prefix(&root, "w/");
    kv.put("w/1", "x").expect("put");
    let events = common::next_events(&watcher);
    assert_eq!(events.events()[0].kv().key(), b"w/1");
}

#[test]
fn auth_turned_on_and_off_under_a_running_client() {
    let cluster = common::cluster(1);
    // A client with a user, connected while auth is off: it goes without a token.
    let admin = cluster.client().expect("connect");
    add_root(&admin);
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
    let cluster = short_simple_tokens();
    let root = cluster.client().expect("root connects");
    let writer = user(&cluster, "root", ROOT_PASSWORD).expect("a second client");
    let first = watch_prefix(&root, "a/");
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
    assert_eq!(
        keys_of(&first, 2),
        ["a/1", "a/2"],
        "nothing lost or repeated"
    );
    assert_eq!(keys_of(&second, 1), ["b/1"]);
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

/// JWT tokens (ES256) that expire 2 s after they are issued, and a change of roles, which
/// makes every token issued before it "old": neither fails a call, a watch created after
/// them included.
#[test]
fn jwt_tokens_are_renewed_after_they_expire_and_after_a_role_change() {
    let ttl = Duration::from_secs(2);
    let cluster = short_jwt_tokens();
    let root = cluster.client().expect("root connects");
    let auth = root.auth();
    auth.role_add("writer").expect("role");
    auth.role_grant_permission("writer", &Permission::read_write("j/").prefix())
        .expect("grant");
    auth.user_add("bob", "bob-password").expect("bob");
    auth.user_grant_role("bob", "writer").expect("grant writer");
    let bob = user(&cluster, "bob", "bob-password").expect("bob connects");
    let watcher = watch_prefix(&bob, "j/");
    bob.kv().put("j/0", "x").expect("put");
    // A change of roles: bob's token is now older than the auth store.
    auth.role_add("unrelated").expect("another role");
    bob.kv()
        .put("j/1", "x")
        .unwrap_or_else(|e| panic!("put after a role change: {e}"));
    idle_past(ttl);
    bob.kv()
        .put("j/2", "x")
        .unwrap_or_else(|e| panic!("put after the JWT expired: {e}"));
    let late = bob
        .watch()
        .watch_with("j/2", WatchOptions::new().start_revision(1))
        .expect("a watch after the JWT expired");
    let replayed = common::next_events(&late);
    assert_eq!(replayed.events()[0].kv().key(), b"j/2");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        for event in common::next_events(&watcher).events() {
            seen.push(String::from_utf8_lossy(event.kv().key()).into_owned());
        }
    }
    assert_eq!(seen, ["j/0", "j/1", "j/2"], "nothing lost or repeated");
}

/// A client that only keeps a lease makes no call that could find its token expired: the
/// member ends the keepalive stream for it instead (etcd 3.6 and later check the token of
/// every renewal), and the keeper authenticates again rather than reopen the stream with
/// the token just refused, over and over, while the lease runs out.
#[test]
fn a_lease_kept_alone_outlives_its_tokens() {
    let ttl = Duration::from_secs(2);
    let cluster = short_jwt_tokens();
    let client = cluster.client().expect("root connects");
    let lease = client.lease();
    let granted = lease.grant(Duration::from_secs(2)).expect("grant");
    let kept = lease.keep_alive(granted.id()).expect("keep alive");
    let refusals = || {
        cluster
            .log(0)
            .expect("the member's log")
            .matches("invalid auth token")
            .count()
    };
    let before = refusals();
    // Three expiries of the token, with nothing but renewals going on.
    let until = Instant::now() + 3 * ttl + Duration::from_secs(1);
    while Instant::now() < until {
        let status = kept.status();
        assert!(
            matches!(status, etcd_blocking::KeepAliveStatus::Alive),
            "the kept lease lapsed: {status:?}"
        );
        thread::park_timeout(Duration::from_millis(100));
    }
    let observer = cluster.client().expect("another root client");
    assert!(
        observer
            .lease()
            .time_to_live(granted.id())
            .expect("ttl")
            .ttl()
            .is_some(),
        "the lease is still there"
    );
    let refused = refusals() - before;
    assert!(
        refused <= 12,
        "the member refused {refused} renewals' tokens in three expiries: the keeper \
         reopened its stream with a refused token"
    );
}

/// What a mixed load saw across token expiries.
struct LoadSeen {
    /// Calls that failed, with why.
    failed: Vec<String>,
    /// Each writer's acknowledged keys, in order.
    written: Vec<Vec<String>>,
}

/// A mixed load through `client` for `run`: three writers putting and reading keys of
/// their own under `load/`, a watch of `load/`, a new watch created (and its event
/// awaited) every 700 ms, and a kept lease of TTL 2 s. Then checks that no call failed,
/// the watch saw every acknowledged put exactly once in each writer's order, and the
/// lease never lapsed.
fn mixed_load_across_expiries(client: &Client, run: Duration) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let watcher = client
        .watch()
        // Read only at the end: room for every response of the run.
        .watch_with("load/", WatchOptions::new().prefix().buffer(1 << 20))
        .expect("the load's watch");
    watcher.created_revision().expect("created");
    let lease = client.lease();
    let granted = lease.grant(Duration::from_secs(2)).expect("grant");
    let kept = lease.keep_alive(granted.id()).expect("keep alive");
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(LoadSeen {
        failed: Vec::new(),
        written: vec![Vec::new(); 3],
    }));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (kv, stop, seen) = (client.kv(), stop.clone(), seen.clone());
            thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("load/{w}/{n:06}");
                    n += 1;
                    let mut seen = seen.lock().expect("seen");
                    match kv.put(key.as_str(), "v").and_then(|_| kv.get(key.as_str())) {
                        Ok(_) => seen.written[w].push(key),
                        Err(e) => seen.failed.push(format!("{key}: {e}")),
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut late = 0;
    while started.elapsed() < run {
        // A new watch, created on the stream whose token may have expired meanwhile.
        let prefix = format!("late/{late}/");
        late += 1;
        let fresh = client
            .watch()
            .watch_with(prefix.as_str(), WatchOptions::new().prefix())
            .expect("a new watch");
        match fresh.created_revision() {
            Ok(_) => {
                client.kv().put(format!("{prefix}k"), "x").expect("put");
                common::next_events(&fresh);
            }
            Err(e) => seen
                .lock()
                .expect("seen")
                .failed
                .push(format!("watch {prefix}: {e}")),
        }
        let pause = Instant::now() + Duration::from_millis(700);
        while Instant::now() < pause {
            thread::park_timeout(pause.saturating_duration_since(Instant::now()));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer");
    }
    let seen = Arc::try_unwrap(seen)
        .ok()
        .expect("the writers are done")
        .into_inner()
        .expect("seen");
    assert!(seen.failed.is_empty(), "calls failed: {:?}", seen.failed);
    let total: usize = seen.written.iter().map(Vec::len).sum();
    assert!(total > 100, "only {total} writes");
    // The watch saw every acknowledged put once, in each writer's order.
    let mut watched: Vec<Vec<String>> = vec![Vec::new(); 3];
    let mut count = 0;
    while count < total {
        for event in common::next_events(&watcher).events() {
            let key = String::from_utf8_lossy(event.kv().key()).into_owned();
            let w: usize = key[5..6].parse().expect("a writer");
            watched[w].push(key);
            count += 1;
        }
    }
    assert_eq!(
        watched, seen.written,
        "the watch lost, repeated or reordered events"
    );
    let status = kept.status();
    assert!(
        matches!(status, etcd_blocking::KeepAliveStatus::Alive),
        "the kept lease lapsed: {status:?}"
    );
    assert!(
        lease
            .time_to_live(granted.id())
            .expect("ttl")
            .ttl()
            .is_some(),
        "the lease is still there"
    );
    eprintln!("{total} writes, {late} late watches, across token expiries");
}

/// JWT tokens expire 2 s after they are issued, used or not: 8 s of load meet four
/// expiries. (Simple tokens expire only when unused: `expired_tokens_are_renewed_and_no_
/// call_fails` idles past them.)
#[test]
fn a_mixed_load_loses_nothing_across_jwt_expiries() {
    let cluster = short_jwt_tokens();
    let client = cluster.client().expect("root connects");
    mixed_load_across_expiries(&client, Duration::from_secs(8));
}

/// A watch stream opened while auth was off carries no token: once auth is on, a watch
/// created on it is refused ("user name is empty"), and the client authenticates and moves
/// its watches to a stream with a token, the first one going on without a gap.
#[test]
fn watches_go_on_when_auth_is_turned_on_under_them() {
    let cluster = common::cluster(1);
    let admin = cluster.client().expect("connect");
    add_root(&admin);
    let client = user(&cluster, "root", ROOT_PASSWORD).expect("connect with auth off");
    let before = watch_prefix(&client, "on/");
    client.kv().put("on/1", "x").expect("put with auth off");
    admin.auth().enable().expect("enable");
    let after = watch_prefix(&client, "after/");
    client.kv().put("on/2", "x").expect("put with auth on");
    client.kv().put("after/1", "x").expect("put with auth on");
    assert_eq!(
        keys_of(&before, 2),
        ["on/1", "on/2"],
        "nothing lost or repeated"
    );
    assert_eq!(keys_of(&after, 1), ["after/1"]);
}
