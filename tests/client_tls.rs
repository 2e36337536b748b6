//! Client-side TLS (`client_tls_*`) against a test CA made in the test: libpq `verify-full`,
//! tokio-postgres over rustls, `require` refusing plain clients, direct TLS with ALPN,
//! `auth_type = cert` by certificate CN, and bad settings refused at startup.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::bouncer::{Bouncer, BouncerConfig, run_expect_fail, run_to_exit, write_config};
use common::client::Failure;
use common::pg::{self, PgCluster};
use common::pki::Pki;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: &str = pg::TRUST_USER;
const PASS: &str = pg::TRUST_PASS;

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn bouncer(pki: &Pki, settings: &[(&str, &str)]) -> Bouncer {
    let pg = PgCluster::shared();
    let (crt, key) = pki.issue("server", "localhost", true);
    let mut cfg = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(USER, PASS)
        .auth("alice", "alice-secret")
        .set("client_tls_cert_file", p(&crt))
        .set("client_tls_key_file", p(&key))
        .set("client_tls_ca_file", p(&pki.ca()));
    for (k, v) in settings {
        cfg = cfg.set(k, v);
    }
    cfg.start()
}

fn roots(pki: &Pki) -> rustls::RootCertStore {
    let pem = std::fs::read(pki.ca()).expect("read CA");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.expect("CA pem")).expect("add CA");
    }
    roots
}

fn client_config(pki: &Pki, client_cert: Option<(&Path, &Path)>) -> rustls::ClientConfig {
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots(pki));
    match client_cert {
        None => b.with_no_client_auth(),
        Some((crt, key)) => {
            let certs: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut std::fs::read(crt).expect("crt").as_slice())
                    .collect::<Result<_, _>>()
                    .expect("certs");
            let key: PrivateKeyDer<'static> =
                rustls_pemfile::private_key(&mut std::fs::read(key).expect("key").as_slice())
                    .expect("key pem")
                    .expect("a key");
            b.with_client_auth_cert(certs, key).expect("client cert")
        }
    }
}

/// tokio-postgres over rustls (which always verifies the chain and host name, i.e. verify-full).
async fn connect_tls(
    b: &Bouncer,
    pki: &Pki,
    user: &str,
    password: &str,
    client_cert: Option<(&Path, &Path)>,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), Failure> {
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(client_config(pki, client_cert));
    let conninfo = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user={user} password='{password}' dbname=testdb sslmode=require connect_timeout=20",
        b.port()
    );
    let (client, conn) = tokio_postgres::connect(&conninfo, tls)
        .await
        .map_err(|e| Failure::from_pg(&e))?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((client, task))
}

async fn select_one(c: &tokio_postgres::Client) -> String {
    let rows = c.simple_query("SELECT 1").await.expect("query");
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .expect("a row")
}

#[test]
fn psql_verify_full_logs_in() {
    let pki = Pki::new("krbouncer test CA");
    let b = bouncer(&pki, &[("client_tls_sslmode", "require")]);
    let out = Command::new("psql")
        .arg("-X")
        .arg(format!(
            "host=localhost hostaddr=127.0.0.1 port={} user={USER} dbname=testdb sslmode=verify-full sslrootcert={} connect_timeout=20",
            b.port(),
            p(&pki.ca())
        ))
        .args(["-tAc", "SELECT 42"])
        .env("PGPASSWORD", PASS)
        .output()
        .expect("run psql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "42",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    assert!(
        b.wait_for_log("tls=TLSv1.3/TLS_", Duration::from_secs(10)),
        "login attempt logs the TLS version and cipher:\n{}",
        b.log()
    );
}

#[tokio::test]
async fn tokio_postgres_over_rustls_and_require_refuses_plain() {
    let pki = Pki::new("krbouncer test CA");
    let b = bouncer(&pki, &[("client_tls_sslmode", "require")]);
    let (c, task) = connect_tls(&b, &pki, USER, PASS, None)
        .await
        .unwrap_or_else(|e| panic!("TLS login: {e}\n{}", b.log()));
    assert_eq!(select_one(&c).await, "1");
    drop(c);
    let _ = task.await;
    let plain = b
        .connect(USER, PASS, "testdb")
        .await
        .map(|_| ())
        .expect_err("plain client refused");
    let f = Failure::from_pg(&plain);
    assert_eq!(f.message, "SSL required", "{f}");
    assert_eq!(f.sqlstate, "08P01");
    // unix sockets are never offered TLS and are not refused
    let (c, task) = common::bouncer::connect_conninfo(&b.conninfo_unix(USER, PASS, "testdb"))
        .await
        .unwrap_or_else(|e| panic!("unix login: {e}\n{}", b.log()));
    assert_eq!(select_one(&c).await, "1");
    drop(c);
    let _ = task.await;
}

#[tokio::test]
async fn disable_answers_n_and_prefer_serves_both() {
    let pki = Pki::new("krbouncer test CA");
    let b = bouncer(&pki, &[("client_tls_sslmode", "disable")]);
    let e = connect_tls(&b, &pki, USER, PASS, None)
        .await
        .map(|_| ())
        .expect_err("sslmode=require client refused by a non-TLS bouncer");
    assert!(
        e.message.to_lowercase().contains("tls") || e.message.contains("SSL"),
        "{e}"
    );
    let b = bouncer(&pki, &[("client_tls_sslmode", "prefer")]);
    let (c, task) = connect_tls(&b, &pki, USER, PASS, None).await.expect("TLS");
    assert_eq!(select_one(&c).await, "1");
    drop(c);
    let _ = task.await;
    let (c, task) = b.connect(USER, PASS, "testdb").await.expect("plain");
    assert_eq!(select_one(&c).await, "1");
    drop(c);
    let _ = task.await;
}

