//! Namespaces ([`Client::namespaced`](crate::Client::namespaced)): a view of the keys under
//! a prefix, with the Go client's `namespace` semantics. Keys are prefixed on the way in
//! and stripped on the way out; a range end stays inside the prefix, and "every key" (the
//! range `[\0, \0)`) is every key under it. Nothing outside the prefix is read, written or
//! delivered.

use std::sync::Arc;

use super::range::prefix_end;
use crate::proto::{kv, rpc};

/// A key prefix every key of a view lives under; empty: no namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Namespace {
    prefix: Arc<[u8]>,
}

impl Namespace {
    /// The namespace under `prefix`, inside this one.
    pub(crate) fn join(&self, prefix: &[u8]) -> Namespace {
        let mut joined = self.prefix.to_vec();
        joined.extend_from_slice(prefix);
        Namespace {
            prefix: joined.into(),
        }
    }

    /// The prefix.
    pub(crate) fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// How many bytes a key delivered from the server starts with that the user does not
    /// see.
    pub(crate) fn len(&self) -> usize {
        self.prefix.len()
    }

    fn is_empty(&self) -> bool {
        self.prefix.is_empty()
    }

    /// The key as the server knows it.
    pub(crate) fn key(&self, key: &mut Vec<u8>) {
        if !self.is_empty() {
            key.splice(0..0, self.prefix.iter().copied());
        }
    }

    /// A key and a range end as the server knows them: both prefixed, except that an end
    /// of `\0` (every key from `key` on) becomes the end of the prefix, so that the range
    /// stays inside it. An empty end (one key) stays empty.
    pub(crate) fn range(&self, key: &mut Vec<u8>, end: &mut Vec<u8>) {
        if self.is_empty() {
            return;
        }
        self.key(key);
        if end.as_slice() == [0] {
            *end = prefix_end(&self.prefix);
        } else if !end.is_empty() {
            self.key(end);
        }
    }

    /// A key from the server as the user knows it. Every key the server sends a view is
    /// under its prefix; one that is not (never seen) is left whole.
    pub(crate) fn strip(&self, key: &mut Vec<u8>) {
        if !self.is_empty() && key.starts_with(&self.prefix) {
            key.drain(..self.prefix.len());
        }
    }

    fn strip_kv(&self, kv: &mut kv::KeyValue) {
        self.strip(&mut kv.key);
    }

    pub(crate) fn range_request(&self, r: &mut rpc::RangeRequest) {
        self.range(&mut r.key, &mut r.range_end);
    }

    pub(crate) fn put_request(&self, r: &mut rpc::PutRequest) {
        self.key(&mut r.key);
    }

    pub(crate) fn delete_request(&self, r: &mut rpc::DeleteRangeRequest) {
        self.range(&mut r.key, &mut r.range_end);
    }

    pub(crate) fn watch_request(&self, r: &mut rpc::WatchCreateRequest) {
        self.range(&mut r.key, &mut r.range_end);
    }

    /// A transaction's compares and operations, nested transactions included.
    pub(crate) fn txn_request(&self, r: &mut rpc::TxnRequest) {
        if self.is_empty() {
            return;
        }
        for compare in r.compare.iter_mut() {
            self.range(&mut compare.key, &mut compare.range_end);
        }
        for op in r.success.iter_mut().chain(r.failure.iter_mut()) {
            use rpc::RequestOp_oneof_request as Op;
            match op.request.as_mut() {
                Some(Op::request_range(r)) => self.range_request(r),
                Some(Op::request_put(r)) => self.put_request(r),
                Some(Op::request_delete_range(r)) => self.delete_request(r),
                Some(Op::request_txn(r)) => self.txn_request(r),
                None => {}
            }
        }
    }

    pub(crate) fn range_response(&self, r: &mut rpc::RangeResponse) {
        if self.is_empty() {
            return;
        }
        r.kvs.iter_mut().for_each(|kv| self.strip_kv(kv));
    }

    pub(crate) fn put_response(&self, r: &mut rpc::PutResponse) {
        if let Some(prev) = r.prev_kv.as_mut() {
            self.strip_kv(prev);
        }
    }

    pub(crate) fn delete_response(&self, r: &mut rpc::DeleteRangeResponse) {
        if self.is_empty() {
            return;
        }
        r.prev_kvs.iter_mut().for_each(|kv| self.strip_kv(kv));
    }

