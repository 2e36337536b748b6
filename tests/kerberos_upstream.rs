//! Kerberos upstream through the krbouncer binary: clients log in with users.txt passwords,
//! krbouncer logs in to a Kerberized PostgreSQL (real MIT KDC) with GSSAPI, optionally inside
//! TLS or GSS encryption, and refuses or reports what a human must fix.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::bouncer::{Bouncer, BouncerConfig};
use common::client::{assert_login_fails, query_one};
use common::kdc::{KrbLab, LabOptions};

const APP: (&str, &str) = ("app", "app-password");

static LAB: OnceLock<KrbLab> = OnceLock::new();

fn lab() -> &'static KrbLab {
    LAB.get_or_init(|| KrbLab::start(LabOptions::default()))
}

/// A bouncer whose process carries the lab's Kerberos environment, with its own memory ccache.
fn bouncer(lab: &KrbLab, databases: &[String], settings: &[(&str, &str)]) -> Bouncer {
    let mut cfg = BouncerConfig::new()
        .auth(APP.0, APP.1)
        .set("server_connect_timeout", "3");
    for d in databases {
        cfg = cfg.database(d.clone());
    }
    for (k, v) in settings {
        cfg = cfg.set(k, v);
    }
    for (k, v) in lab.env() {
        if k.starts_with("KRB5") && k != "KRB5CCNAME" {
            cfg = cfg.env(&k, v);
        }
    }
    cfg.env("KRB5CCNAME", "MEMORY:krbouncer").start()
}

fn db_line(lab: &KrbLab, name: &str, host: &str, dbname: &str, extra: &str) -> String {
    format!(
        "{name} = host={host} port={} dbname={dbname} user={} {extra}",
        lab.pg_port(),
        lab.user_principal()
    )
}

const GSS_ROW: &str = "SELECT s.gss_authenticated::text || '/' || s.encrypted::text || '/' || COALESCE(t.ssl::text, 'f') \
     FROM pg_stat_gssapi s JOIN pg_stat_ssl t USING (pid) WHERE pid = pg_backend_pid()";

async fn gss_row(b: &Bouncer, db: &str) -> String {
    match query_one(b, APP.0, APP.1, db, GSS_ROW).await {
        Ok(v) => v,
        Err(f) => panic!("{db}: {f}\n{}", b.log()),
    }
}

#[tokio::test]
async fn issue_config_md5_client_gssapi_upstream_tls_prefer() {
    let lab = lab();
    let spn = lab.spn().to_string();
    let b = bouncer(
        lab,
        &[db_line(lab, "airflow", "localhost", "labdb", "")],
        &[
            ("server_gssauth_negotiate", "allow"),
            ("server_krb_spn", &spn),
            ("server_tls_sslmode", "prefer"),
        ],
    );
    // GSSAPI-authenticated, not GSS-encrypted, inside TLS (prefer found a TLS server)
    assert_eq!(gss_row(&b, "airflow").await, "true/false/true");
    assert!(
        b.log().contains(&spn),
        "the principal used is logged:\n{}",
        b.log()
    );
}

#[tokio::test]
async fn default_spn_is_host_based_and_hostssl_works() {
    let lab = lab();
    let b = bouncer(
        lab,
        &[db_line(lab, "ssl", "localhost", "ssldb", "")],
        &[
            ("server_gssauth_negotiate", "allow"),
            ("server_tls_sslmode", "require"),
        ],
    );
    assert_eq!(gss_row(&b, "ssl").await, "true/false/true");
}

#[tokio::test]
async fn gssenc_required_serves_a_hostgssenc_only_server() {
    let lab = lab();
    let spn = lab.spn().to_string();
    let b = bouncer(
        lab,
        &[db_line(
            lab,
            "enc",
            "localhost",
            "gssencdb",
            "server_gssencmode=require",
        )],
        &[
            ("server_gssauth_negotiate", "allow"),
            ("server_krb_spn", &spn),
            ("server_tls_sslmode", "disable"),
        ],
    );
    assert_eq!(gss_row(&b, "enc").await, "true/true/false");
    // more than 16 KiB each way over GSS encryption
    let big = "x".repeat(100_000);
    let sql = format!("SELECT length('{big}') || ':' || length(repeat('y', 200000))");
    match query_one(&b, APP.0, APP.1, "enc", &sql).await {
        Ok(v) => assert_eq!(v, "100000:200000"),
        Err(f) => panic!("{f}\n{}", b.log()),
    }
}

