//! What can go wrong starting or steering a test cluster.

use std::time::Duration;

/// What can go wrong starting or steering a test cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// No `etcd` binary was found.
    #[error(
        "no etcd binary: set ETCD_BIN to an etcd server (3.4 or later), or put `etcd` on \
         PATH: Debian's and Ubuntu's `etcd-server` package has 3.4; any version from 3.5 \
         is built with Go from the module go.etcd.io/etcd/server/v3 (its etcdmain package \
         is the server); in this crate's repository, `scripts/test` does either"
    )]
    EtcdMissing,

    /// A file or process operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },

    /// The cluster or a member did not come up; `logs` holds the end of each member's log.
    #[error("{reason}\n{logs}")]
    StartFailed {
        /// What did not happen.
        reason: String,
        /// The last lines of every member's log.
        logs: String,
    },

    /// A condition was not reached in time.
    #[error("timed out after {waited:?} waiting for {what}\n{logs}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// The last lines of every member's log.
        logs: String,
    },

    /// No member has that index, or it is not in a state the operation needs.
    #[error("member {index}: {reason}")]
    Member {
        /// The member's index.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },

    /// The certificates of a TLS cluster could not be made.
    #[error("making TLS certificates failed: {0}")]
    Certificates(String),

    /// A cluster was asked to start from a snapshot, and no tool to restore one was found
    /// beside the etcd binary.
    #[error(
        "no snapshot restore tool beside {etcd}: put `etcd-restore` (this repository's \
         scripts/etcd-restore, built with Go against etcdutl of the server's version; \
         `scripts/deps.sh` builds it beside etcd) or etcd 3.4's `etcdctl` there"
    )]
    RestoreToolMissing {
        /// The etcd binary.
        etcd: String,
    },

    /// The member count is not supported.
    #[error("a test cluster has 1 to 7 members, not {0}")]
    Size(usize),
}

impl LaunchError {
    pub(super) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LaunchError::Io {
            what: what.into(),
            source,
        }
    }
}
