//! Cluster membership ([`Client::cluster`](crate::Client::cluster)): list the members, add
//! one (as a voter or a learner), remove, update its peer URLs, promote a learner.
//!
//! Changes go to the leader (through the balancer, as writes) and are applied at most
//! once: a change whose answer is lost fails [`Error::WriteOutcomeUnknown`]; list the
//! members to see whether it happened. etcd refuses a change that could break its quorum
//! before it proposes it, as "unhealthy cluster" (also while its links to the other
//! members are younger than 5 s, just after a start): nothing was applied, and the client
//! tries again within the call's deadline. With auto-sync on
//! ([`ClientBuilder::auto_sync_interval`](crate::ClientBuilder::auto_sync_interval)), the
//! client's endpoints follow a change made through it at once, not at the next interval.

use std::time::{Duration, Instant};

use grpcio::{CallOption, ClientUnaryReceiver};

use crate::call::{Caller, Revisioned, Rpc, Stubs};
use crate::error::{Error, Result};
use crate::proto::rpc;
use crate::types::{header_of, ResponseHeader};

/// The membership API: cheap to clone. Changes need the root role when auth is on.
#[derive(Debug, Clone)]
pub struct Cluster {
    caller: Caller,
    timeout: Duration,
}

/// A member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its ID.
    pub id: u64,
    /// Its name; empty until it has started (a member just added has none).
    pub name: String,
    /// Where the other members reach it.
    pub peer_urls: Vec<String>,
    /// Where clients reach it; empty until it has started.
    pub client_urls: Vec<String>,
    /// A learner: it receives the log but does not vote, and serves only `Status` and
    /// serializable reads.
    pub is_learner: bool,
}

impl Member {
    fn from_proto(m: &rpc::Member) -> Member {
        Member {
            id: m.ID,
            name: m.name.clone(),
            peer_urls: m.peerURLs.to_vec(),
            client_urls: m.clientURLs.to_vec(),
            is_learner: m.isLearner,
        }
    }

    /// True once the member has started (it has a name).
    pub fn is_started(&self) -> bool {
        !self.name.is_empty()
    }
}

/// The members, and who answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// Who answered (its member ID in `header.member_id`).
    pub header: ResponseHeader,
    /// Every member, learners included.
    pub members: Vec<Member>,
}

/// What adding a member answered: the new member (its ID, to start it with) and the
/// members after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAdded {
    /// The member added.
    pub member: Member,
    /// Every member after the change, the new one included.
    pub members: Vec<Member>,
}

/// Refuses a list of peer URLs that etcd would refuse or misread: none, or one that is not
/// `http://host:port` or `https://host:port` (no path, query or user).
fn peer_urls<I, S>(urls: I) -> Result<Vec<String>>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let urls: Vec<String> = urls.into_iter().map(Into::into).collect();
    if urls.is_empty() {
        return Err(Error::InvalidArgument {
            argument: "peer URLs",
            reason: "at least one is needed".to_owned(),
        });
    }
    for url in &urls {
        check_peer_url(url).map_err(|why| Error::InvalidArgument {
            argument: "peer URLs",
            reason: format!("{url:?}: {why}"),
        })?;
    }
    Ok(urls)
}

fn check_peer_url(url: &str) -> std::result::Result<(), &'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err("must be scheme://host:port, with no path, query or user");
    }
    let (host, port) = rest.rsplit_once(':').ok_or("must name a port")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("must name a host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("the port must be a number from 1 to 65535"),
    }
}

impl Cluster {
    pub(crate) fn new(caller: Caller, timeout: Duration) -> Cluster {
        caller.note_timeout(timeout);
        Cluster { caller, timeout }
    }

