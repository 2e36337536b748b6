//! `auth_user` / `auth_query` / `auth_dbname` against PostgreSQL 15, as PgBouncer 1.25 does
//! them: users.txt first, else the secret the query returns (md5 or SCRAM, used upstream too),
//! NULL for an expired password, "no such user" for no row, and the configuration errors of
//! the authentication database.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::admin::admin_query;
use common::bouncer::{Bouncer, BouncerConfig, connect_conninfo};
use common::client::{assert_auth_failed, assert_login_as, assert_login_fails};
use common::pg::{self, PgCluster};

/// The auth_user: a superuser (the default auth_query reads pg_authid) with its password in
/// users.txt, so the pooler can log in as it.
const AUTH_USER: &str = "aq_auth";
const AUTH_PASS: &str = "aq_auth_pass";
const ADMIN: &str = "aq_admin";

fn setup_roles(pg: &PgCluster) {
    // once per test binary: the tests run in parallel on one shared cluster
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        pg.psql_super(&format!(
            "DO $$ BEGIN \
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{AUTH_USER}') THEN \
             CREATE ROLE {AUTH_USER} SUPERUSER LOGIN PASSWORD '{AUTH_PASS}'; END IF; \
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'aq_expired') THEN \
             CREATE ROLE aq_expired LOGIN PASSWORD 'expired_pass' VALID UNTIL '1999-01-01'; \
           END IF; \
         END $$"
        ));
    });
}

/// `app` (no forced user, the global auth_user) on testdb, an admin user, and `extra`.
fn bouncer(auth_type: &str, extra: &[(&str, &str)], databases: &[String]) -> Bouncer {
    let pg = PgCluster::shared();
    setup_roles(pg);
    let mut cfg = BouncerConfig::new()
        .database(format!("app = {}", pg.connstr("testdb")))
        .set("auth_type", auth_type)
        .set("auth_user", AUTH_USER)
        .set("admin_users", ADMIN)
        .auth(AUTH_USER, AUTH_PASS)
        .auth(ADMIN, "admin-pw");
    for d in databases {
        cfg = cfg.database(d.clone());
    }
    for (k, v) in extra {
        cfg = cfg.set(k, v);
    }
    cfg.start()
}

#[tokio::test]
async fn fetched_md5_and_scram_secrets_log_the_client_in_and_the_pool_upstream() {
    let b = bouncer("md5", &[], &[]);
    // md5_user's md5 hash from pg_authid: md5 with the client, the hash upstream
    assert_login_as(&b, pg::MD5_USER, pg::MD5_PASS, "app", pg::MD5_USER).await;
    // scram_user's SCRAM verifier: SCRAM with the client, pass-through keys upstream
    assert_login_as(&b, pg::SCRAM_USER, pg::SCRAM_PASS, "app", pg::SCRAM_USER).await;
    for user in [pg::MD5_USER, pg::SCRAM_USER] {
        let f = assert_login_fails(&b, user, "wrong-password", "app").await;
        assert_auth_failed(&f, user);
    }
    // no row: PgBouncer answers "no such user" at once (no mock exchange)
    let f = assert_login_fails(&b, "aq_nobody", "whatever", "app").await;
    assert_eq!(f.message, "no such user", "{f}");
    assert!(
        b.wait_for_log(
            "closing because: no such user (age=",
            Duration::from_secs(5)
        ),
        "{}",
        b.log()
    );
    // VALID UNTIL in the past: the default query returns NULL, nothing matches
    let f = assert_login_fails(&b, "aq_expired", "expired_pass", "app").await;
    assert_auth_failed(&f, "expired password");
}

