//! The comparisons of a transaction.

use super::range::{range_setters, KeyRange};
use crate::proto::rpc;

/// A comparison of a transaction: a key's version, create or mod revision, value or lease
/// against a given one. Start with [`Compare::version`], [`Compare::create_revision`],
/// [`Compare::mod_revision`], [`Compare::lease`] or [`Compare::value`], then say how to
/// compare; `prefix`, `from_key` and `range_end` make it hold for every key of a range
/// (etcd 3.3 and later), before or after the relation:
/// `Compare::version("app/").prefix().gt(0)` and `Compare::version("app/").gt(0).prefix()`
/// are the same comparison.
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
    range: KeyRange,
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
    range: KeyRange,
}

impl Compare {
    /// The key's version: 0 if the key does not exist.
    pub fn version(key: impl Into<Vec<u8>>) -> CompareNumber {
        CompareNumber {
            key: key.into(),
            range: KeyRange::Single,
            target: Number::Version,
        }
    }

    /// The revision of the key's creation: 0 if the key does not exist.
    pub fn create_revision(key: impl Into<Vec<u8>>) -> CompareNumber {
        CompareNumber {
            key: key.into(),
            range: KeyRange::Single,
            target: Number::CreateRevision,
        }
    }

    /// The revision of the key's last modification: 0 if the key does not exist.
    pub fn mod_revision(key: impl Into<Vec<u8>>) -> CompareNumber {
        CompareNumber {
            key: key.into(),
            range: KeyRange::Single,
            target: Number::ModRevision,
        }
    }

    /// The key's lease: 0 if it has none (etcd 3.3 and later).
    pub fn lease(key: impl Into<Vec<u8>>) -> CompareNumber {
        CompareNumber {
            key: key.into(),
            range: KeyRange::Single,
            target: Number::Lease,
        }
    }

    /// The key's value.
    pub fn value(key: impl Into<Vec<u8>>) -> CompareValue {
        CompareValue {
            key: key.into(),
            range: KeyRange::Single,
        }
    }

    fn new(
        key: Vec<u8>,
        range: KeyRange,
        result: rpc::Compare_CompareResult,
        target: Target,
    ) -> Self {
        Compare {
            key,
            range,
            result,
            target,
        }
    }

    pub(super) fn request(&self) -> rpc::Compare {
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
        Compare::new(self.key, self.range, result, target)
    }
}

impl CompareValue {
    fn with(self, result: rpc::Compare_CompareResult, other: impl Into<Vec<u8>>) -> Compare {
        Compare::new(self.key, self.range, result, Target::Value(other.into()))
    }
}

range_setters!(Compare, "Compares");
range_setters!(CompareNumber, "Compares");
range_setters!(CompareValue, "Compares");
