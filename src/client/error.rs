//! Errors that end or refuse a client: PgBouncer's catalogue (`protocol::pooler_errors`), sent
//! as FATAL ErrorResponse before the connection closes.

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};

pub use crate::protocol::pooler_errors::PoolerError as ClientError;

/// Sends the error; failures to send are ignored, the connection is closing anyway.
pub(crate) async fn send_error<S: AsyncWrite + Unpin>(stream: &mut S, error: &ClientError) {
    let mut buf = BytesMut::with_capacity(64 + error.message.len());
    error.write(&mut buf);
    let _ = stream.write_all(&buf).await;
    let _ = stream.flush().await;
}

/// A FATAL error with its own SQLSTATE.
pub fn fatal_with(sqlstate: &'static str, message: impl Into<String>) -> ClientError {
    ClientError {
        sqlstate: sqlstate.into(),
        fatal: true,
        message: message.into().into(),
        kind: crate::protocol::pooler_errors::ErrorKind::Protocol,
    }
}

/// A FATAL 08P01 error with a formatted text.
pub(crate) fn protocol(message: impl Into<String>) -> ClientError {
    ClientError::fatal_text(message.into())
}
