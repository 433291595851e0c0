//! The call layer: the path of every call (pick an endpoint, send, wait, retry or give up),
//! the retry policy, the revision floor, and the stream worker that the watch and
//! keepalive threads run (with the mailbox it shares with their handles). API handles
//! depend on this layer alone.

mod auth;
mod caller;
mod floor;
mod mailbox;
mod retry;
mod route;
mod spec;
mod sstream;
mod stream;
mod unary;
mod worker;

pub(crate) use crate::transport::Stubs;
pub(crate) use auth::{sendable as token_sendable, Tokens};
pub(crate) use caller::Caller;
pub(crate) use floor::Revisioned;
pub(crate) use route::Route;
pub(crate) use spec::Rpc;
pub(crate) use sstream::ServerStream;
pub(crate) use stream::{next, open_stream, send, Next, Opener};
pub(crate) use worker::{start_once, Look, Owner, StreamView, Worker, IDLE};

/// The `host:port` of an endpoint URL (`http://host:port`, `https://...` or bare), as the
/// client dials it; `None` if it is not one.
pub(crate) fn target_of(url: &str) -> Option<String> {
    crate::transport::parse_endpoint(url)
        .ok()
        .map(|(_, target)| target)
}
