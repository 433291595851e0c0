//! The hub: the owner of the stream worker that runs the `etcd-watch` thread (see
//! `call/worker.rs`), which drives every watch of a client over one bidirectional stream,
//! on a healthy member chosen by the balancer.
//!
//! Watchers hand it commands (create, cancel, progress) through its mailbox and are woken
//! by their channels. When the worker moves the stream (it ended, or its member turned
//! unhealthy: hung, cut off, without a leader, gone), the hub creates every watch again on
//! the new one from the revision after the last one it delivered, dropping what it
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
use std::time::Instant;

use grpcio::{CallOption, ClientDuplexReceiver, ClientDuplexSender};

use super::group::{shape, Group};
use super::ids::{Lookup, Numbering, StreamIds};
use super::liveness::{Liveness, Pace, QUIET};
use super::registration::{End, Registration};
use super::responses::WatchResponse;
use crate::call::{Look, Owner, StreamView, Stubs, Worker, IDLE};
use crate::error::Error;
use crate::proto::rpc::{self, WatchProgressRequest, WatchRequest};

/// What a watcher asks of the hub.
pub(crate) enum Command {
    Create(Box<Registration>),
    Cancel(i64),
    Progress,
}

/// The hub of one client; shared by its watchers and its thread.
pub(crate) struct Hub {
    worker: Worker<Watches>,
    next_id: AtomicI64,
}

impl Hub {
    pub(crate) fn new() -> Hub {
        Hub {
            worker: Worker::new(Watches::default()),
            next_id: AtomicI64::new(1),
        }
    }

    /// The stream worker that runs the hub's thread.
    pub(crate) fn worker(&self) -> &Worker<Watches> {
        &self.worker
    }

    /// A new watch ID, never used before on this client.
    pub(crate) fn next_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
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
        self.worker.tell(command)
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

/// Every watch of the client, as the hub's thread keeps them.
#[derive(Default)]
pub(crate) struct Watches {
    /// The server watches, by their IDs.
    watches: BTreeMap<i64, Group>,
    /// The server watch of each watcher, by the watcher's ID.
    owners: HashMap<i64, i64>,
    /// The server watches that watchers starting from now may join, by their shape.
    shapes: HashMap<Vec<u8>, i64>,
    /// True while a stream is open.
    open: bool,
    outbox: VecDeque<WatchRequest>,
    /// Which server watch ID is which watch, on the current stream.
    ids: StreamIds,
    /// The stream sent something for a watch ID never learned on it: give it up.
    confused: Option<String>,
    /// Whether the current stream's member is still there.
    liveness: Liveness,
    /// Progress requests of watchers not yet answered.
    asked: usize,
    /// A member refused to create a watch for the stream's token (expired, old, missing):
    /// the watches that it refused, kept to be created again on a stream with a new token.
    token_refused: Vec<(i64, String)>,
    /// Streams in a row whose token a member refused; reset by a watch created.
    token_refusals: u32,
}

/// How many streams in a row may have their token refused before the watches refused are
/// ended with the member's reason: a new token that is refused too will not do better.
const TOKEN_REFUSALS: u32 = 3;

/// True if a watch was refused for its stream's token, so a new token may let it through.
/// The reason is etcd's message, as its gRPC error prints (`rpc error: code =
/// Unauthenticated desc = etcdserver: invalid auth token`) or bare.
fn token_reason(reason: &str) -> bool {
    let message = reason.rsplit("desc = ").next().unwrap_or(reason);
    crate::error::ServerCode::from_message(message)
        .is_some_and(crate::error::ServerCode::refuses_token)
}

impl Owner for Watches {
    type Command = Command;
    type Request = WatchRequest;
    type Response = rpc::WatchResponse;
    const NAME: &'static str = "watch";

    fn open(
        stubs: &Stubs,
        option: CallOption,
    ) -> grpcio::Result<(
        ClientDuplexSender<WatchRequest>,
        ClientDuplexReceiver<rpc::WatchResponse>,
    )> {
        stubs.watch.watch_opt(option)
    }

    fn outbox(&mut self) -> &mut VecDeque<WatchRequest> {
        &mut self.outbox
    }

    fn command(&mut self, command: Command) {
        self.apply(command);
    }

    fn wants_stream(&self) -> bool {
        !self.watches.is_empty()
    }

    fn attached(&mut self) {
        self.attach();
    }

    fn detached(&mut self, _why: Error) {
        self.open = false;
        self.ids.reset();
    }

    fn look(&mut self, view: &StreamView<'_>, now: Instant) -> Look {
        // A member answers a progress request from its own store, with no raft round trip.
        let answer = view.answer_time(QUIET);
        let floor = view.floor();
        let look = if self.watches.is_empty() {
            Pace::Fine(None)
        } else {
            self.liveness
                .look(floor, view.leader_epoch(), view.doubted(), answer, now)
        };
        match look {
            Pace::Fine(look) => Look::Fine(look.unwrap_or(now + IDLE)),
            Pace::Ask(look) => {
                if self.ids.numbering() == Numbering::Own {
                    self.ids.ping(&mut self.outbox);
                } else {
                    self.outbox.push_back(progress_request());
                }
                Look::Fine(look)
            }
            Pace::Silent => Look::Silent(format!(
                "its watch stream sent nothing for {} ms after a progress request (the client \
                 has seen revision {floor})",
                answer.as_millis(),
            )),
        }
    }

