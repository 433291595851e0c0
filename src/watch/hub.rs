//! The hub: one thread (`etcd-watch`) that drives every watch of a client over one
//! bidirectional stream, on a healthy member chosen by the balancer.
//!
//! Watchers hand it commands (create, cancel, progress) through its inbox and are woken
//! by their channels; the thread parks between messages, woken by the stream, by a command
//! or by the balancer's news. When the stream ends or its member turns unhealthy (hung, cut
//! off, without a leader, gone), the thread opens a stream on another member and creates
//! every watch again from the revision after the last one it delivered, dropping what it
//! already delivered: nothing is lost, repeated or reordered. It does not wait for the
//! balancer to find a hung member: a stream that stays behind the client's revision floor
//! is checked at once (see `liveness`).
//!
//! Watch IDs are chosen here, per client, and never reused: etcd (3.4 and later) takes a
//! client-chosen ID, so creates are pipelined (no round trip each) and the same ID serves a
//! watch on every stream it moves to. A server that numbers watches itself (etcd's gRPC
//! proxy) gets its creates one at a time, and its IDs are mapped to the hub's (see
//! `ids.rs`); it answers no progress request, so the liveness check asks it with a create
//! instead.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::thread::Thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::group::{shape, Group};
use super::ids::{Lookup, Numbering, StreamIds};
use super::liveness::{Liveness, Pace, QUIET};
use super::registration::{End, Registration};
use super::responses::WatchResponse;
use crate::call::{open_stream, DuplexStream, Mailbox, Next, Opener, Route};
use crate::error::Error;
use crate::park;
use crate::proto::rpc::{self, WatchProgressRequest, WatchRequest};
use crate::time;

/// How long one attempt to open a stream waits for a healthy endpoint.
const OPEN_WAIT: Duration = Duration::from_millis(500);

/// The longest pause between two failed attempts to open a stream.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// How often the thread looks around when nothing wakes it.
const IDLE: Duration = Duration::from_secs(1);

/// What a watcher asks of the hub.
pub(crate) enum Command {
    Create(Box<Registration>),
    Cancel(i64),
    Progress,
}

/// The hub of one client; shared by its watchers and its thread.
pub(crate) struct Hub {
    mailbox: Mailbox<Command>,
    next_id: AtomicI64,
    /// The thread's state; only the thread locks it. Kept here so that a restart after a
    /// panic goes on with every watch.
    state: Mutex<State>,
}

impl Hub {
    pub(crate) fn new() -> Arc<Hub> {
        Arc::new(Hub {
            mailbox: Mailbox::default(),
            next_id: AtomicI64::new(1),
            state: Mutex::new(State::default()),
        })
    }

    /// The thread to wake for a command.
    pub(crate) fn set_thread(&self, thread: Thread) {
        self.mailbox.set_thread(thread);
    }

    /// A new watch ID, never used before on this client.
    pub(crate) fn next_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The endpoint the stream is on, if one is open.
    pub(crate) fn endpoint(&self) -> Option<String> {
        self.mailbox.endpoint()
    }

    /// How many streams have been opened so far.
    pub(crate) fn streams_opened(&self) -> u64 {
        self.mailbox.streams_opened()
    }

    /// Hands the thread a command; refused once the client is closed.
    pub(crate) fn tell(&self, command: Command) -> Result<(), Error> {
        self.mailbox.tell(command)
    }

    /// Makes the thread end every watch with [`Error::Closed`] and return.
    pub(crate) fn stop(&self) {
        self.mailbox.stop();
    }

