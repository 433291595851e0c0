//! What every call of a client runs against: the balancer, the revision floor and the
//! client-wide routing choice.

use std::sync::Arc;

use grpcio::Environment;

use super::floor::Floor;
use crate::balancer::Balancer;

/// The open connections of a client and what calls on them share.
pub(crate) struct Route {
    pub(crate) balancer: Arc<Balancer>,
    pub(crate) floor: Floor,
    /// Send writes and linearizable reads to the leader first.
    pub(crate) prefer_leader: bool,
    /// Kept so that grpcio's poll threads live as long as the channels.
    _env: Arc<Environment>,
}

impl Route {
    pub(crate) fn new(
        balancer: Arc<Balancer>,
        prefer_leader: bool,
        env: Arc<Environment>,
    ) -> Route {
        Route {
            balancer,
            floor: Floor::default(),
            prefer_leader,
            _env: env,
        }
    }
}
