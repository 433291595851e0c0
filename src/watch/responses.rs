//! What a watcher receives: responses made of events.

use crate::proto::{kv, rpc};
use crate::types::{header_of, KeyValue, ResponseHeader};

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The key was created or given a new value (or lease).
    Put,
    /// The key was deleted, or its lease expired.
    Delete,
}

/// One change of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    kind: EventKind,
    kv: KeyValue,
    prev_kv: Option<KeyValue>,
}

impl Event {
    /// Put or delete.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The key-value after the event. For a delete: the key, with the revision of the
    /// delete as its mod revision, and no value.
    pub fn kv(&self) -> &KeyValue {
        &self.kv
    }

    /// The key-value before the event, with [`WatchOptions::prev_kv`](crate::WatchOptions::prev_kv)
    /// (none if the key did not exist).
    pub fn prev_kv(&self) -> Option<&KeyValue> {
        self.prev_kv.as_ref()
    }

    /// The revision of the event: its key-value's mod revision.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision()
    }
}

impl From<kv::Event> for Event {
    fn from(mut e: kv::Event) -> Self {
        Event {
            kind: match e.field_type {
                kv::Event_EventType::PUT => EventKind::Put,
                kv::Event_EventType::DELETE => EventKind::Delete,
            },
            kv: e.kv.take().map(KeyValue::from).unwrap_or_default(),
            prev_kv: e.prev_kv.take().map(KeyValue::from),
        }
    }
}

/// What a watcher receives: the events of one or more whole revisions, in revision order
/// (all of a revision's events arrive in one response), or a progress report with none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchResponse {
    header: ResponseHeader,
    events: Vec<Event>,
}

impl WatchResponse {
    pub(crate) fn new(header: ResponseHeader, events: Vec<Event>) -> Self {
        WatchResponse { header, events }
    }

    pub(crate) fn from_raw(header: Option<&rpc::ResponseHeader>, events: Vec<Event>) -> Self {
        WatchResponse::new(header_of(header), events)
    }

    /// Cuts the first `len` bytes (a namespace's prefix) off every key.
    pub(crate) fn strip_keys(&mut self, len: usize) {
        for event in &mut self.events {
            event.kv.strip_key(len);
            if let Some(prev) = event.prev_kv.as_mut() {
                prev.strip_key(len);
            }
        }
    }

    /// The header; its revision is the store's when the response was sent (at least the
    /// last event's).
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// The events, in revision order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Takes the events out.
    pub fn into_events(self) -> Vec<Event> {
        self.events
    }

    /// True for a progress report: no events, and every change up to the header's
    /// revision has been delivered (asked for with [`Watcher::request_progress`](crate::Watcher::request_progress)
    /// or [`WatchOptions::progress_notify`](crate::WatchOptions::progress_notify)).
    pub fn is_progress(&self) -> bool {
        self.events.is_empty()
    }
}
