//! A connection to one endpoint: its grpcio channel and the stub of every etcd service on
//! it, and the dial that waits for the first of several to connect.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use grpcio::{Channel, ConnectivityState};

use crate::error::{closed_early_hint, connect_failure, ConnectFailure, EndpointFailure};
use crate::park;
use crate::proto::rpc::StatusRequest;
use crate::proto::rpc_grpc::{
    AuthClient, ClusterClient, KvClient, LeaseClient, MaintenanceClient, WatchClient,
};
use crate::proto::v3election_grpc::ElectionClient;
use crate::proto::v3lock_grpc::LockClient;
use crate::time::{self, Human};

/// The stub of every etcd service, on one channel. A new service is a new field here and
/// nothing else: the layers above reach stubs through this one value.
#[derive(Clone)]
pub(crate) struct Stubs {
    pub(crate) kv: KvClient,
    pub(crate) lease: LeaseClient,
    pub(crate) cluster: ClusterClient,
    pub(crate) maintenance: MaintenanceClient,
    pub(crate) watch: WatchClient,
    pub(crate) lock: LockClient,
    pub(crate) election: ElectionClient,
    pub(crate) auth: AuthClient,
}

impl Stubs {
    fn new(channel: &Channel) -> Stubs {
        Stubs {
            kv: KvClient::new(channel.clone()),
            lease: LeaseClient::new(channel.clone()),
            cluster: ClusterClient::new(channel.clone()),
            maintenance: MaintenanceClient::new(channel.clone()),
            watch: WatchClient::new(channel.clone()),
            lock: LockClient::new(channel.clone()),
            election: ElectionClient::new(channel.clone()),
            auth: AuthClient::new(channel.clone()),
        }
    }
}

/// One endpoint's connection: `host:port`, its channel and its stubs.
pub(crate) struct Connection {
    target: String,
    channel: Channel,
    stubs: Stubs,
}

impl Connection {
    pub(super) fn new(target: &str, channel: Channel) -> Connection {
        Connection {
            target: target.to_owned(),
            stubs: Stubs::new(&channel),
            channel,
        }
    }

    /// The endpoint, as a gRPC target (`host:port`).
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// The service stubs.
    pub(crate) fn stubs(&self) -> &Stubs {
        &self.stubs
    }

