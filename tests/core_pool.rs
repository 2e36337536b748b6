//! Pooling behaviour through krbouncer in session mode, as PgBouncer 1.25 does it: reuse and
//! reset of server connections, pool size limits and queueing, query_wait_timeout,
//! max_client_conn, database routing (unknown, forced user, `*` fallback), no leaks when a client
//! vanishes mid-query, server_lifetime / server_idle_timeout, and server_check_query
//! (`<empty>`, a query, disabled) keeping a healthy server.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::bouncer::{Bouncer, BouncerConfig};
use common::client::{
    Failure, assert_auth_failed, assert_login_as, assert_login_fails, first_value, query_one,
};
use common::pg::{self, PgCluster};
use common::wait;

const USER: &str = pg::TRUST_USER;
const PASS: &str = pg::TRUST_PASS;

/// `testdb` with the client's own user, trust_user in users.txt, plus `settings`.
fn bouncer(settings: &[(&str, &str)]) -> Bouncer {
    let pg = PgCluster::shared();
    let mut cfg = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(USER, PASS)
        .auth("alice", "alice-secret");
    for (k, v) in settings {
        cfg = cfg.set(k, v);
    }
    cfg.start()
}

async fn backend_pid(client: &tokio_postgres::Client) -> Result<String, Failure> {
    first_value(client, "SELECT pg_backend_pid()").await
}

async fn session(b: &Bouncer) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    match b.connect(USER, PASS, "testdb").await {
        Ok(c) => c,
        Err(e) => panic!("login: {e}\n{}", b.log()),
    }
}

#[tokio::test]
async fn consecutive_sessions_reuse_the_server_connection() {
    let b = bouncer(&[("default_pool_size", "1")]);
    let first = query_one(&b, USER, PASS, "testdb", "SELECT pg_backend_pid()").await;
    let second = query_one(&b, USER, PASS, "testdb", "SELECT pg_backend_pid()").await;
    match (first, second) {
        (Ok(a), Ok(c)) => assert_eq!(a, c, "same server backend for both sessions"),
        other => panic!("{other:?}\n{}", b.log()),
    }
}

#[tokio::test]
async fn session_state_is_reset_between_clients() {
    let b = bouncer(&[("default_pool_size", "1")]);
    let (c1, t1) = session(&b).await;
    let pid1 = backend_pid(&c1).await.expect("pid");
    c1.batch_execute(
        "SET work_mem = '7MB'; CREATE TEMP TABLE leftover(x int); PREPARE p AS SELECT 1",
    )
    .await
    .expect("set state");
    drop(c1);
    let _ = t1.await;

    let (c2, t2) = session(&b).await;
    assert_eq!(
        backend_pid(&c2).await.expect("pid"),
        pid1,
        "pool_size=1: same server"
    );
    assert_eq!(
        first_value(&c2, "SHOW work_mem").await.expect("show"),
        "4MB"
    );
    assert_eq!(
        first_value(
            &c2,
            "SELECT count(*) FROM pg_class WHERE relname = 'leftover' AND relpersistence = 't'"
        )
        .await
        .expect("temp table check"),
        "0",
        "DISCARD ALL drops temp tables"
    );
    assert_eq!(
        first_value(&c2, "SELECT count(*) FROM pg_prepared_statements")
            .await
            .expect("prepared check"),
        "0"
    );
    drop(c2);
    let _ = t2.await;
}

