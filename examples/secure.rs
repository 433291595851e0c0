//! A secure connection: mutual TLS and a user with a role that may only read a prefix.
//!
//! With `ETCD_ENDPOINTS` unset it starts a throwaway local 3-member cluster with client
//! and peer TLS, client certificates required, and auth on (a `root` user), all on
//! certificates the launcher makes for the run, and removes it at the end. (Against a
//! cluster of yours, build the `Tls` from your CA and certificate files instead, as the
//! crate docs show.)

use std::error::Error;

use etcd_blocking::testing::{Cluster, Validity};
use etcd_blocking::{Client, Permission, ServerCode};

fn main() -> Result<(), Box<dyn Error>> {
    let cluster = Cluster::builder()
        .members(3)
        .mutual_tls()
        .peer_tls()
        .auth("root-password")
        .start()?;
    println!(
        "started a throwaway 3-member etcd cluster with mutual TLS and auth at {}",
        cluster.endpoints().join(", ")
    );

    // Root: the launcher's client certificate, and the root user's password.
    let root = cluster.client()?;
    root.kv().put("config/greeting", "hello")?;
    root.kv().put("secrets/key", "do not read")?;
    let auth = root.auth();
    auth.role_add("config-reader")?;
    auth.role_grant_permission("config-reader", &Permission::read("config/").prefix())?;
    auth.user_add("app", "app-password")?;
    auth.user_grant_role("app", "config-reader")?;
    println!("root made the user app, who may read config/ and nothing else");

    // The application: its own client certificate, and its user.
    let authority = cluster.authority().ok_or("the cluster has TLS")?;
    let certificate = authority.client("app", Validity::Current)?;
    let app = Client::builder()
        .endpoints(cluster.endpoints())
        .tls(authority.tls(Some(&certificate)))
        .user("app", "app-password")
        .connect()?;
    let greeting = app
        .kv()
        .get_one("config/greeting")?
        .ok_or("the greeting is there")?;
    println!("app read config/greeting = {:?}", greeting.value_str()?);
    for denied in [
        app.kv().put("config/greeting", "changed").map(drop),
        app.kv().get("secrets/key").map(drop),
    ] {
        match denied {
            Err(e) if e.code() == Some(ServerCode::PermissionDenied) => {
                println!("app was refused, as it should be: {e}")
            }
            other => return Err(format!("expected a refusal, got {other:?}").into()),
        }
    }
    match Client::builder()
        .endpoints(cluster.endpoints())
        .tls(authority.tls(Some(&certificate)))
        .user("app", "wrong password")
        .connect()
    {
        Err(e) if e.code() == Some(ServerCode::AuthFailed) => {
            println!("a wrong password is refused at connect: {e}")
        }
        other => return Err(format!("expected AuthFailed, got {:?}", other.map(drop)).into()),
    }
    app.close()?;
    root.close()?;
    println!("secure example done");
    Ok(())
}
