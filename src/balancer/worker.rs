//! The balancer's worker thread (`etcd-balancer`): probes every endpoint in parallel and
//! keeps the health table and the leader true.
//!
//! A probe is a linearizable read (count only, one key) with require-leader metadata and a
//! short deadline: it passes only when the member is up, has a leader, and can reach its
//! quorum, which is what an HTTP/2 ping cannot tell. Probes of all endpoints are in flight
//! together, polled from this one thread, so a hung member never delays the others.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use grpcio::ClientUnaryReceiver;

use super::endpoint::Endpoint;
use super::health::Health;
use super::state::{Balancer, Order, Table};
use crate::error::{Error, ServerCode};
use crate::park;
use crate::proto::rpc::{
    Member, MemberListRequest, MemberListResponse, RangeRequest, RangeResponse, StatusRequest,
    StatusResponse,
};
use crate::threads::Threads;
use crate::time;
use crate::transport::{self, call_options, poll_call, Scheme};

/// How often the worker looks at the channels' connectivity even when no probe is due.
const TICK: Duration = Duration::from_millis(50);

/// How often every endpoint is probed while the leader is lost, to learn the next one (and
/// so end calls stuck on the old one) as soon as it is elected.
const LEADERLESS: Duration = Duration::from_millis(25);

/// How long the worker keeps probing that fast after a call stalled on the leader, or
/// after the leader's endpoint failed.
const HURRY: Duration = Duration::from_secs(1);

/// How the worker probes and syncs; see [`ClientBuilder`](crate::ClientBuilder) for each
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

/// Starts the worker of `balancer`, registered with `threads`, which stop and join it.
pub(crate) fn start(
    balancer: &Arc<Balancer>,
    inbox: Receiver<Order>,
    settings: Settings,
    threads: &Threads,
) -> std::io::Result<()> {
    let stopper = balancer.clone();
    let runner = balancer.clone();
    let thread = threads.spawn(
        "etcd-balancer",
        crate::threads::RESTARTS,
        move || stopper.wake_worker(Order::Stop),
        move || run(&runner, &inbox, settings),
    )?;
    let _ = balancer.worker.set(thread);
    Ok(())
}

/// The worker's view of one endpoint's probing.
struct ProbeState {
    due: Instant,
    in_flight: Option<ClientUnaryReceiver<RangeResponse>>,
    /// A status call sent with the probe, to learn the member's ID and its leader.
    status: Option<ClientUnaryReceiver<StatusResponse>>,
    /// Failed probes in a row, for the re-probe backoff.
    failures: u32,
}

impl ProbeState {
    fn due_now() -> ProbeState {
        ProbeState {
            due: Instant::now(),
            in_flight: None,
            status: None,
            failures: 0,
        }
    }
}

/// The next sync of the endpoints from the member list.
struct MemberSync {
    due: Instant,
    in_flight: Option<ClientUnaryReceiver<MemberListResponse>>,
}

fn run(balancer: &Balancer, inbox: &Receiver<Order>, settings: Settings) {
    park::with_context(|cx| run_in(balancer, inbox, settings, cx));
}

