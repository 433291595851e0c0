//! Fence keys: keys that no other write anywhere has, whose absence a write of unknown
//! outcome requires, so that writing the fence afterwards decides that write for good.
//!
//! A write that may be applied late (a follower forwarded it to a leader that went away)
//! carries `Compare::create_revision(fence) == 0`. To settle it, put the fence if it is
//! absent: from then on no copy of the write can be applied, however late it arrives,
//! and what the store holds says whether one was applied before.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::kv::{Compare, Kv, PutOptions, Txn, TxnOp};

/// Where the recipes' fences go unless a caller says otherwise: outside every lock and
/// election prefix a user would choose.
pub(super) const PREFIX: &[u8] = b"__etcd-blocking/fence/";

/// A fence key under `prefix` that no other fence anywhere has: 128 random bits for the
/// process, then a count of the fences it made.
pub(super) fn unique(prefix: &[u8]) -> Vec<u8> {
    static PROCESS: OnceLock<u128> = OnceLock::new();
    static MADE: AtomicU64 = AtomicU64::new(0);
    let process = *PROCESS.get_or_init(|| {
        let random = |salt: u64| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(salt);
            h.write_u32(std::process::id());
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.finish()
        };
        (u128::from(random(1)) << 64) | u128::from(random(2))
    });
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{process:032x}-{n:x}").as_bytes());
    key
}

/// Puts `fence` with `value` (and `options`) if it is absent: from then on no write that
/// requires its absence can be applied, however late it arrives. `None` if this put went
/// in; else the value the fence already had (put by the write it guards, or by an earlier
/// seal). The seal only puts what is absent, so it is resent, `pause` apart, while its own
/// outcome is unknown or no member can take it, until `deadline`; then its last error.
/// The one settling step of the recipes: the STM, the lock and election queue, and
/// `txn_settled` all call it.
pub(super) fn seal(
    kv: &Kv,
    fence: &[u8],
    value: &[u8],
    options: PutOptions,
    pause: Duration,
    deadline: Instant,
) -> Result<Option<Vec<u8>>> {
    let sealing = Txn::new()
        .when([Compare::create_revision(fence.to_vec()).eq(0)])
        .and_then([TxnOp::put_with(fence.to_vec(), value.to_vec(), options)])
        .or_else([TxnOp::get(fence.to_vec())]);
    loop {
        match kv.txn(sealing.clone()) {
            Ok(response) if response.succeeded() => return Ok(None),
            Ok(response) => {
                let found = response
                    .responses()
                    .first()
                    .and_then(|r| r.as_get())
                    .and_then(|g| g.first())
                    .map(|kv| kv.value().to_vec());
                return Ok(Some(found.unwrap_or_default()));
            }
            Err(e)
                if (e.is_write_outcome_unknown()
                    || e.is_unavailable()
                    || e.is_deadline_exceeded())
                    && Instant::now() < deadline =>
            {
                log::debug!(
                    "etcd fence {} not sealed yet, trying again: {e}",
                    String::from_utf8_lossy(fence)
                );
                crate::park::park_until(crate::time::deadline(pause).min(deadline));
            }
            Err(e) => return Err(e),
        }
    }
}
