//! Transactions: comparisons, the operations to run on success or failure, and the answer.

use crate::error::Result;
use crate::kv::{header_of, DeleteResponse, GetResponse, PutResponse};
use crate::options::{DeleteOptions, GetOptions, PutOptions};
use crate::proto::rpc;
use crate::range::KeyRange;
use crate::types::ResponseHeader;

/// A transaction: if every comparison holds, the success operations run, else the failure
/// operations, atomically and at one revision.
///
/// ```no_run
/// # use etcd_blocking::{Client, Compare, Txn, TxnOp};
/// # let client = Client::connect(["127.0.0.1:2379"])?;
/// let created = client
///     .kv()
///     .txn(Txn::new().when([Compare::version("k").eq(0)]).and_then([TxnOp::put("k", "v")]))?
///     .succeeded();
/// # Ok::<(), etcd_blocking::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    compares: Vec<Compare>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction: no comparison (so it succeeds) and no operation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds comparisons; all must hold for the transaction to succeed.
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compares.extend(compares);
        self
    }

    /// Adds operations to run when every comparison holds.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.success.extend(ops);
        self
    }

    /// Adds operations to run when a comparison fails.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.failure.extend(ops);
        self
    }

    /// True when no operation on either branch writes: such a transaction may be retried.
    pub(crate) fn is_read_only(&self) -> bool {
        self.success.iter().chain(&self.failure).all(|op| match op {
            TxnOp::Get(..) => true,
            TxnOp::Txn(txn) => txn.is_read_only(),
            TxnOp::Put(..) | TxnOp::Delete(..) => false,
        })
    }

    /// The request etcd receives.
    pub(crate) fn request(&self) -> Result<rpc::TxnRequest> {
        let ops = |ops: &[TxnOp]| -> Result<Vec<rpc::RequestOp>> {
            ops.iter().map(TxnOp::request).collect()
        };
        Ok(rpc::TxnRequest {
            compare: self.compares.iter().map(Compare::request).collect(),
            success: ops(&self.success)?.into(),
            failure: ops(&self.failure)?.into(),
            ..Default::default()
        })
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// A get.
    Get(Vec<u8>, GetOptions),
    /// A put.
    Put(Vec<u8>, Vec<u8>, PutOptions),
    /// A delete.
    Delete(Vec<u8>, DeleteOptions),
    /// A nested transaction.
    Txn(Txn),
}

impl TxnOp {
    /// Gets one key.
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Get(key.into(), GetOptions::new())
    }

    /// Gets keys as the options say.
    pub fn get_with(key: impl Into<Vec<u8>>, options: GetOptions) -> Self {
        TxnOp::Get(key.into(), options)
    }

    /// Puts a key.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        TxnOp::Put(key.into(), value.into(), PutOptions::new())
    }

    /// Puts a key as the options say.
    pub fn put_with(
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        options: PutOptions,
    ) -> Self {
        TxnOp::Put(key.into(), value.into(), options)
    }

    /// Deletes one key.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Delete(key.into(), DeleteOptions::new())
    }

    /// Deletes keys as the options say.
    pub fn delete_with(key: impl Into<Vec<u8>>, options: DeleteOptions) -> Self {
        TxnOp::Delete(key.into(), options)
    }

    /// Runs a nested transaction (etcd 3.3 and later).
    pub fn txn(txn: Txn) -> Self {
        TxnOp::Txn(txn)
    }

    fn request(&self) -> Result<rpc::RequestOp> {
        let mut op = rpc::RequestOp::new();
        match self {
            TxnOp::Get(key, options) => op.set_request_range(options.request(key.clone())?),
            TxnOp::Put(key, value, options) => {
                op.set_request_put(options.request(key.clone(), value.clone())?)
            }
            TxnOp::Delete(key, options) => {
                op.set_request_delete_range(options.request(key.clone()))
            }
            TxnOp::Txn(txn) => op.set_request_txn(txn.request()?),
        }
        Ok(op)
    }
}

