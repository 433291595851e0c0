//! The maintenance API ([`Client::maintenance`](crate::Client::maintenance)).
//!
//! Calls that concern one member take that member's endpoint (`host:port`, as
//! [`Client::endpoints`](crate::Client::endpoints) lists them, or any member's client URL)
//! and go there, not where the balancer would send them: [`Maintenance::status`],
//! [`Maintenance::defragment`], [`Maintenance::hash`], [`Maintenance::hash_kv`],
//! [`Maintenance::snapshot`]. A member the balancer does not use (a learner, one cut off
//! from its quorum) still answers for itself. Alarms and downgrades concern the cluster
//! and go through the balancer; [`Maintenance::move_leader`] finds the leader itself.
//!
//! etcd allows defragment, snapshot, hash, hash_kv, move_leader, downgrade and alarm
//! changes to the root role only when auth is on.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::call::{Caller, Rpc, ServerStream};
use crate::error::{Error, Result};
use crate::proto::rpc;
use crate::types::{header_of, ResponseHeader};

/// The maintenance API: cheap to clone.
#[derive(Debug, Clone)]
pub struct Maintenance {
    caller: Caller,
    timeout: Duration,
}

/// What a member says of itself. Fields that its etcd version does not have are `None`,
/// not zero: etcd 3.4 added the applied index, the errors, the size in use and whether it
/// is a learner; etcd 3.6 the storage version, the size quota and the downgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The endpoint asked (`host:port`).
    pub endpoint: String,
    /// Who answered: the member ID is in `header.member_id()`.
    pub header: ResponseHeader,
    /// The member's etcd version, as it says it (`3.6.16`).
    pub version: String,
    /// Its database file's size, in bytes.
    pub db_size: i64,
    /// The leader's member ID as it knows it; 0 without a leader.
    pub leader: u64,
    /// Its raft log index.
    pub raft_index: u64,
    /// Its raft term.
    pub raft_term: u64,
    /// The raft index it has applied (3.4+).
    pub raft_applied_index: Option<u64>,
    /// The errors it reports, such as an alarm (3.4+).
    pub errors: Option<Vec<String>>,
    /// The bytes of its database in use, the rest being free pages that defragmenting
    /// gives back (3.4+).
    pub db_size_in_use: Option<i64>,
    /// It is a learner (3.4+).
    pub is_learner: Option<bool>,
    /// The version of its storage format (3.6+).
    pub storage_version: Option<String>,
    /// Its backend quota, in bytes (3.6+).
    pub db_size_quota: Option<i64>,
    /// The cluster's downgrade, as the member knows it (3.6+).
    pub downgrade: Option<DowngradeInfo>,
}

impl Status {
    /// The member's ID.
    pub fn member_id(&self) -> u64 {
        self.header.member_id()
    }

    /// True if the member leads.
    pub fn is_leader(&self) -> bool {
        self.leader != 0 && self.leader == self.member_id()
    }
}

/// A downgrade of the cluster, as a member knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DowngradeInfo {
    /// A downgrade is under way.
    pub enabled: bool,
    /// The version the cluster is going down to.
    pub target_version: String,
}

/// What an alarm is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmKind {
    /// The member's database reached its quota (`--quota-backend-bytes`): the cluster
    /// refuses writes ([`ServerCode::NoSpace`](crate::ServerCode::NoSpace)) until the
    /// alarm is disarmed, after compaction and defragmentation freed space.
    NoSpace,
    /// The member's data differs from the others' (corruption check).
    Corrupt,
}

/// An alarm raised on a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Alarm {
    /// The member it is raised on.
    pub member_id: u64,
    /// What it is about.
    pub kind: AlarmKind,
}

impl Alarm {
    fn from_proto(a: &rpc::AlarmMember) -> Option<Alarm> {
        let kind = match a.alarm {
            rpc::AlarmType::NOSPACE => AlarmKind::NoSpace,
            rpc::AlarmType::CORRUPT => AlarmKind::Corrupt,
            rpc::AlarmType::NONE => return None,
        };
        Some(Alarm {
            member_id: a.memberID,
            kind,
        })
    }

