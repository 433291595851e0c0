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
use std::time::{Duration, Instant};

use crossbeam_channel::select;

use super::session::Session;
use crate::error::{Error, Result};
use crate::kv::{Compare, GetOptions, SortOrder, SortTarget, Txn, TxnOp};
use crate::watch::WatchOptions;
use crate::{EventKind, PutOptions};

/// A lock named by a key prefix, taken with a [`Session`]'s lease. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mutex {
    session: Session,
    prefix: Vec<u8>,
}

/// Numbers the attempts of this process, so that no two share a key.
static ATTEMPTS: AtomicU64 = AtomicU64::new(1);

/// One attempt's queue entry.
#[derive(Debug, Clone)]
struct Entry {
    mutex: Mutex,
    key: Vec<u8>,
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

    fn entry(&self) -> Entry {
        let mut key = self.prefix.clone();
        let attempt = ATTEMPTS.fetch_add(1, Ordering::Relaxed);
        key.extend_from_slice(format!("{:x}-{attempt:x}", self.session.lease_id()).as_bytes());
        Entry {
            mutex: self.clone(),
            key,
        }
    }

    /// Takes the lock if nobody holds it: `Ok(None)` when another holds it or is queued
    /// before this attempt.
    pub fn try_lock(&self) -> Result<Option<MutexGuard>> {
        let entry = self.entry();
        let (revision, owner) = entry.enqueue()?;
        if owner == revision {
            return Ok(Some(entry.guard(revision)));
        }
        entry.dequeue()?;
        Ok(None)
    }

    /// Takes the lock, waiting up to `timeout` for the sessions queued before this one to
    /// release it. Gives up with [`Error::WaitTimeout`] (and leaves the queue), or with
    /// [`Error::SessionLost`] if this session's lease is lost meanwhile.
    pub fn lock(&self, timeout: Duration) -> Result<MutexGuard> {
        let deadline = crate::time::deadline(timeout);
        let entry = self.entry();
        let (revision, owner) = entry.enqueue()?;
        if owner == revision {
            return Ok(entry.guard(revision));
        }
        if let Err(e) = entry.wait_for_predecessors(revision, deadline, timeout) {
            // Best effort: a key left behind goes with the lease anyway.
            let _ = entry.dequeue();
            return Err(e);
        }
        // Still queued? The lease may have gone while we waited.
        let mine = self.session.client().kv().get(entry.key.clone())?;
        match mine.first() {
            Some(kv) if kv.create_revision() == revision => Ok(entry.guard(revision)),
            _ => Err(self.session.lost()),
        }
    }
}

impl Entry {
    /// Puts this session's key if it is not there; its create revision, and that of the
    /// key first in the queue.
    fn enqueue(&self) -> Result<(i64, i64)> {
        retried(&self.mutex.session, || self.try_enqueue())
    }

    fn try_enqueue(&self) -> Result<(i64, i64)> {
        let kv = self.mutex.session.client().kv();
        let first = GetOptions::new()
            .prefix()
            .sort(SortTarget::CreateRevision, SortOrder::Ascend)
            .limit(1);
        let response = kv.txn(
            Txn::new()
                .when([Compare::create_revision(self.key.clone()).eq(0)])
                .and_then([
                    TxnOp::put_with(
                        self.key.clone(),
                        Vec::new(),
                        PutOptions::new().lease(self.mutex.session.lease_id()),
                    ),
                    TxnOp::get_with(self.mutex.prefix.clone(), first.clone()),
                ])
                .or_else([
                    TxnOp::get(self.key.clone()),
                    TxnOp::get_with(self.mutex.prefix.clone(), first),
                ]),
        )?;
        let responses = response.responses();
        let revision = if response.succeeded() {
            response.header().revision()
        } else {
            responses
                .first()
                .and_then(|r| r.as_get())
                .and_then(|g| g.first())
                .map_or(0, |kv| kv.create_revision())
        };
        let owner = responses
            .get(1)
            .and_then(|r| r.as_get())
            .and_then(|g| g.first())
            .map_or(revision, |kv| kv.create_revision());
        Ok((revision, owner))
    }

