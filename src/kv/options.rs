//! Options of the KV calls: plain `Clone + Default` values that also fit inside a [`Txn`].
//!
//! [`Txn`]: crate::Txn

use super::range::{range_setters, KeyRange};
use crate::error::{Error, Result};
use crate::proto::rpc;

/// The order of a get's results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SortOrder {
    /// The server's order: by key, ascending.
    #[default]
    None,
    /// Lowest target value first.
    Ascend,
    /// Highest target value first.
    Descend,
}

/// What a get's results are sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The key's version.
    Version,
    /// The key's create revision.
    CreateRevision,
    /// The key's mod revision.
    ModRevision,
    /// The value.
    Value,
}

/// Options of [`Kv::get_with`](crate::Kv::get_with): which keys, at which revision, how
/// many, in which order, with what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    range: KeyRange,
    limit: i64,
    revision: i64,
    sort_order: SortOrder,
    sort_target: SortTarget,
    serializable: bool,
    keys_only: bool,
    count_only: bool,
    min_mod_revision: i64,
    max_mod_revision: i64,
    min_create_revision: i64,
    max_create_revision: i64,
}

impl GetOptions {
    /// Options that get the key alone, linearizably, at the newest revision.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most this many keys (0: no limit); [`GetResponse::more`] tells if there were more.
    /// A negative limit is refused when the get is made, with [`Error::InvalidArgument`].
    ///
    /// [`GetResponse::more`]: crate::GetResponse::more
    pub fn limit(mut self, limit: i64) -> Self {
        self.limit = limit;
        self
    }

    /// Reads the store as it was at this revision (0: the newest). A negative revision is
    /// refused when the get is made, with [`Error::InvalidArgument`]; a compacted one fails
    /// with [`ServerCode::Compacted`](crate::ServerCode::Compacted), a future one with
    /// [`ServerCode::FutureRevision`](crate::ServerCode::FutureRevision).
    pub fn revision(mut self, revision: i64) -> Self {
        self.revision = revision;
        self
    }

    /// Sorts the results.
    pub fn sort(mut self, target: SortTarget, order: SortOrder) -> Self {
        self.sort_target = target;
        self.sort_order = order;
        self
    }

    /// Serves the read from the member's local state, without a round of consensus: faster,
    /// but possibly stale. Never older than this client has seen: an answer at a revision
    /// below the highest one the client has had from any call is refused, and the read
    /// is sent to another member.
    pub fn serializable(mut self) -> Self {
        self.serializable = true;
        self
    }

    /// Whether the read is serializable.
    pub(crate) fn is_serializable(&self) -> bool {
        self.serializable
    }

    /// Returns keys without their values.
    pub fn keys_only(mut self) -> Self {
        self.keys_only = true;
        self
    }

    /// Returns only how many keys match.
    pub fn count_only(mut self) -> Self {
        self.count_only = true;
        self
    }

    /// Only keys last modified at or after this revision.
    pub fn min_mod_revision(mut self, revision: i64) -> Self {
        self.min_mod_revision = revision;
        self
    }

    /// Only keys last modified at or before this revision.
    pub fn max_mod_revision(mut self, revision: i64) -> Self {
        self.max_mod_revision = revision;
        self
    }

    /// Only keys created at or after this revision.
    pub fn min_create_revision(mut self, revision: i64) -> Self {
        self.min_create_revision = revision;
        self
    }

    /// Only keys created at or before this revision.
    pub fn max_create_revision(mut self, revision: i64) -> Self {
        self.max_create_revision = revision;
        self
    }

