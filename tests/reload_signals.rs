//! RELOAD / SIGHUP (databases and users added, changed and removed while other clients keep
//! working; a bad config refused and the old one kept) and every signal's meaning.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use nix::sys::signal::Signal;

use common::admin::{ADMIN, ADMIN_PASS, admin_config, admin_connect, admin_query, show};
use common::bouncer::{Bouncer, BouncerConfig, connect_conninfo, error_text, fill};
use common::client::first_value;
use common::pg::{PgCluster, TRUST_PASS, TRUST_USER};
use common::wait;

const WAIT: Duration = Duration::from_secs(20);

/// Rewrites the bouncer's pgbouncer.ini and users.txt from `cfg`.
fn rewrite(b: &Bouncer, cfg: &BouncerConfig) {
    std::fs::write(b.ini_path(), fill(&cfg.ini_template(), b.dir(), b.port())).expect("ini");
    std::fs::write(b.users_path(), fill(&cfg.users_txt(), b.dir(), b.port())).expect("users");
}

async fn login(
    b: &Bouncer,
    user: &str,
    pass: &str,
    db: &str,
) -> Result<tokio_postgres::Client, String> {
    connect_conninfo(&b.conninfo(user, pass, db))
        .await
        .map(|(c, _)| c)
        .map_err(|e| error_text(&e))
}

#[tokio::test]
async fn sighup_with_new_users_txt_password_keeps_sessions() {
    let b = admin_config(&[]).start();
    let existing = login(&b, TRUST_USER, TRUST_PASS, "testdb")
        .await
        .expect("login");
    first_value(&existing, "SELECT 1").await.expect("works");

    let pg = PgCluster::shared();
    let cfg = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .database(format!("otherdb = {}", pg.connstr("testdb")))
        .auth(TRUST_USER, "rotated-pass")
        .auth(ADMIN, ADMIN_PASS)
        .set("admin_users", ADMIN);
    rewrite(&b, &cfg);
    b.send_signal(Signal::SIGHUP);
    assert!(
        b.wait_for_log("configuration reloaded", WAIT),
        "{}",
        b.log()
    );

    let fresh = login(&b, TRUST_USER, "rotated-pass", "testdb")
        .await
        .unwrap_or_else(|e| panic!("new password: {e}\n{}", b.log()));
    first_value(&fresh, "SELECT 1")
        .await
        .expect("new session works");
    let old = login(&b, TRUST_USER, TRUST_PASS, "testdb")
        .await
        .map(|_| ());
    assert!(old.is_err_and(|e| e.contains("password authentication failed")));
    first_value(&existing, "SELECT 2")
        .await
        .expect("existing session kept");
}

#[tokio::test]
async fn reload_adds_changes_and_removes_databases_and_users() {
    let b = admin_config(&[]).start();
    let keeper = login(&b, TRUST_USER, TRUST_PASS, "otherdb")
        .await
        .expect("login");
    let keeper_pid = first_value(&keeper, "SELECT pg_backend_pid()")
        .await
        .expect("pid");
    let doomed_pool_client = login(&b, TRUST_USER, TRUST_PASS, "testdb")
        .await
        .expect("login");
    first_value(&doomed_pool_client, "SELECT 1")
        .await
        .expect("works");

    let pg = PgCluster::shared();
    let cfg = BouncerConfig::new()
        // otherdb changes (pool_size), testdb is removed, newdb (forced user) is added
        .database(format!("otherdb = {} pool_size=3", pg.connstr("testdb")))
        .database(format!(
            "newdb = {} user={TRUST_USER}",
            pg.connstr("testdb")
        ))
        .auth(TRUST_USER, TRUST_PASS)
        .auth(ADMIN, ADMIN_PASS)
        .auth("carol", "carol-pass")
        .set("admin_users", ADMIN);
    rewrite(&b, &cfg);
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    admin_query(&admin, "RELOAD")
        .await
        .unwrap_or_else(|e| panic!("RELOAD: {e}\n{}", b.log()));

    // the existing client keeps working throughout, on its own server
    assert_eq!(
        first_value(&keeper, "SELECT pg_backend_pid()")
            .await
            .expect("keeper"),
        keeper_pid
    );
    // added database and added user
    let carol = login(&b, "carol", "carol-pass", "newdb")
        .await
        .unwrap_or_else(|e| panic!("carol on newdb: {e}\n{}", b.log()));
    assert_eq!(
        first_value(&carol, "SELECT current_user").await.expect("q"),
        TRUST_USER
    );
    // removed database
    let e = login(&b, TRUST_USER, TRUST_PASS, "testdb")
        .await
        .map(|_| ());
    assert!(
        e.as_ref()
            .is_err_and(|e| e.contains("no such database: testdb")),
        "{e:?}"
    );
    let dbs = admin_query(&admin, "SHOW DATABASES").await.expect("dbs");
    assert!(dbs.row_where("name", "testdb").is_none(), "{dbs:?}");
    assert_eq!(
        dbs.get("name", "otherdb", "pool_size").as_deref(),
        Some("3")
    );
    assert!(dbs.row_where("name", "newdb").is_some());
    // the changed pool's server is closed when the keeper releases it
    drop(keeper);
    let fresh = login(&b, TRUST_USER, TRUST_PASS, "otherdb")
        .await
        .expect("login");
    first_value(&fresh, "SELECT 1")
        .await
        .expect("changed db works");
}

