//! What a watch covers and what it reports.

use crate::error::{Error, Result};
use crate::kv::range::{range_setters, KeyRange};
use crate::proto::rpc::{WatchCreateRequest, WatchCreateRequest_FilterType};

/// The default bound of a watcher's buffer, in responses.
pub(crate) const DEFAULT_BUFFER: usize = 1024;

/// Options of [`Watch::watch_with`](crate::Watch::watch_with): which keys, from which
/// revision, and what each event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    pub(crate) range: KeyRange,
    start_revision: i64,
    prev_kv: bool,
    progress_notify: bool,
    no_put: bool,
    no_delete: bool,
    buffer: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            range: KeyRange::Single,
            start_revision: 0,
            prev_kv: false,
            progress_notify: false,
            no_put: false,
            no_delete: false,
            buffer: DEFAULT_BUFFER,
        }
    }
}

impl WatchOptions {
    /// Options of a watch on the key alone, from the next revision on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replays history from `revision` (inclusive) before the live events. etcd keeps
    /// history back to the last compaction: an older revision ends the watcher with
    /// [`Error::WatchCompacted`]. A revision beyond the current one waits for it. Zero
    /// (the default) means "from the next revision"; a negative one is refused when the
    /// watch starts.
    pub fn start_revision(mut self, revision: i64) -> Self {
        self.start_revision = revision;
        self
    }

    /// Each event also carries the key-value as it was before the event (etcd reads it
    /// from its history; none for a key that did not exist).
    pub fn prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// Asks etcd for an empty response every so often while nothing happens (every 10
    /// minutes by default; the server's `--experimental-watch-progress-notify-interval`),
    /// so that the watcher learns how far the store has come
    /// ([`WatchResponse::is_progress`](crate::WatchResponse::is_progress)).
    pub fn progress_notify(mut self) -> Self {
        self.progress_notify = true;
        self
    }

    /// Leaves out put events (etcd filters them on its side).
    pub fn no_put(mut self) -> Self {
        self.no_put = true;
        self
    }

    /// Leaves out delete events (etcd filters them on its side).
    pub fn no_delete(mut self) -> Self {
        self.no_delete = true;
        self
    }

    /// How many responses the watcher holds for its consumer before the watch ends with
    /// [`Error::WatchLagged`] (default 1,024): one slow consumer never stalls the other
    /// watches. Memory is taken as responses arrive, not up front; `usize::MAX` means no
    /// bound. Zero is refused when the watch starts.
    pub fn buffer(mut self, responses: usize) -> Self {
        self.buffer = responses;
        self
    }

    /// The buffer, checked.
    pub(crate) fn checked_buffer(&self) -> Result<usize> {
        if self.buffer == 0 {
            return Err(Error::InvalidArgument {
                argument: "buffer",
                reason: "a watcher needs room for at least one response".to_owned(),
            });
        }
        Ok(self.buffer)
    }

    /// The create request for `key`, checked. Fragmented responses are always asked for
    /// (and put together before delivery), so that no catch-up can exceed a message limit.
    pub(crate) fn request(&self, key: Vec<u8>) -> Result<WatchCreateRequest> {
        if key.is_empty() && self.range == KeyRange::Single {
            return Err(Error::InvalidArgument {
                argument: "key",
                reason: "the empty key names no key: use prefix() or from_key() to watch every key"
                    .to_owned(),
            });
        }
        if self.start_revision < 0 {
            return Err(Error::InvalidArgument {
                argument: "start_revision",
                reason: format!("{} is negative", self.start_revision),
            });
        }
        let (key, range_end) = self.range.bounds(key);
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(WatchCreateRequest_FilterType::NOPUT);
        }
        if self.no_delete {
            filters.push(WatchCreateRequest_FilterType::NODELETE);
        }
        Ok(WatchCreateRequest {
            key,
            range_end,
            start_revision: self.start_revision,
            progress_notify: self.progress_notify,
            filters,
            prev_kv: self.prev_kv,
            fragment: true,
            ..Default::default()
        })
    }
}

range_setters!(WatchOptions, "Watches");
