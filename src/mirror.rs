//! A live, consistent local copy of a prefix ([`Client::mirror`](crate::Client::mirror)): listed at one revision
//! (paged), then followed by a watch from the revision after, through every fault the
//! watch survives; listed again, and the difference applied, when the watch is compacted.
//!
//! Built on the public API alone (`Kv`, `Watch`), like the recipes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::{Condvar, Mutex};

use crate::{
    prefix_end, Error, Event, EventKind, GetOptions, KeyValue, Kv, Result, Watch, WatchOptions,
    WatchResponse, Watcher,
};

/// How often the mirror's thread looks whether it should stop, when nothing comes.
const TICK: Duration = Duration::from_millis(100);

/// How long the thread waits before it tries again after a failure.
const RETRY: Duration = Duration::from_millis(200);

/// Settings of a [`Mirror`].
#[derive(Debug, Clone)]
pub struct MirrorOptions {
    page_size: i64,
    keys_only: bool,
    changes_buffer: usize,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions {
            page_size: 1000,
            keys_only: false,
            changes_buffer: 1024,
        }
    }
}

impl MirrorOptions {
    /// The default settings: pages of 1,000 keys, values kept, 1,024 batches of changes
    /// buffered per consumer.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys each request of a listing asks for (1 or more; default 1,000), so
    /// that a prefix of a million keys is not one huge response.
    pub fn page_size(mut self, keys: i64) -> Self {
        self.page_size = keys;
        self
    }

    /// Keeps keys and their revisions only, without values.
    pub fn keys_only(mut self) -> Self {
        self.keys_only = true;
        self
    }

    /// How many batches of changes each consumer of [`Mirror::changes`] may fall behind
    /// before it is dropped with [`Error::WatchLagged`] (1 or more; default 1,024).
    pub fn changes_buffer(mut self, batches: usize) -> Self {
        self.changes_buffer = batches;
        self
    }
}

/// The mirror's keys at one revision: immutable, cheap to take (a reference count), safe
/// to hold on any thread while the mirror goes on. Keys are the cluster's own (the
/// prefix included).
#[derive(Debug, Clone, Default)]
pub struct MirrorSnapshot {
    revision: i64,
    keys: Arc<BTreeMap<Vec<u8>, KeyValue>>,
}

impl MirrorSnapshot {
    /// The store revision the copy is at: every change of the prefix up to it is in it,
    /// none after it.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The key-value of `key`, if the prefix has it.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&KeyValue> {
        self.keys.get(key.as_ref())
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the prefix has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key-value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &KeyValue> {
        self.keys.values()
    }
}

/// What changed in a mirror: every event of one revision, or, after the mirror listed the
/// prefix again (its watch was compacted), what differs between the old copy and the new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorChange {
    /// The events of one revision, in order.
    Events {
        /// Their revision.
        revision: i64,
        /// The events.
        events: Vec<Event>,
    },
    /// The prefix was listed again at `revision`: `put` holds every key that is new or
    /// changed, `deleted` every key that is gone.
    Reset {
        /// The revision of the new listing.
        revision: i64,
        /// Keys new or changed.
        put: Vec<KeyValue>,
        /// Keys gone.
        deleted: Vec<Vec<u8>>,
    },
}

/// One consumer's batches of changes, from [`Mirror::changes`].
#[derive(Debug)]
pub struct MirrorChanges {
    receiver: Receiver<MirrorChange>,
    lagged: Arc<Mutex<Option<i64>>>,
    buffer: usize,
}

impl MirrorChanges {
    /// The next batch, waiting at most `timeout`; `None` if none came. A consumer that fell
    /// `changes_buffer` batches behind is dropped: then, once it has read what it had,
    /// [`Error::WatchLagged`] with the revision to catch up from (take a snapshot).
    /// [`Error::Closed`] once the mirror is dropped.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<MirrorChange>> {
        match self.receiver.recv_timeout(timeout) {
            Ok(change) => Ok(Some(change)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Ok(None),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => match *self.lagged.lock() {
                Some(resume_from) => Err(Error::WatchLagged {
                    resume_from,
                    buffer: self.buffer,
                }),
                None => Err(Error::Closed),
            },
        }
    }
}

