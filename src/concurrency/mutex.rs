//! A distributed lock on a key prefix, as the Go client's `concurrency.Mutex`.
//!
//! Each attempt to lock puts a key of its own, `{name}/{lease ID}-{attempt}` (in hex), with
//! its session's lease (Go's clients and etcd's lock service use `{name}/{lease ID}`; they
//! queue by create revision under the prefix the same way, so they interoperate; the
//! attempt number lets threads that share a session contend with each other too). The contender whose key has the lowest create revision under the
//! prefix holds the lock; the others wait, each for the deletion of every key created
//! before its own (watching the newest of them, so a release wakes one waiter, not all).
//! A holder whose session is lost loses its key with the lease, and with it the lock.

use std::time::Duration;

use super::cancel::Cancel;
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
        Queue::attempt(&self.session, &self.prefix)
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
    /// release it. Gives up with [`Error::WaitTimeout`] (and leaves the queue), with
    /// [`Error::SessionLost`] if this session has ended (closed through any clone,
    /// expired, lost) before or while it waits, or with [`Error::Closed`] once the client
    /// is closed, from any thread.
    pub fn lock(&self, timeout: Duration) -> Result<MutexGuard> {
        self.lock_inner(timeout, None)
    }

    /// [`lock`](Mutex::lock), which another thread can also end through `cancel`: then it
    /// leaves the queue and returns [`Error::Canceled`].
    pub fn lock_or_cancel(&self, timeout: Duration, cancel: &Cancel) -> Result<MutexGuard> {
        self.lock_inner(timeout, Some(cancel))
    }

    fn lock_inner(&self, timeout: Duration, cancel: Option<&Cancel>) -> Result<MutexGuard> {
        let deadline = crate::time::deadline(timeout);
        let place = self.attempt();
        let standing = place.enqueue(b"")?;
        let (revision, head) = (standing.revision, standing.head);
        let guard = MutexGuard::new(place, revision);
        if head == revision {
            return Ok(guard);
        }
        let what = format!("the lock {}", String::from_utf8_lossy(&self.prefix));
        // On an error the guard leaves the queue as it drops (best effort: a key left
        // behind goes with the lease anyway).
        guard
            .place
            .wait_turn(revision, deadline, timeout, &what, cancel)?;
        // Still queued? The lease may have gone while it waited.
        if guard.place.holds(revision)? {
            Ok(guard)
        } else {
            Err(self.session.lost())
        }
    }
}

/// A held lock: released by [`unlock`](MutexGuard::unlock) or on drop (best effort,
/// logged on failure). A holder that may have lost its session (and with it the lock)
/// writes through [`fence`](MutexGuard::fence): "only if I still hold the lock".
#[derive(Debug)]
#[must_use = "dropping a MutexGuard unlocks at once; keep it while the lock must be held"]
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
        // A closed client has no way to etcd; the lease ends what is left.
        if !self.released && !self.place.session.client().is_closed() {
            if let Err(e) = self.place.dequeue() {
                log::warn!(
                    "etcd lock {} not released on drop (its lease will release it): {e}",
                    String::from_utf8_lossy(&self.place.prefix)
                );
            }
        }
    }
}
