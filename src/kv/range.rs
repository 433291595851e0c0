//! Key ranges: how a key plus an option becomes etcd's `[key, range_end)` pair.

/// Which keys an operation covers, besides its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum KeyRange {
    /// The key alone.
    #[default]
    Single,
    /// Every key that starts with the key.
    Prefix,
    /// Every key greater than or equal to the key.
    FromKey,
    /// Every key in `[key, end)`.
    End(Vec<u8>),
}

/// etcd's marker for "no upper bound" (as a range end) and "the smallest key" (as a key).
const ZERO: u8 = 0;

impl KeyRange {
    /// The `(key, range_end)` pair etcd expects.
    ///
    /// An empty key with [`KeyRange::Prefix`] or [`KeyRange::FromKey`] means every key, which
    /// etcd spells as `("\0", "\0")`.
    pub(crate) fn bounds(&self, key: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
        match self {
            KeyRange::Single => (key, Vec::new()),
            KeyRange::End(end) => (key, end.clone()),
            KeyRange::Prefix | KeyRange::FromKey if key.is_empty() => (vec![ZERO], vec![ZERO]),
            KeyRange::Prefix => {
                let end = prefix_end(&key);
                (key, end)
            }
            KeyRange::FromKey => (key, vec![ZERO]),
        }
    }
}

/// The setters that make an operation cover a range of keys instead of its key alone:
/// `prefix`, `from_key` and `range_end`, for a type with a `range: KeyRange` field. The
/// first argument says what the operation does to the keys ("Gets", "Compares", ...).
macro_rules! range_setters {
    ($ty:ty, $verb:literal) => {
        impl $ty {
            #[doc = concat!($verb, " every key that starts with the key (with the empty key: every key).")]
            pub fn prefix(mut self) -> Self {
                self.range = $crate::kv::range::KeyRange::Prefix;
                self
            }

            #[doc = concat!($verb, " every key greater than or equal to the key (with the empty key: every key).")]
            pub fn from_key(mut self) -> Self {
                self.range = $crate::kv::range::KeyRange::FromKey;
                self
            }

            #[doc = concat!($verb, " every key in `[key, end)`.")]
            pub fn range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
                self.range = $crate::kv::range::KeyRange::End(end.into());
                self
            }
        }
    };
}
pub(crate) use range_setters;

/// The smallest key greater than every key that starts with `prefix`: the prefix with its
/// last byte below 0xff incremented and what follows dropped. A prefix of only 0xff bytes (or
/// none) has no such key, and gets etcd's "no upper bound", `"\0"`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&b| b < 0xff) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            end
        }
        None => vec![ZERO],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a"), b"b");
        assert_eq!(prefix_end(&[0x00]), [0x01]);
    }

    #[test]
    fn prefix_end_drops_trailing_0xff_bytes() {
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
        assert_eq!(prefix_end(&[b'a', 0xfe, 0xff, 0xff]), [b'a', 0xff]);
        assert_eq!(prefix_end(&[0x01, 0xff]), [0x02]);
    }

    #[test]
    fn prefix_end_of_only_0xff_or_nothing_is_unbounded() {
        assert_eq!(prefix_end(&[0xff]), [0]);
        assert_eq!(prefix_end(&[0xff, 0xff, 0xff]), [0]);
        assert_eq!(prefix_end(b""), [0]);
    }

    #[test]
    fn prefix_of_the_empty_key_is_every_key() {
        assert_eq!(KeyRange::Prefix.bounds(Vec::new()), (vec![0], vec![0]));
        assert_eq!(KeyRange::FromKey.bounds(Vec::new()), (vec![0], vec![0]));
    }

    #[test]
    fn bounds_of_each_range() {
        assert_eq!(
            KeyRange::Single.bounds(b"k".to_vec()),
            (b"k".to_vec(), vec![])
        );
        assert_eq!(
            KeyRange::Prefix.bounds(b"k".to_vec()),
            (b"k".to_vec(), b"l".to_vec())
        );
        assert_eq!(
            KeyRange::FromKey.bounds(b"k".to_vec()),
            (b"k".to_vec(), vec![0])
        );
        assert_eq!(
            KeyRange::End(b"m".to_vec()).bounds(b"k".to_vec()),
            (b"k".to_vec(), b"m".to_vec())
        );
    }
}
