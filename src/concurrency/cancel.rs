//! A handle that ends a blocking recipe call from another thread.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

/// Ends blocking recipe calls from another thread: a [`Mutex::lock_or_cancel`], an
/// [`Election::campaign_or_cancel`] or an [`Observer::recv_or_cancel`] that waits with
/// it returns [`Error::Canceled`] at once when [`cancel`](Cancel::cancel) is called (or
/// was called before); a lock or campaign leaves its queue.
/// Clones share one state: cancel once, every call waiting with any clone ends. A service
/// that shuts down keeps one, hands a clone to each worker, and cancels it.
///
/// (To end every call of a client, close it: [`Client::close`](crate::Client::close) ends
/// every blocked call of every clone with [`Error::Closed`].)
///
/// [`Mutex::lock_or_cancel`]: super::Mutex::lock_or_cancel
/// [`Election::campaign_or_cancel`]: super::Election::campaign_or_cancel
/// [`Observer::recv_or_cancel`]: super::Observer::recv_or_cancel
/// [`Error::Canceled`]: crate::Error::Canceled
/// [`Error::Closed`]: crate::Error::Closed
#[derive(Debug, Clone)]
pub struct Cancel {
    /// Dropped by `cancel`, which disconnects every receiver.
    sender: Arc<Mutex<Option<Sender<()>>>>,
    receiver: Receiver<()>,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel::new()
    }
}

impl Cancel {
    /// A handle not yet cancelled.
    pub fn new() -> Cancel {
        let (sender, receiver) = crossbeam_channel::bounded(0);
        Cancel {
            sender: Arc::new(Mutex::new(Some(sender))),
            receiver,
        }
    }

    /// Cancels every call waiting with this handle or a clone, now and from now on.
    pub fn cancel(&self) {
        self.sender.lock().take();
    }

    /// True once [`cancel`](Cancel::cancel) was called.
    pub fn is_canceled(&self) -> bool {
        self.sender.lock().is_none()
    }

    /// A receiver that gets nothing and disconnects when the handle is cancelled, for
    /// `crossbeam_channel::select!`.
    pub fn receiver(&self) -> Receiver<()> {
        self.receiver.clone()
    }
}
