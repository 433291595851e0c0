//! What a stream thread (the watch hub, the lease keeper) shares with its handles: an
//! inbox of commands that wakes the thread, the stop flag, and, for tests and reports, the
//! endpoint of its stream and how many streams it has opened.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;

use parking_lot::Mutex;

use crate::error::Error;

/// The inbox and flags of one stream thread, for commands of type `C`.
pub(crate) struct Mailbox<C> {
    inbox: Mutex<Vec<C>>,
    thread: Mutex<Option<Thread>>,
    stopping: AtomicBool,
    endpoint: Mutex<Option<String>>,
    opened: AtomicU64,
}

impl<C> Default for Mailbox<C> {
    fn default() -> Self {
        Mailbox {
            inbox: Mutex::new(Vec::new()),
            thread: Mutex::new(None),
            stopping: AtomicBool::new(false),
            endpoint: Mutex::new(None),
            opened: AtomicU64::new(0),
        }
    }
}

impl<C> Mailbox<C> {
    /// The thread to wake for a command.
    pub(crate) fn set_thread(&self, thread: Thread) {
        *self.thread.lock() = Some(thread);
    }

    /// Hands the thread a command; refused once the client is closed.
    pub(crate) fn tell(&self, command: C) -> Result<(), Error> {
        {
            // Looked at under the inbox's lock, which `stop` holds to set it: a command is
            // either in before the stop, and dropped by it, or refused.
            let mut inbox = self.inbox.lock();
            if self.stopping() {
                return Err(Error::Closed);
            }
            inbox.push(command);
        }
        self.wake();
        Ok(())
    }

    /// The commands that came since the last look.
    pub(crate) fn take(&self) -> Vec<C> {
        std::mem::take(&mut *self.inbox.lock())
    }

    /// True when commands wait.
    pub(crate) fn has_mail(&self) -> bool {
        !self.inbox.lock().is_empty()
    }

    /// Tells the thread to stop; later commands are refused, and those not yet taken are
    /// dropped, so that what they carry for a waiting handle (a watch's word that it was
    /// created) tells it at once that nothing will come. (Left in the inbox, they lived as
    /// long as the handle, which holds the mailbox: its wait ran to its deadline.)
    pub(crate) fn stop(&self) {
        let unread = {
            let mut inbox = self.inbox.lock();
            self.stopping.store(true, Ordering::Release);
            std::mem::take(&mut *inbox)
        };
        drop(unread);
        self.wake();
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Notes a stream opened on `endpoint`, or none (`None`).
    pub(crate) fn set_endpoint(&self, endpoint: Option<&str>) {
        if endpoint.is_some() {
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
        *self.endpoint.lock() = endpoint.map(str::to_owned);
    }

    /// The endpoint the stream is on, if one is open.
    pub(crate) fn endpoint(&self) -> Option<String> {
        self.endpoint.lock().clone()
    }

    /// How many streams have been opened so far.
    pub(crate) fn streams_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    fn wake(&self) {
        if let Some(thread) = self.thread.lock().as_ref() {
            thread.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_drops_the_commands_not_taken_and_refuses_later_ones() {
        let mailbox = Mailbox::default();
        let (word, waiting) = crossbeam_channel::bounded::<()>(1);
        mailbox.tell(word).expect("told before the stop");
        mailbox.stop();
        // What the command carried is gone: its waiter hears so at once.
        assert_eq!(
            waiting.recv_timeout(std::time::Duration::from_secs(10)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        let (late, _) = crossbeam_channel::bounded::<()>(1);
        assert!(matches!(mailbox.tell(late), Err(Error::Closed)));
        assert!(mailbox.take().is_empty());
    }
}
