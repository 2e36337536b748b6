//! Client and server authentication through krbouncer, as PgBouncer 1.25 does it: every
//! client `auth_type` against every users.txt secret form, mock auth for unknown users, and
//! every upstream method (trust, cleartext, md5, SCRAM, SCRAM pass-through), plus how an
//! upstream login failure reaches the client.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::bouncer::{Bouncer, BouncerConfig};
use common::client::{assert_auth_failed, assert_login_as, assert_login_fails, first_value};
use common::pg::{self, PgCluster};
use common::secrets::md5_secret;
use common::wire;

/// Client users that log in to the forced-user database `app` (upstream: trust_user, trust).
const ALICE: (&str, &str) = ("alice", "alice-secret"); // plaintext in users.txt
const BOB: (&str, &str) = ("bob", "bob-secret"); // md5 secret in users.txt
const CAROL: (&str, &str) = ("carol", pg::SCRAM_PASS); // SCRAM verifier in users.txt

/// A bouncer with `app` (forced trust_user) and `testdb` (pass-through user) databases and
/// alice/bob/carol in users.txt.
fn client_side(auth_type: &str) -> Bouncer {
    let pg = PgCluster::shared();
    let carol_secret = pg.stored_secret(pg::SCRAM_USER);
    BouncerConfig::new()
        .database(format!(
            "app = {} user={}",
            pg.connstr("testdb"),
            pg::TRUST_USER
        ))
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .set("auth_type", auth_type)
        .auth(ALICE.0, ALICE.1)
        .auth(BOB.0, &md5_secret(BOB.0, BOB.1))
        .auth(CAROL.0, &carol_secret)
        .start()
}

/// A wrong password (or an unusable secret) ends the login with PgBouncer's text.
async fn assert_password_rejected(b: &Bouncer, user: &str, password: &str) {
    let f = assert_login_fails(b, user, password, "app").await;
    assert_auth_failed(&f, user);
}

#[tokio::test]
async fn auth_type_trust_needs_a_known_user_only() {
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!(
            "app = {} user={}",
            pg.connstr("testdb"),
            pg::TRUST_USER
        ))
        .set("auth_type", "trust")
        .auth(ALICE.0, "")
        .start();
    assert_login_as(&b, ALICE.0, "anything", "app", pg::TRUST_USER).await;
    let f = assert_login_fails(&b, "mallory", "anything", "app").await;
    assert!(
        f.message.contains("\"trust\" authentication failed"),
        "unknown user under trust: {f}"
    );
}

#[tokio::test]
async fn auth_type_plain_accepts_every_secret_form() {
    let b = client_side("plain");
    for (user, pass) in [ALICE, BOB, CAROL] {
        assert_login_as(&b, user, pass, "app", pg::TRUST_USER).await;
        assert_password_rejected(&b, user, "wrong-password").await;
    }
}

#[tokio::test]
async fn auth_type_md5_accepts_every_secret_form() {
    // carol's SCRAM secret makes PgBouncer switch her to SCRAM (checked in auth_request_codes).
    let b = client_side("md5");
    for (user, pass) in [ALICE, BOB, CAROL] {
        assert_login_as(&b, user, pass, "app", pg::TRUST_USER).await;
        assert_password_rejected(&b, user, "wrong-password").await;
    }
}

#[tokio::test]
async fn auth_type_scram_accepts_plain_and_scram_secrets_only() {
    let b = client_side("scram-sha-256");
    for (user, pass) in [ALICE, CAROL] {
        assert_login_as(&b, user, pass, "app", pg::TRUST_USER).await;
        assert_password_rejected(&b, user, "wrong-password").await;
    }
    // An md5 secret cannot verify a SCRAM exchange, even with the right password.
    assert_password_rejected(&b, BOB.0, BOB.1).await;
}

/// The first authentication request the bouncer sends for `user` (raw protocol).
fn first_auth_code(b: &Bouncer, user: &str) -> Option<i32> {
    let mut s = wire::connect(b.port(), Duration::from_secs(10)).expect("connect");
    let startup = wire::startup_packet(wire::PROTO_3_0, &[("user", user), ("database", "app")]);
    let login = wire::login(&mut s, &startup, user, "not-the-password").expect("login io");
    login.auth_codes.first().copied()
}

#[test]
fn auth_request_codes_follow_pgbouncer() {
    const CLEARTEXT: i32 = 3;
    const MD5: i32 = 5;
    const SASL: i32 = 10;
    let plain = client_side("plain");
    assert_eq!(first_auth_code(&plain, ALICE.0), Some(CLEARTEXT));
    assert_eq!(first_auth_code(&plain, CAROL.0), Some(CLEARTEXT));
    let md5 = client_side("md5");
    assert_eq!(first_auth_code(&md5, ALICE.0), Some(MD5));
    assert_eq!(first_auth_code(&md5, BOB.0), Some(MD5));
    assert_eq!(
        first_auth_code(&md5, CAROL.0),
        Some(SASL),
        "SCRAM secret switches md5 to SCRAM"
    );
    // mock auth: unknown users are challenged like everyone else
    assert_eq!(first_auth_code(&md5, "mallory"), Some(MD5));
    let scram = client_side("scram-sha-256");
    assert_eq!(first_auth_code(&scram, ALICE.0), Some(SASL));
    assert_eq!(first_auth_code(&scram, "mallory"), Some(SASL));
}

#[tokio::test]
async fn unknown_user_fails_like_a_wrong_password() {
    for auth_type in ["plain", "md5", "scram-sha-256"] {
        let b = client_side(auth_type);
        let f = assert_login_fails(&b, "mallory", "whatever", "app").await;
        assert_auth_failed(&f, auth_type);
    }
}