#[tokio::test]
async fn bad_config_is_refused_and_the_old_one_kept() {
    let b = admin_config(&[]).start();
    let good_ini = std::fs::read_to_string(b.ini_path()).expect("ini");
    std::fs::write(b.ini_path(), format!("{good_ini}\nlisten_backlog = lots\n")).expect("ini");
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    let e = admin_query(&admin, "RELOAD").await.expect_err("refused");
    assert!(
        e.contains("RELOAD failed, see logs for additional details"),
        "{e}"
    );
    assert!(
        b.log().contains("config file loading failed"),
        "{}",
        b.log()
    );
    // SIGHUP with the same bad file: logged, still running on the old config
    b.send_signal(Signal::SIGHUP);
    assert!(b.wait_for_log("got SIGHUP", WAIT));
    let c = login(&b, TRUST_USER, TRUST_PASS, "testdb")
        .await
        .expect("old config serves");
    first_value(&c, "SELECT 1").await.expect("works");
}

#[tokio::test]
async fn sigusr1_pauses_and_sigusr2_resumes() {
    let b = admin_config(&[]).start();
    let bref = &b;
    b.send_signal(Signal::SIGUSR1);
    assert!(
        wait::until_async(WAIT, || async move {
            show(bref, "SHOW STATE")
                .await
                .get("key", "paused", "value")
                .as_deref()
                == Some("yes")
        })
        .await
    );
    b.send_signal(Signal::SIGUSR2);
    assert!(
        wait::until_async(WAIT, || async move {
            show(bref, "SHOW STATE")
                .await
                .get("key", "active", "value")
                .as_deref()
                == Some("yes")
        })
        .await
    );
    let c = login(&b, TRUST_USER, TRUST_PASS, "testdb")
        .await
        .expect("login");
    first_value(&c, "SELECT 1")
        .await
        .expect("works after resume");
}

#[tokio::test]
async fn sigterm_waits_for_clients_and_a_second_one_exits() {
    let mut b = admin_config(&[]).start();
    let c = login(&b, TRUST_USER, TRUST_PASS, "testdb")
        .await
        .expect("login");
    first_value(&c, "SELECT 1").await.expect("works");
    b.send_signal(Signal::SIGTERM);
    assert!(b.wait_for_log("got SIGTERM", WAIT));
    first_value(&c, "SELECT 2")
        .await
        .expect("clients keep working");
    assert!(
        login(&b, TRUST_USER, TRUST_PASS, "testdb").await.is_err(),
        "no new TCP clients"
    );
    let (admin, _t) = connect_conninfo(&b.conninfo_unix(ADMIN, ADMIN_PASS, "pgbouncer"))
        .await
        .unwrap_or_else(|e| panic!("admin during shutdown: {}\n{}", error_text(&e), b.log()));
    admin_query(&admin, "SHOW CLIENTS")
        .await
        .expect("admin answers");
    b.send_signal(Signal::SIGTERM);
    assert!(
        b.wait_exit(WAIT).is_some(),
        "second SIGTERM exits\n{}",
        b.log()
    );
}

#[tokio::test]
async fn sigint_waits_for_servers_then_exits() {
    let mut b = admin_config(&[]).start();
    let (c, task) = b
        .connect(TRUST_USER, TRUST_PASS, "testdb")
        .await
        .expect("login");
    first_value(&c, "SELECT 1").await.expect("works");
    b.send_signal(Signal::SIGINT);
    assert!(b.wait_for_log("got SIGINT", WAIT));
    // session pooling: the linked server stays until its client leaves
    first_value(&c, "SELECT 2")
        .await
        .expect("linked client keeps working");
    drop(c);
    let _ = task.await;
    assert!(
        b.wait_exit(WAIT).is_some_and(|s| s.success()),
        "exits once servers are released\n{}",
        b.log()
    );
}

#[tokio::test]
async fn sigquit_exits_at_once() {
    let mut b = admin_config(&[]).start();
    let _c = login(&b, TRUST_USER, TRUST_PASS, "testdb")
        .await
        .expect("login");
    b.send_signal(Signal::SIGQUIT);
    assert!(
        b.wait_exit(WAIT).is_some(),
        "SIGQUIT exits with clients connected"
    );
}

#[tokio::test]
async fn transaction_mode_client_follows_a_changed_database_after_reload() {
    let pg = PgCluster::shared();
    let base = || {
        BouncerConfig::new()
            .auth(TRUST_USER, TRUST_PASS)
            .set("pool_mode", "transaction")
    };
    let cfg = base().database(format!("app = {}", pg.connstr("testdb")));
    let b = cfg.start();
    let c = login(&b, TRUST_USER, TRUST_PASS, "app")
        .await
        .expect("login");
    assert_eq!(
        first_value(&c, "SELECT current_database()").await.unwrap(),
        "testdb"
    );
    // the same client-facing name now points at another database
    let changed = base().database(format!("app = {}", pg.connstr("otherdb")));
    rewrite(&b, &changed);
    b.send_signal(Signal::SIGHUP);
    assert!(
        b.wait_for_log("configuration reloaded", WAIT),
        "{}",
        b.log()
    );
    assert_eq!(
        first_value(&c, "SELECT current_database()").await.unwrap(),
        "otherdb",
        "the connected client's next transaction uses the new definition\n{}",
        b.log()
    );
}