/// A consumer as the mirror's thread keeps it.
struct Consumer {
    sender: Sender<MirrorChange>,
    lagged: Arc<Mutex<Option<i64>>>,
}

/// What the mirror's thread and its handle share.
struct Shared {
    current: Mutex<MirrorSnapshot>,
    moved: Condvar,
    consumers: Mutex<Vec<Consumer>>,
    /// The last failure the thread met and recovered from, for the curious.
    last_error: Mutex<Option<String>>,
    /// Why the thread died, if it did (a panic): the copy no longer moves.
    died: Mutex<Option<String>>,
    stop: AtomicBool,
}

/// A live, consistent local copy of the keys under a prefix; see
/// [`Client::mirror`](crate::Client::mirror).
/// Dropping it stops its thread.
pub struct Mirror {
    shared: Arc<Shared>,
    options: MirrorOptions,
    /// For the reads that tell whether a revision without a change of the prefix has
    /// been reached.
    kv: Kv,
    prefix: Vec<u8>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.shared.current.lock();
        f.debug_struct("Mirror")
            .field("revision", &current.revision)
            .field("keys", &current.keys.len())
            .finish()
    }
}

impl Mirror {
    /// Lists `prefix` (the empty prefix: every key) and starts following it; returns once
    /// the first listing is in.
    pub(crate) fn start(
        kv: Kv,
        watch: Watch,
        prefix: &[u8],
        options: MirrorOptions,
    ) -> Result<Mirror> {
        if options.page_size < 1 {
            return Err(Error::InvalidArgument {
                argument: "page size",
                reason: "must be 1 or more".to_owned(),
            });
        }
        if options.changes_buffer == 0 {
            return Err(Error::InvalidArgument {
                argument: "changes buffer",
                reason: "must be 1 or more".to_owned(),
            });
        }
        let (revision, keys) = list(&kv, prefix, &options)?;
        let shared = Arc::new(Shared {
            current: Mutex::new(MirrorSnapshot {
                revision,
                keys: Arc::new(keys),
            }),
            moved: Condvar::new(),
            consumers: Mutex::new(Vec::new()),
            last_error: Mutex::new(None),
            died: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let follower = Follower {
            kv: kv.clone(),
            watch,
            prefix: prefix.to_vec(),
            options: options.clone(),
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("etcd-mirror".to_owned())
            .spawn(move || {
                let shared = follower.shared.clone();
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| follower.run()));
                if let Err(panic) = run {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_owned());
                    log::error!("etcd mirror: its thread died: {message}");
                    *shared.died.lock() = Some(message);
                    shared.moved.notify_all();
                }
            })
            .map_err(|source| Error::ThreadSpawn {
                thread: "etcd-mirror",
                source,
            })?;
        Ok(Mirror {
            shared,
            options,
            kv,
            prefix: prefix.to_vec(),
            thread: Some(thread),
        })
    }

    /// The copy as it is now.
    pub fn snapshot(&self) -> MirrorSnapshot {
        self.shared.current.lock().clone()
    }

