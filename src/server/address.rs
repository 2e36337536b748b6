//! Where a server lives: a TCP host and port, or a unix socket directory, and how to reach it.

use std::fmt;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream, UnixStream};

/// One upstream endpoint as written in `[databases]` (`host=`, `port=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerAddress {
    Tcp { host: String, port: u16 },
    Unix { dir: String, port: u16 },
}

impl ServerAddress {
    /// `host` values starting with `/` (or `@`, the abstract namespace) name a socket directory.
    pub(crate) fn from_host(host: &str, port: u16) -> ServerAddress {
        if host.starts_with('/') || host.starts_with('@') {
            ServerAddress::Unix {
                dir: host.to_string(),
                port,
            }
        } else {
            ServerAddress::Tcp {
                host: host.to_string(),
                port,
            }
        }
    }

    /// The host name GSSAPI and TLS should use, if this is a TCP endpoint.
    pub(crate) fn tcp_host(&self) -> Option<&str> {
        match self {
            ServerAddress::Tcp { host, .. } => Some(host),
            ServerAddress::Unix { .. } => None,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        match self {
            ServerAddress::Tcp { port, .. } | ServerAddress::Unix { port, .. } => *port,
        }
    }

    fn socket_path(dir: &str, port: u16) -> String {
        format!("{}/.s.PGSQL.{}", dir.trim_end_matches('/'), port)
    }

    /// Opens the raw socket. TCP gets NODELAY, as PostgreSQL clients do.
    pub(crate) async fn connect(&self, timeout: Duration) -> std::io::Result<RawSocket> {
        self.connect_with_buffers(timeout, 0).await
    }

    /// As [`ServerAddress::connect`], with `SO_SNDBUF` / `SO_RCVBUF` of `socket_buffer` bytes
    /// (`tcp_socket_buffer`; 0 = kernel default) set before connecting. Linux picks a TCP
    /// connection's window scale at the handshake from the receive buffer then: shrinking it
    /// afterwards leaves a window the sender cannot fill, and a big result (a COPY, a WAL
    /// stream) stalls for good.
    pub(crate) async fn connect_with_buffers(
        &self,
        timeout: Duration,
        socket_buffer: u32,
    ) -> std::io::Result<RawSocket> {
        let fut = async {
            match self {
                ServerAddress::Tcp { host, port } => {
                    let s = connect_tcp(host, *port, socket_buffer).await?;
                    s.set_nodelay(true)?;
                    Ok(RawSocket::Tcp(s))
                }
                ServerAddress::Unix { dir, port } => {
                    let path = Self::socket_path(dir, *port);
                    let path = path
                        .strip_prefix('@')
                        .map(|p| format!("\0{p}"))
                        .unwrap_or(path);
                    Ok(RawSocket::Unix(UnixStream::connect(path).await?))
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timeout",
            )),
        }
    }
}

/// Connects to the first address of `host` that accepts, as `TcpStream::connect` does.
async fn connect_tcp(host: &str, port: u16, socket_buffer: u32) -> std::io::Result<TcpStream> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| std::io::Error::new(e.kind(), DnsLookupFailed(e)))?
        .collect();
    if socket_buffer == 0 {
        return TcpStream::connect(&addrs[..]).await;
    }
    let mut last = None;
    for addr in addrs {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_send_buffer_size(socket_buffer)?;
        socket.set_recv_buffer_size(socket_buffer)?;
        match socket.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            ServerAddress::Unix { dir, port } => write!(f, "{}", Self::socket_path(dir, *port)),
        }
    }
}

/// The host name did not resolve (PgBouncer: "server DNS lookup failed"); the source of the
/// `io::Error` [`ServerAddress::connect`] returns then.
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup failed: {0}")]
pub struct DnsLookupFailed(#[source] pub std::io::Error);

/// Whether a connect error is a failed DNS lookup.
pub(crate) fn is_dns_failure(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<DnsLookupFailed>())
}

/// A freshly opened socket, before any TLS or GSS negotiation.
pub(crate) enum RawSocket {
    Tcp(TcpStream),
    Unix(UnixStream),
}
