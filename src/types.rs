//! Plain values that responses carry: the response header and key-value pairs.

use crate::error::{Error, Result};
use crate::proto::{kv, rpc};

/// The header etcd puts on every response: who answered, and at which point of the history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResponseHeader {
    cluster_id: u64,
    member_id: u64,
    revision: i64,
    raft_term: u64,
}

impl ResponseHeader {
    /// The ID of the cluster that answered.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The ID of the member that answered.
    pub fn member_id(&self) -> u64 {
        self.member_id
    }

    /// The store's revision when the request was applied (0 for calls that do not touch the
    /// key-value store).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The raft term when the request was applied.
    pub fn raft_term(&self) -> u64 {
        self.raft_term
    }
}

impl From<&rpc::ResponseHeader> for ResponseHeader {
    fn from(h: &rpc::ResponseHeader) -> Self {
        ResponseHeader {
            cluster_id: h.cluster_id,
            member_id: h.member_id,
            revision: h.revision,
            raft_term: h.raft_term,
        }
    }
}

/// A key with its value and metadata, as stored at some revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyValue {
    key: Vec<u8>,
    value: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

impl KeyValue {
    /// The same key-value without its value (a keys-only copy).
    pub(crate) fn without_value(mut self) -> KeyValue {
        self.value = Vec::new();
        self
    }

    /// Cuts the first `len` bytes (a namespace's prefix) off the key.
    pub(crate) fn strip_key(&mut self, len: usize) {
        self.key.drain(..len.min(self.key.len()));
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The key as UTF-8 text, or [`Error::NotUtf8`] if it is not.
    pub fn key_str(&self) -> Result<&str> {
        utf8("key", &self.key)
    }

    /// The value (empty for keys-only reads).
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The value as UTF-8 text, or [`Error::NotUtf8`] if it is not.
    pub fn value_str(&self) -> Result<&str> {
        utf8("value", &self.value)
    }

    /// The revision of the key's last creation.
    pub fn create_revision(&self) -> i64 {
        self.create_revision
    }

    /// The revision of the key's last modification.
    pub fn mod_revision(&self) -> i64 {
        self.mod_revision
    }

    /// How many times the key was written since its creation (1 right after it).
    pub fn version(&self) -> i64 {
        self.version
    }

    /// The ID of the lease the key is attached to, or 0.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// The key and the value, without copying.
    pub fn into_key_value(self) -> (Vec<u8>, Vec<u8>) {
        (self.key, self.value)
    }
}

impl From<kv::KeyValue> for KeyValue {
    fn from(mut kv: kv::KeyValue) -> Self {
        KeyValue {
            key: kv.take_key(),
            value: kv.take_value(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// Turns a repeated protobuf field of key-values into ours, moving the bytes.
pub(crate) fn key_values(kvs: protobuf::RepeatedField<kv::KeyValue>) -> Vec<KeyValue> {
    kvs.into_iter().map(KeyValue::from).collect()
}

/// The header of a response, or zeros where etcd sent none (inside a transaction).
pub(crate) fn header_of(header: Option<&rpc::ResponseHeader>) -> ResponseHeader {
    header.map(ResponseHeader::from).unwrap_or_default()
}

fn utf8<'a>(field: &'static str, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|source| Error::NotUtf8 { field, source })
}