/// A comparison of a transaction: a key's version, create or mod revision, value or lease
/// against a given one. Start with [`Compare::version`], [`Compare::create_revision`],
/// [`Compare::mod_revision`], [`Compare::lease`] or [`Compare::value`], then say how to
/// compare; [`Compare::prefix`] and friends make it hold for every key of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    key: Vec<u8>,
    range: KeyRange,
    result: rpc::Compare_CompareResult,
    target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
    Lease(i64),
    Value(Vec<u8>),
}

/// A number of a key to compare: its version, create revision, mod revision or lease.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a comparison needs a relation: eq, ne, lt or gt"]
pub struct CompareNumber {
    key: Vec<u8>,
    target: Number,
}

/// Which number of a key a [`CompareNumber`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    Version,
    CreateRevision,
    ModRevision,
    Lease,
}

/// A key's value, to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a comparison needs a relation: eq, ne, lt or gt"]
pub struct CompareValue {
    key: Vec<u8>,
}

impl Compare {
    /// The key's version: 0 if the key does not exist.
    pub fn version(key: impl Into<Vec<u8>>) -> CompareNumber {
        CompareNumber {
            key: key.into(),
            target: Number::Version,
        }
    }

    /// The revision of the key's creation: 0 if the key does not exist.
    pub fn create_revision(key: impl Into<Vec<u8>>) -> CompareNumber {
        CompareNumber {
            key: key.into(),
            target: Number::CreateRevision,
        }
    }

    /// The revision of the key's last modification: 0 if the key does not exist.
    pub fn mod_revision(key: impl Into<Vec<u8>>) -> CompareNumber {
        CompareNumber {
            key: key.into(),
            target: Number::ModRevision,
        }
    }

    /// The key's lease: 0 if it has none (etcd 3.3 and later).
    pub fn lease(key: impl Into<Vec<u8>>) -> CompareNumber {
        CompareNumber {
            key: key.into(),
            target: Number::Lease,
        }
    }

    /// The key's value.
    pub fn value(key: impl Into<Vec<u8>>) -> CompareValue {
        CompareValue { key: key.into() }
    }

    /// Compares every key that starts with the key instead (etcd 3.3 and later).
    pub fn prefix(mut self) -> Self {
        self.range = KeyRange::Prefix;
        self
    }

    /// Compares every key greater than or equal to the key instead.
    pub fn from_key(mut self) -> Self {
        self.range = KeyRange::FromKey;
        self
    }

    /// Compares every key in `[key, end)` instead.
    pub fn range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.range = KeyRange::End(end.into());
        self
    }

    fn new(key: Vec<u8>, result: rpc::Compare_CompareResult, target: Target) -> Self {
        Compare {
            key,
            range: KeyRange::Single,
            result,
            target,
        }
    }

    fn request(&self) -> rpc::Compare {
        use rpc::Compare_CompareTarget as T;
        let (key, range_end) = self.range.bounds(self.key.clone());
        let mut c = rpc::Compare {
            result: self.result,
            key,
            range_end,
            ..Default::default()
        };
        match &self.target {
            Target::Version(v) => {
                c.target = T::VERSION;
                c.set_version(*v);
            }
            Target::CreateRevision(v) => {
                c.target = T::CREATE;
                c.set_create_revision(*v);
            }
            Target::ModRevision(v) => {
                c.target = T::MOD;
                c.set_mod_revision(*v);
            }
            Target::Lease(v) => {
                c.target = T::LEASE;
                c.set_lease(*v);
            }
            Target::Value(v) => {
                c.target = T::VALUE;
                c.set_value(v.clone());
            }
        }
        c
    }
}

