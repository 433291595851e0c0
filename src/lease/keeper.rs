//! The keeper: the owner of the stream worker that runs the `etcd-keepalive` thread (see
//! `call/worker.rs`), which renews every kept lease of a client over one bidirectional
//! keepalive stream, on a healthy member chosen by the balancer.
//!
//! Each lease is renewed a third of its TTL after its last renewal (the Go client's rule;
//! up to [`EARLY`] sooner, so that renewals due close together go out together), and at
//! once on a new stream. When the stream ends (etcd ends the whole stream on any
//! renew error but "not found", such as a deposed leader's "not a primary lessor"), when
//! its member turns unhealthy, or when a renewal goes unanswered for the answer time (the
//! member hung), the thread opens a stream on another member and renews every lease
//! there at once. A lease ends only as etcd says (TTL 0 in a renewal: expired), as its
//! handle says (stopped, revoked), or when no renewal has landed before the TTL the last
//! one granted ran out: lost, with the last error. The thread never waits on a handle:
//! renewals go to a bounded channel that drops what a slow reader leaves.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use grpcio::{CallOption, ClientDuplexReceiver, ClientDuplexSender};
use parking_lot::Mutex;

use super::status::{unknown_lease, KeepAliveStatus as Status, LeaseRenewal as Renewal, Shared};
use crate::call::{Look, Owner, StreamView, Stubs, Worker, IDLE};
use crate::error::Error;
use crate::proto::rpc::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use crate::time;

/// How much sooner than due a renewal may go out (a twelfth of its TTL at most), so that
/// renewals due close together go out together: one wake of the thread and one write for
/// many leases, not one each. A batch's leases are due together again a third of their TTL
/// later, so batches merge and stay merged.
const EARLY: Duration = Duration::from_millis(250);

/// The shortest answer time for a renewal, whatever the probe timeout.
const MIN_ANSWER: Duration = Duration::from_millis(25);

/// A lease to keep: its ID, what its handle reads, and where renewals go.
pub(crate) struct Registration {
    pub(crate) id: i64,
    pub(crate) shared: Arc<Shared>,
    pub(crate) renewals: Sender<Renewal>,
    /// Takes the answer to the first renewal, which `keep_alive` waits for.
    pub(crate) first: Sender<Result<Renewal, Error>>,
}

/// What a handle asks of the keeper.
pub(crate) enum Command {
    Keep(Box<Registration>),
    /// Stop renewing the lease of this registration (the handle has set its end); a
    /// registration of the same lease made since is kept.
    Forget(i64, Arc<Shared>),
    /// The lease is gone on the server (revoked through this client, or found missing by
    /// a revoke): end whatever registration keeps it, with this status.
    Gone(i64, Status),
}

/// The keeper of one client; shared by its handles and its thread.
pub(crate) struct Keeper {
    worker: Worker<Leases>,
    /// What each kept lease's handles read, by lease, for ending a lease from a caller's
    /// thread at once (see [`Keeper::end`]); written by handles, never by the thread.
    handles: Mutex<HashMap<i64, Arc<Shared>>>,
}

impl Keeper {
    pub(crate) fn new() -> Keeper {
        Keeper {
            worker: Worker::new(Leases::default()),
            handles: Mutex::default(),
        }
    }

    /// The stream worker that runs the keeper's thread.
    pub(crate) fn worker(&self) -> &Worker<Leases> {
        &self.worker
    }

    /// The endpoint the stream is on, if one is open.
    pub(crate) fn endpoint(&self) -> Option<String> {
        self.worker.endpoint()
    }

    /// How many streams have been opened so far.
    pub(crate) fn streams_opened(&self) -> u64 {
        self.worker.streams_opened()
    }

    /// Hands the thread a command; refused once the client is closed.
    pub(crate) fn tell(&self, command: Command) -> Result<(), Error> {
        match &command {
            Command::Keep(registration) => {
                self.handles
                    .lock()
                    .insert(registration.id, registration.shared.clone());
            }
            Command::Forget(id, shared) => {
                let mut handles = self.handles.lock();
                if handles.get(id).is_some_and(|s| Arc::ptr_eq(s, shared)) {
                    handles.remove(id);
                }
            }
            Command::Gone(id, _) => {
                self.handles.lock().remove(id);
            }
        }
        self.worker.tell(command)
    }

