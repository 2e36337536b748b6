//! Client-side (downstream) TLS with rustls: the acceptor built from `client_tls_*`, swappable
//! at runtime so certificates rotate on reload (sessions already established keep the config
//! they started with), and the handshake for SSLRequest and direct TLS (PgBouncer 1.25).
//!
//! PgBouncer's `client_tls_sslmode` meanings: `disable` answers SSLRequest 'N'; `allow` and
//! `prefer` accept TLS when asked; `require` also refuses plain TCP clients ("SSL required");
//! `verify-ca` and `verify-full` (the same thing on this side) also demand a client certificate
//! signed by `client_tls_ca_file`. Unix-socket clients are never offered TLS.

mod ciphers;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::{AuthType, Settings, SslMode};
use crate::net::server_tls::{TlsSetupError, load_certs, load_key};
use crate::net::tls_protocols::UnknownProtocol;

/// What PostgreSQL 17 clients send as ALPN on direct TLS, and we require there.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// The `client_tls_*` settings (plus whether `auth_type = cert` needs client certificates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsSettings {
    pub sslmode: SslMode,
    pub key_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub protocols: String,
    pub ciphers: String,
    pub tls13_ciphers: Option<String>,
    pub cert_auth: bool,
}

fn path(p: &str) -> Option<PathBuf> {
    (!p.is_empty()).then(|| PathBuf::from(p))
}

impl ClientTlsSettings {
    pub fn from_settings(s: &Settings) -> ClientTlsSettings {
        ClientTlsSettings {
            sslmode: s.client_tls_sslmode,
            key_file: path(&s.client_tls_key_file),
            cert_file: path(&s.client_tls_cert_file),
            ca_file: path(&s.client_tls_ca_file),
            protocols: s.client_tls_protocols.clone(),
            ciphers: s.client_tls_ciphers.clone(),
            tls13_ciphers: s.client_tls13_ciphers.clone(),
            cert_auth: s.auth_type == AuthType::Cert,
        }
    }
}

/// The acceptor in force and the mode it was built for (kept together so a reload never pairs
/// a new mode with an old acceptor).
#[derive(Clone)]
pub struct ClientTlsConfig {
    pub sslmode: SslMode,
    /// None for `disable`.
    pub acceptor: Option<TlsAcceptor>,
}

impl ClientTlsConfig {
    /// Whether an SSLRequest on TCP gets 'S'.
    pub fn offers_tls(&self) -> bool {
        self.acceptor.is_some()
    }

    /// Whether plain TCP clients are refused ("SSL required").
    pub fn requires_tls(&self) -> bool {
        matches!(
            self.sslmode,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }
}

/// The swappable holder the shared state keeps; reload calls `replace` (connected clients
/// keep their sessions, new handshakes use the new certificate).
pub struct ClientTls {
    current: RwLock<Arc<ClientTlsConfig>>,
}

/// Why the downstream TLS acceptor could not be built; the text names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    /// Settings that cannot work together.
    #[error("{0}")]
    Settings(String),
    /// A certificate, key or CA file could not be used.
    #[error("{setting}: {source}")]
    File {
        setting: &'static str,
        #[source]
        source: TlsSetupError,
    },
    /// rustls refused the configuration.
    #[error("{setting}: {source}")]
    Rustls {
        setting: &'static str,
        #[source]
        source: rustls::Error,
    },
    /// The client certificate verifier could not be built from the CA file.
    #[error("client_tls_ca_file: {0}")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    #[error("client_tls_protocols: {0}")]
    UnknownProtocol(#[source] UnknownProtocol),
}

impl ClientTls {
    pub fn new(settings: &ClientTlsSettings) -> Result<ClientTls, ClientTlsError> {
        Ok(ClientTls {
            current: RwLock::new(Arc::new(build(settings)?)),
        })
    }

