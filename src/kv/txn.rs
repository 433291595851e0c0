//! Transactions: comparisons, the operations to run on success or failure, and the answer.

use super::compare::Compare;
use super::options::{DeleteOptions, GetOptions, PutOptions};
use super::responses::{DeleteResponse, GetResponse, PutResponse};
use crate::error::Result;
use crate::proto::rpc;
use crate::types::{header_of, ResponseHeader};

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

    /// The compares, the success operations and the failure operations.
    pub(crate) fn parts(&self) -> (&[Compare], &[TxnOp], &[TxnOp]) {
        (&self.compares, &self.success, &self.failure)
    }

    /// True when no operation on either branch writes: such a transaction may be retried.
    pub(crate) fn is_read_only(&self) -> bool {
        self.success.iter().chain(&self.failure).all(|op| match op {
            TxnOp::Get(..) => true,
            TxnOp::Txn(txn) => txn.is_read_only(),
            TxnOp::Put(..) | TxnOp::Delete(..) => false,
        })
    }

    /// Whether etcd serves the transaction serializably, from any member's local state:
    /// its rule, every operation of both branches a serializable get (a nested
    /// transaction is not, whatever it holds). A transaction of comparisons alone, which
    /// etcd also serves so, is not counted here: it keeps going to the leader first.
    pub(crate) fn is_serializable(&self) -> bool {
        let mut ops = self.success.iter().chain(&self.failure).peekable();
        ops.peek().is_some()
            && ops.all(|op| matches!(op, TxnOp::Get(_, options) if options.is_serializable()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn serializable(key: &str) -> TxnOp {
        TxnOp::get_with(key, GetOptions::new().serializable())
    }

    #[test]
    fn only_serializable_gets_make_a_serializable_transaction() {
        let all = Txn::new()
            .and_then([serializable("a"), serializable("b")])
            .or_else([serializable("c")]);
        assert!(all.is_serializable() && all.is_read_only());
        let linearizable_on_failure = Txn::new()
            .and_then([serializable("a")])
            .or_else([TxnOp::get("c")]);
        assert!(!linearizable_on_failure.is_serializable());
        assert!(linearizable_on_failure.is_read_only());
        let nested = Txn::new().and_then([TxnOp::txn(Txn::new().and_then([serializable("a")]))]);
        assert!(!nested.is_serializable());
        let writes = Txn::new().and_then([serializable("a"), TxnOp::put("a", "v")]);
        assert!(!writes.is_serializable() && !writes.is_read_only());
        assert!(
            !Txn::new().is_serializable(),
            "comparisons alone go to the leader"
        );
    }
}