    /// Ends the keepalive of lease `id`, if one is kept, with `status`: its handles read
    /// the end and their `done` receivers disconnect before this returns; the thread stops
    /// renewing it at its next turn.
    pub(crate) fn end(&self, id: i64, status: Status) {
        let shared = self.handles.lock().get(&id).cloned();
        if let Some(shared) = shared {
            shared.end(status.clone());
        }
        // Refused only once the client is closed; then nothing renews anyway.
        let _ = self.tell(Command::Gone(id, status));
    }
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

/// One kept lease as the thread keeps it.
struct Kept {
    registration: Box<Registration>,
    /// The TTL the last renewal granted.
    ttl: Duration,
    /// When the next renewal is due (its key in `State::due`), while none is on its way.
    due: Option<Instant>,
    /// When the renewal on its way was sent.
    sent: Option<Instant>,
    /// When the lease runs out unless renewed: the last renewal's send time plus its TTL
    /// (its key in `State::expiry`); before the first renewal, never (`keep_alive` waits
    /// for that one, and gives up the lease at its own deadline).
    expires: Instant,
    /// Waits for the first renewal's answer.
    first: Option<Sender<Result<Renewal, Error>>>,
}

impl Kept {
    /// Ends the lease with `status`: its handle reads it, its `done` receivers disconnect.
    fn end(self, status: Status) {
        self.registration.shared.end(status);
    }
}

/// The keeper's leases and timers. Every step costs a logarithm of the leases, not their
/// number: renewals due and expiries are kept in order, and renewals on their way in the
/// order they were sent (etcd answers a stream's renewals in that order).
#[derive(Default)]
pub(crate) struct Leases {
    leases: HashMap<i64, Kept>,
    due: BTreeSet<(Instant, i64)>,
    expiry: BTreeSet<(Instant, i64)>,
    in_flight: VecDeque<(Instant, i64)>,
    /// True while a stream is open.
    open: bool,
    outbox: VecDeque<LeaseKeepAliveRequest>,
    /// When the current stream last sent anything.
    heard: Option<Instant>,
    /// Why the last stream failed, for a lease lost afterwards.
    last_error: Option<Arc<Error>>,
}

impl Owner for Leases {
    type Command = Command;
    type Request = LeaseKeepAliveRequest;
    type Response = LeaseKeepAliveResponse;
    const NAME: &'static str = "keepalive";

    fn open(
        stubs: &Stubs,
        option: CallOption,
    ) -> grpcio::Result<(
        ClientDuplexSender<LeaseKeepAliveRequest>,
        ClientDuplexReceiver<LeaseKeepAliveResponse>,
    )> {
        stubs.lease.lease_keep_alive_opt(option)
    }

    fn outbox(&mut self) -> &mut VecDeque<LeaseKeepAliveRequest> {
        &mut self.outbox
    }

    fn command(&mut self, command: Command) {
        self.apply(command);
    }

    fn wants_stream(&self) -> bool {
        !self.leases.is_empty()
    }

    fn tick(&mut self, now: Instant) {
        self.lose_expired(now);
    }

    fn attached(&mut self) {
        self.attach();
    }

    fn detached(&mut self, why: Error) {
        self.open = false;
        self.in_flight.clear();
        if !matches!(why, Error::Closed) {
            self.last_error = Some(Arc::new(why));
        }
    }

    fn open_failed(&mut self, error: Error) {
        self.last_error = Some(Arc::new(error));
    }

    fn latest(&self, now: Instant) -> Instant {
        self.next_expiry(now)
    }

    fn look(&mut self, view: &StreamView<'_>, now: Instant) -> Look {
        let answer = view.answer_time(MIN_ANSWER);
        if self.silent(answer, now) {
            return Look::Silent(format!(
                "its keepalive stream answered no renewal for {} ms",
                answer.as_millis()
            ));
        }
        Look::Fine(self.send_due(now, answer))
    }

    fn received(
        &mut self,
        view: &StreamView<'_>,
        response: LeaseKeepAliveResponse,
    ) -> Result<(), String> {
        self.renewed(&response, view.endpoint());
        Ok(())
    }

