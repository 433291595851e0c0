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

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};

use crate::error::EndpointFailure;
use crate::retry::Mark;

/// How the balancer probes; see [`ClientBuilder`](crate::ClientBuilder) for each setting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeSettings {
    /// Between probes of a healthy endpoint.
    pub(crate) interval: Duration,
    /// The deadline of one probe.
    pub(crate) timeout: Duration,
    /// The first re-probe delay of an unhealthy endpoint; doubles up to `interval`.
    pub(crate) backoff: Duration,
}

/// What callers tell the worker.
pub(crate) enum Event {
    /// Probe this endpoint now.
    Probe(usize),
    /// Stop.
    Stop,
}

/// What callers and the worker share.
pub(crate) struct Shared {
    pub(crate) endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    /// Bumped, under `changed_lock`, whenever an endpoint becomes healthy.
    generation: Mutex<u64>,
    changed: Condvar,
    events: Sender<Event>,
    worker: OnceLock<Thread>,
    /// The cluster the first healthy endpoint belongs to; 0 until known.
    cluster_id: AtomicU64,
    /// The highest store revision any response has carried.
    max_revision: AtomicI64,
}

impl Shared {
    /// A healthy endpoint, round-robin; else a suspect one; else waits for an endpoint to
    /// become healthy until `deadline`.
    pub(crate) fn pick(&self, deadline: Instant) -> Option<(usize, &Endpoint)> {
        loop {
            let seen = *self.generation.lock();
            if let Some(found) = self.pick_now() {
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

    fn pick_now(&self) -> Option<(usize, &Endpoint)> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = || (0..n).map(|i| (start + i) % n);
        order()
            .find(|&i| self.endpoints[i].health() == Health::Healthy)
            .or_else(|| order().find(|&i| self.endpoints[i].health() == Health::Suspect))
            .map(|i| (i, &self.endpoints[i]))
    }

    /// Records what a failed call says about endpoint `index`.
    pub(crate) fn report(&self, index: usize, mark: Mark, reason: &str) {
        let endpoint = &self.endpoints[index];
        match mark {
            Mark::Suspect => {
                if endpoint.health() != Health::Healthy {
                    return;
                }
                endpoint.set(Health::Suspect, reason);
            }
            Mark::Unhealthy => {
                endpoint.set(Health::Unhealthy, reason);
            }
        }
        self.wake_worker(Event::Probe(index));
    }

    /// Moves endpoint `index` to `health`, waking callers that wait for a healthy one.
    pub(crate) fn set_health(&self, index: usize, health: Health, reason: &str) {
        let old = self.endpoints[index].set(health, reason);
        if health == Health::Healthy && old != Health::Healthy {
            *self.generation.lock() += 1;
            self.changed.notify_all();
        }
        if old != health {
            log::debug!(
                "etcd endpoint {} is {health:?}: {reason}",
                self.endpoints[index].target
            );
        }
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
        self.endpoints
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
        self.endpoints
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

    /// Notes the revision of a response; returns the highest revision seen before it.
    pub(crate) fn saw_revision(&self, revision: i64) -> i64 {
        self.max_revision.fetch_max(revision, Ordering::AcqRel)
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
        probes: ProbeSettings,
    ) -> std::io::Result<Balancer> {
        let (events, inbox) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            endpoints,
            next: AtomicUsize::new(0),
            generation: Mutex::new(0),
            changed: Condvar::new(),
            events,
            worker: OnceLock::new(),
            cluster_id: AtomicU64::new(0),
            max_revision: AtomicI64::new(0),
        });
        for &i in connected {
            shared.set_health(i, Health::Healthy, "connected");
        }
        let worker_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("etcd-balancer".to_owned())
            .spawn(move || worker::run(&worker_shared, &inbox, probes))?;
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
