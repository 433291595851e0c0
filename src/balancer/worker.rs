//! The balancer's worker thread: probes every endpoint in parallel and keeps the health
//! table true.
//!
//! A probe is a linearizable read (count only, one key) with require-leader metadata and a
//! short deadline: it passes only when the member is up, has a leader, and can reach its
//! quorum, which is what an HTTP/2 ping cannot tell. Probes of all endpoints are in flight
//! together, polled from this one thread, so a hung member never delays the others.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use grpcio::{CallOption, ClientUnaryReceiver};

use super::{Endpoint, Event, Health, Settings, Shared, Table};
use crate::endpoint;
use crate::error::{Error, ServerCode};
use crate::proto::rpc::{
    MemberListRequest, MemberListResponse, RangeRequest, RangeResponse, StatusRequest,
    StatusResponse,
};

/// How often the worker looks at the channels' connectivity even when no probe is due.
const TICK: Duration = Duration::from_millis(50);

/// How often every endpoint is probed while the leader is lost, to learn the next one (and
/// so end calls stuck on the old one) as soon as it is elected.
const LEADERLESS: Duration = Duration::from_millis(25);

/// How long the worker keeps probing that fast after a call stalled on the leader.
const HURRY: Duration = Duration::from_secs(1);

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
    /// A status call sent with the probe, to learn the member's ID and its leader.
    status: Option<ClientUnaryReceiver<StatusResponse>>,
    /// Failed probes in a row, for the re-probe backoff.
    failures: u32,
}

impl Probe {
    fn now() -> Probe {
        Probe {
            due: Instant::now(),
            in_flight: None,
            status: None,
            failures: 0,
        }
    }
}

/// The next sync of the endpoints from the member list.
struct Sync {
    due: Instant,
    in_flight: Option<ClientUnaryReceiver<MemberListResponse>>,
}

pub(super) fn run(shared: &Shared, inbox: &Receiver<Event>, settings: Settings) {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut probes: HashMap<String, Probe> = HashMap::new();
    let mut sync = Sync {
        due: Instant::now() + settings.auto_sync.unwrap_or(TICK),
        in_flight: None,
    };
    let request = probe_request();
    let mut hurry_until: Option<Instant> = None;
    loop {
        for event in inbox.try_iter() {
            match event {
                Event::Probe(target) => {
                    if let Some(probe) = probes.get_mut(&target) {
                        probe.due = Instant::now();
                    }
                }
                Event::Hurry => hurry_until = Some(Instant::now() + HURRY),
                Event::Stop => return,
            }
        }
        if hurry_until.is_some_and(|until| until <= Instant::now()) {
            hurry_until = None;
            shared.hurry_over();
        }
        if shared.leader_lost() || hurry_until.is_some() {
            let soon = Instant::now() + LEADERLESS;
            for probe in probes.values_mut() {
                probe.due = probe.due.min(soon);
            }
        }
        let table = shared.table();
        probes.retain(|target, _| table.iter().any(|e| &e.target == target));
        for endpoint in table.iter() {
            let probe = probes
                .entry(endpoint.target.clone())
                .or_insert_with(Probe::now);
            if endpoint.health() == Health::Healthy && endpoint.connection_failed() {
                shared.set_health(endpoint, Health::Suspect, "its connection failed");
                probe.due = Instant::now();
            }
            if probe.in_flight.is_none() && probe.due <= Instant::now() {
                start(shared, endpoint, probe, &request, settings);
            }
            if let Some(call) = probe.in_flight.as_mut() {
                if let Poll::Ready(result) = Pin::new(call).poll(&mut cx) {
                    probe.in_flight = None;
                    finish(shared, endpoint, probe, result, settings);
                }
            }
            if let Some(call) = probe.status.as_mut() {
                if let Poll::Ready(result) = Pin::new(call).poll(&mut cx) {
                    probe.status = None;
                    if let Ok(status) = result {
                        learn_leader(shared, endpoint, &status);
                    }
                }
            }
        }
        if let Some(interval) = settings.auto_sync {
            sync_members(
                shared,
                &table,
                &mut sync,
                &mut cx,
                interval,
                settings.timeout,
            );
        }
        let next = probes
            .values()
            .filter(|p| p.in_flight.is_none())
            .map(|p| p.due)
            .chain(settings.auto_sync.map(|_| sync.due))
            .min()
            .unwrap_or_else(|| Instant::now() + TICK);
        thread::park_timeout(next.saturating_duration_since(Instant::now()).min(TICK));
    }
}

