//! TLS faults: a PostgreSQL with TLS that goes away and comes back (the pool must wait and
//! serve again, not hand out a cached "TLS handshake failed"), handshakes that fail upstream
//! (wrong CA) and downstream (garbage instead of a ClientHello, a client that distrusts our
//! certificate), and a server certificate that expires while krbouncer runs.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::admin;
use common::bouncer::{Bouncer, BouncerConfig, connect_conninfo, error_text};
use common::client::{first_value, query_one, query_one_conninfo};
use common::faultproxy::FaultProxy;
use common::pg::{self, PgCluster};
use common::pki::Pki;
use common::wait::until_async;
use common::wire;

const USER: &str = pg::TRUST_USER;
const PASS: &str = pg::TRUST_PASS;
const SSL_OF_MY_BACKEND: &str = "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A private cluster serving TLS with a certificate from `pki`.
fn tls_cluster(pki: &Pki) -> PgCluster {
    let (crt, key) = pki.server("pg");
    let pg = PgCluster::start_new();
    pg.enable_tls(&crt, &key);
    pg
}

fn to_port(port: u16) -> BouncerConfig {
    BouncerConfig::new()
        .database(format!("testdb = host=127.0.0.1 port={port} dbname=testdb"))
        .auth(USER, PASS)
        .set("server_login_retry", 1)
}

async fn served(b: &Bouncer) -> bool {
    query_one(b, USER, PASS, "testdb", "SELECT 1").await.is_ok()
}

/// While PostgreSQL is stopped its port (here: a proxy in front of it, as a restarting
/// PostgreSQL's listen queue does) accepts and closes: the SSLRequest gets EOF. That is the
/// server being away, so a waiting client stays queued and is served when it is back; before
/// the fix it got "server login has been failing, cached error" at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_queued_while_tls_postgresql_is_away_is_served_when_it_returns() {
    let pki = Pki::new("faults_tls CA");
    let pg = tls_cluster(&pki);
    let proxy = FaultProxy::start(pg.port());
    let b = to_port(proxy.port())
        .set("server_tls_sslmode", "require")
        .set("query_wait_timeout", 60)
        .auth(admin::ADMIN, admin::ADMIN_PASS)
        .set("admin_users", admin::ADMIN)
        .start();
    let ssl = query_one(&b, USER, PASS, "testdb", SSL_OF_MY_BACKEND).await;
    assert_eq!(ssl.as_deref(), Ok("true"), "{}", b.log());
    tokio::task::block_in_place(|| pg.stop());
    // the idle server saw PostgreSQL's shutdown and is gone: the next client needs a login
    let gone = until_async(Duration::from_secs(20), || async {
        admin_free_servers(&b).await == 0
    })
    .await;
    assert!(gone, "the dead server left the pool\n{}", b.log());
    let conninfo = b.conninfo(USER, PASS, "testdb");
    let queued =
        tokio::spawn(async move { query_one_conninfo(&conninfo, "SELECT 'served'").await });
    assert!(
        b.wait_for_log("TLS handshake error", Duration::from_secs(20)),
        "krbouncer tried the stopped server\n{}",
        b.log()
    );
    tokio::task::block_in_place(|| pg.start());
    let back = Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(40), queued)
        .await
        .expect("the queued client is answered")
        .expect("task");
    eprintln!(
        "queued client answered {:?} after PostgreSQL was back",
        back.elapsed()
    );
    assert_eq!(got.as_deref(), Ok("served"), "{}", b.log());
    let again = query_one(&b, USER, PASS, "testdb", SSL_OF_MY_BACKEND).await;
    assert_eq!(again.as_deref(), Ok("true"), "{}", b.log());
    assert!(!b.log().contains("panicked"), "{}", b.log());
}

/// Servers of the pool as SHOW SERVERS lists them (admin console on the same krbouncer).
async fn admin_free_servers(b: &Bouncer) -> usize {
    let c = admin::admin_connect(b, admin::ADMIN, admin::ADMIN_PASS).await;
    admin::admin_query(&c, "SHOW SERVERS")
        .await
        .map(|t| {
            eprintln!("SHOW SERVERS: {:?}", t.rows);
            t.rows.len()
        })
        .unwrap_or(usize::MAX)
}