fn run_in(balancer: &Balancer, inbox: &Receiver<Order>, settings: Settings, cx: &mut Context<'_>) {
    let mut probes: HashMap<String, ProbeState> = HashMap::new();
    let mut sync = MemberSync {
        due: time::deadline(settings.auto_sync.unwrap_or(TICK)),
        in_flight: None,
    };
    let request = probe_request();
    let mut hurry_until: Option<Instant> = None;
    // The leader whose failing endpoint started a hurry: one hurry per failure.
    let mut doubted: u64 = 0;
    loop {
        for event in inbox.try_iter() {
            match event {
                Order::Probe(target) => {
                    if let Some(probe) = probes.get_mut(&target) {
                        probe.due = Instant::now();
                    }
                }
                Order::Hurry => hurry_until = Some(time::deadline(HURRY)),
                Order::Follow(members) => {
                    if settings.auto_sync.is_some() {
                        follow(balancer, &balancer.table(), &members);
                    }
                }
                Order::Stop => return,
                #[cfg(feature = "testing")]
                Order::Panic(times) => {
                    if times > 1 {
                        balancer.inject_panic(times - 1);
                    }
                    // The fault the test asked for, compiled only with `testing`.
                    panic!("the balancer worker was told to panic");
                }
            }
        }
        // The leader's endpoint fails its probes: is the leader gone, or only its port?
        // Probe fast for a while to hear what the others say.
        match balancer.leader_endpoint_any() {
            Some(e) if e.health() != Health::Healthy && doubted != e.member_id() => {
                doubted = e.member_id();
                hurry_until = Some(time::deadline(HURRY));
            }
            Some(e) if e.health() == Health::Healthy => doubted = 0,
            _ => {}
        }
        if hurry_until.is_some_and(|until| until <= Instant::now()) {
            hurry_until = None;
            balancer.hurry_over();
        }
        if balancer.leader.lost() || hurry_until.is_some() {
            let soon = time::deadline(LEADERLESS);
            for probe in probes.values_mut() {
                probe.due = probe.due.min(soon);
            }
        }
        let table = balancer.table();
        probes.retain(|target, _| table.iter().any(|e| e.target() == target));
        for endpoint in table.iter() {
            let probe = probes
                .entry(endpoint.target().to_owned())
                .or_insert_with(ProbeState::due_now);
            if endpoint.health() == Health::Healthy && endpoint.connection_failed() {
                balancer.set_health(endpoint, Health::Suspect, "its connection failed");
                probe.due = Instant::now();
            }
            if probe.in_flight.is_none() && probe.due <= Instant::now() {
                start_probe(balancer, endpoint, probe, &request, settings);
            }
            if let Some(call) = probe.in_flight.as_mut() {
                if let Poll::Ready(result) = poll_call(call, cx) {
                    probe.in_flight = None;
                    finish(balancer, endpoint, probe, result, settings);
                }
            }
            if let Some(call) = probe.status.as_mut() {
                if let Poll::Ready(result) = poll_call(call, cx) {
                    probe.status = None;
                    if let Ok(status) = result {
                        learn_leader(balancer, endpoint, &status);
                    }
                }
            }
        }
        if let Some(interval) = settings.auto_sync {
            sync_members(balancer, &table, &mut sync, cx, interval, settings.timeout);
        }
        let next = probes
            .values()
            .filter(|p| p.in_flight.is_none())
            .map(|p| p.due)
            .chain(settings.auto_sync.map(|_| sync.due))
            .min()
            .unwrap_or_else(|| time::deadline(TICK));
        park::park_until(next.min(time::deadline(TICK)));
    }
}

/// Asks a healthy member for the member list when due, and follows it (see [`follow`]).
fn sync_members(
    balancer: &Balancer,
    table: &Table,
    sync: &mut MemberSync,
    cx: &mut Context<'_>,
    interval: Duration,
    timeout: Duration,
) {
    if sync.in_flight.is_none() && sync.due <= Instant::now() {
        sync.due = time::deadline(interval);
        let Some(endpoint) = table.iter().find(|e| e.health() == Health::Healthy) else {
            return;
        };
        let option = call_options(timeout, false, None);
        sync.in_flight = endpoint
            .stubs()
            .cluster
            .member_list_async_opt(&MemberListRequest::new(), option)
            .ok();
    }
    let Some(call) = sync.in_flight.as_mut() else {
        return;
    };
    let Poll::Ready(result) = poll_call(call, cx) else {
        return;
    };
    sync.in_flight = None;
    let Ok(response) = result else {
        return;
    };
    follow(balancer, table, &response.members);
}

