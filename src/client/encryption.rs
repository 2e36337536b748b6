//! Before the StartupMessage on TCP: SSLRequest answered 'S' (and the TLS handshake run) or
//! 'N' by `client_tls_sslmode`, GSSENCRequest answered 'N', and direct TLS (a TLS ClientHello
//! as the first byte, PgBouncer 1.25 / PostgreSQL 17) with ALPN "postgresql" required.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::client::error::ClientError;
use crate::net::client_tls::{ALPN_POSTGRESQL, ClientTlsConfig};
use crate::net::stream::ClientStream;
use crate::protocol::pooler_errors::{
    CLIENT_UNEXPECTED_EOF, UNENCRYPTED_AFTER_GSSENC, UNENCRYPTED_AFTER_SSL, tls_handshake_failed,
};
use crate::protocol::startup::{GSSENC_REQUEST_CODE, SSL_REQUEST_CODE, is_direct_tls};

/// How the pre-startup exchange ended.
pub enum Negotiated {
    /// Continue with this stream; `rbuf` holds whatever followed (the StartupMessage).
    Ready(ClientStream),
    /// Refuse the client with this error (sent in the clear).
    Refused(ClientStream, ClientError),
    /// The handshake failed or the peer left: nothing can be sent; the reason is for the log
    /// and the metrics.
    Failed(ClientError),
}

/// Runs the exchange on a fresh connection. Unix sockets pass through untouched (their
/// SSLRequest gets 'N' from `read_first_packet`, as PgBouncer never does TLS there).
pub async fn negotiate(
    stream: ClientStream,
    rbuf: &mut BytesMut,
    tls: &ClientTlsConfig,
) -> Negotiated {
    let ClientStream::Tcp(mut tcp) = stream else {
        return Negotiated::Ready(stream);
    };
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(1) if is_direct_tls(first[0]) => {
            return match &tls.acceptor {
                Some(acceptor) => handshake(acceptor, tcp, true).await,
                None => Negotiated::Failed(tls_handshake_failed(
                    "direct TLS while client_tls_sslmode = disable".into(),
                )),
            };
        }
        Ok(_) => {}
        Err(_) => return Negotiated::Ready(ClientStream::Tcp(tcp)),
    }
    loop {
        while rbuf.len() < 8 {
            // only an 8-byte SSLRequest/GSSENCRequest is ours: any other announced length
            // (4, 0, negative, a StartupMessage) goes to read_first_packet at once, which
            // refuses the impossible ones without waiting for bytes that may never come
            if rbuf.len() >= 4 && rbuf[..4] != [0, 0, 0, 8] {
                return Negotiated::Ready(ClientStream::Tcp(tcp));
            }
            rbuf.reserve(256);
            match tcp.read_buf(rbuf).await {
                // read_first_packet reports the short packet or the silent probe
                Ok(0) | Err(_) => return Negotiated::Ready(ClientStream::Tcp(tcp)),
                Ok(_) => {}
            }
        }
        let len = u32::from_be_bytes([rbuf[0], rbuf[1], rbuf[2], rbuf[3]]);
        let code = i32::from_be_bytes([rbuf[4], rbuf[5], rbuf[6], rbuf[7]]);
        if len != 8 || (code != SSL_REQUEST_CODE && code != GSSENC_REQUEST_CODE) {
            return Negotiated::Ready(ClientStream::Tcp(tcp));
        }
        if let Err(e) = nothing_after_request(code == SSL_REQUEST_CODE, &rbuf[8..]) {
            return Negotiated::Refused(ClientStream::Tcp(tcp), e);
        }
        rbuf.advance(8);
        let accept = match &tls.acceptor {
            Some(a) if code == SSL_REQUEST_CODE => Some(a),
            _ => None,
        };
        let answer: &[u8] = if accept.is_some() { b"S" } else { b"N" };
        if tcp.write_all(answer).await.is_err() {
            return Negotiated::Failed(CLIENT_UNEXPECTED_EOF);
        }
        if let Some(acceptor) = accept {
            return handshake(acceptor, tcp, false).await;
        }
    }
}

/// Nothing may follow an SSLRequest or GSSENCRequest before our answer: those bytes were sent
/// in the clear and an attacker could have injected them (CVE-2021-23214). `after` is what
/// was buffered behind the request.
pub(crate) fn nothing_after_request(ssl: bool, after: &[u8]) -> Result<(), ClientError> {
    match (after.is_empty(), ssl) {
        (true, _) => Ok(()),
        (false, true) => Err(UNENCRYPTED_AFTER_SSL),
        (false, false) => Err(UNENCRYPTED_AFTER_GSSENC),
    }
}

async fn handshake(acceptor: &TlsAcceptor, tcp: TcpStream, direct: bool) -> Negotiated {
    match acceptor.accept(tcp).await {
        Ok(s) => {
            // PostgreSQL 17's rule for direct TLS: the client must have chosen our protocol.
            if direct && s.get_ref().1.alpn_protocol() != Some(ALPN_POSTGRESQL) {
                return Negotiated::Failed(tls_handshake_failed(
                    "direct TLS without ALPN \"postgresql\"".into(),
                ));
            }
            Negotiated::Ready(ClientStream::Tls(Box::new(s)))
        }
        Err(e) => Negotiated::Failed(tls_handshake_failed(format!("TLS handshake failed: {e}"))),
    }
}
