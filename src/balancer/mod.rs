//! The balancer: the endpoint table, its health, and the worker thread that keeps it true.
//!
//! Callers read the table without waiting on anyone: each endpoint's health is an atomic.
//! The worker thread (`etcd-balancer`) probes the endpoints in parallel and moves them
//! between healthy, suspect and unhealthy; callers report failures to it and wait on a
//! condition variable when no endpoint is healthy. No lock is held across an RPC.

mod endpoint;
mod worker;

pub(crate) use endpoint::Endpoint;
pub use endpoint::Health;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use grpcio::Environment;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::client::ClientBuilder;
use crate::error::EndpointFailure;
use crate::retry::Mark;

/// How the balancer probes and syncs; see [`ClientBuilder`](crate::ClientBuilder) for each
/// setting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Between probes of a healthy endpoint.
    pub(crate) interval: Duration,
    /// The deadline of one probe.
    pub(crate) timeout: Duration,
    /// The first re-probe delay of an unhealthy endpoint; doubles up to `interval`.
    pub(crate) backoff: Duration,
    /// Between two syncs of the endpoints from the member list; `None`: never.
    pub(crate) auto_sync: Option<Duration>,
}

/// What callers tell the worker.
pub(crate) enum Event {
    /// Probe the endpoint with this target now.
    Probe(String),
    /// A call has waited on the leader longer than a probe may take: probe every endpoint
    /// fast for a while, to learn of a new leader (a leader cut off from its peers still
    /// answers probes until it steps down, and its calls just wait).
    Hurry,
    /// Stop.
    Stop,
}

/// The endpoints in use: replaced whole when membership changes, so a caller holds a
/// consistent snapshot for as long as it needs one.
pub(crate) type Table = Arc<Vec<Arc<Endpoint>>>;

/// What the worker needs to open endpoints that auto-sync finds.
pub(crate) struct Opener {
    pub(crate) config: ClientBuilder,
    pub(crate) env: Arc<Environment>,
}

/// What callers and the worker share.
pub(crate) struct Shared {
    table: RwLock<Table>,
    next: AtomicUsize,
    /// Bumped whenever an endpoint becomes healthy (or leaderless); callers wait on
    /// `changed` for it.
    generation: Mutex<u64>,
    changed: Condvar,
    events: Sender<Event>,
    worker: OnceLock<Thread>,
    /// The cluster the first healthy endpoint belongs to; 0 until known.
    cluster_id: AtomicU64,
    /// The highest store revision any response has carried.
    max_revision: AtomicI64,
    /// The leader's member ID, as the last status of a healthy member said; 0: unknown.
    leader: AtomicU64,
    /// Bumped whenever the leader changes or is lost: calls in flight on followers may have
    /// been forwarded to a leader that is gone, and would hang until their deadline.
    leader_epoch: AtomicU64,
    /// The last leader ever learnt (not reset when the leader is lost).
    known_leader: AtomicU64,
    /// A hurry (fast probing, [`Event::Hurry`]) is under way: callers need not ask again.
    hurrying: AtomicBool,
    /// How long a call may wait on the leader before the worker is asked to hurry.
    stall: Duration,
    opener: Opener,
}

impl Shared {
    /// The endpoints in use now.
    pub(crate) fn table(&self) -> Table {
        self.table.read().clone()
    }

    /// Puts a new set of endpoints in use.
    fn replace_table(&self, table: Vec<Arc<Endpoint>>) {
        *self.table.write() = Arc::new(table);
    }

    /// With `leader`, the leader's endpoint if it is known and healthy; else a healthy
    /// endpoint, round-robin; else a suspect one; else, for a `serializable` read, one whose
    /// member answers without a leader (during a loss of quorum: stale, as such reads may
    /// be, and never older than the client has seen, which `call` checks); else waits for
    /// one of those until `deadline`.
    pub(crate) fn pick(
        &self,
        deadline: Instant,
        leader: bool,
        serializable: bool,
    ) -> Option<Arc<Endpoint>> {
        if leader {
            if let Some(found) = self.leader_endpoint() {
                return Some(found);
            }
        }
        loop {
            let seen = *self.generation.lock();
            if let Some(found) = self.pick_now(serializable) {
                return Some(found);
            }
            let mut generation = self.generation.lock();
            if *generation == seen
                && self
                    .changed
                    .wait_until(&mut generation, deadline)
                    .timed_out()
            {
                return None;
            }
        }
    }

