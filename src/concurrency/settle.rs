//! A transaction whose unknown outcome is settled before the call returns: resent only
//! once it is known that the first try was not, and never will be, applied.

use std::time::{Duration, Instant};

use super::fence;
use crate::error::{Error, Result};
use crate::kv::{Compare, Kv, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse};

/// The fence's value when the transaction's success branch ran.
const THEN: &[u8] = b"then";
/// The fence's value when its failure branch ran.
const ELSE: &[u8] = b"else";
/// The fence's value when the settling put it: the try it guards can never be applied.
const SEALED: &[u8] = b"sealed";

/// The pause between two tries of sealing, or of sending again.
const PAUSE: Duration = Duration::from_millis(10);

/// What a settled transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    succeeded: bool,
    response: Option<TxnResponse>,
    tries: u32,
}

impl Settled {
    /// Whether the success branch ran (every comparison held), or the failure branch.
    pub fn succeeded(&self) -> bool {
        self.succeeded
    }

    /// etcd's answer, when one came back. `None` when a try was applied but its answer
    /// was lost: then [`succeeded`](Settled::succeeded) says which branch ran, and what
    /// its reads returned is gone.
    pub fn response(&self) -> Option<&TxnResponse> {
        self.response.as_ref()
    }

    /// How many tries were sent: more than one when a try's outcome was unknown and the
    /// settling found it not applied.
    pub fn tries(&self) -> u32 {
        self.tries
    }
}

/// Runs a transaction that writes, and settles an unknown outcome itself: it is applied
/// exactly once, or the call fails with nothing applied, or fails unknown only when even
/// the settling could not reach a quorum (then call it again with the same
/// transaction: a try that was applied meanwhile is found).
///
/// How: the transaction is sent inside one that requires a fence key of its own (under
/// `__etcd-blocking/fence/`) to be absent, and each of its branches also puts that fence,
/// saying which branch ran. When a try comes back of unknown outcome
/// ([`Error::WriteOutcomeUnknown`]), the fence is put if it is still absent ("sealed"): from
/// then on no copy of that try can be applied, however late it arrives. If the fence was
/// there already, the try was applied, and its value says which branch ran. If the seal
/// went in, the try was not applied, and the transaction is sent again, with a new fence,
/// until it is answered or `kv`'s timeout runs out. A try that was answered has its fence
/// deleted (one more write); a sealed fence stays in the store, since nothing bounds how
/// late its try may arrive.
///
/// The transaction's own compares and operations are sent as they are, nested; keys under
/// the fence prefix are this crate's.
///
/// ```no_run
/// # let client = etcd_blocking::Client::connect(["127.0.0.1:2379"])?;
/// use etcd_blocking::{concurrency, Compare, Txn, TxnOp};
///
/// let kv = client.kv();
/// let balance = kv.get_one("acct/a")?.expect("an account");
/// let settled = concurrency::txn_settled(
///     &kv,
///     Txn::new()
///         .when([Compare::mod_revision("acct/a").eq(balance.mod_revision())])
///         .and_then([TxnOp::put("acct/a", "90"), TxnOp::put("acct/b", "110")]),
/// )?;
/// println!("moved: {} ({} tries)", settled.succeeded(), settled.tries());
/// # Ok::<(), etcd_blocking::Error>(())
/// ```
pub fn txn_settled(kv: &Kv, txn: Txn) -> Result<Settled> {
    settle(kv, txn, &mut |kv, txn| kv.txn(txn))
}

/// [`txn_settled`], whose tries fail as `faults` say, in order (then go as usual): for
/// tests of the settling.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub fn txn_settled_with_faults(
    kv: &Kv,
    txn: Txn,
    faults: impl IntoIterator<Item = super::stm::CommitFault>,
) -> Result<Settled> {
    let mut faults: std::collections::VecDeque<_> = faults.into_iter().collect();
    let lost = || Error::WriteOutcomeUnknown {
        endpoint: String::new(),
        source: Box::new(Error::Abandoned {
            endpoint: String::new(),
            reason: "(test)".to_owned(),
        }),
    };
    settle(kv, txn, &mut |kv, txn| match faults.pop_front() {
        Some(super::stm::CommitFault::AnswerLost) => {
            kv.txn(txn)?;
            Err(lost())
        }
        Some(super::stm::CommitFault::NotSent) => Err(lost()),
        None => kv.txn(txn),
    })
}

/// Sends each try through `send`.
fn settle(
    kv: &Kv,
    txn: Txn,
    send: &mut dyn FnMut(&Kv, Txn) -> Result<TxnResponse>,
) -> Result<Settled> {
    let deadline = crate::time::deadline(kv.timeout());
    let mut tries = 0;
    loop {
        tries += 1;
        let fence = fence::unique(fence::PREFIX);
        match send(kv, fenced(&txn, &fence)) {
            Ok(response) => {
                let mut responses = response.into_responses();
                let inner = match responses.pop() {
                    Some(TxnOpResponse::Txn(inner)) => Some(inner),
                    _ => None,
                }
                .ok_or_else(|| Error::Abandoned {
                    endpoint: String::new(),
                    reason: "etcd answered a settled transaction without its nested one".to_owned(),
                })?;
                forget(kv, &fence);
                return Ok(Settled {
                    succeeded: inner.succeeded(),
                    response: Some(inner),
                    tries,
                });
            }
            Err(e) if e.is_write_outcome_unknown() => {
                log::debug!("etcd transaction of unknown outcome, settling it: {e}");
                let sealed = fence::seal(kv, &fence, SEALED, PutOptions::new(), PAUSE, deadline)?;
                // The fence there first says which branch of the try ran.
                match sealed.map(|found| found == THEN) {
                    Some(succeeded) => {
                        forget(kv, &fence);
                        return Ok(Settled {
                            succeeded,
                            response: None,
                            tries,
                        });
                    }
                    None if Instant::now() < deadline => {
                        crate::park::park_until(crate::time::deadline(PAUSE).min(deadline));
                    }
                    None => {
                        return Err(Error::WaitTimeout {
                            what: "a settled transaction: every try was sealed unapplied"
                                .to_owned(),
                            timeout: kv.timeout(),
                        })
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// `txn` nested in one that requires `fence` to be absent, each branch putting it.
fn fenced(txn: &Txn, fence: &[u8]) -> Txn {
    let (compares, success, failure) = txn.parts();
    let inner = Txn::new()
        .when(compares.iter().cloned())
        .and_then(
            success
                .iter()
                .cloned()
                .chain([TxnOp::put(fence.to_vec(), THEN)]),
        )
        .or_else(
            failure
                .iter()
                .cloned()
                .chain([TxnOp::put(fence.to_vec(), ELSE)]),
        );
    Txn::new()
        .when([Compare::create_revision(fence.to_vec()).eq(0)])
        .and_then([TxnOp::txn(inner)])
}

/// Deletes the fence of a try that was applied: best effort, a fence left costs a key.
fn forget(kv: &Kv, fence: &[u8]) {
    if let Err(e) = kv.delete(fence.to_vec()) {
        log::debug!(
            "etcd fence {} not deleted: {e}",
            String::from_utf8_lossy(fence)
        );
    }
}
