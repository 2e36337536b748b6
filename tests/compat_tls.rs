//! X.509 v1 certificates made the common way (`openssl x509 -req -CA ...` without an
//! extensions file, as in PgBouncer's test CA): accepted as krbouncer's own
//! `client_tls_cert_file`, and from a server with `server_tls_sslmode = require`, which does
//! not verify at all (libpq's meaning).
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::bouncer::{Bouncer, BouncerConfig};
use common::pg::{self, PgCluster};

const USER: &str = pg::TRUST_USER;
const PASS: &str = pg::TRUST_PASS;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl (install it: .ci/install-deps.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a `localhost` certificate signed by it, the runbook way; returns (cert, key).
fn v1_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=Test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-out",
            "server.crt",
        ],
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", "server.crt"])
        .current_dir(dir)
        .output()
        .expect("openssl x509 -text");
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("Version: 1 (0x0)"),
        "the recipe must make a v1 certificate"
    );
    (dir.join("server.crt"), dir.join("server.key"))
}

/// psql (sslmode=require, plus `extra` conninfo) through `b` must print `text`.
fn assert_psql_over_tls(b: &Bouncer, extra: &str, text: &str) {
    let out = Command::new("psql")
        .arg("-X")
        .arg("-Atc")
        .arg(format!("SELECT '{text}'"))
        .arg(format!(
            "host=127.0.0.1 port={} user={USER} dbname=testdb sslmode=require {extra}",
            b.port()
        ))
        .env("PGPASSWORD", PASS)
        .env("PGCONNECT_TIMEOUT", "20")
        .stdin(Stdio::null())
        .output()
        .expect("psql");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        text,
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
}

#[test]
fn v1_certificate_as_client_tls_cert_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = v1_certificate(dir.path());
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(USER, PASS)
        .set("client_tls_sslmode", "require")
        .set("client_tls_cert_file", cert.display())
        .set("client_tls_key_file", key.display())
        .start();
    assert_psql_over_tls(&b, "", "tls ok");
}

/// A private cluster serving TLS with a v1 certificate for `localhost` (its CA in `dir`).
fn tls_cluster(dir: &Path) -> PgCluster {
    let (cert, key) = v1_certificate(dir);
    let pg = PgCluster::start_new();
    let data = pg.data_dir();
    let owner = std::fs::metadata(data).expect("data dir").uid();
    for (src, name) in [(&cert, "server.crt"), (&key, "server.key")] {
        let dst = data.join(name);
        std::fs::copy(src, &dst).expect("copy cert");
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        nix::unistd::chown(&dst, Some(nix::unistd::Uid::from_raw(owner)), None).expect("chown");
    }
    pg.psql_super("ALTER SYSTEM SET ssl = on");
    pg.restart();
    pg
}

/// Logs in through a krbouncer with `settings` to `host` and reports whether the server
/// connection is encrypted, or the error.
async fn server_ssl_via(
    pg: &PgCluster,
    host: &str,
    settings: &[(&str, String)],
) -> Result<String, String> {
    let mut cfg = BouncerConfig::new()
        .database(format!(
            "testdb = host={host} port={} dbname=testdb",
            pg.port()
        ))
        .auth(USER, PASS)
        // a refused certificate keeps the client queued until then (PgBouncer's behaviour)
        .set("query_wait_timeout", 3);
    for (k, v) in settings {
        cfg = cfg.set(k, v);
    }
    let b = cfg.start();
    common::client::query_one(
        &b,
        USER,
        PASS,
        "testdb",
        "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await
    .map_err(|e| format!("{e:?}\n{}", b.log()))
}

#[tokio::test]
async fn v1_server_certificate_with_sslmode_require() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = tls_cluster(dir.path());
    let got = server_ssl_via(
        &pg,
        "127.0.0.1",
        &[("server_tls_sslmode", "require".into())],
    )
    .await;
    assert_eq!(got.as_deref(), Ok("true"), "{got:?}");
}

/// verify-ca and verify-full check a v1 chain (rustls cannot; x509_v1.rs does), and still
/// refuse a wrong CA or, for verify-full, a wrong host name.
#[tokio::test]
async fn v1_server_certificate_with_verify_ca_and_verify_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = tls_cluster(dir.path());
    let ca = dir.path().join("ca.crt").display().to_string();
    for (mode, host, ok) in [
        ("verify-ca", "127.0.0.1", true),
        ("verify-full", "localhost", true),
        ("verify-full", "127.0.0.1", false),
    ] {
        let got = server_ssl_via(
            &pg,
            host,
            &[
                ("server_tls_sslmode", mode.into()),
                ("server_tls_ca_file", ca.clone()),
            ],
        )
        .await;
        assert_eq!(got.is_ok(), ok, "{mode} {host}: {got:?}");
    }
    let other = tempfile::tempdir().expect("tempdir");
    v1_certificate(other.path());
    let wrong_ca = other.path().join("ca.crt").display().to_string();
    let got = server_ssl_via(
        &pg,
        "127.0.0.1",
        &[
            ("server_tls_sslmode", "verify-ca".into()),
            ("server_tls_ca_file", wrong_ca),
        ],
    )
    .await;
    assert!(
        got.is_err(),
        "a chain to another CA must be refused: {got:?}"
    );
}

/// A v1 client certificate signed by `dir`'s CA (made by [`v1_certificate`]); (cert, key).
fn v1_client_certificate(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let subj = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &subj,
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-out",
            "client.crt",
        ],
    );
    let key = dir.join("client.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (dir.join("client.crt"), key)
}

/// `client_tls_sslmode = verify-ca` with a v1 client certificate from `client_tls_ca_file`.
#[test]
fn v1_client_certificate_is_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = v1_certificate(dir.path());
    let (client_cert, client_key) = v1_client_certificate(dir.path(), USER);
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(USER, PASS)
        .set("client_tls_sslmode", "verify-ca")
        .set("client_tls_ca_file", dir.path().join("ca.crt").display())
        .set("client_tls_cert_file", cert.display())
        .set("client_tls_key_file", key.display())
        .start();
    let certs = format!(
        "sslcert={} sslkey={}",
        client_cert.display(),
        client_key.display()
    );
    assert_psql_over_tls(&b, &certs, "client cert ok");
}

/// `server_tls_cert_file` may be a v1 certificate too: PostgreSQL with `cert` authentication
/// accepts krbouncer by it.
#[tokio::test]
async fn v1_certificate_as_server_tls_cert_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = tls_cluster(dir.path());
    let (client_cert, client_key) = v1_client_certificate(dir.path(), USER);
    let data = pg.data_dir();
    let owner = std::fs::metadata(data).expect("data dir").uid();
    let ca = data.join("root.crt");
    std::fs::copy(dir.path().join("ca.crt"), &ca).expect("copy ca");
    nix::unistd::chown(&ca, Some(nix::unistd::Uid::from_raw(owner)), None).expect("chown");
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 cert\n",
    )
    .expect("hba");
    pg.psql_super("ALTER SYSTEM SET ssl_ca_file = 'root.crt'");
    pg.restart();
    let got = server_ssl_via(
        &pg,
        "127.0.0.1",
        &[
            ("server_tls_sslmode", "require".into()),
            ("server_tls_cert_file", client_cert.display().to_string()),
            ("server_tls_key_file", client_key.display().to_string()),
        ],
    )
    .await;
    assert_eq!(got.as_deref(), Ok("true"), "{got:?}\n{}", pg.log());
}
