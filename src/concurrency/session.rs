//! A session: a lease and its keepalive, shared by what it holds.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::error::{Error, Result};
use crate::lease::{KeepAlive, KeepAliveStatus};
use crate::Client;

/// A lease kept alive by the client's keepalive thread, for the locks and elections that
/// hang on it: cheap to clone (clones share the lease). When the lease is lost (no
/// renewal could land before its TTL ran out), [`done`](Session::done) disconnects, and
/// what the session held must be taken as lost: its keys expire with the lease.
///
/// [`close`](Session::close) revokes the lease, which releases at once every lock and
/// leadership that hangs on it; so does dropping the last clone (best effort, logged on
/// failure, bounded by the client's request timeout).
#[derive(Debug, Clone)]
#[must_use = "dropping the last clone of a Session revokes its lease, which releases every lock and leadership it holds"]
pub struct Session {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    keep: KeepAlive,
    ttl: Duration,
    /// The queue keys this session's lock attempts stand with now: any other key of its
    /// lease in a lock's queue is a leftover (see `queue.rs`).
    attempts: parking_lot::Mutex<std::collections::HashSet<Vec<u8>>>,
}

impl Session {
    /// Grants a lease of `ttl` (a second at least) and keeps it alive.
    pub fn new(client: &Client, ttl: Duration) -> Result<Session> {
        let lease = client.lease();
        let id = lease.grant(ttl)?.id();
        let keep = match lease.keep_alive(id) {
            Ok(keep) => keep.revoke_on_drop(true),
            Err(e) => {
                let _ = lease.revoke(id);
                return Err(e);
            }
        };
        Ok(Session {
            inner: Arc::new(Inner {
                client: client.clone(),
                keep,
                ttl,
                attempts: Default::default(),
            }),
        })
    }

    /// A session on an existing lease, kept alive from now on (it is not revoked by this
    /// session's end unless `revoke` says so).
    pub fn from_lease(client: &Client, id: i64, revoke: bool) -> Result<Session> {
        let keep = client.lease().keep_alive(id)?.revoke_on_drop(revoke);
        let ttl = keep.ttl();
        Ok(Session {
            inner: Arc::new(Inner {
                client: client.clone(),
                keep,
                ttl,
                attempts: Default::default(),
            }),
        })
    }

    /// The lease's ID.
    pub fn lease_id(&self) -> i64 {
        self.inner.keep.id()
    }

    /// The TTL asked for.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The client the session works through.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Where the lease stands.
    pub fn status(&self) -> KeepAliveStatus {
        self.inner.keep.status()
    }

    /// True while the lease is kept alive.
    pub fn is_alive(&self) -> bool {
        self.status().is_alive()
    }

    /// A receiver that gets nothing and disconnects when the session ends (its lease is
    /// lost, expired or revoked), for `crossbeam_channel::select!`.
    pub fn done(&self) -> Receiver<()> {
        self.inner.keep.done()
    }

    /// Notes that an attempt stands with `key` (true), or no more (false).
    pub(crate) fn track(&self, key: &[u8], standing: bool) {
        let mut attempts = self.inner.attempts.lock();
        if standing {
            attempts.insert(key.to_vec());
        } else {
            attempts.remove(key);
        }
    }

    /// True if `key` is one this session's attempts stand with now.
    pub(crate) fn tracks(&self, key: &[u8]) -> bool {
        self.inner.attempts.lock().contains(key)
    }

    /// The error for what the session held, once it has ended.
    pub(crate) fn lost(&self) -> Error {
        let status = self.status();
        let reason = if status.is_alive() {
            // Asked while the end is on its way to this handle (etcd said the lease
            // is gone, and the keeper has not heard yet).
            "etcd no longer has it".to_owned()
        } else {
            status.to_string()
        };
        Error::SessionLost {
            lease: self.lease_id(),
            reason,
        }
    }

    /// `Ok` while the session is alive, else [`Error::SessionLost`].
    pub(crate) fn alive(&self) -> Result<()> {
        if self.is_alive() {
            Ok(())
        } else {
            Err(self.lost())
        }
    }

    /// Ends the session for every clone, then revokes its lease, which releases what the
    /// session holds. The session ends first, as the Go client's `Close` does: when this
    /// returns, every clone reports [`KeepAliveStatus::Revoked`] and every
    /// [`done`](Session::done) receiver is disconnected, whether or not etcd could be
    /// reached; a lease whose revoke failed runs out by its TTL, for no renewal goes out
    /// any more. The revoke waits at most the TTL: by then the lease is gone anyway.
    pub fn close(self) -> Result<()> {
        self.inner.keep.forget(KeepAliveStatus::Revoked);
        let lease = self.inner.client.lease().with_timeout(self.inner.ttl);
        let id = self.lease_id();
        match lease.revoke(id) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(crate::ServerCode::LeaseNotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
