//! Unit tests for upstream TLS: sslmode verification rules against an in-test PKI made with
//! the openssl CLI and an in-memory TLS "server" answering SSLRequest.

use super::*;
use crate::protocol::startup::SSL_REQUEST_CODE;
use std::process::Command;
use std::sync::OnceLock;
use tokio::io::duplex;

struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl CLI installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        for ca in ["ca", "other"] {
            let mut a = vec!["req", "-x509", "-days", "2", "-subj", "/CN=test CA"];
            a.extend(ec);
            let (k, c) = (format!("{ca}.key"), format!("{ca}.crt"));
            a.extend(["-keyout", &k, "-out", &c, "-addext", "basicConstraints=critical,CA:TRUE"]);
            a.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            openssl(d, &a);
        }
        let mut a = vec!["req", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"];
        a.extend(ec);
        openssl(d, &a);
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext");
        openssl(
            d,
            &[
                "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
                "-extfile", "server.ext", "-out", "server.crt",
            ],
        );
        Pki {
            ca: d.join("ca.crt"),
            other_ca: d.join("other.crt"),
            cert: d.join("server.crt"),
            key: d.join("server.key"),
            _dir: dir,
        }
    })
}

fn settings(mode: SslMode, ca: Option<&Path>) -> ServerTlsSettings {
    ServerTlsSettings {
        sslmode: mode,
        ca_file: ca.map(Path::to_path_buf),
        ..Default::default()
    }
}

/// Run SSLRequest + handshake against an in-memory server that answers `answer`.
async fn handshake(
    s: &ServerTlsSettings,
    server_name: &str,
    answer: u8,
) -> io::Result<&'static str> {
    let p = pki();
    let server_cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        load_certs(&p.cert).expect("cert"),
        load_key(&p.key).expect("key"),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let (client, mut server) = duplex(64 * 1024);
    tokio::spawn(async move {
        let mut req = [0u8; 8];
        if server.read_exact(&mut req).await.is_err() || req[4..] != SSL_REQUEST_CODE.to_be_bytes()
        {
            return;
        }
        let _ = server.write_all(&[answer]).await;
        if answer == b'S' {
            if let Ok(mut tls) = acceptor.accept(server).await {
                let _ = tls.write_all(b"hello").await;
                let _ = tls.flush().await;
            }
        }
    });
    let connector = build_connector(s)
        .map_err(io::Error::other)?
        .expect("enabled");
    match request_tls(client, &connector, server_name).await? {
        TlsOutcome::Encrypted(mut tls) => {
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf).await?;
            assert_eq!(&buf, b"hello");
            Ok("encrypted")
        }
        TlsOutcome::Refused(_) => Ok("refused"),
    }
}

#[tokio::test]
async fn require_encrypts_without_verifying() {
    let s = settings(SslMode::Require, None);
    assert_eq!(
        handshake(&s, "anything.example", b'S')
            .await
            .expect("handshake"),
        "encrypted"
    );
}

#[tokio::test]
async fn verify_full_checks_chain_and_name() {
    let p = pki();
    let s = settings(SslMode::VerifyFull, Some(&p.ca));
    assert_eq!(
        handshake(&s, "localhost", b'S').await.expect("name ok"),
        "encrypted"
    );
    assert_eq!(
        handshake(&s, "127.0.0.1", b'S').await.expect("ip ok"),
        "encrypted"
    );
    assert!(
        handshake(&s, "otherhost", b'S').await.is_err(),
        "wrong name must fail"
    );
    let s = settings(SslMode::VerifyFull, Some(&p.other_ca));
    assert!(
        handshake(&s, "localhost", b'S').await.is_err(),
        "unknown CA must fail"
    );
}

#[tokio::test]
async fn verify_ca_checks_chain_only() {
    let p = pki();
    let s = settings(SslMode::VerifyCa, Some(&p.ca));
    assert_eq!(
        handshake(&s, "otherhost", b'S')
            .await
            .expect("name ignored"),
        "encrypted"
    );
    let s = settings(SslMode::VerifyCa, Some(&p.other_ca));
    assert!(
        handshake(&s, "localhost", b'S').await.is_err(),
        "unknown CA must fail"
    );
}

#[tokio::test]
async fn refusal_returns_the_plain_stream() {
    let s = settings(SslMode::Prefer, None);
    assert_eq!(
        handshake(&s, "localhost", b'N').await.expect("no error"),
        "refused"
    );
}

#[test]
fn disable_builds_no_connector() {
    assert!(
        build_connector(&settings(SslMode::Disable, None))
            .expect("ok")
            .is_none()
    );
}

#[test]
fn protocols_are_limited_to_tls12_and_tls13() {
    let n = |spec: &str| parse_protocols(spec).expect("ok").map(|v| v.len());
    assert_eq!(n("secure"), Some(2));
    assert_eq!(n(""), Some(2));
    assert_eq!(n("tlsv1.2"), Some(1));
    assert_eq!(n("TLSv1.3, tlsv1.2"), Some(2));
    assert_eq!(n("tlsv1.0,tlsv1.2"), Some(1));
    // accepted as PgBouncer does, but nothing rustls can offer: no TLS upstream
    assert_eq!(n("tlsv1.0,tlsv1.1"), None);
    let mut s = settings(SslMode::Prefer, None);
    s.protocols = "tlsv1.0".into();
    assert!(build_connector(&s).expect("accepted").is_none());
    assert!(parse_protocols("sslv3").is_err());
}

#[test]
fn cert_without_key_is_rejected() {
    let p = pki();
    let mut s = settings(SslMode::Require, None);
    s.cert_file = Some(p.cert.clone());
    assert!(matches!(
        build_connector(&s),
        Err(TlsSetupError::CertWithoutKey)
    ));
    s.key_file = Some(p.key.clone());
    assert!(build_connector(&s).expect("client cert loads").is_some());
}
