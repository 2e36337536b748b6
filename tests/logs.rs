//! Log output: PgBouncer-like text lines by default, JSON lines with `log_format = json`, no
//! secret in any line of a trace-level log of md5 / SCRAM / cleartext logins (good and bad),
//! and `logfile` reopened after a rotation (`krbouncer::logging::reopen`). A new server
//! connection is logged only with `log_connections`, as PgBouncer does.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::bouncer::{Bouncer, BouncerConfig};
use common::client::{assert_login_fails, query_one};
use common::pg::{self, PgCluster};

fn bouncer(settings: &[(&str, &str)], args: &[&str]) -> Bouncer {
    let pg = PgCluster::shared();
    let mut cfg = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(pg::TRUST_USER, pg::TRUST_PASS)
        .auth(pg::MD5_USER, pg::MD5_PASS)
        .auth(pg::SCRAM_USER, pg::SCRAM_PASS)
        .auth(pg::CLEAR_USER, pg::CLEAR_PASS)
        .args(args);
    for (k, v) in settings {
        cfg = cfg.set(k, v);
    }
    cfg.start()
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[tokio::test]
async fn text_lines_look_like_pgbouncer() {
    let b = bouncer(&[("log_connections", "1")], &[]);
    query_one(&b, pg::TRUST_USER, pg::TRUST_PASS, "testdb", "SELECT 1")
        .await
        .expect("query");
    assert!(b.wait_for_log("login attempt", Duration::from_secs(10)));
    let log = b.log();
    let line = log
        .lines()
        .find(|l| l.contains("login attempt"))
        .expect("login line");
    // 2026-01-02 03:04:05.678 UTC [1234] LOG C-1: testdb/trust_user@127.0.0.1:5555 login attempt: db=testdb user=trust_user tls=no
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(words[0].len(), 10, "{line}");
    assert_eq!(words[1].len(), 12, "{line}");
    assert_eq!(words[2], "UTC", "{line}");
    let pid = words[3].trim_start_matches('[').trim_end_matches(']');
    assert_eq!(pid, b.pid().expect("pid").to_string(), "{line}");
    assert_eq!(words[4], "LOG", "{line}");
    let client = words[5]
        .strip_prefix("C-")
        .and_then(|c| c.strip_suffix(':'));
    assert!(client.is_some_and(is_digits), "{line}");
    assert!(
        words[6].starts_with("testdb/trust_user@127.0.0.1:"),
        "{line}"
    );
    assert!(
        line.ends_with("login attempt: db=testdb user=trust_user tls=no"),
        "{line}"
    );
    let startup = log.lines().next().expect("first line");
    assert!(startup.contains(" LOG listening"), "{startup}");
}

/// Stats lines in the log so far (`log_stats`, one per `stats_period`).
fn stats_lines(b: &Bouncer) -> usize {
    b.log().lines().filter(|l| l.contains(" xacts/s, ")).count()
}

#[tokio::test]
async fn new_server_connection_logged_only_with_log_connections() {
    for (flag, expected) in [("1", true), ("0", false)] {
        let b = bouncer(
            &[
                ("log_connections", flag),
                ("stats_period", "1"),
                ("log_stats", "1"),
            ],
            &[],
        );
        query_one(&b, pg::TRUST_USER, pg::TRUST_PASS, "testdb", "SELECT 1")
            .await
            .expect("query");
        // a stats line written after the query: any line about its server is in the log by now
        let before = stats_lines(&b);
        assert!(
            common::wait::until(Duration::from_secs(10), || stats_lines(&b) > before),
            "a stats line every second\n{}",
            b.log()
        );
        assert_eq!(
            b.log().contains("new connection to server (from "),
            expected,
            "log_connections={flag}\n{}",
            b.log()
        );
    }
}

#[tokio::test]
async fn json_lines_when_asked() {
    let b = bouncer(&[("log_format", "json"), ("log_connections", "1")], &[]);
    query_one(&b, pg::TRUST_USER, pg::TRUST_PASS, "testdb", "SELECT 1")
        .await
        .expect("query");
    assert!(b.wait_for_log("login attempt", Duration::from_secs(10)));
    let log = b.log();
    let mut saw_login = false;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let msg = v["fields"]["message"].as_str().unwrap_or("");
        if msg.starts_with("login attempt") {
            saw_login = true;
            assert_eq!(v["level"], "INFO", "{line}");
            assert_eq!(v["span"]["db"], "testdb", "{line}");
            assert_eq!(v["fields"]["tls"], "no", "{line}");
        }
    }
    assert!(saw_login, "{log}");
}

