//! Upstream and downstream TLS settings changed at runtime, as PgBouncer 1.25's test_ssl
//! exercises them: a SET / RELOAD that changes the server TLS settings closes the servers made
//! with the old ones ("database configuration changed"), one of `client_tls_*` does not;
//! `server_tls_protocols = tlsv1.0` is accepted; a refused server certificate keeps clients
//! queued ("certificate verify failed", "server conn crashed?"); a `client_tls13_ciphers` that
//! names no usable suite is refused with OpenSSL's "failed to set the TLSv1.3 cipher suites".
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::admin::{ADMIN, ADMIN_PASS, admin_config, admin_connect, admin_query, show};
use common::bouncer::{Bouncer, BouncerConfig, fill};
use common::client::{first_value, query_one, query_one_conninfo};
use common::pg::{self, PgCluster};
use common::pki::Pki;
use common::wait;

const USER: &str = pg::TRUST_USER;
const PASS: &str = pg::TRUST_PASS;
const WAIT: Duration = Duration::from_secs(20);
const CONFIG_CHANGED: &str = "closing because: database configuration changed";

fn p(path: &Path) -> String {
    path.display().to_string()
}

async fn servers_of(b: &Bouncer, db: &str) -> usize {
    let t = show(b, "SHOW SERVERS").await;
    let c = t.col("database");
    t.rows
        .iter()
        .filter(|r| r[c].as_deref() == Some(db))
        .count()
}

async fn admin(b: &Bouncer, sql: &str) {
    let c = admin_connect(b, ADMIN, ADMIN_PASS).await;
    if let Err(e) = admin_query(&c, sql).await {
        panic!("{sql}: {e}\n{}", b.log());
    }
}

/// Log lines about `db`'s servers containing `needle` (PgBouncer's `S-<id>: db/user@...`).
fn server_lines(b: &Bouncer, db: &str, needle: &str) -> usize {
    b.log()
        .lines()
        .filter(|l| l.contains(&format!("{db}/")) && l.contains(needle))
        .count()
}

/// A transaction-pooling bouncer whose one client has left a server idle in `testdb`.
async fn with_idle_server(cfg: BouncerConfig) -> (Bouncer, tokio_postgres::Client) {
    let b = cfg.start();
    let (client, _task) = b
        .connect(USER, PASS, "testdb")
        .await
        .unwrap_or_else(|e| panic!("login: {e:?}\n{}", b.log()));
    first_value(&client, "SELECT 1").await.expect("query");
    assert_eq!(servers_of(&b, "testdb").await, 1, "{}", b.log());
    (b, client)
}

/// test_servers_disconnect_when_changing_sslmode: SET of `server_tls_sslmode` closes the idle
/// server with PgBouncer's line under its `S-` prefix; the client is served by a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_of_server_tls_sslmode_closes_idle_servers_with_pgbouncers_line() {
    let (b, client) = with_idle_server(admin_config(&[("pool_mode", "transaction")])).await;
    admin(&b, "SET server_tls_sslmode = 'allow'").await;
    let closed = wait::until_async(WAIT, || async { servers_of(&b, "testdb").await == 0 }).await;
    assert!(closed, "the idle server was closed\n{}", b.log());
    assert!(
        server_lines(&b, "testdb", CONFIG_CHANGED) == 1,
        "one 'database configuration changed' line for the testdb server\n{}",
        b.log()
    );
    assert_eq!(
        first_value(&client, "SELECT 'again'").await.as_deref(),
        Ok("again"),
        "{}",
        b.log()
    );
}

/// test_ssl's client_tls tests: SET of a `client_tls_*` setting leaves server connections
/// alone (PgBouncer recycles servers only when the server TLS settings change); before, any
/// `*_tls_*` SET closed every server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_of_client_tls_settings_keeps_servers() {
    let (b, client) = with_idle_server(admin_config(&[("pool_mode", "transaction")])).await;
    admin(&b, "SET client_tls_ciphers = 'HIGH'").await;
    admin(&b, "SET client_tls_protocols = 'secure'").await;
    assert_eq!(servers_of(&b, "testdb").await, 1, "{}", b.log());
    assert_eq!(
        server_lines(&b, "testdb", "closing because"),
        0,
        "{}",
        b.log()
    );
    assert_eq!(first_value(&client, "SELECT 2").await.as_deref(), Ok("2"));
}