    /// Gives the current stream up, and forgets its endpoint.
    fn detach(&self, state: &mut State, why: &str) {
        self.mailbox.set_endpoint(None);
        state.detach(why);
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("stopping", &self.mailbox.stopping())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// The server watches, by their IDs.
    watches: BTreeMap<i64, Group>,
    /// The server watch of each watcher, by the watcher's ID.
    owners: HashMap<i64, i64>,
    /// The server watches that watchers starting from now may join, by their shape.
    shapes: HashMap<Vec<u8>, i64>,
    stream: Option<DuplexStream<WatchRequest, rpc::WatchResponse>>,
    outbox: VecDeque<WatchRequest>,
    /// Which server watch ID is which watch, on the current stream.
    ids: StreamIds,
    /// The stream sent something for a watch ID never learned on it: give it up.
    confused: Option<String>,
    /// Failed opens in a row.
    failures: u32,
    /// Whether the current stream's member is still there.
    liveness: Liveness,
    /// Progress requests of watchers not yet answered.
    asked: usize,
}

/// What woke the thread.
enum Wake {
    Look,
    Next(Next<rpc::WatchResponse>),
    Broken(Error),
}

/// The thread's body: runs until the hub is stopped.
pub(crate) fn run(hub: &Hub, route: &Route) {
    let open: &Opener<WatchRequest, rpc::WatchResponse> = &|s, opt| s.watch.watch_opt(opt);
    let mut state = hub.state.lock();
    let state = &mut *state;
    loop {
        if hub.mailbox.stopping() {
            state.end_all(End::Closed);
            return;
        }
        for command in hub.mailbox.take() {
            state.apply(command);
        }
        if state.stream.is_none() && !state.watches.is_empty() {
            match open_stream(route, time::deadline(OPEN_WAIT), open) {
                Ok(stream) => {
                    hub.mailbox.set_endpoint(Some(stream.endpoint()));
                    state.attach(stream);
                }
                Err(Error::Closed) => {
                    state.end_all(End::Closed);
                    return;
                }
                Err(e) => {
                    log::debug!("etcd watch stream not opened: {e}");
                    state.failures += 1;
                    let pause = Duration::from_millis(5)
                        .saturating_mul(1 << state.failures.min(8))
                        .min(MAX_BACKOFF);
                    park::park_until(time::deadline(pause));
                    continue;
                }
            }
        }
        // A member answers a progress request from its own store, with no raft round trip:
        // half the time a call may wait on the leader before it is thought stalled.
        let answer = (route.balancer.stall() / 2).max(QUIET);
        // What the client's calls have seen, or its probes of the other members.
        let floor = route.floor.get().max(route.balancer.probed_revision());
        let look = match state.keep_up(route, floor, answer) {
            Pace::Fine(look) => look,
            Pace::Ask(look) => {
                if state.ids.numbering() == Numbering::Own {
                    state.ids.ping(&mut state.outbox);
                } else {
                    state.outbox.push_back(progress_request());
                }
                Some(look)
            }
            Pace::Silent => {
                if let Some(stream) = state.stream.as_ref() {
                    let reason = format!(
                        "its watch stream sent nothing for {} ms after a progress request \
                         (the client has seen revision {floor})",
                        answer.as_millis(),
                    );
                    stream.report_silent(route, &reason);
                    hub.detach(state, &reason);
                }
                continue;
            }
        };
        let news = route.balancer.news();
        let wake_by = look.map_or(time::deadline(IDLE), |at| at.min(time::deadline(IDLE)));
        let woke = park::wait(Some(news), wake_by, |cx| {
            if hub.mailbox.stopping() || hub.mailbox.has_mail() {
                return Poll::Ready(Wake::Look);
            }
            let Some(stream) = state.stream.as_mut() else {
                return Poll::Pending;
            };
            if let Err(e) = stream.poll_send(cx, &mut state.outbox) {
                return Poll::Ready(Wake::Broken(e));
            }
            stream.poll_next(cx).map(Wake::Next)
        });
        match woke {
            None | Some(Wake::Look) => {}
            Some(Wake::Next(Next::Message(response))) => {
                // Messages come in batches: take every one that is here.
                let mut next = Some(response);
                while let Some(response) = next {
                    let revision = response.header.as_ref().map_or(0, |h| h.revision);
                    route.floor.saw(revision);
                    state.liveness.heard(revision, Instant::now());
                    state.handle(response);
                    next = state.stream.as_mut().and_then(|s| s.take_ready());
                }
                if let Some(why) = state.confused.take() {
                    log::warn!("etcd watch stream: {why}; moving it, every watch resumes");
                    hub.detach(state, &why);
                }
            }
            Some(Wake::Next(Next::Ended(error))) => {
                let why = error.map_or("the server ended it".to_owned(), |e| e.to_string());
                hub.detach(state, &why);
            }
            Some(Wake::Next(Next::Abandoned(error))) | Some(Wake::Broken(error)) => {
                hub.detach(state, &error.to_string());
            }
        }
    }
}

impl State {
    fn apply(&mut self, command: Command) {
        match command {
            Command::Create(registration) => {
                let id = registration.request.watch_id;
                let shape = shape(&registration.request);
                let joined = shape
                    .as_ref()
                    .and_then(|s| self.shapes.get(s))
                    .and_then(|server| self.watches.get_mut(server));
                if let Some(group) = joined {
                    self.owners.insert(id, group.id());
                    group.join(registration);
                    return;
                }
                let group = Group::new(registration, shape.clone());
                if self.stream.is_some() {
                    self.ids.create(id, group.create(), &mut self.outbox);
                }
                if let Some(shape) = shape {
                    self.shapes.insert(shape, id);
                }
                self.owners.insert(id, id);
                self.watches.insert(id, group);
            }
            Command::Cancel(id) => self.leave(id),
            Command::Progress => {
                self.asked += 1;
                if self.stream.is_some() {
                    self.outbox.push_back(progress_request());
                }
            }
        }
    }

