//! Integration tests for the GSSAPI initiator (`auth::gss`), GSSENC (`net::gssenc`) and
//! upstream TLS (`net::tls`) against a real MIT KDC and Kerberized PostgreSQL, talking the
//! wire protocol directly (no pooler in between).
//!
//! MIT krb5 takes its configuration from the process environment, so every test re-runs
//! itself in a child process that carries the lab's KRB5_* variables (see `kdc::run_child_test`);
//! the parent owns the lab. Each child uses its own `KRB5CCNAME=MEMORY:` ticket cache.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "common/kdc.rs"]
mod kdc;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use kdc::{KrbLab, LabOptions};
use krbouncer::auth::gss::{GssError, GssPurpose, GssRuntime, GssTarget, target_name};
use krbouncer::net::gssenc::{GssEncOutcome, request_gssenc};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const STEP_DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- harness

static SHARED_LAB: OnceLock<KrbLab> = OnceLock::new();

/// The lab shared by the read-only tests of this binary (cleaned up by its reaper at exit).
fn shared_lab() -> &'static KrbLab {
    SHARED_LAB.get_or_init(|| KrbLab::start(LabOptions::default()))
}

/// The lab a test runs against: the shared one or its own.
enum Lab {
    Shared(&'static KrbLab),
    Own(KrbLab),
}

impl Lab {
    fn get(&self) -> &KrbLab {
        match self {
            Lab::Shared(l) => l,
            Lab::Own(l) => l,
        }
    }
}

fn shared() -> Lab {
    Lab::Shared(shared_lab())
}

/// Parent: get the lab (only in the parent) and run this test again in a child with the lab's
/// environment. Child: run `body`.
fn run_in_child<F, Fut>(name: &str, lab: impl FnOnce() -> Lab, remove: &[&str], body: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if kdc::in_child(name) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(body());
        return;
    }
    let lab = lab();
    let mut env = lab.get().env();
    env.push(("KRB5CCNAME".into(), "MEMORY:".into()));
    let out = kdc::run_child_test(name, &env, remove);
    let text = kdc::output_text(&out);
    assert!(out.status.success(), "child test {name} failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "child did not run {name}:\n{text}"
    );
}

fn lab_env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("child env lacks {key}"))
}

fn pg_port() -> u16 {
    lab_env("PGLAB_PG_PORT").parse().expect("port")
}

// ---------------------------------------------------------------- a minimal PG client

