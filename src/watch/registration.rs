//! What a watcher hands the hub when it starts, and what the two share until it ends.

use std::sync::Arc;

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use super::responses::WatchResponse;
use crate::error::Error;
use crate::proto::rpc::WatchCreateRequest;

/// Why a watch ended; the watcher turns it into its error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    Compacted(i64),
    Lagged { resume_from: i64, buffer: usize },
    Canceled(String),
    Closed,
}

impl End {
    pub(crate) fn error(&self) -> Error {
        match self {
            End::Compacted(compact_revision) => Error::WatchCompacted {
                compact_revision: *compact_revision,
            },
            End::Lagged {
                resume_from,
                buffer,
            } => Error::WatchLagged {
                resume_from: *resume_from,
                buffer: *buffer,
            },
            End::Canceled(reason) => Error::WatchCanceled {
                reason: reason.clone(),
            },
            End::Closed => Error::Closed,
        }
    }
}

/// What a watcher and the hub share: why the watch ended, once it has.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) end: Mutex<Option<End>>,
}

/// A watch to start: its request (with its ID), and where its responses go.
pub(crate) struct Registration {
    pub(crate) request: WatchCreateRequest,
    pub(crate) sender: Sender<WatchResponse>,
    /// Takes the revision the watch was created at, once.
    pub(crate) created: Sender<i64>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) buffer: usize,
    /// The length of the namespace prefix its keys are delivered without (0: none).
    pub(crate) strip: usize,
}
