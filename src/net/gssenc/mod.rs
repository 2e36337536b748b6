//! GSSENCRequest negotiation for upstream connections (libpq `fe-secure-gssapi.c` semantics):
//! request, one-byte answer, length-framed token exchange, then an encrypted stream.

mod stream;

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::auth::gss::{GssError, GssPurpose, GssRuntime, GssTarget};
pub use stream::{Framed, GssEncStream, MAX_PACKET, packet_len, wrap_token_is_sealed};

/// Upper bound for an ErrorResponse the server may send during negotiation.
const MAX_HANDSHAKE_ERROR: usize = 8192;

/// Result of a GSSENCRequest.
#[derive(Debug)]
pub enum GssEncOutcome<S> {
    /// 'G' and a completed context: everything from now on is encrypted (send the
    /// StartupMessage through this stream; with a `hostgssenc ... gss` rule the server answers
    /// AuthenticationOk without another GSS exchange).
    Encrypted(GssEncStream<S>),
    /// 'N': the server will not encrypt. The connection stays open and in a clean state: the
    /// caller may send an SSLRequest or a StartupMessage on the same socket.
    Refused(S),
}

#[derive(Debug, thiserror::Error)]
pub enum GssEncError {
    #[error("I/O error during GSS encryption setup: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Gss(#[from] GssError),
    /// The server sent an ErrorResponse (e.g. PostgreSQL < 12 does not know GSSENCRequest, or
    /// the server rejected our token). The connection is closed; reconnect to fall back.
    #[error("server error during GSS encryption setup: {0}")]
    Server(String),
    #[error("protocol violation during GSS encryption setup: {0}")]
    Protocol(String),
}

impl GssEncError {
    /// Metrics label, consistent with `GssError::reason_label`.
    pub fn reason_label(&self) -> &'static str {
        match self {
            GssEncError::Io(_) => "io",
            GssEncError::Gss(e) => e.reason_label(),
            GssEncError::Server(_) => "server_error",
            GssEncError::Protocol(_) => "protocol",
        }
    }
}

/// Send GSSENCRequest on a fresh connection (before anything else, also before SSLRequest)
/// and, if the server agrees, establish the GSS context. `deadline` bounds each GSSAPI step
/// (KDC round trips); the caller's connect timeout should bound the whole call.
pub async fn request_gssenc<S>(
    mut stream: S,
    rt: &GssRuntime,
    target: &GssTarget,
    deadline: Duration,
) -> Result<GssEncOutcome<S>, GssEncError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut req = BytesMut::with_capacity(8);
    crate::protocol::frontend::gssenc_request(&mut req);
    stream.write_all(&req).await?;
    stream.flush().await?;
    // Exactly one byte: anything after it would be unencrypted data we must not trust.
    match stream.read_u8().await? {
        b'G' => {}
        b'N' => return Ok(GssEncOutcome::Refused(stream)),
        b'E' => return Err(GssEncError::Server(read_error_after_tag(&mut stream).await)),
        other => {
            return Err(GssEncError::Protocol(format!(
                "unexpected answer {other:#04x} to GSSENCRequest"
            )));
        }
    }
    let mut session = rt.start(target, GssPurpose::Encryption, deadline).await?;
    let mut input: Option<Vec<u8>> = None;
    loop {
        let out = session.step(rt, input.as_deref(), deadline).await?;
        if let Some(tok) = out {
            if tok.len() + 4 > MAX_PACKET {
                return Err(GssEncError::Protocol(format!(
                    "GSSAPI token of {} bytes exceeds the packet limit",
                    tok.len()
                )));
            }
            let mut framed = Vec::with_capacity(tok.len() + 4);
            framed.extend_from_slice(&(tok.len() as u32).to_be_bytes()); // fits: checked above
            framed.extend_from_slice(&tok);
            stream.write_all(&framed).await?;
            stream.flush().await?;
        }
        if session.is_complete() {
            break;
        }
        let mut hdr = [0u8; 4];
        stream.read_exact(&mut hdr).await?;
        if hdr[0] == b'E' {
            // plaintext ErrorResponse instead of a token packet; hdr[1..] = first 3 length bytes
            return Err(GssEncError::Server(
                read_error_rest(&mut stream, [hdr[1], hdr[2], hdr[3]]).await,
            ));
        }
        let len = u32::from_be_bytes(hdr) as usize;
        if len == 0 || len + 4 > MAX_PACKET {
            return Err(GssEncError::Protocol(format!(
                "server sent a GSSAPI token packet of {len} bytes"
            )));
        }
        let mut tok = vec![0u8; len];
        stream.read_exact(&mut tok).await?;
        input = Some(tok);
    }
    let ctx = session.into_established_context()?;
    Ok(GssEncOutcome::Encrypted(GssEncStream::new(stream, ctx)?))
}