    fn to_proto(self) -> rpc::AlarmType {
        match self.kind {
            AlarmKind::NoSpace => rpc::AlarmType::NOSPACE,
            AlarmKind::Corrupt => rpc::AlarmType::CORRUPT,
        }
    }
}

/// A member's hash of its key-value store up to a revision: equal on every member that
/// has the same data, at the same revision and compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    /// The hash.
    pub hash: u32,
    /// The compaction revision the hash starts after.
    pub compact_revision: i64,
    /// The revision the hash runs to (3.5.11+ and 3.6+; 0 where the member does not say).
    pub hash_revision: i64,
}

/// A snapshot taken and verified: what was written is the member's database (`size`
/// bytes) followed by its 32-byte SHA-256, the file `etcdutl snapshot restore` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The member that sent it.
    pub endpoint: String,
    /// The database's size in bytes (the digest's 32 bytes not counted).
    pub size: u64,
    /// The SHA-256 of the database, as the member sent it and as checked.
    pub sha256: [u8; 32],
    /// The member's storage version (3.6+; `None` where it does not say).
    pub version: Option<String>,
}

/// The `(major, minor)` of an etcd version string.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl Maintenance {
    pub(crate) fn new(caller: Caller, timeout: Duration) -> Maintenance {
        caller.note_timeout(timeout);
        Maintenance { caller, timeout }
    }

    /// A handle whose calls wait `timeout` instead of the client's request timeout (a
    /// defragmentation of a large database takes long; for a snapshot it bounds each wait
    /// for the next chunk).
    pub fn with_timeout(&self, timeout: Duration) -> Maintenance {
        Maintenance::new(self.caller.clone(), timeout)
    }

    /// The status of the member at `endpoint`.
    pub fn status(&self, endpoint: &str) -> Result<Status> {
        let request = rpc::StatusRequest::new();
        let r = self
            .caller
            .unary_on(endpoint, Rpc::MaintenanceRead, self.timeout, |s, o| {
                s.maintenance.status_async_opt(&request, o)
            })?;
        let (major, minor) = major_minor(&r.version).unwrap_or((0, 0));
        let since = |m: u32| (major, minor) >= (3, m);
        Ok(Status {
            endpoint: endpoint.to_owned(),
            header: header_of(r.header.as_ref()),
            version: r.version.clone(),
            db_size: r.dbSize,
            leader: r.leader,
            raft_index: r.raftIndex,
            raft_term: r.raftTerm,
            raft_applied_index: since(4).then_some(r.raftAppliedIndex),
            errors: since(4).then(|| r.errors.to_vec()),
            db_size_in_use: since(4).then_some(r.dbSizeInUse),
            is_learner: since(4).then_some(r.isLearner),
            storage_version: since(6).then(|| r.storageVersion.clone()),
            db_size_quota: since(6).then_some(r.dbSizeQuota),
            downgrade: since(6).then(|| {
                let d = r.downgradeInfo.as_ref();
                DowngradeInfo {
                    enabled: d.is_some_and(|d| d.enabled),
                    target_version: d.map(|d| d.targetVersion.clone()).unwrap_or_default(),
                }
            }),
        })
    }

    /// The status of every endpoint the client uses, in its order: each member's answer
    /// or why it gave none.
    pub fn statuses(&self) -> Result<Vec<(String, Result<Status>)>> {
        Ok(self
            .caller
            .endpoint_members()?
            .into_iter()
            .map(|(endpoint, _)| {
                let status = self.status(&endpoint);
                (endpoint, status)
            })
            .collect())
    }

    /// Every alarm raised in the cluster.
    pub fn alarms(&self) -> Result<Vec<Alarm>> {
        let request = rpc::AlarmRequest {
            action: rpc::AlarmRequest_AlarmAction::GET,
            ..Default::default()
        };
        let r = self
            .caller
            .unary(Rpc::MaintenanceRead, self.timeout, |s, o| {
                s.maintenance.alarm_async_opt(&request, o)
            })?;
        Ok(r.alarms.iter().filter_map(Alarm::from_proto).collect())
    }

    /// Disarms `alarm`; returns the alarms disarmed (none if it was not raised). Disarming
    /// a NOSPACE alarm before space was freed (compaction, then defragmentation of every
    /// member) only lets the next write raise it again.
    pub fn alarm_disarm(&self, alarm: &Alarm) -> Result<Vec<Alarm>> {
        let request = rpc::AlarmRequest {
            action: rpc::AlarmRequest_AlarmAction::DEACTIVATE,
            memberID: alarm.member_id,
            alarm: alarm.to_proto(),
            ..Default::default()
        };
        let r = self.caller.unary(Rpc::AlarmDisarm, self.timeout, |s, o| {
            s.maintenance.alarm_async_opt(&request, o)
        })?;
        Ok(r.alarms.iter().filter_map(Alarm::from_proto).collect())
    }

    /// Disarms every alarm raised (as Go's client does for an empty alarm: each one
    /// listed, disarmed in turn); returns those disarmed.
    pub fn alarm_disarm_all(&self) -> Result<Vec<Alarm>> {
        let mut disarmed = Vec::new();
        for alarm in self.alarms()? {
            disarmed.extend(self.alarm_disarm(&alarm)?);
        }
        Ok(disarmed)
    }

    /// Defragments the database of the member at `endpoint`, which gives the free pages
    /// back to the file system. The member serves nothing meanwhile, and it is not
    /// replicated: defragment members one at a time, or the cluster may stall.
    pub fn defragment(&self, endpoint: &str) -> Result<()> {
        let request = rpc::DefragmentRequest::new();
        self.caller
            .unary_on(endpoint, Rpc::Defragment, self.timeout, |s, o| {
                s.maintenance.defragment_async_opt(&request, o)
            })
            .map(drop)
    }

    /// The hash of the whole backend of the member at `endpoint` (for tests: it differs
    /// between members that hold the same data; [`Maintenance::hash_kv`] does not).
    pub fn hash(&self, endpoint: &str) -> Result<u32> {
        let request = rpc::HashRequest::new();
        let r = self
            .caller
            .unary_on(endpoint, Rpc::MaintenanceRead, self.timeout, |s, o| {
                s.maintenance.hash_async_opt(&request, o)
            })?;
        Ok(r.hash)
    }

    /// The hash of the key-value store of the member at `endpoint` up to `revision` (0:
    /// its latest).
    pub fn hash_kv(&self, endpoint: &str, revision: i64) -> Result<HashKv> {
        if revision < 0 {
            return Err(Error::InvalidArgument {
                argument: "revision",
                reason: format!("{revision} is negative"),
            });
        }
        let request = rpc::HashKVRequest {
            revision,
            ..Default::default()
        };
        let r = self
            .caller
            .unary_on(endpoint, Rpc::MaintenanceRead, self.timeout, |s, o| {
                s.maintenance.hash_kv_async_opt(&request, o)
            })?;
        Ok(HashKv {
            hash: r.hash,
            compact_revision: r.compact_revision,
            hash_revision: r.hash_revision,
        })
    }

    /// Makes the voting member with ID `to` the leader. The request goes to the current
    /// leader, which this finds itself; it returns once the transfer is done. A member that
    /// is not in the cluster, or a learner, is refused before anything is sent.
    pub fn move_leader(&self, to: u64) -> Result<()> {
        let members = crate::Cluster::new(self.caller.clone(), self.timeout).member_list()?;
        match members.members.iter().find(|m| m.id == to) {
            None => {
                return Err(Error::InvalidArgument {
                    argument: "member ID",
                    reason: format!("no member has the ID {to:x}"),
                })
            }
            Some(m) if m.is_learner => {
                return Err(Error::InvalidArgument {
                    argument: "member ID",
                    reason: format!("member {to:x} is a learner: only a voter can lead"),
                })
            }
            Some(_) => {}
        }
        let leader = self.leader_endpoint(&members.members)?;
        let request = rpc::MoveLeaderRequest {
            targetID: to,
            ..Default::default()
        };
        self.caller
            .unary_on(&leader, Rpc::MoveLeader, self.timeout, |s, o| {
                s.maintenance.move_leader_async_opt(&request, o)
            })
            .map(drop)
    }

    /// The endpoint of the leader: asked of the members the client uses, then found among
    /// the endpoints the client uses or the leader's own client URLs.
    fn leader_endpoint(&self, members: &[crate::Member]) -> Result<String> {
        let endpoints = self.caller.endpoint_members()?;
        let mut last = None;
        for (endpoint, _) in &endpoints {
            let status = match self.status(endpoint) {
                Ok(status) => status,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            if status.leader == 0 {
                continue;
            }
            if status.is_leader() {
                return Ok(endpoint.clone());
            }
            if let Some((known, _)) = endpoints.iter().find(|(_, id)| *id == status.leader) {
                return Ok(known.clone());
            }
            let urls = members
                .iter()
                .find(|m| m.id == status.leader)
                .map(|m| m.client_urls.clone())
                .unwrap_or_default();
            if let Some(target) = urls.iter().find_map(|u| crate::call::target_of(u)) {
                return Ok(target);
            }
        }
        Err(last.unwrap_or_else(|| Error::InvalidResponse {
            reason: "no member the client reaches knows a leader".to_owned(),
        }))
    }

    /// Checks that the cluster runs etcd 3.6 or later, which downgrades need.
    fn downgrade(
        &self,
        action: rpc::DowngradeRequest_DowngradeAction,
        version: &str,
    ) -> Result<String> {
        let endpoints = self.caller.endpoint_members()?;
        let first = endpoints
            .first()
            .map(|(e, _)| e.clone())
            .unwrap_or_default();
        let status = self.status(&first)?;
        if major_minor(&status.version).is_some_and(|v| v < (3, 6)) {
            return Err(Error::NotSupported {
                endpoint: first,
                detail: format!(
                    "downgrades need etcd 3.6 or later; the member runs {}",
                    status.version
                ),
            });
        }
        let request = rpc::DowngradeRequest {
            action,
            version: version.to_owned(),
            ..Default::default()
        };
        let r = self.caller.unary(Rpc::Downgrade, self.timeout, |s, o| {
            s.maintenance.downgrade_async_opt(&request, o)
        })?;
        Ok(r.version)
    }

    /// Asks whether the cluster may go down to `version` (`major.minor`, such as `3.5`);
    /// returns the cluster's version. etcd 3.6 or later ([`Error::NotSupported`] before).
    pub fn downgrade_validate(&self, version: &str) -> Result<String> {
        self.downgrade(rpc::DowngradeRequest_DowngradeAction::VALIDATE, version)
    }

    /// Starts a downgrade of the cluster to `version`; returns the cluster's version.
    pub fn downgrade_enable(&self, version: &str) -> Result<String> {
        self.downgrade(rpc::DowngradeRequest_DowngradeAction::ENABLE, version)
    }

    /// Cancels the downgrade under way; returns the cluster's version.
    pub fn downgrade_cancel(&self) -> Result<String> {
        self.downgrade(rpc::DowngradeRequest_DowngradeAction::CANCEL, "")
    }

    /// Streams a snapshot of the database of the member at `endpoint` into `out`, and
    /// verifies it: the member's last message is the SHA-256 of everything before it,
    /// which is checked, as are the sizes it announces. `out` receives what `etcdutl
    /// snapshot restore` takes: the database, then its 32-byte digest. A stream that
    /// breaks, or a digest that does not match, fails [`Error::SnapshotInvalid`]:
    /// whatever `out` has received is not a snapshot. Each wait for the next chunk is
    /// bounded by the handle's timeout, not the whole snapshot.
    pub fn snapshot(&self, endpoint: &str, out: &mut dyn Write) -> Result<SnapshotInfo> {
        self.snapshot_with_progress(endpoint, out, &mut |_, _| {})
    }

    /// [`Maintenance::snapshot`], calling `progress(bytes so far, database size)` after
    /// each chunk written (a progress bar).
    pub fn snapshot_with_progress(
        &self,
        endpoint: &str,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<SnapshotInfo> {
        let request = rpc::SnapshotRequest::new();
        let mut stream: ServerStream<rpc::SnapshotResponse> =
            self.caller
                .server_stream_on(endpoint, Rpc::Snapshot, self.timeout, |s, o| {
                    s.maintenance.snapshot_opt(&request, o)
                })?;
        let endpoint = stream.endpoint().to_owned();
        let invalid = |reason: String| Error::SnapshotInvalid {
            endpoint: endpoint.clone(),
            reason,
        };
        let mut hasher = Sha256::new();
        let mut total: Option<u64> = None;
        let mut written = 0u64;
        let mut version = None;
        loop {
            let message = stream
                .next()
                .map_err(|e| invalid(format!("the stream broke after {written} bytes: {e}")))?
                .ok_or_else(|| {
                    invalid(format!(
                        "the stream ended after {written} bytes, without its digest"
                    ))
                })?;
            if !message.version.is_empty() {
                version = Some(message.version.clone());
            }
            let blob = &message.blob;
            let size = *total.get_or_insert(written + blob.len() as u64 + message.remaining_bytes);
            if written == size {
                // Everything announced has come: this is the digest, and the last message.
                let expected: [u8; 32] = std::mem::take(&mut hasher).finalize().into();
                if blob.as_slice() != expected {
                    return Err(invalid(format!(
                        "its SHA-256 does not match the {written} bytes received"
                    )));
                }
                write_all(out, blob, &endpoint)?;
                if stream
                    .next()
                    .map_err(|e| invalid(format!("after its digest: {e}")))?
                    .is_some()
                {
                    return Err(invalid("more came after its digest".to_owned()));
                }
                out.flush().map_err(|source| Error::Io {
                    context: format!("flushing the snapshot from {endpoint}"),
                    source,
                })?;
                return Ok(SnapshotInfo {
                    endpoint,
                    size,
                    sha256: expected,
                    version,
                });
            }
            if blob.is_empty() || written + blob.len() as u64 + message.remaining_bytes != size {
                return Err(invalid(format!(
                    "a chunk of {} bytes after {written} says {} remain, of {size}",
                    blob.len(),
                    message.remaining_bytes
                )));
            }
            hasher.update(blob);
            write_all(out, blob, &endpoint)?;
            written += blob.len() as u64;
            progress(written, size);
        }
    }

    /// Takes a verified snapshot of the member at `endpoint` into the file `path`: written
    /// to `path` + `.part`, synced, and renamed to `path` only once verified (then the
    /// folder is synced too). A failed snapshot leaves no file at `path` and removes the
    /// `.part`.
    pub fn snapshot_to_file(&self, endpoint: &str, path: impl AsRef<Path>) -> Result<SnapshotInfo> {
        self.snapshot_to_file_with_progress(endpoint, path, &mut |_, _| {})
    }

    /// [`Maintenance::snapshot_to_file`], calling `progress(bytes so far, database size)`
    /// after each chunk written.
    pub fn snapshot_to_file_with_progress(
        &self,
        endpoint: &str,
        path: impl AsRef<Path>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<SnapshotInfo> {
        let path = path.as_ref();
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let io = |what: &str, p: &Path| {
            let context = format!("{what} {}", p.display());
            move |source| Error::Io { context, source }
        };
        let result = (|| {
            let mut file = fs::File::create(&part).map_err(io("creating", &part))?;
            let mut out = std::io::BufWriter::new(&mut file);
            let info = self.snapshot_with_progress(endpoint, &mut out, progress)?;
            drop(out);
            file.sync_all().map_err(io("syncing", &part))?;
            drop(file);
            fs::rename(&part, path).map_err(io("renaming to", path))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io("syncing", dir))?;
            }
            Ok(info)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&part);
        }
        result
    }
}

/// Writes a chunk of a snapshot.
fn write_all(out: &mut dyn Write, blob: &[u8], endpoint: &str) -> Result<()> {
    out.write_all(blob).map_err(|source| Error::Io {
        context: format!("writing the snapshot from {endpoint}"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::major_minor;

    #[test]
    fn versions_are_read_to_their_minor() {
        assert_eq!(major_minor("3.4.23"), Some((3, 4)));
        assert_eq!(major_minor("3.6.0-alpha.0"), Some((3, 6)));
        assert_eq!(major_minor("3"), None);
        assert_eq!(major_minor(""), None);
    }
}
