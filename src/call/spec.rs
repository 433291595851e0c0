//! What kind of call is made: what may be retried, and what a member may serve alone.

/// Whether a call changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// Reads and other calls that change nothing, or nothing a user minds if repeated
    /// (see [`Rpc`]).
    Repeatable,
    /// Calls that change the store or the cluster if applied twice: Put, DeleteRange, Txn,
    /// Compact, member and auth changes (see [`Rpc`]).
    Write,
}

/// What kind of unary call is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) kind: CallKind,
    /// A serializable read, served from the member's local state: it must not return a
    /// revision older than one the client has already seen, and may be served without a
    /// leader.
    pub(crate) serializable: bool,
    /// Sent without the user's token: the authentication itself.
    pub(crate) anonymous: bool,
}

/// Every unary RPC the client sends, with what may be retried: the one table to audit (the
/// crate docs print it, under "Retries"). A class is chosen by what a second copy of the
/// request could do if the first was applied, late or not:
/// - [`CallKind::Repeatable`]: nothing a user would mind (reads; a lease granted twice
///   leaves an orphan that expires by its TTL; a lease revoked twice is revoked): tried
///   again on another member after any failure, an unknown outcome included, within the
///   call's deadline (Go's `withRepeatablePolicy`);
/// - [`CallKind::Write`]: a second change of the store or the cluster: tried again only
///   when the request provably never reached a server, else it fails
///   [`Error::WriteOutcomeUnknown`](crate::Error::WriteOutcomeUnknown) (Go's
///   non-repeatable policy). A lock or campaign of etcd's services, which the server
///   holds until it is granted, is in this class: a second copy would queue a second key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rpc {
    /// KV Range, linearizable.
    Range,
    /// KV Range, serializable (served by any member, with or without a leader).
    SerializableRange,
    /// KV Put.
    Put,
    /// KV DeleteRange.
    DeleteRange,
    /// KV Txn whose operations only read, on both branches.
    ReadOnlyTxn,
    /// KV Txn of serializable reads only (a batch of coalesced serializable reads, or a
    /// user's transaction of serializable gets): served by any member, held to the
    /// revision floor.
    SerializableReadOnlyTxn,
    /// KV Txn that writes.
    Txn,
    /// KV Compact.
    Compact,
    /// Lease LeaseGrant.
    LeaseGrant,
    /// Lease LeaseRevoke.
    LeaseRevoke,
    /// Lease LeaseTimeToLive.
    LeaseTimeToLive,
    /// Lease LeaseLeases.
    LeaseLeases,
    /// Lock Lock (held by the server until granted).
    Lock,
    /// Lock Unlock.
    Unlock,
    /// Election Campaign (held by the server until won).
    Campaign,
    /// Election Proclaim.
    Proclaim,
    /// Election Leader.
    Leader,
    /// Election Resign.
    Resign,
    /// Auth Authenticate (sent without a token; a second token is harmless).
    Authenticate,
    /// Auth reads: AuthStatus, UserGet, UserList, RoleGet, RoleList.
    AuthRead,
    /// Auth changes: AuthEnable, AuthDisable, and every change of users and roles.
    AuthChange,
    /// Cluster MemberList, linearizable.
    MemberList,
    /// Cluster MemberList, served by the member asked from what it knows.
    SerializableMemberList,
    /// Cluster changes: MemberAdd, MemberRemove, MemberUpdate, MemberPromote.
    MemberChange,
    /// Maintenance reads that one member answers about itself: Status, Hash, HashKV; and
    /// the alarm list.
    MaintenanceRead,
    /// Maintenance Defragment of one member (not replicated; doing it twice is harmless).
    Defragment,
    /// Maintenance Alarm deactivation (disarming twice disarms).
    AlarmDisarm,
    /// Maintenance MoveLeader (sent to the leader).
    MoveLeader,
    /// Maintenance Downgrade: validate, enable, cancel.
    Downgrade,
    /// Maintenance Snapshot, a stream from one member: opened again only before anything
    /// of it was handed on.
    Snapshot,
}

