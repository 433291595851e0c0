//! The lease API's unary calls: grant, revoke, time-to-live and listing.
//!
//! Keepalives (a stream on a thread of its own) come with the lease keepalive work; until
//! then a lease lives for its TTL.

use std::time::Duration;

use crate::call::Spec;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::kv::header_of;
use crate::proto::rpc;
use crate::types::ResponseHeader;

/// The lease API of a [`Client`]: a cheap handle, `Clone + Send + Sync`.
#[derive(Debug, Clone)]
pub struct Lease {
    client: Client,
    timeout: Duration,
}

impl Lease {
    pub(crate) fn new(client: Client, timeout: Duration) -> Lease {
        Lease { client, timeout }
    }

    /// A handle whose calls have this deadline instead of the client's request timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Lease {
        Lease {
            client: self.client.clone(),
            timeout,
        }
    }

    /// Grants a lease of `ttl` seconds, with an ID chosen by the server.
    pub fn grant(&self, ttl: i64) -> Result<LeaseGrantResponse> {
        self.grant_with_id(ttl, 0)
    }

    /// Grants a lease of `ttl` seconds with the given ID (0: chosen by the server).
    pub fn grant_with_id(&self, ttl: i64, id: i64) -> Result<LeaseGrantResponse> {
        if ttl <= 0 {
            return Err(Error::InvalidArgument {
                argument: "lease TTL",
                reason: format!("must be 1 second or more, not {ttl}"),
            });
        }
        not_negative_id(id)?;
        let request = rpc::LeaseGrantRequest {
            TTL: ttl,
            ID: id,
            ..Default::default()
        };
        let r = self.client.unary(Spec::WRITE, self.timeout, |e, opt| {
            e.lease.lease_grant_async_opt(&request, opt)
        })?;
        Ok(LeaseGrantResponse {
            header: header_of(r.header.as_ref()),
            id: r.ID,
            ttl: r.TTL,
        })
    }

    /// Revokes a lease: its keys are deleted at once.
    pub fn revoke(&self, id: i64) -> Result<ResponseHeader> {
        not_negative_id(id)?;
        let request = rpc::LeaseRevokeRequest {
            ID: id,
            ..Default::default()
        };
        let r = self.client.unary(Spec::WRITE, self.timeout, |e, opt| {
            e.lease.lease_revoke_async_opt(&request, opt)
        })?;
        Ok(header_of(r.header.as_ref()))
    }

    /// How long a lease has left, and with `keys`, which keys it holds.
    pub fn time_to_live(&self, id: i64, keys: bool) -> Result<LeaseTimeToLiveResponse> {
        not_negative_id(id)?;
        let request = rpc::LeaseTimeToLiveRequest {
            ID: id,
            keys,
            ..Default::default()
        };
        let mut r = self.client.unary(Spec::READ, self.timeout, |e, opt| {
            e.lease.lease_time_to_live_async_opt(&request, opt)
        })?;
        Ok(LeaseTimeToLiveResponse {
            header: header_of(r.header.as_ref()),
            id: r.ID,
            ttl: r.TTL,
            granted_ttl: r.grantedTTL,
            keys: r.take_keys().into_vec(),
        })
    }
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
    ttl: i64,
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

    /// The TTL the server granted, in seconds.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }
}

/// A lease's remaining life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTimeToLiveResponse {
    header: ResponseHeader,
    id: i64,
    ttl: i64,
    granted_ttl: i64,
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

    /// Seconds left; -1 if the lease has expired or never existed.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// The TTL granted at creation or last renewal, in seconds.
    pub fn granted_ttl(&self) -> i64 {
        self.granted_ttl
    }

    /// The keys attached to the lease, when asked for.
    pub fn keys(&self) -> &[Vec<u8>] {
        &self.keys
    }
}
