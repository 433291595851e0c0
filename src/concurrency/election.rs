//! Leader election on a key prefix, as the Go client's `concurrency.Election`.
//!
//! Each campaign puts a key of its own, `{name}/{lease ID}-{attempt}` (in hex), with its
//! value and its session's lease; the candidate whose key has the lowest create revision
//! leads. (Go's candidates use `{name}/{lease ID}`; both queue by create revision under
//! the prefix, so they interoperate.) Campaigns that share a session contend like those
//! of different sessions, as lock attempts do: one leads, the others wait. (Go's
//! `Election` differs here: campaigns on one session share one key, so all of them lead
//! at once.) [`Election::campaign`] waits for every key created before its own to go;
//! [`Leadership::proclaim`] changes the leader's value, fenced to the leader's key;
//! [`Election::observe`] follows the leader through one watch of the prefix.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::cancel::Cancel;
use super::queue::Queue;
use super::session::Session;
use crate::error::{Error, Result};
use crate::kv::{Compare, GetOptions, SortOrder, SortTarget, Txn, TxnOp};
use crate::types::KeyValue;
use crate::watch::{WatchOptions, Watcher};
use crate::{EventKind, PutOptions};

/// An election named by a key prefix. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Election {
    session: Session,
    prefix: Vec<u8>,
    name: String,
}

impl Election {
    /// The election `name` (a key prefix; `/` is appended) for `session`. An empty name is
    /// refused.
    pub fn new(session: &Session, name: impl Into<Vec<u8>>) -> Result<Election> {
        let mut prefix = name.into();
        if prefix.is_empty() {
            return Err(Error::InvalidArgument {
                argument: "election name",
                reason: "must not be empty".to_owned(),
            });
        }
        let name = String::from_utf8_lossy(&prefix).into_owned();
        prefix.push(b'/');
        Ok(Election {
            session: session.clone(),
            prefix,
            name,
        })
    }

    /// Stands with `value` and waits, up to `timeout`, to lead: until every candidate
    /// that stood before has resigned or lost its session. Each campaign stands on its
    /// own, even on a session shared with another campaign (which then leads first, or
    /// waits). Gives up with [`Error::WaitTimeout`] (and stands down), or
    /// [`Error::SessionLost`] when the session has ended (closed, expired or lost) before
    /// or while it waits.
    pub fn campaign(&self, value: impl Into<Vec<u8>>, timeout: Duration) -> Result<Leadership> {
        self.campaign_inner(value.into(), timeout, None)
    }

    /// [`campaign`](Election::campaign), which another thread can also end through
    /// `cancel`: then it stands down and returns [`Error::Canceled`].
    pub fn campaign_or_cancel(
        &self,
        value: impl Into<Vec<u8>>,
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<Leadership> {
        self.campaign_inner(value.into(), timeout, Some(cancel))
    }

    fn campaign_inner(
        &self,
        value: Vec<u8>,
        timeout: Duration,
        cancel: Option<&Cancel>,
    ) -> Result<Leadership> {
        let deadline = crate::time::deadline(timeout);
        let place = Queue::attempt(&self.session, &self.prefix);
        let standing = place.enqueue(&value)?;
        let revision = standing.revision;
        let mut leadership = Leadership {
            place,
            revision,
            name: self.name.clone(),
            resigned: false,
        };
        if !standing.new {
            // A try of unknown outcome put the key (see `Queue::enqueue`): make sure it
            // holds this value.
            leadership.proclaim(value)?;
        }
        let what = format!("the leadership of {}", self.name);
        if let Err(e) = leadership
            .place
            .wait_turn(revision, deadline, timeout, &what, cancel)
        {
            leadership.resigned = true;
            let _ = leadership.place.dequeue();
            return Err(e);
        }
        if leadership.place.holds(revision)? {
            Ok(leadership)
        } else {
            leadership.resigned = true;
            Err(self.session.lost())
        }
    }

    /// The leader now: its key, value and create revision; `None` when nobody stands.
    pub fn leader(&self) -> Result<Option<KeyValue>> {
        let first = self.session.client().kv().get_with(
            self.prefix.clone(),
            GetOptions::new()
                .prefix()
                .sort(SortTarget::CreateRevision, SortOrder::Ascend)
                .limit(1),
        )?;
        Ok(first.into_kvs().into_iter().next())
    }

    /// Follows the leader from now on: every change of leader, and every new value a
    /// leader proclaims, in order, from one watch of the prefix (no thread of its own:
    /// the observer's caller does the work as it receives).
    pub fn observe(&self) -> Result<Observer> {
        let client = self.session.client();
        let now = client
            .kv()
            .get_with(self.prefix.clone(), GetOptions::new().prefix())?;
        let watcher = client.watch().watch_with(
            self.prefix.clone(),
            WatchOptions::new()
                .prefix()
                .start_revision(now.header().revision() + 1)
                .buffer(usize::MAX),
        )?;
        let mut candidates = BTreeMap::new();
        let mut revisions = BTreeMap::new();
        for kv in now.into_kvs() {
            revisions.insert(kv.key().to_vec(), kv.create_revision());
            candidates.insert(kv.create_revision(), kv);
        }
        let mut observer = Observer {
            watcher,
            candidates,
            revisions,
            told: None,
            pending: VecDeque::new(),
        };
        let first = observer.changed();
        observer.pending.extend(first);
        Ok(observer)
    }
}

/// Leading an election: from [`Election::campaign`]. Resigns on drop (best effort,
/// logged on failure; the session's end takes the key anyway), as a
/// [`MutexGuard`](super::MutexGuard) unlocks.
#[derive(Debug)]
#[must_use = "dropping a Leadership resigns at once; keep it while leading"]
pub struct Leadership {
    place: Queue,
    revision: i64,
    name: String,
    resigned: bool,
}

impl Leadership {
    /// The leader's key.
    pub fn key(&self) -> &[u8] {
        &self.place.key
    }

