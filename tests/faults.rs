//! Faults between krbouncer and PostgreSQL, made by a loopback fault proxy or by PostgreSQL
//! itself: a server that stops answering, connections cut mid-query, a backend terminated
//! inside a transaction, and a PostgreSQL restart under pgbench. Clients must see errors, not
//! hangs, and the pool must serve again by itself.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::admin;
use common::bouncer::{Bouncer, BouncerConfig, connect_conninfo, error_text};
use common::faultproxy::FaultProxy;
use common::pg::{self, PgCluster};
use common::wait::{until, until_async};

fn through(proxy_port: u16, mode: &str) -> BouncerConfig {
    BouncerConfig::new()
        .database(format!(
            "testdb = host=127.0.0.1 port={proxy_port} dbname=testdb"
        ))
        .auth(pg::TRUST_USER, pg::TRUST_PASS)
        .set("pool_mode", mode)
        .set("default_pool_size", 2)
}

async fn client(b: &Bouncer) -> tokio_postgres::Client {
    match connect_conninfo(&b.conninfo(pg::TRUST_USER, pg::TRUST_PASS, "testdb")).await {
        Ok((c, _task)) => c,
        Err(e) => panic!("login: {}\n{}", error_text(&e), b.log()),
    }
}

async fn select_works(b: &Bouncer) -> bool {
    match connect_conninfo(&b.conninfo(pg::TRUST_USER, pg::TRUST_PASS, "testdb")).await {
        Ok((c, _task)) => c.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_server_that_stops_answering_is_cut_by_query_timeout_and_its_slot_freed() {
    let proxy = FaultProxy::start(PgCluster::shared().port());
    let b = through(proxy.port(), "transaction")
        .set("query_timeout", 1)
        .set("default_pool_size", 1)
        .start();
    let c = client(&b).await;
    c.simple_query("SELECT 1").await.expect("warm-up");
    proxy.stall();
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(10), c.simple_query("SELECT 2"))
        .await
        .expect("query_timeout answered, no hang")
        .expect_err("the stalled query fails");
    assert!(
        error_text(&e).contains("query timeout") || b.log().contains("query timeout"),
        "{} after {:?}\n{}",
        error_text(&e),
        started.elapsed(),
        b.log()
    );
    proxy.pass();
    // the only slot was freed: a new client gets a (new) server
    assert!(
        until_async(Duration::from_secs(10), || select_works(&b)).await,
        "pool serves again after the stall\n{}",
        b.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_mid_query_end_in_an_error_and_the_pool_recovers() {
    let proxy = FaultProxy::start(PgCluster::shared().port());
    let b = through(proxy.port(), "transaction").start();
    let c = client(&b).await;
    let running =
        tokio::spawn(async move { c.simple_query("SELECT pg_sleep(30)").await.map(|_| ()) });
    // wait for the query to reach PostgreSQL, then cut every proxied connection
    let pg = PgCluster::shared();
    let reached = tokio::task::block_in_place(|| {
        until(Duration::from_secs(10), || {
            !pg.psql_super("SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'")
                .is_empty()
        })
    });
    assert!(reached, "the query never reached PostgreSQL");
    proxy.cut();
    let outcome = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the client is told, not left hanging")
        .expect("task");
    assert!(outcome.is_err(), "a cut server cannot have answered");
    assert!(
        until_async(Duration::from_secs(10), || select_works(&b)).await,
        "pool serves again after the cut\n{}",
        b.log()
    );
}

/// An idle server that PostgreSQL closes (here `pg_terminate_backend`; a restart does it to
/// all) leaves SHOW SERVERS and frees its socket by itself, not only when a client takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_closed_by_postgresql_leaves_the_pool_by_itself() {
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(pg::TRUST_USER, pg::TRUST_PASS)
        .auth(admin::ADMIN, admin::ADMIN_PASS)
        .set("admin_users", admin::ADMIN)
        .start();
    let c = client(&b).await;
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    drop(c);
    let servers = || async { admin::show(&b, "SHOW SERVERS").await.rows.len() };
    assert!(
        until_async(Duration::from_secs(10), || async { servers().await == 1 }).await,
        "the server is pooled idle\n{}",
        b.log()
    );
    pg.psql_super(&format!("SELECT pg_terminate_backend({pid})"));
    assert!(
        until_async(Duration::from_secs(10), || async { servers().await == 0 }).await,
        "the dead idle server stays in SHOW SERVERS\n{}",
        b.log()
    );
    assert!(b.log().contains("server conn crashed?"), "{}", b.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_terminated_inside_a_transaction_fails_only_its_client() {
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(pg::TRUST_USER, pg::TRUST_PASS)
        .set("pool_mode", "transaction")
        .start();
    let victim = client(&b).await;
    let bystander = client(&b).await;
    victim.batch_execute("BEGIN").await.expect("begin");
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    pg.psql_super(&format!("SELECT pg_terminate_backend({pid})"));
    let e = victim
        .simple_query("SELECT 1")
        .await
        .expect_err("its server is gone");
    eprintln!("victim sees: {}", error_text(&e));
    bystander
        .simple_query("SELECT 1")
        .await
        .expect("the bystander is served");
    assert!(
        select_works(&b).await,
        "new clients are served\n{}",
        b.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_under_pgbench_gives_errors_not_hangs_then_serves_again() {
    let pg = PgCluster::start_new();
    let b = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(pg::SCRAM_USER, pg::SCRAM_PASS)
        .auth(pg::TRUST_USER, pg::TRUST_PASS)
        .set("pool_mode", "transaction")
        .set("default_pool_size", 4)
        .set("server_login_retry", 1)
        .start();
    common::pgbench::pgbench_init(&b);
    let mut bench = Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &b.port().to_string(),
            "-U",
            pg::SCRAM_USER,
        ])
        .args(["-n", "-S", "-c", "8", "-j", "2", "-T", "8", "testdb"])
        .env("PGPASSWORD", pg::SCRAM_PASS)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pgbench starts");
    let busy = until(Duration::from_secs(10), || {
        !pg.psql_super("SELECT pid FROM pg_stat_activity WHERE usename = 'scram_user'")
            .is_empty()
    });
    assert!(busy, "pgbench reached PostgreSQL");
    pg.restart();
    let back = Instant::now();
    let served = until_async(Duration::from_secs(10), || select_works(&b)).await;
    let recovered_in = back.elapsed();
    eprintln!("pool served again {recovered_in:?} after PostgreSQL was back");
    assert!(
        served,
        "the pool serves again after the restart\n{}",
        b.log()
    );
    // pgbench ends by itself: its clients got errors (or finished), none hangs
    let ended = until(Duration::from_secs(30), || {
        matches!(bench.try_wait(), Ok(Some(_)))
    });
    if !ended {
        let _ = bench.kill();
        panic!("pgbench hung after the restart\n{}", b.log());
    }
}
