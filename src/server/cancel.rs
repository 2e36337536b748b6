//! Sending a CancelRequest to a server: a new connection carrying the server's own
//! BackendKeyData, as PostgreSQL expects.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::protocol::frontend;
use crate::server::address::RawSocket;
use crate::server::conn::CancelTarget;

/// Sends the cancel and closes; errors are logged, never returned (nothing to retry).
pub(crate) async fn send_cancel(target: &CancelTarget, timeout: Duration) {
    let mut pkt = BytesMut::with_capacity(16);
    frontend::cancel_request(&mut pkt, target.pid, &target.key);
    let send = async {
        match target.address.connect(timeout).await? {
            RawSocket::Tcp(mut s) => s.write_all(&pkt).await,
            RawSocket::Unix(mut s) => s.write_all(&pkt).await,
        }
    };
    match tokio::time::timeout(timeout, send).await {
        Ok(Ok(())) => tracing::info!(server_pid = target.pid, "cancel request sent"),
        Ok(Err(e)) => tracing::warn!(server_pid = target.pid, error = %e, "cancel request failed"),
        Err(_) => tracing::warn!(server_pid = target.pid, "cancel request timed out"),
    }
}