/// A bouncer whose `testdb` logs in upstream as the client's own user.
fn upstream(auth_type: &str, users: &[(&str, String)]) -> Bouncer {
    let pg = PgCluster::shared();
    let mut cfg = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .set("auth_type", auth_type);
    for (user, secret) in users {
        cfg = cfg.auth(user, secret);
    }
    cfg.start()
}

#[tokio::test]
async fn upstream_trust() {
    let b = upstream("md5", &[(pg::TRUST_USER, pg::TRUST_PASS.to_string())]);
    assert_login_as(&b, pg::TRUST_USER, pg::TRUST_PASS, "testdb", pg::TRUST_USER).await;
}

#[tokio::test]
async fn upstream_cleartext_password() {
    let b = upstream("md5", &[(pg::CLEAR_USER, pg::CLEAR_PASS.to_string())]);
    assert_login_as(&b, pg::CLEAR_USER, pg::CLEAR_PASS, "testdb", pg::CLEAR_USER).await;
}

#[tokio::test]
async fn upstream_md5_with_plaintext_from_users_txt() {
    let b = upstream("md5", &[(pg::MD5_USER, pg::MD5_PASS.to_string())]);
    assert_login_as(&b, pg::MD5_USER, pg::MD5_PASS, "testdb", pg::MD5_USER).await;
}

#[tokio::test]
async fn upstream_md5_with_md5_secret_from_users_txt() {
    let b = upstream(
        "md5",
        &[(pg::MD5_USER, md5_secret(pg::MD5_USER, pg::MD5_PASS))],
    );
    assert_login_as(&b, pg::MD5_USER, pg::MD5_PASS, "testdb", pg::MD5_USER).await;
}

#[tokio::test]
async fn upstream_scram_with_plaintext_from_users_txt() {
    let b = upstream("md5", &[(pg::SCRAM_USER, pg::SCRAM_PASS.to_string())]);
    assert_login_as(&b, pg::SCRAM_USER, pg::SCRAM_PASS, "testdb", pg::SCRAM_USER).await;
}

#[tokio::test]
async fn upstream_scram_with_password_from_databases_section() {
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!(
            "forced = {} user={} password={}",
            pg.connstr("testdb"),
            pg::SCRAM_USER,
            pg::SCRAM_PASS
        ))
        .auth(ALICE.0, ALICE.1)
        .start();
    assert_login_as(&b, ALICE.0, ALICE.1, "forced", pg::SCRAM_USER).await;
}

/// Client logs in with SCRAM against the server's own verifier; krbouncer never sees the
/// password and must log in upstream with the keys recovered from the client's proof.
async fn check_scram_passthrough(auth_type: &str) {
    let pg = PgCluster::shared();
    let verifier = pg.stored_secret(pg::SCRAM_USER);
    assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier}");
    let b = upstream(auth_type, &[(pg::SCRAM_USER, verifier)]);
    assert_login_as(&b, pg::SCRAM_USER, pg::SCRAM_PASS, "testdb", pg::SCRAM_USER).await;

    // Two sessions at once need a second server login with the cached keys.
    let (c1, t1) = b
        .connect(pg::SCRAM_USER, pg::SCRAM_PASS, "testdb")
        .await
        .unwrap_or_else(|e| panic!("{auth_type}: {e}\n{}", b.log()));
    let (c2, t2) = b
        .connect(pg::SCRAM_USER, pg::SCRAM_PASS, "testdb")
        .await
        .unwrap_or_else(|e| panic!("{auth_type}: {e}\n{}", b.log()));
    let p1 = first_value(&c1, "SELECT pg_backend_pid()").await;
    let p2 = first_value(&c2, "SELECT pg_backend_pid()").await;
    let (p1, p2) = match (p1, p2) {
        (Ok(a), Ok(b2)) => (a, b2),
        (a, b2) => panic!("{auth_type}: {a:?} {b2:?}\n{}", b.log()),
    };
    assert_ne!(p1, p2, "session pooling gives each client its own server");
    // A wrong password must still fail with pass-through in place.
    let f = assert_login_fails(&b, pg::SCRAM_USER, "wrong", "testdb").await;
    assert_auth_failed(&f, auth_type);
    drop((c1, c2));
    let _ = (t1.await, t2.await);
}

#[tokio::test]
async fn scram_passthrough_with_auth_type_scram() {
    check_scram_passthrough("scram-sha-256").await;
}

#[tokio::test]
async fn scram_passthrough_with_auth_type_md5() {
    check_scram_passthrough("md5").await;
}

#[tokio::test]
async fn upstream_login_failure_reaches_the_client() {
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!(
            "bad = {} user={} password=wrong",
            pg.connstr("testdb"),
            pg::MD5_USER
        ))
        .auth(ALICE.0, ALICE.1)
        .start();
    // PgBouncer passes the server's error text (and SQLSTATE) on to the waiting client.
    let f = assert_login_fails(&b, ALICE.0, ALICE.1, "bad").await;
    let want = format!(
        "password authentication failed for user \"{}\"",
        pg::MD5_USER
    );
    assert!(f.message.contains(&want), "got {f}");
    assert!(
        b.wait_for_log("server login failed", Duration::from_secs(5)),
        "log lacks 'server login failed':\n{}",
        b.log()
    );
    // Within server_login_retry the cached error is served
    // ("server login has been failing, cached error: ... (server_login_retry)"), later the
    // server answers again: both carry the server's text.
    let again = assert_login_fails(&b, ALICE.0, ALICE.1, "bad").await;
    assert!(again.message.contains(&want), "second attempt: {again}");
}
