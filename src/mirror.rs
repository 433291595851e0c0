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

/// Turns a key-value into what the mirror keeps of it, or says why it cannot.
type Decoder<V> = Arc<dyn Fn(KeyValue) -> std::result::Result<V, String> + Send + Sync>;

/// Settings of a [`Mirror`]: `V` is what it keeps of each key ([`KeyValue`] unless a
/// decoder is set with [`MirrorOptions::decode`]).
pub struct MirrorOptions<V = KeyValue> {
    page_size: i64,
    keys_only: bool,
    changes_buffer: usize,
    decode: Decoder<V>,
}

impl<V> Clone for MirrorOptions<V> {
    fn clone(&self) -> Self {
        MirrorOptions {
            page_size: self.page_size,
            keys_only: self.keys_only,
            changes_buffer: self.changes_buffer,
            decode: self.decode.clone(),
        }
    }
}

impl<V> std::fmt::Debug for MirrorOptions<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorOptions")
            .field("page_size", &self.page_size)
            .field("keys_only", &self.keys_only)
            .field("changes_buffer", &self.changes_buffer)
            .field("decodes_to", &std::any::type_name::<V>())
            .finish()
    }
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions {
            page_size: 1000,
            keys_only: false,
            changes_buffer: 1024,
            decode: Arc::new(Ok),
        }
    }
}

impl MirrorOptions {
    /// The default settings: pages of 1,000 keys, key-values kept as they are, 1,024
    /// batches of changes buffered per consumer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<V> MirrorOptions<V> {
    /// How many keys each request of a listing asks for (1 or more; default 1,000), so
    /// that a prefix of a million keys is not one huge response.
    pub fn page_size(mut self, keys: i64) -> Self {
        self.page_size = keys;
        self
    }

    /// Keeps keys and their revisions only, without values (a decoder gets key-values
    /// with empty values).
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

    /// Keeps what `decode` makes of each key-value instead of the key-value: parsed once,
    /// when the key changes, not on every read. A key whose value `decode` refuses is
    /// left out of the copy and listed, with the reason, by
    /// [`MirrorSnapshot::rejected`] until a value it accepts replaces it (or the key is
    /// deleted). The reason is never logged: it may quote the value. `T` is cloned when
    /// a change comes while a snapshot is held; keep large values behind an `Arc`.
    pub fn decode<T, E: std::fmt::Display>(
        self,
        decode: impl Fn(&KeyValue) -> std::result::Result<T, E> + Send + Sync + 'static,
    ) -> MirrorOptions<T> {
        MirrorOptions {
            page_size: self.page_size,
            keys_only: self.keys_only,
            changes_buffer: self.changes_buffer,
            decode: Arc::new(move |kv: KeyValue| decode(&kv).map_err(|e| e.to_string())),
        }
    }
}

/// One key as the mirror keeps it: its modification revision (which tells, when the
/// prefix is listed again, whether it changed) and what was kept of it.
type Kept<V> = (i64, V);

/// The mirror's keys at one revision: immutable, cheap to take (a reference count), safe
/// to hold on any thread while the mirror goes on. Keys are the cluster's own (the
/// prefix included).
pub struct MirrorSnapshot<V = KeyValue> {
    revision: i64,
    keys: Arc<BTreeMap<Vec<u8>, Kept<V>>>,
    /// Keys whose value the decoder refused: their modification revision and why.
    rejected: Arc<BTreeMap<Vec<u8>, Kept<String>>>,
}

impl<V> Clone for MirrorSnapshot<V> {
    fn clone(&self) -> Self {
        MirrorSnapshot {
            revision: self.revision,
            keys: self.keys.clone(),
            rejected: self.rejected.clone(),
        }
    }
}

impl<V> std::fmt::Debug for MirrorSnapshot<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorSnapshot")
            .field("revision", &self.revision)
            .field("keys", &self.keys.len())
            .field("rejected", &self.rejected.len())
            .finish()
    }
}

impl<V> MirrorSnapshot<V> {
    fn new(revision: i64) -> Self {
        MirrorSnapshot {
            revision,
            keys: Arc::default(),
            rejected: Arc::default(),
        }
    }

    /// The store revision the copy is at: every change of the prefix up to it is in it,
    /// none after it.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// What the copy keeps of `key`, if the prefix has it (and the decoder took it).
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&V> {
        self.keys.get(key.as_ref()).map(|(_, value)| value)
    }

