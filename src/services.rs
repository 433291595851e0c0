//! Thin handles of etcd's own lock and election services (`v3lock`, `v3election`): the
//! server runs the recipe, the client sends one request. The client-side recipes in
//! [`concurrency`](crate::concurrency) do the same with fences, deadlines and an observer
//! of their own; these are for programs that talk to the services already.

use std::time::Duration;

use crate::call::{Caller, Rpc};
use crate::error::{Error, Result};
use crate::kv::Namespace;
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
    namespace: Namespace,
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
        LockService {
            caller,
            timeout,
            namespace: Namespace::default(),
        }
    }

    /// The same handle, its lock names and keys under `namespace`.
    pub(crate) fn in_namespace(mut self, namespace: Namespace) -> LockService {
        self.namespace = namespace;
        self
    }

    /// A handle whose calls wait `timeout` instead of the client's request timeout (the
    /// server holds a lock call until the lock is free).
    pub fn with_timeout(&self, timeout: Duration) -> LockService {
        LockService::new(self.caller.clone(), timeout).in_namespace(self.namespace.clone())
    }

    /// Takes the lock `name` with `lease` (the lock goes with the lease), waiting on the
    /// server until it is free or the handle's timeout passes.
    pub fn lock(&self, name: impl Into<Vec<u8>>, lease: i64) -> Result<ServiceLock> {
        let mut name = name_of(name.into(), "lock name")?;
        self.namespace.key(&mut name);
        let request = v3lock::LockRequest {
            name,
            lease,
            ..Default::default()
        };
        let mut r = self.caller.unary(Rpc::Lock, self.timeout, |s, opt| {
            s.lock.lock_async_opt(&request, opt)
        })?;
        self.namespace.strip(&mut r.key);
        Ok(ServiceLock {
            header: header_of(r.header.as_ref()),
            key: r.key,
        })
    }

    /// Releases a lock by its key.
    pub fn unlock(&self, lock: &ServiceLock) -> Result<()> {
        let mut key = lock.key.clone();
        self.namespace.key(&mut key);
        let request = v3lock::UnlockRequest {
            key,
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
    namespace: Namespace,
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

    /// The leadership as the server knows it: its name and key under `namespace`.
    fn raw(&self, namespace: &Namespace) -> v3election::LeaderKey {
        let (mut name, mut key) = (self.name.clone(), self.key.clone());
        namespace.key(&mut name);
        namespace.key(&mut key);
        v3election::LeaderKey {
            name,
            key,
            rev: self.revision,
            lease: self.lease,
            ..Default::default()
        }
    }
}

impl ElectionService {
    pub(crate) fn new(caller: Caller, timeout: Duration) -> ElectionService {
        caller.note_timeout(timeout);
        ElectionService {
            caller,
            timeout,
            namespace: Namespace::default(),
        }
    }

    /// The same handle, its election names and keys under `namespace`.
    pub(crate) fn in_namespace(mut self, namespace: Namespace) -> ElectionService {
        self.namespace = namespace;
        self
    }

    /// A handle whose calls wait `timeout` instead of the client's request timeout (the
    /// server holds a campaign until it is won).
    pub fn with_timeout(&self, timeout: Duration) -> ElectionService {
        ElectionService::new(self.caller.clone(), timeout).in_namespace(self.namespace.clone())
    }

    /// An election's name as the server knows it.
    fn name(&self, name: Vec<u8>) -> Result<Vec<u8>> {
        let mut name = name_of(name, "election name")?;
        self.namespace.key(&mut name);
        Ok(name)
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
            name: self.name(name.into())?,
            lease,
            value: value.into(),
            ..Default::default()
        };
        let mut r = self.caller.unary(Rpc::Campaign, self.timeout, |s, opt| {
            s.election.campaign_async_opt(&request, opt)
        })?;
        let mut leader = r.leader.take().unwrap_or_default();
        self.namespace.strip(&mut leader.name);
        self.namespace.strip(&mut leader.key);
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
            leader: Some(leader.raw(&self.namespace)).into(),
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
            name: self.name(name.into())?,
            ..Default::default()
        };
        match self.caller.unary(Rpc::Leader, self.timeout, |s, opt| {
            s.election.leader_async_opt(&request, opt)
        }) {
            Ok(mut r) => Ok(r.kv.take().map(|mut kv| {
                self.namespace.strip(&mut kv.key);
                KeyValue::from(kv)
            })),
            Err(e) if e.code() == Some(ServerCode::ElectionNoLeader) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stands `leader` down.
    pub fn resign(&self, leader: &ServiceLeader) -> Result<()> {
        let request = v3election::ResignRequest {
            leader: Some(leader.raw(&self.namespace)).into(),
            ..Default::default()
        };
        self.caller.unary(Rpc::Resign, self.timeout, |s, opt| {
            s.election.resign_async_opt(&request, opt)
        })?;
        Ok(())
    }
}