    /// The config new connections use.
    pub fn current(&self) -> Arc<ClientTlsConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Builds from `settings` and swaps it in; on error the old config stays.
    pub fn replace(&self, settings: &ClientTlsSettings) -> Result<(), ClientTlsError> {
        let new = Arc::new(build(settings)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }
}

/// Builds the acceptor for `settings`; errors name the setting at fault.
pub fn build(settings: &ClientTlsSettings) -> Result<ClientTlsConfig, ClientTlsError> {
    if settings.sslmode == SslMode::Disable {
        if settings.cert_auth {
            return Err(ClientTlsError::Settings(
                "auth_type = cert needs client_tls_sslmode other than disable".into(),
            ));
        }
        return Ok(ClientTlsConfig {
            sslmode: settings.sslmode,
            acceptor: None,
        });
    }
    let (Some(cert_file), Some(key_file)) = (&settings.cert_file, &settings.key_file) else {
        return Err(ClientTlsError::Settings(format!(
            "client_tls_sslmode = {} needs client_tls_key_file and client_tls_cert_file",
            settings.sslmode
        )));
    };
    let versions = parse_protocols(&settings.protocols)?;
    let tls13 = versions.contains(&&rustls::version::TLS13);
    let provider = Arc::new(provider(settings, tls13)?);
    let verifier = client_verifier(settings, &provider)?;
    // Not `with_single_cert`: its key check parses the certificate with webpki, which refuses
    // X.509 v1 certificates (see net/x509_v1.rs).
    let own = crate::net::x509_v1::certified_key(
        &provider,
        load_certs(cert_file).map_err(|source| ClientTlsError::File {
            setting: "client_tls_cert_file",
            source,
        })?,
        load_key(key_file).map_err(|source| ClientTlsError::File {
            setting: "client_tls_key_file",
            source,
        })?,
    )
    .map_err(|e| {
        ClientTlsError::Settings(format!("client_tls_cert_file / client_tls_key_file: {e}"))
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|source| ClientTlsError::Rustls {
            setting: "client_tls_protocols / client_tls_ciphers",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(crate::net::x509_v1::FixedCert(own)));
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(ClientTlsConfig {
        sslmode: settings.sslmode,
        acceptor: Some(TlsAcceptor::from(Arc::new(config))),
    })
}

/// The ring provider narrowed to the suites `client_tls_ciphers` / `client_tls13_ciphers`
/// name. A TLS 1.3 list (with TLS 1.3 enabled) that names no suite rustls has is refused with
/// OpenSSL's words, as PgBouncer's `SSL_CTX_set_ciphersuites` refuses it.
fn provider(
    settings: &ClientTlsSettings,
    tls13_enabled: bool,
) -> Result<CryptoProvider, ClientTlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    let mut ignored = Vec::new();
    let tls12 = ciphers::select(&settings.ciphers, false, &mut ignored);
    let tls13_spec = settings
        .tls13_ciphers
        .as_deref()
        .filter(|s| !ciphers::is_default(s));
    let tls13 = tls13_spec.and_then(|s| ciphers::select(s, true, &mut ignored));
    if let (Some(spec), None, true) = (tls13_spec, &tls13, tls13_enabled) {
        return Err(ClientTlsError::Settings(format!(
            "failed to set the TLSv1.3 cipher suites (client_tls13_ciphers = '{spec}' names none of {})",
            ciphers::tls13_names().join(", ")
        )));
    }
    if !ignored.is_empty() {
        tracing::warn!(
            ignored = %ignored.join(":"),
            "client_tls_ciphers / client_tls13_ciphers: names rustls does not implement are ignored"
        );
    }
    if tls12.is_some() || tls13.is_some() {
        let keep = |s: &rustls::SupportedCipherSuite| match s {
            rustls::SupportedCipherSuite::Tls12(_) => tls12.as_ref().is_none_or(|l| l.contains(s)),
            rustls::SupportedCipherSuite::Tls13(_) => tls13.as_ref().is_none_or(|l| l.contains(s)),
        };
        provider.cipher_suites.retain(keep);
    }
    Ok(provider)
}

fn load_roots(path: &Path) -> Result<RootCertStore, ClientTlsError> {
    let mut roots = RootCertStore::empty();
    let certs = load_certs(path).map_err(|source| ClientTlsError::File {
        setting: "client_tls_ca_file",
        source,
    })?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ClientTlsError::Settings(format!(
            "client_tls_ca_file: no usable CA certificate in {}",
            path.display()
        )));
    }
    Ok(roots)
}

/// verify-ca / verify-full / auth_type = cert demand a certificate from `client_tls_ca_file`;
/// other modes ask for one only when a CA file is set, and accept clients without.
fn client_verifier(
    settings: &ClientTlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, ClientTlsError> {
    let mandatory =
        settings.cert_auth || matches!(settings.sslmode, SslMode::VerifyCa | SslMode::VerifyFull);
    let Some(ca) = &settings.ca_file else {
        if mandatory {
            return Err(ClientTlsError::Settings(format!(
                "client_tls_sslmode = {} / auth_type = cert needs client_tls_ca_file",
                settings.sslmode
            )));
        }
        return Ok(WebPkiClientVerifier::no_client_auth());
    };
    let roots = Arc::new(load_roots(ca)?);
    let builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
    let builder = if mandatory {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    let inner = builder.build().map_err(ClientTlsError::Verifier)?;
    // rustls refuses X.509 v1 client certificates; those are verified by x509_v1.rs
    Ok(Arc::new(crate::net::x509_v1::V1ClientFallback {
        inner,
        roots,
        algs: provider.signature_verification_algorithms,
    }))
}

/// `client_tls_protocols`: PgBouncer's keywords `secure`/`default` (1.2 + 1.3), `all` and
/// `legacy` (which would add 1.0/1.1: narrowed to 1.2 + 1.3 with a warning), or a list of
/// `tlsv1.2`/`tlsv1.3`. Naming 1.0 or 1.1 is refused: rustls does not implement them.
pub fn parse_protocols(
    spec: &str,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, ClientTlsError> {
    let parsed = crate::net::tls_protocols::parse(spec).map_err(ClientTlsError::UnknownProtocol)?;
    if let Some(old) = parsed.legacy_named.first() {
        return Err(ClientTlsError::Settings(format!(
            "client_tls_protocols: {old} is not supported (only tlsv1.2 and tlsv1.3)"
        )));
    }
    if parsed.widened {
        tracing::warn!(
            client_tls_protocols = %spec,
            "TLS 1.0 and 1.1 are not supported; using tlsv1.2 and tlsv1.3"
        );
    }
    Ok(parsed.versions)
}

/// What a finished handshake negotiated, for logs and `SHOW CLIENTS`' `tls` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// "TLSv1.2" / "TLSv1.3".
    pub version: &'static str,
    /// OpenSSL's suite name, as PgBouncer shows it.
    pub cipher: &'static str,
}

impl std::fmt::Display for TlsInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.version, self.cipher)
    }
}

