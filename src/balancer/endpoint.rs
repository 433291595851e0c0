//! One endpoint of the balancer: its channel, service clients and health.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grpcio::{Channel, ChannelBuilder, ConnectivityState, Environment};
use parking_lot::Mutex;

use crate::client::ClientBuilder;
use crate::proto::rpc_grpc::{ClusterClient, KvClient, LeaseClient, MaintenanceClient};

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
    fn from_u8(v: u8) -> Health {
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

/// An etcd endpoint: `host:port`, one grpcio channel, and the clients of each service on it.
pub(crate) struct Endpoint {
    pub(crate) target: String,
    channel: Channel,
    pub(crate) kv: KvClient,
    pub(crate) lease: LeaseClient,
    pub(crate) cluster: ClusterClient,
    pub(crate) maintenance: MaintenanceClient,
    health: AtomicU8,
    /// The member answered its last probe, but has no leader: it cannot serve writes or
    /// linearizable reads, yet still serves serializable ones from its own store.
    leaderless: AtomicBool,
    /// The etcd member ID behind the endpoint, once a status call has told it; 0 before.
    member_id: AtomicU64,
    detail: Mutex<Detail>,
}

impl Endpoint {
    pub(crate) fn open(config: &ClientBuilder, env: &Arc<Environment>, target: &str) -> Endpoint {
        let (send, receive) = config.message_limits();
        let mut builder = ChannelBuilder::new(env.clone())
            // A connection of its own per client: gRPC would otherwise share connections
            // between clients, and closing one client would not close its sockets.
            .use_local_subchannel_pool(true)
            .max_send_message_len(send)
            .max_receive_message_len(receive)
            .initial_reconnect_backoff(Duration::from_millis(50))
            .max_reconnect_backoff(Duration::from_secs(1))
            // Two filters every call would pass through and this client has no use for,
            // measured at about a tenth of the client's CPU per call with 64 callers:
            // gRPC's retry filter (retries are decided in `call`, where it is known what is
            // safe to repeat) and its idle filter (the probes keep every connection busy,
            // and a connection should live as long as its client).
            .enable_retry(false)
            .raw_cfg_int(
                CString::from(c"grpc.client_idle_timeout_ms"),
                i32::MAX, // gRPC's way of saying "never"
            );
        if let Some((interval, timeout)) = config.keepalive() {
            // gRPC's C core otherwise sends at most one ping per 5 minutes while no data
            // flows, which would make the keepalive interval a dead letter.
            builder = builder
                .keepalive_time(interval)
                .keepalive_timeout(timeout)
                .keepalive_permit_without_calls(false)
                .http2_min_sent_ping_interval_without_data(interval);
        }
        let channel = builder.connect(target);
        Endpoint {
            target: target.to_owned(),
            kv: KvClient::new(channel.clone()),
            lease: LeaseClient::new(channel.clone()),
            cluster: ClusterClient::new(channel.clone()),
            maintenance: MaintenanceClient::new(channel.clone()),
            channel,
            member_id: AtomicU64::new(0),
            health: AtomicU8::new(Health::Suspect as u8),
            leaderless: AtomicBool::new(false),
            detail: Mutex::new(Detail {
                reason: "not probed yet".to_owned(),
                since: Instant::now(),
            }),
        }
    }

    pub(crate) fn channel(&self) -> &Channel {
        &self.channel
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

    /// True when a call of this kind should be given up for the endpoint's health: any
    /// call on an unhealthy endpoint, except a serializable read on a member that only
    /// lacks a leader.
    pub(crate) fn unusable(&self, serializable: bool) -> bool {
        self.health() == Health::Unhealthy && !(serializable && self.leaderless())
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
        matches!(
            self.channel.check_connectivity_state(false),
            ConnectivityState::GRPC_CHANNEL_TRANSIENT_FAILURE
                | ConnectivityState::GRPC_CHANNEL_SHUTDOWN
        )
    }
}
