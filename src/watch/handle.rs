//! The handle that starts watches.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::hub::{Command, Hub};
use super::options::WatchOptions;
use super::registration::{Registration, Shared};
use super::watcher::Watcher;
use crate::call::{start_once, Caller};
use crate::error::Result;
use crate::kv::Namespace;

/// The watch API of a client: cheap to clone, `Send + Sync`; from
/// [`Client::watch`](crate::Client::watch).
///
/// Every watch of a client shares one bidirectional stream, driven by one thread
/// (`etcd-watch`), started with the first watch and stopped by
/// [`Client::close`](crate::Client::close). Starting a watch does not wait for the server:
/// creates are pipelined, so a thousand watches cost no thousand round trips. Watchers
/// that start from now with the same range, filters and flags share one watch on the
/// server (as etcd's gRPC proxy does for its clients): etcd sends each event once, and the
/// hub hands it to each of them.
#[derive(Debug, Clone)]
pub struct Watch {
    caller: Caller,
    hub: Arc<Mutex<Option<Arc<Hub>>>>,
    timeout: Duration,
    namespace: Namespace,
}

impl Watch {
    pub(crate) fn new(
        caller: Caller,
        hub: Arc<Mutex<Option<Arc<Hub>>>>,
        timeout: Duration,
    ) -> Watch {
        Watch {
            caller,
            hub,
            timeout,
            namespace: Namespace::default(),
        }
    }

    /// The same handle, its keys under `namespace`.
    pub(crate) fn in_namespace(mut self, namespace: Namespace) -> Watch {
        self.namespace = namespace;
        self
    }

    /// Watches `key` from the next revision on.
    pub fn watch(&self, key: impl Into<Vec<u8>>) -> Result<Watcher> {
        self.watch_with(key, WatchOptions::new())
    }

    /// Watches `key` (or the range `options` make of it) with `options`. Refused at once:
    /// the empty key alone, a negative start revision, a zero buffer, a closed client.
    pub fn watch_with(&self, key: impl Into<Vec<u8>>, options: WatchOptions) -> Result<Watcher> {
        let mut request = options.request(key.into())?;
        self.namespace.watch_request(&mut request);
        let buffer = options.checked_buffer()?;
        let hub = self.hub()?;
        let id = hub.next_id();
        request.watch_id = id;
        // Unbounded, so that no watcher allocates its whole buffer up front (a bounded
        // channel would: 10,000 watchers of 1,024 slots each is most of a gigabyte); the
        // hub enforces the bound with the channel's length.
        let (sender, receiver) = crossbeam_channel::unbounded();
        let (created, created_rx) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared::default());
        hub.tell(Command::Create(Box::new(Registration {
            request,
            sender,
            created,
            shared: shared.clone(),
            buffer,
            strip: self.namespace.len(),
        })))?;
        Ok(Watcher::new(
            id,
            hub,
            receiver,
            created_rx,
            shared,
            self.timeout,
        ))
    }

    /// The endpoint the client's watch stream is on now (every watch of the client shares
    /// it), if one is open: for logs and for following a failover.
    pub fn stream_endpoint(&self) -> Option<String> {
        self.hub.lock().as_ref().and_then(|hub| hub.endpoint())
    }

    /// How many watch streams the client has opened so far: one, plus one for each move
    /// to another member (a failover, a member found hung).
    pub fn streams_opened(&self) -> u64 {
        self.hub
            .lock()
            .as_ref()
            .map_or(0, |hub| hub.streams_opened())
    }

    /// The client's hub, started with its thread on first use.
    fn hub(&self) -> Result<Arc<Hub>> {
        start_once(&self.hub, &self.caller, "etcd-watch", Hub::new, Hub::worker)
    }
}
