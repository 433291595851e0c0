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

/// A one-shot handover to one waiting thread: [`Tell`] gives it a value, [`Hear`] parks
/// until the value comes. Not a channel: a channel's receiver spins and yields before it
/// parks, which is right for a wait of microseconds and wrong for one of a whole call. A
/// coalesced read waits a call's length (hundreds of microseconds), and with more threads
/// than cores each of those yields was a context switch: they were two thirds of the
/// switches, and much of the CPU, of 8 callers reading.
pub(crate) fn handover<T>() -> (Tell<T>, Hear<T>) {
    let shared = Arc::new(Handover {
        slot: Mutex::new(Slot::Empty),
        thread: thread::current(),
    });
    (Tell(Some(shared.clone())), Hear(shared))
}

struct Handover<T> {
    slot: Mutex<Slot<T>>,
    /// The thread that waits: the one that made the handover.
    thread: Thread,
}

enum Slot<T> {
    Empty,
    Given(T),
    /// The [`Tell`] was dropped without giving anything.
    Dropped,
}

/// The giving side of a [`handover`]: gives once; dropped unused, it tells the waiter that
/// nothing will come.
pub(crate) struct Tell<T>(Option<Arc<Handover<T>>>);

impl<T> Tell<T> {
    /// A `Tell` that tells nobody (what is left where one was taken out to be used).
    pub(crate) fn nobody() -> Tell<T> {
        Tell(None)
    }

    /// Gives `value` to the waiting thread and wakes it.
    pub(crate) fn give(mut self, value: T) {
        if let Some(shared) = self.0.take() {
            *shared.slot.lock() = Slot::Given(value);
            shared.thread.unpark();
        }
    }
}

impl<T> Drop for Tell<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            *shared.slot.lock() = Slot::Dropped;
            shared.thread.unpark();
        }
    }
}

/// Why a [`Hear::until`] got nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unheard {
    /// The deadline passed first.
    Timeout,
    /// The [`Tell`] was dropped without giving.
    Dropped,
}

/// The waiting side of a [`handover`], used by the thread that made it.
pub(crate) struct Hear<T>(Arc<Handover<T>>);

impl<T> Hear<T> {
    /// Parks until the value is given, the [`Tell`] is dropped, or `deadline` passes.
    pub(crate) fn until(&self, deadline: Instant) -> Result<T, Unheard> {
        loop {
            {
                // The giver fills the slot under this lock, then unparks: a value given
                // after this look unparks the thread, and the park below returns at once.
                let mut slot = self.0.slot.lock();
                match std::mem::replace(&mut *slot, Slot::Empty) {
                    Slot::Given(value) => return Ok(value),
                    Slot::Dropped => {
                        *slot = Slot::Dropped;
                        return Err(Unheard::Dropped);
                    }
                    Slot::Empty => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(Unheard::Timeout);
            }
            park_until(deadline);
        }
    }
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
    fn a_handover_wakes_its_waiter_with_the_value() {
        let (tell, hear) = handover::<u32>();
        let giver = thread::spawn(move || tell.give(7));
        let got = hear.until(Instant::now() + Duration::from_secs(60));
        giver.join().expect("giver");
        assert_eq!(got, Ok(7));
    }

    #[test]
    fn a_handover_dropped_unused_says_so_and_one_never_given_times_out() {
        let (tell, hear) = handover::<u32>();
        let dropper = thread::spawn(move || drop(tell));
        let got = hear.until(Instant::now() + Duration::from_secs(60));
        dropper.join().expect("dropper");
        assert_eq!(got, Err(Unheard::Dropped));
        assert_eq!(hear.until(Instant::now()), Err(Unheard::Dropped));

        let (_tell, hear) = handover::<u32>();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(hear.until(deadline), Err(Unheard::Timeout));
        assert!(Instant::now() >= deadline);
        // A `Tell` of nobody gives nothing, anywhere.
        Tell::<u32>::nobody().give(1);
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
