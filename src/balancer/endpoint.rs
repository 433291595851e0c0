//! One endpoint of the balancer: its connection and what the balancer knows of it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use super::health::{Detail, Health, Need};
use crate::transport::{Connection, Stubs};

/// An etcd endpoint: its connection, its health, and the member behind it.
pub(crate) struct Endpoint {
    connection: Connection,
    health: AtomicU8,
    /// The member answered its last probe, but has no leader, or is a learner: it cannot
    /// serve writes or linearizable reads, yet still serves serializable ones from its own
    /// store.
    leaderless: AtomicBool,
    /// The etcd member ID behind the endpoint, once a status call has told it; 0 before.
    member_id: AtomicU64,
    detail: Mutex<Detail>,
}

impl Endpoint {
    /// An endpoint on `connection`, suspect until its first probe.
    pub(crate) fn new(connection: Connection) -> Endpoint {
        Endpoint {
            connection,
            member_id: AtomicU64::new(0),
            health: AtomicU8::new(Health::Suspect as u8),
            leaderless: AtomicBool::new(false),
            detail: Mutex::new(Detail {
                reason: "not probed yet".to_owned(),
                since: Instant::now(),
            }),
        }
    }

    /// `host:port`.
    pub(crate) fn target(&self) -> &str {
        self.connection.target()
    }

    /// The service stubs on its channel.
    pub(crate) fn stubs(&self) -> &Stubs {
        self.connection.stubs()
    }

    /// The current health, without waiting on anyone.
    pub(crate) fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Acquire))
    }

    /// Moves to `health` for `reason`; returns the previous health.
    pub(crate) fn set(&self, health: Health, reason: &str) -> Health {
        let mut detail = self.detail.lock();
        let old = Health::from_u8(self.health.swap(health as u8, Ordering::AcqRel));
        if old != health || detail.reason != reason {
            detail.reason = reason.to_owned();
            detail.since = Instant::now();
        }
        old
    }

    /// True when the member answered its last probe but had no leader: a serializable
    /// read may still go there when nothing is healthy.
    pub(crate) fn leaderless(&self) -> bool {
        self.leaderless.load(Ordering::Acquire)
    }

    pub(crate) fn set_leaderless(&self, leaderless: bool) {
        self.leaderless.store(leaderless, Ordering::Release);
    }

    /// True when a call that needs `need` should be given up for the endpoint's health:
    /// any call on an unhealthy endpoint, except a serializable read
    /// ([`Need::Answering`]) on a member that only lacks a leader.
    pub(crate) fn unusable(&self, need: Need) -> bool {
        self.health() == Health::Unhealthy && !(need == Need::Answering && self.leaderless())
    }

    /// The member ID behind the endpoint; 0 until known.
    pub(crate) fn member_id(&self) -> u64 {
        self.member_id.load(Ordering::Relaxed)
    }

    pub(crate) fn set_member_id(&self, id: u64) {
        self.member_id.store(id, Ordering::Relaxed);
    }

    pub(crate) fn detail(&self) -> Detail {
        self.detail.lock().clone()
    }

    /// True when the channel has no connection and its last attempt to make one failed.
    pub(crate) fn connection_failed(&self) -> bool {
        self.connection.connection_failed()
    }

    /// True when the channel has a connection (gRPC's READY): a call started now is sent.
    pub(crate) fn connected(&self) -> bool {
        self.connection.connected()
    }
}