    /// How many keys (those the decoder refused not counted).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the copy has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key with what the copy keeps of it, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.keys
            .iter()
            .map(|(key, (_, value))| (key.as_slice(), value))
    }

    /// The keys whose value the decoder ([`MirrorOptions::decode`]) refused, with its
    /// reason, in key order; none without a decoder.
    pub fn rejected(&self) -> impl Iterator<Item = (&[u8], &str)> {
        self.rejected
            .iter()
            .map(|(key, (_, why))| (key.as_slice(), why.as_str()))
    }

    /// How many keys the prefix has, refused ones included.
    fn listed(&self) -> usize {
        self.keys.len() + self.rejected.len()
    }

    /// The modification revision of `key`, kept or refused.
    fn mod_revision(&self, key: &[u8]) -> Option<i64> {
        self.keys
            .get(key)
            .map(|(r, _)| *r)
            .or_else(|| self.rejected.get(key).map(|(r, _)| *r))
    }

    /// Puts `kv` in the copy, as `decode` makes it.
    fn put(&mut self, decode: &Decoder<V>, kv: KeyValue)
    where
        V: Clone,
    {
        let key = kv.key().to_vec();
        let revision = kv.mod_revision();
        match decode(kv) {
            Ok(value) => {
                if self.rejected.contains_key(&key) {
                    Arc::make_mut(&mut self.rejected).remove(&key);
                }
                Arc::make_mut(&mut self.keys).insert(key, (revision, value));
            }
            Err(why) => {
                log::debug!("etcd mirror: the decoder refused a value");
                if self.keys.contains_key(&key) {
                    Arc::make_mut(&mut self.keys).remove(&key);
                }
                Arc::make_mut(&mut self.rejected).insert(key, (revision, why));
            }
        }
    }

    /// Takes `key` out of the copy.
    fn delete(&mut self, key: &[u8])
    where
        V: Clone,
    {
        if self.keys.contains_key(key) {
            Arc::make_mut(&mut self.keys).remove(key);
        }
        if self.rejected.contains_key(key) {
            Arc::make_mut(&mut self.rejected).remove(key);
        }
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
struct Shared<V> {
    current: Mutex<MirrorSnapshot<V>>,
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
/// Dropping it stops its thread. `V` is what it keeps of each key: the [`KeyValue`], or
/// what [`MirrorOptions::decode`] makes of it.
pub struct Mirror<V = KeyValue> {
    shared: Arc<Shared<V>>,
    options: MirrorOptions<V>,
    /// For the reads that tell whether a revision without a change of the prefix has
    /// been reached.
    kv: Kv,
    prefix: Vec<u8>,
    thread: Option<JoinHandle<()>>,
}

impl<V> std::fmt::Debug for Mirror<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.shared.current.lock();
        f.debug_struct("Mirror")
            .field("revision", &current.revision)
            .field("keys", &current.keys.len())
            .finish()
    }
}