/// test_servers_disconnect_when_changing_tls_config: `server_tls_protocols = tlsv1.0` is
/// accepted by RELOAD (PgBouncer takes it; rustls has no TLS 1.0, so servers are not offered
/// TLS and `prefer` logs in unencrypted), and the next change of it closes the idle server.
/// Before, the RELOAD failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_server_tls_protocols_accepts_tls10_and_recycles_servers() {
    let base = || admin_config(&[("pool_mode", "transaction")]);
    let b = base().start();
    let rewrite = |cfg: BouncerConfig| {
        std::fs::write(b.ini_path(), fill(&cfg.ini_template(), b.dir(), b.port())).expect("ini");
    };
    rewrite(base().set("server_tls_protocols", "tlsv1.0"));
    admin(&b, "RELOAD").await;
    let (client, _task) = b
        .connect(USER, PASS, "testdb")
        .await
        .unwrap_or_else(|e| panic!("login: {e:?}\n{}", b.log()));
    first_value(&client, "SELECT 1").await.expect("query");
    assert_eq!(servers_of(&b, "testdb").await, 1, "{}", b.log());
    rewrite(base().set("server_tls_protocols", "secure"));
    admin(&b, "RELOAD").await;
    let closed = wait::until_async(WAIT, || async { servers_of(&b, "testdb").await == 0 }).await;
    assert!(closed, "the idle server was closed\n{}", b.log());
    assert_eq!(server_lines(&b, "testdb", CONFIG_CHANGED), 1, "{}", b.log());
    assert_eq!(first_value(&client, "SELECT 3").await.as_deref(), Ok("3"));
    // and a RELOAD that changes nothing closes nothing
    admin(&b, "RELOAD").await;
    assert_eq!(servers_of(&b, "testdb").await, 1, "{}", b.log());
    assert_eq!(server_lines(&b, "testdb", CONFIG_CHANGED), 1, "{}", b.log());
}

/// test_server_ssl_verify: verify-full against a server certificate from another CA. As in
/// PgBouncer the handshake failure is logged as "certificate verify failed" and "server conn
/// crashed?", and the client stays queued while the connect is retried every
/// `server_login_retry` (before, it failed at the first attempt); after SET of the right CA
/// new clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_server_certificate_keeps_clients_queued_until_the_ca_is_fixed() {
    let pki = Pki::new("compat_tls_reload CA");
    let stranger = Pki::new("some other CA");
    let (crt, key) = pki.server("pg");
    let pg = PgCluster::start_new();
    pg.enable_tls(&crt, &key);
    let b = BouncerConfig::new()
        .database(format!(
            "testdb = host=localhost port={} dbname=testdb",
            pg.port()
        ))
        .auth(USER, PASS)
        .auth(ADMIN, ADMIN_PASS)
        .set("admin_users", ADMIN)
        .set("server_tls_sslmode", "verify-full")
        .set("server_tls_ca_file", p(&stranger.ca()))
        .set("server_login_retry", 1)
        .set("query_wait_timeout", 30)
        .start();
    let conninfo = b.conninfo(USER, PASS, "testdb");
    let queued = tokio::spawn(async move { query_one_conninfo(&conninfo, "SELECT 1").await });
    let retried = wait::until(WAIT, || {
        let log = b.log();
        log.matches("closing because: server conn crashed?").count() >= 2
    });
    assert!(retried, "the connect was retried\n{}", b.log());
    assert!(
        b.log()
            .contains("TLS handshake error: handshake failed: certificate verify failed"),
        "{}",
        b.log()
    );
    assert!(
        !queued.is_finished(),
        "the client is still queued after two attempts\n{}",
        b.log()
    );
    queued.abort();
    admin(&b, &format!("SET server_tls_ca_file = '{}'", p(&pki.ca()))).await;
    let ssl = query_one(
        &b,
        USER,
        PASS,
        "testdb",
        "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
    assert_eq!(ssl.as_deref(), Ok("true"), "{}", b.log());
}

fn psql_tls(b: &Bouncer) -> String {
    let out = Command::new("psql")
        .arg("-X")
        .arg(format!(
            "host=127.0.0.1 port={} user={USER} dbname=testdb sslmode=require connect_timeout=20",
            b.port()
        ))
        .args(["-tAc", "SELECT 42"])
        .env("PGPASSWORD", PASS)
        .output()
        .expect("run psql");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// test_client_ssl_set_ciphers_for_tls_v1_3: with TLS 1.3 only, the suite named by
/// `client_tls13_ciphers` is negotiated; SET of one rustls does not have is refused with
/// OpenSSL's words ("TLS setup failed: failed to set the TLSv1.3 cipher suites") and the
/// previous acceptor stays. Before, the unknown name was ignored with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tls13_ciphers_naming_no_usable_suite_is_refused() {
    let pki = Pki::new("compat_tls_reload CA");
    let (crt, key) = pki.server("bouncer");
    // `prefer`: the admin console helpers log in without TLS
    let b = admin_config(&[])
        .set("client_tls_sslmode", "prefer")
        .set("client_tls_cert_file", p(&crt))
        .set("client_tls_key_file", p(&key))
        .set("client_tls_protocols", "tlsv1.3")
        .set("client_tls13_ciphers", "TLS_CHACHA20_POLY1305_SHA256")
        .start();
    assert_eq!(psql_tls(&b), "42", "{}", b.log());
    assert!(
        b.log().contains("tls=TLSv1.3/TLS_CHACHA20_POLY1305_SHA256"),
        "{}",
        b.log()
    );
    admin(&b, "SET client_tls13_ciphers = 'unknown'").await;
    assert!(
        b.wait_for_log(
            "TLS setup failed: failed to set the TLSv1.3 cipher suites",
            WAIT
        ),
        "{}",
        b.log()
    );
    assert_eq!(psql_tls(&b), "42", "the old acceptor stays\n{}", b.log());
    assert_eq!(
        b.log()
            .matches("tls=TLSv1.3/TLS_CHACHA20_POLY1305_SHA256")
            .count(),
        2,
        "{}",
        b.log()
    );
}
