//! The gRPC metadata calls carry, built in one place.

use grpcio::{Metadata, MetadataBuilder};

use crate::secret::Secret;

/// The metadata of a call: with `require_leader`, etcd's "require leader" (`hasleader`),
/// which makes a member without a leader refuse the call at once, and a stream be cancelled
/// once its member has been without one for three election timeouts; with `token`, the
/// user's auth token. `None` when there is nothing to send.
pub(crate) fn headers(require_leader: bool, token: Option<&Secret>) -> Option<Metadata> {
    if !require_leader && token.is_none() {
        return None;
    }
    let mut builder = MetadataBuilder::with_capacity(2);
    if require_leader {
        // A constant ASCII key and value: adding them cannot fail.
        let _ = builder.add_str("hasleader", "true");
    }
    if let Some(token) = token {
        // Tokens are checked to be printable ASCII where they come in (given by the user,
        // or answered by the server), so this cannot fail either.
        if let Ok(text) = std::str::from_utf8(&token.0) {
            let _ = builder.add_str("token", text);
        }
    }
    Some(builder.build())
}
