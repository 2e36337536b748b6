//! The admin console (`pgbouncer` database) through tokio-postgres and psql: who may log in,
//! simple protocol only, PgBouncer's grammar and errors, every SHOW's columns compared with
//! PgBouncer 1.25's, and counters / states moving as clients work.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::admin::{
    ADMIN, ADMIN_PASS, DATABASES_COLUMNS, POOLS_COLUMNS, SOCKET_COLUMNS, STATS_COLUMNS,
    USERS_COLUMNS, WATCHER, WATCHER_PASS, admin_config, admin_connect, admin_query, show,
};
use common::bouncer::{connect_conninfo, error_text};
use common::client::first_value;
use common::pg::{TRUST_PASS, TRUST_USER};
use common::wait;

const WAIT: Duration = Duration::from_secs(20);

fn names(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn show_commands_have_pgbouncer_columns_in_order() {
    let b = admin_config(&[]).start();
    let c = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    let q = |sql: &'static str| {
        let c = &c;
        async move {
            admin_query(c, sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    };
    assert_eq!(q("SHOW POOLS").await.columns, names(&POOLS_COLUMNS));
    assert_eq!(q("SHOW CLIENTS").await.columns, names(&SOCKET_COLUMNS));
    assert_eq!(q("SHOW SERVERS").await.columns, names(&SOCKET_COLUMNS));
    let dbs = q("SHOW DATABASES").await;
    assert_eq!(dbs.columns[..17], names(&DATABASES_COLUMNS)[..]);
    assert_eq!(
        dbs.columns[17], "server_krb_spn",
        "krbouncer's extras come last"
    );
    assert!(dbs.row_where("name", "testdb").is_some());
    assert!(dbs.row_where("name", "pgbouncer").is_some());
    assert_eq!(q("SHOW STATS").await.columns, names(&STATS_COLUMNS));
    assert_eq!(q("SHOW USERS").await.columns, names(&USERS_COLUMNS));
    let totals = q("SHOW STATS_TOTALS").await.columns;
    assert_eq!(
        totals[..12],
        names(&[
            "database",
            "server_assignment_count",
            "xact_count",
            "query_count",
            "bytes_received",
            "bytes_sent",
            "xact_time",
            "query_time",
            "wait_time",
            "client_parse_count",
            "server_parse_count",
            "bind_count"
        ])[..]
    );
    let averages = q("SHOW STATS_AVERAGES").await.columns;
    assert_eq!(
        averages[9..12],
        names(&[
            "avg_client_parse_count",
            "avg_server_parse_count",
            "avg_bind_count"
        ])[..]
    );
    let t = q("SHOW TOTALS").await;
    assert_eq!(t.columns, names(&["name", "value"]));
    assert!(t.row_where("name", "total_query_count").is_some());
    assert!(t.row_where("name", "avg_wait_time").is_some());
    assert_eq!(q("SHOW LISTS").await.columns, names(&["list", "items"]));
    assert_eq!(
        q("SHOW CONFIG").await.columns,
        names(&["key", "value", "default", "changeable"])
    );
    let state = q("SHOW STATE").await;
    assert_eq!(state.get("key", "active", "value").as_deref(), Some("yes"));
    assert_eq!(
        q("SHOW PEERS").await.columns,
        names(&["peer_id", "host", "port", "pool_size"])
    );
    assert_eq!(
        q("SHOW MEM").await.columns,
        names(&["name", "size", "used", "free", "memtotal"])
    );
    assert_eq!(
        q("SHOW DNS_HOSTS").await.columns,
        names(&["hostname", "ttl", "addrs"])
    );
    let sockets = q("SHOW SOCKETS").await.columns;
    assert_eq!(sockets[..21], names(&SOCKET_COLUMNS)[..]);
    assert_eq!(sockets[21], "recv_pos");
    let v = q("SHOW VERSION").await;
    assert!(
        v.rows[0][0]
            .as_deref()
            .unwrap_or("")
            .starts_with("PgBouncer "),
        "{v:?}"
    );
    // SELECT x is SHOW x; the fake driver parameters
    assert_eq!(q("SELECT pools;").await.columns, names(&POOLS_COLUMNS));
    let enc = q("SHOW client_encoding").await;
    assert_eq!(enc.rows[0][0].as_deref(), Some("UTF-8"));
    c.simple_query("SET client_encoding = 'UTF8'")
        .await
        .expect("fake SET is accepted");
    c.simple_query("SHOW HELP").await.expect("SHOW HELP");
}

#[tokio::test]
async fn states_and_counters_move_as_clients_work() {
    let b = admin_config(&[]).start();
    let before = show(&b, "SHOW STATS").await;
    let logins_before = before.num("database", "testdb", "total_client_login_count");

    let conninfo = format!(
        "{} application_name=watched_app",
        b.conninfo(TRUST_USER, TRUST_PASS, "testdb")
    );
    let (client, _task) = connect_conninfo(&conninfo).await.expect("login");
    let pid = first_value(&client, "SELECT pg_backend_pid()")
        .await
        .expect("query");

    let pools = show(&b, "SHOW POOLS").await;
    let row = pools
        .rows
        .iter()
        .find(|r| r[0].as_deref() == Some("testdb") && r[1].as_deref() == Some(TRUST_USER))
        .unwrap_or_else(|| panic!("testdb pool in {pools:?}"));
    assert_eq!(row[pools.col("cl_active")].as_deref(), Some("1"));
    assert_eq!(row[pools.col("sv_active")].as_deref(), Some("1"));
    assert_eq!(row[pools.col("pool_mode")].as_deref(), Some("session"));

    let clients = show(&b, "SHOW CLIENTS").await;
    let me = clients
        .row_where("application_name", "watched_app")
        .unwrap_or_else(|| panic!("our client in {clients:?}"))
        .clone();
    assert_eq!(me[clients.col("state")].as_deref(), Some("active"));
    assert_eq!(me[clients.col("database")].as_deref(), Some("testdb"));
    assert_eq!(me[clients.col("addr")].as_deref(), Some("127.0.0.1"));
    let servers = show(&b, "SHOW SERVERS").await;
    let srv = servers
        .row_where("remote_pid", &pid)
        .unwrap_or_else(|| panic!("server with pid {pid} in {servers:?}"));
    assert_eq!(srv[servers.col("state")].as_deref(), Some("active"));
    assert_eq!(
        srv[servers.col("link")],
        me[clients.col("ptr")],
        "server linked to our client"
    );

    let after = show(&b, "SHOW STATS").await;
    assert!(after.num("database", "testdb", "total_client_login_count") > logins_before);
    assert!(after.num("database", "testdb", "total_server_assignment_count") >= 1);

    drop(client);
    let b = &b;
    assert!(
        wait::until_async(WAIT, || async move {
            let p = show(b, "SHOW POOLS").await;
            p.rows.iter().any(|r| {
                r[0].as_deref() == Some("testdb")
                    && r[p.col("cl_active")].as_deref() == Some("0")
                    && r[p.col("sv_idle")].as_deref() == Some("1")
            })
        })
        .await,
        "after the client left its server is idle"
    );
}

#[tokio::test]
async fn access_is_checked_like_pgbouncer() {
    let b = admin_config(&[]).start();
    // a stats user may SHOW but not control
    let watcher = admin_connect(&b, WATCHER, WATCHER_PASS).await;
    admin_query(&watcher, "SHOW POOLS")
        .await
        .expect("stats user can SHOW");
    for cmd in [
        "PAUSE",
        "RESUME",
        "KILL testdb",
        "RELOAD",
        "SET default_pool_size = 3",
        "SHOW FDS",
    ] {
        let e = admin_query(&watcher, cmd).await.expect_err(cmd);
        assert!(e.contains("admin access needed"), "{cmd}: {e}");
    }
    // anyone else is not allowed in, whatever their password is
    let e = connect_conninfo(&b.conninfo(TRUST_USER, TRUST_PASS, "pgbouncer"))
        .await
        .map(|_| ())
        .expect_err("plain user refused");
    assert!(error_text(&e).contains("not allowed"), "{}", error_text(&e));
    let e = connect_conninfo(&b.conninfo(ADMIN, "wrong", "pgbouncer"))
        .await
        .map(|_| ())
        .expect_err("bad password refused");
    assert!(
        error_text(&e).contains("password authentication failed"),
        "{}",
        error_text(&e)
    );
}

#[tokio::test]
async fn grammar_errors_and_extended_protocol() {
    let b = admin_config(&[]).start();
    let c = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    let e = admin_query(&c, "FOO").await.expect_err("unknown");
    assert!(e.contains("invalid command 'FOO', use SHOW HELP;"), "{e}");
    let e = admin_query(&c, "SHOW NOTHING")
        .await
        .expect_err("unknown show");
    assert!(e.contains("invalid command"), "{e}");
    let e = admin_query(&c, "PAUSE nosuchdb").await.expect_err("no db");
    assert!(e.contains("no such database: nosuchdb"), "{e}");
    let e = admin_query(&c, "RESUME").await.expect_err("not paused");
    assert!(e.contains("pooler is not paused/suspended"), "{e}");
    let e = admin_query(&c, "DISABLE").await.expect_err("needs db");
    assert!(e.contains("a database is required"), "{e}");
    let e = admin_query(&c, "KILL_CLIENT abc")
        .await
        .expect_err("bad id");
    assert!(e.contains("invalid client pointer supplied"), "{e}");
    let e = admin_query(&c, "KILL_CLIENT 999999")
        .await
        .expect_err("no client");
    assert!(e.contains("client not found"), "{e}");
    // the session survives errors
    admin_query(&c, "SHOW VERSION").await.expect("still usable");
    // the extended protocol gets PgBouncer's error and a disconnect
    let e = c
        .query("SHOW POOLS", &[])
        .await
        .expect_err("extended refused");
    let text = error_text(&e);
    assert!(
        text.contains("extended query protocol not supported by admin console"),
        "{text}"
    );
}

#[tokio::test]
async fn psql_reads_the_console() {
    let b = admin_config(&[]).start();
    let out = b.psql(
        ADMIN,
        ADMIN_PASS,
        "pgbouncer",
        &["-c", "SHOW POOLS", "-c", "SHOW STATS"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    assert!(text.contains("cl_active"), "{text}");
    assert!(text.contains("total_query_count"), "{text}");
}

#[tokio::test]
async fn set_changes_the_running_config() {
    let b = admin_config(&[]).start();
    let c = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    admin_query(&c, "SET default_pool_size = 7")
        .await
        .expect("SET");
    let cfg = admin_query(&c, "SHOW CONFIG").await.expect("config");
    assert_eq!(
        cfg.get("key", "default_pool_size", "value").as_deref(),
        Some("7")
    );
    let e = admin_query(&c, "SET no_such_key = 1")
        .await
        .expect_err("unknown key");
    assert!(e.contains("SET failed"), "{e}");
}

#[tokio::test]
async fn process_owner_over_unix_socket_needs_no_password() {
    let b = admin_config(&[]).start();
    // the tests run as the bouncer's own OS user: PgBouncer's admin_pre_login rule
    let (c, _t) = connect_conninfo(&b.conninfo_unix("pgbouncer", "", "pgbouncer"))
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", error_text(&e), b.log()));
    admin_query(&c, "RECONNECT").await.expect("admin rights");
}

#[tokio::test]
async fn log_stats_lines_and_byte_counters() {
    let b = admin_config(&[("stats_period", "1"), ("log_stats", "1")]).start();
    let (c, task) = b
        .connect(TRUST_USER, TRUST_PASS, "testdb")
        .await
        .expect("login");
    first_value(&c, "SELECT repeat('x', 1000)")
        .await
        .expect("query");
    drop(c);
    let _ = task.await;
    assert!(
        b.wait_for_log(" xacts/s, ", WAIT),
        "a stats line every stats_period\n{}",
        b.log()
    );
    assert!(b.log().contains("stats: "), "{}", b.log());
    let b = &b;
    assert!(
        wait::until_async(WAIT, || async move {
            let t = show(b, "SHOW STATS_TOTALS").await;
            t.num("database", "testdb", "bytes_sent") > 1000
                && t.num("database", "testdb", "bytes_received") > 0
        })
        .await,
        "session bytes are counted when the session ends"
    );
}

#[tokio::test]
async fn transaction_pooling_counts_queries_and_unlinks_clients() {
    let b = admin_config(&[("pool_mode", "transaction")]).start();
    let (c, _t) = b
        .connect(TRUST_USER, TRUST_PASS, "testdb")
        .await
        .expect("login");
    for _ in 0..3 {
        first_value(&c, "SELECT 1").await.expect("query");
    }
    let b = &b;
    assert!(
        wait::until_async(WAIT, || async move {
            let t = show(b, "SHOW STATS").await;
            t.num("database", "testdb", "total_query_count") >= 3
                && t.num("database", "testdb", "total_xact_count") >= 3
                && t.num("database", "testdb", "total_server_assignment_count") >= 3
        })
        .await,
        "{:?}",
        show(b, "SHOW STATS").await
    );
    let clients = show(b, "SHOW CLIENTS").await;
    let mine = clients
        .rows
        .iter()
        .find(|r| r[clients.col("database")].as_deref() == Some("testdb"))
        .expect("our client");
    assert_eq!(mine[clients.col("state")].as_deref(), Some("idle"));
    assert_eq!(mine[clients.col("link")].as_deref(), Some(""));
    let pools = show(b, "SHOW POOLS").await;
    let row = pools
        .rows
        .iter()
        .find(|r| r[0].as_deref() == Some("testdb"))
        .expect("pool");
    assert_eq!(row[pools.col("pool_mode")].as_deref(), Some("transaction"));
    assert_eq!(row[pools.col("sv_idle")].as_deref(), Some("1"));
    assert_eq!(row[pools.col("sv_active")].as_deref(), Some("0"));
}