    /// A handle whose calls wait `timeout` instead of the client's request timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Cluster {
        Cluster::new(self.caller.clone(), timeout)
    }

    /// Every member, as the cluster has agreed on it (linearizable: etcd 3.5 and later
    /// answer it through the leader; etcd 3.4 answers from the member asked).
    pub fn member_list(&self) -> Result<Members> {
        self.list(true)
    }

    /// Every member as the member asked knows it, which may lag a change just made; any
    /// member answers, one without a leader included.
    pub fn member_list_serializable(&self) -> Result<Members> {
        self.list(false)
    }

    fn list(&self, linearizable: bool) -> Result<Members> {
        let r = self.list_within(linearizable, self.timeout)?;
        Ok(Members {
            header: header_of(r.header.as_ref()),
            members: r.members.iter().map(Member::from_proto).collect(),
        })
    }

    /// The member list as etcd answers it, within `timeout`.
    fn list_within(
        &self,
        linearizable: bool,
        timeout: Duration,
    ) -> Result<rpc::MemberListResponse> {
        let request = rpc::MemberListRequest {
            linearizable,
            ..Default::default()
        };
        let rpc = if linearizable {
            Rpc::MemberList
        } else {
            Rpc::SerializableMemberList
        };
        self.caller.unary(rpc, timeout, |s, o| {
            s.cluster.member_list_async_opt(&request, o)
        })
    }

    /// Adds a voting member that will be reached at `peer_urls`. Start it afterwards
    /// with `--initial-cluster-state=existing` and the returned members: until it has
    /// started the cluster counts it in its quorum, so add one member at a time.
    pub fn member_add<I, S>(&self, peer_urls: I) -> Result<MemberAdded>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.add(peer_urls, false)
    }

    /// Adds a learner that will be reached at `peer_urls`: it receives the log without
    /// voting, so it does not count in the quorum, and is promoted with
    /// [`Cluster::member_promote`] once it has caught up.
    pub fn member_add_learner<I, S>(&self, peer_urls: I) -> Result<MemberAdded>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.add(peer_urls, true)
    }

    fn add<I, S>(&self, urls: I, learner: bool) -> Result<MemberAdded>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let request = rpc::MemberAddRequest {
            peerURLs: peer_urls(urls)?.into(),
            isLearner: learner,
            ..Default::default()
        };
        let r = self.change(|s, o| s.cluster.member_add_async_opt(&request, o))?;
        let member =
            r.member
                .as_ref()
                .map(Member::from_proto)
                .ok_or_else(|| Error::InvalidResponse {
                    reason: "MemberAdd answered no member".to_owned(),
                })?;
        Ok(MemberAdded {
            member,
            members: r.members.iter().map(Member::from_proto).collect(),
        })
    }

    /// Removes the member with ID `id` (a learner included), and returns the members left.
    ///
    /// The member removed stops as it applies the change, so when the request reached it
    /// (a retry, or the leader removing itself) its answer may be lost on the way. When
    /// the outcome is unknown, the client reads the member list within what is left of
    /// the call's time: if the member is no longer in it, the removal happened and the
    /// list is the answer; if it is, or the list cannot be read, the call fails
    /// [`Error::WriteOutcomeUnknown`].
    pub fn member_remove(&self, id: u64) -> Result<Vec<Member>> {
        let request = rpc::MemberRemoveRequest {
            ID: id,
            ..Default::default()
        };
        let started = Instant::now();
        match self.change(|s, o| s.cluster.member_remove_async_opt(&request, o)) {
            Ok(r) => Ok(r.members.iter().map(Member::from_proto).collect()),
            Err(unknown) if unknown.is_write_outcome_unknown() => {
                self.removed_after_all(id, started, unknown)
            }
            Err(e) => Err(e),
        }
    }

    /// A removal of unknown outcome: the members, if the linearizable member list no
    /// longer has `id` (on etcd 3.4, which reads the list from the member's own state, a
    /// member that has applied the removal); else `unknown`.
    fn removed_after_all(&self, id: u64, started: Instant, unknown: Error) -> Result<Vec<Member>> {
        let left = self.timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(unknown);
        }
        let Ok(r) = self.list_within(true, left) else {
            return Err(unknown);
        };
        if r.members.iter().any(|m| m.ID == id) {
            return Err(unknown);
        }
        log::debug!("etcd: member {id:x} is gone after a removal of unknown outcome");
        self.caller.membership_changed(&r.members);
        Ok(r.members.iter().map(Member::from_proto).collect())
    }

    /// Changes the peer URLs of the member with ID `id`, and returns the members.
    pub fn member_update<I, S>(&self, id: u64, urls: I) -> Result<Vec<Member>>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let request = rpc::MemberUpdateRequest {
            ID: id,
            peerURLs: peer_urls(urls)?.into(),
            ..Default::default()
        };
        let r = self.change(|s, o| s.cluster.member_update_async_opt(&request, o))?;
        Ok(r.members.iter().map(Member::from_proto).collect())
    }

    /// Makes the learner with ID `id` a voting member, and returns the members. etcd
    /// refuses while the learner has not caught up with the leader
    /// ([`ServerCode::LearnerNotReady`](crate::ServerCode::LearnerNotReady)): try again
    /// later.
    pub fn member_promote(&self, id: u64) -> Result<Vec<Member>> {
        let request = rpc::MemberPromoteRequest {
            ID: id,
            ..Default::default()
        };
        let r = self.change(|s, o| s.cluster.member_promote_async_opt(&request, o))?;
        Ok(r.members.iter().map(Member::from_proto).collect())
    }

    /// Sends one membership change (at most once), then lets the endpoints follow the
    /// members it answers.
    fn change<R>(
        &self,
        start: impl Fn(&Stubs, CallOption) -> grpcio::Result<ClientUnaryReceiver<R>>,
    ) -> Result<R>
    where
        R: Revisioned + Unpin + Changed,
    {
        let r = self.caller.unary(Rpc::MemberChange, self.timeout, start)?;
        self.caller.membership_changed(r.members());
        Ok(r)
    }
}