/// Puts the client endpoints of `members` in use: new members are added (suspect until
/// probed), departed ones dropped (their connections close when the last call on them
/// ends). Learners are left out: they serve no linearizable request.
fn follow(balancer: &Balancer, table: &Table, members: &[Member]) {
    let mut targets: Vec<String> = Vec::new();
    for member in members.iter().filter(|m| !m.isLearner) {
        // A TLS client takes a member's https:// URL, a plaintext one its http:// URL.
        let tls = balancer.connector.is_tls();
        if let Some(target) = member
            .clientURLs
            .iter()
            .filter_map(|u| transport::parse_endpoint(u).ok())
            .find_map(|(scheme, target)| match scheme {
                Scheme::Bare => Some(target),
                Scheme::Https if tls => Some(target),
                Scheme::Http if !tls => Some(target),
                _ => None,
            })
        {
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
    }
    let same = targets.len() == table.len()
        && table
            .iter()
            .all(|e| targets.iter().any(|t| t == e.target()));
    if targets.is_empty() || same {
        return;
    }
    let next: Vec<Arc<Endpoint>> = targets
        .iter()
        .map(|target| match table.iter().find(|e| e.target() == target) {
            Some(kept) => kept.clone(),
            None => Arc::new(Endpoint::new(balancer.connector.open(target))),
        })
        .collect();
    log::info!(
        "etcd endpoints synced from the member list: {:?} -> {:?}",
        table.iter().map(|e| e.target()).collect::<Vec<_>>(),
        targets
    );
    balancer.replace_table(next);
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

fn start_probe(
    balancer: &Balancer,
    endpoint: &Endpoint,
    probe: &mut ProbeState,
    request: &RangeRequest,
    settings: Settings,
) {
    let option = call_options(settings.timeout, true, None);
    if probe.status.is_none() {
        let option = call_options(settings.timeout, false, None);
        probe.status = endpoint
            .stubs()
            .maintenance
            .status_async_opt(&StatusRequest::new(), option)
            .ok();
    }
    match endpoint.stubs().kv.range_async_opt(request, option) {
        Ok(call) => probe.in_flight = Some(call),
        Err(e) => {
            let error = Error::from_grpc(e, endpoint.target(), settings.timeout);
            fail(
                balancer,
                endpoint,
                probe,
                &error.to_string(),
                settings,
                false,
            );
        }
    }
}

/// Records the member ID behind the endpoint, and what it says of the leader: from a
/// healthy member, who leads; from any member, that it has none, which counts as the
/// leader lost only while the leader's own endpoint fails too (a member cut off from its
/// peers says so while the rest of the cluster leads on).
fn learn_leader(balancer: &Balancer, endpoint: &Endpoint, status: &StatusResponse) {
    if let Some(header) = status.header.as_ref() {
        endpoint.set_member_id(header.member_id);
    }
    let change = if status.leader != 0 {
        if endpoint.health() != Health::Healthy {
            return;
        }
        balancer.leader.named(status.leader, status.raftTerm)
    } else {
        match balancer.leader_endpoint_any() {
            Some(leader) if leader.health() == Health::Unhealthy => balancer.leader.lose(),
            _ => return,
        }
    };
    balancer.leader_changed(change);
}

fn finish(
    balancer: &Balancer,
    endpoint: &Endpoint,
    probe: &mut ProbeState,
    result: grpcio::Result<RangeResponse>,
    settings: Settings,
) {
    let (cluster, revision) = match result {
        Ok(response) => response
            .header
            .as_ref()
            .map_or((0, 0), |h| (h.cluster_id, h.revision)),
        Err(e) => {
            let error = Error::from_grpc(e, endpoint.target(), settings.timeout);
            // With auth on, a member that refuses the probe's read for its (missing) token
            // or its permissions has served it: etcd checks both after the read has passed
            // its leader and quorum. Probes carry no token, so token expiry never makes an
            // endpoint look unhealthy.
            let served = error
                .code()
                .is_some_and(|c| c == ServerCode::PermissionDenied || c.refuses_token());
            if !served {
                // A member that says it has no leader is up and answering: it is unhealthy
                // for writes and linearizable reads, but can serve serializable ones. So
                // can a learner, which refuses everything else ("not supported for
                // learner"): never sent what it refuses, it still serves those.
                let leaderless = matches!(
                    error.code(),
                    Some(ServerCode::NoLeader | ServerCode::NotSupportedForLearner)
                );
                fail(
                    balancer,
                    endpoint,
                    probe,
                    &error.to_string(),
                    settings,
                    leaderless,
                );
                return;
            }
            (0, 0)
        }
    };
    if cluster != 0 {
        let ours = match balancer.cluster_id.compare_exchange(
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
            fail(balancer, endpoint, probe, &reason, settings, false);
            return;
        }
    }
    balancer.probed(revision);
    probe.failures = 0;
    probe.due = time::deadline(settings.interval);
    endpoint.set_leaderless(false);
    balancer.set_health(endpoint, Health::Healthy, "its probe passed");
}

/// Marks the endpoint unhealthy and schedules its next probe with backoff; `leaderless`
/// says the member answered, without a leader (set before the health changes, so a
/// serializable read waiting there is not given up in between).
fn fail(
    balancer: &Balancer,
    endpoint: &Endpoint,
    probe: &mut ProbeState,
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
    probe.due = time::deadline(backoff);
    balancer.set_health(endpoint, Health::Unhealthy, reason);
}
