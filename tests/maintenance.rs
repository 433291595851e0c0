//! Maintenance against real etcd: each member's status (with the fields its version has),
//! hashes that agree, leader moves, the NOSPACE alarm raised and cleared, verified
//! snapshots, a snapshot cut mid-way that leaves no file, and downgrades.

mod common;

use std::time::Duration;

use etcd_blocking::testing::{Cluster, ServerVersion};
use etcd_blocking::{AlarmKind, CompactOptions, DeleteOptions, Error, ServerCode};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn every_member_reports_its_status_with_the_fields_of_its_version() {
    let cluster = common::cluster(3);
    let client = cluster.client().expect("client");
    client.kv().put("s", "x").expect("put");
    let leader = cluster.leader().expect("leader");
    let leader_id = cluster.member_id(leader).expect("the leader's ID");
    let version = cluster.server_version();
    let statuses = client.maintenance().statuses().expect("statuses");
    assert_eq!(statuses.len(), 3);
    let mut leaders = 0;
    for (i, (endpoint, status)) in statuses.into_iter().enumerate() {
        let status = status.unwrap_or_else(|e| panic!("{endpoint}: {e}"));
        assert_eq!(Some(status.member_id()), cluster.member_id(i), "{status:?}");
        assert_eq!(status.leader, leader_id, "{status:?}");
        assert!(status
            .version
            .starts_with(&format!("{}.{}.", version.major, version.minor)));
        assert!(status.db_size > 0 && status.raft_index > 0 && status.raft_term > 0);
        assert_eq!(status.is_learner, Some(false));
        assert!(status.raft_applied_index.is_some_and(|a| a > 0));
        assert!(status
            .db_size_in_use
            .is_some_and(|s| s > 0 && s <= status.db_size));
        assert_eq!(status.errors, Some(Vec::new()));
        let since_3_6 = version >= ServerVersion::new(3, 6, 0);
        assert_eq!(status.storage_version.is_some(), since_3_6, "{status:?}");
        assert_eq!(status.db_size_quota.is_some(), since_3_6, "{status:?}");
        assert_eq!(status.downgrade.is_some(), since_3_6, "{status:?}");
        leaders += usize::from(status.is_leader());
    }
    assert_eq!(leaders, 1, "one member says it leads");
    // What etcdctl (beside the etcd binary; scripts/deps.sh builds it) says agrees.
    for i in 0..3 {
        let ours = client
            .maintenance()
            .status(&cluster.endpoint(i))
            .expect("status");
        let theirs = etcdctl_status(&cluster, i);
        let number = |name: &str| json_number(&theirs, name);
        assert_eq!(number("member_id"), Some(ours.member_id()), "{theirs}");
        assert_eq!(number("leader"), Some(ours.leader), "{theirs}");
        assert_eq!(number("raftTerm"), Some(ours.raft_term), "{theirs}");
        assert!(
            theirs.contains(&format!("\"version\":\"{}\"", ours.version)),
            "{theirs}"
        );
    }
    let err = client
        .maintenance()
        .with_timeout(Duration::from_secs(1))
        .status("127.0.0.1:1")
        .expect_err("nobody there");
    assert_eq!(err.endpoint(), Some("127.0.0.1:1"), "{err:?}");
}

#[test]
fn hashes_agree_on_every_member_at_one_revision() {
    let cluster = common::cluster(3);
    let client = cluster.client().expect("client");
    let mut revision = 0;
    for i in 0..30 {
        revision = client
            .kv()
            .put(format!("h/{i}"), "v")
            .expect("put")
            .header()
            .revision();
    }
    let maintenance = client.maintenance();
    let hashes: Vec<_> = cluster
        .endpoints()
        .iter()
        .map(|e| {
            common::eventually("the member to have the revision", WAIT, || {
                maintenance.hash_kv(e, revision).ok()
            })
        })
        .collect();
    assert!(
        hashes.iter().all(|h| h.hash == hashes[0].hash),
        "{hashes:?}"
    );
    assert!(maintenance.hash(&cluster.endpoint(0)).is_ok());
    let err = maintenance
        .hash_kv(&cluster.endpoint(0), -1)
        .expect_err("negative");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}

#[test]
fn move_leader_moves_it_to_the_member_named() {
    let cluster = common::cluster(3);
    let client = cluster.client().expect("client");
    let leader = cluster.leader().expect("leader");
    let target = (leader + 1) % 3;
    let id = cluster.member_id(target).expect("ID");
    client.maintenance().move_leader(id).expect("move");
    common::eventually("the named member to lead", WAIT, || {
        (cluster.leader().ok()? == target).then_some(())
    });
    let err = client
        .maintenance()
        .move_leader(0x1234)
        .expect_err("no such member");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    common::eventually("a put after the move", WAIT, || {
        client.kv().put("after-move", "x").ok()
    });
}

