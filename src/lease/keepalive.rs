//! A kept lease's handle: what the keeper thread says of it, and how to stop it.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::keeper::{Command, Keeper};
use super::status::{KeepAliveStatus, LeaseRenewal, Shared};
use crate::error::Result;
use crate::time;

/// Revokes the kept lease: a lease handle's revoke, bounded by its timeout.
pub(crate) type Revoke = Box<dyn Fn() -> Result<()> + Send + Sync>;

/// A lease kept alive by the client's keepalive thread, from [`Lease::keep_alive`](crate::Lease::keep_alive).
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
#[must_use = "dropping a KeepAlive stops renewing the lease at once (and revokes it, with revoke_on_drop); keep it while the lease must live"]
pub struct KeepAlive {
    id: i64,
    keeper: Arc<Keeper>,
    shared: Arc<Shared>,
    renewals: Receiver<LeaseRenewal>,
    done: Receiver<()>,
    revoke: Revoke,
    revoke_on_drop: bool,
}

impl std::fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeepAlive")
            .field("id", &self.id)
            .field("status", &self.status())
            .field("revoke_on_drop", &self.revoke_on_drop)
            .finish_non_exhaustive()
    }
}

impl KeepAlive {
    pub(crate) fn new(
        id: i64,
        keeper: Arc<Keeper>,
        shared: Arc<Shared>,
        renewals: Receiver<LeaseRenewal>,
        done: Receiver<()>,
        revoke: Revoke,
    ) -> KeepAlive {
        KeepAlive {
            id,
            keeper,
            shared,
            renewals,
            done,
            revoke,
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

    /// The last renewal that landed (at first, the one [`Lease::keep_alive`](crate::Lease::keep_alive) made).
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
        (self.revoke)()
    }

    /// Stops renewing; the lease runs out by its TTL.
    pub fn stop(self) {}

    /// Ends the keepalive now with `status` (its `done` receivers disconnect at once) and
    /// stops its renewals.
    pub(crate) fn forget(&self, status: KeepAliveStatus) {
        self.shared.end(status);
        // Refused only once the client is closed; then nothing renews anyway.
        let _ = self
            .keeper
            .tell(Command::Forget(self.id, self.shared.clone()));
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        // A lease that etcd no longer has, or that another keepalive took over, is not
        // revoked again.
        let revoke = self.revoke_on_drop
            && matches!(
                self.status(),
                KeepAliveStatus::Alive | KeepAliveStatus::Lost(_)
            );
        if revoke {
            self.forget(KeepAliveStatus::Revoked);
            if let Err(e) = (self.revoke)() {
                log::warn!("etcd lease {:x} not revoked on drop: {e}", self.id);
            }
        } else {
            self.forget(KeepAliveStatus::Stopped);
        }
    }
}
