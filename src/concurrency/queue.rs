//! A queue of keys under a prefix, ordered by create revision, each with a session's
//! lease: what locks and elections are made of (as in the Go client's `concurrency`
//! package). The key first by create revision is at the head; the others wait, each for
//! the deletion of every key created before its own, watching the newest of them so that
//! one deletion wakes one waiter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::select;

use super::cancel::Cancel;
use super::session::Session;
use crate::error::{Error, Result};
use crate::kv::{Compare, GetOptions, SortOrder, SortTarget, Txn, TxnOp};
use crate::watch::WatchOptions;
use crate::{EventKind, PutOptions};

/// How often a waiter looks again at the key it waits on, besides watching it.
const RECHECK: Duration = Duration::from_secs(1);

/// The pause between two tries of a queue step that is safe to repeat.
const PAUSE: Duration = Duration::from_millis(10);

/// Where a key stands in its queue.
#[derive(Debug, Clone, Copy)]
pub(super) struct Standing {
    /// The key's create revision.
    pub(super) revision: i64,
    /// The create revision of the key at the head.
    pub(super) head: i64,
    /// The key was put now (not there before).
    pub(super) new: bool,
}

/// One place in a queue: a session's key under the queue's prefix.
#[derive(Debug, Clone)]
pub(super) struct Queue {
    pub(super) session: Session,
    pub(super) prefix: Vec<u8>,
    pub(super) key: Vec<u8>,
}

/// Numbers the attempts of this process, so that no two share a key.
static ATTEMPTS: AtomicU64 = AtomicU64::new(1);

impl Queue {
    /// A place of its own in the queue under `prefix`, for one attempt of `session`: the
    /// key `{prefix}{lease ID}-{attempt}` (in hex). Attempts of one session (threads that
    /// share it) stand apart and contend like those of different sessions.
    pub(super) fn attempt(session: &Session, prefix: &[u8]) -> Queue {
        let mut key = prefix.to_vec();
        let attempt = ATTEMPTS.fetch_add(1, Ordering::Relaxed);
        key.extend_from_slice(format!("{:x}-{attempt:x}", session.lease_id()).as_bytes());
        Queue {
            session: session.clone(),
            prefix: prefix.to_vec(),
            key,
        }
    }

    /// Puts the key with `value` if it is not there: where it stands.
    ///
    /// Each try requires a fence of its own to be absent. A try of unknown outcome is not
    /// sent again as it is (a copy applied late, after this attempt had ended and deleted
    /// its key, would put the key back, under a lease still alive, and stall the queue):
    /// its fence is put (with the session's lease, so that it goes with the session), which
    /// no copy of the try can get past, and then the key says whether one got there first.
    pub(super) fn enqueue(&self, value: &[u8]) -> Result<Standing> {
        self.session.alive()?;
        self.session.track(&self.key, true);
        let deadline = crate::time::deadline(self.session.ttl());
        loop {
            let fence = super::fence::unique(super::fence::PREFIX);
            match self.try_enqueue(value, &fence) {
                Err(e) if e.is_write_outcome_unknown() => {
                    log::debug!("etcd queue step of unknown outcome, fencing it off: {e}");
                    self.seal(&fence)?;
                    if let Some(standing) = self.standing()? {
                        return Ok(standing);
                    }
                }
                Err(e) if e.is_unavailable() && Instant::now() < deadline => {
                    log::debug!("etcd queue step failed, trying again: {e}");
                    crate::park::park_until(crate::time::deadline(PAUSE));
                }
                // The session's lease went (revoked by a clone's close, or expired).
                Err(e) if e.code() == Some(crate::ServerCode::LeaseNotFound) => {
                    self.session.track(&self.key, false);
                    return Err(self.session.lost());
                }
                other => return other,
            }
            if Instant::now() >= deadline {
                return Err(Error::WaitTimeout {
                    what: format!("a place in {}", String::from_utf8_lossy(&self.prefix)),
                    timeout: self.session.ttl(),
                });
            }
        }
    }

