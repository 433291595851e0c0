//! Thin handles of etcd's own lock and election services (`v3lock`, `v3election`): the
//! server runs the recipe, the client sends one request. The client-side recipes in
//! [`concurrency`](crate::concurrency) do the same with fences, deadlines and an observer
//! of their own; these are for programs that talk to the services already.

use std::time::Duration;

use crate::call::{Caller, Rpc};
use crate::error::{Error, Result};
use crate::proto::{v3election, v3lock};
use crate::types::{header_of, KeyValue, ResponseHeader};
use crate::ServerCode;

fn name_of(name: Vec<u8>, what: &'static str) -> Result<Vec<u8>> {
    if name.is_empty() {
        return Err(Error::InvalidArgument {
            argument: what,
            reason: "must not be empty".to_owned(),
        });
    }
    Ok(name)
}

/// etcd's lock service, from [`Client::lock_service`](crate::Client::lock_service): cheap
/// to clone.
#[derive(Debug, Clone)]
pub struct LockService {
    caller: Caller,
    timeout: Duration,
}

/// A lock the lock service granted: its key, which [`LockService::unlock`] takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLock {
    header: ResponseHeader,
    key: Vec<u8>,
}

impl ServiceLock {
    /// Who answered.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// The key that holds the lock; it lives as long as the lease it was taken with.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl LockService {
    pub(crate) fn new(caller: Caller, timeout: Duration) -> LockService {
        caller.note_timeout(timeout);
        LockService { caller, timeout }
    }

    /// A handle whose calls wait `timeout` instead of the client's request timeout (the
    /// server holds a lock call until the lock is free).
    pub fn with_timeout(&self, timeout: Duration) -> LockService {
        LockService::new(self.caller.clone(), timeout)
    }

    /// Takes the lock `name` with `lease` (the lock goes with the lease), waiting on the
    /// server until it is free or the handle's timeout passes.
    pub fn lock(&self, name: impl Into<Vec<u8>>, lease: i64) -> Result<ServiceLock> {
        let request = v3lock::LockRequest {
            name: name_of(name.into(), "lock name")?,
            lease,
            ..Default::default()
        };
        let r = self.caller.unary(Rpc::Lock, self.timeout, |s, opt| {
            s.lock.lock_async_opt(&request, opt)
        })?;
        Ok(ServiceLock {
            header: header_of(r.header.as_ref()),
            key: r.key,
        })
    }

    /// Releases a lock by its key.
    pub fn unlock(&self, lock: &ServiceLock) -> Result<()> {
        let request = v3lock::UnlockRequest {
            key: lock.key.clone(),
            ..Default::default()
        };
        self.caller.unary(Rpc::Unlock, self.timeout, |s, opt| {
            s.lock.unlock_async_opt(&request, opt)
        })?;
        Ok(())
    }
}

/// etcd's election service, from
/// [`Client::election_service`](crate::Client::election_service): cheap to clone.
#[derive(Debug, Clone)]
pub struct ElectionService {
    caller: Caller,
    timeout: Duration,
}

/// A leadership the election service granted: what proclaim and resign take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLeader {
    name: Vec<u8>,
    key: Vec<u8>,
    revision: i64,
    lease: i64,
}

impl ServiceLeader {
    /// The election's name.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The leader's key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The create revision of the leader's key.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The lease the leadership goes with.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    fn raw(&self) -> v3election::LeaderKey {
        v3election::LeaderKey {
            name: self.name.clone(),
            key: self.key.clone(),
            rev: self.revision,
            lease: self.lease,
            ..Default::default()
        }
    }
}

impl ElectionService {
    pub(crate) fn new(caller: Caller, timeout: Duration) -> ElectionService {
        caller.note_timeout(timeout);
        ElectionService { caller, timeout }
    }

    /// A handle whose calls wait `timeout` instead of the client's request timeout (the
    /// server holds a campaign until it is won).
    pub fn with_timeout(&self, timeout: Duration) -> ElectionService {
        ElectionService::new(self.caller.clone(), timeout)
    }

    /// Stands in election `name` with `value` and `lease`, waiting on the server until it
    /// leads or the handle's timeout passes.
    pub fn campaign(
        &self,
        name: impl Into<Vec<u8>>,
        lease: i64,
        value: impl Into<Vec<u8>>,
    ) -> Result<ServiceLeader> {
        let request = v3election::CampaignRequest {
            name: name_of(name.into(), "election name")?,
            lease,
            value: value.into(),
            ..Default::default()
        };
        let mut r = self.caller.unary(Rpc::Campaign, self.timeout, |s, opt| {
            s.election.campaign_async_opt(&request, opt)
        })?;
        let leader = r.leader.take().unwrap_or_default();
        Ok(ServiceLeader {
            name: leader.name,
            key: leader.key,
            revision: leader.rev,
            lease: leader.lease,
        })
    }

    /// Sets the leader's value; [`Error::NotLeader`] once `leader` leads no more.
    pub fn proclaim(&self, leader: &ServiceLeader, value: impl Into<Vec<u8>>) -> Result<()> {
        let request = v3election::ProclaimRequest {
            leader: Some(leader.raw()).into(),
            value: value.into(),
            ..Default::default()
        };
        match self.caller.unary(Rpc::Proclaim, self.timeout, |s, opt| {
            s.election.proclaim_async_opt(&request, opt)
        }) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(ServerCode::ElectionNotLeader) => Err(Error::NotLeader {
                election: String::from_utf8_lossy(&leader.name).into_owned(),
            }),
            Err(e) => Err(e),
        }
    }

    /// The leader of election `name` now (its key, value and revisions); `None` when
    /// nobody stands.
    pub fn leader(&self, name: impl Into<Vec<u8>>) -> Result<Option<KeyValue>> {
        let request = v3election::LeaderRequest {
            name: name_of(name.into(), "election name")?,
            ..Default::default()
        };
        match self.caller.unary(Rpc::Leader, self.timeout, |s, opt| {
            s.election.leader_async_opt(&request, opt)
        }) {
            Ok(mut r) => Ok(r.kv.take().map(KeyValue::from)),
            Err(e) if e.code() == Some(ServerCode::ElectionNoLeader) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stands `leader` down.
    pub fn resign(&self, leader: &ServiceLeader) -> Result<()> {
        let request = v3election::ResignRequest {
            leader: Some(leader.raw()).into(),
            ..Default::default()
        };
        self.caller.unary(Rpc::Resign, self.timeout, |s, opt| {
            s.election.resign_async_opt(&request, opt)
        })?;
        Ok(())
    }
}
