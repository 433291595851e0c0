//! The key-value handle: get, put, delete, txn and compact.

use std::sync::Arc;
use std::time::Duration;

use grpcio::{CallOption, ClientUnaryReceiver};

use super::coalesce::{Answer, Coalescers, Op};
use super::namespace::Namespace;
use super::options::{CompactOptions, DeleteOptions, GetOptions, PutOptions};
use super::responses::{CompactResponse, DeleteResponse, GetResponse, PutResponse};
use super::txn::{Txn, TxnResponse};
use crate::call::{Caller, Revisioned, Rpc, Stubs};
use crate::error::Result;
use crate::types::KeyValue;

/// The key-value API of a [`Client`](crate::Client): a cheap handle, `Clone + Send + Sync`.
///
/// Keys and values are bytes: `&str`, `String`, `&[u8]`, `Vec<u8>` and byte-string literals
/// are all accepted where one goes.
#[derive(Debug, Clone)]
pub struct Kv {
    caller: Caller,
    timeout: Duration,
    namespace: Namespace,
    /// The client's coalescers, unless coalescing is off for reads and writes.
    coalescers: Option<Arc<Coalescers>>,
}

impl Kv {
    pub(crate) fn new(
        caller: Caller,
        timeout: Duration,
        coalescers: Option<Arc<Coalescers>>,
    ) -> Kv {
        caller.note_timeout(timeout);
        Kv {
            caller,
            timeout,
            namespace: Namespace::default(),
            coalescers,
        }
    }

    /// The same handle, its keys under `namespace`.
    pub(crate) fn in_namespace(mut self, namespace: Namespace) -> Kv {
        self.namespace = namespace;
        self
    }

    /// The deadline of this handle's calls.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A handle whose calls have this deadline instead of the client's request timeout.
    /// `Duration::MAX` (or anything over about 24.8 days) means as long as possible, 24.8
    /// days; a zero timeout makes every call fail with
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    pub fn with_timeout(&self, timeout: Duration) -> Kv {
        Kv::new(self.caller.clone(), timeout, self.coalescers.clone())
            .in_namespace(self.namespace.clone())
    }

    /// Gets one key, linearizably.
    pub fn get(&self, key: impl Into<Vec<u8>>) -> Result<GetResponse> {
        self.get_with(key, GetOptions::new())
    }

