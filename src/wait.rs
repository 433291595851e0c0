//! Blocking on grpcio's futures from a caller's thread, with a deadline.
//!
//! The futures are polled on the calling thread, which parks between wake-ups: no runtime and
//! no extra thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

/// Wakes a parked thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// A future that yields a yes or a no.
pub(crate) type Verdict<'a> = Pin<Box<dyn Future<Output = bool> + 'a>>;

/// Polls every future until one says yes (returns its index), all have said no, or the
/// deadline passes (both `None`).
pub(crate) fn first_yes(mut futures: Vec<Verdict<'_>>, deadline: Instant) -> Option<usize> {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut pending: Vec<usize> = (0..futures.len()).collect();
    loop {
        let mut still = Vec::with_capacity(pending.len());
        for i in pending {
            match futures[i].as_mut().poll(&mut cx) {
                Poll::Ready(true) => return Some(i),
                Poll::Ready(false) => {}
                Poll::Pending => still.push(i),
            }
        }
        pending = still;
        let now = Instant::now();
        if pending.is_empty() || now >= deadline {
            return None;
        }
        thread::park_timeout(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn first_yes_finds_the_ready_one() {
        let futures: Vec<Verdict<'_>> = vec![
            Box::pin(async { false }),
            Box::pin(std::future::pending()),
            Box::pin(async { true }),
        ];
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(first_yes(futures, deadline), Some(2));
    }

    #[test]
    fn first_yes_gives_up_when_all_say_no() {
        let futures: Vec<Verdict<'_>> = vec![Box::pin(async { false }), Box::pin(async { false })];
        let started = Instant::now();
        assert_eq!(first_yes(futures, started + Duration::from_secs(30)), None);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn first_yes_stops_at_the_deadline() {
        let futures: Vec<Verdict<'_>> = vec![Box::pin(std::future::pending())];
        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(first_yes(futures, deadline), None);
        assert!(Instant::now() >= deadline);
    }
}