/// Asks a healthy member for the member list when due, and puts its members' client
/// endpoints in use: new members are added (suspect until probed), departed ones dropped
/// (their connections close when the last call on them ends). Learners are left out: they
/// serve no linearizable request.
fn sync_members(
    shared: &Shared,
    table: &Table,
    sync: &mut Sync,
    cx: &mut Context<'_>,
    interval: Duration,
    timeout: Duration,
) {
    if sync.in_flight.is_none() && sync.due <= Instant::now() {
        sync.due = Instant::now() + interval;
        let Some(endpoint) = table.iter().find(|e| e.health() == Health::Healthy) else {
            return;
        };
        let option = CallOption::default().timeout(timeout);
        sync.in_flight = endpoint
            .cluster
            .member_list_async_opt(&MemberListRequest::new(), option)
            .ok();
    }
    let Some(call) = sync.in_flight.as_mut() else {
        return;
    };
    let Poll::Ready(result) = Pin::new(call).poll(cx) else {
        return;
    };
    sync.in_flight = None;
    let Ok(response) = result else {
        return;
    };
    let mut targets: Vec<String> = Vec::new();
    for member in response.members.iter().filter(|m| !m.isLearner) {
        if let Some(target) = member
            .clientURLs
            .iter()
            .find_map(|u| endpoint::parse(u).ok())
        {
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
    }
    let same = targets.len() == table.len() && table.iter().all(|e| targets.contains(&e.target));
    if targets.is_empty() || same {
        return;
    }
    let next: Vec<Arc<Endpoint>> = targets
        .iter()
        .map(|target| match table.iter().find(|e| &e.target == target) {
            Some(kept) => kept.clone(),
            None => Arc::new(Endpoint::open(
                &shared.opener.config,
                &shared.opener.env,
                target,
            )),
        })
        .collect();
    log::info!(
        "etcd endpoints synced from the member list: {:?} -> {:?}",
        table.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
        targets
    );
    shared.replace_table(next);
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
    endpoint: &Endpoint,
    probe: &mut Probe,
    request: &RangeRequest,
    settings: Settings,
) {
    let option = CallOption::default()
        .timeout(settings.timeout)
        .headers(crate::call::require_leader());
    if probe.status.is_none() {
        let option = CallOption::default().timeout(settings.timeout);
        probe.status = endpoint
            .maintenance
            .status_async_opt(&StatusRequest::new(), option)
            .ok();
    }
    match endpoint.kv.range_async_opt(request, option) {
        Ok(call) => probe.in_flight = Some(call),
        Err(e) => {
            let error = Error::from_grpc(e, &endpoint.target, settings.timeout);
            fail(shared, endpoint, probe, &error.to_string(), settings, false);
        }
    }
}

/// Records the member ID behind the endpoint, and, from a healthy member, who leads.
fn learn_leader(shared: &Shared, endpoint: &Endpoint, status: &StatusResponse) {
    if let Some(header) = status.header.as_ref() {
        endpoint.set_member_id(header.member_id);
    }
    if status.leader != 0 && endpoint.health() == Health::Healthy {
        shared.set_leader(status.leader);
    }
}

fn finish(
    shared: &Shared,
    endpoint: &Endpoint,
    probe: &mut Probe,
    result: grpcio::Result<RangeResponse>,
    settings: Settings,
) {
    let cluster = match result {
        Ok(response) => response.header.as_ref().map_or(0, |h| h.cluster_id),
        Err(e) => {
            let error = Error::from_grpc(e, &endpoint.target, settings.timeout);
            // With auth on, a member that answers "permission denied" still served the read.
            if !matches!(
                error.code(),
                Some(ServerCode::PermissionDenied | ServerCode::InvalidAuthToken)
            ) {
                // A member that says it has no leader is up and answering: it is unhealthy
                // for writes and linearizable reads, but can serve serializable ones.
                let leaderless = error.code() == Some(ServerCode::NoLeader);
                fail(
                    shared,
                    endpoint,
                    probe,
                    &error.to_string(),
                    settings,
                    leaderless,
                );
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
            fail(shared, endpoint, probe, &reason, settings, false);
            return;
        }
    }
    probe.failures = 0;
    probe.due = Instant::now() + settings.interval;
    endpoint.set_leaderless(false);
    shared.set_health(endpoint, Health::Healthy, "its probe passed");
}

/// Marks the endpoint unhealthy and schedules its next probe with backoff; `leaderless`
/// says the member answered, without a leader (set before the health changes, so a
/// serializable read waiting there is not given up in between).
fn fail(
    shared: &Shared,
    endpoint: &Endpoint,
    probe: &mut Probe,
    reason: &str,
    settings: Settings,
    leaderless: bool,
) {
    endpoint.set_leaderless(leaderless);
    probe.failures = probe.failures.saturating_add(1);
    let backoff = settings
        .backoff
        .saturating_mul(1 << probe.failures.min(10).saturating_sub(1))
        .min(settings.interval);
    probe.due = Instant::now() + backoff;
    shared.set_health(endpoint, Health::Unhealthy, reason);
}
