//! Software transactional memory, as the Go client's `concurrency.STM`: a closure of reads
//! and writes runs as one etcd transaction, and runs again when another writer got there
//! first.
//!
//! The closure reads through [`StmTxn::get`], which remembers each key's mod revision, and
//! writes into a write set that reads see. The commit is one transaction whose compares
//! check, by the isolation level, that what was read is still current (and, for
//! [`Isolation::SerializableSnapshot`], that nothing written was changed since the first
//! read); when a compare fails, its other branch reads every key of the read set at once,
//! and the closure runs again on those values.
//!
//! **Unknown outcomes.** A commit that comes back [`Error::WriteOutcomeUnknown`] may still
//! be applied, even seconds later (a write that a follower forwarded to a leader that went
//! away stays pending, and etcd bounds that by no timeout of its own). So each commit that
//! writes also requires that a key of its own, its fence, does not exist, and writes it
//! (`committed`). To resolve an unknown outcome the STM writes the fence itself (`aborted`)
//! in a transaction that succeeds only if the fence does not exist yet. Either that
//! transaction finds the commit's fence (the commit was applied, the closure's result
//! stands), or it writes its own, and then the commit can never be applied, however late
//! it arrives: its compare fails. The closure then runs again. An `aborted` fence stays in
//! etcd for good (nothing bounds how late its commit may come); a `committed` one is
//! deleted by the next commit of the same [`Stm`] that succeeds (a commit that conflicts
//! writes nothing), or when the last clone of it is dropped.

use std::collections::BTreeMap;
#[cfg(feature = "testing")]
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{Error, Result, ServerCode};
use crate::kv::{Compare, GetOptions, Kv, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse};
use crate::types::KeyValue;
use crate::Client;

/// How an [`Stm`] keeps concurrent runs apart (the Go client's isolation levels).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isolation {
    /// Every read sees the store at the revision of the first read, and the commit fails
    /// if a key read or written was changed since: serializable, and no write skew. The
    /// default, as in the Go client.
    #[default]
    SerializableSnapshot,
    /// Every read sees the store at the revision of the first read, and the commit fails
    /// if a key read was changed since. Keys written but not read are not checked.
    Serializable,
    /// Each key is read at the newest revision when it is first read, and the commit fails
    /// if a key read was changed since: reads repeat, but two of them may see different
    /// revisions.
    RepeatableReads,
    /// Each key is read at the newest revision, and the commit checks nothing: it never
    /// conflicts, and may write over changes made since the reads.
    ReadCommitted,
}

impl Isolation {
    /// True when every read is at the revision of the first.
    fn snapshot(self) -> bool {
        matches!(
            self,
            Isolation::SerializableSnapshot | Isolation::Serializable
        )
    }
}

/// Runs closures of reads and writes as etcd transactions, again on conflict. Cheap to
/// clone (clones share their fence keys and their counts).
///
/// A correct increment:
///
/// ```no_run
/// # let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
/// use etcd_blocking::concurrency::Stm;
///
/// Stm::new(&client).run(|tx| {
///     let n: u64 = tx.get("counter")?.map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap_or(0));
///     tx.put("counter", (n + 1).to_string());
///     Ok::<_, etcd_blocking::Error>(())
/// })?;
/// # Ok::<(), etcd_blocking::Error>(())
/// ```
///
/// The closure may run more than once: it must do nothing but read and write through its
/// [`StmTxn`] (and compute).
#[derive(Debug, Clone)]
pub struct Stm {
    kv: Kv,
    isolation: Isolation,
    prefetch: Vec<Vec<u8>>,
    timeout: Duration,
    fence_prefix: Vec<u8>,
    shared: Arc<Shared>,
}

/// What the clones of an [`Stm`] share.
#[derive(Debug)]
struct Shared {
    kv: Kv,
    /// Fences of commits known to be applied, to delete with the next commit.
    leftovers: Mutex<Vec<Vec<u8>>>,
    attempts: AtomicU64,
    conflicts: AtomicU64,
    resolved_committed: AtomicU64,
    resolved_aborted: AtomicU64,
    #[cfg(feature = "testing")]
    faults: Mutex<VecDeque<CommitFault>>,
}

