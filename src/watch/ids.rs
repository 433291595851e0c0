//! Which server watch ID stands for which of the hub's watch IDs, on the current stream.
//!
//! etcd (3.4 and later) takes the ID a create asks for, so the hub's IDs and the server's
//! are the same and creates are pipelined. etcd's gRPC proxy (`etcd grpc-proxy`) numbers
//! the watches of each stream itself (0, 1, 2, ...) whatever the create asks for, and
//! answers the creates of one stream out of order (a watch that joins a range the proxy
//! already watches is answered at once; a new one after etcd answers). So the hub never
//! assumes the IDs equal: the first create on a stream is sent alone, and its answer tells
//! how the server numbers. If it took the hub's ID, the other creates follow at once, in a
//! pipeline; if not, each create is sent only once the one before it is answered, so that
//! every answer is known to be that create's. Every event is then looked up by the
//! server's ID; one with an ID the hub never learned is not dropped silently: the hub
//! moves the stream (see `hub.rs`), which creates every watch again.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::proto::rpc::{WatchCancelRequest, WatchCreateRequest, WatchRequest};

/// How the server behind the stream numbers watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Numbering {
    /// Not known yet: the first create is on its way, alone.
    #[default]
    Unknown,
    /// It takes the ID each create asks for (etcd): creates are pipelined.
    Asked,
    /// It numbers them itself (etcd's gRPC proxy): one create at a time.
    Own,
}

/// What a server watch ID stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    /// The hub's watch of this ID.
    Watch(i64),
    /// A watch the hub cancelled, whose cancel the server has not answered yet: what
    /// comes for it is late, not lost.
    Closing,
    /// An ID the hub never learned.
    Unknown,
}

/// The ID bookkeeping of one stream.
#[derive(Debug, Default)]
pub(super) struct StreamIds {
    numbering: Numbering,
    /// The hub's IDs of the creates sent and not yet answered, in order.
    creating: VecDeque<i64>,
    /// Creates not sent yet, until the numbering allows.
    held: VecDeque<(i64, WatchRequest)>,
    /// The hub's ID of each server ID, and back.
    hub_of: HashMap<i64, i64>,
    server_of: HashMap<i64, i64>,
    /// Server IDs cancelled, whose cancel is not answered yet.
    closing: HashSet<i64>,
    /// The next ID of a liveness ping (see [`StreamIds::ping`]): negative, never a watch's.
    next_ping: i64,
}

/// The key a liveness ping watches: a key no user writes.
const PING_KEY: &[u8] = b"\0etcd-blocking/liveness";

impl StreamIds {
    /// A new stream: nothing known.
    pub(super) fn reset(&mut self) {
        let next_ping = self.next_ping;
        *self = StreamIds {
            next_ping,
            ..StreamIds::default()
        };
    }

    /// How the server numbers watches, as far as known.
    pub(super) fn numbering(&self) -> Numbering {
        self.numbering
    }

    /// Creates watch `id` with `request`: into `outbox` now, or once the numbering allows.
    pub(super) fn create(
        &mut self,
        id: i64,
        request: WatchRequest,
        outbox: &mut VecDeque<WatchRequest>,
    ) {
        let alone = match self.numbering {
            Numbering::Asked => false,
            Numbering::Unknown | Numbering::Own => true,
        };
        if alone && !(self.creating.is_empty() && self.held.is_empty()) {
            self.held.push_back((id, request));
            return;
        }
        self.creating.push_back(id);
        outbox.push_back(request);
    }

    /// Asks a server that numbers its own watches (which answers no progress request)
    /// whether it is there: a create of a watch on a key nobody writes, cancelled as soon
    /// as it is answered. Its answer is a message like any other.
    pub(super) fn ping(&mut self, outbox: &mut VecDeque<WatchRequest>) {
        self.next_ping = self.next_ping.min(-1) - 1;
        let mut request = WatchRequest::new();
        request.set_create_request(WatchCreateRequest {
            key: PING_KEY.to_vec(),
            ..Default::default()
        });
        self.create(self.next_ping, request, outbox);
    }

    /// True if `id` is a ping's, not a watch's.
    pub(super) fn is_ping(id: i64) -> bool {
        id < -1
    }

    /// A create's answer, with the server's ID (`-1` when it was refused): the hub's ID it
    /// answers, if a create was on its way. Sends what was held as the numbering allows.
    pub(super) fn created(
        &mut self,
        server: i64,
        canceled: bool,
        outbox: &mut VecDeque<WatchRequest>,
    ) -> Option<i64> {
        let id = self.creating.pop_front()?;
        if !canceled {
            if self.numbering == Numbering::Unknown && !Self::is_ping(id) {
                self.numbering = if server == id {
                    Numbering::Asked
                } else {
                    Numbering::Own
                };
            }
            self.hub_of.insert(server, id);
            self.server_of.insert(id, server);
        }
        match self.numbering {
            Numbering::Asked => {
                for (id, request) in std::mem::take(&mut self.held) {
                    self.creating.push_back(id);
                    outbox.push_back(request);
                }
            }
            Numbering::Unknown | Numbering::Own => {
                if self.creating.is_empty() {
                    if let Some((id, request)) = self.held.pop_front() {
                        self.creating.push_back(id);
                        outbox.push_back(request);
                    }
                }
            }
        }
        Some(id)
    }