fn md5_hex(user: &str, password: &str) -> String {
    use md5::{Digest, Md5};
    let d = Md5::digest(format!("{password}{user}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Logs in with each mechanism (right and wrong password) at trace level, then greps the log
/// for every password and md5 hash used.
#[tokio::test]
async fn no_secret_in_a_trace_level_log() {
    const WRONG: &str = "Wrong-Guess-Pw-42";
    let cases = [
        ("md5", pg::MD5_USER, pg::MD5_PASS),
        ("scram-sha-256", pg::SCRAM_USER, pg::SCRAM_PASS),
        ("plain", pg::CLEAR_USER, pg::CLEAR_PASS),
    ];
    for (auth_type, user, pass) in cases {
        let b = bouncer(
            &[("auth_type", auth_type), ("log_connections", "1")],
            &["-v", "-v"],
        );
        let got = query_one(&b, user, pass, "testdb", "SELECT current_user").await;
        assert_eq!(
            got.as_deref(),
            Ok(user),
            "{auth_type}: {got:?}\n{}",
            b.log()
        );
        assert_login_fails(&b, user, WRONG, "testdb").await;
        let log = b.log();
        assert!(log.contains("login attempt"), "{log}");
        for secret in [pass, WRONG, &md5_hex(user, pass), &md5_hex(user, WRONG)] {
            assert!(
                !log.contains(secret),
                "{auth_type}: secret {secret:?} in the log:\n{log}"
            );
        }
    }
}

/// In-process: this test binary installs the subscriber itself, writes, rotates, reopens.
#[test]
fn logfile_is_reopened_after_rotation() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("krbouncer.log");
    let path_s = path.display().to_string();
    krbouncer::logging::init(krbouncer::logging::LogSetup {
        logfile: &path_s,
        quiet: false,
        verbose: 0,
        json: false,
        syslog: false,
        syslog_ident: "pgbouncer",
        syslog_facility: "daemon",
    })
    .expect("init");
    tracing::info!("before rotation");
    let rotated = dir.path().join("krbouncer.log.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    tracing::info!("still into the rotated file");
    krbouncer::logging::reopen().expect("reopen");
    tracing::info!("after reopen");
    let old = std::fs::read_to_string(&rotated).expect("old");
    let new = std::fs::read_to_string(&path).expect("new file created by reopen");
    assert!(old.contains("LOG before rotation"), "{old}");
    assert!(old.contains("still into the rotated file"), "{old}");
    assert!(new.contains("LOG after reopen"), "{new}");
    assert!(!new.contains("before rotation"), "{new}");
}

#[tokio::test]
async fn syslog_settings_are_accepted() {
    let b = bouncer(
        &[
            ("syslog", "1"),
            ("syslog_ident", "krbouncer-test"),
            ("syslog_facility", "local0"),
        ],
        &[],
    );
    let got = query_one(&b, pg::TRUST_USER, pg::TRUST_PASS, "testdb", "SELECT 1").await;
    assert_eq!(got.as_deref(), Ok("1"), "{}", b.log());
    if !std::path::Path::new("/dev/log").exists() {
        assert!(b.log().contains("syslog is unreachable"), "{}", b.log());
    }
}

/// PgBouncer's `register_auto_database` line, once, for a database taken from `*`.
#[tokio::test]
async fn auto_database_registration_is_logged() {
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!("* = host=127.0.0.1 port={}", pg.port()))
        .auth(pg::TRUST_USER, pg::TRUST_PASS)
        .start();
    for _ in 0..2 {
        query_one(&b, pg::TRUST_USER, pg::TRUST_PASS, "testdb", "SELECT 1")
            .await
            .unwrap();
    }
    let line = "registered new auto-database: testdb";
    assert_eq!(b.log().matches(line).count(), 1, "{}", b.log());
}

/// SIGUSR2 during a shutdown is ignored with PgBouncer's line (the shutdown goes on).
#[tokio::test]
async fn sigusr2_while_shutting_down_is_ignored() {
    let b = common::admin::admin_config(&[]).start();
    let (_c, _t) = b
        .connect(pg::TRUST_USER, pg::TRUST_PASS, "testdb")
        .await
        .unwrap();
    let admin =
        common::admin::admin_connect(&b, common::admin::ADMIN, common::admin::ADMIN_PASS).await;
    let _ = admin.simple_query("SHUTDOWN WAIT_FOR_CLIENTS").await;
    b.send_signal(nix::sys::signal::Signal::SIGUSR2);
    assert!(
        b.wait_for_log(
            "got SIGUSR2 while shutting down, ignoring",
            Duration::from_secs(10)
        ),
        "{}",
        b.log()
    );
}
