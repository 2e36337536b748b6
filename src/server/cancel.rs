//! Sending a CancelRequest to a server: a new connection carrying the server's own
//! BackendKeyData, as PostgreSQL expects.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::protocol::frontend;
use crate::server::address::RawSocket;
use crate::server::conn::CancelTarget;

/// Sends the cancel and closes; errors are logged, never returned (nothing to retry).
pub(crate) async fn send_cancel(target: &CancelTarget, timeout: Duration) {
    let mut pkt = BytesMut::with_capacity(16);
    frontend::cancel_request(&mut pkt, target.pid, &target.key);
    // The cancel has only landed once the server closes the connection: PostgreSQL signals the
    // backend and then closes. Until then the backend may not have seen it, and releasing the
    // server to another client earlier would let the cancel hit that client's query.
    let send = async {
        match target.address.connect(timeout).await? {
            RawSocket::Tcp(mut s) => {
                s.write_all(&pkt).await?;
                wait_closed(&mut s).await
            }
            RawSocket::Unix(mut s) => {
                s.write_all(&pkt).await?;
                wait_closed(&mut s).await
            }
        }
    };
    match tokio::time::timeout(timeout, send).await {
        Ok(Ok(())) => tracing::info!(server_pid = target.pid, "cancel request sent"),
        Ok(Err(e)) => tracing::warn!(server_pid = target.pid, error = %e, "cancel request failed"),
        Err(_) => tracing::warn!(server_pid = target.pid, "cancel request timed out"),
    }
}

/// Reads until the server closes (it sends nothing on a cancel connection).
async fn wait_closed<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<()> {
    let mut buf = [0u8; 64];
    while s.read(&mut buf).await? > 0 {}
    Ok(())
}