    /// The create revision of the leader's key.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// A compare that holds only while this leadership stands: fences writes to the
    /// leader.
    pub fn fence(&self) -> Compare {
        self.place.fence(self.revision)
    }

    /// Sets the leader's value; [`Error::NotLeader`] once the leadership is gone (its
    /// session's lease went, or it resigned).
    pub fn proclaim(&self, value: impl Into<Vec<u8>>) -> Result<()> {
        let response =
            self.place
                .session
                .client()
                .kv()
                .txn(Txn::new().when([self.fence()]).and_then([TxnOp::put_with(
                    self.place.key.clone(),
                    value.into(),
                    PutOptions::new().lease(self.place.session.lease_id()),
                )]))?;
        if response.succeeded() {
            Ok(())
        } else {
            Err(Error::NotLeader {
                election: self.name.clone(),
            })
        }
    }

    /// Stands down: the next candidate leads.
    pub fn resign(mut self) -> Result<()> {
        self.resigned = true;
        self.place.dequeue()
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // A closed client has no way to etcd; the lease ends what is left.
        if !self.resigned && !self.place.session.client().is_closed() {
            if let Err(e) = self.place.dequeue() {
                log::warn!(
                    "etcd election {} not resigned on drop (its lease will end it): {e}",
                    self.name
                );
            }
        }
    }
}

/// The leaders of an election as they come, from [`Election::observe`].
#[derive(Debug)]
#[must_use = "dropping an Observer cancels its watch at once"]
pub struct Observer {
    watcher: Watcher,
    /// The candidates by create revision, and each key's create revision.
    candidates: BTreeMap<i64, KeyValue>,
    revisions: BTreeMap<Vec<u8>, i64>,
    /// The last leader told: its create revision and value.
    told: Option<(i64, Vec<u8>)>,
    /// Leaders found and not yet told, in order.
    pending: VecDeque<KeyValue>,
}

impl Observer {
    /// The next leader (or the leader's next value), waiting as long as it takes; the
    /// error that ended the observer's watch.
    pub fn recv(&mut self) -> Result<KeyValue> {
        loop {
            if let Some(kv) = self.next_now()? {
                return Ok(kv);
            }
        }
    }

    /// The next leader, waiting up to `timeout`; `None` if none came.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<KeyValue>> {
        let deadline = crate::time::deadline(timeout);
        loop {
            if let Some(kv) = self.pending.pop_front() {
                return Ok(Some(kv));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(response) = self.watcher.recv_timeout(left)? else {
                return Ok(None);
            };
            self.apply(response.events());
        }
    }

    /// [`recv`](Observer::recv), which another thread can also end through `cancel`: then
    /// it returns [`Error::Canceled`] (the observer stays usable).
    pub fn recv_or_cancel(&mut self, cancel: &Cancel) -> Result<KeyValue> {
        let canceled = cancel.receiver();
        loop {
            if let Some(kv) = self.pending.pop_front() {
                return Ok(kv);
            }
            if cancel.is_canceled() {
                return Err(Error::Canceled {
                    what: "the next leader".to_owned(),
                });
            }
            let responses = self.watcher.receiver().clone();
            crossbeam_channel::select! {
                recv(responses) -> response => match response {
                    Ok(response) => self.apply(response.events()),
                    // The watch ended: its error.
                    Err(_) => return Err(self.watcher.recv().err().unwrap_or(Error::Closed)),
                },
                recv(canceled) -> _ => {}
            }
        }
    }

    fn next_now(&mut self) -> Result<Option<KeyValue>> {
        if let Some(kv) = self.pending.pop_front() {
            return Ok(Some(kv));
        }
        let response = self.watcher.recv()?;
        self.apply(response.events());
        Ok(self.pending.pop_front())
    }

    /// Applies a response's events one revision at a time (a response may hold several,
    /// as one from etcd's gRPC proxy or a catch-up does): each revision's leader, if it
    /// changed, is told in turn.
    fn apply(&mut self, events: &[crate::Event]) {
        for revision in events.chunk_by(|a, b| a.revision() == b.revision()) {
            self.apply_revision(revision);
            let changed = self.changed();
            self.pending.extend(changed);
        }
    }

    fn apply_revision(&mut self, events: &[crate::Event]) {
        for event in events {
            let key = event.kv().key().to_vec();
            match event.kind() {
                EventKind::Put => {
                    let created = event.kv().create_revision();
                    self.revisions.insert(key, created);
                    self.candidates.insert(created, event.kv().clone());
                }
                EventKind::Delete => {
                    if let Some(created) = self.revisions.remove(&key) {
                        self.candidates.remove(&created);
                    }
                }
            }
        }
    }

    /// The leader, if it is not the one last told (or its value changed).
    fn changed(&mut self) -> Option<KeyValue> {
        let (&created, kv) = self.candidates.iter().next()?;
        let now = (created, kv.value().to_vec());
        if self.told.as_ref() == Some(&now) {
            return None;
        }
        self.told = Some(now);
        Some(kv.clone())
    }
}
