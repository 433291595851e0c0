//! The revision floor: the highest store revision this client has seen, below which no
//! read may answer, so that a failover never takes the client back in time.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::proto::{rpc, v3election, v3lock};

/// The highest revision any response has carried.
#[derive(Debug, Default)]
pub(crate) struct Floor {
    max: AtomicI64,
}

impl Floor {
    /// Notes the revision of a response.
    pub(crate) fn saw(&self, revision: i64) {
        self.max.fetch_max(revision, Ordering::AcqRel);
    }

    /// The highest revision seen.
    pub(crate) fn get(&self) -> i64 {
        self.max.load(Ordering::Acquire)
    }
}

/// A response that carries etcd's header.
pub(crate) trait Revisioned {
    /// The store revision in the header (0 if none).
    fn revision(&self) -> i64;
}

macro_rules! revisioned {
    ($($ty:ty),* $(,)?) => {$(
        impl Revisioned for $ty {
            fn revision(&self) -> i64 {
                self.header.as_ref().map_or(0, |h| h.revision)
            }
        }
    )*};
}

revisioned!(
    rpc::RangeResponse,
    rpc::PutResponse,
    rpc::DeleteRangeResponse,
    rpc::TxnResponse,
    rpc::CompactionResponse,
    rpc::LeaseGrantResponse,
    rpc::LeaseRevokeResponse,
    rpc::LeaseTimeToLiveResponse,
    rpc::LeaseLeasesResponse,
    v3lock::LockResponse,
    v3lock::UnlockResponse,
    v3election::CampaignResponse,
    v3election::ProclaimResponse,
    v3election::LeaderResponse,
    v3election::ResignResponse,
);

/// Auth responses count the auth store's revisions, not the key-value store's; membership
/// and maintenance answers say nothing of the store a read sees: they never move the
/// floor (and are never held to it).
macro_rules! unrevisioned {
    ($($ty:ty),* $(,)?) => {$(
        impl Revisioned for $ty {
            fn revision(&self) -> i64 {
                0
            }
        }
    )*};
}

unrevisioned!(
    rpc::MemberListResponse,
    rpc::MemberAddResponse,
    rpc::MemberRemoveResponse,
    rpc::MemberUpdateResponse,
    rpc::MemberPromoteResponse,
    rpc::AlarmResponse,
    rpc::MoveLeaderResponse,
    rpc::DowngradeResponse,
    rpc::AuthenticateResponse,
    rpc::AuthEnableResponse,
    rpc::AuthDisableResponse,
    rpc::AuthStatusResponse,
    rpc::AuthUserAddResponse,
    rpc::AuthUserGetResponse,
    rpc::AuthUserListResponse,
    rpc::AuthUserDeleteResponse,
    rpc::AuthUserChangePasswordResponse,
    rpc::AuthUserGrantRoleResponse,
    rpc::AuthUserRevokeRoleResponse,
    rpc::AuthRoleAddResponse,
    rpc::AuthRoleGetResponse,
    rpc::AuthRoleListResponse,
    rpc::AuthRoleDeleteResponse,
    rpc::AuthRoleGrantPermissionResponse,
    rpc::AuthRoleRevokePermissionResponse,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_only_rises() {
        let floor = Floor::default();
        floor.saw(5);
        floor.saw(3);
        assert_eq!(floor.get(), 5);
        floor.saw(i64::MAX);
        assert_eq!(floor.get(), i64::MAX);
    }
}