    /// The key-value of `key` now, if the prefix has it.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<KeyValue> {
        self.shared.current.lock().keys.get(key.as_ref()).cloned()
    }

    /// How many keys the prefix has now.
    pub fn len(&self) -> usize {
        self.shared.current.lock().keys.len()
    }

    /// True when the prefix has no key now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The revision the copy is at now.
    pub fn revision(&self) -> i64 {
        self.shared.current.lock().revision
    }

    /// The last failure the mirror met and recovered from (a watch that broke, a listing
    /// retried), if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().clone()
    }

    /// `Ok` while the mirror follows its prefix; [`Error::BackgroundThread`] if its
    /// thread died, after which the copy no longer moves (every wait fails the same way).
    pub fn health(&self) -> Result<()> {
        match self.shared.died.lock().clone() {
            None => Ok(()),
            Some(message) => Err(Error::BackgroundThread {
                thread: "etcd-mirror",
                message,
            }),
        }
    }

    /// Waits until the copy has reached `revision` (read-your-writes: the revision of a
    /// put made through any client); the snapshot then, or [`Error::WaitTimeout`] after
    /// `timeout`. A revision that changed nothing under the prefix is reached too: while
    /// the copy is behind, two count-only reads at `revision` tell whether the prefix has
    /// changed since the copy's revision (the same number of keys, none modified after
    /// it); if not, the copy is at `revision` already. (Watch progress reports would do
    /// it too, but etcd before 3.4.25 and 3.5.8 can report a revision beyond events not
    /// yet delivered.)
    pub fn wait_for_revision(&self, revision: i64, timeout: Duration) -> Result<MirrorSnapshot> {
        let deadline = crate::time::deadline(timeout);
        loop {
            self.health()?;
            {
                let current = self.shared.current.lock();
                if current.revision >= revision {
                    return Ok(current.clone());
                }
            }
            if self.shared.stop.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            // A failed read is tried again until the deadline.
            if let Ok(true) = self.unchanged_up_to(revision) {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::WaitTimeout {
                    what: format!("the mirror to reach revision {revision}"),
                    timeout,
                });
            }
            let mut current = self.shared.current.lock();
            if current.revision < revision {
                let _ = self
                    .shared
                    .moved
                    .wait_for(&mut current, (deadline - now).min(TICK / 2));
            }
        }
    }

    /// True if the prefix has not changed between the copy's revision and `revision`
    /// (then the copy is moved to `revision`): as many keys at `revision` as in the copy,
    /// and none modified after the copy's revision. A deletion lowers the count unless a
    /// key is created too, which the second read sees.
    fn unchanged_up_to(&self, revision: i64) -> Result<bool> {
        let (at, len) = {
            let current = self.shared.current.lock();
            (current.revision, current.keys.len())
        };
        if at >= revision {
            return Ok(true);
        }
        let end = prefix_end(&self.prefix);
        let from = if self.prefix.is_empty() {
            vec![0]
        } else {
            self.prefix.clone()
        };
        let count = |options: GetOptions| -> Result<i64> {
            Ok(self
                .kv
                .get_with(
                    from.clone(),
                    options
                        .range_end(end.clone())
                        .revision(revision)
                        .count_only(),
                )?
                .count())
        };
        let keys = count(GetOptions::new())?;
        let modified = count(GetOptions::new().min_mod_revision(at + 1))?;
        if usize::try_from(keys) != Ok(len) || modified != 0 {
            return Ok(false);
        }
        let mut current = self.shared.current.lock();
        if current.revision == at {
            current.revision = revision;
            drop(current);
            self.shared.moved.notify_all();
            return Ok(true);
        }
        Ok(current.revision >= revision)
    }

    /// Waits until `predicate` holds for the copy; the snapshot it held for, or
    /// [`Error::WaitTimeout`] after `timeout`.
    pub fn wait_until(
        &self,
        predicate: impl FnMut(&MirrorSnapshot) -> bool,
        timeout: Duration,
    ) -> Result<MirrorSnapshot> {
        self.wait(timeout, "the mirror's condition", predicate)
    }

    fn wait(
        &self,
        timeout: Duration,
        what: &str,
        mut predicate: impl FnMut(&MirrorSnapshot) -> bool,
    ) -> Result<MirrorSnapshot> {
        let deadline = crate::time::deadline(timeout);
        let mut current = self.shared.current.lock();
        loop {
            if predicate(&current) {
                return Ok(current.clone());
            }
            if self.shared.stop.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            self.health()?;
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::WaitTimeout {
                    what: what.to_owned(),
                    timeout,
                });
            }
            // Woken by every change; looked at again at least every tick, so that a
            // progress request is repeated while the copy is behind.
            let _ = self
                .shared
                .moved
                .wait_for(&mut current, (deadline - now).min(TICK * 5));
        }
    }

    /// A consumer of every change from now on, in batches (each all the events of one
    /// revision, or a reset after a new listing), with what the snapshot was when it
    /// started: apply the batches to it to follow the prefix.
    pub fn changes(&self) -> (MirrorSnapshot, MirrorChanges) {
        let (sender, receiver) = crossbeam_channel::bounded(self.options.changes_buffer);
        let lagged = Arc::new(Mutex::new(None));
        // Under the consumers' lock, which the thread holds while it publishes: the
        // snapshot and the first batch meet without a gap or an overlap.
        let mut consumers = self.shared.consumers.lock();
        let snapshot = self.snapshot();
        consumers.push(Consumer {
            sender,
            lagged: lagged.clone(),
        });
        (
            snapshot,
            MirrorChanges {
                receiver,
                lagged,
                buffer: self.options.changes_buffer,
            },
        )
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.moved.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Lists every key under `prefix` at one revision, a page at a time: the revision and the
/// keys.
fn list(
    kv: &Kv,
    prefix: &[u8],
    options: &MirrorOptions,
) -> Result<(i64, BTreeMap<Vec<u8>, KeyValue>)> {
    let end = prefix_end(prefix);
    let mut from = if prefix.is_empty() {
        vec![0]
    } else {
        prefix.to_vec()
    };
    let mut revision = 0;
    let mut keys = BTreeMap::new();
    loop {
        let mut get = GetOptions::new()
            .range_end(end.clone())
            .limit(options.page_size);
        if revision > 0 {
            get = get.revision(revision);
        }
        if options.keys_only {
            get = get.keys_only();
        }
        let page = kv.get_with(from.clone(), get)?;
        if revision == 0 {
            revision = page.header().revision();
        }
        let more = page.more();
        let kvs = page.into_kvs();
        let Some(last) = kvs.last() else {
            break;
        };
        from = last.key().to_vec();
        from.push(0);
        for kv in kvs {
            keys.insert(kv.key().to_vec(), kv);
        }
        if !more {
            break;
        }
    }
    Ok((revision, keys))
}

/// The mirror's thread: follows the prefix with a watch, lists it again when needed.
struct Follower {
    kv: Kv,
    watch: Watch,
    prefix: Vec<u8>,
    options: MirrorOptions,
    shared: Arc<Shared>,
}

impl Follower {
    fn run(self) {
        let mut watcher: Option<Arc<Watcher>> = None;
        while !self.shared.stop.load(Ordering::Acquire) {
            let watch = match watcher.clone() {
                Some(watch) => watch,
                None => {
                    let from = self.shared.current.lock().revision + 1;
                    match self.watch_from(from) {
                        Ok(watch) => {
                            watcher = Some(watch.clone());
                            watch
                        }
                        Err(Error::Closed) => break,
                        Err(e) => {
                            self.failed(&e);
                            continue;
                        }
                    }
                }
            };
            match watch.recv_timeout(TICK) {
                Ok(Some(response)) => self.apply(response),
                Ok(None) => {}
                Err(Error::WatchCompacted { .. }) => {
                    watcher = None;
                    match self.relist() {
                        Ok(()) => {}
                        Err(Error::Closed) => break,
                        Err(e) => self.failed(&e),
                    }
                }
                // The watch's own buffer: go on from where it stopped.
                Err(Error::WatchLagged { .. }) => watcher = None,
                Err(Error::Closed) => break,
                Err(e) => {
                    watcher = None;
                    self.failed(&e);
                }
            }
        }
        // Stopped, or the client closed: waits end with Error::Closed from now on.
        self.shared.stop.store(true, Ordering::Release);
        self.shared.consumers.lock().clear();
        self.shared.moved.notify_all();
    }

    fn watch_from(&self, revision: i64) -> Result<Arc<Watcher>> {
        let watch = self.watch.watch_with(
            self.prefix.clone(),
            WatchOptions::new()
                .prefix()
                .start_revision(revision)
                .buffer(1 << 16),
        )?;
        Ok(Arc::new(watch))
    }

    /// Notes a failure the thread recovers from, and pauses before it tries again.
    fn failed(&self, error: &Error) {
        log::warn!("etcd mirror: {error}; trying again");
        *self.shared.last_error.lock() = Some(error.to_string());
        let until = Instant::now() + RETRY;
        while Instant::now() < until && !self.shared.stop.load(Ordering::Acquire) {
            std::thread::park_timeout(TICK.min(until.saturating_duration_since(Instant::now())));
        }
    }

    /// Applies a watch response (whole revisions) and publishes the copy after it, with a
    /// batch per revision for the consumers.
    fn apply(&self, response: WatchResponse) {
        let events = response.into_events();
        if events.is_empty() {
            // A progress report: not trusted (see `Mirror::wait_for_revision`).
            return;
        }
        let mut consumers = self.shared.consumers.lock();
        let mut current = self.shared.current.lock();
        let mut batches: Vec<MirrorChange> = Vec::new();
        let keys = Arc::make_mut(&mut current.keys);
        for event in events {
            let revision = event.revision();
            match event.kind() {
                EventKind::Put => {
                    let mut kv = event.kv().clone();
                    if self.options.keys_only {
                        kv = kv.without_value();
                    }
                    keys.insert(kv.key().to_vec(), kv);
                }
                EventKind::Delete => {
                    keys.remove(event.kv().key());
                }
            }
            match batches.last_mut() {
                Some(MirrorChange::Events {
                    revision: r,
                    events,
                }) if *r == revision => events.push(event),
                _ => batches.push(MirrorChange::Events {
                    revision,
                    events: vec![event],
                }),
            }
        }
        if let Some(MirrorChange::Events { revision, .. }) = batches.last() {
            current.revision = current.revision.max(*revision);
        }
        drop(current);
        self.shared.moved.notify_all();
        for batch in batches {
            publish(&mut consumers, batch);
        }
    }

    /// Lists the prefix again (its watch was compacted), puts the new copy in place and
    /// tells the consumers what differs.
    fn relist(&self) -> Result<()> {
        let (revision, keys) = list(&self.kv, &self.prefix, &self.options)?;
        let mut consumers = self.shared.consumers.lock();
        let mut current = self.shared.current.lock();
        let old = current.keys.clone();
        let put: Vec<KeyValue> = keys
            .iter()
            .filter(|(k, v)| old.get(*k) != Some(v))
            .map(|(_, v)| v.clone())
            .collect();
        let deleted: Vec<Vec<u8>> = old
            .keys()
            .filter(|k| !keys.contains_key(*k))
            .cloned()
            .collect();
        *current = MirrorSnapshot {
            revision,
            keys: Arc::new(keys),
        };
        drop(current);
        self.shared.moved.notify_all();
        publish(
            &mut consumers,
            MirrorChange::Reset {
                revision,
                put,
                deleted,
            },
        );
        Ok(())
    }
}

/// Hands `change` to every consumer without waiting; one whose buffer is full is dropped,
/// told the revision to catch up from.
fn publish(consumers: &mut Vec<Consumer>, change: MirrorChange) {
    let revision = match &change {
        MirrorChange::Events { revision, .. } | MirrorChange::Reset { revision, .. } => *revision,
    };
    consumers.retain(|consumer| match consumer.sender.try_send(change.clone()) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            *consumer.lagged.lock() = Some(revision);
            false
        }
        Err(TrySendError::Disconnected(_)) => false,
    });
}
