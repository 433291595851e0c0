//! How the recipes' blocking calls and sessions end: a session closed through one clone
//! ends for all at once; a kept lease revoked through the client ends its keepalive;
//! campaigns on one session contend; a closed client or a cancel handle ends a blocked
//! lock on another thread; a lease grant rides through a leader kill.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{all_healthy, client, cluster, queued};
use etcd_blocking::channel::RecvTimeoutError;
use etcd_blocking::concurrency::{Cancel, Election, Mutex, Session};
use etcd_blocking::{Client, Error, KeepAliveStatus};

const WAIT: Duration = Duration::from_secs(10);

/// The end a closed session's clones must see at once: within this, not at the keeper's
/// next renewal (a third of the TTL later).
const AT_ONCE: Duration = Duration::from_millis(100);

#[test]
fn closing_a_session_ends_it_for_every_clone_at_once() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let session = Session::new(&client, Duration::from_secs(6)).expect("session");
    let clone = session.clone();
    let done = clone.done();
    session.close().expect("close");
    assert!(
        matches!(clone.status(), KeepAliveStatus::Revoked),
        "the clone says revoked: {:?}",
        clone.status()
    );
    assert_eq!(
        done.recv_timeout(AT_ONCE),
        Err(RecvTimeoutError::Disconnected),
        "done() disconnected at once"
    );
    // What the clone held cannot be taken any more: typed, with the reason.
    let lock = Mutex::new(&clone, "closed-m").expect("mutex").lock(WAIT);
    match lock {
        Err(Error::SessionLost { reason, .. }) => {
            assert!(reason.contains("revoked"), "{reason}")
        }
        other => panic!("lock on a closed session: {other:?}"),
    }
    let campaign = Election::new(&clone, "closed-e")
        .expect("election")
        .campaign("v", WAIT);
    assert!(
        matches!(campaign, Err(Error::SessionLost { .. })),
        "{campaign:?}"
    );
    assert_eq!(queued(&client, "closed-"), 0, "nothing was queued");
}

#[test]
fn a_kept_lease_revoked_through_the_client_ends_its_keepalive_at_once() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let lease = client.lease();
    let id = lease.grant(Duration::from_secs(6)).expect("grant").id();
    let kept = lease.keep_alive(id).expect("keep");
    let done = kept.done();
    // Another handle of the same client revokes it.
    client.lease().revoke(id).expect("revoke");
    assert!(
        matches!(kept.status(), KeepAliveStatus::Revoked),
        "{:?}",
        kept.status()
    );
    assert_eq!(
        done.recv_timeout(AT_ONCE),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn a_second_keepalive_of_a_lease_outlives_the_first_handle() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let lease = client.lease();
    let id = lease.grant(Duration::from_secs(6)).expect("grant").id();
    let first = lease.keep_alive(id).expect("keep");
    let second = lease.keep_alive(id).expect("keep again");
    cluster
        .wait_until(WAIT, "the first handle to stop", || {
            matches!(first.status(), KeepAliveStatus::Stopped)
        })
        .expect("first stopped");
    drop(first);
    // The first handle's drop must not stop the second's renewals.
    let renewed = second
        .renewals()
        .recv_timeout(Duration::from_secs(6))
        .expect("a renewal after the first handle went");
    assert!(renewed.ttl() > Duration::ZERO);
    assert!(second.status().is_alive());
}

#[test]
fn campaigns_on_one_session_contend_like_locks() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let session = Session::new(&client, Duration::from_secs(5)).expect("session");
    let election = Election::new(&session, "shared-e").expect("election");
    let first = election.campaign("one", WAIT).expect("the first leads");
    // A second campaign on the same session waits its turn.
    assert!(
        matches!(
            election.campaign("two", Duration::from_millis(300)),
            Err(Error::WaitTimeout { .. })
        ),
        "two campaigns of one session must not both lead"
    );
    let other = election.clone();
    let second = thread::spawn(move || other.campaign("two", WAIT).map(|l| l.revision()));
    cluster
        .wait_until(WAIT, "the second campaign to stand", || {
            queued(&client, "shared-e/") == 2
        })
        .expect("stands");
    let first_revision = first.revision();
    first.resign().expect("resign");
    let second = second.join().expect("thread").expect("the second leads");
    assert!(second > first_revision);
    assert_eq!(
        queued(&client, "shared-e/"),
        0,
        "the leadership resigned on drop"
    );
}

/// A lock held by session `a` of `holder`; a thread that waits for it on `waiter`'s
/// session `b`, with `cancel` if given; the thread's result.
fn blocked_lock(
    holder: &Client,
    waiter: &Client,
    name: &str,
    cancel: Option<Cancel>,
) -> (
    etcd_blocking::concurrency::MutexGuard,
    thread::JoinHandle<Result<i64, Error>>,
) {
    let a = Session::new(holder, Duration::from_secs(5)).expect("session a");
    let held = Mutex::new(&a, name)
        .expect("mutex")
        .lock(WAIT)
        .expect("lock");
    let b = Session::new(waiter, Duration::from_secs(5)).expect("session b");
    let m = Mutex::new(&b, name).expect("mutex");
    let waiting = thread::spawn(move || {
        let long = Duration::from_secs(120);
        let guard = match &cancel {
            Some(cancel) => m.lock_or_cancel(long, cancel),
            None => m.lock(long),
        };
        guard.map(|g| g.revision())
    });
    (held, waiting)
}

