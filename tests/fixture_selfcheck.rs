//! Checks the test fixtures themselves against PostgreSQL directly (no krbouncer involved):
//! the cluster starts, every role logs in with its hba method, helpers report what they should.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::bouncer::{connect_conninfo, error_text};
use common::pg::{self, PgCluster};
use common::{secrets, wait, wire};

#[tokio::test]
async fn each_role_logs_in_directly_with_its_method() {
    let pg = PgCluster::shared();
    for (role, pass) in pg::ROLES {
        let (client, _task) = connect_conninfo(&pg.conninfo(role, pass, "testdb"))
            .await
            .unwrap_or_else(|e| panic!("{role}: {}\n{}", error_text(&e), pg.log()));
        let row = client
            .query_one("SELECT current_user::text, current_database()::text", &[])
            .await
            .expect("query");
        assert_eq!(row.get::<_, String>(0), role);
        assert_eq!(row.get::<_, String>(1), "testdb");
    }
}

#[tokio::test]
async fn wrong_password_is_rejected_by_postgres() {
    let pg = PgCluster::shared();
    for role in [pg::MD5_USER, pg::SCRAM_USER, pg::CLEAR_USER] {
        let err = connect_conninfo(&pg.conninfo(role, "wrong", "testdb"))
            .await
            .err()
            .unwrap_or_else(|| panic!("{role} logged in with a wrong password"));
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "28P01", "{role}: {}", error_text(&err));
        assert_eq!(
            db.message(),
            format!("password authentication failed for user \"{role}\"")
        );
    }
}

#[test]
fn stored_secrets_have_the_expected_forms() {
    let pg = PgCluster::shared();
    assert_eq!(
        pg.stored_secret(pg::MD5_USER),
        secrets::md5_secret(pg::MD5_USER, pg::MD5_PASS)
    );
    assert!(
        pg.stored_secret(pg::SCRAM_USER)
            .starts_with("SCRAM-SHA-256$")
    );
    assert!(
        pg.stored_secret(pg::CLEAR_USER)
            .starts_with("SCRAM-SHA-256$")
    );
}

#[test]
fn raw_wire_login_gets_md5_challenge_from_postgres() {
    let pg = PgCluster::shared();
    let mut s = wire::connect(pg.port(), Duration::from_secs(10)).expect("connect");
    let startup = wire::startup_packet(
        wire::PROTO_3_0,
        &[("user", pg::MD5_USER), ("database", "testdb")],
    );
    let login = wire::login(&mut s, &startup, pg::MD5_USER, pg::MD5_PASS).expect("login io");
    assert!(login.ready, "{login:?}");
    assert_eq!(login.auth_codes, vec![5, 0]);
    assert_eq!(
        wire::simple_query(&mut s, "SELECT 40 + 2").expect("io"),
        Ok(vec!["42".to_string()])
    );
    wire::terminate(s);
}

#[tokio::test]
async fn backend_pids_track_sessions() {
    let pg = PgCluster::shared();
    let (client, task) = connect_conninfo(&pg.conninfo(pg::CLEAR_USER, pg::CLEAR_PASS, "otherdb"))
        .await
        .expect("login");
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    assert!(pg.backend_pids(pg::CLEAR_USER).contains(&pid));
    drop(client);
    let _ = task.await;
    assert!(
        wait::until(Duration::from_secs(10), || !pg.backend_alive(pid)),
        "backend {pid} still alive"
    );
}

#[test]
fn private_cluster_restarts_and_drops() {
    let pg = PgCluster::start_new();
    assert_eq!(pg.psql_super("SELECT 1"), "1");
    pg.restart();
    assert_eq!(pg.psql_super("SELECT 2"), "2");
    let root = pg.data_dir().parent().expect("root").to_path_buf();
    drop(pg);
    assert!(!root.exists());
}