    /// What server ID `server` stands for.
    pub(super) fn lookup(&self, server: i64) -> Lookup {
        if let Some(&id) = self.hub_of.get(&server) {
            Lookup::Watch(id)
        } else if self.closing.contains(&server) {
            Lookup::Closing
        } else {
            Lookup::Unknown
        }
    }

    /// Cancels watch `id` on the server: a create still held is never sent; a created
    /// watch gets a cancel request with the server's ID. A create on its way is cancelled
    /// when its answer comes (the hub finds no watch for it then).
    pub(super) fn cancel(&mut self, id: i64, outbox: &mut VecDeque<WatchRequest>) {
        self.held.retain(|(held, _)| *held != id);
        let Some(server) = self.server_of.remove(&id) else {
            return;
        };
        self.hub_of.remove(&server);
        self.closing.insert(server);
        let mut request = WatchRequest::new();
        request.set_cancel_request(WatchCancelRequest {
            watch_id: server,
            ..Default::default()
        });
        outbox.push_back(request);
    }

    /// The server ended watch `server` (cancelled, compacted): its ID means nothing more.
    pub(super) fn ended(&mut self, server: i64) {
        self.closing.remove(&server);
        if let Some(id) = self.hub_of.remove(&server) {
            self.server_of.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(id: i64) -> WatchRequest {
        let mut request = WatchRequest::new();
        request.set_create_request(WatchCreateRequest {
            key: b"k".to_vec(),
            watch_id: id,
            ..Default::default()
        });
        request
    }

    #[test]
    fn a_server_that_takes_the_asked_ids_gets_the_creates_pipelined() {
        let (mut ids, mut outbox) = (StreamIds::default(), VecDeque::new());
        for id in [5, 6, 7] {
            ids.create(id, create(id), &mut outbox);
        }
        assert_eq!(outbox.len(), 1, "the first create goes alone");
        assert_eq!(ids.created(5, false, &mut outbox), Some(5));
        assert_eq!(ids.numbering(), Numbering::Asked);
        assert_eq!(outbox.len(), 3, "then the others, at once");
        assert_eq!(ids.created(6, false, &mut outbox), Some(6));
        ids.create(8, create(8), &mut outbox);
        assert_eq!(outbox.len(), 4, "later creates are not held");
        assert_eq!(ids.lookup(6), Lookup::Watch(6));
    }

    #[test]
    fn a_server_that_numbers_its_own_gets_one_create_at_a_time_and_ids_are_mapped() {
        let (mut ids, mut outbox) = (StreamIds::default(), VecDeque::new());
        for id in [5, 6, 7] {
            ids.create(id, create(id), &mut outbox);
        }
        assert_eq!(ids.created(0, false, &mut outbox), Some(5));
        assert_eq!(ids.numbering(), Numbering::Own);
        assert_eq!(outbox.len(), 2, "the next create, alone");
        // Its answer is the second create's, whatever ID the server chose.
        assert_eq!(ids.created(1, false, &mut outbox), Some(6));
        assert_eq!(ids.created(2, false, &mut outbox), Some(7));
        assert_eq!(ids.lookup(0), Lookup::Watch(5));
        assert_eq!(ids.lookup(2), Lookup::Watch(7));
        assert_eq!(ids.lookup(5), Lookup::Unknown, "never the hub's own ID");
        // A cancel goes out with the server's ID; what comes for it meanwhile is late.
        outbox.clear();
        ids.cancel(6, &mut outbox);
        let request = outbox.pop_front().expect("a cancel");
        assert_eq!(request.get_cancel_request().watch_id, 1);
        assert_eq!(ids.lookup(1), Lookup::Closing);
        ids.ended(1);
        assert_eq!(ids.lookup(1), Lookup::Unknown);
    }

    #[test]
    fn a_held_create_cancelled_is_never_sent_and_pings_never_decide_the_numbering() {
        let (mut ids, mut outbox) = (StreamIds::default(), VecDeque::new());
        ids.create(5, create(5), &mut outbox);
        ids.create(6, create(6), &mut outbox);
        ids.cancel(6, &mut outbox);
        assert_eq!(ids.created(0, false, &mut outbox), Some(5));
        assert_eq!(outbox.len(), 1, "6 was never sent");
        let mut fresh = StreamIds::default();
        fresh.ping(&mut outbox);
        let ping = fresh
            .created(3, false, &mut outbox)
            .expect("the ping's answer");
        assert!(StreamIds::is_ping(ping));
        assert_eq!(fresh.numbering(), Numbering::Unknown);
    }
}