    /// A transaction's responses, nested ones included.
    pub(crate) fn txn_response(&self, r: &mut rpc::TxnResponse) {
        if self.is_empty() {
            return;
        }
        for op in r.responses.iter_mut() {
            use rpc::ResponseOp_oneof_response as Op;
            match op.response.as_mut() {
                Some(Op::response_range(r)) => self.range_response(r),
                Some(Op::response_put(r)) => self.put_response(r),
                Some(Op::response_delete_range(r)) => self.delete_response(r),
                Some(Op::response_txn(r)) => self.txn_response(r),
                None => {}
            }
        }
    }

    /// The keys attached to a lease that are inside the namespace, as the user knows
    /// them.
    pub(crate) fn lease_keys(&self, keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        if self.is_empty() {
            return keys;
        }
        keys.into_iter()
            .filter(|k| k.starts_with(&self.prefix))
            .map(|mut k| {
                self.strip(&mut k);
                k
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(prefix: &[u8]) -> Namespace {
        Namespace::default().join(prefix)
    }

    fn range(ns: &Namespace, key: &[u8], end: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (mut key, mut end) = (key.to_vec(), end.to_vec());
        ns.range(&mut key, &mut end);
        (key, end)
    }

    #[test]
    fn ranges_stay_inside_the_prefix() {
        let app = ns(b"app/");
        assert_eq!(range(&app, b"k", b""), (b"app/k".to_vec(), Vec::new()));
        assert_eq!(
            range(&app, b"a", b"b"),
            (b"app/a".to_vec(), b"app/b".to_vec())
        );
        // From a key on, and every key: up to the end of the prefix, not of the keyspace.
        assert_eq!(
            range(&app, b"k", b"\0"),
            (b"app/k".to_vec(), b"app0".to_vec())
        );
        assert_eq!(
            range(&app, b"\0", b"\0"),
            (b"app/\0".to_vec(), b"app0".to_vec())
        );
        // A prefix that ends in 0xff: its end carries over.
        let edge = ns(b"a\xff");
        assert_eq!(range(&edge, b"\0", b"\0").1, b"b".to_vec());
        let top = ns(b"\xff\xff");
        assert_eq!(range(&top, b"\0", b"\0").1, vec![0]);
        // No namespace: untouched.
        let none = Namespace::default();
        assert_eq!(range(&none, b"\0", b"\0"), (vec![0], vec![0]));
    }

    #[test]
    fn nested_namespaces_join_and_keys_strip() {
        let inner = ns(b"a/").join(b"b/");
        assert_eq!(inner.prefix(), b"a/b/");
        let mut key = b"a/b/k".to_vec();
        inner.strip(&mut key);
        assert_eq!(key, b"k");
        assert_eq!(
            inner.lease_keys(vec![b"a/b/x".to_vec(), b"other".to_vec()]),
            vec![b"x".to_vec()]
        );
    }

    #[test]
    fn transactions_are_prefixed_all_the_way_down() {
        let app = ns(b"app/");
        let nested = rpc::TxnRequest {
            success: vec![rpc::RequestOp {
                request: Some(rpc::RequestOp_oneof_request::request_put(rpc::PutRequest {
                    key: b"deep".to_vec(),
                    ..Default::default()
                })),
                ..Default::default()
            }]
            .into(),
            ..Default::default()
        };
        let mut txn = rpc::TxnRequest {
            compare: vec![rpc::Compare {
                key: b"c".to_vec(),
                range_end: vec![0],
                ..Default::default()
            }]
            .into(),
            failure: vec![rpc::RequestOp {
                request: Some(rpc::RequestOp_oneof_request::request_txn(nested)),
                ..Default::default()
            }]
            .into(),
            ..Default::default()
        };
        app.txn_request(&mut txn);
        assert_eq!(txn.compare[0].key, b"app/c");
        assert_eq!(txn.compare[0].range_end, b"app0");
        let Some(rpc::RequestOp_oneof_request::request_txn(inner)) = &txn.failure[0].request else {
            panic!("the nested txn");
        };
        let Some(rpc::RequestOp_oneof_request::request_put(put)) = &inner.success[0].request else {
            panic!("the nested put");
        };
        assert_eq!(put.key, b"app/deep");
    }
}
