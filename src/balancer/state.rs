//! What callers and the worker share: the endpoint table, the leader, and the news that
//! wakes callers when either changes.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::RwLock;

use super::endpoint::Endpoint;
use super::health::{EndpointHealth, Health, Need};
use super::leader::{Change, Leader};
use crate::error::EndpointFailure;
use crate::park::{self, News};
use crate::time::Human;
use crate::transport::{Connection, Connector};

/// What callers order the worker to do.
pub(crate) enum Order {
    /// Probe the endpoint with this target now.
    Probe(String),
    /// A call has waited on the leader longer than a probe may take: probe every endpoint
    /// fast for a while, to learn of a new leader (a leader cut off from its peers still
    /// answers probes until it steps down, and its calls just wait).
    Hurry,
    /// The client changed the membership itself, and these are the members after the
    /// change: with auto-sync on, the endpoints follow them now.
    Follow(Vec<crate::proto::rpc::Member>),
    /// Stop.
    Stop,
    /// Panic, `times` times in a row: the test of what a dying worker does.
    #[cfg(feature = "testing")]
    Panic(u32),
}

/// What a failed call says about the endpoint that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Suspect: probe it now, and prefer the others until the probe passes.
    Suspect,
    /// Unhealthy: it cannot serve (no connection, no leader); re-probe with backoff.
    Unhealthy,
}

/// The endpoints in use: replaced whole when membership changes, so a caller holds a
/// consistent snapshot for as long as it needs one.
pub(crate) type Table = Arc<Vec<Arc<Endpoint>>>;

/// The balancer's state, shared by callers and the worker thread.
pub(crate) struct Balancer {
    table: RwLock<Table>,
    next: AtomicUsize,
    /// Told whenever an endpoint's health changes, the leader changes, or the balancer
    /// closes: callers waiting for an endpoint, or on a call whose endpoint or leader may
    /// be gone, subscribe to it.
    news: News,
    orders: Sender<Order>,
    pub(super) worker: OnceLock<Thread>,
    /// The cluster the first healthy endpoint belongs to; 0 until known.
    pub(super) cluster_id: AtomicU64,
    pub(super) leader: Leader,
    /// A hurry (fast probing, [`Order::Hurry`]) is under way: callers need not ask again.
    hurrying: AtomicBool,
    /// How long a call may wait on the leader before the worker is asked to hurry.
    stall: Duration,
    /// The highest store revision a passing probe has carried: how far the cluster has
    /// come, as of the last round, even for a client that makes no calls of its own.
    probed: AtomicI64,
    closed: AtomicBool,
    /// Opens the endpoints that auto-sync finds.
    pub(super) connector: Connector,
}

impl Balancer {
    /// A balancer over `connections`, of which those listed in `connected` are up and start
    /// healthy (the others suspect until their first probe); and the worker's inbox.
    pub(crate) fn new(
        connections: Vec<Connection>,
        connected: &[usize],
        stall: Duration,
        connector: Connector,
    ) -> (Arc<Balancer>, Receiver<Order>) {
        let (orders, inbox) = crossbeam_channel::unbounded();
        let endpoints: Vec<Arc<Endpoint>> = connections
            .into_iter()
            .map(|c| Arc::new(Endpoint::new(c)))
            .collect();
        let balancer = Arc::new(Balancer {
            table: RwLock::new(Arc::new(endpoints)),
            next: AtomicUsize::new(0),
            news: News::default(),
            orders,
            worker: OnceLock::new(),
            cluster_id: AtomicU64::new(0),
            leader: Leader::default(),
            hurrying: AtomicBool::new(false),
            probed: AtomicI64::new(0),
            stall,
            closed: AtomicBool::new(false),
            connector,
        });
        let table = balancer.table();
        for &i in connected {
            balancer.set_health(&table[i], Health::Healthy, "connected");
        }
        (balancer, inbox)
    }

    /// The endpoints in use now.
    pub(crate) fn table(&self) -> Table {
        self.table.read().clone()
    }

    /// The endpoint at `target` (`host:port`) from the table; else a connection of its own
    /// to it, outside the table and dropped with the last call on it: a member the
    /// balancer does not use (a learner, one just added) may still be asked about itself.
    pub(crate) fn endpoint_at(&self, target: &str) -> Arc<Endpoint> {
        if let Some(found) = self.table.read().iter().find(|e| e.target() == target) {
            return found.clone();
        }
        Arc::new(Endpoint::new(self.connector.open(target)))
    }

    /// The membership changed through this client to `members`: with auto-sync on, the
    /// endpoints follow at once instead of at the next interval.
    pub(crate) fn follow_members(&self, members: Vec<crate::proto::rpc::Member>) {
        self.wake_worker(Order::Follow(members));
    }

    /// Puts a new set of endpoints in use.
    pub(super) fn replace_table(&self, table: Vec<Arc<Endpoint>>) {
        *self.table.write() = Arc::new(table);
        self.news.tell();
    }

    /// What wakes callers on a health or leader change.
    pub(crate) fn news(&self) -> &News {
        &self.news
    }