#[tokio::test]
async fn users_txt_wins_and_a_database_can_bring_its_own_auth_query() {
    let pg = PgCluster::shared();
    // this database's auth_query returns a wrong password for everyone
    let bogus = format!(
        "bogus = {} auth_query='SELECT usename, ''bogus''::text FROM pg_shadow WHERE usename = $1'",
        pg.connstr("testdb")
    );
    setup_roles(pg);
    let b = BouncerConfig::new()
        .database(bogus)
        .set("auth_type", "plain")
        .set("auth_user", AUTH_USER)
        .auth(AUTH_USER, AUTH_PASS)
        .auth(pg::CLEAR_USER, pg::CLEAR_PASS)
        .start();
    // clear_user is in users.txt: the query is not asked
    assert_login_as(&b, pg::CLEAR_USER, pg::CLEAR_PASS, "bogus", pg::CLEAR_USER).await;
    // md5_user is not: the database's query answers, with its bogus password
    let f = assert_login_fails(&b, pg::MD5_USER, pg::MD5_PASS, "bogus").await;
    assert_auth_failed(&f, "per-database auth_query");
    assert!(
        assert_login_fails(&b, pg::MD5_USER, "bogus", "bogus")
            .await
            .message
            .contains("md5_user"),
        "with the fetched password the client passes and the server refuses the login"
    );
}

#[tokio::test]
async fn the_authentication_database_must_exist_be_enabled_and_not_be_the_console() {
    let pg = PgCluster::shared();
    let b = bouncer(
        "md5",
        &[],
        &[
            format!(
                "via_missing = {} auth_dbname=aq_nosuchdb",
                pg.connstr("testdb")
            ),
            format!(
                "via_console = {} auth_dbname=pgbouncer",
                pg.connstr("testdb")
            ),
            format!("via_app = {} auth_dbname=app", pg.connstr("testdb")),
        ],
    );
    let f = assert_login_fails(&b, pg::MD5_USER, pg::MD5_PASS, "via_missing").await;
    assert_eq!(f.message, "bouncer config error", "{f}");
    assert!(
        b.log()
            .contains("authentication database \"aq_nosuchdb\" is not configured."),
        "{}",
        b.log()
    );
    let f = assert_login_fails(&b, pg::MD5_USER, pg::MD5_PASS, "via_console").await;
    assert_eq!(f.message, "bouncer config error", "{f}");
    assert!(
        b.log()
            .contains("cannot use the reserved \"pgbouncer\" database as an auth_dbname"),
        "{}",
        b.log()
    );
    // another database as the authentication database works, until it is disabled
    assert_login_as(&b, pg::MD5_USER, pg::MD5_PASS, "via_app", pg::MD5_USER).await;
    let (admin, _task) = connect_conninfo(&b.conninfo(ADMIN, "admin-pw", "pgbouncer"))
        .await
        .expect("admin console");
    admin_query(&admin, "DISABLE app").await.expect("DISABLE");
    let f = assert_login_fails(&b, pg::SCRAM_USER, pg::SCRAM_PASS, "via_app").await;
    assert_eq!(
        f.message, "authentication database \"app\" is disabled",
        "{f}"
    );
}

#[tokio::test]
async fn a_failing_auth_query_is_logged_with_the_servers_words() {
    let pg = PgCluster::shared();
    let b = bouncer(
        "md5",
        &[],
        &[format!(
            "broken = {} auth_query='SELECT usename, passwd FROM aq_no_such_table WHERE usename = $1'",
            pg.connstr("testdb")
        )],
    );
    let f = assert_login_fails(&b, pg::MD5_USER, pg::MD5_PASS, "broken").await;
    assert_eq!(f.message, "bouncer config error", "{f}");
    let log = b.log();
    assert!(log.contains("S: error in auth_query: ERROR: "), "{log}");
    assert!(
        log.contains("relation \"aq_no_such_table\" does not exist"),
        "{log}"
    );
    assert!(
        log.contains("closing because: error response from auth_query"),
        "{log}"
    );
}

#[tokio::test]
async fn the_admin_console_uses_the_global_auth_dbname() {
    let pg = PgCluster::shared();
    setup_roles(pg);
    let b = BouncerConfig::new()
        .database(format!("app = {}", pg.connstr("testdb")))
        .set("auth_type", "md5")
        .set("auth_user", AUTH_USER)
        .set("auth_dbname", "app")
        .set("stats_users", pg::MD5_USER)
        .auth(AUTH_USER, AUTH_PASS)
        .start();
    let (console, _task) = connect_conninfo(&b.conninfo(pg::MD5_USER, pg::MD5_PASS, "pgbouncer"))
        .await
        .expect("stats user through auth_query");
    admin_query(&console, "SHOW STATS")
        .await
        .expect("SHOW STATS");
}