    /// One look of the liveness check (see [`Liveness`]) at the current stream.
    fn keep_up(&mut self, route: &Route, floor: i64, answer: Duration) -> Pace {
        let Some(stream) = self.stream.as_ref().filter(|_| !self.watches.is_empty()) else {
            return Pace::Fine(None);
        };
        let epoch = route.balancer.leader_epoch();
        let doubts = stream.doubted(route);
        self.liveness
            .look(floor, epoch, doubts, answer, Instant::now())
    }

    /// A new stream: every watch is created on it, from where it left off.
    fn attach(&mut self, stream: DuplexStream<WatchRequest, rpc::WatchResponse>) {
        self.failures = 0;
        self.outbox.clear();
        self.ids.reset();
        self.confused = None;
        for (&id, group) in &mut self.watches {
            group.reset();
            self.ids.create(id, group.create(), &mut self.outbox);
        }
        if self.asked > 0 {
            // Asked on the stream that is gone: one reply on this one answers them all.
            self.asked = 1;
            self.outbox.push_back(progress_request());
        }
        self.liveness.reset();
        self.stream = Some(stream);
    }

    /// The stream is gone: cancel it, and open another at the next turn.
    fn detach(&mut self, why: &str) {
        if let Some(mut stream) = self.stream.take() {
            log::info!("etcd watch stream on {} given up: {why}", stream.endpoint());
            stream.cancel();
        }
        self.outbox.clear();
        self.ids.reset();
    }

    fn cancel_on_server(&mut self, id: i64) {
        // A watch whose create is on its way is cancelled once it is answered (see
        // handle); one held back is never sent.
        if self.stream.is_some() {
            self.ids.cancel(id, &mut self.outbox);
        }
    }

    /// A watcher leaves its server watch (cancelled, dropped, lagged); the last one to
    /// leave cancels it.
    fn leave(&mut self, id: i64) {
        let Some(server) = self.owners.remove(&id) else {
            return;
        };
        let Some(group) = self.watches.get_mut(&server) else {
            return;
        };
        group.leave(id);
        if group.is_empty() {
            self.drop_group(server);
        }
    }

    /// Forgets a server watch, and cancels it there.
    fn drop_group(&mut self, server: i64) {
        if let Some(group) = self.watches.remove(&server) {
            for id in group.member_ids() {
                self.owners.remove(&id);
            }
            if let Some(shape) = &group.shape {
                self.shapes.remove(shape);
            }
            self.cancel_on_server(server);
        }
    }