#[tokio::test]
async fn clients_beyond_pool_size_wait_for_a_server() {
    let b = common::admin::admin_config(&[("default_pool_size", "2")]).start();
    let (c1, t1) = session(&b).await;
    let (c2, t2) = session(&b).await;
    let p1 = backend_pid(&c1).await.expect("c1");
    let p2 = backend_pid(&c2).await.expect("c2");
    assert_ne!(p1, p2);

    let (c3, _t3) = session(&b).await;
    let (c4, _t4) = session(&b).await;
    let q3 = tokio::spawn(async move {
        let r = backend_pid(&c3).await;
        (r, c3)
    });
    let q4 = tokio::spawn(async move {
        let r = backend_pid(&c4).await;
        (r, c4)
    });
    // Both must be queued: the two servers are held by c1 and c2.
    let queued = wait::until_async(Duration::from_secs(10), || async {
        common::admin::show(&b, "SHOW POOLS")
            .await
            .num("database", "testdb", "cl_waiting")
            == 2
    })
    .await;
    assert!(
        queued && !q3.is_finished() && !q4.is_finished(),
        "pool_size=2 was exceeded\n{}",
        b.log()
    );

    drop(c1);
    let _ = t1.await;
    let first_done = wait::until_async(Duration::from_secs(10), || async {
        q3.is_finished() || q4.is_finished()
    })
    .await;
    assert!(
        first_done,
        "a queued client did not get the released server\n{}",
        b.log()
    );
    drop(c2);
    let _ = t2.await;
    let (r3, _c3) = tokio::time::timeout(Duration::from_secs(10), q3)
        .await
        .expect("c3 timed out")
        .expect("join");
    let (r4, _c4) = tokio::time::timeout(Duration::from_secs(10), q4)
        .await
        .expect("c4 timed out")
        .expect("join");
    for r in [r3, r4] {
        let pid = r.expect("queued query");
        assert!(
            pid == p1 || pid == p2,
            "queued client got a third server {pid}"
        );
    }
}

#[tokio::test]
async fn query_wait_timeout_fails_the_waiting_client() {
    let b = bouncer(&[("default_pool_size", "1"), ("query_wait_timeout", "1")]);
    let (c1, t1) = session(&b).await;
    backend_pid(&c1).await.expect("c1 holds the only server");
    let started = std::time::Instant::now();
    let outcome = match b.connect(USER, PASS, "testdb").await {
        Err(e) => Err(Failure::from_pg(&e)),
        Ok((c2, _t2)) => tokio::time::timeout(Duration::from_secs(15), backend_pid(&c2))
            .await
            .expect("no answer within 15 s"),
    };
    let f = outcome.expect_err("the second client must not get a server");
    assert!(f.message.contains("query_wait_timeout"), "got {f}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(c1);
    let _ = t1.await;
}

#[tokio::test]
async fn max_client_conn_refuses_extra_clients() {
    let b = bouncer(&[("max_client_conn", "2")]);
    let (c1, _t1) = session(&b).await;
    let (c2, _t2) = session(&b).await;
    let f = assert_login_fails(&b, USER, PASS, "testdb").await;
    assert!(
        f.message
            .contains("no more connections allowed (max_client_conn)"),
        "got {f}"
    );
    drop((c1, c2));
}

#[tokio::test]
async fn unknown_database_is_reported_after_auth() {
    let b = bouncer(&[]);
    let f = assert_login_fails(&b, USER, PASS, "nosuchdb").await;
    assert!(f.message.contains("no such database: nosuchdb"), "got {f}");
    // mock auth first: a wrong password wins over the unknown database
    let f = assert_login_fails(&b, USER, "wrong", "nosuchdb").await;
    assert_auth_failed(&f, "wrong password for an unknown database");
}

#[tokio::test]
async fn forced_user_database_logs_in_as_that_user() {
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!(
            "forced = {} user={}",
            pg.connstr("testdb"),
            pg::TRUST_USER
        ))
        .auth("alice", "alice-secret")
        .start();
    assert_login_as(&b, "alice", "alice-secret", "forced", pg::TRUST_USER).await;
}

#[tokio::test]
async fn wildcard_database_serves_unlisted_names() {
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .database(format!("* = host=127.0.0.1 port={}", pg.port()))
        .auth(USER, PASS)
        .start();
    for db in ["otherdb", "testdb"] {
        match query_one(&b, USER, PASS, db, "SELECT current_database()").await {
            Ok(name) => assert_eq!(name, db),
            Err(f) => panic!("{db}: {f}\n{}", b.log()),
        }
    }
    // a name the server lacks: the server's own error comes back
    let f = assert_login_fails(&b, USER, PASS, "missing_db").await;
    assert!(
        f.message.contains("\"missing_db\" does not exist"),
        "got {f}"
    );
}