#[derive(Debug)]
#[allow(dead_code)] // fields are read through Debug in assertion messages
enum LoginError {
    Gss(GssError),
    Server(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for LoginError {
    fn from(e: std::io::Error) -> Self {
        LoginError::Io(e)
    }
}

struct Pg<S> {
    s: S,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Pg<S> {
    fn new(s: S) -> Self {
        Pg {
            s,
            buf: BytesMut::with_capacity(8192),
        }
    }

    async fn send(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.s.write_all(b).await?;
        self.s.flush().await
    }

    /// (tag, body) of the next backend message.
    async fn msg(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    self.buf.advance(5);
                    let body = self.buf.split_to(len - 4).to_vec();
                    return Ok((tag, body));
                }
            }
            if self.s.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// StartupMessage + authentication (GSS via `gss` when asked for) until ReadyForQuery.
    /// Returns whether a GSS exchange took place (and completed with mutual auth).
    async fn login(
        &mut self,
        user: &str,
        db: &str,
        gss: Option<(&GssRuntime, &GssTarget)>,
    ) -> Result<bool, LoginError> {
        let mut out = BytesMut::new();
        frontend::startup_message(
            [
                ("user", user),
                ("database", db),
                ("application_name", "gss_lowlevel"),
            ],
            &mut out,
        )
        .map_err(LoginError::Io)?;
        self.send(&out).await?;
        let mut session = None;
        loop {
            let (tag, body) = self.msg().await?;
            match tag {
                b'R' => {
                    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    match code {
                        0 => {
                            if let Some(s) = &session {
                                let s: &krbouncer::auth::gss::GssSession = s;
                                assert!(
                                    s.is_complete(),
                                    "AuthenticationOk before mutual authentication completed"
                                );
                            }
                        }
                        7 | 8 => {
                            let (rt, target) = gss
                                .ok_or_else(|| LoginError::Server("server asked for GSS".into()))?;
                            if code == 7 {
                                let s = rt
                                    .start(target, GssPurpose::Auth, STEP_DEADLINE)
                                    .await
                                    .map_err(LoginError::Gss)?;
                                session = Some(s);
                            }
                            let s = session
                                .as_mut()
                                .ok_or_else(|| LoginError::Server("GSSContinue first".into()))?;
                            let input = if code == 8 { Some(&body[4..]) } else { None };
                            let tok = s
                                .step(rt, input, STEP_DEADLINE)
                                .await
                                .map_err(LoginError::Gss)?;
                            if let Some(tok) = tok {
                                let mut m = BytesMut::new();
                                frontend::sasl_response(&tok, &mut m).map_err(LoginError::Io)?; // 'p' + token
                                self.send(&m).await?;
                            }
                        }
                        other => {
                            return Err(LoginError::Server(format!(
                                "unexpected auth request {other}"
                            )));
                        }
                    }
                }
                b'E' => return Err(LoginError::Server(error_text(&body))),
                b'Z' => return Ok(session.is_some()),
                _ => {}
            }
        }
    }

    /// Simple query; rows as text.
    async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).map_err(|e| e.to_string())?;
        self.send(&out).await.map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        let mut err = None;
        loop {
            let (tag, body) = self.msg().await.map_err(|e| e.to_string())?;
            match tag {
                b'D' => rows.push(data_row(&body)),
                b'E' => err = Some(error_text(&body)),
                b'Z' => return err.map_or(Ok(rows), Err),
                _ => {}
            }
        }
    }

    async fn terminate(mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = self.send(&out).await;
    }
}

fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut p = 2;
    let mut cols = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes([body[p], body[p + 1], body[p + 2], body[p + 3]]);
        p += 4;
        if len < 0 {
            cols.push(None);
        } else {
            let len = len as usize;
            cols.push(Some(
                String::from_utf8_lossy(&body[p..p + len]).into_owned(),
            ));
            p += len;
        }
    }
    cols
}

