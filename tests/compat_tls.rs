//! X.509 v1 certificates made the common way (`openssl x509 -req -CA ...` without an
//! extensions file, as in PgBouncer's test CA): accepted as krbouncer's own
//! `client_tls_cert_file`, and from a server with `server_tls_sslmode = require`, which does
//! not verify at all (libpq's meaning).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::bouncer::BouncerConfig;
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
    let out = Command::new("psql")
        .arg("-X")
        .arg("-Atc")
        .arg("SELECT 'tls ok'")
        .arg(format!(
            "host=127.0.0.1 port={} user={USER} dbname=testdb sslmode=require",
            b.port()
        ))
        .env("PGPASSWORD", PASS)
        .env("PGCONNECT_TIMEOUT", "20")
        .stdin(Stdio::null())
        .output()
        .expect("psql");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "tls ok",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
}

#[tokio::test]
async fn v1_server_certificate_with_sslmode_require() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = v1_certificate(dir.path());
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
    let b = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(USER, PASS)
        .set("server_tls_sslmode", "require")
        .start();
    let got = common::client::query_one(
        &b,
        USER,
        PASS,
        "testdb",
        "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
    match got {
        Ok(v) => assert_eq!(v, "true"),
        Err(e) => panic!("{e:?}\n{}", b.log()),
    }
}
