//! Who leads the cluster, as the members' status answers tell it, and the leader epoch.
//!
//! The epoch moves only when the leader really changes or is really lost: a healthy member
//! names another leader or a newer raft term, or a member says it has no leader while the
//! leader's own endpoint fails its probes. An endpoint that merely stops answering (its
//! port blackholed, the member still leading) moves nothing: calls that followers forward
//! to it still complete, and ending them would report writes as of unknown outcome for
//! nothing.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// The leader as last learnt, and the epoch that counts its changes.
#[derive(Debug, Default)]
pub(crate) struct Leader {
    /// The leader's member ID; 0: unknown, or lost.
    id: AtomicU64,
    /// Bumped whenever the leader changes or is lost: calls in flight on followers may have
    /// been forwarded to a leader that is gone, and would hang until their deadline.
    epoch: AtomicU64,
    /// The last leader ever learnt and its term (not reset when the leader is lost).
    known: Mutex<(u64, u64)>,
}

/// What a change to the leader did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing new.
    None,
    /// Learnt for the first time, or again after a loss: nothing in flight was lost.
    Learnt,
    /// The epoch moved.
    Moved,
}

impl Leader {
    /// The leader's member ID; 0 while unknown or lost.
    pub(crate) fn id(&self) -> u64 {
        self.id.load(Ordering::Acquire)
    }

    /// The leader epoch: changes whenever the leader does or is lost.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// True while the leader is lost: one was known, and no status has named the next yet.
    pub(crate) fn lost(&self) -> bool {
        self.id() == 0 && self.known.lock().0 != 0
    }

    /// A healthy member says `leader` leads in raft `term`.
    pub(crate) fn named(&self, leader: u64, term: u64) -> Change {
        if leader == 0 {
            return Change::None;
        }
        let mut known = self.known.lock();
        let (was, was_term) = *known;
        if term < was_term {
            // Old news, from a member that has not heard of the newer term yet.
            return Change::None;
        }
        if leader == was && term == was_term {
            // What is known already; after a loss, the same leader in the same term:
            // nothing in flight was lost meanwhile.
            return if self.id.swap(leader, Ordering::AcqRel) == 0 {
                Change::Learnt
            } else {
                Change::None
            };
        }
        *known = (leader, term.max(was_term));
        self.id.store(leader, Ordering::Release);
        if was == 0 {
            return Change::Learnt;
        }
        // Another leader, or the same one elected again: calls sent meanwhile may have gone
        // to a leader that is gone, or been dropped by it as it stepped down.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        Change::Moved
    }

    /// A member says it has no leader, and the leader's own endpoint fails: the leader is
    /// lost until a status names the next.
    pub(crate) fn lose(&self) -> Change {
        if self.id.swap(0, Ordering::AcqRel) == 0 {
            return Change::None;
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        Change::Moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_moves_only_for_a_real_change() {
        let leader = Leader::default();
        assert_eq!(leader.named(1, 5), Change::Learnt, "first leader");
        assert_eq!(leader.epoch(), 0);
        assert_eq!(leader.named(1, 5), Change::None, "same leader, same term");
        assert_eq!(
            leader.named(2, 4),
            Change::None,
            "an older term is old news"
        );
        assert_eq!(leader.id(), 1);
        assert_eq!(leader.named(2, 6), Change::Moved, "a new leader");
        assert_eq!(leader.epoch(), 1);
        assert_eq!(
            leader.named(2, 7),
            Change::Moved,
            "the same leader in a new term"
        );
        assert_eq!(leader.epoch(), 2);
        assert_eq!(leader.lose(), Change::Moved, "lost");
        assert!(leader.lost());
        assert_eq!(leader.lose(), Change::None, "lost once");
        assert_eq!(leader.named(2, 7), Change::Learnt, "back, nothing new");
        assert_eq!(leader.epoch(), 3);
        assert!(!leader.lost());
        assert_eq!(leader.named(0, 9), Change::None, "no leader named");
    }
}
