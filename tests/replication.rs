//! Replication connections through the pooler, as PgBouncer 1.23+ passes them: a client with
//! `replication=database|true` gets a walsender of its own, logged in with its own startup
//! parameters (`options` verbatim), closed when it leaves; pg_basebackup and pg_receivewal
//! work through it; an unprivileged walsender login fails only for its own client.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::bouncer::{Bouncer, BouncerConfig};
use common::pg::{self, PgCluster};

const REPL_USER: &str = "repl_user";
const REPL_PASS: &str = "repl_pass";

/// A cluster of its own with a REPLICATION role allowed to stream (trust, over TCP).
fn cluster() -> PgCluster {
    let pg = PgCluster::start_new();
    let hba = pg.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    let lines = format!(
        "host replication {REPL_USER} 127.0.0.1/32 trust\nhost all {REPL_USER} 127.0.0.1/32 trust\n"
    );
    std::fs::write(&hba, lines + &old).unwrap();
    pg.psql_super(&format!(
        "CREATE ROLE {REPL_USER} LOGIN REPLICATION; SELECT pg_reload_conf();"
    ));
    pg
}

fn bouncer(pg: &PgCluster, db_options: &str) -> BouncerConfig {
    BouncerConfig::new()
        .database(format!("testdb = {} {db_options}", pg.connstr("testdb")))
        .database(format!("replication = {}", pg.connstr("replication")))
        .auth(REPL_USER, REPL_PASS)
        .auth(pg::TRUST_USER, pg::TRUST_PASS)
}

fn psql(b: &Bouncer, user: &str, pass: &str, conn: &str, sql: &str) -> (bool, String, String) {
    let out = b.psql(user, pass, conn, &["-At", "-c", sql]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn walsenders(pg: &PgCluster) -> usize {
    pg.psql_super("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn logical_and_physical_walsenders_pass_through_and_close_with_their_client() {
    let pg = cluster();
    let b = bouncer(&pg, "").start();
    let logical = "dbname=testdb replication=database options='-c enable_seqscan=off'";
    let (ok, out, err) = psql(&b, REPL_USER, REPL_PASS, logical, "IDENTIFY_SYSTEM");
    assert!(ok, "logical IDENTIFY_SYSTEM: {err}");
    assert!(
        out.ends_with("|testdb"),
        "IDENTIFY_SYSTEM names the database: {out}"
    );
    // `options` reaches the walsender verbatim (a normal client may only set tracked GUCs)
    let (ok, out, err) = psql(&b, REPL_USER, REPL_PASS, logical, "SHOW enable_seqscan");
    assert!(ok && out == "off", "{out} {err}");
    let physical = "dbname=testdb replication=true";
    let (ok, out, err) = psql(&b, REPL_USER, REPL_PASS, physical, "IDENTIFY_SYSTEM");
    assert!(ok, "physical IDENTIFY_SYSTEM: {err}");
    assert!(out.ends_with("|"), "physical: no database: {out}");
    // a normal client of the same pool is not disturbed
    let (ok, out, err) = psql(&b, REPL_USER, REPL_PASS, "testdb", "SELECT 41 + 1");
    assert!(ok && out == "42", "{out} {err}");
    assert!(
        common::wait::until(Duration::from_secs(10), || walsenders(&pg) == 0),
        "walsenders are closed with their clients"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_basebackup_and_pg_receivewal_work_through_the_pooler() {
    let pg = cluster();
    // small socket buffers as PgBouncer's suite uses: a WAL stream must not stall
    let b = bouncer(&pg, "").set("tcp_socket_buffer", 4096).start();
    let dir = tempfile::tempdir().unwrap();
    let conninfo = format!(
        "host=127.0.0.1 port={} user={REPL_USER} dbname=testdb",
        b.port()
    );
    let backup = dir.path().join("backup");
    let out = Command::new(pg::pg_bindir().join("pg_basebackup"))
        .args(["--dbname", &conninfo, "--checkpoint=fast", "--pgdata"])
        .arg(&backup)
        .env("PGPASSWORD", REPL_PASS)
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_basebackup: {out:?}");
    assert!(
        backup.join("PG_VERSION").exists(),
        "the backup has a data directory"
    );

    pg.psql_super("SELECT pg_create_physical_replication_slot('through_pooler')");
    let wal = dir.path().join("wal");
    std::fs::create_dir(&wal).unwrap();
    let mut receiver = Command::new(pg::pg_bindir().join("pg_receivewal"))
        .args([
            "--dbname",
            &conninfo,
            "--slot=through_pooler",
            "--verbose",
            "--directory",
        ])
        .arg(&wal)
        .env("PGPASSWORD", REPL_PASS)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // an idle cluster may have no WAL past the position streaming starts at: write some
    // (and switch segments) about once a second until the first file appears
    let mut polls = 0u32;
    let streaming = common::wait::until(Duration::from_secs(20), || {
        polls += 1;
        if polls % 50 == 1 {
            pg.psql_super("CREATE TABLE IF NOT EXISTS wal_noise (i int); INSERT INTO wal_noise VALUES (1); SELECT pg_switch_wal()");
        }
        std::fs::read_dir(&wal).unwrap().next().is_some()
    });
    let pid = nix::unistd::Pid::from_raw(receiver.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let exited = common::wait::until(Duration::from_secs(20), || {
        receiver.try_wait().unwrap().is_some()
    });
    if !exited {
        receiver.kill().unwrap();
    }
    let out = receiver.wait_with_output().unwrap();
    assert!(streaming, "pg_receivewal wrote WAL: {out:?}");
    assert!(
        exited && out.status.success(),
        "pg_receivewal stops cleanly on SIGINT: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_walsender_evicts_an_idle_server_of_a_full_pool() {
    let pg = cluster();
    let b = bouncer(&pg, "pool_size=1").start();
    let (ok, _, err) = psql(&b, REPL_USER, REPL_PASS, "testdb", "SELECT 1");
    assert!(ok, "{err}");
    let conn = "dbname=testdb replication=database";
    let (ok, _, err) = psql(&b, REPL_USER, REPL_PASS, conn, "IDENTIFY_SYSTEM");
    assert!(ok, "the walsender gets the pool's only slot: {err}");
    assert!(
        b.wait_for_log("closing because: evicted", Duration::from_secs(5)),
        "the idle server made room: {}",
        b.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unprivileged_walsender_fails_alone() {
    let pg = cluster();
    let b = bouncer(&pg, "").start();
    let conn = "dbname=testdb replication=true";
    let (ok, _, err) = psql(&b, pg::TRUST_USER, pg::TRUST_PASS, conn, "IDENTIFY_SYSTEM");
    assert!(!ok && err.contains("login failed"), "client told: {err}");
    assert!(
        b.wait_for_log(
            "no pg_hba.conf entry for replication connection",
            Duration::from_secs(5)
        ),
        "PostgreSQL's reason is logged: {}",
        b.log()
    );
    // PgBouncer logs it twice: once for the server, once for the client
    let closing = b
        .log()
        .matches("closing because: login failed (age=")
        .count();
    assert_eq!(closing, 2, "closing lines: {}", b.log());
    // not remembered as the pool's login failure (server_login_retry would refuse this)
    let (ok, out, err) = psql(&b, pg::TRUST_USER, pg::TRUST_PASS, "testdb", "SELECT 1");
    assert!(ok && out == "1", "a normal login right after works: {err}");
}