    /// True when the channel has a connection (READY): calls on it go out at once.
    pub(crate) fn connected(&self) -> bool {
        self.channel.check_connectivity_state(false) == ConnectivityState::GRPC_CHANNEL_READY
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

/// How long a dial that failed spends asking each endpoint why.
const CAUSE_TIMEOUT: Duration = Duration::from_millis(300);

/// How often a dial looks for endpoints whose connection failed in a way that waiting
/// cannot mend (a TLS handshake refused), so that it can give up before its timeout.
const HANDSHAKE_CHECK: Duration = Duration::from_millis(50);

/// How long a member must go on closing connections before HTTP/2 begins for the dial to
/// take it as a refusal of the client's TLS (or plaintext), not a member going down.
const CLOSING_PERSISTS: Duration = Duration::from_millis(300);

/// Why a dial failed: each endpoint with its cause, and whether every one of them refused
/// the client's TLS (or its plaintext) in the handshake, so that it gave up early.
#[derive(Debug)]
pub(crate) struct DialFailure {
    pub(crate) endpoints: Vec<EndpointFailure>,
    pub(crate) handshake: bool,
}

/// Waits up to `timeout` for one of `connections` (TLS ones if `tls`) to connect; returns
/// its index, or each endpoint with the cause of its failure (refused, no such host, timed
/// out). When every endpoint has failed its handshake, it returns at once: a bad
/// certificate or a plaintext client at a TLS member does not mend by waiting.
pub(crate) fn dial(
    connections: &[Connection],
    timeout: Duration,
    tls: bool,
) -> Result<usize, DialFailure> {
    let timeout = time::clamp(timeout);
    let deadline = time::deadline(timeout);
    let mut waits: Vec<Option<Pin<Box<dyn Future<Output = bool> + '_>>>> = connections
        .iter()
        .map(|c| Some(Box::pin(c.channel.wait_for_connected(timeout)) as _))
        .collect();
    // Per endpoint: a refusal for sure, or since when it has been closing connections.
    let mut refused: Vec<Option<EndpointFailure>> = vec![None; connections.len()];
    let mut closing: Vec<Option<Instant>> = vec![None; connections.len()];
    loop {
        let slice = time::deadline(HANDSHAKE_CHECK).min(deadline);
        let first = park::wait(None, slice, |cx| {
            let mut pending = false;
            for (i, slot) in waits.iter_mut().enumerate() {
                let Some(wait) = slot else { continue };
                match wait.as_mut().poll(cx) {
                    Poll::Ready(true) => return Poll::Ready(Some(i)),
                    Poll::Ready(false) => *slot = None,
                    Poll::Pending => pending = true,
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(None)
            }
        });
        match first {
            Some(Some(i)) => return Ok(i),
            Some(None) => break,
            None if Instant::now() >= deadline => break,
            None => {}
        }
        let failed: Vec<usize> = (0..connections.len())
            .filter(|&i| refused[i].is_none() && connections[i].connection_failed())
            .collect();
        let asked: Vec<&Connection> = failed.iter().map(|&i| &connections[i]).collect();
        let now = Instant::now();
        for (i, mut cause) in failed.into_iter().zip(causes(&asked, timeout)) {
            match connect_failure(&cause.reason) {
                ConnectFailure::Handshake => refused[i] = Some(cause),
                ConnectFailure::ClosedEarly => {
                    let since = *closing[i].get_or_insert(now);
                    if now.duration_since(since) >= CLOSING_PERSISTS {
                        cause.reason = closed_early_hint(&cause.reason, tls);
                        refused[i] = Some(cause);
                    }
                }
                ConnectFailure::Other => closing[i] = None,
            }
        }
        if refused.iter().all(Option::is_some) {
            return Err(DialFailure {
                endpoints: refused.into_iter().flatten().collect(),
                handshake: true,
            });
        }
    }
    drop(waits);
    let all: Vec<&Connection> = connections.iter().collect();
    Err(DialFailure {
        endpoints: causes(&all, timeout),
        handshake: false,
    })
}

/// Why each connection is down: a call that does not wait for a connection fails at once
/// with the channel's last error (refused, no such host), or times out while it connects.
fn causes(connections: &[&Connection], dial_timeout: Duration) -> Vec<EndpointFailure> {
    let option = || super::calls::options(CAUSE_TIMEOUT, false, None);
    let mut calls: Vec<_> = connections
        .iter()
        .map(|c| {
            c.stubs
                .maintenance
                .status_async_opt(&StatusRequest::new(), option())
                .map_err(|e| e.to_string())
        })
        .collect();
    let mut causes: Vec<Option<String>> = vec![None; connections.len()];
    park::wait(None, time::deadline(CAUSE_TIMEOUT * 2), |cx| {
        let mut pending = false;
        for (call, cause) in calls.iter_mut().zip(causes.iter_mut()) {
            if cause.is_some() {
                continue;
            }
            match call {
                Err(e) => *cause = Some(e.clone()),
                Ok(call) => match super::calls::poll(call, cx) {
                    Poll::Ready(Ok(_)) => *cause = Some("connected too late".to_owned()),
                    Poll::Ready(Err(e)) => *cause = Some(describe(&e, dial_timeout)),
                    Poll::Pending => pending = true,
                },
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    });
    connections
        .iter()
        .zip(causes)
        .map(|(c, cause)| EndpointFailure {
            endpoint: c.target.clone(),
            reason: cause.unwrap_or_else(|| not_connected(dial_timeout)),
        })
        .collect()
}

/// A failed cause call as a reason: gRPC's last connection error, without its preamble.
fn describe(error: &grpcio::Error, dial_timeout: Duration) -> String {
    match error {
        grpcio::Error::RpcFailure(status)
            if status.code() == grpcio::RpcStatusCode::DEADLINE_EXCEEDED =>
        {
            not_connected(dial_timeout)
        }
        grpcio::Error::RpcFailure(status) => {
            let message = status.message();
            message
                .strip_prefix("failed to connect to all addresses; last error: ")
                .unwrap_or(message)
                .to_owned()
        }
        other => other.to_string(),
    }
}

fn not_connected(dial_timeout: Duration) -> String {
    format!("not connected within {} (no answer)", Human(dial_timeout))
}
