//! Errors that end or refuse a client, and how each reaches the client: PgBouncer's message
//! text and SQLSTATE, FATAL when the connection closes.

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::protocol::backend;

/// A client-facing failure: the text the client sees and the SQLSTATE it carries.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub sqlstate: &'static str,
    pub message: String,
    /// Whether the connection is closed after the error (FATAL) or not (ERROR).
    pub fatal: bool,
}

impl ClientError {
    pub fn fatal(sqlstate: &'static str, message: impl Into<String>) -> ClientError {
        ClientError { sqlstate, message: message.into(), fatal: true }
    }

    /// A protocol violation (08P01), PgBouncer's default for pooler errors.
    pub fn protocol(message: impl Into<String>) -> ClientError {
        ClientError::fatal("08P01", message)
    }

    /// Sends the error; failures to send are ignored, the connection is closing anyway.
    pub async fn send<S: AsyncWrite + Unpin>(&self, stream: &mut S) {
        let mut buf = BytesMut::with_capacity(64 + self.message.len());
        let severity = if self.fatal { "FATAL" } else { "ERROR" };
        backend::error_response(&mut buf, severity, self.sqlstate, &self.message);
        let _ = stream.write_all(&buf).await;
        let _ = stream.flush().await;
    }
}
