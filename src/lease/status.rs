//! Where a kept lease stands: what the keeper thread writes and a handle reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::error::Error;

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
    /// Revoked through this handle ([`KeepAlive::revoke`](crate::KeepAlive::revoke), or on drop).
    Revoked,
    /// Renewals stopped through the handle, or another [`Lease::keep_alive`](crate::Lease::keep_alive) of the same
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

impl std::fmt::Display for KeepAliveStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepAliveStatus::Alive => f.write_str("it is alive"),
            KeepAliveStatus::Expired => {
                f.write_str("etcd no longer has it (it expired, or was revoked elsewhere)")
            }
            KeepAliveStatus::Revoked => f.write_str("it was revoked through this client"),
            KeepAliveStatus::Stopped => f.write_str("its renewals were stopped"),
            KeepAliveStatus::Lost(e) => write!(f, "no renewal landed within its TTL: {e}"),
        }
    }
}

/// What a handle and the keeper share: the last renewal, the end once there is one, and
/// the sender whose drop disconnects every `done` receiver.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Standing>,
}

#[derive(Debug)]
struct Standing {
    last: LeaseRenewal,
    end: Option<KeepAliveStatus>,
    done: Option<Sender<()>>,
}

impl Shared {
    pub(crate) fn new(first: LeaseRenewal, done: Sender<()>) -> Shared {
        Shared {
            inner: Mutex::new(Standing {
                last: first,
                end: None,
                done: Some(done),
            }),
        }
    }

    pub(crate) fn renewed(&self, renewal: LeaseRenewal) {
        self.inner.lock().last = renewal;
    }

    /// Ends the keepalive with `status`, unless it has ended already: from now on every
    /// reader sees the end, and every `done` receiver is disconnected.
    pub(crate) fn end(&self, status: KeepAliveStatus) {
        let done = {
            let mut inner = self.inner.lock();
            inner.end.get_or_insert(status);
            inner.done.take()
        };
        drop(done);
    }

    pub(crate) fn status(&self) -> KeepAliveStatus {
        self.inner
            .lock()
            .end
            .clone()
            .unwrap_or(KeepAliveStatus::Alive)
    }

    pub(crate) fn last(&self) -> LeaseRenewal {
        self.inner.lock().last
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
