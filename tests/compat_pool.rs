//! Pool behaviour PgBouncer 1.25's own test suite relies on: the default `server_check_query`,
//! waking clients queued behind a limit, retrying a failing server while clients wait, and
//! cancels that never cross from one client to another.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::bouncer::{Bouncer, BouncerConfig};
use common::client::{first_value, query_one};
use common::pg::{self, PgCluster};

const USER: &str = pg::TRUST_USER;
const PASS: &str = pg::TRUST_PASS;

/// `testdb` with the client's own user, trust_user in users.txt, plus `settings`.
fn bouncer(settings: &[(&str, &str)]) -> Bouncer {
    let pg = PgCluster::shared();
    let mut cfg = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(USER, PASS);
    for (k, v) in settings {
        cfg = cfg.set(k, v);
    }
    cfg.start()
}

async fn pid_via(b: &Bouncer) -> String {
    match query_one(b, USER, PASS, "testdb", "SELECT pg_backend_pid()").await {
        Ok(p) => p,
        Err(e) => panic!("{e:?}\n{}", b.log()),
    }
}

/// The default `<empty>` means "send an empty query", not the SQL text `<empty>`: with
/// `server_check_delay = 0` every reuse is checked, and the check must pass.
#[tokio::test]
async fn default_server_check_query_keeps_the_server() {
    let b = bouncer(&[("default_pool_size", "1"), ("server_check_delay", "0")]);
    let first = pid_via(&b).await;
    let second = pid_via(&b).await;
    assert_eq!(first, second, "checked server reused\n{}", b.log());
    assert!(!b.log().contains("server check failed"), "{}", b.log());
}

/// A `server_check_query` other than `<empty>` runs as SQL.
#[tokio::test]
async fn server_check_query_custom_sql_runs() {
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(USER, PASS)
        .set("default_pool_size", "1")
        .set("server_check_delay", "0")
        .set("server_check_query", "select 1")
        .start();
    let first = pid_via(&b).await;
    assert_eq!(first, pid_via(&b).await, "{}", b.log());
    assert!(!b.log().contains("server check failed"), "{}", b.log());
    // A failing check query replaces the server: proof that the query really runs.
    let b = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(USER, PASS)
        .set("default_pool_size", "1")
        .set("server_check_delay", "0")
        .set("server_check_query", "select no_such_column")
        .start();
    let first = pid_via(&b).await;
    assert_ne!(first, pid_via(&b).await, "{}", b.log());
    let (c, _t) = b.connect(USER, PASS, "testdb").await.expect("login");
    assert_eq!(first_value(&c, "SELECT 1").await.expect("query"), "1");
}

/// PgBouncer's test_cancel_race: with one server, client 1's query is cancelled by a burst of
/// cancel requests while client 2 waits for the same server. The cancels must all land before
/// the server is handed over; none may cancel client 2's query.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancels_for_one_client_never_reach_the_next() {
    let b = bouncer(&[("default_pool_size", "1"), ("pool_mode", "transaction")]);
    for round in 0..3 {
        let (c1, _t1) = b.connect(USER, PASS, "testdb").await.expect("login 1");
        let (c2, _t2) = b.connect(USER, PASS, "testdb").await.expect("login 2");
        let token = c1.cancel_token();
        let q1 = tokio::spawn(async move { c1.simple_query("SELECT pg_sleep(5)").await });
        let pg = PgCluster::shared();
        let running = common::wait::until_async(Duration::from_secs(10), || async {
            pg.psql_super(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(5)' \
                 AND state = 'active'",
            )
            .trim()
                == "1"
        })
        .await;
        assert!(running, "client 1's query never started\n{}", b.log());
        let q2 = tokio::spawn(async move { c2.simple_query("SELECT pg_sleep(0.5)").await });
        let cancels: Vec<_> = (0..100)
            .map(|_| {
                let t = token.clone();
                tokio::spawn(async move { t.cancel_query(tokio_postgres::NoTls).await })
            })
            .collect();
        for c in cancels {
            let _ = c.await;
        }
        let e1 = q1.await.expect("join").expect_err("client 1 cancelled");
        assert_eq!(
            e1.code(),
            Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
            "round {round}: {e1}"
        );
        if let Err(e) = q2.await.expect("join") {
            panic!(
                "round {round}: client 2 hit by client 1's cancel: {e}\n{}",
                b.log()
            );
        }
    }
}