/// After an 'E' tag byte: read the ErrorResponse's length and body, return its message.
async fn read_error_after_tag<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut l = [0u8; 3];
    if stream.read_exact(&mut l).await.is_err() {
        return "server sent 'E' and closed the connection".into();
    }
    read_error_rest(stream, l).await
}

/// Read the rest of an ErrorResponse whose first three length bytes are known; best effort.
async fn read_error_rest<S: AsyncRead + Unpin>(stream: &mut S, first3: [u8; 3]) -> String {
    let mut last = [0u8; 1];
    if stream.read_exact(&mut last).await.is_err() {
        return "truncated ErrorResponse".into();
    }
    let [l0, l1, l2] = first3;
    let word = [l0, l1, l2, last[0]];
    let len = u32::from_be_bytes(word) as usize;
    if !(4..=MAX_HANDSHAKE_ERROR).contains(&len) {
        return format!("ErrorResponse with bad length {len}");
    }
    let mut body = vec![0u8; len - 4];
    if stream.read_exact(&mut body).await.is_err() {
        return "truncated ErrorResponse".into();
    }
    // the whole message again (tag, length, body) for the one ErrorResponse parser
    let mut msg = Vec::with_capacity(1 + len);
    msg.push(b'E');
    msg.extend_from_slice(&word);
    msg.extend_from_slice(&body);
    error_message(&msg)
}

/// "SEVERITY: message" of a whole ErrorResponse.
fn error_message(msg: &[u8]) -> String {
    match crate::protocol::backend::parse_error_fields(msg) {
        Ok(f) if !f.message.is_empty() => format!("{}: {}", f.severity, f.message),
        Ok(_) => "ErrorResponse without message".into(),
        Err(e) => format!("malformed ErrorResponse: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::gss::target_name;

    fn target() -> GssTarget {
        target_name("postgres/localhost@EXAMPLE.COM", "postgres", "localhost").expect("valid")
    }

    #[tokio::test]
    async fn refusal_returns_the_stream_after_reading_one_byte() {
        let (client, mut server) = tokio::io::duplex(64);
        let srv = tokio::spawn(async move {
            let mut req = [0u8; 8];
            server.read_exact(&mut req).await.expect("request");
            server.write_all(b"N").await.expect("answer");
            server.write_all(b"more").await.expect("follow-up");
            (req, server)
        });
        let rt = GssRuntime::new(2);
        let out = request_gssenc(client, &rt, &target(), Duration::from_secs(5))
            .await
            .expect("no error");
        let (req, _server) = srv.await.expect("server task");
        assert_eq!(req, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
        let GssEncOutcome::Refused(mut s) = out else {
            panic!("expected Refused")
        };
        let mut rest = [0u8; 4];
        s.read_exact(&mut rest)
            .await
            .expect("bytes after 'N' still unread");
        assert_eq!(&rest, b"more");
    }

    #[tokio::test]
    async fn error_response_answer_is_reported_with_its_message() {
        let (client, mut server) = tokio::io::duplex(256);
        tokio::spawn(async move {
            let mut req = [0u8; 8];
            let _ = server.read_exact(&mut req).await;
            let body = b"SFATAL\0C08P01\0Munsupported frontend protocol 1234.5680\0\0";
            let mut msg = vec![b'E'];
            msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            msg.extend_from_slice(body);
            let _ = server.write_all(&msg).await;
        });
        let rt = GssRuntime::new(2);
        let e = request_gssenc(client, &rt, &target(), Duration::from_secs(5))
            .await
            .expect_err("server error");
        assert_eq!(e.reason_label(), "server_error");
        assert!(
            e.to_string().contains("unsupported frontend protocol"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn garbage_answer_is_a_protocol_error() {
        let (client, mut server) = tokio::io::duplex(64);
        tokio::spawn(async move {
            let mut req = [0u8; 8];
            let _ = server.read_exact(&mut req).await;
            let _ = server.write_all(b"S").await;
        });
        let rt = GssRuntime::new(2);
        let e = request_gssenc(client, &rt, &target(), Duration::from_secs(5))
            .await
            .expect_err("protocol");
        assert_eq!(e.reason_label(), "protocol");
    }
}