#[test]
fn closing_the_client_ends_a_blocked_lock_on_another_thread() {
    let cluster = cluster(1);
    let holder = client(&cluster);
    let waiter = client(&cluster);
    let (held, waiting) = blocked_lock(&holder, &waiter, "close-m", None);
    cluster
        .wait_until(WAIT, "the waiter to queue", || {
            queued(&holder, "close-m/") == 2
        })
        .expect("queued");
    // Another clone of the waiter's client closes it.
    waiter.clone().close().expect("close");
    cluster
        .wait_until(WAIT, "the blocked lock to end", || waiting.is_finished())
        .expect("ended long before its 120 s deadline");
    let result = waiting.join().expect("thread");
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    drop(held);
}

#[test]
fn a_cancel_handle_ends_a_blocked_lock_and_leaves_the_queue() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let cancel = Cancel::new();
    let (held, waiting) = blocked_lock(&client, &client, "cancel-m", Some(cancel.clone()));
    cluster
        .wait_until(WAIT, "the waiter to queue", || {
            queued(&client, "cancel-m/") == 2
        })
        .expect("queued");
    cancel.cancel();
    cluster
        .wait_until(WAIT, "the blocked lock to end", || waiting.is_finished())
        .expect("ended long before its 120 s deadline");
    let result = waiting.join().expect("thread");
    assert!(matches!(result, Err(Error::Canceled { .. })), "{result:?}");
    assert_eq!(queued(&client, "cancel-m/"), 1, "the waiter left the queue");
    // A handle cancelled before the call ends it as soon as it would wait.
    let b = Session::new(&client, Duration::from_secs(5)).expect("session");
    let again = Mutex::new(&b, "cancel-m")
        .expect("mutex")
        .lock_or_cancel(WAIT, &cancel);
    assert!(matches!(again, Err(Error::Canceled { .. })), "{again:?}");
    drop(held);
}

#[test]
fn lease_grants_ride_through_a_leader_kill() {
    let cluster = cluster(3);
    let client = client(&cluster);
    all_healthy(&cluster, &client);
    let stop = Arc::new(AtomicBool::new(false));
    let granters: Vec<_> = (0..4)
        .map(|_| {
            let lease = client.lease();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut granted = 0u32;
                while !stop.load(Ordering::Relaxed) && granted < 2_000 {
                    lease.grant(Duration::from_secs(30))?;
                    granted += 1;
                }
                Ok::<u32, etcd_blocking::Error>(granted)
            })
        })
        .collect();
    // Grants are in flight on the leader when it dies.
    cluster
        .wait_until(WAIT, "grants to flow", || {
            client.lease().leases().is_ok_and(|l| l.ids().len() > 20)
        })
        .expect("granting");
    let leader = cluster.leader().expect("leader");
    cluster.kill(leader).expect("kill");
    let survivor = Client::connect([cluster.endpoint((leader + 1) % 3)]).expect("survivor");
    cluster
        .wait_until(WAIT, "a new leader", || survivor.kv().get("x").is_ok())
        .expect("new leader");
    // Some grants after the new leader, then stop.
    let before = survivor.lease().leases().expect("leases").ids().len();
    cluster
        .wait_until(WAIT, "grants to flow again", || {
            survivor
                .lease()
                .leases()
                .is_ok_and(|l| l.ids().len() > before + 20)
        })
        .expect("granting again");
    stop.store(true, Ordering::Relaxed);
    for granter in granters {
        let result = granter.join().expect("granter");
        assert!(
            result.is_ok(),
            "a grant failed through the kill: {result:?}"
        );
    }
}

#[test]
fn a_cancel_handle_ends_an_observer_waiting_for_the_next_leader() {
    let cluster = cluster(1);
    let client = client(&cluster);
    let session = Session::new(&client, Duration::from_secs(5)).expect("session");
    let mut observer = Election::new(&session, "observed-e")
        .expect("election")
        .observe()
        .expect("observe");
    let cancel = Cancel::new();
    let waiting = {
        let cancel = cancel.clone();
        thread::spawn(move || {
            observer
                .recv_or_cancel(&cancel)
                .map(|kv| kv.value().to_vec())
        })
    };
    cancel.cancel();
    cluster
        .wait_until(WAIT, "the observer to end", || waiting.is_finished())
        .expect("ended");
    let result = waiting.join().expect("thread");
    assert!(matches!(result, Err(Error::Canceled { .. })), "{result:?}");
}