    /// Gets one key, linearizably: the key-value if the key exists, `None` if it does not.
    ///
    /// ```no_run
    /// # let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
    /// match client.kv().get_one("app/config")? {
    ///     Some(kv) => println!("config: {}", kv.value_str()?),
    ///     None => println!("no config yet"),
    /// }
    /// # Ok::<(), etcd_blocking::Error>(())
    /// ```
    pub fn get_one(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>> {
        Ok(self.get(key)?.into_kvs().into_iter().next())
    }

    /// Gets keys as the options say: a range or prefix, at a revision, sorted, limited.
    pub fn get_with(&self, key: impl Into<Vec<u8>>, options: GetOptions) -> Result<GetResponse> {
        let mut request = options.request(key.into())?;
        self.namespace.range_request(&mut request);
        let coalescer = self.coalescers.as_deref().and_then(|c| c.read(&request));
        let mut r = match coalescer {
            // A zero timeout goes the plain way, which refuses it.
            Some(coalescer) if !self.timeout.is_zero() => {
                match coalescer.call(&self.caller, Op::Range(request), self.timeout)? {
                    Answer::Range(r) => r,
                    _ => return Err(wrong_answer()),
                }
            }
            _ => {
                let spec = if request.serializable {
                    Rpc::SerializableRange
                } else {
                    Rpc::Range
                };
                self.caller.unary(spec, self.timeout, |s, opt| {
                    s.kv.range_async_opt(&request, opt)
                })?
            }
        };
        self.namespace.range_response(&mut r);
        Ok(GetResponse::from(r))
    }

    /// Puts a key.
    pub fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<PutResponse> {
        self.put_with(key, value, PutOptions::new())
    }

    /// Puts a key as the options say: with a lease, returning the previous value, keeping
    /// the value or the lease.
    pub fn put_with(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        options: PutOptions,
    ) -> Result<PutResponse> {
        let mut request = options.request(key.into(), value.into())?;
        self.namespace.put_request(&mut request);
        let coalescer = self.coalescers.as_deref().and_then(Coalescers::write);
        let mut r = match coalescer {
            Some(coalescer) if !self.timeout.is_zero() => {
                match coalescer.call(&self.caller, Op::Put(request), self.timeout)? {
                    Answer::Put(r) => r,
                    _ => return Err(wrong_answer()),
                }
            }
            _ => self.write(Rpc::Put, |s, opt| s.kv.put_async_opt(&request, opt))?,
        };
        self.namespace.put_response(&mut r);
        Ok(PutResponse::from(r))
    }

    /// Deletes one key.
    pub fn delete(&self, key: impl Into<Vec<u8>>) -> Result<DeleteResponse> {
        self.delete_with(key, DeleteOptions::new())
    }

    /// Deletes keys as the options say: a range or prefix, returning what was deleted.
    pub fn delete_with(
        &self,
        key: impl Into<Vec<u8>>,
        options: DeleteOptions,
    ) -> Result<DeleteResponse> {
        let mut request = options.request(key.into());
        self.namespace.delete_request(&mut request);
        // Deletes of one key only: ranges could overlap another write of the batch.
        let coalescer = self
            .coalescers
            .as_deref()
            .and_then(Coalescers::write)
            .filter(|_| request.range_end.is_empty());
        let mut r = match coalescer {
            Some(coalescer) if !self.timeout.is_zero() => {
                match coalescer.call(&self.caller, Op::Delete(request), self.timeout)? {
                    Answer::Delete(r) => r,
                    _ => return Err(wrong_answer()),
                }
            }
            _ => self.write(Rpc::DeleteRange, |s, opt| {
                s.kv.delete_range_async_opt(&request, opt)
            })?,
        };
        self.namespace.delete_response(&mut r);
        Ok(DeleteResponse::from(r))
    }

    /// Runs a transaction: its comparisons, then its success or its failure operations,
    /// atomically. A transaction whose every operation is a serializable get is served by
    /// any member, as etcd serves it, and, like a serializable get, never answers from
    /// below the highest revision this client has seen.
    pub fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let mut request = txn.request()?;
        self.namespace.txn_request(&mut request);
        // A transaction of serializable gets is served by any member, as etcd would, and
        // held to the revision floor like a serializable get.
        let spec = if txn.is_serializable() {
            Rpc::SerializableReadOnlyTxn
        } else if txn.is_read_only() {
            Rpc::ReadOnlyTxn
        } else {
            Rpc::Txn
        };
        let mut r = self.caller.unary(spec, self.timeout, |s, opt| {
            s.kv.txn_async_opt(&request, opt)
        })?;
        self.namespace.txn_response(&mut r);
        Ok(TxnResponse::from(r))
    }

    /// Compacts the history before this revision: reads and watches at older revisions fail
    /// with [`ServerCode::Compacted`](crate::ServerCode::Compacted) from then on.
    pub fn compact(&self, revision: i64) -> Result<CompactResponse> {
        self.compact_with(revision, CompactOptions::new())
    }

    /// Compacts as the options say.
    pub fn compact_with(&self, revision: i64, options: CompactOptions) -> Result<CompactResponse> {
        let request = options.request(revision)?;
        self.write(Rpc::Compact, |s, opt| s.kv.compact_async_opt(&request, opt))
            .map(CompactResponse::from)
    }

    fn write<R: Revisioned + Unpin>(
        &self,
        rpc: Rpc,
        start: impl Fn(&Stubs, CallOption) -> grpcio::Result<ClientUnaryReceiver<R>>,
    ) -> Result<R> {
        self.caller.unary(rpc, self.timeout, start)
    }
}

/// A coalescer answered a request with the answer of another kind: never, but typed.
fn wrong_answer() -> crate::Error {
    crate::Error::InvalidResponse {
        reason: "a coalesced request got the answer of another kind".to_owned(),
    }
}