    fn closing(&mut self) {
        self.due.clear();
        self.expiry.clear();
        for (_, kept) in std::mem::take(&mut self.leases) {
            kept.end(Status::Lost(Arc::new(Error::Closed)));
        }
    }
}

impl Leases {
    fn apply(&mut self, command: Command) {
        match command {
            Command::Keep(registration) => {
                let id = registration.id;
                if let Some(old) = self.remove(id) {
                    // Kept twice: the older handle stops hearing of it.
                    old.end(Status::Stopped);
                }
                let now = Instant::now();
                let kept = Kept {
                    ttl: Duration::ZERO,
                    due: Some(now),
                    sent: None,
                    expires: time::deadline(time::LONGEST),
                    first: Some(registration.first.clone()),
                    registration,
                };
                self.insert(id, kept);
            }
            Command::Forget(id, shared) => {
                let same = self
                    .leases
                    .get(&id)
                    .is_some_and(|kept| Arc::ptr_eq(&kept.registration.shared, &shared));
                if same {
                    self.remove(id);
                }
            }
            Command::Gone(id, status) => {
                if let Some(mut kept) = self.remove(id) {
                    if let Some(first) = kept.first.take() {
                        let _ = first.try_send(Err(unknown_lease(id, "")));
                    }
                    kept.end(status);
                }
            }
        }
    }

    fn insert(&mut self, id: i64, kept: Kept) {
        if let Some(due) = kept.due {
            self.due.insert((due, id));
        }
        self.expiry.insert((kept.expires, id));
        self.leases.insert(id, kept);
    }

    /// Takes a lease out with its timers (a renewal on its way is ignored when answered).
    fn remove(&mut self, id: i64) -> Option<Kept> {
        let kept = self.leases.remove(&id)?;
        if let Some(due) = kept.due {
            self.due.remove(&(due, id));
        }
        self.expiry.remove(&(kept.expires, id));
        Some(kept)
    }

    /// A new stream: every lease is renewed on it at once.
    fn attach(&mut self) {
        self.open = true;
        self.in_flight.clear();
        self.due.clear();
        let now = Instant::now();
        for (&id, kept) in &mut self.leases {
            kept.sent = None;
            kept.due = Some(now);
            self.due.insert((now, id));
        }
        self.heard = None;
    }

    /// Leases whose TTL ran out with no renewal landed: lost.
    fn lose_expired(&mut self, now: Instant) {
        while let Some(&(expires, id)) = self.expiry.first() {
            if expires > now {
                break;
            }
            let Some(kept) = self.remove(id) else {
                self.expiry.remove(&(expires, id));
                continue;
            };
            let why = self.last_error.clone().unwrap_or_else(|| {
                Arc::new(Error::DeadlineExceeded {
                    endpoint: String::new(),
                    timeout: kept.ttl,
                })
            });
            log::warn!("etcd lease {id:x} lost: no renewal landed within its TTL: {why}");
            kept.end(Status::Lost(why));
        }
    }

    /// The earliest moment a lease runs out.
    fn next_expiry(&self, now: Instant) -> Instant {
        self.expiry
            .first()
            .map_or_else(|| now + IDLE, |&(expires, _)| expires)
    }

    /// True when the oldest renewal on its way has waited `answer` with nothing heard
    /// since it was sent.
    fn silent(&self, answer: Duration, now: Instant) -> bool {
        self.open
            && self.in_flight.front().is_some_and(|&(sent, _)| {
                now >= sent + answer && self.heard.is_none_or(|heard| heard < sent)
            })
    }

    /// Queues the renewals that are due; returns when the thread must look again.
    fn send_due(&mut self, now: Instant, answer: Duration) -> Instant {
        let mut next = self.next_expiry(now);
        if !self.open {
            return next;
        }
        let horizon = (now + EARLY, i64::MAX);
        if let Some(&(due, _)) = self.due.range(horizon..).next() {
            next = next.min(due);
        }
        let window: Vec<(Instant, i64)> = self.due.range(..horizon).copied().collect();
        for (due, id) in window {
            let Some(kept) = self.leases.get_mut(&id) else {
                self.due.remove(&(due, id));
                continue;
            };
            // Early by a twelfth of the TTL at most: never less than a quarter of the TTL
            // between two renewals of a lease.
            if due > now + EARLY.min(kept.ttl / 12) {
                next = next.min(due);
                continue;
            }
            self.due.remove(&(due, id));
            kept.due = None;
            kept.sent = Some(now);
            self.in_flight.push_back((now, id));
            self.outbox.push_back(LeaseKeepAliveRequest {
                ID: id,
                ..Default::default()
            });
        }
        if let Some(&(sent, _)) = self.in_flight.front() {
            next = next.min(sent + answer);
        }
        next
    }

