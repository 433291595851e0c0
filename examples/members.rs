//! The members of a cluster and each one's status, as a table: who leads, each member's
//! version, raft term and index, database size (and how much of it is in use), and
//! whether it is a learner; then the alarms raised.
//!
//! With `ETCD_ENDPOINTS` unset it starts a throwaway local 3-member cluster (and adds a
//! learner to it, to show one); set, it reads the cluster at those endpoints and changes
//! nothing.

mod common;

use std::error::Error;

use etcd_blocking::Client;

fn main() -> Result<(), Box<dyn Error>> {
    let (endpoints, cluster) = common::cluster()?;
    let mut endpoints = endpoints;
    if let Some(cluster) = &cluster {
        let learner = cluster.add_learner()?;
        println!("added a learner, member {learner}");
        endpoints.push(cluster.endpoint(learner));
    }
    let client = Client::connect(&endpoints)?;
    let members = client.cluster().member_list()?;
    println!(
        "{:<18} {:<6} {:<8} {:<22} {:<8} {:>6} {:>8} {:>12}  client URLs",
        "member", "name", "role", "version", "leads", "term", "index", "db (in use)"
    );
    for member in &members.members {
        let role = if member.is_learner {
            "learner"
        } else {
            "voter"
        };
        // A member's status comes from the member itself, at one of its client URLs.
        let status = member
            .client_urls
            .first()
            .map(|url| client.maintenance().status(url));
        match status {
            Some(Ok(s)) => println!(
                "{:<18x} {:<6} {:<8} {:<22} {:<8} {:>6} {:>8} {:>12}  {}",
                member.id,
                member.name,
                role,
                s.version,
                if s.is_leader() { "leader" } else { "" },
                s.raft_term,
                s.raft_index,
                format!(
                    "{} ({})",
                    kib(s.db_size),
                    s.db_size_in_use.map_or("?".to_owned(), kib)
                ),
                member.client_urls.join(",")
            ),
            Some(Err(e)) => println!(
                "{:<18x} {:<6} {role:<8} no status: {e}",
                member.id, member.name
            ),
            None => println!("{:<18x} (not started yet)", member.id),
        }
    }
    let alarms = client.maintenance().alarms()?;
    if alarms.is_empty() {
        println!("no alarm raised");
    }
    for alarm in alarms {
        println!("alarm {:?} on member {:x}", alarm.kind, alarm.member_id);
    }
    client.close()?;
    println!("members example done");
    Ok(())
}

fn kib(bytes: i64) -> String {
    format!("{} KiB", bytes / 1024)
}