    /// The request etcd receives.
    pub(crate) fn request(&self, key: Vec<u8>) -> Result<rpc::RangeRequest> {
        for (argument, value) in [
            ("limit", self.limit),
            ("revision", self.revision),
            ("min mod revision", self.min_mod_revision),
            ("max mod revision", self.max_mod_revision),
            ("min create revision", self.min_create_revision),
            ("max create revision", self.max_create_revision),
        ] {
            not_negative(argument, value)?;
        }
        let (key, range_end) = self.range.bounds(key);
        Ok(rpc::RangeRequest {
            key,
            range_end,
            limit: self.limit,
            revision: self.revision,
            sort_order: match self.sort_order {
                SortOrder::None => rpc::RangeRequest_SortOrder::NONE,
                SortOrder::Ascend => rpc::RangeRequest_SortOrder::ASCEND,
                SortOrder::Descend => rpc::RangeRequest_SortOrder::DESCEND,
            },
            sort_target: match self.sort_target {
                SortTarget::Key => rpc::RangeRequest_SortTarget::KEY,
                SortTarget::Version => rpc::RangeRequest_SortTarget::VERSION,
                SortTarget::CreateRevision => rpc::RangeRequest_SortTarget::CREATE,
                SortTarget::ModRevision => rpc::RangeRequest_SortTarget::MOD,
                SortTarget::Value => rpc::RangeRequest_SortTarget::VALUE,
            },
            serializable: self.serializable,
            keys_only: self.keys_only,
            count_only: self.count_only,
            min_mod_revision: self.min_mod_revision,
            max_mod_revision: self.max_mod_revision,
            min_create_revision: self.min_create_revision,
            max_create_revision: self.max_create_revision,
            ..Default::default()
        })
    }
}

range_setters!(GetOptions, "Gets");

/// Options of [`Kv::put_with`](crate::Kv::put_with).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PutOptions {
    lease: i64,
    prev_kv: bool,
    ignore_value: bool,
    ignore_lease: bool,
}

impl PutOptions {
    /// Options of a plain put.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches the key to this lease (0: none); the key goes when the lease does. A
    /// negative ID is refused when the put is made, with [`Error::InvalidArgument`].
    pub fn lease(mut self, lease: i64) -> Self {
        self.lease = lease;
        self
    }

    /// Returns the key-value the put replaced.
    pub fn prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// Keeps the key's current value (the given value must be empty); fails on a missing key.
    pub fn ignore_value(mut self) -> Self {
        self.ignore_value = true;
        self
    }

    /// Keeps the key's current lease; fails on a missing key.
    pub fn ignore_lease(mut self) -> Self {
        self.ignore_lease = true;
        self
    }

    /// The request etcd receives.
    pub(crate) fn request(&self, key: Vec<u8>, value: Vec<u8>) -> Result<rpc::PutRequest> {
        not_negative("lease", self.lease)?;
        Ok(rpc::PutRequest {
            key,
            value,
            lease: self.lease,
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
            ..Default::default()
        })
    }
}

/// Options of [`Kv::delete_with`](crate::Kv::delete_with).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    range: KeyRange,
    prev_kv: bool,
}

impl DeleteOptions {
    /// Options that delete the key alone.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the deleted key-values.
    pub fn prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// The request etcd receives.
    pub(crate) fn request(&self, key: Vec<u8>) -> rpc::DeleteRangeRequest {
        let (key, range_end) = self.range.bounds(key);
        rpc::DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.prev_kv,
            ..Default::default()
        }
    }
}

range_setters!(DeleteOptions, "Deletes");

/// Options of [`Kv::compact_with`](crate::Kv::compact_with).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CompactOptions {
    physical: bool,
}

impl CompactOptions {
    /// Options of a compaction that returns once it is decided.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits until the compaction is applied to the member's backend, so the compacted
    /// revisions are gone from its disk when the call returns.
    pub fn physical(mut self) -> Self {
        self.physical = true;
        self
    }

    /// The request etcd receives.
    pub(crate) fn request(&self, revision: i64) -> Result<rpc::CompactionRequest> {
        if revision <= 0 {
            return Err(Error::InvalidArgument {
                argument: "compaction revision",
                reason: format!("must be a revision of the store (1 or more), not {revision}"),
            });
        }
        Ok(rpc::CompactionRequest {
            revision,
            physical: self.physical,
            ..Default::default()
        })
    }
}

/// Refuses a negative count or revision, which etcd would read as "none".
fn not_negative(argument: &'static str, value: i64) -> Result<()> {
    if value < 0 {
        return Err(Error::InvalidArgument {
            argument,
            reason: format!("must not be negative, got {value}"),
        });
    }
    Ok(())
}