    /// For [`Need::Leader`], the leader's endpoint if it is known and healthy; else a
    /// healthy endpoint, round-robin; else a suspect one; else, for [`Need::Answering`], one
    /// whose member answers without a leader (during a loss of quorum: stale, as
    /// serializable reads may be, and never older than the client has seen, which the call
    /// layer checks); else waits for one of those until `deadline`. `None` at the deadline
    /// or once closed.
    pub(crate) fn pick(&self, deadline: Instant, need: Need) -> Option<Arc<Endpoint>> {
        if need == Need::Leader {
            if let Some(found) = self.leader_endpoint() {
                return Some(found);
            }
        }
        park::wait(Some(&self.news), deadline, |_| {
            if self.closed.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
            match self.pick_now(need) {
                Some(found) => Poll::Ready(Some(found)),
                None => Poll::Pending,
            }
        })
        .flatten()
    }

    fn leader_endpoint(&self) -> Option<Arc<Endpoint>> {
        self.leader_endpoint_any()
            .filter(|e| e.health() == Health::Healthy)
    }

    /// The endpoint of the leader as last learnt, healthy or not.
    pub(super) fn leader_endpoint_any(&self) -> Option<Arc<Endpoint>> {
        let leader = self.leader.id();
        if leader == 0 {
            return None;
        }
        self.table
            .read()
            .iter()
            .find(|e| e.member_id() == leader)
            .cloned()
    }

    /// The leader epoch: changes whenever the leader does or is lost.
    pub(crate) fn leader_epoch(&self) -> u64 {
        self.leader.epoch()
    }

    /// The leader's member ID as last learnt; 0 while unknown or lost.
    #[cfg(test)]
    pub(crate) fn leader_id(&self) -> u64 {
        self.leader.id()
    }

    /// Tells waiting callers when the leader moved.
    pub(super) fn leader_changed(&self, change: Change) {
        if change != Change::None {
            self.news.tell();
        }
        if change == Change::Moved {
            // The worker probes fast while the leader is lost: let it start now.
            if let Some(worker) = self.worker.get() {
                worker.unpark();
            }
        }
    }

    fn pick_now(&self, need: Need) -> Option<Arc<Endpoint>> {
        let table = self.table.read();
        let n = table.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = || (0..n).map(|i| &table[(start + i) % n]);
        order()
            .find(|e| e.health() == Health::Healthy)
            .or_else(|| order().find(|e| e.health() == Health::Suspect))
            .or_else(|| {
                order()
                    .filter(|_| need == Need::Answering)
                    .find(|e| !e.unusable(need))
            })
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
        self.wake_worker(Order::Probe(endpoint.target().to_owned()));
    }

    /// Moves `endpoint` to `health`, telling the callers that wait: for an endpoint they
    /// can use, or on a call there.
    pub(crate) fn set_health(&self, endpoint: &Endpoint, health: Health, reason: &str) {
        let old = endpoint.set(health, reason);
        // An unhealthy member may just have turned leaderless, which serializable reads
        // can use: worth a look for callers that wait.
        if old != health || (health == Health::Unhealthy && endpoint.leaderless()) {
            self.news.tell();
        }
        if old != health {
            log::debug!(
                "etcd endpoint {} is {health:?}: {reason}",
                endpoint.target()
            );
        }
    }

    /// How long a call that needs the leader may wait before [`Balancer::report_stall`] is due.
    pub(crate) fn stall(&self) -> Duration {
        self.stall
    }

    /// A call that needs the leader has waited past [`Balancer::stall`]: the worker probes
    /// every endpoint fast for a while (once per spell, however many calls stall).
    pub(crate) fn report_stall(&self) {
        if !self.hurrying.swap(true, Ordering::AcqRel) {
            self.wake_worker(Order::Hurry);
        }
    }

    /// Notes the revision a passing probe carried.
    pub(super) fn probed(&self, revision: i64) {
        self.probed.fetch_max(revision, Ordering::AcqRel);
    }

    /// The highest revision a passing probe has carried (0 before the first).
    pub(crate) fn probed_revision(&self) -> i64 {
        self.probed.load(Ordering::Acquire)
    }

    /// True while a call on the leader has stalled (the worker's hurry) and `endpoint` is
    /// the leader's: a stream there may sit on a hung member.
    pub(crate) fn doubts(&self, endpoint: &Endpoint) -> bool {
        self.hurrying.load(Ordering::Acquire)
            && endpoint.member_id() != 0
            && endpoint.member_id() == self.leader.id()
    }

    /// The worker's hurry is over: the next stalled call may start another.
    pub(super) fn hurry_over(&self) {
        self.hurrying.store(false, Ordering::Release);
    }

    pub(super) fn wake_worker(&self, order: Order) {
        // The worker may have stopped: then nobody needs waking.
        let _ = self.orders.send(order);
        if let Some(worker) = self.worker.get() {
            worker.unpark();
        }
    }

    /// Ends every wait for an endpoint; later picks find none.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.news.tell();
    }

    /// True once [`Balancer::close`] has run.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Every endpoint with its state and last failure, for an error report.
    pub(crate) fn failures(&self) -> Vec<EndpointFailure> {
        self.table()
            .iter()
            .map(|e| {
                let detail = e.detail();
                EndpointFailure {
                    endpoint: e.target().to_owned(),
                    reason: format!(
                        "{:?} for {}: {}",
                        e.health(),
                        Human(detail.since.elapsed()),
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
                    endpoint: e.target().to_owned(),
                    health: e.health(),
                    reason: detail.reason,
                    since: detail.since,
                }
            })
            .collect()
    }

    /// Makes the worker panic `times` times in a row (the test of a dying worker).
    #[cfg(feature = "testing")]
    pub(crate) fn inject_panic(&self, times: u32) {
        self.wake_worker(Order::Panic(times));
    }
}
