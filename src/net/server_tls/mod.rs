//! Upstream (server-side) TLS with rustls: connector per `server_tls_*` settings and the
//! SSLRequest negotiation. PgBouncer semantics: only verify-ca/verify-full verify the server.

pub mod settings;
mod verify;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::SslMode;

/// Used when verify-ca/verify-full has no `server_tls_ca_file` (Debian/Ubuntu system bundle).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The `server_tls_*` settings.
#[derive(Debug, Clone)]
pub struct ServerTlsSettings {
    pub sslmode: SslMode,
    /// `server_tls_ca_file`: roots for verify-ca / verify-full.
    pub ca_file: Option<PathBuf>,
    /// `server_tls_cert_file` + `server_tls_key_file`: client certificate, both or neither.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// `server_tls_protocols`: "secure" (default), "all", "legacy", "default", or a list of
    /// tlsv1.0 / tlsv1.1 / tlsv1.2 / tlsv1.3. Only 1.2 and 1.3 exist here.
    pub protocols: String,
    /// `server_tls_ciphers`: accepted for compatibility; rustls' own safe suites are used.
    pub ciphers: String,
}

impl Default for ServerTlsSettings {
    fn default() -> Self {
        ServerTlsSettings {
            sslmode: SslMode::Prefer,
            ca_file: None,
            cert_file: None,
            key_file: None,
            protocols: "secure".into(),
            ciphers: "default".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("no PEM certificate found in {0}")]
    NoCertificate(PathBuf),
    #[error("no PEM private key found in {0}")]
    NoKey(PathBuf),
    #[error("server_tls_cert_file and server_tls_key_file must be set together")]
    CertWithoutKey,
    #[error(
        "server_tls_sslmode {0:?} needs server_tls_ca_file (no system CA bundle at {SYSTEM_CA_BUNDLE})"
    )]
    NoCaFile(SslMode),
    #[error("invalid server_tls_protocols {0:?}: {1}")]
    Protocols(String, String),
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("server_tls_cert_file / server_tls_key_file: {0}")]
    OwnCert(String),
    #[error("CA file rejected: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

/// Build the connector for `settings`; `Ok(None)` for `disable`.
pub fn build_connector(
    settings: &ServerTlsSettings,
) -> Result<Option<TlsConnector>, TlsSetupError> {
    if settings.sslmode == SslMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Some(versions) = parse_protocols(&settings.protocols)? else {
        // PgBouncer accepts the value (with OpenSSL 3 such handshakes fail anyway): no TLS
        // is offered upstream, so `prefer` logs in unencrypted and `require` and stricter fail
        tracing::warn!(
            server_tls_protocols = %settings.protocols,
            "server_tls_protocols names only TLS versions older than 1.2, which are not supported: servers are not offered TLS"
        );
        return Ok(None);
    };
    if !is_default_ciphers(&settings.ciphers) {
        tracing::info!(
            ciphers = %settings.ciphers,
            "server_tls_ciphers is accepted but not applied: rustls uses its own safe TLS 1.2/1.3 suites"
        );
    }
    let builder =
        ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(&versions)?;
    let builder = match settings.sslmode {
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(load_roots(settings)?);
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots.clone(),
                provider.clone(),
            )
            .build()?;
            let full = settings.sslmode == SslMode::VerifyFull;
            let inner: Arc<dyn rustls::client::danger::ServerCertVerifier> = if full {
                webpki
            } else {
                Arc::new(verify::ChainOnly { inner: webpki })
            };
            // rustls refuses X.509 v1 certificates; those are verified by x509_v1.rs
            let verifier = crate::net::x509_v1::V1Fallback {
                inner,
                roots,
                algs: provider.signature_verification_algorithms,
                check_name: full,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
        _ => {
            let algs = provider.signature_verification_algorithms;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verify::AcceptAnyServerCert { algs }))
        }
    };
    let mut config = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            // Not `with_client_auth_cert`: its key check refuses X.509 v1 (net/x509_v1.rs)
            let own =
                crate::net::x509_v1::certified_key(&provider, load_certs(cert)?, load_key(key)?)
                    .map_err(TlsSetupError::OwnCert)?;
            builder.with_client_cert_resolver(Arc::new(crate::net::x509_v1::FixedCert(own)))
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TlsSetupError::CertWithoutKey),
    };
    // PostgreSQL 17+ checks ALPN on direct TLS; harmless for older servers (what libpq 17 sends)
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Some(TlsConnector::from(Arc::new(config))))
}

/// Result of an SSLRequest.
#[derive(Debug)]
pub enum TlsOutcome<S = TcpStream> {
    Encrypted(Box<TlsStream<S>>),
    /// 'N': the server does not do TLS; the socket is still clean for a StartupMessage.
    Refused(S),
}

/// Send SSLRequest, read exactly one byte, and on 'S' run the TLS handshake for `server_name`
/// (a DNS name or an IP address; checked only by verify-full). The caller decides what a
/// refusal means for its sslmode.
pub async fn request_tls<S>(
    mut stream: S,
    connector: &TlsConnector,
    server_name: &str,
) -> Result<TlsOutcome<S>, io::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid TLS server name {server_name:?}: {e}"),
        )
    })?;
    let mut req = BytesMut::with_capacity(8);
    crate::protocol::frontend::ssl_request(&mut req);
    stream.write_all(&req).await?;
    stream.flush().await?;
    // one byte only: bytes after 'S' would be unauthenticated plaintext (CVE-2021-23214)
    match stream.read_u8().await? {
        b'S' => Ok(TlsOutcome::Encrypted(Box::new(
            connector.connect(name, stream).await?,
        ))),
        b'N' => Ok(TlsOutcome::Refused(stream)),
        b'E' => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "server answered SSLRequest with an error",
        )),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected answer {other:#04x} to SSLRequest"),
        )),
    }
}

/// `server_tls_protocols`: 1.0/1.1 are dropped (rustls lacks them) as long as a newer version
/// remains; `None` when only those were named. PgBouncer's keywords as in
/// `net::tls_protocols`; an unknown word is an error.
pub(crate) fn parse_protocols(
    spec: &str,
) -> Result<Option<Vec<&'static rustls::SupportedProtocolVersion>>, TlsSetupError> {
    let parsed = crate::net::tls_protocols::parse(spec)
        .map_err(|e| TlsSetupError::Protocols(spec.into(), e.to_string()))?;
    Ok((!parsed.versions.is_empty()).then_some(parsed.versions))
}

fn is_default_ciphers(c: &str) -> bool {
    matches!(
        c.trim().to_ascii_lowercase().as_str(),
        "" | "default" | "secure" | "fast" | "normal" | "all"
    )
}

fn read(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsSetupError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsSetupError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsSetupError::NoKey(path.to_path_buf()))
}

fn load_roots(settings: &ServerTlsSettings) -> Result<RootCertStore, TlsSetupError> {
    let path = match &settings.ca_file {
        Some(p) => p.clone(),
        None if Path::new(SYSTEM_CA_BUNDLE).exists() => PathBuf::from(SYSTEM_CA_BUNDLE),
        None => return Err(TlsSetupError::NoCaFile(settings.sslmode)),
    };
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(load_certs(&path)?);
    if added == 0 {
        return Err(TlsSetupError::NoCertificate(path));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests;
