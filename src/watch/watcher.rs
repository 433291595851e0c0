//! One watch's receiving end.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::hub::{Command, Hub};
use super::registration::Shared;
use super::responses::WatchResponse;
use crate::error::{Error, Result};
use crate::time;

/// One watch: its responses, in revision order, until it ends.
///
/// Receive with [`recv`](Watcher::recv), [`try_recv`](Watcher::try_recv),
/// [`recv_timeout`](Watcher::recv_timeout) or [`iter`](Watcher::iter); or select over
/// several watchers (and anything else) with `crossbeam_channel::select!` on
/// [`receiver`](Watcher::receiver), and call [`recv`](Watcher::recv) for the reason once
/// that receiver is disconnected.
///
/// A watch ends only with an error: [`Error::WatchCompacted`], [`Error::WatchLagged`],
/// [`Error::WatchCanceled`] or [`Error::Closed`]; the responses before it are delivered
/// first. A watch never ends because a member failed: it moves to another one, and goes
/// on from the revision after the last one it delivered.
///
/// Dropping the watcher (or [`cancel`](Watcher::cancel)) cancels the watch on the server.
#[derive(Debug)]
#[must_use = "dropping a Watcher cancels its watch at once"]
pub struct Watcher {
    id: i64,
    hub: Arc<Hub>,
    receiver: Receiver<WatchResponse>,
    created: Receiver<i64>,
    created_at: OnceLock<i64>,
    shared: Arc<Shared>,
    timeout: Duration,
}

impl Watcher {
    pub(crate) fn new(
        id: i64,
        hub: Arc<Hub>,
        receiver: Receiver<WatchResponse>,
        created: Receiver<i64>,
        shared: Arc<Shared>,
        timeout: Duration,
    ) -> Watcher {
        Watcher {
            id,
            hub,
            receiver,
            created,
            created_at: OnceLock::new(),
            shared,
            timeout,
        }
    }

    /// The next response, blocking until one comes; the error that ended the watch after
    /// the last one.
    pub fn recv(&self) -> Result<WatchResponse> {
        self.receiver.recv().map_err(|_| self.ended())
    }

    /// The next response if one is waiting, `None` if not; the error that ended the
    /// watch after the last one.
    pub fn try_recv(&self) -> Result<Option<WatchResponse>> {
        match self.receiver.try_recv() {
            Ok(response) => Ok(Some(response)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(self.ended()),
        }
    }

    /// The next response, waiting at most `timeout` (`Duration::MAX`: as long as
    /// possible); `None` if none came.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<WatchResponse>> {
        match self.receiver.recv_timeout(time::clamp(timeout)) {
            Ok(response) => Ok(Some(response)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(self.ended()),
        }
    }

    /// The responses as they come, blocking for each; the last item is the error that
    /// ended the watch.
    pub fn iter(&self) -> impl Iterator<Item = Result<WatchResponse>> + '_ {
        let mut ended = false;
        std::iter::from_fn(move || {
            if ended {
                return None;
            }
            let next = self.recv();
            ended = next.is_err();
            Some(next)
        })
    }

    /// The channel the responses come on, for `crossbeam_channel::select!`. It
    /// disconnects when the watch ends; [`recv`](Watcher::recv) then says why.
    pub fn receiver(&self) -> &Receiver<WatchResponse> {
        &self.receiver
    }

    /// The watch's ID in this client: unique, never reused, and the same on every stream
    /// the watch moves to. Watchers that share one server watch (same range, filters and
    /// flags, no start revision) each keep their own ID; the server knows the first one's.
    pub fn watch_id(&self) -> i64 {
        self.id
    }

    /// The revision the store was at when etcd created the watch: every change after it
    /// comes to this watcher (with a start revision, also those from it on). Waits for
    /// the creation, at most the client's request timeout.
    pub fn created_revision(&self) -> Result<i64> {
        if let Some(&revision) = self.created_at.get() {
            return Ok(revision);
        }
        match self.created.recv_timeout(time::clamp(self.timeout)) {
            Ok(revision) => Ok(*self.created_at.get_or_init(|| revision)),
            Err(RecvTimeoutError::Timeout) => Err(Error::DeadlineExceeded {
                endpoint: String::new(),
                timeout: self.timeout,
            }),
            Err(RecvTimeoutError::Disconnected) => Err(self.ended()),
        }
    }

    /// Asks etcd for a progress report: a response without events whose revision every
    /// change up to has been delivered ([`WatchResponse::is_progress`]). It goes to every
    /// watch on the same stream. On etcd 3.4 before 3.4.25 and 3.5 before 3.5.8 the
    /// server could report a revision beyond events not yet delivered. etcd's gRPC proxy
    /// answers no progress request: through it, none comes.
    pub fn request_progress(&self) -> Result<()> {
        self.hub.tell(Command::Progress)
    }

    /// Cancels the watch on the server; responses not yet received are dropped.
    pub fn cancel(self) {}

    /// Why the watch ended, once it has.
    pub fn end(&self) -> Option<Error> {
        self.shared.end.lock().as_ref().map(|end| end.error())
    }

    fn ended(&self) -> Error {
        self.end().unwrap_or(Error::Closed)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Refused only once the client is closed, and then the watch is gone anyway.
        let _ = self.hub.tell(Command::Cancel(self.id));
    }
}