/// A membership change's answer: the members after it.
trait Changed {
    fn members(&self) -> &[rpc::Member];
}

macro_rules! changed {
    ($($ty:ty),*) => {$(
        impl Changed for $ty {
            fn members(&self) -> &[rpc::Member] {
                &self.members
            }
        }
    )*};
}

changed!(
    rpc::MemberAddResponse,
    rpc::MemberRemoveResponse,
    rpc::MemberUpdateResponse,
    rpc::MemberPromoteResponse
);

#[cfg(test)]
mod tests {
    use super::check_peer_url;
    use crate::fake::FakeCluster;
    use crate::Error;

    /// The member removed answers `server stopped` (etcd's member does, when the request
    /// reached it): the member list settles the outcome.
    #[test]
    fn a_removal_of_unknown_outcome_is_settled_by_the_member_list() {
        let fake = FakeCluster::start(3);
        let client = fake.client(true);
        fake.apply_removals(true);
        let members = client.cluster().member_remove(1).expect("settled: removed");
        let mut ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [2, 3]);

        fake.apply_removals(false);
        let err = client
            .cluster()
            .member_remove(2)
            .expect_err("still a member");
        assert!(matches!(err, Error::WriteOutcomeUnknown { .. }), "{err:?}");
    }

    #[test]
    fn peer_urls_are_checked_before_they_are_sent() {
        for good in [
            "http://10.0.0.1:2380",
            "https://etcd-0.example:2380",
            "http://[::1]:2380",
            "http://127.0.0.1:65535/",
        ] {
            assert_eq!(check_peer_url(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "10.0.0.1:2380",
            "unix://x:1",
            "http://10.0.0.1",
            "http://:2380",
            "http://10.0.0.1:0",
            "http://10.0.0.1:65536",
            "http://10.0.0.1:2380/path",
            "http://user@10.0.0.1:2380",
            "http://10.0.0.1:port",
        ] {
            assert!(check_peer_url(bad).is_err(), "{bad}");
        }
    }
}