#[test]
fn a_full_backend_raises_nospace_until_compaction_defragmentation_and_disarm() {
    let cluster = Cluster::builder()
        .arg("--quota-backend-bytes=2097152")
        .start()
        .expect("start");
    let client = cluster.client().expect("client");
    let kv = client.kv();
    let value = vec![b'x'; 100 * 1024];
    let mut full = None;
    for i in 0..200 {
        if let Err(e) = kv.put(format!("big/{i}"), value.clone()) {
            full = Some(e);
            break;
        }
    }
    let err = full.expect("a 2 MiB quota fills");
    assert_eq!(err.code(), Some(ServerCode::NoSpace), "{err:?}");
    let maintenance = client.maintenance();
    let alarms = maintenance.alarms().expect("alarms");
    assert!(
        alarms.iter().any(|a| a.kind == AlarmKind::NoSpace),
        "{alarms:?}"
    );
    let refused = kv
        .put("small", "x")
        .expect_err("writes are refused while it rings");
    assert_eq!(refused.code(), Some(ServerCode::NoSpace), "{refused:?}");
    // Deletes and compaction are allowed; then the space is given back and the alarm off.
    let deleted = kv
        .delete_with("big/", DeleteOptions::new().prefix())
        .expect("delete");
    kv.compact_with(
        deleted.header().revision(),
        CompactOptions::new().physical(),
    )
    .expect("compact");
    for endpoint in cluster.endpoints() {
        maintenance.defragment(&endpoint).expect("defragment");
    }
    let disarmed = maintenance.alarm_disarm_all().expect("disarm");
    assert!(
        disarmed.iter().any(|a| a.kind == AlarmKind::NoSpace),
        "{disarmed:?}"
    );
    assert!(maintenance.alarms().expect("alarms").is_empty());
    kv.put("small", "x").expect("writes are taken again");
}

#[test]
fn a_snapshot_is_verified_and_written_whole() {
    let cluster = common::cluster(1);
    let client = cluster.client().expect("client");
    let value = vec![b'v'; 8 * 1024];
    for i in 0..100 {
        client
            .kv()
            .put(format!("snap/{i}"), value.clone())
            .expect("put");
    }
    let path = cluster.dir().join("backup.db");
    let mut seen = Vec::new();
    let info = client
        .maintenance()
        .snapshot_to_file_with_progress(&cluster.endpoint(0), &path, &mut |done, of| {
            seen.push((done, of))
        })
        .expect("snapshot");
    let bytes = std::fs::read(&path).expect("the snapshot file");
    assert_eq!(
        bytes.len() as u64,
        info.size + 32,
        "the database and its digest"
    );
    assert_eq!(info.size % 512, 0, "whole pages");
    assert_eq!(&bytes[bytes.len() - 32..], info.sha256);
    assert!(seen.len() > 1, "progress came chunk by chunk: {seen:?}");
    assert_eq!(seen.last(), Some(&(info.size, info.size)));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    assert!(!std::path::Path::new(&part).exists(), "no .part is left");
}

#[test]
fn a_snapshot_cut_midway_leaves_no_file_that_looks_complete() {
    let cluster = common::cluster(1);
    let client = cluster.client().expect("client");
    let value = vec![b'v'; 64 * 1024];
    for i in 0..64 {
        client
            .kv()
            .put(format!("cut/{i}"), value.clone())
            .expect("put");
    }
    let path = cluster.dir().join("cut.db");
    let mut killed = false;
    let err = client
        .maintenance()
        .with_timeout(Duration::from_secs(5))
        .snapshot_to_file_with_progress(&cluster.endpoint(0), &path, &mut |_, _| {
            if !killed {
                killed = true;
                cluster.kill(0).expect("kill the member mid-way");
            }
        })
        .expect_err("a snapshot whose member died");
    assert!(killed, "the snapshot was under way when the member died");
    assert!(matches!(err, Error::SnapshotInvalid { .. }), "{err:?}");
    assert!(!path.exists(), "no file at the snapshot's path");
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    assert!(!std::path::Path::new(&part).exists(), "no .part is left");
}

