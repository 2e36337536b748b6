//! PgBouncer's wording around logins, which operators grep for: `closing because: <reason>
//! (age=Ns)` and `pooler error: <reason>` for refused clients, `server login failed: wrong
//! password type` for a secret that cannot answer the server, and clients already waiting
//! when a server login fails getting the server's own error (kill_pool_logins).
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::admin::{ADMIN, ADMIN_PASS, admin_connect, admin_query};
use common::bouncer::BouncerConfig;
use common::client::assert_login_fails;
use common::pg::{self, PgCluster};

#[tokio::test]
async fn refused_logins_are_logged_with_pgbouncers_words() {
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!("app = {}", pg.connstr("testdb")))
        .auth(pg::MD5_USER, pg::MD5_PASS)
        .start();
    assert_login_fails(&b, pg::MD5_USER, "wrong", "app").await;
    assert_login_fails(&b, pg::MD5_USER, pg::MD5_PASS, "ca_nosuchdb").await;
    let log = b.log();
    for line in [
        "closing because: password authentication failed (age=0s)",
        "pooler error: password authentication failed",
        "closing because: no such database: ca_nosuchdb (age=0s)",
    ] {
        assert!(log.contains(line), "missing {line:?}:\n{log}");
    }
}

#[tokio::test]
async fn a_scram_secret_without_client_keys_is_the_wrong_password_type() {
    let pg = PgCluster::shared();
    // the forced user's users.txt secret is a SCRAM verifier; a trust client brings no keys
    let b = BouncerConfig::new()
        .database(format!(
            "forced = {} user={}",
            pg.connstr("testdb"),
            pg::SCRAM_USER
        ))
        .set("auth_type", "trust")
        .auth(pg::SCRAM_USER, &pg.stored_secret(pg::SCRAM_USER))
        .auth(pg::TRUST_USER, "")
        .start();
    let f = assert_login_fails(&b, pg::TRUST_USER, "x", "forced").await;
    assert_eq!(f.message, "server login failed: wrong password type", "{f}");
    assert!(
        b.log().contains(
            "password is SCRAM secret but client authentication did not provide SCRAM keys"
        ),
        "{}",
        b.log()
    );
}

#[tokio::test]
async fn clients_waiting_when_a_login_fails_get_the_servers_error() {
    const ROLE: &str = "ca_victim";
    let pg = PgCluster::shared();
    pg.psql_super(&format!(
        "DROP ROLE IF EXISTS {ROLE}; CREATE ROLE {ROLE} LOGIN PASSWORD 'v1'"
    ));
    let b = BouncerConfig::new()
        .database(format!(
            "one = {} user={ROLE} pool_size=1",
            pg.connstr("testdb")
        ))
        .set("auth_type", "trust")
        .set("admin_users", ADMIN)
        .set("query_wait_timeout", "30")
        .auth(ROLE, "v1")
        .auth(pg::TRUST_USER, "")
        .auth(ADMIN, ADMIN_PASS)
        .start();
    // the pool's only server is held by this client
    let (holder, holder_task) = b
        .connect(pg::TRUST_USER, "x", "one")
        .await
        .expect("first client");
    holder.simple_query("SELECT 1").await.expect("query");
    pg.psql_super(&format!("ALTER ROLE {ROLE} PASSWORD 'v2'"));
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let conninfo = b.conninfo(pg::TRUST_USER, "x", "one");
            tokio::spawn(async move {
                let (c, _t) = common::bouncer::connect_conninfo(&conninfo)
                    .await
                    .map_err(|e| common::client::Failure::from_pg(&e))?;
                common::client::first_value(&c, "SELECT 1").await
            })
        })
        .collect();
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    // wait for both to queue (poll the console), then retire the server and free the slot
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let t = admin_query(&admin, "SHOW POOLS").await.expect("SHOW POOLS");
        if t.num("database", "one", "cl_waiting") == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", b.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    admin_query(&admin, "RECONNECT one")
        .await
        .expect("RECONNECT");
    drop(holder);
    let _ = holder_task.await;
    for w in waiters {
        let f = w.await.expect("task").expect_err("the login fails");
        assert_eq!(
            f.message,
            format!("password authentication failed for user \"{ROLE}\""),
            "{f}\n{}",
            b.log()
        );
    }
}

#[tokio::test]
async fn the_process_owner_on_the_console_is_not_counted_per_user() {
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!("app = {}", pg.connstr("testdb")))
        .set("max_user_client_connections", "1")
        .start();
    // two at once over the unix socket as `pgbouncer`, the process's own user: no password,
    // and no per-user count (PgBouncer's own-user login)
    let conninfo = b.conninfo_unix("pgbouncer", "x", "pgbouncer");
    let (first, _t1) = common::bouncer::connect_conninfo(&conninfo)
        .await
        .expect("first console");
    let (second, _t2) = common::bouncer::connect_conninfo(&conninfo)
        .await
        .unwrap_or_else(|e| panic!("second console: {e}\n{}", b.log()));
    for c in [&first, &second] {
        admin_query(c, "SHOW VERSION").await.expect("SHOW VERSION");
    }
}