    fn dequeue(&self) -> Result<()> {
        let kv = self.mutex.session.client().kv();
        retried(&self.mutex.session, || {
            kv.delete(self.key.clone()).map(drop)
        })
    }

    /// Waits until no key under the prefix was created before `revision`: for each, the
    /// newest first, its deletion.
    fn wait_for_predecessors(
        &self,
        revision: i64,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<()> {
        let client = self.mutex.session.client();
        let kv = client.kv();
        let done = self.mutex.session.done();
        loop {
            let before = kv.get_with(
                self.mutex.prefix.clone(),
                GetOptions::new()
                    .prefix()
                    .max_create_revision(revision - 1)
                    .sort(SortTarget::CreateRevision, SortOrder::Descend)
                    .limit(1),
            )?;
            let Some(predecessor) = before.first() else {
                return Ok(());
            };
            let watcher = client.watch().watch_with(
                predecessor.key().to_vec(),
                WatchOptions::new().start_revision(before.header().revision() + 1),
            )?;
            let responses = watcher.receiver().clone();
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                select! {
                    recv(responses) -> response => match response {
                        Ok(r) if r.events().iter().any(|e| e.kind() == EventKind::Delete) => break,
                        Ok(_) => {}
                        // The watch ended: say why.
                        Err(_) => return Err(watcher.recv().err().unwrap_or(Error::Closed)),
                    },
                    recv(done) -> _ => return Err(self.mutex.session.lost()),
                    default(left) => {
                        return Err(Error::WaitTimeout {
                            what: format!("the lock {}", String::from_utf8_lossy(&self.mutex.prefix)),
                            timeout,
                        })
                    }
                }
            }
        }
    }

    fn guard(self, revision: i64) -> MutexGuard {
        MutexGuard {
            entry: self,
            revision,
            released: false,
        }
    }
}

/// A held lock: released by [`unlock`](MutexGuard::unlock) or on drop (best effort,
/// logged on failure). A holder that may have lost its session (and with it the lock)
/// writes through [`fence`](MutexGuard::fence): "only if I still hold the lock".
#[derive(Debug)]
pub struct MutexGuard {
    entry: Entry,
    revision: i64,
    released: bool,
}

impl MutexGuard {
    /// The holder's key.
    pub fn key(&self) -> &[u8] {
        &self.entry.key
    }

    /// The create revision of the holder's key: it orders the lock's holders.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// A compare that holds only while this guard's key is the one the lock was taken
    /// with: put it in a transaction's `when` to fence a write to the holder.
    pub fn fence(&self) -> Compare {
        Compare::create_revision(self.entry.key.clone()).eq(self.revision)
    }

    /// True while the session that took the lock is alive (the lock may still have been
    /// lost a moment ago: fence writes with [`fence`](MutexGuard::fence)).
    pub fn session_alive(&self) -> bool {
        self.entry.mutex.session.is_alive()
    }

    /// Releases the lock.
    pub fn unlock(mut self) -> Result<()> {
        self.released = true;
        self.entry.dequeue()
    }
}

impl Drop for MutexGuard {
    fn drop(&mut self) {
        if !self.released {
            if let Err(e) = self.entry.dequeue() {
                log::warn!(
                    "etcd lock {} not released on drop (its lease will release it): {e}",
                    String::from_utf8_lossy(&self.entry.mutex.prefix)
                );
            }
        }
    }
}

/// Runs `step` (a request that is safe to repeat: it puts a key only if it is absent, or
/// deletes one) again while its outcome is unknown or no member could take it, for at most
/// the session's TTL (after which the lease decides anyway).
fn retried<T>(session: &Session, mut step: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = crate::time::deadline(session.ttl());
    loop {
        match step() {
            Err(e)
                if (matches!(e, Error::WriteOutcomeUnknown { .. }) || e.is_unavailable())
                    && Instant::now() < deadline =>
            {
                log::debug!("etcd lock step failed, trying again: {e}");
                crate::park::park_until(crate::time::deadline(Duration::from_millis(10)));
            }
            other => return other,
        }
    }
}
