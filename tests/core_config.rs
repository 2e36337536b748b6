//! Configuration loading as PgBouncer 1.25 does it: unknown keys are fatal (with file, line and
//! key in the message), `--check` validates without serving, a broken users.txt keeps the users
//! read before the broken line, `-V` prints a version, and a typical PgBouncer 1.25 config with
//! md5 and SCRAM users, a forced-user database and a `*` fallback loads unchanged.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::bouncer::{Bouncer, BouncerConfig, run_expect_fail, run_to_exit, write_config};
use common::client::{assert_auth_failed, assert_login_as, assert_login_fails, query_one};
use common::pg::{self, PgCluster};
use common::secrets::{auth_file_line, md5_secret};

/// A minimal valid ini: `testdb` on the shared cluster, listening on @PORT@ in @DIR@.
fn minimal_ini(extra_pgbouncer_lines: &str, extra_db_params: &str) -> String {
    let pg = PgCluster::shared();
    format!(
        "[databases]\n\
         testdb = {} {extra_db_params}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = @PORT@\n\
         unix_socket_dir = @DIR@\n\
         auth_type = md5\n\
         auth_file = @DIR@/users.txt\n\
         {extra_pgbouncer_lines}",
        pg.connstr("testdb")
    )
}

fn users_txt() -> String {
    format!("{}\n", auth_file_line(pg::TRUST_USER, pg::TRUST_PASS))
}

fn mentions_line(output: &str, line: usize) -> bool {
    output.contains(&format!(":{line}")) || output.contains(&format!("line {line}"))
}

#[test]
fn unknown_pgbouncer_key_is_fatal_with_file_line_and_key() {
    let ini = minimal_ini("foo_bar = 1\n", "");
    let line = ini
        .lines()
        .position(|l| l.starts_with("foo_bar"))
        .expect("line")
        + 1;
    let (status, output, ini_path) = run_expect_fail(&ini, &users_txt());
    assert!(!status.success(), "exit status {status}: {output}");
    assert!(output.contains("foo_bar"), "key missing from: {output}");
    assert!(
        output.contains(&ini_path.display().to_string()),
        "file missing from: {output}"
    );
    assert!(
        mentions_line(&output, line),
        "line {line} missing from: {output}"
    );
}

#[test]
fn unknown_connection_parameter_is_fatal() {
    let ini = minimal_ini("", "foo=bar");
    let line = ini
        .lines()
        .position(|l| l.starts_with("testdb"))
        .expect("line")
        + 1;
    let (status, output, ini_path) = run_expect_fail(&ini, &users_txt());
    assert!(!status.success(), "exit status {status}: {output}");
    assert!(output.contains("foo"), "parameter missing from: {output}");
    assert!(
        output.contains(&ini_path.display().to_string()),
        "file missing from: {output}"
    );
    assert!(
        mentions_line(&output, line),
        "line {line} missing from: {output}"
    );
}

#[test]
fn check_flag_validates_without_serving() {
    let (_dir, good) = write_config(&minimal_ini("", ""), &users_txt());
    let good = good.display().to_string();
    let (status, stdout, stderr) = run_to_exit(&["--check", &good], &[], Duration::from_secs(10));
    assert!(
        status.success(),
        "--check on a good config: {status}\n{stdout}{stderr}"
    );

    let (_dir, bad) = write_config(&minimal_ini("foo_bar = 1\n", ""), &users_txt());
    let bad = bad.display().to_string();
    let (status, stdout, stderr) = run_to_exit(&["--check", &bad], &[], Duration::from_secs(10));
    assert!(
        status.code().is_some_and(|c| c != 0),
        "--check on a bad config: {status}\n{stdout}{stderr}"
    );
    assert!(format!("{stdout}{stderr}").contains("foo_bar"));
}

#[test]
fn version_flag_prints_a_version() {
    for flag in ["-V", "--version"] {
        let (status, stdout, stderr) = run_to_exit(&[flag], &[], Duration::from_secs(10));
        assert!(status.success(), "{flag}: {status}\n{stdout}{stderr}");
        let out = format!("{stdout}{stderr}");
        assert!(
            out.contains(env!("CARGO_PKG_VERSION")) || out.contains("1.25"),
            "{flag} printed no version: {out}"
        );
    }
}

