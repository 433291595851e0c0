//! The lease API's handle: grant, revoke, time-to-live, listing, one renewal, and
//! keepalives handed to the keeper thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::keepalive::KeepAlive;
use super::keeper::{Command, Keeper, Registration};
use super::status::{unknown_lease, KeepAliveStatus, LeaseRenewal, Shared};
use crate::call::{next, open_stream, send, start_once, Caller, Next, Opener, Rpc};
use crate::error::{Error, Result};
use crate::proto::rpc;
use crate::time;
use crate::types::{header_of, ResponseHeader};

/// The pause between two tries of a one-off renewal.
const PAUSE: Duration = Duration::from_millis(10);

/// The longest TTL etcd grants: 9,000,000,000 s (about 285 years).
const MAX_TTL_SECONDS: i64 = 9_000_000_000;

/// The lease API of a [`Client`](crate::Client): a cheap handle, `Clone + Send + Sync`.
///
/// TTLs are [`Duration`]s; etcd counts them in whole seconds, so a TTL with a fraction of a
/// second is rounded up to the next second, and one longer than etcd's maximum
/// (9,000,000,000 s, about 285 years; `Duration::MAX` too) means that maximum.
#[derive(Debug, Clone)]
pub struct Lease {
    caller: Caller,
    keeper: Arc<Mutex<Option<Arc<Keeper>>>>,
    timeout: Duration,
    namespace: crate::kv::Namespace,
}

impl Lease {
    pub(crate) fn new(
        caller: Caller,
        keeper: Arc<Mutex<Option<Arc<Keeper>>>>,
        timeout: Duration,
    ) -> Lease {
        caller.note_timeout(timeout);
        Lease {
            caller,
            keeper,
            timeout,
            namespace: Default::default(),
        }
    }

    /// The same handle, the keys it lists under `namespace`.
    pub(crate) fn in_namespace(mut self, namespace: crate::kv::Namespace) -> Lease {
        self.namespace = namespace;
        self
    }

    /// A handle whose calls have this deadline instead of the client's request timeout,
    /// as [`Kv::with_timeout`](crate::Kv::with_timeout).
    pub fn with_timeout(&self, timeout: Duration) -> Lease {
        Lease::new(self.caller.clone(), self.keeper.clone(), timeout)
            .in_namespace(self.namespace.clone())
    }

