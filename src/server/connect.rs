//! Opening a server connection: socket, then GSS encryption (`server_gssencmode`), then TLS
//! (`server_tls_sslmode`), then login, all under `server_connect_timeout`.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::auth::gss::{GssRuntime, GssTarget};
use crate::auth::secret::Secret;
use crate::config::{GssEncMode, SslMode};
use crate::net::gssenc::{GssEncOutcome, request_gssenc};
use crate::net::server_tls::{TlsOutcome, request_tls};
use crate::net::stream::ServerStream;
use crate::server::address::{RawSocket, ServerAddress};
use crate::server::conn::{CancelTarget, ServerConn};
use crate::server::gss_login::{GssLogin, GssNegotiate};
use crate::server::login::{LoginError, LoginRequest, ScramKeys, login};

/// Everything needed to open and log in one server connection.
pub(crate) struct ConnectSpec<'a> {
    pub address: &'a ServerAddress,
    pub user: &'a str,
    pub database: &'a str,
    pub extra_params: &'a [(String, String)],
    pub secret: Option<&'a Secret>,
    pub scram_keys: Option<ScramKeys>,
    pub gss_negotiate: GssNegotiate,
    pub gssencmode: GssEncMode,
    pub gss_target: Option<&'a GssTarget>,
    pub gss_runtime: &'a GssRuntime,
    pub sslmode: SslMode,
    pub tls: Option<&'a tokio_rustls::TlsConnector>,
    pub connect_timeout: Duration,
    /// `tcp_keepalive` & co. for the new socket.
    pub tcp: crate::net::sockopt::TcpOptions,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("could not connect to {address}: {source}")]
    Socket {
        address: String,
        source: std::io::Error,
    },
    #[error("connect timeout")]
    Timeout,
    #[error("GSS encryption: {0}")]
    GssEnc(String),
    #[error(transparent)]
    Tls(#[from] TlsConnectError),
    #[error(transparent)]
    Login(#[from] LoginError),
}

/// Why TLS to the server could not be set up (`server_tls_sslmode`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsConnectError {
    #[error("server TLS is required but not configured")]
    NotConfigured,
    #[error("server refused SSL")]
    Refused,
    /// The SSLRequest exchange or the handshake failed, a transport error (the server went
    /// away under it) or a TLS one (certificate, protocol). PgBouncer closes such a server as
    /// "server conn crashed?" and keeps its clients waiting for the next attempt
    /// (`pool/login_retry.rs`); a certificate the verifier refused reads "certificate verify
    /// failed", OpenSSL's words that PgBouncer logs.
    #[error("TLS handshake failed: {}", handshake_detail(.0))]
    Handshake(#[source] std::io::Error),
}

/// The handshake error with OpenSSL's "certificate verify failed" before a certificate
/// refusal (tokio-rustls hands rustls' errors over inside an `InvalidData` io::Error).
pub(crate) fn handshake_detail(e: &std::io::Error) -> String {
    let refused_cert = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        });
    if refused_cert {
        format!("certificate verify failed: {e}")
    } else {
        e.to_string()
    }
}

/// What a connect produced, with whether GSSAPI authenticated it (for logs and SHOW).
pub(crate) struct Connected {
    pub conn: ServerConn,
    pub gss_authenticated: bool,
}

/// How much longer than `server_connect_timeout` the whole connect may take, so that a step
/// with its own deadline inside the same budget (a GSSAPI call waiting on a KDC) reports its
/// own, more telling error ("the KDC did not answer ...") instead of a bare "connect timeout".
const INNER_DEADLINE_GRACE: Duration = Duration::from_millis(200);

/// Opens, secures and logs in one server connection.
pub(crate) async fn connect(spec: &ConnectSpec<'_>) -> Result<Connected, ConnectError> {
    let deadline = Instant::now() + spec.connect_timeout;
    let budget = spec.connect_timeout + INNER_DEADLINE_GRACE;
    match tokio::time::timeout(budget, connect_inner(spec, deadline)).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// What is left of the connect budget for a step that has a deadline of its own.
fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

async fn connect_inner(
    spec: &ConnectSpec<'_>,
    deadline: Instant,
) -> Result<Connected, ConnectError> {
    let (mut stream, encrypted) = open_transport(spec, deadline).await?;
    let mut rbuf = BytesMut::with_capacity(4096);
    let outcome = login(
        &mut stream,
        &mut rbuf,
        LoginRequest {
            user: spec.user,
            database: spec.database,
            extra_params: spec.extra_params,
            secret: spec.secret,
            scram_keys: spec.scram_keys,
            gss: GssLogin {
                negotiate: spec.gss_negotiate,
                target: spec.gss_target,
                runtime: spec.gss_runtime,
                deadline: remaining(deadline),
                encrypted,
            },
        },
    )
    .await?;
    let cancel = CancelTarget {
        address: spec.address.clone(),
        pid: outcome.pid,
        key: outcome.key,
    };
    Ok(Connected {
        conn: ServerConn::new(stream, rbuf, outcome.params, cancel),
        gss_authenticated: outcome.gss_authenticated,
    })
}

async fn open_socket(spec: &ConnectSpec<'_>) -> Result<RawSocket, ConnectError> {
    spec.address
        .connect_with_buffers(spec.connect_timeout, spec.tcp.socket_buffer)
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                ConnectError::Timeout
            } else {
                ConnectError::Socket {
                    address: spec.address.to_string(),
                    source: e,
                }
            }
        })
}

