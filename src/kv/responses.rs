//! What the KV calls answer.

use crate::proto::rpc;
use crate::types::{header_of, key_values, KeyValue, ResponseHeader};

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

impl From<rpc::CompactionResponse> for CompactResponse {
    fn from(r: rpc::CompactionResponse) -> Self {
        CompactResponse {
            header: header_of(r.header.as_ref()),
        }
    }
}