#[tokio::test]
async fn wrong_spn_and_disabled_negotiation_give_readable_errors() {
    let lab = lab();
    let b = bouncer(
        lab,
        &[
            db_line(
                lab,
                "wrong",
                "localhost",
                "labdb",
                "server_krb_spn=postgres/nohost@TEST.LOCAL",
            ),
            db_line(
                lab,
                "off",
                "localhost",
                "labdb",
                "server_gssauth_negotiate=disable",
            ),
        ],
        &[
            ("server_gssauth_negotiate", "allow"),
            ("server_tls_sslmode", "disable"),
        ],
    );
    let f = assert_login_fails(&b, APP.0, APP.1, "wrong").await;
    assert!(f.message.starts_with("server login failed"), "{f}");
    assert!(
        f.message.contains("not found in Kerberos database") || f.message.contains("nohost"),
        "{f}"
    );
    let f = assert_login_fails(&b, APP.0, APP.1, "off").await;
    assert!(
        f.message.contains("server_gssauth_negotiate = disable"),
        "{f}"
    );
}

#[tokio::test]
async fn negotiate_require_refuses_a_password_server() {
    let lab = lab();
    let pw_user = lab.var("PGLAB_PW_USER").to_string();
    let pw = lab.var("PGLAB_PW_PASSWORD").to_string();
    let b = bouncer(
        lab,
        &[format!(
            "pw = host=localhost port={} dbname=labdb user={pw_user} password={pw}",
            lab.pg_port()
        )],
        &[
            ("server_gssauth_negotiate", "require"),
            ("server_tls_sslmode", "disable"),
        ],
    );
    let f = assert_login_fails(&b, APP.0, APP.1, "pw").await;
    assert!(
        f.message.contains("server_gssauth_negotiate = require"),
        "{f}"
    );
}

#[tokio::test]
async fn kdc_outage_keeps_sessions_and_fails_new_logins_within_the_deadline() {
    // own lab: this test stops its KDC
    let lab = KrbLab::start(LabOptions::default());
    let b = bouncer(
        &lab,
        &[
            db_line(
                &lab,
                "a",
                "localhost",
                "labdb",
                "server_krb_spn=postgres/localhost@TEST.LOCAL",
            ),
            // a second service principal: its ticket is not cached yet, so it needs the KDC
            db_line(
                &lab,
                "b",
                "127.0.0.1",
                "labdb",
                "server_krb_spn=postgres/127.0.0.1@TEST.LOCAL",
            ),
        ],
        &[
            ("server_gssauth_negotiate", "allow"),
            ("server_tls_sslmode", "disable"),
            ("server_login_retry", "1"),
        ],
    );
    let (client, conn) = b
        .connect(APP.0, APP.1, "a")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.log()));
    lab.pause_kdc();
    for _ in 0..5 {
        let row = client.simple_query("SELECT 1").await;
        assert!(
            row.is_ok(),
            "established session broke while the KDC is down: {row:?}"
        );
    }
    let started = Instant::now();
    let f = assert_login_fails(&b, APP.0, APP.1, "b").await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "login failure took {took:?} (server_connect_timeout = 3)"
    );
    assert!(
        f.message.contains("server login failed") || f.message.contains("server_login_retry"),
        "{f}"
    );
    lab.resume_kdc();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match query_one(&b, APP.0, APP.1, "b", "SELECT 'ok'").await {
            Ok(v) => {
                assert_eq!(v, "ok");
                break;
            }
            Err(f) if Instant::now() < deadline => {
                let _ = f;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(f) => panic!(
                "logins did not recover after the KDC came back: {f}\n{}",
                b.log()
            ),
        }
    }
    drop(client);
    conn.abort();
}
