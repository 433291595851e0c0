//! A distributed lock on a key prefix, as the Go client's `concurrency.Mutex`.
//!
//! Each attempt to lock puts a key of its own, `{name}/{lease ID}-{attempt}` (in hex), with
//! its session's lease (Go's clients and etcd's lock service use `{name}/{lease ID}`; they
//! queue by create revision under the prefix the same way, so they interoperate; the
//! attempt number lets threads that share a session contend with each other too). The contender whose key has the lowest create revision under the
//! prefix holds the lock; the others wait, each for the deletion of every key created
//! before its own (watching the newest of them, so a release wakes one waiter, not all).
//! A holder whose session is lost loses its key with the lease, and with it the lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::queue::Queue;
use super::session::Session;
use crate::error::{Error, Result};
use crate::kv::Compare;

/// A lock named by a key prefix, taken with a [`Session`]'s lease. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mutex {
    session: Session,
    prefix: Vec<u8>,
}

/// Numbers the attempts of this process, so that no two share a key.
static ATTEMPTS: AtomicU64 = AtomicU64::new(1);

impl Mutex {
    /// The lock `name` (a key prefix; `/` is appended) for `session`. An empty name is
    /// refused.
    pub fn new(session: &Session, name: impl Into<Vec<u8>>) -> Result<Mutex> {
        let mut prefix = name.into();
        if prefix.is_empty() {
            return Err(Error::InvalidArgument {
                argument: "lock name",
                reason: "must not be empty".to_owned(),
            });
        }
        prefix.push(b'/');
        Ok(Mutex {
            session: session.clone(),
            prefix,
        })
    }

    /// The lock's key prefix.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// A place of its own in the lock's queue, for one attempt.
    fn attempt(&self) -> Queue {
        let mut key = self.prefix.clone();
        let attempt = ATTEMPTS.fetch_add(1, Ordering::Relaxed);
        key.extend_from_slice(format!("{:x}-{attempt:x}", self.session.lease_id()).as_bytes());
        Queue {
            session: self.session.clone(),
            prefix: self.prefix.clone(),
            key,
        }
    }

    /// Takes the lock if nobody holds it: `Ok(None)` when another holds it or is queued
    /// before this attempt.
    pub fn try_lock(&self) -> Result<Option<MutexGuard>> {
        let place = self.attempt();
        let standing = place.enqueue(b"")?;
        let (revision, head) = (standing.revision, standing.head);
        if head == revision {
            return Ok(Some(MutexGuard::new(place, revision)));
        }
        place.dequeue()?;
        Ok(None)
    }

    /// Takes the lock, waiting up to `timeout` for the sessions queued before this one to
    /// release it. Gives up with [`Error::WaitTimeout`] (and leaves the queue), or with
    /// [`Error::SessionLost`] if this session's lease is lost meanwhile.
    pub fn lock(&self, timeout: Duration) -> Result<MutexGuard> {
        let deadline = crate::time::deadline(timeout);
        let place = self.attempt();
        let standing = place.enqueue(b"")?;
        let (revision, head) = (standing.revision, standing.head);
        if head == revision {
            return Ok(MutexGuard::new(place, revision));
        }
        let what = format!("the lock {}", String::from_utf8_lossy(&self.prefix));
        if let Err(e) = place.wait_turn(revision, deadline, timeout, &what) {
            // Best effort: a key left behind goes with the lease anyway.
            let _ = place.dequeue();
            return Err(e);
        }
        // Still queued? The lease may have gone while it waited.
        if place.holds(revision)? {
            Ok(MutexGuard::new(place, revision))
        } else {
            Err(self.session.lost())
        }
    }
}

/// A held lock: released by [`unlock`](MutexGuard::unlock) or on drop (best effort,
/// logged on failure). A holder that may have lost its session (and with it the lock)
/// writes through [`fence`](MutexGuard::fence): "only if I still hold the lock".
#[derive(Debug)]
pub struct MutexGuard {
    place: Queue,
    revision: i64,
    released: bool,
}

impl MutexGuard {
    fn new(place: Queue, revision: i64) -> MutexGuard {
        MutexGuard {
            place,
            revision,
            released: false,
        }
    }

    /// The holder's key.
    pub fn key(&self) -> &[u8] {
        &self.place.key
    }

    /// The create revision of the holder's key: it orders the lock's holders.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// A compare that holds only while this guard's key is the one the lock was taken
    /// with: put it in a transaction's `when` to fence a write to the holder.
    pub fn fence(&self) -> Compare {
        self.place.fence(self.revision)
    }

    /// True while the session that took the lock is alive (the lock may still have been
    /// lost a moment ago: fence writes with [`fence`](MutexGuard::fence)).
    pub fn session_alive(&self) -> bool {
        self.place.session.is_alive()
    }

    /// Releases the lock.
    pub fn unlock(mut self) -> Result<()> {
        self.released = true;
        self.place.dequeue()
    }
}

impl Drop for MutexGuard {
    fn drop(&mut self) {
        if !self.released {
            if let Err(e) = self.place.dequeue() {
                log::warn!(
                    "etcd lock {} not released on drop (its lease will release it): {e}",
                    String::from_utf8_lossy(&self.place.prefix)
                );
            }
        }
    }
}
