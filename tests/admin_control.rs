//! Admin console control commands against real clients: PAUSE / RESUME, KILL, KILL_CLIENT,
//! DISABLE / ENABLE, RECONNECT and WAIT_CLOSE, SUSPEND, SHUTDOWN WAIT_FOR_CLIENTS.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::admin::{ADMIN, ADMIN_PASS, admin_config, admin_connect, admin_query, show};
use common::bouncer::{Bouncer, connect_conninfo, error_text};
use common::client::first_value;
use common::pg::{TRUST_PASS, TRUST_USER};
use common::wait;

const WAIT: Duration = Duration::from_secs(20);

async fn client(b: &Bouncer, db: &str) -> tokio_postgres::Client {
    match b.connect(TRUST_USER, TRUST_PASS, db).await {
        Ok((c, _)) => c,
        Err(e) => panic!("login to {db}: {}\n{}", error_text(&e), b.log()),
    }
}

/// `col` of the (db, trust_user) row of SHOW POOLS.
async fn pool_value(b: &Bouncer, db: &str, col: &str) -> i64 {
    let t = show(b, "SHOW POOLS").await;
    let c = t.col(col);
    t.rows
        .iter()
        .find(|r| r[0].as_deref() == Some(db) && r[1].as_deref() == Some(TRUST_USER))
        .and_then(|r| r[c].as_deref().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[tokio::test]
async fn pause_holds_new_work_until_resume() {
    let b = admin_config(&[]).start();
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    // a finished session leaves an idle server; PAUSE closes it and returns
    let c = client(&b, "testdb").await;
    first_value(&c, "SELECT 1").await.expect("query");
    drop(c);
    let bref = &b;
    assert!(
        wait::until_async(WAIT, || async move {
            pool_value(bref, "testdb", "cl_active").await == 0
        })
        .await
    );
    admin_query(&admin, "PAUSE testdb").await.expect("PAUSE");
    let dbs = admin_query(&admin, "SHOW DATABASES").await.expect("dbs");
    assert_eq!(dbs.get("name", "testdb", "paused").as_deref(), Some("1"));
    assert_eq!(
        dbs.get("name", "testdb", "current_connections").as_deref(),
        Some("0")
    );

    let waiting = tokio::spawn({
        let conninfo = b.conninfo(TRUST_USER, TRUST_PASS, "testdb");
        async move {
            let (c, _t) = connect_conninfo(&conninfo)
                .await
                .map_err(|e| error_text(&e))?;
            first_value(&c, "SELECT 42")
                .await
                .map_err(|e| format!("{e:?}"))
        }
    });
    assert!(
        wait::until_async(WAIT, || async move {
            pool_value(bref, "testdb", "cl_waiting").await == 1
        })
        .await,
        "the new client waits while paused\n{}",
        b.log()
    );
    // other databases are not paused
    let other = client(&b, "otherdb").await;
    first_value(&other, "SELECT 1")
        .await
        .expect("otherdb works");

    admin_query(&admin, "RESUME testdb").await.expect("RESUME");
    let got = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("finishes after RESUME")
        .expect("task");
    assert_eq!(got.as_deref(), Ok("42"));
    let e = admin_query(&admin, "RESUME testdb")
        .await
        .expect_err("not paused");
    assert!(e.contains("database testdb is not paused"), "{e}");
}

#[tokio::test]
async fn global_pause_and_suspend_show_in_state() {
    let b = admin_config(&[]).start();
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    admin_query(&admin, "PAUSE").await.expect("PAUSE");
    let st = admin_query(&admin, "SHOW STATE").await.expect("state");
    assert_eq!(st.get("key", "paused", "value").as_deref(), Some("yes"));
    let e = admin_query(&admin, "PAUSE").await.expect_err("twice");
    assert!(e.contains("already suspended/paused"), "{e}");
    admin_query(&admin, "RESUME").await.expect("RESUME");
    let st = admin_query(&admin, "SHOW STATE").await.expect("state");
    assert_eq!(st.get("key", "active", "value").as_deref(), Some("yes"));
}

#[tokio::test]
async fn kill_client_disconnects_only_that_client() {
    let b = admin_config(&[]).start();
    let victim = client(&b, "testdb").await;
    let bystander = client(&b, "testdb").await;
    first_value(&victim, "SELECT 1")
        .await
        .expect("victim works");
    first_value(&bystander, "SELECT 1")
        .await
        .expect("bystander works");
    let clients = show(&b, "SHOW CLIENTS").await;
    let ids: Vec<String> = clients
        .rows
        .iter()
        .filter(|r| r[clients.col("database")].as_deref() == Some("testdb"))
        .filter_map(|r| r[clients.col("id")].clone())
        .collect();
    assert_eq!(ids.len(), 2, "{clients:?}");
    // ids grow with connection order: the first is the victim
    let mut sorted: Vec<u64> = ids.iter().filter_map(|i| i.parse().ok()).collect();
    sorted.sort();
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    admin_query(&admin, &format!("KILL_CLIENT {}", sorted[0]))
        .await
        .expect("KILL_CLIENT");
    let victim_ref = &victim;
    assert!(
        wait::until_async(WAIT, || async move {
            victim_ref.simple_query("SELECT 1").await.is_err()
        })
        .await,
        "the killed client is gone"
    );
    first_value(&bystander, "SELECT 2")
        .await
        .expect("bystander unaffected");
    assert!(b.log().contains("admin forced disconnect") || victim.is_closed());
}

#[tokio::test]
async fn kill_db_drops_clients_and_pauses_until_resume() {
    let b = admin_config(&[]).start();
    let doomed = client(&b, "testdb").await;
    first_value(&doomed, "SELECT 1").await.expect("works");
    let other = client(&b, "otherdb").await;
    first_value(&other, "SELECT 1").await.expect("works");
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    admin_query(&admin, "KILL testdb").await.expect("KILL");
    let doomed_ref = &doomed;
    assert!(
        wait::until_async(WAIT, || async move {
            doomed_ref.simple_query("SELECT 1").await.is_err()
        })
        .await,
        "testdb client dropped"
    );
    first_value(&other, "SELECT 1")
        .await
        .expect("otherdb untouched");
    let bref = &b;
    assert!(
        wait::until_async(WAIT, || async move {
            let d = show(bref, "SHOW DATABASES").await;
            d.get("name", "testdb", "current_connections").as_deref() == Some("0")
                && d.get("name", "testdb", "paused").as_deref() == Some("1")
        })
        .await,
        "servers closed and the database paused"
    );
    admin_query(&admin, "RESUME testdb").await.expect("RESUME");
    let again = client(&b, "testdb").await;
    first_value(&again, "SELECT 1")
        .await
        .expect("works after RESUME");
}

#[tokio::test]
async fn disable_refuses_new_clients_until_enable() {
    let b = admin_config(&[]).start();
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    let existing = client(&b, "testdb").await;
    admin_query(&admin, "DISABLE testdb")
        .await
        .expect("DISABLE");
    let e = b
        .connect(TRUST_USER, TRUST_PASS, "testdb")
        .await
        .map(|_| ())
        .expect_err("disabled");
    assert!(
        error_text(&e).contains("database \"testdb\" is disabled"),
        "{}",
        error_text(&e)
    );
    first_value(&existing, "SELECT 1")
        .await
        .expect("existing clients keep working");
    admin_query(&admin, "ENABLE testdb").await.expect("ENABLE");
    let c = client(&b, "testdb").await;
    first_value(&c, "SELECT 1")
        .await
        .expect("works after ENABLE");
}

#[tokio::test]
async fn reconnect_closes_servers_at_release() {
    let b = admin_config(&[("default_pool_size", "1")]).start();
    let c = client(&b, "testdb").await;
    let pid1 = first_value(&c, "SELECT pg_backend_pid()")
        .await
        .expect("pid");
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    admin_query(&admin, "RECONNECT testdb")
        .await
        .expect("RECONNECT");
    let servers = admin_query(&admin, "SHOW SERVERS").await.expect("servers");
    assert_eq!(
        servers.get("remote_pid", &pid1, "close_needed").as_deref(),
        Some("1"),
        "{servers:?}"
    );
    // still linked: the client keeps its server until it leaves
    assert_eq!(
        first_value(&c, "SELECT pg_backend_pid()")
            .await
            .expect("pid"),
        pid1
    );
    drop(c);
    tokio::time::timeout(WAIT, admin_query(&admin, "WAIT_CLOSE testdb"))
        .await
        .expect("WAIT_CLOSE returns once the server is closed")
        .expect("WAIT_CLOSE");
    let c2 = client(&b, "testdb").await;
    let pid2 = first_value(&c2, "SELECT pg_backend_pid()")
        .await
        .expect("pid");
    assert_ne!(pid1, pid2, "a new server after RECONNECT");
}

#[tokio::test]
async fn shutdown_wait_for_clients_keeps_admin_and_waits() {
    let mut b = admin_config(&[]).start();
    let (c, conn_task) = b
        .connect(TRUST_USER, TRUST_PASS, "testdb")
        .await
        .expect("login");
    first_value(&c, "SELECT 1").await.expect("works");
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    admin_query(&admin, "SHUTDOWN WAIT_FOR_CLIENTS")
        .await
        .expect("SHUTDOWN WAIT_FOR_CLIENTS");
    // new TCP clients are refused; the existing one keeps working
    assert!(b.connect(TRUST_USER, TRUST_PASS, "testdb").await.is_err());
    first_value(&c, "SELECT 2")
        .await
        .expect("existing client keeps working");
    // the admin console still answers over the unix socket
    let (unix_admin, _t) = connect_conninfo(&b.conninfo_unix(ADMIN, ADMIN_PASS, "pgbouncer"))
        .await
        .unwrap_or_else(|e| panic!("admin during shutdown: {}\n{}", error_text(&e), b.log()));
    admin_query(&unix_admin, "SHOW POOLS")
        .await
        .expect("SHOW during shutdown");
    drop(c);
    // let the connection task say goodbye before blocking in wait_exit
    let _ = conn_task.await;
    let st = b.wait_exit(WAIT);
    assert!(
        st.is_some_and(|s| s.success()),
        "exits once clients left\n{}",
        b.log()
    );
}

#[tokio::test]
async fn shutdown_exits_at_once() {
    let mut b = admin_config(&[]).start();
    let _c = client(&b, "testdb").await;
    // psql waits for the answer PgBouncer never sends: the connection ends with the process
    let _ = b.psql(ADMIN, ADMIN_PASS, "pgbouncer", &["-c", "SHUTDOWN"]);
    assert!(b.wait_exit(WAIT).is_some(), "SHUTDOWN exits\n{}", b.log());
}

#[tokio::test]
async fn server_fast_close_ends_idle_sessions_after_reconnect() {
    let b = admin_config(&[("pool_mode", "session"), ("server_fast_close", "1")]).start();
    let c = client(&b, "testdb").await;
    let keep = client(&b, "otherdb").await;
    assert_eq!(first_value(&c, "SELECT 1").await.unwrap(), "1");
    assert_eq!(first_value(&keep, "SELECT 1").await.unwrap(), "1");
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    admin_query(&admin, "RECONNECT testdb")
        .await
        .expect("reconnect");
    assert!(
        b.wait_for_log("closing because: database configuration changed", WAIT),
        "the idle session on testdb was closed\n{}",
        b.log()
    );
    assert!(
        c.batch_execute("SELECT 1").await.is_err(),
        "its client is gone too"
    );
    assert_eq!(
        first_value(&keep, "SELECT 1").await.unwrap(),
        "1",
        "other databases are untouched"
    );
}

#[tokio::test]
async fn idle_servers_past_server_check_delay_are_used() {
    let b = admin_config(&[("pool_mode", "transaction"), ("server_check_delay", "2")]).start();
    let c = client(&b, "testdb").await;
    assert_eq!(first_value(&c, "SELECT 1").await.unwrap(), "1");
    let mut used = 0;
    for _ in 0..40 {
        used = pool_value(&b, "testdb", "sv_used").await;
        if used == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(used, 1, "the idle server became used\n{}", b.log());
    assert_eq!(first_value(&c, "SELECT 2").await.unwrap(), "2");
    // checked, used, and idle again (not yet past the delay)
    assert_eq!(pool_value(&b, "testdb", "sv_used").await, 0);
    assert_eq!(pool_value(&b, "testdb", "sv_idle").await, 1);
}
