//! The balancer: the endpoint table, each endpoint's health, the leader, and the worker
//! thread that keeps them true. Nothing here knows of the client's builder or of retries.
//!
//! Callers read the table without waiting on anyone: each endpoint's health is an atomic.
//! The worker thread (`etcd-balancer`) probes the endpoints in parallel and moves them
//! between healthy, suspect and unhealthy; callers report failures to it, and subscribe to
//! its news (health and leader changes) while they wait. No lock is held across an RPC.

mod endpoint;
mod health;
mod leader;
mod state;
mod worker;

pub(crate) use endpoint::Endpoint;
pub(crate) use health::Need;
pub use health::{EndpointHealth, Health};
pub(crate) use state::{Balancer, Mark};
pub(crate) use worker::{start, Settings};