// multi_thread: the query task must run while this test polls PostgreSQL with blocking calls
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishing_mid_query_does_not_leak_its_server() {
    let pg = PgCluster::shared();
    let b = bouncer(&[("default_pool_size", "1")]);
    let (c1, t1) = session(&b).await;
    let pid: i32 = backend_pid(&c1)
        .await
        .expect("pid")
        .parse()
        .expect("int pid");
    let sleeper = tokio::spawn(async move {
        let _ = c1.simple_query("SELECT pg_sleep(30)").await;
    });
    assert!(
        wait::until(Duration::from_secs(10), || pg.backend_state(pid).as_deref()
            == Some("active")),
        "pg_sleep never started"
    );
    // Drop the TCP connection without Terminate.
    t1.abort();
    let _ = t1.await;
    sleeper.abort();

    let freed = wait::until(Duration::from_secs(10), || !pg.backend_alive(pid));
    assert!(
        freed,
        "backend {pid} still busy after its client vanished\n{}",
        b.log()
    );
    // The pool (size 1) serves a new client promptly.
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        query_one(&b, USER, PASS, "testdb", "SELECT 1"),
    )
    .await
    .expect("pool stuck after a vanished client");
    assert_eq!(r.expect("query"), "1");
}

#[tokio::test]
async fn server_idle_timeout_closes_idle_servers() {
    let pg = PgCluster::shared();
    let b = bouncer(&[("server_idle_timeout", "1"), ("default_pool_size", "1")]);
    let pid: i32 = query_one(&b, USER, PASS, "testdb", "SELECT pg_backend_pid()")
        .await
        .expect("pid")
        .parse()
        .expect("int");
    assert!(
        wait::until(Duration::from_secs(10), || !pg.backend_alive(pid)),
        "idle server {pid} outlived server_idle_timeout=1\n{}",
        b.log()
    );
}

#[tokio::test]
async fn server_lifetime_closes_old_servers() {
    let pg = PgCluster::shared();
    let b = bouncer(&[
        ("server_lifetime", "1"),
        ("server_idle_timeout", "600"),
        ("default_pool_size", "1"),
    ]);
    let (c, t) = session(&b).await;
    let pid: i32 = backend_pid(&c).await.expect("pid").parse().expect("int");
    // Let the server age past its lifetime while in use; it must go on release.
    let aged = wait::until(Duration::from_secs(10), || {
        pg.psql_super(&format!(
            "SELECT now() - backend_start > interval '1.2 seconds' \
             FROM pg_stat_activity WHERE pid = {pid}"
        )) == "t"
    });
    assert!(aged, "server {pid} never aged past 1.2 s");
    assert!(
        pg.backend_alive(pid),
        "server closed while its client used it"
    );
    drop(c);
    let _ = t.await;
    assert!(
        wait::until(Duration::from_secs(10), || !pg.backend_alive(pid)),
        "server {pid} outlived server_lifetime=1\n{}",
        b.log()
    );
    // The next client gets a fresh server.
    let next = query_one(&b, USER, PASS, "testdb", "SELECT pg_backend_pid()")
        .await
        .expect("next");
    assert_ne!(next, pid.to_string());
}

#[tokio::test]
async fn server_check_query_keeps_a_healthy_server() {
    // server_check_delay = 0: every reuse is checked; "" disables the check
    for check in [None, Some("select 1"), Some("")] {
        let mut settings = vec![("default_pool_size", "1"), ("server_check_delay", "0")];
        if let Some(q) = check {
            settings.push(("server_check_query", q));
        }
        let b = bouncer(&settings);
        let first = query_one(&b, USER, PASS, "testdb", "SELECT pg_backend_pid()").await;
        let second = query_one(&b, USER, PASS, "testdb", "SELECT pg_backend_pid()").await;
        match (first, second) {
            (Ok(a), Ok(c)) => assert_eq!(a, c, "server_check_query={check:?}\n{}", b.log()),
            other => panic!("{other:?}\n{}", b.log()),
        }
        assert!(!b.log().contains("server check failed"), "{}", b.log());
    }
}