/// Returns the transport and whether it is GSS-encrypted.
async fn open_transport(
    spec: &ConnectSpec<'_>,
    deadline: Instant,
) -> Result<(ServerStream, bool), ConnectError> {
    let tcp = match open_socket(spec).await? {
        RawSocket::Unix(s) => {
            if spec.gssencmode == GssEncMode::Require {
                return Err(ConnectError::GssEnc(
                    "GSS encryption is impossible over a unix socket".into(),
                ));
            }
            return Ok((ServerStream::Unix(s), false));
        }
        RawSocket::Tcp(s) => {
            spec.tcp.apply(&s);
            s
        }
    };
    let tcp = match try_gssenc(spec, tcp, deadline).await? {
        Ok(stream) => return Ok((stream, true)),
        Err(tcp) => tcp,
    };
    Ok((try_tls(spec, tcp).await?, false))
}

/// GSSENCRequest first, as libpq does. `Err(tcp)` hands back a socket to continue on.
async fn try_gssenc(
    spec: &ConnectSpec<'_>,
    tcp: TcpStream,
    deadline: Instant,
) -> Result<Result<ServerStream, TcpStream>, ConnectError> {
    if spec.gssencmode == GssEncMode::Disable {
        return Ok(Err(tcp));
    }
    let required = spec.gssencmode == GssEncMode::Require;
    let Some(target) = spec.gss_target else {
        if required {
            return Err(ConnectError::GssEnc(
                "no service principal for this server".into(),
            ));
        }
        return Ok(Err(tcp));
    };
    match request_gssenc(tcp, spec.gss_runtime, target, remaining(deadline)).await {
        Ok(GssEncOutcome::Encrypted(s)) => Ok(Ok(ServerStream::Gss(Box::new(s)))),
        Ok(GssEncOutcome::Refused(tcp)) if !required => Ok(Err(tcp)),
        Ok(GssEncOutcome::Refused(_)) => Err(ConnectError::GssEnc(
            "server refused GSS encryption (server_gssencmode = require)".into(),
        )),
        Err(e) if required => Err(ConnectError::GssEnc(e.to_string())),
        Err(e) => {
            // prefer: the socket may be mid-handshake; start over on a fresh one without GSS.
            tracing::info!(error = %e, "GSS encryption not possible, continuing without it");
            match open_socket(spec).await? {
                RawSocket::Tcp(s) => Ok(Err(s)),
                RawSocket::Unix(_) => Err(ConnectError::GssEnc("address changed kind".into())),
            }
        }
    }
}

/// SSLRequest per `server_tls_sslmode`. `allow` is treated like `disable`: krbouncer does not
/// retry a refused plain login over TLS.
async fn try_tls(spec: &ConnectSpec<'_>, tcp: TcpStream) -> Result<ServerStream, ConnectError> {
    let wants_tls = !matches!(spec.sslmode, SslMode::Disable | SslMode::Allow);
    let Some(connector) = spec.tls.filter(|_| wants_tls) else {
        if wants_tls && spec.sslmode != SslMode::Prefer {
            return Err(TlsConnectError::NotConfigured.into());
        }
        return Ok(ServerStream::Tcp(tcp));
    };
    let server_name = spec.address.tcp_host().unwrap_or("localhost");
    match request_tls(tcp, connector, server_name).await {
        Ok(TlsOutcome::Encrypted(s)) => Ok(ServerStream::Tls(s)),
        Ok(TlsOutcome::Refused(tcp)) if spec.sslmode == SslMode::Prefer => {
            Ok(ServerStream::Tcp(tcp))
        }
        Ok(TlsOutcome::Refused(_)) => Err(TlsConnectError::Refused.into()),
        Err(e) => Err(TlsConnectError::Handshake(e).into()),
    }
}
