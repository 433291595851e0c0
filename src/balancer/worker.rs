//! The balancer's worker thread: probes every endpoint in parallel and keeps the health
//! table true.
//!
//! A probe is a linearizable read (count only, one key) with require-leader metadata and a
//! short deadline: it passes only when the member is up, has a leader, and can reach its
//! quorum, which is what an HTTP/2 ping cannot tell. Probes of all endpoints are in flight
//! together, polled from this one thread, so a hung member never delays the others.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use grpcio::{CallOption, ClientUnaryReceiver};

use super::{Event, Health, ProbeSettings, Shared};
use crate::error::{Error, ServerCode};
use crate::proto::rpc::{RangeRequest, RangeResponse};

/// How often the worker looks at the channels' connectivity even when no probe is due.
const TICK: Duration = Duration::from_millis(50);

/// Wakes the worker thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// The worker's view of one endpoint.
struct Probe {
    due: Instant,
    in_flight: Option<ClientUnaryReceiver<RangeResponse>>,
    /// Failed probes in a row, for the re-probe backoff.
    failures: u32,
}

pub(super) fn run(shared: &Shared, inbox: &Receiver<Event>, settings: ProbeSettings) {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let now = Instant::now();
    let mut probes: Vec<Probe> = shared
        .endpoints
        .iter()
        .map(|_| Probe {
            due: now,
            in_flight: None,
            failures: 0,
        })
        .collect();
    let request = probe_request();
    loop {
        for event in inbox.try_iter() {
            match event {
                Event::Probe(i) => probes[i].due = Instant::now(),
                Event::Stop => return,
            }
        }
        for (i, endpoint) in shared.endpoints.iter().enumerate() {
            if endpoint.health() == Health::Healthy && endpoint.connection_failed() {
                shared.set_health(i, Health::Suspect, "its connection failed");
                probes[i].due = Instant::now();
            }
        }
        let now = Instant::now();
        for (i, probe) in probes.iter_mut().enumerate() {
            if probe.in_flight.is_none() && probe.due <= now {
                start(shared, i, probe, &request, settings, now);
            }
            if let Some(call) = probe.in_flight.as_mut() {
                if let Poll::Ready(result) = Pin::new(call).poll(&mut cx) {
                    probe.in_flight = None;
                    finish(shared, i, probe, result, settings);
                }
            }
        }
        let next = probes
            .iter()
            .filter(|p| p.in_flight.is_none())
            .map(|p| p.due)
            .min()
            .unwrap_or(now + TICK);
        thread::park_timeout(next.saturating_duration_since(Instant::now()).min(TICK));
    }
}

/// The probe: a linearizable count of one key, which needs a leader and a quorum.
fn probe_request() -> RangeRequest {
    RangeRequest {
        key: b"health".to_vec(),
        count_only: true,
        limit: 1,
        ..Default::default()
    }
}

fn start(
    shared: &Shared,
    i: usize,
    probe: &mut Probe,
    request: &RangeRequest,
    settings: ProbeSettings,
    now: Instant,
) {
    let endpoint = &shared.endpoints[i];
    let option = CallOption::default()
        .timeout(settings.timeout)
        .headers(crate::call::require_leader());
    match endpoint.kv.range_async_opt(request, option) {
        Ok(call) => probe.in_flight = Some(call),
        Err(e) => {
            let error = Error::from_grpc(e, &endpoint.target, settings.timeout);
            fail(shared, i, probe, &error.to_string(), settings, now);
        }
    }
}

fn finish(
    shared: &Shared,
    i: usize,
    probe: &mut Probe,
    result: grpcio::Result<RangeResponse>,
    settings: ProbeSettings,
) {
    let endpoint = &shared.endpoints[i];
    let now = Instant::now();
    let cluster = match result {
        Ok(response) => response.header.as_ref().map_or(0, |h| h.cluster_id),
        Err(e) => {
            let error = Error::from_grpc(e, &endpoint.target, settings.timeout);
            // With auth on, a member that answers "permission denied" still served the read.
            if !matches!(
                error.code(),
                Some(ServerCode::PermissionDenied | ServerCode::InvalidAuthToken)
            ) {
                fail(shared, i, probe, &error.to_string(), settings, now);
                return;
            }
            0
        }
    };
    if cluster != 0 {
        let ours = match shared.cluster_id.compare_exchange(
            0,
            cluster,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => cluster,
            Err(known) => known,
        };
        if ours != cluster {
            let reason =
                format!("it belongs to cluster {cluster:x}, not to this client's {ours:x}");
            fail(shared, i, probe, &reason, settings, now);
            return;
        }
    }
    probe.failures = 0;
    probe.due = now + settings.interval;
    shared.set_health(i, Health::Healthy, "its probe passed");
}

fn fail(
    shared: &Shared,
    i: usize,
    probe: &mut Probe,
    reason: &str,
    settings: ProbeSettings,
    now: Instant,
) {
    probe.failures = probe.failures.saturating_add(1);
    let backoff = settings
        .backoff
        .saturating_mul(1 << probe.failures.min(10).saturating_sub(1))
        .min(settings.interval);
    probe.due = now + backoff;
    shared.set_health(i, Health::Unhealthy, reason);
}
