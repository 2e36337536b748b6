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
}

/// An upstream (PostgreSQL) connection.
pub enum ServerStream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Gss(Box<GssEncStream<TcpStream>>),
}

impl ServerStream {
    /// What `SHOW SERVERS`' `tls` column and the logs call this transport.
    pub fn transport_name(&self) -> &'static str {
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

delegate_io!(ClientStream { Tcp, Unix });
delegate_io!(ServerStream {
    Tcp,
    Unix,
    Tls,
    Gss
});