    /// Ends a server watch: its watchers read what they hold, then `end` as their error.
    fn end(&mut self, server: i64, end: End) {
        if let Some(group) = self.watches.get_mut(&server) {
            let ids: Vec<i64> = group.member_ids().collect();
            group.end_all(&end);
            for id in ids {
                self.owners.remove(&id);
            }
        }
        self.drop_group(server);
    }

    fn end_all(&mut self, end: End) {
        let ids: Vec<i64> = self.watches.keys().copied().collect();
        for id in ids {
            self.end(id, end.clone());
        }
        self.detach("the client is closing");
    }

    fn handle(&mut self, mut response: rpc::WatchResponse) {
        let header = response.header.take();
        let revision = header.as_ref().map_or(0, |h| h.revision);
        if response.created {
            // The answer of the oldest create on its way (see `ids.rs`); a failed one may
            // carry no usable ID.
            let Some(id) = self
                .ids
                .created(response.watch_id, response.canceled, &mut self.outbox)
            else {
                self.confused = Some(format!(
                    "a create answered (ID {}) with none on its way",
                    response.watch_id
                ));
                return;
            };
            let Some(group) = self.watches.get_mut(&id) else {
                // A liveness ping, or a watch cancelled before its create was answered.
                if !response.canceled {
                    self.cancel_on_server(id);
                }
                return;
            };
            if response.canceled {
                let end = if response.compact_revision > 0 {
                    End::Compacted(response.compact_revision)
                } else {
                    End::Canceled(response.cancel_reason)
                };
                self.end(id, end);
                return;
            }
            group.on_created(revision);
            return;
        }
        let server = response.watch_id;
        if server != -1 {
            let id = match self.ids.lookup(server) {
                Lookup::Watch(id) => id,
                Lookup::Closing => {
                    // Late news of a watch cancelled here.
                    if response.canceled || response.compact_revision > 0 {
                        self.ids.ended(server);
                    }
                    return;
                }
                Lookup::Unknown => {
                    self.confused = Some(format!(
                        "it sent a response for watch ID {server}, which it never created                          (with {} events)",
                        response.events.len()
                    ));
                    return;
                }
            };
            if response.compact_revision > 0 {
                self.ids.ended(server);
                self.end(id, End::Compacted(response.compact_revision));
                return;
            }
            if response.canceled {
                self.ids.ended(server);
                let reason = std::mem::take(&mut response.cancel_reason);
                self.end(id, End::Canceled(reason));
                return;
            }
            let Some(group) = self.watches.get_mut(&id) else {
                return;
            };
            let events = std::mem::take(&mut response.events).into_vec();
            if let Some(whole) = group.assemble(header, events, response.fragment) {
                self.deliver(id, whole);
            }
            return;
        }
        // Server ID -1: a requested progress report, for the whole stream: a watcher's, or
        // the thread's own liveness check (then it has done its work by arriving).
        if response.canceled || response.compact_revision > 0 || self.asked == 0 {
            return;
        }
        self.asked -= 1;
        let ids: Vec<i64> = self.watches.keys().copied().collect();
        for id in ids {
            self.deliver(id, WatchResponse::from_raw(header.as_ref(), Vec::new()));
        }
    }

    /// Hands a response to the watchers of server watch `id` without ever waiting: a
    /// full buffer ends a watcher as lagged, a watcher gone leaves; the last to leave
    /// cancels the server watch.
    fn deliver(&mut self, id: i64, response: WatchResponse) {
        let Some(group) = self.watches.get_mut(&id) else {
            return;
        };
        for gone in group.deliver(response) {
            self.owners.remove(&gone);
        }
        if group.is_empty() {
            self.drop_group(id);
        }
    }
}

/// A request for the stream's progress (answered with watch ID -1).
fn progress_request() -> WatchRequest {
    let mut request = WatchRequest::new();
    request.set_progress_request(WatchProgressRequest::new());
    request
}
