//! A kept lease's handle: what the keeper thread says of it, and how to stop it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;

use super::handle::Lease;
use super::keeper::{Command, Keeper};
use crate::error::{Error, Result};
use crate::time;

/// One renewal of a lease: the TTL it granted, from when it was sent. The lease lives at
/// least until [`expires_by`](LeaseRenewal::expires_by), whatever happens to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRenewal {
    pub(crate) ttl: Duration,
    pub(crate) at: Instant,
}

impl LeaseRenewal {
    /// The TTL granted, in whole seconds.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// When the renewal was sent: the server started the TTL after that.
    pub fn sent_at(&self) -> Instant {
        self.at
    }

    /// Until when the lease lives for sure: the send time plus the TTL.
    pub fn expires_by(&self) -> Instant {
        self.at + self.ttl
    }
}

/// Where a kept lease stands.
#[derive(Debug, Clone)]
pub enum KeepAliveStatus {
    /// Renewed, and renewing.
    Alive,
    /// etcd said the lease is gone (a renewal answered TTL 0): it expired, or somebody
    /// revoked it.
    Expired,
    /// Revoked through this handle ([`KeepAlive::revoke`], or on drop).
    Revoked,
    /// Renewals stopped through the handle, or another [`Lease::keep_alive`] of the same
    /// lease took it over.
    Stopped,
    /// No renewal landed before the TTL of the last one ran out (every member hung, cut
    /// off or without quorum, or the client closed): the error is the last the keeper met.
    /// The lease may still exist on the server (a new leader extends every lease), but
    /// nothing that depends on it may be trusted any more.
    Lost(Arc<Error>),
}

impl KeepAliveStatus {
    /// True while the lease is renewed.
    pub fn is_alive(&self) -> bool {
        matches!(self, KeepAliveStatus::Alive)
    }
}

/// What a handle and the keeper share.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<(LeaseRenewal, Option<KeepAliveStatus>)>,
}

impl Shared {
    pub(crate) fn new(first: LeaseRenewal) -> Shared {
        Shared {
            inner: Mutex::new((first, None)),
        }
    }

    pub(crate) fn renewed(&self, renewal: LeaseRenewal) {
        self.inner.lock().0 = renewal;
    }

    /// Ends the keepalive with `status`, unless it has ended already.
    pub(crate) fn end(&self, status: KeepAliveStatus) {
        self.inner.lock().1.get_or_insert(status);
    }

    fn status(&self) -> KeepAliveStatus {
        self.inner
            .lock()
            .1
            .clone()
            .unwrap_or(KeepAliveStatus::Alive)
    }

    fn last(&self) -> LeaseRenewal {
        self.inner.lock().0
    }
}

/// A lease kept alive by the client's keepalive thread, from [`Lease::keep_alive`].
///
/// The thread renews the lease a third of its TTL after each renewal, over one stream
/// that carries every kept lease of the client, and moves that stream to another member
/// at once when its member fails. The handle reads where the lease stands
/// ([`status`](KeepAlive::status), [`last_renewal`](KeepAlive::last_renewal)), receives
/// renewals ([`renewals`](KeepAlive::renewals): bounded, a slow reader misses some and
/// never delays one), and waits for the end ([`done`](KeepAlive::done),
/// [`wait`](KeepAlive::wait)). A keepalive never stops silently: it ends
/// [`Expired`](KeepAliveStatus::Expired), [`Revoked`](KeepAliveStatus::Revoked),
/// [`Stopped`](KeepAliveStatus::Stopped) or [`Lost`](KeepAliveStatus::Lost).
///
/// Dropping the handle stops the renewals (the lease then runs out by its TTL); with
/// [`revoke_on_drop`](KeepAlive::revoke_on_drop) it also revokes the lease.
#[derive(Debug)]
pub struct KeepAlive {
    id: i64,
    keeper: Arc<Keeper>,
    shared: Arc<Shared>,
    renewals: Receiver<LeaseRenewal>,
    done: Receiver<()>,
    lease: Lease,
    revoke_on_drop: bool,
}

impl KeepAlive {
    pub(crate) fn new(
        id: i64,
        keeper: Arc<Keeper>,
        shared: Arc<Shared>,
        renewals: Receiver<LeaseRenewal>,
        done: Receiver<()>,
        lease: Lease,
    ) -> KeepAlive {
        KeepAlive {
            id,
            keeper,
            shared,
            renewals,
            done,
            lease,
            revoke_on_drop: false,
        }
    }

    /// The lease's ID.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Where the lease stands now.
    pub fn status(&self) -> KeepAliveStatus {
        self.shared.status()
    }

    /// The last renewal that landed (at first, the one [`Lease::keep_alive`] made).
    pub fn last_renewal(&self) -> LeaseRenewal {
        self.shared.last()
    }

    /// The TTL the last renewal granted.
    pub fn ttl(&self) -> Duration {
        self.last_renewal().ttl
    }

    /// Every renewal as it lands, for `crossbeam_channel::select!` too. Bounded (16): a
    /// reader that falls behind misses renewals; the keeper never waits for it.
    pub fn renewals(&self) -> &Receiver<LeaseRenewal> {
        &self.renewals
    }

    /// A receiver that gets nothing and disconnects when the keepalive ends, however it
    /// ends; cheap to clone and hand to other threads.
    pub fn done(&self) -> Receiver<()> {
        self.done.clone()
    }

    /// Waits up to `timeout` for the keepalive to end; its end, or `None` while it goes on.
    pub fn wait(&self, timeout: Duration) -> Option<KeepAliveStatus> {
        match self.done.recv_timeout(time::clamp(timeout)) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(self.status()),
        }
    }

    /// Revokes the lease on drop too (bounded by the client's request timeout; a failure
    /// is logged).
    pub fn revoke_on_drop(mut self, revoke: bool) -> KeepAlive {
        self.revoke_on_drop = revoke;
        self
    }

    /// Stops renewing and revokes the lease: its keys are deleted at once.
    pub fn revoke(mut self) -> Result<()> {
        self.revoke_on_drop = false;
        self.forget(KeepAliveStatus::Revoked);
        match self.lease.revoke(self.id) {
            Ok(_) => Ok(()),
            // Gone already: what a revoke wants.
            Err(e) if e.code() == Some(crate::ServerCode::LeaseNotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stops renewing; the lease runs out by its TTL.
    pub fn stop(self) {}

    fn forget(&self, status: KeepAliveStatus) {
        self.shared.end(status);
        // Refused only once the client is closed; then nothing renews anyway.
        let _ = self.keeper.tell(Command::Forget(self.id));
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        if self.revoke_on_drop {
            self.forget(KeepAliveStatus::Revoked);
            if let Err(e) = self.lease.revoke(self.id) {
                if e.code() != Some(crate::ServerCode::LeaseNotFound) {
                    log::warn!("etcd lease {:x} not revoked on drop: {e}", self.id);
                }
            }
        } else {
            self.forget(KeepAliveStatus::Stopped);
        }
    }
}

/// The error of a renewal that answered TTL 0: etcd has no such lease.
pub(crate) fn unknown_lease(id: i64, endpoint: &str) -> Error {
    Error::Server(Box::new(crate::error::ServerError {
        code: crate::ServerCode::LeaseNotFound,
        status: crate::StatusCode::NotFound,
        message: format!("requested lease not found (lease {id:x}: a renewal answered TTL 0)"),
        endpoint: endpoint.to_owned(),
    }))
}