fn error_text(body: &[u8]) -> String {
    body.split(|&b| b == 0)
        .filter(|f| f.len() > 1 && matches!(f[0], b'S' | b'C' | b'M'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

const GSS_ROW: &str = "SELECT current_user::text, gss_authenticated::text, principal, encrypted::text \
                       FROM pg_stat_gssapi WHERE pid = pg_backend_pid()";

async fn tcp() -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", pg_port()))
        .await
        .expect("connect to lab postgres");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Full GSS-authenticated login over plain TCP; returns the pg_stat_gssapi row.
async fn gss_login(
    rt: &GssRuntime,
    target: &GssTarget,
    db: &str,
) -> Result<Vec<Option<String>>, LoginError> {
    let user = lab_env("PGLAB_USER_PRINC");
    let mut pg = Pg::new(tcp().await);
    let did_gss = pg.login(&user, db, Some((rt, target))).await?;
    assert!(did_gss, "server did not ask for GSS");
    let rows = pg.query(GSS_ROW).await.map_err(LoginError::Server)?;
    pg.terminate().await;
    Ok(rows.into_iter().next().expect("one row"))
}

fn some(v: &[&str]) -> Vec<Option<String>> {
    v.iter().map(|s| Some(s.to_string())).collect()
}

// ---------------------------------------------------------------- tests

#[test]
fn gss_auth_with_full_and_host_based_spn() {
    let name = "gss_auth_with_full_and_host_based_spn";
    run_in_child(name, shared, &[], || async {
        let rt = GssRuntime::new(4);
        let user = lab_env("PGLAB_USER_PRINC");
        let full = target_name(&lab_env("PGLAB_SPN"), "postgres", "ignored").expect("spn");
        assert_eq!(full.to_string(), lab_env("PGLAB_SPN"));
        let row = gss_login(&rt, &full, "labdb")
            .await
            .expect("login with full SPN");
        assert_eq!(row, some(&[&user, "true", &user, "false"]));

        let hostbased = target_name("", "postgres", "localhost").expect("host-based");
        assert_eq!(hostbased.to_string(), "postgres@localhost");
        let row = gss_login(&rt, &hostbased, "labdb")
            .await
            .expect("login with host-based SPN");
        assert_eq!(row, some(&[&user, "true", &user, "false"]));

        // the established context reports the canonical principal, for logs
        let mut s = rt
            .start(&hostbased, GssPurpose::Auth, STEP_DEADLINE)
            .await
            .expect("start");
        let tok = s
            .step(&rt, None, STEP_DEADLINE)
            .await
            .expect("first step")
            .expect("AP-REQ token");
        assert!(!tok.is_empty());
        assert!(!s.is_complete(), "MUTUAL needs the server's AP-REP");

        // the expiry of the default credential (TGT obtained from the client keytab)
        let exp = rt
            .ticket_expiry(STEP_DEADLINE)
            .await
            .expect("ticket expiry")
            .expect("finite");
        assert!(exp > std::time::SystemTime::now());
    });
}

#[test]
fn wrong_spn_is_an_unknown_server_principal() {
    let name = "wrong_spn_is_an_unknown_server_principal";
    run_in_child(name, shared, &[], || async {
        let rt = GssRuntime::new(4);
        let target = target_name("postgres/nohost@TEST.LOCAL", "postgres", "x").expect("spn");
        match gss_login(&rt, &target, "labdb").await {
            Err(LoginError::Gss(e @ GssError::UnknownServerPrincipal { .. })) => {
                let text = e.to_string();
                assert!(text.contains("postgres/nohost@TEST.LOCAL"), "{text}");
                assert!(
                    text.contains("Server not found in Kerberos database"),
                    "{text}"
                );
                assert_eq!(e.reason_label(), "unknown_server_principal");
            }
            other => panic!("expected UnknownServerPrincipal, got {other:?}"),
        }
    });
}

#[test]
fn missing_client_keytab_is_no_credentials() {
    let name = "missing_client_keytab_is_no_credentials";
    run_in_child(name, shared, &["KRB5_CLIENT_KTNAME"], || async {
        let rt = GssRuntime::new(4);
        let target = target_name(&lab_env("PGLAB_SPN"), "postgres", "x").expect("spn");
        match gss_login(&rt, &target, "labdb").await {
            Err(LoginError::Gss(e @ GssError::NoCredentials { .. })) => {
                assert!(e.to_string().contains("KRB5_CLIENT_KTNAME"), "{e}");
            }
            other => panic!("expected NoCredentials, got {other:?}"),
        }
    });
}

#[test]
fn gssenc_carries_messages_larger_than_a_packet() {
    let name = "gssenc_carries_messages_larger_than_a_packet";
    run_in_child(name, shared, &[], || async {
        let rt = GssRuntime::new(4);
        let user = lab_env("PGLAB_USER_PRINC");
        let target = target_name(&lab_env("PGLAB_SPN"), "postgres", "x").expect("spn");
        let out = request_gssenc(tcp().await, &rt, &target, STEP_DEADLINE)
            .await
            .expect("gssenc negotiation");
        let GssEncOutcome::Encrypted(stream) = out else {
            panic!("server refused GSSENC over TCP")
        };
        assert!(stream.max_plaintext() > 16000 && stream.max_plaintext() < 16380);
        let mut pg = Pg::new(stream);
        // gssencdb only has a hostgssenc rule; GSS identity comes from the transport
        let did_gss = pg
            .login(&user, "gssencdb", None)
            .await
            .expect("login over GSSENC");
        assert!(!did_gss, "no second GSS exchange expected inside GSSENC");
        let rows = pg.query(GSS_ROW).await.expect("row");
        assert_eq!(rows[0], some(&[&user, "true", &user, "true"]));

        // 100 kB of query text up, 200 kB of result down, many packets each way
        let lit = "x".repeat(100_000);
        let sql = format!("SELECT length('{lit}')::text, md5('{lit}'), repeat('z', 200000)");
        let rows = pg.query(&sql).await.expect("big query");
        assert_eq!(rows[0][0].as_deref(), Some("100000"));
        assert_eq!(rows[0][2].as_deref().map(str::len), Some(200_000));
        assert!(
            rows[0][2]
                .as_deref()
                .is_some_and(|z| z.bytes().all(|b| b == b'z'))
        );
        // many small messages in one flush, then more round trips on the same stream
        for i in 0..50 {
            let rows = pg
                .query(&format!("SELECT {i}::text"))
                .await
                .expect("small query");
            assert_eq!(rows[0][0].as_deref(), Some(i.to_string().as_str()));
        }
        pg.terminate().await;
    });
}

#[test]
fn gssenc_refused_on_unix_socket_leaves_connection_usable() {
    let name = "gssenc_refused_on_unix_socket_leaves_connection_usable";
    run_in_child(name, shared, &[], || async {
        // PostgreSQL answers 'N' to GSSENCRequest on a unix socket and then accepts a
        // StartupMessage on the same connection: this is the fallback path.
        let path = format!("{}/.s.PGSQL.{}", lab_env("PGLAB_PG_SOCKDIR"), pg_port());
        let sock = tokio::net::UnixStream::connect(&path)
            .await
            .expect("unix socket");
        let rt = GssRuntime::new(4);
        let target = target_name(&lab_env("PGLAB_SPN"), "postgres", "x").expect("spn");
        let out = request_gssenc(sock, &rt, &target, STEP_DEADLINE)
            .await
            .expect("negotiation");
        let GssEncOutcome::Refused(sock) = out else {
            panic!("expected 'N' on a unix socket")
        };
        let mut pg = Pg::new(sock);
        pg.login("postgres", "postgres", None)
            .await
            .expect("startup after 'N'");
        let rows = pg.query("SELECT 1::text").await.expect("query");
        assert_eq!(rows[0][0].as_deref(), Some("1"));
    });
}

#[test]
fn paused_kdc_times_out_then_recovers() {
    let name = "paused_kdc_times_out_then_recovers";
    run_in_child(
        name,
        || Lab::Own(KrbLab::start(LabOptions::default())),
        &[],
        || async {
            let dir = std::path::PathBuf::from(lab_env("PGLAB_DIR"));
            let rt = GssRuntime::new(4);
            let target = target_name(&lab_env("PGLAB_SPN"), "postgres", "x").expect("spn");
            kdc::lab_ctl(&dir, &["kdc-pause"]);
            let deadline = Duration::from_secs(2);
            let t0 = Instant::now();
            let mut s = rt
                .start(&target, GssPurpose::Auth, deadline)
                .await
                .expect("start");
            let e = s
                .step(&rt, None, deadline)
                .await
                .expect_err("KDC is paused");
            let took = t0.elapsed();
            assert!(
                matches!(
                    e,
                    GssError::Timeout { .. } | GssError::KdcUnreachable { .. }
                ),
                "expected Timeout/KdcUnreachable, got {e:?}"
            );
            assert!(
                took < Duration::from_millis(2500),
                "deadline not honoured: {took:?}"
            );
            if let GssError::Timeout { .. } = e {
                assert!(e.to_string().contains("KDC did not answer"), "{e}");
            }
            kdc::lab_ctl(&dir, &["kdc-resume"]);
            let row = gss_login(&rt, &target, "labdb")
                .await
                .expect("login after resume");
            assert_eq!(row[1].as_deref(), Some("true"));
            // a stopped KDC (connection refused) fails fast with KdcUnreachable
            kdc::lab_ctl(&dir, &["kdc-stop"]);
            let other = target_name("postgres/127.0.0.1@TEST.LOCAL", "postgres", "x").expect("spn");
            let mut s = rt
                .start(&other, GssPurpose::Auth, deadline)
                .await
                .expect("start");
            let e = s
                .step(&rt, None, Duration::from_secs(20))
                .await
                .expect_err("KDC stopped");
            assert_eq!(e.reason_label(), "kdc_unreachable", "{e}");
            kdc::lab_ctl(&dir, &["kdc-start"]);
            let mut s = rt
                .start(&other, GssPurpose::Auth, deadline)
                .await
                .expect("start");
            s.step(&rt, None, STEP_DEADLINE).await.expect("KDC back");
        },
    );
}

#[test]
fn short_tickets_keep_working_for_a_minute() {
    let name = "short_tickets_keep_working_for_a_minute";
    let lab = || {
        Lab::Own(KrbLab::start(LabOptions {
            ticket_lifetime_secs: Some(20),
            ..Default::default()
        }))
    };
    run_in_child(name, lab, &[], || async {
        let rt = GssRuntime::new(4);
        let target = target_name(&lab_env("PGLAB_SPN"), "postgres", "x").expect("spn");
        let t0 = Instant::now();
        let mut n = 0;
        while t0.elapsed() < Duration::from_secs(65) {
            let row = gss_login(&rt, &target, "labdb")
                .await
                .unwrap_or_else(|e| panic!("login {n} at {:?} failed: {e:?}", t0.elapsed()));
            assert_eq!(row[1].as_deref(), Some("true"));
            n += 1;
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        assert!(n >= 10);
        let exp = rt
            .ticket_expiry(STEP_DEADLINE)
            .await
            .expect("expiry")
            .expect("finite");
        let left = exp
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        assert!(
            left <= Duration::from_secs(21),
            "ticket lifetime not capped: {left:?}"
        );
    });
}

#[test]
fn tls_verify_full_with_gss_auth_inside() {
    use krbouncer::config::SslMode;
    use krbouncer::net::server_tls::{ServerTlsSettings, TlsOutcome, build_connector, request_tls};
    let name = "tls_verify_full_with_gss_auth_inside";
    run_in_child(name, shared, &[], || async {
        let rt = GssRuntime::new(4);
        let user = lab_env("PGLAB_USER_PRINC");
        let target = target_name(&lab_env("PGLAB_SPN"), "postgres", "x").expect("spn");
        let settings = ServerTlsSettings {
            sslmode: SslMode::VerifyFull,
            ca_file: Some(lab_env("PGLAB_TLS_CA").into()),
            ..Default::default()
        };
        let connector = build_connector(&settings)
            .expect("connector")
            .expect("enabled");
        for server_name in ["localhost", "127.0.0.1"] {
            let TlsOutcome::Encrypted(tls) = request_tls(tcp().await, &connector, server_name)
                .await
                .expect("TLS")
            else {
                panic!("server refused TLS")
            };
            let mut pg = Pg::new(tls);
            // ssldb only has a hostssl ... gss rule
            assert!(
                pg.login(&user, "ssldb", Some((&rt, &target)))
                    .await
                    .expect("GSS auth over TLS")
            );
            let rows = pg
                .query(
                    "SELECT g.gss_authenticated::text, g.encrypted::text, s.ssl::text, s.version \
                     FROM pg_stat_gssapi g JOIN pg_stat_ssl s USING (pid) WHERE pid = pg_backend_pid()",
                )
                .await
                .expect("row");
            assert_eq!(rows[0][..3], some(&["true", "false", "true"])[..]);
            assert!(
                rows[0][3]
                    .as_deref()
                    .is_some_and(|v| v.starts_with("TLSv1.")),
                "{rows:?}"
            );
            pg.terminate().await;
        }
        // verify-full refuses a name the certificate does not carry
        let err = request_tls(tcp().await, &connector, "db.invalid")
            .await
            .expect_err("name mismatch");
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{err}"
        );
        // without TLS, ssldb's hba rejects the GSS-authenticated login
        let mut pg = Pg::new(tcp().await);
        match pg.login(&user, "ssldb", Some((&rt, &target))).await {
            Err(LoginError::Server(m)) => assert!(m.contains("pg_hba.conf"), "{m}"),
            other => panic!("expected hba rejection, got {other:?}"),
        }
    });
}