#[tokio::test]
async fn broken_users_txt_keeps_the_users_above_the_broken_line() {
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!(
            "testdb = {} user={}",
            pg.connstr("testdb"),
            pg::TRUST_USER
        ))
        .auth("alice", "alice-secret")
        .auth_raw("# PgBouncer does not treat this as a comment")
        .auth("bob", "bob-secret")
        .start();
    assert_login_as(&b, "alice", "alice-secret", "testdb", pg::TRUST_USER).await;
    let f = assert_login_fails(&b, "bob", "bob-secret", "testdb").await;
    assert_auth_failed(&f, "user below the broken line");
    assert!(
        b.log().contains("broken auth file"),
        "log should say 'broken auth file':\n{}",
        b.log()
    );
}

/// A config as an operator writes it for PgBouncer 1.25: comments, spacing, [users], md5 and
/// SCRAM secrets, a forced-user database and a `*` fallback.
fn pgbouncer_125_ini(pg_port: u16) -> String {
    format!(
        ";; PgBouncer configuration, as deployed with PgBouncer 1.25\n\
         [databases]\n\
         ; a forced-user database\n\
         app = host=127.0.0.1 port={pg_port} dbname=testdb user=trust_user\n\
         testdb = host=127.0.0.1 port={pg_port} dbname=testdb pool_size=5\n\
         * = host=127.0.0.1 port={pg_port}\n\
         \n\
         [users]\n\
         md5_user = pool_mode=session max_user_connections=10\n\
         \n\
         [pgbouncer]\n\
         pidfile = @DIR@/pgbouncer.pid\n\
         listen_addr = 127.0.0.1\n\
         listen_port = @PORT@\n\
         unix_socket_dir = @DIR@\n\
         auth_type = md5\n\
         auth_file = @DIR@/users.txt\n\
         admin_users = admin\n\
         stats_users = stats, md5_user\n\
         pool_mode = session\n\
         server_reset_query = DISCARD ALL\n\
         ignore_startup_parameters = extra_float_digits\n\
         max_client_conn = 100\n\
         default_pool_size = 20\n\
         min_pool_size = 0\n\
         reserve_pool_size = 0\n\
         reserve_pool_timeout = 5\n\
         server_lifetime = 3600\n\
         server_idle_timeout = 600\n\
         server_connect_timeout = 15\n\
         server_login_retry = 1\n\
         query_wait_timeout = 120\n\
         client_login_timeout = 60\n\
         log_connections = 1\n\
         log_disconnections = 1\n\
         log_pooler_errors = 1\n\
         stats_period = 60\n\
         verbose = 0\n\
         server_tls_sslmode = disable\n\
         tcp_keepalive = 1\n\
         pkt_buf = 4096\n"
    )
}

#[tokio::test]
async fn pgbouncer_125_config_loads_unchanged() {
    let pg = PgCluster::shared();
    let users = [
        auth_file_line(pg::MD5_USER, &md5_secret(pg::MD5_USER, pg::MD5_PASS)),
        auth_file_line(pg::SCRAM_USER, &pg.stored_secret(pg::SCRAM_USER)),
        auth_file_line(pg::TRUST_USER, pg::TRUST_PASS),
        auth_file_line("admin", "admin-secret"),
    ]
    .join("\n")
        + "\n";
    let b = Bouncer::start_with(pgbouncer_125_ini(pg.port()), users, vec![], vec![]);
    assert_login_as(&b, pg::MD5_USER, pg::MD5_PASS, "testdb", pg::MD5_USER).await;
    assert_login_as(&b, pg::SCRAM_USER, pg::SCRAM_PASS, "testdb", pg::SCRAM_USER).await;
    assert_login_as(&b, pg::TRUST_USER, pg::TRUST_PASS, "app", pg::TRUST_USER).await;
    match query_one(
        &b,
        pg::TRUST_USER,
        pg::TRUST_PASS,
        "otherdb",
        "SELECT current_database()",
    )
    .await
    {
        Ok(db) => assert_eq!(db, "otherdb"),
        Err(f) => panic!("fallback database: {f}\n{}", b.log()),
    }
}
