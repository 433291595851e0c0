//! Restoring a member's data from a snapshot, with the tool that sits beside the etcd
//! binary: `etcd-restore` (this repository's `scripts/etcd-restore`, etcdutl's restore of
//! the server's own version) or, beside etcd 3.4, `etcdctl snapshot restore`.

use std::path::Path;
use std::process::Command;

use super::error::LaunchError;

/// Restores `snapshot` into the data directory `data_dir` of member `name`, reached by its
/// peers at `peer_url`, in a cluster of `initial_cluster` (`name=url,...`).
pub(crate) fn restore(
    etcd: &Path,
    snapshot: &Path,
    data_dir: &Path,
    name: &str,
    peer_url: &str,
    initial_cluster: &str,
) -> Result<(), LaunchError> {
    let beside = |tool: &str| etcd.parent().map(|d| d.join(tool)).filter(|p| p.is_file());
    let mut command = if let Some(tool) = beside("etcd-restore") {
        let mut command = Command::new(tool);
        command
            .arg(snapshot)
            .arg(data_dir)
            .args([name, peer_url, initial_cluster]);
        command
    } else if let Some(etcdctl) = beside("etcdctl") {
        let mut command = Command::new(etcdctl);
        command
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "restore"])
            .arg(snapshot)
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--name={name}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg("--initial-cluster-token=etcd-restore");
        command
    } else {
        return Err(LaunchError::RestoreToolMissing {
            etcd: etcd.display().to_string(),
        });
    };
    let output = command
        .output()
        .map_err(|e| LaunchError::io("running the snapshot restore tool", e))?;
    if !output.status.success() {
        return Err(LaunchError::StartFailed {
            reason: format!(
                "restoring {} for member {name} failed ({})",
                snapshot.display(),
                output.status
            ),
            logs: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}
