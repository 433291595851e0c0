//! What every call of a client runs against: the balancer, the revision floor and the
//! client-wide routing choice.

use std::sync::Arc;

use grpcio::Environment;

use super::auth::Tokens;
use super::floor::Floor;
use crate::balancer::Balancer;

/// The open connections of a client and what calls on them share.
pub(crate) struct Route {
    pub(crate) balancer: Arc<Balancer>,
    pub(crate) floor: Floor,
    /// Send writes and linearizable reads to the leader first.
    pub(crate) prefer_leader: bool,
    /// The user's token, when the client authenticates.
    pub(crate) tokens: Option<Arc<Tokens>>,
    /// Kept so that grpcio's poll threads live as long as the channels.
    _env: Arc<Environment>,
}

impl Route {
    pub(crate) fn new(
        balancer: Arc<Balancer>,
        prefer_leader: bool,
        tokens: Option<Arc<Tokens>>,
        env: Arc<Environment>,
    ) -> Route {
        Route {
            balancer,
            floor: Floor::default(),
            prefer_leader,
            tokens,
            _env: env,
        }
    }
}