/// StartupMessage for `user`/`testdb`, protocol 3.0.
fn startup_packet(user: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608u32.to_be_bytes());
    for (k, v) in [("user", user), ("database", "testdb")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

#[tokio::test]
async fn direct_tls_needs_alpn_postgresql() {
    let pki = Pki::new("krbouncer test CA");
    let b = bouncer(&pki, &[("client_tls_sslmode", "require")]);
    let name = ServerName::try_from("localhost").expect("name");
    // with ALPN: the first thing inside TLS is the StartupMessage; md5 challenge comes back
    let mut cfg = client_config(&pki, None);
    cfg.alpn_protocols = vec![b"postgresql".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", b.port()))
        .await
        .expect("tcp");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name.clone(), tcp)
        .await
        .unwrap_or_else(|e| panic!("direct TLS handshake: {e}\n{}", b.log()));
    tls.write_all(&startup_packet(USER)).await.expect("startup");
    let mut head = [0u8; 9];
    tls.read_exact(&mut head).await.expect("auth request");
    assert_eq!(head[0], b'R', "{head:?}");
    assert_eq!(
        u32::from_be_bytes([head[5], head[6], head[7], head[8]]),
        5,
        "md5 request"
    );
    // without ALPN: closed right after the handshake
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", b.port()))
        .await
        .expect("tcp");
    let res = tokio_rustls::TlsConnector::from(Arc::new(client_config(&pki, None)))
        .connect(name, tcp)
        .await;
    if let Ok(mut tls) = res {
        let _ = tls.write_all(&startup_packet(USER)).await;
        let mut buf = [0u8; 1];
        let n = tls.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "no answer without ALPN");
    }
}

#[tokio::test]
async fn cert_auth_takes_the_user_from_the_certificate_cn() {
    let pki = Pki::new("krbouncer test CA");
    let b = bouncer(
        &pki,
        &[("client_tls_sslmode", "verify-full"), ("auth_type", "cert")],
    );
    let (crt, key) = pki.issue("client", USER, false);
    let (c, task) = connect_tls(&b, &pki, USER, "", Some((&crt, &key)))
        .await
        .unwrap_or_else(|e| panic!("cert login: {e}\n{}", b.log()));
    assert_eq!(select_one(&c).await, "1");
    drop(c);
    let _ = task.await;
    // a valid certificate for someone else
    let (crt, key) = pki.issue("alice", "alice", false);
    let e = connect_tls(&b, &pki, USER, "", Some((&crt, &key)))
        .await
        .map(|_| ())
        .expect_err("CN mismatch refused");
    assert_eq!(e.message, "certificate authentication failed", "{e}");
    // no certificate at all: verify-full refuses the handshake
    assert!(connect_tls(&b, &pki, USER, PASS, None).await.is_err());
}

#[test]
fn bad_tls_settings_are_refused_at_startup() {
    let pki = Pki::new("krbouncer test CA");
    let (crt, key) = pki.issue("server", "localhost", true);
    let pg = PgCluster::shared();
    for (extra, needle) in [
        ("client_tls_protocols = tlsv1.1", "tlsv1.1 is not supported"),
        (
            "client_tls_key_file = /nonexistent/key.pem",
            "client_tls_key_file",
        ),
    ] {
        let cfg = BouncerConfig::new()
            .database(format!("testdb = {}", pg.connstr("testdb")))
            .set("client_tls_sslmode", "require")
            .set("client_tls_cert_file", p(&crt))
            .set("client_tls_key_file", p(&key));
        let (k, v) = extra.split_once(" = ").expect("k = v");
        let cfg = cfg.set(k, v);
        let (status, log, _) = run_expect_fail(&cfg.ini_template(), &cfg.users_txt());
        assert!(!status.success());
        assert!(log.contains(needle), "{needle} in:\n{log}");
        // --check reports it too, without starting
        let (_dir, ini) = write_config(&cfg.ini_template(), &cfg.users_txt());
        let ini = ini.display().to_string();
        let (status, out, err) = run_to_exit(&["--check", &ini], &[], Duration::from_secs(10));
        assert!(!status.success(), "{out}{err}");
        assert!(err.contains(needle), "{needle} in:\n{err}");
    }
}

/// cert-manager renews the files in place: after SIGHUP new handshakes present the new
/// certificate, while a client connected before keeps its session.
#[tokio::test]
async fn certificate_swapped_on_sighup_keeps_connected_clients() {
    let pki = Pki::new("krbouncer test CA");
    let b = bouncer(&pki, &[("client_tls_sslmode", "require")]);
    let (before, _t) = connect_tls(&b, &pki, USER, PASS, None)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", b.log()));
    assert_eq!(select_one(&before).await, "1");

    // a new CA signs the renewed certificate, written over the configured files
    let renewed = Pki::new("krbouncer test CA");
    let (crt, key) = renewed.issue("server", "localhost", true);
    std::fs::copy(&crt, pki.path("server.crt")).expect("swap cert");
    std::fs::copy(&key, pki.path("server.key")).expect("swap key");
    b.send_signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        b.wait_for_log("configuration reloaded", Duration::from_secs(20)),
        "{}",
        b.log()
    );

    let (after, _t2) = connect_tls(&b, &renewed, USER, PASS, None)
        .await
        .unwrap_or_else(|e| panic!("the renewed certificate is served: {e:?}\n{}", b.log()));
    assert_eq!(select_one(&after).await, "1");
    assert!(
        connect_tls(&b, &pki, USER, PASS, None).await.is_err(),
        "the old CA no longer verifies the served certificate"
    );
    assert_eq!(
        select_one(&before).await,
        "1",
        "the earlier client stays connected"
    );
}
