//! `auth_type = hba` with `auth_hba_file` and `auth_ident_file` against PostgreSQL 15: the
//! first matching rule picks the method (trust, md5, reject, peer with an ident map), no
//! matching rule refuses the login, and RELOAD re-reads the files.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::bouncer::{Bouncer, BouncerConfig, connect_conninfo};
use common::client::{
    Failure, assert_auth_failed, assert_login_as, assert_login_fails, first_value,
};
use common::pg::{self, PgCluster};
use common::wait::until;

const RULES: &str = "\
# local: peer with a map; TCP: per user, then a catch-all reject
local   all   all                     peer map=osmap
host    app   trust_user  127.0.0.1/32   trust
host    app   md5_user    127.0.0.0 255.0.0.0  md5
host    app   all         127.0.0.1/32   reject
";

fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .expect("getpwuid")
        .expect("the test's OS user has a name")
        .name
}

fn hba_bouncer(dir: &Path) -> Bouncer {
    let pg = PgCluster::shared();
    let hba = dir.join("hba.conf");
    let ident = dir.join("ident.conf");
    std::fs::write(&hba, RULES).expect("hba.conf");
    std::fs::write(&ident, format!("osmap {} trust_user\n", os_user())).expect("ident.conf");
    BouncerConfig::new()
        .database(format!("app = {}", pg.connstr("testdb")))
        .database(format!("other = {}", pg.connstr("testdb")))
        .set("auth_type", "hba")
        .set("auth_hba_file", hba.display())
        .set("auth_ident_file", ident.display())
        .auth(pg::TRUST_USER, "not-the-password")
        .auth(pg::MD5_USER, pg::MD5_PASS)
        .auth(pg::CLEAR_USER, pg::CLEAR_PASS)
        .start()
}

#[tokio::test]
async fn the_first_matching_rule_decides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = hba_bouncer(dir.path());
    // trust: any password
    assert_login_as(&b, pg::TRUST_USER, "anything", "app", pg::TRUST_USER).await;
    // md5 (address + mask form): the password matters
    assert_login_as(&b, pg::MD5_USER, pg::MD5_PASS, "app", pg::MD5_USER).await;
    let f = assert_login_fails(&b, pg::MD5_USER, "wrong", "app").await;
    assert_auth_failed(&f, "md5 rule");
    // the catch-all reject
    let f = assert_login_fails(&b, pg::CLEAR_USER, pg::CLEAR_PASS, "app").await;
    assert_eq!(f.message, "login rejected", "{f}");
    // no rule for this database
    let f = assert_login_fails(&b, pg::TRUST_USER, "anything", "other").await;
    assert_eq!(f.message, "no authentication method is found", "{f}");
}

async fn unix_login(b: &Bouncer, user: &str) -> Result<String, Failure> {
    let (client, _task) = connect_conninfo(&b.conninfo_unix(user, "unused", "app"))
        .await
        .map_err(|e| Failure::from_pg(&e))?;
    first_value(&client, "SELECT current_user").await
}

#[tokio::test]
async fn peer_logins_follow_the_ident_map() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = hba_bouncer(dir.path());
    // the OS user may log in as trust_user only
    assert_eq!(
        unix_login(&b, pg::TRUST_USER).await.expect("mapped user"),
        pg::TRUST_USER
    );
    let f = unix_login(&b, pg::MD5_USER)
        .await
        .expect_err("unmapped user");
    assert_eq!(f.message, "unix socket login rejected", "{f}");
    assert!(
        b.log().contains("ident map osmap cannot be matched"),
        "{}",
        b.log()
    );
}

#[tokio::test]
async fn reload_rereads_the_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = hba_bouncer(dir.path());
    let f = assert_login_fails(&b, pg::CLEAR_USER, pg::CLEAR_PASS, "app").await;
    assert_eq!(f.message, "login rejected", "{f}");
    std::fs::write(
        dir.path().join("hba.conf"),
        "host all all 127.0.0.1/32 password\n",
    )
    .expect("rewrite hba.conf");
    b.send_signal(nix::sys::signal::Signal::SIGHUP);
    let reloaded = until(Duration::from_secs(10), || {
        b.log().contains("configuration reloaded")
    });
    assert!(reloaded, "{}", b.log());
    assert_login_as(&b, pg::CLEAR_USER, pg::CLEAR_PASS, "app", pg::CLEAR_USER).await;
}