    fn received(
        &mut self,
        view: &StreamView<'_>,
        response: rpc::WatchResponse,
    ) -> Result<(), String> {
        let revision = response.header.as_ref().map_or(0, |h| h.revision);
        view.saw(revision);
        self.liveness.heard(revision, Instant::now());
        self.handle(response);
        if !self.token_refused.is_empty() {
            self.token_refusals += 1;
            let refused = std::mem::take(&mut self.token_refused);
            if self.token_refusals <= TOKEN_REFUSALS && view.renew_token() {
                return Err(format!(
                    "{} refused a watch for the stream's auth token ({}); every watch \
                     resumes on a stream with a new token",
                    view.endpoint(),
                    refused[0].1
                ));
            }
            for (id, reason) in refused {
                self.end(id, End::Canceled(reason));
            }
        }
        match self.confused.take() {
            Some(why) => Err(format!("{why}; every watch resumes")),
            None => Ok(()),
        }
    }

    fn closing(&mut self) {
        self.end_all(End::Closed);
    }
}

impl Watches {
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
                if self.open {
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
                if self.open {
                    self.outbox.push_back(progress_request());
                }
            }
        }
    }

    /// A new stream: every watch is created on it, from where it left off.
    fn attach(&mut self) {
        self.open = true;
        self.ids.reset();
        self.confused = None;
        self.token_refused.clear();
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
    }

    fn cancel_on_server(&mut self, id: i64) {
        // A watch whose create is on its way is cancelled once it is answered (see
        // handle); one held back is never sent.
        if self.open {
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
                } else if token_reason(&response.cancel_reason) {
                    // Kept: created again on a stream with a new token (see `received`).
                    self.token_refused.push((id, response.cancel_reason));
                    return;
                } else {
                    End::Canceled(response.cancel_reason)
                };
                self.end(id, end);
                return;
            }
            self.token_refusals = 0;
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

/// The hub against the in-process fake (`fake.rs`): a stream moved off a silent member
/// resumes every watch where it left off, and an event for a watch ID never created
/// moves the stream instead of being dropped.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::fake::{wait_until, FakeCluster};
    use crate::{WatchOptions, Watcher};

    const WAIT: Duration = Duration::from_secs(5);

    /// The revisions of the next `n` events.
    fn revisions(watcher: &Watcher, n: usize) -> Vec<i64> {
        let mut seen = Vec::new();
        while seen.len() < n {
            let response = watcher
                .recv_timeout(WAIT)
                .expect("watching")
                .unwrap_or_else(|| panic!("{} of {n} events: {seen:?}", seen.len()));
            seen.extend(response.events().iter().map(|e| e.revision()));
        }
        seen
    }

    #[test]
    fn a_stream_moved_off_a_silent_member_resumes_every_watch_where_it_left_off() {
        let fake = FakeCluster::start(2);
        let client = fake.client(true);
        let watch = client.watch();
        let watcher = watch
            .watch_with("w/", WatchOptions::new().prefix())
            .expect("watch");
        watcher.created_revision().expect("created");
        let before: Vec<i64> = (0..3).map(|i| fake.emit(&format!("w/{i}"))).collect();
        assert_eq!(revisions(&watcher, 3), before);
        let serving = watch.stream_endpoint().expect("a stream");
        let id = if serving == fake.endpoints()[0] { 1 } else { 2 };
        fake.set_silent(id, true);
        // The probes see the store move on; the stream does not follow; the hub asks its
        // member for progress, hears nothing, and moves.
        let after: Vec<i64> = (3..6).map(|i| fake.emit(&format!("w/{i}"))).collect();
        assert_eq!(revisions(&watcher, 3), after, "none lost, none twice");
        assert!(watch.stream_endpoint().is_some_and(|e| e != serving));
        assert_eq!(watch.streams_opened(), 2);
    }

    #[test]
    fn an_event_for_a_watch_id_never_created_moves_the_stream() {
        let fake = FakeCluster::start(1);
        let client = fake.client(true);
        let watch = client.watch();
        let watcher = watch
            .watch_with("s/", WatchOptions::new().prefix())
            .expect("watch");
        watcher.created_revision().expect("created");
        fake.send_stray();
        let first = fake.emit("s/a");
        // The stray response is not this watch's: the stream is moved (to the one member
        // there is), and the watch resumes from where it was, so the event comes once.
        assert_eq!(revisions(&watcher, 1), [first]);
        wait_until("the stream to be moved", || watch.streams_opened() >= 2);
        let second = fake.emit("s/b");
        assert_eq!(revisions(&watcher, 1), [second]);
    }
}