    fn leader_endpoint(&self) -> Option<Arc<Endpoint>> {
        let leader = self.leader.load(Ordering::Relaxed);
        if leader == 0 {
            return None;
        }
        let table = self.table.read();
        table
            .iter()
            .find(|e| e.member_id() == leader && e.health() == Health::Healthy)
            .cloned()
    }

    /// Notes who leads, as a healthy member's status says.
    pub(crate) fn set_leader(&self, member_id: u64) {
        self.leader.store(member_id, Ordering::Release);
        // The first leader learnt is news, not a change: nothing in flight was lost. Any
        // other leader than the last known one is a change, even after a spell of not
        // knowing: calls sent meanwhile may have gone to the old one.
        let known = self.known_leader.swap(member_id, Ordering::AcqRel);
        if known != member_id && known != 0 {
            self.leader_epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The leader epoch: changes whenever the leader does or is lost.
    pub(crate) fn leader_epoch(&self) -> u64 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// The leader's endpoint failed: the leader is unknown until a status names one, and the
    /// epoch moves on.
    fn lose_leader(&self, endpoint: &Endpoint) {
        let id = endpoint.member_id();
        if id != 0
            && self
                .leader
                .compare_exchange(id, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.leader_epoch.fetch_add(1, Ordering::AcqRel);
            // The worker probes fast while the leader is lost: let it start now.
            if let Some(worker) = self.worker.get() {
                worker.unpark();
            }
        }
    }

    /// True while the leader is lost: one was known, and no status has named the next yet.
    pub(crate) fn leader_lost(&self) -> bool {
        self.leader.load(Ordering::Acquire) == 0 && self.known_leader.load(Ordering::Acquire) != 0
    }

    fn pick_now(&self, serializable: bool) -> Option<Arc<Endpoint>> {
        let table = self.table.read();
        let n = table.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = || (0..n).map(|i| &table[(start + i) % n]);
        order()
            .find(|e| e.health() == Health::Healthy)
            .or_else(|| order().find(|e| e.health() == Health::Suspect))
            .or_else(|| order().filter(|_| serializable).find(|e| !e.unusable(true)))
            .cloned()
    }

    /// Records what a failed call says about `endpoint`.
    pub(crate) fn report(&self, endpoint: &Endpoint, mark: Mark, reason: &str) {
        let health = match mark {
            // Already suspect or worse: a probe is on its way.
            Mark::Suspect if endpoint.health() != Health::Healthy => return,
            Mark::Suspect => Health::Suspect,
            Mark::Unhealthy => Health::Unhealthy,
        };
        self.set_health(endpoint, health, reason);
        self.wake_worker(Event::Probe(endpoint.target.clone()));
    }

    /// Moves `endpoint` to `health`, waking callers that wait for one they can use: a
    /// healthy one, or for serializable reads, a leaderless one.
    pub(crate) fn set_health(&self, endpoint: &Endpoint, health: Health, reason: &str) {
        if health != Health::Healthy {
            self.lose_leader(endpoint);
        }
        let old = endpoint.set(health, reason);
        let usable = health == Health::Healthy || endpoint.leaderless();
        // An unhealthy member may just have turned leaderless, which serializable reads
        // can use: worth a look for callers that wait.
        if usable && (old != health || health == Health::Unhealthy) {
            *self.generation.lock() += 1;
            self.changed.notify_all();
        }
        if old != health {
            log::debug!("etcd endpoint {} is {health:?}: {reason}", endpoint.target);
        }
    }

    /// How long a call that needs the leader may wait before [`Shared::stalled`] is due.
    pub(crate) fn stall(&self) -> Duration {
        self.stall
    }

    /// A call that needs the leader has waited past [`Shared::stall`]: the worker probes
    /// every endpoint fast for a while (once per spell, however many calls stall).
    pub(crate) fn stalled(&self) {
        if !self.hurrying.swap(true, Ordering::AcqRel) {
            self.wake_worker(Event::Hurry);
        }
    }

    /// The worker's hurry is over: the next stalled call may start another.
    pub(crate) fn hurry_over(&self) {
        self.hurrying.store(false, Ordering::Release);
    }

    fn wake_worker(&self, event: Event) {
        // The worker may have stopped: then nobody needs waking.
        let _ = self.events.send(event);
        if let Some(worker) = self.worker.get() {
            worker.unpark();
        }
    }

    /// Every endpoint with its state and last failure, for an error report.
    pub(crate) fn failures(&self) -> Vec<EndpointFailure> {
        self.table()
            .iter()
            .map(|e| {
                let detail = e.detail();
                EndpointFailure {
                    endpoint: e.target.clone(),
                    reason: format!(
                        "{:?} for {:?}: {}",
                        e.health(),
                        detail.since.elapsed(),
                        detail.reason
                    ),
                }
            })
            .collect()
    }

    /// Every endpoint's health, as callers see it now.
    pub(crate) fn health(&self) -> Vec<EndpointHealth> {
        self.table()
            .iter()
            .map(|e| {
                let detail = e.detail();
                EndpointHealth {
                    endpoint: e.target.clone(),
                    health: e.health(),
                    reason: detail.reason,
                    since: detail.since,
                }
            })
            .collect()
    }

    /// Notes the revision of a response.
    pub(crate) fn saw_revision(&self, revision: i64) {
        self.max_revision.fetch_max(revision, Ordering::AcqRel);
    }

    /// The highest revision any response has carried.
    pub(crate) fn max_revision(&self) -> i64 {
        self.max_revision.load(Ordering::Acquire)
    }
}

/// One endpoint's health, as [`Client::endpoint_health`](crate::Client::endpoint_health)
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointHealth {
    endpoint: String,
    health: Health,
    reason: String,
    since: Instant,
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

/// The balancer's owner handle: stops and joins the worker when dropped.
pub(crate) struct Balancer {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl Balancer {
    /// Starts the worker over these endpoints. `connected` lists the endpoints whose channel
    /// is already up: they start healthy, the others suspect until their first probe.
    pub(crate) fn start(
        endpoints: Vec<Endpoint>,
        connected: &[usize],
        settings: Settings,
        opener: Opener,
    ) -> std::io::Result<Balancer> {
        let (events, inbox) = crossbeam_channel::unbounded();
        let endpoints: Vec<Arc<Endpoint>> = endpoints.into_iter().map(Arc::new).collect();
        let shared = Arc::new(Shared {
            table: RwLock::new(Arc::new(endpoints)),
            next: AtomicUsize::new(0),
            generation: Mutex::new(0),
            changed: Condvar::new(),
            events,
            worker: OnceLock::new(),
            cluster_id: AtomicU64::new(0),
            max_revision: AtomicI64::new(0),
            leader: AtomicU64::new(0),
            leader_epoch: AtomicU64::new(0),
            known_leader: AtomicU64::new(0),
            hurrying: AtomicBool::new(false),
            stall: settings.timeout / 2,
            opener,
        });
        let table = shared.table();
        for &i in connected {
            shared.set_health(&table[i], Health::Healthy, "connected");
        }
        let worker_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("etcd-balancer".to_owned())
            .spawn(move || worker::run(&worker_shared, &inbox, settings))?;
        let _ = shared.worker.set(handle.thread().clone());
        Ok(Balancer {
            shared,
            worker: Some(handle),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.shared.wake_worker(Event::Stop);
        if let Some(worker) = self.worker.take() {
            if worker.join().is_err() {
                log::error!("the etcd balancer thread panicked");
            }
        }
    }
}
