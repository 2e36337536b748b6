//! Reading whole messages outside the relay (client and server logins, resets, checks), with
//! every announced length checked before the bytes are waited for.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::error::ProtocolError;
use crate::protocol::framing::peek_header;

/// Longest message accepted outside the relay: auth requests, ParameterStatus, errors,
/// CommandComplete. DataRows of a check query are bigger only if the query is odd.
pub(crate) const MAX_CONTROL_MESSAGE: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("peer closed the connection unexpectedly")]
    Eof,
    /// Bytes that break the framing or a message's layout.
    #[error("invalid message: {0}")]
    Protocol(#[from] ProtocolError),
    /// A message `postgres-protocol`'s parser rejected.
    #[error("invalid message: {0}")]
    Decode(#[source] std::io::Error),
    /// A message parsed whole that says it is longer than it is.
    #[error("invalid message: truncated message")]
    Truncated,
    /// A well-formed message that may not come at this point of the exchange.
    #[error("invalid message: unexpected {0}")]
    Unexpected(&'static str),
}

/// Reads one whole server message (tag, length and body) out of `rbuf`, filling it from `stream`.
pub(crate) async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
) -> Result<BytesMut, WireError> {
    read_message_limited(stream, rbuf, MAX_CONTROL_MESSAGE).await
}

/// Reads one whole message of at most `max_len` bytes.
pub(crate) async fn read_message_limited<S: AsyncRead + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    max_len: usize,
) -> Result<BytesMut, WireError> {
    loop {
        match peek_header(rbuf, max_len) {
            Ok(Some(h)) if rbuf.len() >= h.len => return Ok(rbuf.split_to(h.len)),
            Ok(Some(h)) => rbuf.reserve(h.len - rbuf.len()),
            Ok(None) => rbuf.reserve(1024),
            Err(e) => return Err(WireError::Protocol(e)),
        }
        if stream.read_buf(rbuf).await? == 0 {
            return Err(WireError::Eof);
        }
    }
}

/// Writes and flushes a complete buffer.
pub(crate) async fn write_flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &[u8],
) -> std::io::Result<()> {
    stream.write_all(buf).await?;
    stream.flush().await
}