macro_rules! relations {
    ($ty:ty, $arg:ty) => {
        impl $ty {
            /// Holds when the key's number or value equals `other`.
            pub fn eq(self, other: $arg) -> Compare {
                self.with(rpc::Compare_CompareResult::EQUAL, other)
            }

            /// Holds when it differs from `other`.
            pub fn ne(self, other: $arg) -> Compare {
                self.with(rpc::Compare_CompareResult::NOT_EQUAL, other)
            }

            /// Holds when it is less than `other` (values compare as bytes).
            pub fn lt(self, other: $arg) -> Compare {
                self.with(rpc::Compare_CompareResult::LESS, other)
            }

            /// Holds when it is greater than `other` (values compare as bytes).
            pub fn gt(self, other: $arg) -> Compare {
                self.with(rpc::Compare_CompareResult::GREATER, other)
            }
        }
    };
}

relations!(CompareNumber, i64);
relations!(CompareValue, impl Into<Vec<u8>>);

impl CompareNumber {
    fn with(self, result: rpc::Compare_CompareResult, other: i64) -> Compare {
        let target = match self.target {
            Number::Version => Target::Version(other),
            Number::CreateRevision => Target::CreateRevision(other),
            Number::ModRevision => Target::ModRevision(other),
            Number::Lease => Target::Lease(other),
        };
        Compare::new(self.key, result, target)
    }
}

impl CompareValue {
    fn with(self, result: rpc::Compare_CompareResult, other: impl Into<Vec<u8>>) -> Compare {
        Compare::new(self.key, result, Target::Value(other.into()))
    }
}

/// What a transaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnResponse {
    header: ResponseHeader,
    succeeded: bool,
    responses: Vec<TxnOpResponse>,
}

impl TxnResponse {
    /// Who answered; the revision is the transaction's own if it wrote anything.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// True if every comparison held, so the success operations ran.
    pub fn succeeded(&self) -> bool {
        self.succeeded
    }

    /// The answers of the operations that ran, in their order.
    pub fn responses(&self) -> &[TxnOpResponse] {
        &self.responses
    }

    /// The answers, to keep.
    pub fn into_responses(self) -> Vec<TxnOpResponse> {
        self.responses
    }
}

impl From<rpc::TxnResponse> for TxnResponse {
    fn from(mut r: rpc::TxnResponse) -> Self {
        TxnResponse {
            header: header_of(r.header.as_ref()),
            succeeded: r.succeeded,
            responses: r
                .take_responses()
                .into_iter()
                .filter_map(TxnOpResponse::from_proto)
                .collect(),
        }
    }
}

/// The answer of one operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOpResponse {
    /// A get's.
    Get(GetResponse),
    /// A put's.
    Put(PutResponse),
    /// A delete's.
    Delete(DeleteResponse),
    /// A nested transaction's.
    Txn(TxnResponse),
}

impl TxnOpResponse {
    fn from_proto(mut r: rpc::ResponseOp) -> Option<Self> {
        use rpc::ResponseOp_oneof_response as R;
        Some(match r.response.take()? {
            R::response_range(g) => TxnOpResponse::Get(g.into()),
            R::response_put(p) => TxnOpResponse::Put(p.into()),
            R::response_delete_range(d) => TxnOpResponse::Delete(d.into()),
            R::response_txn(t) => TxnOpResponse::Txn(t.into()),
        })
    }

    /// The get's answer, if this was a get.
    pub fn as_get(&self) -> Option<&GetResponse> {
        match self {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        }
    }

    /// The put's answer, if this was a put.
    pub fn as_put(&self) -> Option<&PutResponse> {
        match self {
            TxnOpResponse::Put(p) => Some(p),
            _ => None,
        }
    }

    /// The delete's answer, if this was a delete.
    pub fn as_delete(&self) -> Option<&DeleteResponse> {
        match self {
            TxnOpResponse::Delete(d) => Some(d),
            _ => None,
        }
    }

    /// The nested transaction's answer, if this was one.
    pub fn as_txn(&self) -> Option<&TxnResponse> {
        match self {
            TxnOpResponse::Txn(t) => Some(t),
            _ => None,
        }
    }
}
