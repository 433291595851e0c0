//! The key-value API: get, put, delete, txn, compact, and what they answer.

use std::time::Duration;

use grpcio::{CallOption, ClientUnaryReceiver};

use crate::balancer::Endpoint;
use crate::call::{Revisioned, Spec};
use crate::client::Client;
use crate::error::Result;
use crate::options::{CompactOptions, DeleteOptions, GetOptions, PutOptions};
use crate::proto::rpc;
use crate::txn::{Txn, TxnResponse};
use crate::types::{key_values, KeyValue, ResponseHeader};

/// The key-value API of a [`Client`]: a cheap handle, `Clone + Send + Sync`.
///
/// Keys and values are bytes: `&str`, `String`, `&[u8]`, `Vec<u8>` and byte-string literals
/// are all accepted where one goes.
#[derive(Debug, Clone)]
pub struct Kv {
    client: Client,
    timeout: Duration,
}

impl Kv {
    pub(crate) fn new(client: Client, timeout: Duration) -> Kv {
        Kv { client, timeout }
    }

    /// A handle whose calls have this deadline instead of the client's request timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Kv {
        Kv {
            client: self.client.clone(),
            timeout,
        }
    }

    /// Gets one key, linearizably.
    pub fn get(&self, key: impl Into<Vec<u8>>) -> Result<GetResponse> {
        self.get_with(key, GetOptions::new())
    }

    /// Gets keys as the options say: a range or prefix, at a revision, sorted, limited.
    pub fn get_with(&self, key: impl Into<Vec<u8>>, options: GetOptions) -> Result<GetResponse> {
        let request = options.request(key.into())?;
        let spec = Spec {
            serializable: request.serializable,
            ..Spec::READ
        };
        self.client
            .unary(spec, self.timeout, |e, opt| {
                e.kv.range_async_opt(&request, opt)
            })
            .map(GetResponse::from)
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
        let request = options.request(key.into(), value.into())?;
        self.write(|e, opt| e.kv.put_async_opt(&request, opt))
            .map(PutResponse::from)
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
        let request = options.request(key.into());
        self.write(|e, opt| e.kv.delete_range_async_opt(&request, opt))
            .map(DeleteResponse::from)
    }

    /// Runs a transaction: its comparisons, then its success or its failure operations,
    /// atomically.
    pub fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let request = txn.request()?;
        let spec = if txn.is_read_only() {
            Spec::READ
        } else {
            Spec::WRITE
        };
        self.client
            .unary(spec, self.timeout, |e, opt| {
                e.kv.txn_async_opt(&request, opt)
            })
            .map(TxnResponse::from)
    }

    /// Compacts the history before this revision: reads and watches at older revisions fail
    /// with [`ServerCode::Compacted`](crate::ServerCode::Compacted) from then on.
    pub fn compact(&self, revision: i64) -> Result<CompactResponse> {
        self.compact_with(revision, CompactOptions::new())
    }

    /// Compacts as the options say.
    pub fn compact_with(&self, revision: i64, options: CompactOptions) -> Result<CompactResponse> {
        let request = options.request(revision)?;
        self.write(|e, opt| e.kv.compact_async_opt(&request, opt))
            .map(|r| CompactResponse {
                header: header_of(r.header.as_ref()),
            })
    }

    fn write<R: Revisioned + Unpin>(
        &self,
        start: impl Fn(&Endpoint, CallOption) -> grpcio::Result<ClientUnaryReceiver<R>>,
    ) -> Result<R> {
        self.client.unary(Spec::WRITE, self.timeout, start)
    }
}

/// The header of a response, or zeros where etcd sent none (inside a transaction).
pub(crate) fn header_of(header: Option<&rpc::ResponseHeader>) -> ResponseHeader {
    header.map(ResponseHeader::from).unwrap_or_default()
}

/// What a get found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetResponse {
    header: ResponseHeader,
    kvs: Vec<KeyValue>,
    more: bool,
    count: i64,
}

impl GetResponse {
    /// Who answered, at which revision.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// The key-values found, in the requested order (none with `count_only`).
    pub fn kvs(&self) -> &[KeyValue] {
        &self.kvs
    }

    /// The key-values found, to keep.
    pub fn into_kvs(self) -> Vec<KeyValue> {
        self.kvs
    }

    /// The first key-value found: for a single-key get, the key if it exists.
    pub fn first(&self) -> Option<&KeyValue> {
        self.kvs.first()
    }

    /// True if the limit left keys out.
    pub fn more(&self) -> bool {
        self.more
    }

    /// How many keys are in the range, whatever the limit.
    pub fn count(&self) -> i64 {
        self.count
    }
}

impl From<rpc::RangeResponse> for GetResponse {
    fn from(mut r: rpc::RangeResponse) -> Self {
        GetResponse {
            header: header_of(r.header.as_ref()),
            kvs: key_values(r.take_kvs()),
            more: r.more,
            count: r.count,
        }
    }
}

/// What a put did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutResponse {
    header: ResponseHeader,
    prev_kv: Option<KeyValue>,
}

impl PutResponse {
    /// Who answered; the revision is the put's own.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// The key-value the put replaced, when asked for with `prev_kv` and the key existed.
    pub fn prev_kv(&self) -> Option<&KeyValue> {
        self.prev_kv.as_ref()
    }
}

impl From<rpc::PutResponse> for PutResponse {
    fn from(mut r: rpc::PutResponse) -> Self {
        PutResponse {
            header: header_of(r.header.as_ref()),
            prev_kv: r.prev_kv.take().map(KeyValue::from),
        }
    }
}

/// What a delete did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteResponse {
    header: ResponseHeader,
    deleted: i64,
    prev_kvs: Vec<KeyValue>,
}

impl DeleteResponse {
    /// Who answered; the revision is the delete's own if it deleted anything.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// How many keys were deleted.
    pub fn deleted(&self) -> i64 {
        self.deleted
    }

    /// The deleted key-values, when asked for with `prev_kv`.
    pub fn prev_kvs(&self) -> &[KeyValue] {
        &self.prev_kvs
    }
}

impl From<rpc::DeleteRangeResponse> for DeleteResponse {
    fn from(mut r: rpc::DeleteRangeResponse) -> Self {
        DeleteResponse {
            header: header_of(r.header.as_ref()),
            deleted: r.deleted,
            prev_kvs: key_values(r.take_prev_kvs()),
        }
    }
}

/// What a compaction answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactResponse {
    header: ResponseHeader,
}

impl CompactResponse {
    /// Who answered.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }
}