#[test]
fn downgrades_are_validated_on_3_6_and_refused_before() {
    let cluster = common::cluster(1);
    let client = cluster.client().expect("client");
    let maintenance = client.maintenance();
    let version = cluster.server_version();
    if version < ServerVersion::new(3, 6, 0) {
        let err = maintenance.downgrade_validate("3.4").expect_err("too old");
        assert!(matches!(err, Error::NotSupported { .. }), "{err:?}");
        return;
    }
    let target = format!("{}.{}", version.major, version.minor - 1);
    let cluster_version = maintenance
        .downgrade_validate(&target)
        .unwrap_or_else(|e| panic!("validate {target}: {e}"));
    assert_eq!(
        cluster_version,
        format!("{}.{}", version.major, version.minor)
    );
    let too_far = format!("{}.{}", version.major, version.minor - 2);
    let err = maintenance
        .downgrade_validate(&too_far)
        .expect_err("two minor versions down");
    assert_eq!(
        err.code(),
        Some(ServerCode::InvalidDowngradeTargetVersion),
        "{err:?}"
    );
    // Enabled, the members say so in their status; cancelled, they stop saying it.
    maintenance.downgrade_enable(&target).expect("enable");
    let endpoint = cluster.endpoint(0);
    common::eventually("the status to show the downgrade", WAIT, || {
        let d = maintenance.status(&endpoint).ok()?.downgrade?;
        (d.enabled && d.target_version.starts_with(&target)).then_some(())
    });
    maintenance.downgrade_cancel().expect("cancel");
    common::eventually("the status to show no downgrade", WAIT, || {
        let d = maintenance.status(&endpoint).ok()?.downgrade?;
        (!d.enabled).then_some(())
    });
}

/// A snapshot taken while a writer puts keys, restored into a new cluster (with etcdutl's
/// restore of the same version, or etcd 3.4's etcdctl): every write acknowledged before
/// the snapshot began is there, and so is every later one up to the snapshot's revision,
/// each at the revision it was acknowledged at.
#[test]
fn a_snapshot_taken_under_writes_restores_every_acknowledged_write() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let cluster = common::cluster(3);
    let client = cluster.client().expect("client");
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (kv, acked, stop) = (client.kv(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w/{n:06}");
                n += 1;
                if let Ok(r) = kv.put(key.as_str(), vec![b'v'; 1024]) {
                    acked
                        .lock()
                        .expect("acked")
                        .push((key, r.header().revision()));
                }
            }
        })
    };
    common::eventually("200 writes before the snapshot", WAIT, || {
        (acked.lock().expect("acked").len() >= 200).then_some(())
    });
    let before = acked.lock().expect("acked").len();
    let path = cluster.dir().join("under-load.db");
    let info = client
        .maintenance()
        .snapshot_to_file(&cluster.endpoint(1), &path)
        .expect("snapshot under load");
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let acked = acked.lock().expect("acked").clone();
    assert!(info.size > 0);

    let restored = Cluster::builder()
        .restore_from(&path)
        .start()
        .expect("a cluster restored from the snapshot");
    let reader = restored.client().expect("a client of the restored cluster");
    let all = reader
        .kv()
        .get_with("w/", etcd_blocking::GetOptions::new().prefix())
        .expect("read the restored keys");
    let revision = all.header().revision();
    let found: std::collections::HashMap<String, i64> = all
        .kvs()
        .iter()
        .map(|kv| (kv.key_str().expect("key").to_owned(), kv.mod_revision()))
        .collect();
    for (i, (key, at)) in acked.iter().enumerate() {
        if i < before {
            assert!(
                *at <= revision,
                "{key} at {at} came before the snapshot of {revision}"
            );
        }
        if *at <= revision {
            assert_eq!(found.get(key), Some(at), "{key}, acknowledged at {at}");
        }
    }
    assert!(
        found.len() >= before,
        "{} restored, {before} before",
        found.len()
    );
}

/// `etcdctl endpoint status -w json` of member `index`, by the etcdctl beside the etcd
/// binary.
fn etcdctl_status(cluster: &Cluster, index: usize) -> String {
    let etcdctl = cluster.etcd_binary().with_file_name("etcdctl");
    assert!(
        etcdctl.is_file(),
        "no etcdctl beside {}: scripts/deps.sh builds one",
        cluster.etcd_binary().display()
    );
    let output = std::process::Command::new(&etcdctl)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", cluster.endpoint(index)))
        .args(["endpoint", "status", "-w", "json"])
        .output()
        .expect("run etcdctl");
    assert!(output.status.success(), "etcdctl: {output:?}");
    String::from_utf8(output.stdout).expect("etcdctl prints text")
}

/// The unsigned number after `"name":` in etcdctl's JSON.
fn json_number(json: &str, name: &str) -> Option<u64> {
    let at = json.find(&format!("\"{name}\":"))? + name.len() + 3;
    let digits: String = json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
