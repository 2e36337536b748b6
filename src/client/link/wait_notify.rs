//! `query_wait_notify`: a client queued for a server longer than that gets one NOTICE per
//! wait, as PgBouncer's janitor sends it (only after the welcome, never during login).

use std::future::Future;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::protocol::backend::{Severity, notice_response};

/// PgBouncer's text (janitor.c), SQLSTATE 00000.
pub const QUEUED_NOTICE: &str =
    "No server connection available in postgres backend, client being queued";

/// The notice delay from the setting: `None` when 0 (off) or negative.
pub fn notify_delay(seconds: i32) -> Option<Duration> {
    u64::try_from(seconds)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// Awaits `wait`; if it takes longer than `after`, sends the client the queued NOTICE once
/// (whole: a notice cut by the wait ending would break the stream) and keeps waiting.
pub async fn notify_if_queued<F, S>(wait: F, after: Option<Duration>, stream: &mut S) -> F::Output
where
    F: Future,
    S: AsyncWrite + Unpin,
{
    let Some(after) = after else {
        return wait.await;
    };
    tokio::pin!(wait);
    tokio::select! {
        biased;
        r = &mut wait => return r,
        () = tokio::time::sleep(after) => {}
    }
    let mut buf = BytesMut::with_capacity(128);
    notice_response(
        &mut buf,
        Severity::Notice,
        "00000",
        QUEUED_NOTICE,
        None,
        None,
    );
    let sent = async {
        stream.write_all(&buf).await?;
        stream.flush().await
    };
    if sent.await.is_err() {
        tracing::warn!("Sending queue warning failed");
    }
    wait.await
}
