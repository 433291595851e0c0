//! A backup: a snapshot of one member's database, streamed to a file with a progress bar,
//! verified against the SHA-256 the member sends at its end, and written so that a failed
//! snapshot never leaves a file that looks complete (a `.part`, synced, then renamed).
//!
//! With `ETCD_ENDPOINTS` unset it starts a throwaway local 3-member cluster and writes a
//! few megabytes into it first; set, it snapshots the first endpoint's member. The file
//! goes to `BACKUP_PATH` (default: `etcd-backup.db` in the system's temporary folder).

mod common;

use std::error::Error;
use std::io::Write;

use etcd_blocking::Client;

fn main() -> Result<(), Box<dyn Error>> {
    let (endpoints, cluster) = common::cluster()?;
    let client = Client::connect(&endpoints)?;
    if cluster.is_some() {
        let value = vec![b'x'; 16 * 1024];
        for i in 0..256 {
            client.kv().put(format!("backup/{i:04}"), value.clone())?;
        }
        println!("wrote 256 keys of 16 KiB to back up");
    }
    let path = std::env::var("BACKUP_PATH").map_or_else(
        |_| std::env::temp_dir().join("etcd-backup.db"),
        std::path::PathBuf::from,
    );
    let endpoint = &endpoints[0];
    let mut shown = 0;
    let info = client.maintenance().snapshot_to_file_with_progress(
        endpoint,
        &path,
        &mut |done, total| {
            // A bar of 40 marks, redrawn when it grows.
            let marks = (done * 40).checked_div(total).unwrap_or(40) as usize;
            if marks > shown || done == total {
                shown = marks;
                print!(
                    "\r[{:<40}] {:>6} of {} KiB",
                    "#".repeat(marks),
                    done / 1024,
                    total / 1024
                );
                let _ = std::io::stdout().flush();
            }
        },
    )?;
    println!();
    let digest: String = info.sha256.iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "snapshot of {} written to {}: {} bytes of database, SHA-256 {digest} (verified)",
        info.endpoint,
        path.display(),
        info.size
    );
    if cluster.is_some() {
        std::fs::remove_file(&path)?;
    }
    client.close()?;
    println!("backup example done");
    Ok(())
}
