//! The client's background threads: named, registered with their owner, restarted when
//! they panic, and stopped and joined by [`Threads::stop_all`].
//!
//! A thread's body runs again after a panic (logged as an error), up to a number of times
//! in a row; a body that ran for [`STEADY`] before it panicked starts a new count. Past that,
//! the thread is recorded as failed ([`Threads::failure`]) and stops: every call of the
//! client then fails with [`Error::BackgroundThread`](crate::Error::BackgroundThread),
//! rather than going on without it.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;

/// How many times in a row a background thread that panics is restarted before the client
/// gives up on it (then every call fails `Error::BackgroundThread`): the balancer's worker
/// and the stream threads alike.
pub(crate) const RESTARTS: u32 = 5;

/// A body that ran this long before it panicked gets its restarts back.
const STEADY: Duration = Duration::from_secs(60);

/// The pause before the first restart; doubles per restart in a row.
const RESTART_PAUSE: Duration = Duration::from_millis(10);

/// A background thread that died for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The thread's name.
    pub(crate) thread: &'static str,
    /// The panic's message.
    pub(crate) message: String,
}

/// One registered thread.
struct Entry {
    name: &'static str,
    handle: JoinHandle<()>,
    /// Tells the body to return.
    stop: Box<dyn FnOnce() + Send>,
    /// Disconnects when the thread has ended.
    done: Receiver<()>,
}

/// The registry of a client's background threads.
#[derive(Default)]
pub(crate) struct Threads {
    entries: Mutex<Vec<Entry>>,
    failure: Arc<OnceLock<Failure>>,
}

impl std::fmt::Debug for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.lock().iter().map(|e| e.name).collect();
        f.debug_struct("Threads")
            .field("running", &names)
            .field("failure", &self.failure.get())
            .finish()
    }
}

impl Threads {
    /// Starts a thread named `name` that runs `body` until it returns; `stop` makes it
    /// return. After a panic the body runs again, at most `restarts` times in a row.
    pub(crate) fn spawn(
        &self,
        name: &'static str,
        restarts: u32,
        stop: impl FnOnce() + Send + 'static,
        mut body: impl FnMut() + Send + 'static,
    ) -> std::io::Result<std::thread::Thread> {
        let (alive, done) = crossbeam_channel::bounded::<()>(0);
        let failure = self.failure.clone();
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _alive = alive;
                let mut in_a_row = 0u32;
                loop {
                    let started = Instant::now();
                    let Err(panic) = catch_unwind(AssertUnwindSafe(&mut body)) else {
                        return;
                    };
                    let message = panic_message(panic.as_ref());
                    if started.elapsed() >= STEADY {
                        in_a_row = 0;
                    }
                    if in_a_row >= restarts {
                        log::error!("the {name} thread panicked ({message}) and is not restarted");
                        let _ = failure.set(Failure {
                            thread: name,
                            message,
                        });
                        return;
                    }
                    log::error!("the {name} thread panicked ({message}); restarting it");
                    std::thread::sleep(RESTART_PAUSE.saturating_mul(1 << in_a_row.min(6)));
                    in_a_row += 1;
                }
            })?;
        let thread = handle.thread().clone();
        self.entries.lock().push(Entry {
            name,
            handle,
            stop: Box::new(stop),
            done,
        });
        Ok(thread)
    }

    /// The first thread that died for good, if one has.
    pub(crate) fn failure(&self) -> Option<&Failure> {
        self.failure.get()
    }

    /// Tells every thread to stop and joins each until `deadline`; returns the names of
    /// those still running then (left detached).
    pub(crate) fn stop_all(&self, deadline: Instant) -> Vec<&'static str> {
        let entries = std::mem::take(&mut *self.entries.lock());
        let mut running = Vec::new();
        let mut waiting = Vec::with_capacity(entries.len());
        for entry in entries {
            (entry.stop)();
            waiting.push((entry.name, entry.handle, entry.done));
        }
        for (name, handle, done) in waiting {
            let left = deadline.saturating_duration_since(Instant::now());
            match done.recv_timeout(left) {
                Err(RecvTimeoutError::Disconnected) => {
                    // The body has returned: the join is immediate.
                    let _ = handle.join();
                }
                Ok(()) | Err(RecvTimeoutError::Timeout) => running.push(name),
            }
        }
        running
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    #[test]
    fn a_panicking_body_is_restarted_then_recorded() {
        let threads = Threads::default();
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        threads
            .spawn(
                "etcd-test",
                2,
                || {},
                move || {
                    r.fetch_add(1, Ordering::SeqCst);
                    panic!("on purpose");
                },
            )
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(10);
        while threads.failure().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let failure = threads.failure().expect("recorded as failed");
        assert_eq!(failure.thread, "etcd-test");
        assert_eq!(failure.message, "on purpose");
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "the first run and two restarts"
        );
        assert!(threads.stop_all(deadline).is_empty());
    }

    #[test]
    fn stop_all_stops_and_joins() {
        let threads = Threads::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, b) = (stop.clone(), stop.clone());
        let thread = threads
            .spawn(
                "etcd-test",
                0,
                move || s.store(true, Ordering::SeqCst),
                move || {
                    while !b.load(Ordering::SeqCst) {
                        std::thread::park_timeout(Duration::from_millis(5));
                    }
                },
            )
            .expect("spawn");
        thread.unpark();
        let still = threads.stop_all(Instant::now() + Duration::from_secs(10));
        assert!(still.is_empty(), "{still:?}");
        assert!(threads.failure().is_none());
    }
}