/// A real `pg_ctl restart` of a TLS PostgreSQL while clients keep logging in and querying:
/// errors for the clients caught in it, never the cached login error once it is back, and
/// service again soon after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_postgresql_restarted_under_load_serves_again_without_cached_errors() {
    let pki = Pki::new("faults_tls CA");
    let pg = tls_cluster(&pki);
    let b = to_port(pg.port())
        .set("server_tls_sslmode", "require")
        .set("pool_mode", "transaction")
        .set("query_wait_timeout", 30)
        .auth(admin::ADMIN, admin::ADMIN_PASS)
        .set("admin_users", admin::ADMIN)
        .start();
    assert!(served(&b).await, "{}", b.log());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..6 {
        let (conninfo, stop) = (b.conninfo(USER, PASS, "testdb"), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(f) = query_one_conninfo(&conninfo, "SELECT 1").await {
                    errors.push((Instant::now(), f.message));
                }
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| pg.restart());
    let back = Instant::now();
    let ok = until_async(Duration::from_secs(10), || served(&b)).await;
    let recovered = back.elapsed();
    // keep the load on a little longer: no cached error may reach anyone now
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut errors = Vec::new();
    for w in workers {
        errors.extend(w.await.expect("worker"));
    }
    eprintln!(
        "served again {recovered:?} after PostgreSQL was back; {} client errors",
        errors.len()
    );
    assert!(ok, "the pool serves again\n{}", b.log());
    let cached: Vec<_> = errors
        .iter()
        .filter(|(_, m)| m.contains("cached error") || m.contains("TLS handshake failed"))
        .collect();
    assert!(
        cached.is_empty(),
        "clients got login errors a restart should only delay: {cached:?}\n{}",
        b.log()
    );
}

/// verify-full against a certificate from another CA: the client waits for a retry, as in
/// PgBouncer, and at `query_wait_timeout` gets a clear "TLS handshake failed" naming the
/// certificate problem; a second database on the same krbouncer, whose certificate checks
/// out, is served all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_handshake_failure_fails_its_clients_clearly_and_no_other() {
    let pki = Pki::new("faults_tls CA");
    let pg = tls_cluster(&pki);
    let stranger = Pki::new("some other CA");
    let b = BouncerConfig::new()
        .database(format!(
            "testdb = host=127.0.0.1 port={} dbname=testdb",
            pg.port()
        ))
        .auth(USER, PASS)
        .set("server_tls_sslmode", "verify-full")
        .set("server_tls_ca_file", p(&stranger.ca()))
        .set("server_login_retry", 1)
        .set("query_wait_timeout", 3)
        .start();
    let good = BouncerConfig::new()
        .database(format!(
            "testdb = host=127.0.0.1 port={} dbname=testdb",
            pg.port()
        ))
        .auth(USER, PASS)
        .set("server_tls_sslmode", "verify-full")
        .set("server_tls_ca_file", p(&pki.ca()))
        .start();
    let (bystander, _task) = connect_conninfo(&good.conninfo(USER, PASS, "testdb"))
        .await
        .expect("the bystander logs in");
    let started = Instant::now();
    let e = query_one(&b, USER, PASS, "testdb", "SELECT 1")
        .await
        .expect_err("an untrusted server certificate");
    eprintln!("client sees: {e} after {:?}", started.elapsed());
    assert!(
        e.message.contains("TLS handshake failed") && e.message.contains("certificate"),
        "{e}\n{}",
        b.log()
    );
    assert_eq!(
        first_value(&bystander, SSL_OF_MY_BACKEND).await.as_deref(),
        Ok("true")
    );
    assert!(
        b.log().contains("certificate verify failed"),
        "PgBouncer's words for it\n{}",
        b.log()
    );
}

fn downstream_tls(pki: &Pki) -> Bouncer {
    let (crt, key) = pki.server("bouncer");
    BouncerConfig::new()
        .database(format!(
            "testdb = {}",
            PgCluster::shared().connstr("testdb")
        ))
        .auth(USER, PASS)
        .set("client_tls_sslmode", "require")
        .set("client_tls_cert_file", p(&crt))
        .set("client_tls_key_file", p(&key))
        .start()
}