/// A client queued behind `limit` while another holds the only server must get it (or its
/// budget) as soon as the first one's transaction ends: `testdb` and `otherdb` share the user.
async fn queued_behind_limit_is_woken(limit: &str, second_db: &str) {
    let b = common::admin::admin_config(&[
        ("pool_mode", "transaction"),
        (limit, "1"),
        ("query_wait_timeout", "30"),
    ])
    .start();
    let (c1, _t1) = b.connect(USER, PASS, "testdb").await.expect("login 1");
    c1.batch_execute("BEGIN; SELECT 1").await.expect("begin");
    // A pool that never logged in has no welcome yet: the login itself queues then.
    let conninfo = b.conninfo(USER, PASS, second_db);
    let q2 = tokio::spawn(async move {
        let (c2, _t2) = common::bouncer::connect_conninfo(&conninfo)
            .await
            .map_err(|e| common::client::Failure::from_pg(&e))?;
        first_value(&c2, "SELECT 2").await
    });
    // Client 2 is queued once SHOW POOLS says so; then client 1 ends its transaction.
    let admin =
        common::admin::admin_connect(&b, common::admin::ADMIN, common::admin::ADMIN_PASS).await;
    let waiting = common::wait::until_async(Duration::from_secs(10), || async {
        common::admin::admin_query(&admin, "SHOW POOLS")
            .await
            .map(|t| t.num("database", second_db, "cl_waiting") == 1)
            .unwrap_or(false)
    })
    .await;
    assert!(waiting, "client 2 never queued\n{}", b.log());
    c1.batch_execute("COMMIT").await.expect("commit");
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), q2).await;
    match r {
        Ok(Ok(Ok(v))) => assert_eq!(v, "2"),
        other => panic!(
            "{limit}: queued client not woken after {:?}: {other:?}\n{}",
            started.elapsed(),
            b.log()
        ),
    }
}

#[tokio::test]
async fn max_db_connections_wakes_queued_client() {
    queued_behind_limit_is_woken("max_db_connections", "testdb").await;
}

#[tokio::test]
async fn max_user_connections_wakes_client_of_another_pool() {
    queued_behind_limit_is_woken("max_user_connections", "otherdb").await;
}

/// psycopg (libpq 18) pipeline: an error, then more queries and the Sync only after a pause.
/// The pooler must skip to that late Sync and serve the next query (PgBouncer's
/// test_prepared_statement_pipeline_error_delayed_sync); it used to hang the client.
const PIPELINE_DELAYED_SYNC: &str = r#"
import sys, time, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    assert conn.execute("SELECT 1", prepare=True).fetchone()[0] == 1
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    with conn.pipeline() as p, conn.cursor() as cur:
        cur.execute("SELECT aaaa")
        time.sleep(0.1)
        try:
            cur.execute("SELECT 123")
            raise SystemExit("no error")
        except psycopg.errors.UndefinedColumn:
            pass
        try:
            cur.fetchall()
            raise SystemExit("not aborted")
        except psycopg.errors.PipelineAborted:
            pass
        p.sync()
        cur.execute("SELECT 1", prepare=True)
        assert cur.fetchall() == [(1,)]
print("ok")
"#;

#[test]
fn pipeline_error_with_delayed_sync_does_not_hang() {
    for mode in ["transaction", "statement", "session"] {
        let b = bouncer(&[("pool_mode", mode), ("max_prepared_statements", "100")]);
        let conninfo = b.conninfo(USER, PASS, "testdb");
        let mut child = std::process::Command::new(common::python::libpq18_python())
            .arg("-c")
            .arg(PIPELINE_DELAYED_SYNC)
            .arg(&conninfo)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python");
        let done = common::wait::until(Duration::from_secs(20), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !done {
            let _ = child.kill();
        }
        let out = child.wait_with_output().expect("output");
        assert!(
            done && out.status.success(),
            "{mode}: hung={} {}\n{}\n{}\npostgres:\n{}",
            !done,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            b.log(),
            PgCluster::shared().log()
        );
    }
}

/// SHUTDOWN WAIT_FOR_SERVERS: a transaction in progress finishes, a new one is refused with
/// "server shutting down" instead of waiting forever for a server.
#[tokio::test]
async fn new_transaction_during_wait_for_servers_is_refused() {
    let mut b = common::admin::admin_config(&[("pool_mode", "transaction")]).start();
    let (c1, _t1) = b.connect(USER, PASS, "testdb").await.expect("login 1");
    let (c2, _t2) = b.connect(USER, PASS, "testdb").await.expect("login 2");
    c1.batch_execute("BEGIN; SELECT 1").await.expect("begin");
    let admin =
        common::admin::admin_connect(&b, common::admin::ADMIN, common::admin::ADMIN_PASS).await;
    let _ = admin.simple_query("SHUTDOWN WAIT_FOR_SERVERS").await;
    let refused = tokio::time::timeout(Duration::from_secs(10), c2.simple_query("SELECT 2")).await;
    match refused {
        Ok(Err(e)) => assert!(
            format!("{e:?}").contains("server shutting down") || e.is_closed(),
            "{e:?}"
        ),
        other => panic!("new transaction not refused: {other:?}\n{}", b.log()),
    }
    assert_eq!(
        first_value(&c1, "SELECT 3")
            .await
            .expect("same transaction"),
        "3"
    );
    c1.batch_execute("COMMIT").await.expect("commit");
    drop(c1);
    drop(c2);
    drop(admin);
    assert!(
        b.wait_exit(Duration::from_secs(20)).is_some(),
        "{}",
        b.log()
    );
    assert!(
        b.log().contains("closing because: server shutting down"),
        "{}",
        b.log()
    );
}

/// PostgreSQL down for a moment: a client arriving meanwhile stays queued, krbouncer retries
/// after `server_login_retry`, and the client is served once the server is back
/// (PgBouncer's test_server_login_retry / test_database_restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_client_survives_a_server_restart() {
    let pg = PgCluster::start_new();
    let b = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(USER, PASS)
        .set("server_login_retry", "1")
        .set("query_wait_timeout", "30")
        .start();
    assert_eq!(
        query_one(&b, USER, PASS, "testdb", "SELECT 1")
            .await
            .expect("up"),
        "1"
    );
    pg.stop();
    let conninfo = b.conninfo(USER, PASS, "testdb");
    let waiting = tokio::spawn(async move {
        common::client::query_one_conninfo(&conninfo, "SELECT 'back'").await
    });
    assert!(
        b.wait_for_log("closing because: connect failed", Duration::from_secs(20)),
        "{}",
        b.log()
    );
    assert!(!waiting.is_finished(), "client failed at once\n{}", b.log());
    pg.restart();
    match tokio::time::timeout(Duration::from_secs(30), waiting).await {
        Ok(Ok(Ok(v))) => assert_eq!(v, "back"),
        other => panic!(
            "queued client not served after restart: {other:?}\n{}",
            b.log()
        ),
    }
}

