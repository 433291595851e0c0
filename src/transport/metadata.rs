//! The gRPC metadata calls carry, built in one place.

use grpcio::{Metadata, MetadataBuilder};

/// The metadata of a call: with `require_leader`, etcd's "require leader" (`hasleader`),
/// which makes a member without a leader refuse the call at once, and a stream be cancelled
/// once its member has been without one for three election timeouts. `None` when there is
/// nothing to send.
pub(crate) fn headers(require_leader: bool) -> Option<Metadata> {
    if !require_leader {
        return None;
    }
    let mut builder = MetadataBuilder::with_capacity(1);
    // A constant ASCII key and value: adding them cannot fail.
    let _ = builder.add_str("hasleader", "true");
    Some(builder.build())
}
