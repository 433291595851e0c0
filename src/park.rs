//! The one way a thread of this crate waits: it parks, and whoever has news for it unparks
//! it.
//!
//! A waiting thread polls what it waits for (a gRPC call, a set of futures, the endpoint
//! table) with a waker that unparks it, subscribes to the [`News`] that could change its
//! mind (health and leader changes, close), and parks until one of them or its deadline
//! comes. Nobody sleeps to poll: a change wakes exactly the threads subscribed to it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

use parking_lot::Mutex;

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

thread_local! {
    /// This thread's waker, made once per thread.
    static WAKER: Waker = Waker::from(Arc::new(Unpark(thread::current())));
}

/// Runs `f` with a context whose waker unparks the current thread.
pub(crate) fn with_context<T>(f: impl FnOnce(&mut Context<'_>) -> T) -> T {
    WAKER.with(|waker| f(&mut Context::from_waker(waker)))
}

/// Parks the current thread until it is unparked or `deadline` passes (maybe sooner: a
/// parked thread can wake for no reason, so callers look again).
pub(crate) fn park_until(deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    if !left.is_zero() {
        thread::park_timeout(left);
    }
}

/// Polls `poll` until it is ready, parking between polls, woken by its waker or by `news`;
/// `None` once `deadline` passes first.
pub(crate) fn wait<T>(
    news: Option<&News>,
    deadline: Instant,
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> Option<T> {
    let _subscribed = news.map(News::subscribe);
    with_context(|cx| loop {
        // Subscribed before polling: news that comes after this poll unparks the thread,
        // and an unpark before the park makes the park return at once.
        if let Poll::Ready(value) = poll(cx) {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        park_until(deadline);
    })
}

/// How many lists [`News`] keeps its subscribers in: every call subscribes and
/// unsubscribes, so with many callers one list would be a lock they all queue on.
const SHARDS: usize = 16;

/// Which of the lists this thread subscribes in (given out round-robin as threads first
/// subscribe), and an ID for this subscription, unique without a shared counter: the
/// thread's number and its own count.
fn shard_and_id() -> (usize, u64) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static THREAD: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
        static COUNT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    let thread = THREAD.with(|t| *t);
    let count = COUNT.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n
    });
    (
        (thread % SHARDS as u64) as usize,
        (thread << 32) | u64::from(count),
    )
}

/// Threads to wake when something they wait on may have changed.
#[derive(Debug, Default)]
pub(crate) struct News {
    waiters: [Mutex<Vec<(u64, Thread)>>; SHARDS],
}

impl News {
    /// Wakes the current thread on every [`News::tell`] until the subscription is dropped.
    pub(crate) fn subscribe(&self) -> Subscription<'_> {
        let (shard, id) = shard_and_id();
        self.waiters[shard].lock().push((id, thread::current()));
        Subscription {
            news: self,
            shard,
            id,
        }
    }

    /// Wakes every subscribed thread.
    pub(crate) fn tell(&self) {
        for waiters in &self.waiters {
            for (_, thread) in waiters.lock().iter() {
                thread.unpark();
            }
        }
    }

    #[cfg(test)]
    fn subscribed(&self) -> usize {
        self.waiters.iter().map(|w| w.lock().len()).sum()
    }
}

/// A thread's subscription to [`News`]; unsubscribes when dropped.
#[derive(Debug)]
pub(crate) struct Subscription<'a> {
    news: &'a News,
    shard: usize,
    id: u64,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        let mut waiters = self.news.waiters[self.shard].lock();
        if let Some(i) = waiters.iter().position(|(id, _)| *id == self.id) {
            waiters.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    #[test]
    fn news_wakes_a_waiter_long_before_its_deadline() {
        let news = Arc::new(News::default());
        let flag = Arc::new(AtomicBool::new(false));
        let (n, f) = (news.clone(), flag.clone());
        let waiter = thread::spawn(move || {
            let started = Instant::now();
            let got = wait(Some(&n), started + Duration::from_secs(60), |_| {
                if f.load(Ordering::Acquire) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            (got, started.elapsed())
        });
        // Tell until the waiter has seen it: the news may come before it subscribes.
        while !waiter.is_finished() {
            flag.store(true, Ordering::Release);
            news.tell();
            thread::yield_now();
        }
        let (got, took) = waiter.join().expect("waiter");
        assert_eq!(got, Some(()));
        assert!(took < Duration::from_secs(30), "{took:?}");
    }

    #[test]
    fn a_wait_ends_at_its_deadline() {
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(wait(None, deadline, |_| Poll::<()>::Pending), None);
        assert!(Instant::now() >= deadline);
    }

    #[test]
    fn a_subscription_ends_when_dropped() {
        let news = News::default();
        let a = news.subscribe();
        let b = news.subscribe();
        assert_eq!(news.subscribed(), 2);
        drop(a);
        assert_eq!(news.subscribed(), 1);
        drop(b);
        assert_eq!(news.subscribed(), 0);
    }
}
