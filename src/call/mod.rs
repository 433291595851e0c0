//! The call layer: the path of every call (pick an endpoint, send, wait, retry or give up),
//! the retry policy, the revision floor, and the mailbox of the stream threads. API handles depend on this layer alone.

mod caller;
mod floor;
mod mailbox;
mod retry;
mod route;
mod spec;
mod stream;
mod unary;

pub(crate) use crate::transport::Stubs;
pub(crate) use caller::Caller;
pub(crate) use floor::Revisioned;
pub(crate) use mailbox::Mailbox;
pub(crate) use route::Route;
pub(crate) use spec::Rpc;
pub(crate) use stream::{next, open_stream, send, DuplexStream, Next, Opener};