    /// Puts `fence` if it is absent, with the session's lease (so that it goes with the
    /// session): no try that requires its absence can be applied after.
    fn seal(&self, fence: &[u8]) -> Result<()> {
        super::fence::seal(
            &self.session.client().kv(),
            fence,
            b"sealed",
            PutOptions::new().lease(self.session.lease_id()),
            PAUSE,
            crate::time::deadline(self.session.ttl()),
        )
        .map(drop)
    }

    /// Where the key stands, if it is there (put by an earlier try or campaign).
    fn standing(&self) -> Result<Option<Standing>> {
        let response = self.session.client().kv().txn(Txn::new().and_then([
            TxnOp::get(self.key.clone()),
            TxnOp::get_with(self.prefix.clone(), first_by_creation()),
        ]))?;
        let responses = response.responses();
        let Some(mine) = responses
            .first()
            .and_then(|r| r.as_get())
            .and_then(|g| g.first())
        else {
            return Ok(None);
        };
        let revision = mine.create_revision();
        let head = responses
            .get(1)
            .and_then(|r| r.as_get())
            .and_then(|g| g.first())
            .map_or(revision, |kv| kv.create_revision());
        Ok(Some(Standing {
            revision,
            head,
            new: false,
        }))
    }

    fn try_enqueue(&self, value: &[u8], fence: &[u8]) -> Result<Standing> {
        let kv = self.session.client().kv();
        let first = first_by_creation();
        let response = kv.txn(
            Txn::new()
                .when([
                    Compare::create_revision(self.key.clone()).eq(0),
                    Compare::create_revision(fence.to_vec()).eq(0),
                ])
                .and_then([
                    TxnOp::put_with(
                        self.key.clone(),
                        value.to_vec(),
                        PutOptions::new().lease(self.session.lease_id()),
                    ),
                    TxnOp::get_with(self.prefix.clone(), first.clone()),
                ])
                .or_else([
                    TxnOp::get(self.key.clone()),
                    TxnOp::get_with(self.prefix.clone(), first),
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
        let head = responses
            .get(1)
            .and_then(|r| r.as_get())
            .and_then(|g| g.first())
            .map_or(revision, |kv| kv.create_revision());
        Ok(Standing {
            revision,
            head,
            new: response.succeeded(),
        })
    }

    /// Deletes the key.
    pub(super) fn dequeue(&self) -> Result<()> {
        let kv = self.session.client().kv();
        self.session.track(&self.key, false);
        retried(&self.session, || kv.delete(self.key.clone()).map(drop))
    }

    /// A key of this session's lease that no attempt of it stands with: left by an
    /// enqueue whose outcome was unknown and that etcd applied late, after the attempt had
    /// ended (its put-if-absent found the key deleted). Removed if it is still the key
    /// created at `revision`; true if it was one.
    fn clear_leftover(&self, key: &[u8], revision: i64, lease: i64) -> Result<bool> {
        if lease != self.session.lease_id() || self.session.tracks(key) {
            return Ok(false);
        }
        log::warn!(
            "etcd queue {}: removing {} of this session, left by a write applied late",
            String::from_utf8_lossy(&self.prefix),
            String::from_utf8_lossy(key)
        );
        let kv = self.session.client().kv();
        retried(&self.session, || {
            kv.txn(
                Txn::new()
                    .when([Compare::create_revision(key.to_vec()).eq(revision)])
                    .and_then([TxnOp::delete(key.to_vec())]),
            )
            .map(drop)
        })?;
        Ok(true)
    }

    /// Waits until no key under the prefix was created before `revision`: for each, the
    /// newest first, its deletion. `what` names the wait in a timeout.
    ///
    /// Ends early with [`Error::Canceled`] when `cancel` is cancelled, [`Error::Closed`]
    /// when the client is closed (by any clone), and [`Error::SessionLost`] when the
    /// session ends.
    pub(super) fn wait_turn(
        &self,
        revision: i64,
        deadline: Instant,
        timeout: Duration,
        what: &str,
        cancel: Option<&Cancel>,
    ) -> Result<()> {
        let client = self.session.client();
        let kv = client.kv();
        let done = self.session.done();
        let canceled = cancel.map_or_else(crossbeam_channel::never, Cancel::receiver);
        // Why the wait ended early, if it did: a cancel, a close, the session's end.
        let ended = || {
            if cancel.is_some_and(Cancel::is_canceled) {
                Error::Canceled {
                    what: what.to_owned(),
                }
            } else if client.is_closed() {
                Error::Closed
            } else {
                self.session.lost()
            }
        };
        loop {
            if cancel.is_some_and(Cancel::is_canceled) || client.is_closed() {
                return Err(ended());
            }
            let before = kv.get_with(
                self.prefix.clone(),
                GetOptions::new()
                    .prefix()
                    .max_create_revision(revision - 1)
                    .sort(SortTarget::CreateRevision, SortOrder::Descend)
                    .limit(1),
            )?;
            let Some(predecessor) = before.first() else {
                return Ok(());
            };
            if self.clear_leftover(
                predecessor.key(),
                predecessor.create_revision(),
                predecessor.lease(),
            )? {
                continue;
            }
            // A watch from now, which etcd serves at once (one from a past revision waits
            // for the server's next sync round, up to 100 ms); then a look, after its
            // creation, at whether the key is still there: if it is, its delete comes later
            // than the watch's start and reaches it.
            let watcher = client
                .watch()
                .watch_with(predecessor.key().to_vec(), WatchOptions::new())?;
            watcher.created_revision()?;
            let still = kv.get(predecessor.key().to_vec())?;
            if still
                .first()
                .is_none_or(|kv| kv.create_revision() != predecessor.create_revision())
            {
                continue;
            }
            let responses = watcher.receiver().clone();
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                select! {
                    recv(responses) -> response => match response {
                        Ok(r) if r.events().iter().any(|e| e.kind() == EventKind::Delete) => break,
                        Ok(_) => {}
                        // The watch ended: say why (a closed client ends every watch).
                        Err(_) if client.is_closed() => return Err(Error::Closed),
                        Err(_) => return Err(watcher.recv().err().unwrap_or(Error::Closed)),
                    },
                    recv(done) -> _ => return Err(ended()),
                    recv(canceled) -> _ => return Err(ended()),
                    default(left.min(RECHECK)) => {
                        if Instant::now() >= deadline {
                            return Err(Error::WaitTimeout {
                                what: what.to_owned(),
                                timeout,
                            });
                        }
                        // A look now and then, so that a delete the watch did not bring
                        // (which it should) costs a second, not the whole wait.
                        let now = kv.get(predecessor.key().to_vec())?;
                        if now
                            .first()
                            .is_none_or(|kv| kv.create_revision() != predecessor.create_revision())
                        {
                            log::warn!(
                                "etcd queue {}: the key before this one went without its delete \
                                 reaching the watch",
                                String::from_utf8_lossy(&self.prefix)
                            );
                            break;
                        }
                    }
                }
            }
        }
    }

    /// True while the key is there with create revision `revision`: the lease has not gone.
    pub(super) fn holds(&self, revision: i64) -> Result<bool> {
        let mine = self.session.client().kv().get(self.key.clone())?;
        Ok(mine
            .first()
            .is_some_and(|kv| kv.create_revision() == revision))
    }

    /// A compare that holds only while the key is the one created at `revision`.
    pub(super) fn fence(&self, revision: i64) -> Compare {
        Compare::create_revision(self.key.clone()).eq(revision)
    }
}

/// A get of the first key under a prefix by create revision: the queue's head.
fn first_by_creation() -> GetOptions {
    GetOptions::new()
        .prefix()
        .sort(SortTarget::CreateRevision, SortOrder::Ascend)
        .limit(1)
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
                crate::park::park_until(crate::time::deadline(PAUSE));
            }
            other => return other,
        }
    }
}