    /// Renews a lease once, over a keepalive stream of its own, tried on other members
    /// until the request timeout. A lease etcd does not have (expired, revoked, never
    /// granted) fails with [`ServerCode::LeaseNotFound`](crate::ServerCode::LeaseNotFound).
    pub fn keep_alive_once(&self, id: i64) -> Result<LeaseKeepAliveResponse> {
        not_negative_id(id)?;
        let route = self.caller.stream_route()?;
        let deadline = time::deadline(self.timeout);
        let open: &Opener<rpc::LeaseKeepAliveRequest, rpc::LeaseKeepAliveResponse> =
            &|s, opt| s.lease.lease_keep_alive_opt(opt);
        let request = rpc::LeaseKeepAliveRequest {
            ID: id,
            ..Default::default()
        };
        loop {
            let sent = Instant::now();
            let attempt = open_stream(&route, deadline, open).and_then(|mut stream| {
                send(&mut stream, request.clone(), deadline)?;
                let answer = next(&route, &mut stream, deadline);
                stream.cancel();
                match answer {
                    Some(Next::Message(r)) if r.TTL <= 0 => {
                        Err(unknown_lease(id, stream.endpoint()))
                    }
                    Some(Next::Message(r)) => Ok(LeaseKeepAliveResponse {
                        header: header_of(r.header.as_ref()),
                        id: r.ID,
                        renewal: LeaseRenewal {
                            ttl: duration(r.TTL),
                            at: sent,
                        },
                    }),
                    Some(Next::Ended(Some(e)) | Next::Abandoned(e)) => Err(e),
                    Some(Next::Ended(None)) => Err(Error::Abandoned {
                        endpoint: stream.endpoint().to_owned(),
                        reason: "the server ended the keepalive stream".to_owned(),
                    }),
                    None => Err(Error::DeadlineExceeded {
                        endpoint: stream.endpoint().to_owned(),
                        timeout: self.timeout,
                    }),
                }
            });
            match attempt {
                Ok(response) => return Ok(response),
                // A renewal is safe to repeat: any other failure is tried again elsewhere.
                // The one retry loop of its own outside `call::retry` (with the queue's
                // enqueue): a one-off renewal is a stream of one message, which the unary
                // path does not carry.
                Err(e)
                    if Instant::now() < deadline
                        && !matches!(e, Error::Closed)
                        && e.code() != Some(crate::ServerCode::LeaseNotFound) =>
                {
                    log::debug!("etcd lease {id:x} renewal failed, trying again: {e}");
                    crate::park::park_until(time::deadline(PAUSE).min(deadline));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Keeps a lease alive until the handle is dropped. Hands the lease to the client's
    /// keepalive thread (`etcd-keepalive`, started with the first keepalive), which renews
    /// it at once and then a third of its TTL after each renewal, and waits (up to the
    /// request timeout) for that first renewal: a lease etcd does not have fails here,
    /// with [`ServerCode::LeaseNotFound`](crate::ServerCode::LeaseNotFound). Many
    /// keepalives started at once share the thread's stream: no round trip of their own
    /// but the renewal. See [`KeepAlive`].
    pub fn keep_alive(&self, id: i64) -> Result<KeepAlive> {
        not_negative_id(id)?;
        let keeper = self.keeper()?;
        let (done, done_rx) = crossbeam_channel::bounded(0);
        let shared = Arc::new(Shared::new(
            LeaseRenewal {
                ttl: Duration::ZERO,
                at: Instant::now(),
            },
            done,
        ));
        let (renewals, renewals_rx) = crossbeam_channel::bounded(16);
        let (first, first_rx) = crossbeam_channel::bounded(1);
        keeper.tell(Command::Keep(Box::new(Registration {
            id,
            shared: shared.clone(),
            renewals,
            first,
        })))?;
        let given_up = |e: Error| {
            let _ = keeper.tell(Command::Forget(id, shared.clone()));
            Err(e)
        };
        match first_rx.recv_timeout(time::clamp(self.timeout)) {
            Ok(Ok(renewal)) => shared.renewed(renewal),
            Ok(Err(e)) => return given_up(e),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                return given_up(Error::DeadlineExceeded {
                    endpoint: keeper.endpoint().unwrap_or_default(),
                    timeout: self.timeout,
                })
            }
            // The keeper ended it: the client closed.
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return given_up(Error::Closed)
            }
        }
        let lease = self.clone();
        let revoke = Box::new(move || match lease.revoke(id) {
            Ok(_) => Ok(()),
            // Gone already: what a revoke wants.
            Err(e) if e.code() == Some(crate::ServerCode::LeaseNotFound) => Ok(()),
            Err(e) => Err(e),
        });
        Ok(KeepAlive::new(
            id,
            keeper,
            shared,
            renewals_rx,
            done_rx,
            revoke,
        ))
    }

    /// The endpoint the client's keepalive stream is on now (every kept lease of the
    /// client shares it), if one is open: for logs and for following a failover.
    pub fn keepalive_endpoint(&self) -> Option<String> {
        self.keeper.lock().as_ref().and_then(|k| k.endpoint())
    }

    /// How many keepalive streams the client has opened so far: one, plus one for each
    /// move to another member.
    pub fn keepalive_streams_opened(&self) -> u64 {
        self.keeper
            .lock()
            .as_ref()
            .map_or(0, |k| k.streams_opened())
    }

    /// The client's keeper, started with its thread on first use.
    fn keeper(&self) -> Result<Arc<Keeper>> {
        start_once(
            &self.keeper,
            &self.caller,
            "etcd-keepalive",
            Keeper::new,
            Keeper::worker,
        )
    }

    /// Grants a lease of `ttl` (at least a second; etcd raises TTLs below its minimum,
    /// 1.5 election timeouts, to that minimum), with an ID chosen by the server.
    pub fn grant(&self, ttl: Duration) -> Result<LeaseGrantResponse> {
        self.grant_with_id(ttl, 0)
    }

    /// Grants a lease of `ttl` with the given ID (0: chosen by the server); an ID in use
    /// fails with [`ServerCode::LeaseExists`](crate::ServerCode::LeaseExists).
    pub fn grant_with_id(&self, ttl: Duration, id: i64) -> Result<LeaseGrantResponse> {
        let ttl = seconds(ttl)?;
        not_negative_id(id)?;
        let request = rpc::LeaseGrantRequest {
            TTL: ttl,
            ID: id,
            ..Default::default()
        };
        let r = self.caller.unary(Rpc::LeaseGrant, self.timeout, |s, opt| {
            s.lease.lease_grant_async_opt(&request, opt)
        })?;
        Ok(LeaseGrantResponse {
            header: header_of(r.header.as_ref()),
            id: r.ID,
            ttl: duration(r.TTL),
        })
    }

    /// Revokes a lease: its keys are deleted at once. An unknown lease fails with
    /// [`ServerCode::LeaseNotFound`](crate::ServerCode::LeaseNotFound).
    ///
    /// A [`KeepAlive`] of this client that keeps the lease ends as soon as etcd answers:
    /// [`KeepAliveStatus::Revoked`](crate::KeepAliveStatus::Revoked) (or
    /// [`Expired`](crate::KeepAliveStatus::Expired) when etcd no longer had the lease),
    /// its `done()` receivers disconnected, before this returns.
    pub fn revoke(&self, id: i64) -> Result<LeaseRevokeResponse> {
        not_negative_id(id)?;
        let request = rpc::LeaseRevokeRequest {
            ID: id,
            ..Default::default()
        };
        let answer = self.caller.unary(Rpc::LeaseRevoke, self.timeout, |s, opt| {
            s.lease.lease_revoke_async_opt(&request, opt)
        });
        let gone = match &answer {
            Ok(_) => Some(KeepAliveStatus::Revoked),
            Err(e) if e.code() == Some(crate::ServerCode::LeaseNotFound) => {
                Some(KeepAliveStatus::Expired)
            }
            Err(_) => None,
        };
        if let Some(status) = gone {
            self.end_kept(id, status);
        }
        Ok(LeaseRevokeResponse {
            header: header_of(answer?.header.as_ref()),
        })
    }

    /// Ends the keepalive of lease `id`, if this client keeps it, with `status`: at once
    /// for its handles (status and `done`), then on the keeper thread.
    pub(crate) fn end_kept(&self, id: i64, status: KeepAliveStatus) {
        let keeper = self.keeper.lock().clone();
        if let Some(keeper) = keeper {
            keeper.end(id, status);
        }
    }

    /// How long a lease has left.
    pub fn time_to_live(&self, id: i64) -> Result<LeaseTimeToLiveResponse> {
        self.ttl_request(id, false)
    }

    /// How long a lease has left, and which keys are attached to it.
    pub fn time_to_live_with_keys(&self, id: i64) -> Result<LeaseTimeToLiveResponse> {
        self.ttl_request(id, true)
    }

    fn ttl_request(&self, id: i64, keys: bool) -> Result<LeaseTimeToLiveResponse> {
        not_negative_id(id)?;
        let request = rpc::LeaseTimeToLiveRequest {
            ID: id,
            keys,
            ..Default::default()
        };
        let mut r = self
            .caller
            .unary(Rpc::LeaseTimeToLive, self.timeout, |s, opt| {
                s.lease.lease_time_to_live_async_opt(&request, opt)
            })?;
        Ok(LeaseTimeToLiveResponse {
            header: header_of(r.header.as_ref()),
            id: r.ID,
            ttl: (r.TTL >= 0).then(|| duration(r.TTL)),
            granted_ttl: duration(r.grantedTTL),
            keys: self.namespace.lease_keys(r.take_keys().into_vec()),
        })
    }

    /// Every lease the cluster holds (etcd 3.3 and later).
    pub fn leases(&self) -> Result<LeaseLeasesResponse> {
        let request = rpc::LeaseLeasesRequest::new();
        let r = self
            .caller
            .unary(Rpc::LeaseLeases, self.timeout, |s, opt| {
                s.lease.lease_leases_async_opt(&request, opt)
            })?;
        Ok(LeaseLeasesResponse {
            header: header_of(r.header.as_ref()),
            ids: r.leases.iter().map(|l| l.ID).collect(),
        })
    }
}

/// A TTL in etcd's whole seconds: rounded up, at most etcd's maximum; zero is refused.
fn seconds(ttl: Duration) -> Result<i64> {
    if ttl.is_zero() {
        return Err(Error::InvalidArgument {
            argument: "lease TTL",
            reason: "must be 1 second or more, not 0".to_owned(),
        });
    }
    let whole = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    Ok(i64::try_from(whole).map_or(MAX_TTL_SECONDS, |s| s.min(MAX_TTL_SECONDS)))
}

/// etcd's seconds as a duration (negative: zero).
fn duration(seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

fn not_negative_id(id: i64) -> Result<()> {
    if id < 0 {
        return Err(Error::InvalidArgument {
            argument: "lease ID",
            reason: format!("must not be negative, got {id}"),
        });
    }
    Ok(())
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrantResponse {
    header: ResponseHeader,
    id: i64,
    ttl: Duration,
}

impl LeaseGrantResponse {
    /// Who answered.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// The lease's ID.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The TTL the server granted, in whole seconds.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// What one renewal answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseKeepAliveResponse {
    header: ResponseHeader,
    id: i64,
    renewal: LeaseRenewal,
}

impl LeaseKeepAliveResponse {
    /// Who answered.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// The lease's ID.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The TTL granted, in whole seconds.
    pub fn ttl(&self) -> Duration {
        self.renewal.ttl()
    }

    /// The renewal: the TTL from when it was sent.
    pub fn renewal(&self) -> LeaseRenewal {
        self.renewal
    }
}

/// What a revoke answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRevokeResponse {
    header: ResponseHeader,
}

impl LeaseRevokeResponse {
    /// Who answered.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }
}

/// A lease's remaining life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTimeToLiveResponse {
    header: ResponseHeader,
    id: i64,
    ttl: Option<Duration>,
    granted_ttl: Duration,
    keys: Vec<Vec<u8>>,
}

impl LeaseTimeToLiveResponse {
    /// Who answered.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// The lease's ID.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The time left, in whole seconds; `None` if the lease has expired or never existed.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The TTL granted at creation or last renewal, in whole seconds.
    pub fn granted_ttl(&self) -> Duration {
        self.granted_ttl
    }

    /// The keys attached to the lease, when asked for with
    /// [`Lease::time_to_live_with_keys`].
    pub fn keys(&self) -> &[Vec<u8>] {
        &self.keys
    }
}

/// Every lease of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseLeasesResponse {
    header: ResponseHeader,
    ids: Vec<i64>,
}

impl LeaseLeasesResponse {
    /// Who answered.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// The IDs of the leases.
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_in_whole_seconds() {
        assert!(seconds(Duration::ZERO).is_err());
        assert_eq!(seconds(Duration::from_nanos(1)).ok(), Some(1));
        assert_eq!(seconds(Duration::from_millis(1500)).ok(), Some(2));
        assert_eq!(seconds(Duration::from_secs(60)).ok(), Some(60));
        assert_eq!(seconds(Duration::MAX).ok(), Some(MAX_TTL_SECONDS));
        assert_eq!(duration(-1), Duration::ZERO);
    }
}