impl Rpc {
    /// What kind of call the RPC is.
    pub(crate) const fn spec(self) -> Spec {
        use CallKind::{Repeatable, Write};
        let kind = match self {
            Rpc::Range
            | Rpc::SerializableRange
            | Rpc::ReadOnlyTxn
            | Rpc::SerializableReadOnlyTxn
            | Rpc::LeaseGrant
            | Rpc::LeaseRevoke
            | Rpc::LeaseTimeToLive
            | Rpc::LeaseLeases
            | Rpc::Leader
            | Rpc::Authenticate
            | Rpc::AuthRead
            | Rpc::MemberList
            | Rpc::SerializableMemberList
            | Rpc::MaintenanceRead
            | Rpc::Defragment
            | Rpc::AlarmDisarm
            | Rpc::Snapshot => Repeatable,
            Rpc::Put
            | Rpc::DeleteRange
            | Rpc::Txn
            | Rpc::Compact
            | Rpc::Lock
            | Rpc::Unlock
            | Rpc::Campaign
            | Rpc::Proclaim
            | Rpc::Resign
            | Rpc::AuthChange
            | Rpc::MemberChange
            | Rpc::MoveLeader
            | Rpc::Downgrade => Write,
        };
        Spec {
            kind,
            serializable: matches!(
                self,
                Rpc::SerializableRange
                    | Rpc::SerializableReadOnlyTxn
                    | Rpc::SerializableMemberList
                    | Rpc::MaintenanceRead
                    | Rpc::Defragment
                    | Rpc::Snapshot
            ),
            anonymous: matches!(self, Rpc::Authenticate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate docs' table, row by row: a change of class must change the docs too.
    #[test]
    fn the_retry_table_is_the_documented_one() {
        let docs = include_str!("../lib.rs");
        let rows = [
            (Rpc::Range, "| KV `Range` (linearizable) | repeatable |"),
            (
                Rpc::SerializableRange,
                "| KV `Range` (serializable) | repeatable |",
            ),
            (
                Rpc::ReadOnlyTxn,
                "| KV `Txn` that only reads | repeatable |",
            ),
            (
                Rpc::SerializableReadOnlyTxn,
                "| KV `Txn` of serializable gets only (and coalesced serializable reads) | repeatable |",
            ),
            (Rpc::Put, "| KV `Put` | at most once |"),
            (Rpc::DeleteRange, "| KV `DeleteRange` | at most once |"),
            (Rpc::Txn, "| KV `Txn` that writes | at most once |"),
            (Rpc::Compact, "| KV `Compact` | at most once |"),
            (Rpc::LeaseGrant, "| Lease `LeaseGrant` | repeatable |"),
            (Rpc::LeaseRevoke, "| Lease `LeaseRevoke` | repeatable |"),
            (
                Rpc::LeaseTimeToLive,
                "| Lease `LeaseTimeToLive` | repeatable |",
            ),
            (Rpc::LeaseLeases, "| Lease `LeaseLeases` | repeatable |"),
            (Rpc::Lock, "| Lock `Lock` | at most once |"),
            (Rpc::Unlock, "| Lock `Unlock` | at most once |"),
            (Rpc::Campaign, "| Election `Campaign` | at most once |"),
            (Rpc::Proclaim, "| Election `Proclaim` | at most once |"),
            (Rpc::Leader, "| Election `Leader` | repeatable |"),
            (Rpc::Resign, "| Election `Resign` | at most once |"),
            (Rpc::Authenticate, "| Auth `Authenticate` | repeatable |"),
            (
                Rpc::AuthRead,
                "| Auth reads (`AuthStatus`, `UserGet`, `UserList`, `RoleGet`, `RoleList`) | repeatable |",
            ),
            (
                Rpc::AuthChange,
                "| Auth changes (enable, disable, users, roles, permissions) | at most once |",
            ),
            (Rpc::MemberList, "| Cluster `MemberList` | repeatable |"),
            (
                Rpc::SerializableMemberList,
                "| Cluster `MemberList` (serializable) | repeatable |",
            ),
            (
                Rpc::MemberChange,
                "| Cluster changes (`MemberAdd`, `MemberRemove`, `MemberUpdate`, `MemberPromote`) | at most once |",
            ),
            (
                Rpc::MaintenanceRead,
                "| Maintenance reads (`Status`, `Hash`, `HashKV`, alarm list) | repeatable |",
            ),
            (Rpc::Defragment, "| Maintenance `Defragment` | repeatable |"),
            (Rpc::AlarmDisarm, "| Maintenance alarm disarm | repeatable |"),
            (Rpc::MoveLeader, "| Maintenance `MoveLeader` | at most once |"),
            (Rpc::Downgrade, "| Maintenance `Downgrade` | at most once |"),
            (
                Rpc::Snapshot,
                "| Maintenance `Snapshot` (until its first chunk is handed on) | repeatable |",
            ),
        ];
        for (rpc, row) in rows {
            let class = match rpc.spec().kind {
                CallKind::Repeatable => "repeatable",
                CallKind::Write => "at most once",
            };
            assert!(row.ends_with(&format!("| {class} |")), "{rpc:?}: {row}");
            assert!(
                docs.contains(&format!("//! {row}")),
                "{rpc:?}: lib.rs lacks {row}"
            );
        }
    }
}
