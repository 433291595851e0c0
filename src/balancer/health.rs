//! How usable an endpoint is, as the balancer judges it, and the public report of it.

use std::time::Instant;

/// How usable an endpoint is, as the balancer judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Health {
    /// Its last probe passed and no call has failed on it since.
    Healthy = 0,
    /// A call failed on it or its connection dropped; a probe is on its way. Used only when
    /// no endpoint is healthy.
    Suspect = 1,
    /// Its last probe failed; it is re-probed with backoff and not used until one passes.
    Unhealthy = 2,
}

impl Health {
    pub(crate) fn from_u8(v: u8) -> Health {
        match v {
            0 => Health::Healthy,
            1 => Health::Suspect,
            _ => Health::Unhealthy,
        }
    }
}

/// Why an endpoint is in its state, and since when; read for error reports.
#[derive(Debug, Clone)]
pub(crate) struct Detail {
    pub(crate) reason: String,
    pub(crate) since: Instant,
}

/// One endpoint's health, as [`Client::endpoint_health`](crate::Client::endpoint_health)
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointHealth {
    pub(crate) endpoint: String,
    pub(crate) health: Health,
    pub(crate) reason: String,
    pub(crate) since: Instant,
}

impl EndpointHealth {
    /// The endpoint, `host:port`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Its health.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Why: the last probe's verdict or the failure that made it suspect.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// When it entered this state for this reason.
    pub fn since(&self) -> Instant {
        self.since
    }
}

/// What a call needs of the member it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// The leader while it is known and healthy, else any member with a leader: the
    /// first try of a write or a linearizable read, with leader preference on.
    Leader,
    /// Any healthy member, round-robin (a member with a leader): retries, streams, and
    /// every call with leader preference off.
    Healthy,
    /// Any member that answers, with a leader or without one: a serializable read.
    Answering,
}