pub fn tls_info(s: &TlsStream<TcpStream>) -> TlsInfo {
    let conn = s.get_ref().1;
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(ciphers::openssl_name)
        .unwrap_or("unknown");
    TlsInfo { version, cipher }
}

/// The subject CN of the client's certificate, if it sent one.
pub fn peer_common_name(s: &TlsStream<TcpStream>) -> Option<String> {
    let cert = s.get_ref().1.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_map_like_pgbouncer() {
        assert_eq!(parse_protocols("secure").expect("ok").len(), 2);
        assert_eq!(parse_protocols("all").expect("ok").len(), 2);
        assert_eq!(parse_protocols("tlsv1.3").expect("ok").len(), 1);
        let e = parse_protocols("tlsv1.1,tlsv1.2").expect_err("refused");
        assert!(e.to_string().contains("tlsv1.1 is not supported"), "{e}");
        assert!(parse_protocols("sslv3").is_err());
    }

    #[test]
    fn enabled_modes_need_files() {
        let mut s = ClientTlsSettings::from_settings(&Settings::default());
        assert!(build(&s).expect("disable").acceptor.is_none());
        s.sslmode = SslMode::Require;
        assert!(
            build(&s)
                .err()
                .expect("no files")
                .to_string()
                .contains("client_tls_key_file")
        );
        s.sslmode = SslMode::Disable;
        s.cert_auth = true;
        assert!(build(&s).is_err());
    }

    /// Test PKI: a CA and server certificates for "localhost" with a chosen CN.
    struct Pki {
        dir: tempfile::TempDir,
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
        ca_der: Vec<u8>,
    }

    impl Pki {
        fn new() -> Pki {
            use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = params.self_signed(&key).expect("CA");
            Pki {
                dir: tempfile::tempdir().expect("dir"),
                ca_der: cert.der().to_vec(),
                issuer: rcgen::Issuer::new(params, key),
            }
        }

        /// Writes server.crt / server.key with subject CN `cn` (overwriting: a rotation).
        fn write_server_cert(&self, cn: &str) {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params =
                rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            let cert = params.signed_by(&key, &self.issuer).expect("sign");
            std::fs::write(self.dir.path().join("server.crt"), cert.pem()).expect("crt");
            std::fs::write(self.dir.path().join("server.key"), key.serialize_pem()).expect("key");
        }

        fn settings(&self) -> ClientTlsSettings {
            ClientTlsSettings {
                sslmode: SslMode::Require,
                key_file: Some(self.dir.path().join("server.key")),
                cert_file: Some(self.dir.path().join("server.crt")),
                ..ClientTlsSettings::from_settings(&Settings::default())
            }
        }

        fn connector(&self) -> tokio_rustls::TlsConnector {
            let mut roots = RootCertStore::empty();
            roots
                .add(rustls::pki_types::CertificateDer::from(self.ca_der.clone()))
                .expect("root");
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        }
    }

    /// Handshakes over an in-memory pipe; returns both ends and the CN the client saw.
    async fn connect(
        tls: &ClientTls,
        pki: &Pki,
    ) -> (
        tokio_rustls::server::TlsStream<tokio::io::DuplexStream>,
        tokio_rustls::client::TlsStream<tokio::io::DuplexStream>,
        String,
    ) {
        let (c, s) = tokio::io::duplex(64 * 1024);
        let acceptor = tls.current().acceptor.clone().expect("TLS on");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let connector = pki.connector();
        let (server, client) = tokio::join!(acceptor.accept(s), connector.connect(name, c));
        let (server, client) = (server.expect("accept"), client.expect("connect"));
        let der = client.get_ref().1.peer_certificates().expect("cert")[0].clone();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .expect("cn")
            .to_string();
        (server, client, cn)
    }

    #[tokio::test]
    async fn rotation_reaches_new_handshakes_and_spares_open_sessions() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let pki = Pki::new();
        pki.write_server_cert("first");
        let tls = ClientTls::new(&pki.settings()).expect("build");
        let (mut old_server, mut old_client, cn) = connect(&tls, &pki).await;
        assert_eq!(cn, "first");

        pki.write_server_cert("second");
        tls.replace(&pki.settings()).expect("rebuild");
        let (_s, _c, cn) = connect(&tls, &pki).await;
        assert_eq!(cn, "second");

        // the session opened before the rotation still carries data both ways
        old_server.write_all(b"ping").await.expect("write");
        old_server.flush().await.expect("flush");
        let mut buf = [0u8; 4];
        old_client.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
        old_client.write_all(b"pong").await.expect("write");
        old_client.flush().await.expect("flush");
        old_server.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"pong");

        // a broken file is refused and the working config stays
        std::fs::write(pki.dir.path().join("server.key"), "garbage").expect("write");
        assert!(tls.replace(&pki.settings()).is_err());
        let (_s, _c, cn) = connect(&tls, &pki).await;
        assert_eq!(cn, "second");
    }
}
