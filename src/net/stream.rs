//! The byte streams krbouncer talks over: a client side (TCP or unix socket) and a server side
//! (TCP, unix socket, TLS, or GSS-encrypted TCP), each one enum so the relay is monomorphic.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::net::gssenc::GssEncStream;

/// A downstream (application) connection.
pub enum ClientStream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl ClientStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    /// Plain TCP: what `client_tls_sslmode = require` refuses (unix sockets are exempt).
    pub fn is_plain_tcp(&self) -> bool {
        matches!(self, ClientStream::Tcp(_))
    }

    /// Negotiated TLS version and cipher, None when not TLS.
    pub fn tls_info(&self) -> Option<crate::net::client_tls::TlsInfo> {
        match self {
            ClientStream::Tls(s) => Some(crate::net::client_tls::tls_info(s)),
            _ => None,
        }
    }

    /// What the "login attempt" log line and `SHOW CLIENTS`' `tls` column say: "no" or
    /// e.g. "TLSv1.3/TLS_AES_256_GCM_SHA384".
    pub fn tls_description(&self) -> String {
        self.tls_info()
            .map_or_else(|| "no".to_string(), |i| i.to_string())
    }

    /// The client's IP address; None over a unix socket.
    pub fn peer_ip(&self) -> Option<std::net::IpAddr> {
        match self {
            ClientStream::Tcp(s) => s.peer_addr().ok().map(|a| a.ip()),
            ClientStream::Tls(s) => s.get_ref().0.peer_addr().ok().map(|a| a.ip()),
            ClientStream::Unix(_) => None,
        }
    }

    /// The OS user id of a unix-socket peer (SO_PEERCRED); None over TCP.
    pub fn peer_uid(&self) -> Option<u32> {
        match self {
            ClientStream::Unix(s) => s.peer_cred().ok().map(|c| c.uid()),
            ClientStream::Tcp(_) | ClientStream::Tls(_) => None,
        }
    }

    /// Waits for the client's next bytes and reads them into `rbuf`, which must be empty. A
    /// plain socket is waited on without a buffer (`rbuf`'s memory goes back to the
    /// [`read_pool`](crate::net::read_pool) first, and a pooled buffer is taken only once data
    /// is there), so an idle client holds no read buffer. TLS may hold decrypted bytes the
    /// socket no longer shows, so it reads into a buffer held while waiting. Ok(0) is EOF.
    pub async fn read_when_ready(&mut self, rbuf: &mut bytes::BytesMut) -> io::Result<usize> {
        debug_assert!(rbuf.is_empty());
        crate::net::read_pool::give(std::mem::take(rbuf));
        loop {
            match self {
                ClientStream::Tcp(s) => s.readable().await?,
                ClientStream::Unix(s) => s.readable().await?,
                ClientStream::Tls(s) => {
                    *rbuf = crate::net::read_pool::take();
                    return tokio::io::AsyncReadExt::read_buf(s, rbuf).await;
                }
            }
            let mut buf = crate::net::read_pool::take();
            // One poll of the stream's own read, not `try_read_buf`: a read shorter than the
            // buffer then clears the socket's readiness (edge-triggered epoll: it is drained),
            // so the relay's first read waits for the next event instead of making a
            // recvfrom that returns EAGAIN, once per transaction.
            let read = std::future::poll_fn(|cx| {
                let polled = match &mut *self {
                    ClientStream::Tcp(s) => {
                        tokio_util::io::poll_read_buf(Pin::new(s), cx, &mut buf)
                    }
                    ClientStream::Unix(s) => {
                        tokio_util::io::poll_read_buf(Pin::new(s), cx, &mut buf)
                    }
                    ClientStream::Tls(_) => Poll::Pending,
                };
                Poll::Ready(match polled {
                    Poll::Ready(r) => r,
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                })
            })
            .await;
            match read {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => crate::net::read_pool::give(buf),
                other => {
                    *rbuf = buf;
                    return other;
                }
            }
        }
    }

    /// The CN of the client certificate, if the client sent one over TLS.
    pub fn peer_common_name(&self) -> Option<String> {
        match self {
            ClientStream::Tls(s) => crate::net::client_tls::peer_common_name(s),
            _ => None,
        }
    }
}

/// An upstream (PostgreSQL) connection.
pub enum ServerStream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Gss(Box<GssEncStream<TcpStream>>),
}

/// What an idle server connection's socket says when looked at without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleHealth {
    /// Nothing to read: usable.
    Quiet,
    /// Closed by the server (restart, `pg_terminate_backend`, idle timeout).
    Closed,
    /// The server sent something while idle (typically a FATAL before closing).
    Spoke,
}

impl ServerStream {
    /// Checks an idle connection without blocking, so a server that went away while pooled is
    /// not handed to a client. Bytes read from a plain socket are kept in `rbuf`; encrypted
    /// streams are only peeked at (the record layer must not lose bytes).
    pub(crate) fn idle_health(&self, rbuf: &mut bytes::BytesMut) -> IdleHealth {
        fn classify(r: io::Result<usize>) -> IdleHealth {
            match r {
                Ok(0) => IdleHealth::Closed,
                Ok(_) => IdleHealth::Spoke,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => IdleHealth::Quiet,
                Err(_) => IdleHealth::Closed,
            }
        }
        fn peek(tcp: &TcpStream) -> IdleHealth {
            let mut byte = [0u8; 1];
            let mut buf = ReadBuf::new(&mut byte);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match tcp.poll_peek(&mut cx, &mut buf) {
                Poll::Pending => IdleHealth::Quiet,
                Poll::Ready(r) => classify(r),
            }
        }
        match self {
            ServerStream::Tcp(s) => classify(s.try_read_buf(rbuf)),
            ServerStream::Unix(s) => classify(s.try_read_buf(rbuf)),
            ServerStream::Tls(s) => peek(s.get_ref().0),
            ServerStream::Gss(s) => peek(s.get_ref()),
        }
    }

    /// What `SHOW SERVERS`' `tls` column and the logs call this transport.
    pub(crate) fn transport_name(&self) -> &'static str {
        match self {
            ServerStream::Tcp(_) => "tcp",
            ServerStream::Unix(_) => "unix",
            ServerStream::Tls(_) => "tls",
            ServerStream::Gss(_) => "gssenc",
        }
    }
}

/// Delegates the four tokio I/O methods to whichever variant is inside.
macro_rules! delegate_io {
    ($ty:ident { $($variant:ident),* }) => {
        impl AsyncRead for $ty {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() { $( $ty::$variant(s) => Pin::new(s).poll_read(cx, buf), )* }
            }
        }
        impl AsyncWrite for $ty {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                match self.get_mut() { $( $ty::$variant(s) => Pin::new(s).poll_write(cx, buf), )* }
            }
            fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
                match self.get_mut() { $( $ty::$variant(s) => Pin::new(s).poll_write_vectored(cx, bufs), )* }
            }
            fn is_write_vectored(&self) -> bool {
                match self { $( $ty::$variant(s) => s.is_write_vectored(), )* }
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() { $( $ty::$variant(s) => Pin::new(s).poll_flush(cx), )* }
            }
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() { $( $ty::$variant(s) => Pin::new(s).poll_shutdown(cx), )* }
            }
        }
    };
}

delegate_io!(ClientStream { Tcp, Unix, Tls });
delegate_io!(ServerStream {
    Tcp,
    Unix,
    Tls,
    Gss
});