    /// A renewal's answer: the lease lives on for its TTL from when the renewal was sent,
    /// or etcd says it is gone.
    fn renewed(&mut self, response: &LeaseKeepAliveResponse, endpoint: &str) {
        let now = Instant::now();
        self.heard = Some(now);
        let id = response.ID;
        // Answers come in the order renewals went out: what is ahead of this one was
        // answered already or belongs to a lease forgotten since.
        while let Some(&(_, first)) = self.in_flight.front() {
            self.in_flight.pop_front();
            if first == id {
                break;
            }
        }
        if response.TTL <= 0 {
            if let Some(mut kept) = self.remove(id) {
                if let Some(first) = kept.first.take() {
                    let _ = first.try_send(Err(unknown_lease(id, endpoint)));
                }
                kept.end(Status::Expired);
            }
            return;
        }
        let Some(mut kept) = self.remove(id) else {
            return;
        };
        let sent = kept.sent.take().unwrap_or(now);
        kept.ttl = Duration::from_secs(u64::try_from(response.TTL).unwrap_or(0));
        kept.expires = sent + kept.ttl;
        kept.due = Some(sent + kept.ttl / 3);
        let renewal = Renewal {
            ttl: kept.ttl,
            at: sent,
        };
        kept.registration.shared.renewed(renewal);
        if let Some(first) = kept.first.take() {
            let _ = first.try_send(Ok(renewal));
        }
        // Bounded: a reader that falls behind misses renewals, the keeper never waits.
        let _ = kept.registration.renewals.try_send(renewal);
        self.insert(id, kept);
    }
}

/// The keeper against the in-process fake (`fake.rs`): renewals on time, a silent member
/// left for another, a lease the server no longer has.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::fake::{wait_until, FakeCluster};
    use crate::KeepAliveStatus;

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn renewals_come_a_third_of_the_ttl_apart() {
        let fake = FakeCluster::start(1);
        let client = fake.client(true);
        let kept = client.lease().keep_alive(7).expect("keep");
        // The channel has every renewal, the first (the one keep_alive waited for) too.
        let mut sent = Vec::new();
        while sent.len() < 4 {
            let renewal = kept.renewals().recv_timeout(WAIT).expect("a renewal");
            sent.push(renewal.sent_at());
        }
        // TTL 1 s: due 333 ms after the last, up to a twelfth of the TTL (83 ms) sooner;
        // every half TTL (500 ms) would be too late, every quarter too soon.
        for pair in sent.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(250) && gap < Duration::from_millis(450),
                "renewals {gap:?} apart"
            );
        }
        assert!(kept.status().is_alive());
    }

    #[test]
    fn a_member_that_answers_no_renewal_is_left_for_another() {
        let fake = FakeCluster::start(2);
        let client = fake.client(true);
        let lease = client.lease();
        let kept = lease.keep_alive(7).expect("keep");
        let serving = lease.keepalive_endpoint().expect("a stream is open");
        let id = if serving == fake.endpoints()[0] { 1 } else { 2 };
        fake.set_silent(id, true);
        wait_until("the stream to leave the silent member", || {
            lease.keepalive_endpoint().is_some_and(|e| e != serving)
        });
        let renewal = kept
            .renewals()
            .recv_timeout(WAIT)
            .expect("renewed elsewhere");
        assert!(renewal.ttl() > Duration::ZERO);
        assert!(kept.status().is_alive());
        assert!(lease.keepalive_streams_opened() >= 2);
    }

    #[test]
    fn a_renewal_answering_ttl_zero_ends_the_lease_expired() {
        let fake = FakeCluster::start(1);
        let client = fake.client(true);
        let kept = client.lease().keep_alive(7).expect("keep");
        fake.set_lease_ttl(0);
        let end = kept.wait(WAIT).expect("ended");
        assert!(matches!(end, KeepAliveStatus::Expired), "{end:?}");
    }
}
