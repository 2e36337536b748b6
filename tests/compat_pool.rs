//! Pool behaviour PgBouncer 1.25's own test suite relies on: the default `server_check_query`,
//! waking clients queued behind a limit, retrying a failing server while clients wait, and
//! cancels that never cross from one client to another.

mod common;

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