/// `max_db_client_connections` / `max_user_client_connections` refuse the client past the
/// limit with PgBouncer's text; SHOW USERS counts clients by their login user.
#[tokio::test]
async fn client_connection_limits_are_enforced() {
    for (setting, text) in [
        (
            "max_db_client_connections",
            "client connections exceeded (max_db_client_connections)",
        ),
        (
            "max_user_client_connections",
            "client connections exceeded (max_user_client_connections)",
        ),
    ] {
        let b = common::admin::admin_config(&[(setting, "1")]).start();
        let (c1, _t1) = b.connect(USER, PASS, "testdb").await.expect("first client");
        let second = b.connect(USER, PASS, "testdb").await;
        match second {
            Err(e) => assert!(
                common::bouncer::error_text(&e).contains(text),
                "{setting}: {}",
                common::bouncer::error_text(&e)
            ),
            Ok(_) => panic!("{setting}: second client admitted\n{}", b.log()),
        }
        let users = common::admin::show(&b, "SHOW USERS").await;
        assert_eq!(
            users.num("name", USER, "current_client_connections"),
            1,
            "{setting}: {users:?}"
        );
        assert_eq!(
            first_value(&c1, "SELECT 1")
                .await
                .expect("first still served"),
            "1"
        );
        if setting == "max_db_client_connections" {
            let dbs = common::admin::show(&b, "SHOW DATABASES").await;
            assert_eq!(
                dbs.num("name", "pgbouncer", "max_client_connections"),
                1,
                "{dbs:?}"
            );
        }
    }
}

/// A SET or RELOAD may fix what made the server refuse the login (PgBouncer's
/// test_server_ssl_set_*): the next client tries the server again instead of getting the
/// error cached for `server_login_retry`.
#[tokio::test]
async fn set_forgets_the_cached_login_failure() {
    let pg = PgCluster::shared();
    let b = common::admin::admin_config(&[("server_login_retry", "60")])
        .database(format!(
            "bad = host=127.0.0.1 port={} dbname=nosuchdb",
            pg.port()
        ))
        .start();
    let fail = |b: &Bouncer| {
        let conninfo = b.conninfo(USER, PASS, "bad");
        async move {
            match common::bouncer::connect_conninfo(&conninfo).await {
                Ok(_) => panic!("login to a missing database succeeded"),
                Err(e) => common::bouncer::error_text(&e),
            }
        }
    };
    let first = fail(&b).await;
    assert!(!first.contains("cached error"), "{first}");
    let second = fail(&b).await;
    assert!(second.contains("cached error"), "{second}");
    let admin =
        common::admin::admin_connect(&b, common::admin::ADMIN, common::admin::ADMIN_PASS).await;
    admin
        .simple_query("SET server_login_retry = 60")
        .await
        .expect("SET");
    let third = fail(&b).await;
    assert!(!third.contains("cached error"), "after SET: {third}");
}