impl<V: Clone + Send + Sync + 'static> Mirror<V> {
    /// Lists `prefix` (the empty prefix: every key) and starts following it; returns once
    /// the first listing is in.
    pub(crate) fn start(
        kv: Kv,
        watch: Watch,
        prefix: &[u8],
        options: MirrorOptions<V>,
    ) -> Result<Mirror<V>> {
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
        let (revision, listed) = list(&kv, prefix, &options)?;
        let mut first = MirrorSnapshot::new(revision);
        for kv in listed {
            first.put(&options.decode, kv);
        }
        let shared = Arc::new(Shared {
            current: Mutex::new(first),
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
    pub fn snapshot(&self) -> MirrorSnapshot<V> {
        self.shared.current.lock().clone()
    }

    /// What the copy keeps of `key` now (a clone), if the prefix has it (and the decoder
    /// took it).
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<V> {
        self.shared.current.lock().get(key).cloned()
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
    /// the copy is behind, two reads at `revision` tell whether the prefix has changed
    /// since the copy's revision (the same number of keys, none modified after it); if
    /// not, the copy is at `revision` already. (Watch progress reports would do
    /// it too, but etcd before 3.4.25 and 3.5.8 can report a revision beyond events not
    /// yet delivered.)
    pub fn wait_for_revision(&self, revision: i64, timeout: Duration) -> Result<MirrorSnapshot<V>> {
        let deadline = crate::time::deadline(timeout);
        let mut waited = false;
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
            // The watch usually brings the revision first; after a wait, the reads.
            // A failed read is tried again until the deadline.
            if waited {
                if let Ok(true) = self.unchanged_up_to(revision) {
                    continue;
                }
            }
            waited = true;
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
            (current.revision, current.listed())
        };
        if at >= revision {
            return Ok(true);
        }
        let end = prefix_end(&self.prefix);
        let from = range_start(&self.prefix);
        let keys = self
            .kv
            .get_with(
                from.clone(),
                GetOptions::new()
                    .range_end(end.clone())
                    .revision(revision)
                    .count_only(),
            )?
            .count();
        if usize::try_from(keys) != Ok(len) {
            return Ok(false);
        }
        // Not count-only: etcd counts before it applies the revision filters.
        let modified = self.kv.get_with(
            from,
            GetOptions::new()
                .range_end(end)
                .revision(revision)
                .min_mod_revision(at + 1)
                .keys_only()
                .limit(1),
        )?;
        if !modified.kvs().is_empty() {
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
        predicate: impl FnMut(&MirrorSnapshot<V>) -> bool,
        timeout: Duration,
    ) -> Result<MirrorSnapshot<V>> {
        self.wait(timeout, "the mirror's condition", predicate)
    }

    fn wait(
        &self,
        timeout: Duration,
        what: &str,
        mut predicate: impl FnMut(&MirrorSnapshot<V>) -> bool,
    ) -> Result<MirrorSnapshot<V>> {
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
    /// started: apply the batches to it to follow the prefix. The batches carry what etcd
    /// sent, not decoded: with a decoder, take what it made of a key from a snapshot at
    /// the batch's revision or later.
    pub fn changes(&self) -> (MirrorSnapshot<V>, MirrorChanges) {
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

impl<V> Drop for Mirror<V> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.moved.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The first key of `prefix`'s range: the prefix, or for the empty prefix (every key) the
/// smallest key etcd takes.
fn range_start(prefix: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        vec![0]
    } else {
        prefix.to_vec()
    }
}

/// Lists every key under `prefix` at one revision, a page at a time: the revision and the
/// key-values, in key order.
fn list<V>(kv: &Kv, prefix: &[u8], options: &MirrorOptions<V>) -> Result<(i64, Vec<KeyValue>)> {
    let end = prefix_end(prefix);
    let mut from = range_start(prefix);
    let mut revision = 0;
    let mut keys = Vec::new();
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
        keys.extend(kvs);
        if !more {
            break;
        }
    }
    Ok((revision, keys))
}

/// The mirror's thread: follows the prefix with a watch, lists it again when needed.
struct Follower<V> {
    kv: Kv,
    watch: Watch,
    prefix: Vec<u8>,
    options: MirrorOptions<V>,
    shared: Arc<Shared<V>>,
}

impl<V: Clone> Follower<V> {
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
        for event in events {
            let revision = event.revision();
            match event.kind() {
                EventKind::Put => {
                    let mut kv = event.kv().clone();
                    if self.options.keys_only {
                        kv = kv.without_value();
                    }
                    current.put(&self.options.decode, kv);
                }
                EventKind::Delete => current.delete(event.kv().key()),
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
        let (revision, listed) = list(&self.kv, &self.prefix, &self.options)?;
        let old = self.shared.current.lock().clone();
        // Decoded afresh: the keys whose modification revision moved, or that are new.
        let mut next = MirrorSnapshot::new(revision);
        let mut put = Vec::new();
        for kv in listed {
            let key = kv.key();
            if old.mod_revision(key) == Some(kv.mod_revision()) {
                if let Some(kept) = old.keys.get(key) {
                    Arc::make_mut(&mut next.keys).insert(key.to_vec(), kept.clone());
                } else if let Some(refused) = old.rejected.get(key) {
                    Arc::make_mut(&mut next.rejected).insert(key.to_vec(), refused.clone());
                }
                continue;
            }
            put.push(kv.clone());
            next.put(&self.options.decode, kv);
        }
        let deleted: Vec<Vec<u8>> = old
            .keys
            .keys()
            .chain(old.rejected.keys())
            .filter(|key| next.mod_revision(key).is_none())
            .cloned()
            .collect();
        drop(old);
        let mut consumers = self.shared.consumers.lock();
        *self.shared.current.lock() = next;
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
