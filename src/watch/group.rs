//! One watch on the server and the watchers it serves.
//!
//! Watchers that start "from now" (no start revision) with the same key range, filters
//! and flags share one server watch, the way etcd's gRPC proxy coalesces its clients'
//! watchers: etcd sends each event once instead of once per watcher, and the hub hands it
//! to every watcher of the group. A watcher that joins a group already created is created
//! at the revision the group has delivered everything up to: every change after it comes,
//! which is all that a watch created at that revision promises. Watchers with a start
//! revision get a server watch of their own: their history is their own.

use super::registration::{End, Registration};
use super::responses::{Event, WatchResponse};
use crate::proto::kv;
use crate::proto::rpc::{self, WatchCreateRequest, WatchRequest};
use protobuf::Message;

/// What identifies watches that may share one server watch: their create request, without
/// its ID. `None` for a watch with a start revision.
pub(super) fn shape(request: &WatchCreateRequest) -> Option<Vec<u8>> {
    if request.start_revision != 0 {
        return None;
    }
    let mut key = request.clone();
    key.watch_id = 0;
    key.write_to_bytes().ok()
}

/// One watcher of a group.
struct Member {
    registration: Box<Registration>,
    /// Told its creation revision.
    told: bool,
}

impl Member {
    fn id(&self) -> i64 {
        self.registration.request.watch_id
    }

    fn tell_created(&mut self, revision: i64) {
        if !self.told {
            self.told = true;
            let _ = self.registration.created.try_send(revision);
        }
    }
}

/// One server watch and its watchers.
pub(super) struct Group {
    /// The create request; its ID (the first watcher's) is the server watch's.
    request: WatchCreateRequest,
    members: Vec<Member>,
    /// The shape it is found by, if watchers may join.
    pub(super) shape: Option<Vec<u8>>,
    /// The revision a new create starts from: the request's own until the watch has been
    /// created or has delivered, then the one after what it has seen.
    next_revision: i64,
    /// The last revision delivered (0: none).
    delivered: i64,
    /// Created on the current stream.
    pub(super) created: bool,
    /// Fragments of a response being put together: its header and events so far.
    fragments: Option<(Option<rpc::ResponseHeader>, Vec<Event>)>,
}

impl Group {
    /// A group for `registration`'s watch, found by `shape` if others may join.
    pub(super) fn new(registration: Box<Registration>, shape: Option<Vec<u8>>) -> Group {
        Group {
            request: registration.request.clone(),
            next_revision: registration.request.start_revision,
            members: vec![Member {
                registration,
                told: false,
            }],
            shape,
            delivered: 0,
            created: false,
            fragments: None,
        }
    }

    /// The server watch's ID.
    pub(super) fn id(&self) -> i64 {
        self.request.watch_id
    }

    /// The IDs of its watchers.
    pub(super) fn member_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.members.iter().map(Member::id)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Adds a watcher; told at once where it starts if the group already knows.
    pub(super) fn join(&mut self, registration: Box<Registration>) {
        let mut member = Member {
            registration,
            told: false,
        };
        if self.next_revision > 0 {
            member.tell_created(self.next_revision - 1);
        }
        self.members.push(member);
    }

    /// Removes a watcher; true if it was one.
    pub(super) fn leave(&mut self, id: i64) -> bool {
        let before = self.members.len();
        self.members.retain(|m| m.id() != id);
        self.members.len() != before
    }

    /// The create request for the current stream: from where it left off.
    pub(super) fn create(&self) -> WatchRequest {
        let mut create = self.request.clone();
        if self.next_revision > 0 {
            create.start_revision = self.next_revision;
        }
        let mut request = WatchRequest::new();
        request.set_create_request(create);
        request
    }

    /// A new stream: the group's create on it is not answered yet.
    pub(super) fn reset(&mut self) {
        self.created = false;
        self.fragments = None;
    }

    /// The create was answered, at `revision`.
    pub(super) fn on_created(&mut self, revision: i64) {
        self.created = true;
        if self.next_revision == 0 {
            self.next_revision = revision + 1;
        }
        for member in &mut self.members {
            member.tell_created(revision);
        }
    }

    /// Ends every watcher of the group with `end`.
    pub(super) fn end_all(&mut self, end: &End) {
        for member in self.members.drain(..) {
            *member.registration.shared.end.lock() = Some(end.clone());
        }
    }

    /// Takes one message of events: `None` until its fragments are all in, or when all its
    /// events were delivered before (a replay after a move); else the whole response,
    /// without what was delivered before.
    pub(super) fn assemble(
        &mut self,
        header: Option<rpc::ResponseHeader>,
        events: Vec<kv::Event>,
        fragment: bool,
    ) -> Option<WatchResponse> {
        let mut events: Vec<Event> = events.into_iter().map(Event::from).collect();
        if fragment {
            let (_, so_far) = self
                .fragments
                .get_or_insert_with(|| (header.clone(), Vec::new()));
            so_far.append(&mut events);
            return None;
        }
        let header = match self.fragments.take() {
            Some((first, mut so_far)) => {
                so_far.append(&mut events);
                events = so_far;
                header.or(first)
            }
            None => header,
        };
        let had_events = !events.is_empty();
        // After a move, the new stream replays from the revision after the last delivered:
        // anything at or below it was delivered before.
        events.retain(|e| e.revision() > self.delivered);
        if had_events && events.is_empty() {
            return None;
        }
        if let Some(last) = events.last() {
            self.delivered = last.revision();
            self.next_revision = self.delivered + 1;
        }
        Some(WatchResponse::from_raw(header.as_ref(), events))
    }

    /// Hands `response` to every watcher without ever waiting. A watcher whose buffer is
    /// full ends as lagged; one whose receiver is gone leaves. Returns the IDs of those
    /// that left either way.
    pub(super) fn deliver(&mut self, response: WatchResponse) -> Vec<i64> {
        let first = response.events().first().map(Event::revision);
        let resume_from = first.unwrap_or(self.next_revision);
        let mut response = Some(response);
        let mut gone = Vec::new();
        let last = self.members.len().saturating_sub(1);
        let mut kept = Vec::with_capacity(self.members.len());
        for (i, member) in self.members.drain(..).enumerate() {
            let registration = &member.registration;
            if registration.sender.len() >= registration.buffer {
                *registration.shared.end.lock() = Some(End::Lagged {
                    resume_from,
                    buffer: registration.buffer,
                });
                gone.push(member.id());
                continue;
            }
            // The last one takes the response itself; the others a copy.
            let copy = if i == last {
                response.take()
            } else {
                response.clone()
            };
            let Some(mut copy) = copy else {
                kept.push(member);
                continue;
            };
            if registration.strip > 0 {
                copy.strip_keys(registration.strip);
            }
            // Unbounded: a send never waits; it fails only when the watcher is gone.
            if registration.sender.send(copy).is_err() {
                gone.push(member.id());
                continue;
            }
            kept.push(member);
        }
        self.members = kept;
        gone
    }
}
