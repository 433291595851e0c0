//! The lease API: [`Lease`], the handle of the unary calls (grant, revoke, time-to-live,
//! listing, one renewal) and of [`KeepAlive`]s; and the keeper, the one thread that renews
//! every kept lease of a client over one keepalive stream and moves it when its member
//! fails.

mod handle;
mod keepalive;
mod keeper;
mod status;

pub use handle::{
    Lease, LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseRevokeResponse,
    LeaseTimeToLiveResponse,
};
pub use keepalive::KeepAlive;
pub(crate) use keeper::Keeper;
pub use status::{KeepAliveStatus, LeaseRenewal};