/// How many fences of earlier commits one commit deletes at most (etcd allows 128
/// operations in a transaction by default).
const CLEANUP: usize = 16;

/// How long to wait before another try at resolving an outcome.
const RESOLVE_PAUSE: Duration = Duration::from_millis(50);

/// The default bound of [`Stm::run`].
const TIMEOUT: Duration = Duration::from_secs(30);

/// How many runs of an [`Stm`] went which way, since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StmStats {
    /// Commits sent (or, for [`Isolation::ReadCommitted`] closures that wrote nothing, runs).
    pub attempts: u64,
    /// Commits refused because another writer changed what they read or wrote.
    pub conflicts: u64,
    /// Commits of unknown outcome found applied.
    pub resolved_committed: u64,
    /// Commits of unknown outcome found not applied, and fenced off for good.
    pub resolved_aborted: u64,
}

impl Stm {
    /// An STM on `client`'s key-value API, with [`Isolation::SerializableSnapshot`], each
    /// run bounded by 30 s, and fences under `__etcd-blocking/fence/`.
    pub fn new(client: &Client) -> Stm {
        let kv = client.kv();
        Stm {
            kv: kv.clone(),
            isolation: Isolation::default(),
            prefetch: Vec::new(),
            timeout: TIMEOUT,
            fence_prefix: super::fence::PREFIX.to_vec(),
            shared: Arc::new(Shared {
                kv,
                leftovers: Mutex::new(Vec::new()),
                attempts: AtomicU64::new(0),
                conflicts: AtomicU64::new(0),
                resolved_committed: AtomicU64::new(0),
                resolved_aborted: AtomicU64::new(0),
                #[cfg(feature = "testing")]
                faults: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Sets the isolation level.
    pub fn isolation(mut self, isolation: Isolation) -> Stm {
        self.isolation = isolation;
        self
    }

    /// Keys read, in one round trip, before the closure first runs.
    pub fn prefetch<K: Into<Vec<u8>>>(mut self, keys: impl IntoIterator<Item = K>) -> Stm {
        self.prefetch = keys.into_iter().map(Into::into).collect();
        self
    }

    /// How long a run may take, conflicts and the resolving of unknown outcomes included
    /// (default 30 s): no new attempt starts after it, and a run that could not commit by
    /// then fails with [`Error::WaitTimeout`]. Zero means one attempt. Each call of the run
    /// has the client's request timeout besides.
    pub fn timeout(mut self, timeout: Duration) -> Stm {
        self.timeout = timeout;
        self
    }

    /// Where fences go: a prefix that nothing else writes under (default
    /// `__etcd-blocking/fence/`).
    pub fn fence_prefix(mut self, prefix: impl Into<Vec<u8>>) -> Stm {
        self.fence_prefix = prefix.into();
        self
    }

    /// How runs of this STM and its clones went so far.
    pub fn stats(&self) -> StmStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StmStats {
            attempts: load(&self.shared.attempts),
            conflicts: load(&self.shared.conflicts),
            resolved_committed: load(&self.shared.resolved_committed),
            resolved_aborted: load(&self.shared.resolved_aborted),
        }
    }

    /// Runs `apply` and commits what it wrote, again until a commit holds: returns what
    /// the closure returned with the commit that held. An error of the closure ends the
    /// run with nothing written; so does an error of a read, after the client's own
    /// retries. A commit of unknown outcome is resolved (see the module docs); one that
    /// cannot be resolved before the run's timeout fails with
    /// [`Error::WriteOutcomeUnknown`], and then, exceptionally, it may still be applied.
    pub fn run<T, E>(
        &self,
        mut apply: impl FnMut(&mut StmTxn<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<Error>,
    {
        let deadline = crate::time::deadline(self.timeout);
        let mut reads = BTreeMap::new();
        let mut snapshot = None;
        if !self.prefetch.is_empty() {
            let response = self
                .kv
                .txn(Txn::new().and_then(self.prefetch.iter().map(|k| get(k))))?;
            snapshot = Some(response.header().revision());
            remember(&mut reads, &self.prefetch, response);
        }
        loop {
            let mut tx = StmTxn {
                kv: &self.kv,
                isolation: self.isolation,
                reads,
                writes: BTreeMap::new(),
                snapshot,
            };
            let value = apply(&mut tx)?;
            match self.commit(&tx, deadline)? {
                Outcome::Committed => return Ok(value),
                Outcome::Conflict(fresh) => {
                    self.shared.conflicts.fetch_add(1, Ordering::Relaxed);
                    (reads, snapshot) = fresh;
                }
                Outcome::Again => (reads, snapshot) = (BTreeMap::new(), None),
            }
            if Instant::now() >= deadline {
                return Err(Error::WaitTimeout {
                    what: "an STM commit without conflict".to_owned(),
                    timeout: self.timeout,
                }
                .into());
            }
        }
    }

    /// Commits what `tx` read and wrote.
    fn commit(&self, tx: &StmTxn<'_>, deadline: Instant) -> Result<Outcome> {
        self.shared.attempts.fetch_add(1, Ordering::Relaxed);
        let mut compares = Vec::new();
        if self.isolation != Isolation::ReadCommitted {
            compares.extend(
                tx.reads
                    .iter()
                    .map(|(key, kv)| Compare::mod_revision(key.clone()).eq(mod_revision(kv))),
            );
        }
        if let (Isolation::SerializableSnapshot, Some(first)) = (self.isolation, tx.snapshot) {
            compares.extend(
                tx.writes
                    .keys()
                    .map(|key| Compare::mod_revision(key.clone()).lt(first + 1)),
            );
        }
        let read_keys: Vec<Vec<u8>> = tx.reads.keys().cloned().collect();
        let refreshed = |response: TxnResponse| {
            let snapshot = Some(response.header().revision());
            let mut reads = BTreeMap::new();
            remember(&mut reads, &read_keys, response);
            Outcome::Conflict((reads, snapshot))
        };
        if tx.writes.is_empty() {
            if self.isolation == Isolation::ReadCommitted {
                return Ok(Outcome::Committed);
            }
            // Nothing written: a read-only transaction, which the client may resend.
            let txn = Txn::new()
                .when(compares)
                .or_else(read_keys.iter().map(|k| get(k)));
            let response = self.kv.txn(txn)?;
            return Ok(if response.succeeded() {
                Outcome::Committed
            } else {
                refreshed(response)
            });
        }
        let fence = self.fence();
        let cleanup: Vec<Vec<u8>> = {
            let leftovers = self.shared.leftovers.lock();
            leftovers.iter().take(CLEANUP).cloned().collect()
        };
        let deletes = || cleanup.iter().map(|k| TxnOp::delete(k.clone()));
        compares.push(Compare::create_revision(fence.clone()).eq(0));
        let txn = Txn::new()
            .when(compares)
            .and_then(tx.writes.iter().map(|(key, write)| match write {
                Write::Put(value, options) => TxnOp::put_with(key.clone(), value.clone(), *options),
                Write::Delete => TxnOp::delete(key.clone()),
            }))
            .and_then([TxnOp::put(fence.clone(), "committed")])
            .and_then(deletes())
            // A conflict writes nothing: the fences wait for the next commit that succeeds.
            .or_else(read_keys.iter().map(|k| get(k)));
        match self.send(txn) {
            Ok(response) if response.succeeded() => {
                self.cleaned(&cleanup, Some(fence));
                Ok(Outcome::Committed)
            }
            Ok(response) => Ok(refreshed(response)),
            Err(e) if e.is_write_outcome_unknown() => {
                if self.resolve(&fence, deadline, e)? {
                    self.shared
                        .resolved_committed
                        .fetch_add(1, Ordering::Relaxed);
                    self.cleaned(&cleanup, Some(fence));
                    Ok(Outcome::Committed)
                } else {
                    self.shared.resolved_aborted.fetch_add(1, Ordering::Relaxed);
                    Ok(Outcome::Again)
                }
            }
            // Not applied: sent nowhere, or refused before it was.
            Err(e) if e.is_unavailable() || e.is_deadline_exceeded() => {
                if Instant::now() >= deadline {
                    return Err(e);
                }
                Ok(Outcome::Again)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends a commit (with the faults a test asked for).
    fn send(&self, txn: Txn) -> Result<TxnResponse> {
        #[cfg(feature = "testing")]
        {
            let fault = self.shared.faults.lock().pop_front();
            let lost = |endpoint: &str| Error::WriteOutcomeUnknown {
                endpoint: endpoint.to_owned(),
                source: Box::new(Error::Abandoned {
                    endpoint: endpoint.to_owned(),
                    reason: "a test lost the answer".to_owned(),
                }),
            };
            match fault {
                Some(CommitFault::AnswerLost) => {
                    self.kv.txn(txn)?;
                    return Err(lost("(test)"));
                }
                Some(CommitFault::NotSent) => return Err(lost("(test)")),
                None => {}
            }
        }
        self.kv.txn(txn)
    }

    /// Whether the commit that writes `fence` was applied; if not, it never will be.
    fn resolve(&self, fence: &[u8], deadline: Instant, unknown: Error) -> Result<bool> {
        let sealed = super::fence::seal(
            &self.kv,
            fence,
            b"aborted",
            PutOptions::new(),
            RESOLVE_PAUSE,
            deadline,
        );
        match sealed {
            Ok(None) => Ok(false),
            Ok(Some(found)) => Ok(found == b"committed"),
            Err(e) => {
                log::warn!("etcd STM: could not resolve a commit of unknown outcome: {e}");
                Err(unknown)
            }
        }
    }

    /// Forgets the fences a commit deleted, and remembers the one it left.
    fn cleaned(&self, deleted: &[Vec<u8>], left: Option<Vec<u8>>) {
        let mut leftovers = self.shared.leftovers.lock();
        leftovers.retain(|k| !deleted.contains(k));
        leftovers.extend(left);
    }

    /// A fence key no other commit anywhere has.
    fn fence(&self) -> Vec<u8> {
        super::fence::unique(&self.fence_prefix)
    }

    /// Makes commits of this STM (and its clones) fail as the faults say, in order.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn inject(&self, faults: impl IntoIterator<Item = CommitFault>) {
        self.shared.faults.lock().extend(faults);
    }
}

/// A fault for a commit, for tests.
#[cfg(feature = "testing")]
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitFault {
    /// The commit is sent and applied, and its answer is lost: the outcome is unknown.
    AnswerLost,
    /// The commit is not sent, and reported of unknown outcome.
    NotSent,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let leftovers = std::mem::take(self.leftovers.get_mut());
        for chunk in leftovers.chunks(CLEANUP * 4) {
            let txn = Txn::new().and_then(chunk.iter().map(|k| TxnOp::delete(k.clone())));
            if let Err(e) = self.kv.txn(txn) {
                log::warn!("etcd STM: could not delete {} fences: {e}", chunk.len());
                return;
            }
        }
    }
}

/// How a commit went.
enum Outcome {
    Committed,
    /// Another writer got there first: the read set as it is now, and its revision.
    Conflict((BTreeMap<Vec<u8>, Option<KeyValue>>, Option<i64>)),
    /// Not applied, and no news of the read set: run again from scratch.
    Again,
}

/// A pending write.
#[derive(Debug)]
enum Write {
    Put(Vec<u8>, PutOptions),
    Delete,
}

/// The reads and writes of one run of an [`Stm`]'s closure.
#[derive(Debug)]
pub struct StmTxn<'a> {
    kv: &'a Kv,
    isolation: Isolation,
    /// Each key read, as it was read (`None`: it did not exist).
    reads: BTreeMap<Vec<u8>, Option<KeyValue>>,
    writes: BTreeMap<Vec<u8>, Write>,
    /// The revision of the first read.
    snapshot: Option<i64>,
}

impl StmTxn<'_> {
    /// The value of `key` as this run sees it: what it wrote there, or else what it read
    /// there before, or else what the store holds (at the first read's revision for the
    /// snapshot isolation levels). `None` if the key does not exist.
    pub fn get(&mut self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        let key = key.into();
        match self.writes.get(&key) {
            Some(Write::Put(value, _)) => return Ok(Some(value.clone())),
            Some(Write::Delete) => return Ok(None),
            None => {}
        }
        Ok(self.read(key)?.as_ref().map(|kv| kv.value().to_vec()))
    }

    /// The mod revision of `key` as this run read it (0 if it did not exist), whatever
    /// this run wrote there since.
    pub fn revision(&mut self, key: impl Into<Vec<u8>>) -> Result<i64> {
        Ok(self
            .read(key.into())?
            .as_ref()
            .map_or(0, KeyValue::mod_revision))
    }

    /// Writes `value` at `key` when the run commits.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.put_with(key, value, PutOptions::new());
    }

    /// Writes `value` at `key` as the options say (with a lease, say) when the run commits.
    pub fn put_with(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        options: PutOptions,
    ) {
        self.writes
            .insert(key.into(), Write::Put(value.into(), options));
    }

    /// Deletes `key` when the run commits.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.writes.insert(key.into(), Write::Delete);
    }

    /// The key as read by this run, reading it now if it was not yet.
    fn read(&mut self, key: Vec<u8>) -> Result<&Option<KeyValue>> {
        let got = if self.reads.contains_key(&key) {
            None
        } else {
            Some(match (self.isolation.snapshot(), self.snapshot) {
                (true, Some(revision)) => self.at(&key, revision)?,
                _ => {
                    let response = self.kv.get(key.clone())?;
                    if self.isolation.snapshot() {
                        self.snapshot = Some(response.header().revision());
                    }
                    response.into_kvs().into_iter().next()
                }
            })
        };
        // The entry is there, or made now from what was just read: no lookup can miss.
        Ok(self.reads.entry(key).or_insert_with(|| got.flatten()))
    }

    /// The key at `revision`, from any member that has it.
    fn at(&self, key: &[u8], revision: i64) -> Result<Option<KeyValue>> {
        let options = GetOptions::new().revision(revision);
        let response = match self
            .kv
            .get_with(key.to_vec(), options.clone().serializable())
        {
            // A member behind the revision: ask one that has it.
            Err(e) if e.code() == Some(ServerCode::FutureRevision) => {
                self.kv.get_with(key.to_vec(), options)?
            }
            other => other?,
        };
        Ok(response.into_kvs().into_iter().next())
    }
}

/// A get of one key, for a transaction.
fn get(key: &[u8]) -> TxnOp {
    TxnOp::get(key)
}

/// The mod revision of a key as read (0: it did not exist).
fn mod_revision(kv: &Option<KeyValue>) -> i64 {
    kv.as_ref().map_or(0, KeyValue::mod_revision)
}

/// The key-value a get of a transaction found.
fn first_kv(response: Option<&TxnOpResponse>) -> Option<&KeyValue> {
    match response {
        Some(TxnOpResponse::Get(got)) => got.kvs().first(),
        _ => None,
    }
}

/// Records the keys that a transaction's gets (one per key, in order) found.
fn remember(
    reads: &mut BTreeMap<Vec<u8>, Option<KeyValue>>,
    keys: &[Vec<u8>],
    response: TxnResponse,
) {
    for (key, got) in keys.iter().zip(response.responses()) {
        reads.insert(key.clone(), first_kv(Some(got)).cloned());
    }
}
