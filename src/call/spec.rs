//! What kind of call is made: what may be retried, and what a member may serve alone.

/// Whether a call changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// Reads and other calls that change nothing, or change nothing if repeated: Range,
    /// Status, MemberList, lease time-to-live, auth reads.
    Repeatable,
    /// Calls that change the store or the cluster: Put, DeleteRange, Txn, Compact, lease
    /// grant and revoke, member and auth changes.
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
}

impl Spec {
    /// A linearizable read, or any call that may be repeated.
    pub(crate) const READ: Spec = Spec {
        kind: CallKind::Repeatable,
        serializable: false,
    };
    /// A serializable read.
    pub(crate) const SERIALIZABLE: Spec = Spec {
        kind: CallKind::Repeatable,
        serializable: true,
    };
    /// A write.
    pub(crate) const WRITE: Spec = Spec {
        kind: CallKind::Write,
        serializable: false,
    };
}