/// tokio-postgres over rustls, trusting `pki`'s CA (verify-full).
async fn tls_client(b: &Bouncer, pki: &Pki) -> tokio_postgres::Client {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(pki.ca()).expect("CA file");
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.expect("CA pem")).expect("add CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
    let conninfo = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user={USER} password={PASS} dbname=testdb sslmode=require connect_timeout=20",
        b.port()
    );
    match tokio_postgres::connect(&conninfo, tls).await {
        Ok((client, conn)) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            client
        }
        Err(e) => panic!("TLS client: {}\n{}", error_text(&e), b.log()),
    }
}

fn psql_tls(b: &Bouncer, root: &Path) -> std::process::Output {
    Command::new("psql")
        .arg("-X")
        .arg(format!(
            "host=localhost hostaddr=127.0.0.1 port={} user={USER} dbname=testdb sslmode=verify-full sslrootcert={} connect_timeout=20",
            b.port(),
            p(root)
        ))
        .args(["-tAc", "SELECT 42"])
        .env("PGPASSWORD", PASS)
        .output()
        .expect("run psql")
}

/// Downstream: garbage where the ClientHello should be, and a client that does not trust
/// our certificate. Each ends that connection only; a logged-in TLS client keeps working
/// and new ones log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_handshake_failures_end_only_their_connection() {
    let pki = Pki::new("faults_tls CA");
    let b = downstream_tls(&pki);
    let ok = psql_tls(&b, &pki.ca());
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "42",
        "{}",
        b.log()
    );
    let held = tls_client(&b, &pki).await;
    // garbage after 'S'
    let port = b.port();
    let garbage = tokio::task::spawn_blocking(move || {
        let mut s = wire::connect(port, Duration::from_secs(10)).expect("connect");
        s.write_all(&wire::ssl_request()).expect("SSLRequest");
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).expect("answer");
        assert_eq!(&answer, b"S");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("garbage");
        wire::read_until_closed(&mut s, Duration::from_secs(10))
    })
    .await
    .expect("task");
    eprintln!("garbage ClientHello: {garbage:?}");
    assert!(
        !matches!(garbage, wire::Closing::StillOpen(_)),
        "krbouncer closes a connection whose handshake failed\n{}",
        b.log()
    );
    // a client that distrusts our certificate gives up with a clear error of its own
    let stranger = Pki::new("some other CA");
    let refused = psql_tls(&b, &stranger.ca());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
    // the held client and new clients are served
    first_value(&held, "SELECT 1").await.expect("held client");
    let again = psql_tls(&b, &pki.ca());
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "42",
        "{}",
        b.log()
    );
    assert!(!b.log().contains("panicked"), "{}", b.log());
}

/// PostgreSQL's certificate expires while krbouncer runs (verify-full): the server
/// connection made before keeps working; a new one is refused with "certificate expired".
/// PostgreSQL reloads its certificate on SIGHUP, so the short-lived one is put in place after
/// krbouncer is up and the first connection made right away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_expiring_while_running_refuses_new_connections_only() {
    let pki = Pki::new("faults_tls CA");
    let pg = tls_cluster(&pki);
    let b = to_port(pg.port())
        .set("server_tls_sslmode", "verify-full")
        .set("server_tls_ca_file", p(&pki.ca()))
        .set("pool_mode", "session")
        // a refused certificate keeps new clients queued until then (PgBouncer's behaviour)
        .set("query_wait_timeout", 3)
        .start();
    let lifetime = Duration::from_secs(12);
    let (crt, key) = pki.server_valid_for("short", lifetime);
    let expires = Instant::now() + lifetime;
    pg.replace_tls(&crt, &key);
    let (early, _task) = connect_conninfo(&b.conninfo(USER, PASS, "testdb"))
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", error_text(&e), b.log()));
    assert_eq!(
        first_value(&early, SSL_OF_MY_BACKEND).await.as_deref(),
        Ok("true")
    );
    assert!(
        Instant::now() < expires,
        "the first login must happen while the certificate is valid"
    );
    tokio::time::sleep_until((expires + Duration::from_secs(1)).into()).await;
    // session pooling: `early` keeps its server; a second client needs a new one
    let e = query_one(&b, USER, PASS, "testdb", "SELECT 1")
        .await
        .expect_err("an expired certificate");
    eprintln!("new client sees: {e}");
    assert!(
        e.message.contains("TLS handshake failed") && e.message.contains("xpired"),
        "{e}\n{}",
        b.log()
    );
    assert_eq!(
        first_value(&early, "SELECT 'still here'").await.as_deref(),
        Ok("still here"),
        "the connection made before expiry continues"
    );
}
