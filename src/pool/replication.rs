//! Servers for replication (walsender) clients, as PgBouncer 1.23+ gives them: each client
//! gets a server of its own, logged in with `replication=...` and the client's startup
//! parameters, never reused and closed when the client leaves. It takes one of the pool's
//! `pool_size` slots while it lives; when the pool is full of idle servers, one is evicted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::pool::Pool;
use crate::pool::checkout::{CheckoutError, ServerGuard, Upstream};
use crate::protocol::pooler_errors::REPLICATION_LOGIN_FAILED;
use crate::server::connect::ConnectError;
use crate::server::login::LoginError;

impl Pool {
    /// Waits for a usage slot (FIFO, `query_wait_timeout`), makes room by closing idle
    /// servers if the pool is full, then logs in a dedicated server with `startup` as its
    /// extra StartupMessage parameters.
    pub async fn checkout_replication(
        self: &Arc<Self>,
        up: &Upstream<'_>,
        startup: &[(String, String)],
    ) -> Result<ServerGuard, CheckoutError> {
        self.wait_resumed().await;
        let slot = self.acquire_slot(&self.def()).await?;
        // Every active server holds a slot and so does this client, so a full pool has idle
        // servers to give up.
        while self.def().pool_size > 0
            && self.server_count.load(Ordering::Relaxed) >= self.def().pool_size
            && self.close_one_idle_logged("evicted")
        {}
        loop {
            match Box::pin(self.open_server(up, Instant::now(), true, Some(startup))).await? {
                Some(conn) => {
                    self.stats.record_assignment();
                    return Ok(ServerGuard::new(self.clone(), conn, slot));
                }
                // a server of this pool came back idle while waiting at a db/user limit: it
                // cannot serve a walsender, so make room with it and try again
                None => {
                    self.close_one_idle_logged("evicted");
                }
            }
        }
    }

    /// Closes the least recently used idle server with PgBouncer's log line.
    fn close_one_idle_logged(&self, reason: &str) -> bool {
        let closed = self.take_oldest_idle();
        match closed {
            Some(conn) => {
                tracing::info!(
                    db = %self.db_name, user = %self.login_user, server = conn.id,
                    "closing because: {reason} (age={}s)", conn.created.elapsed().as_secs()
                );
                true
            }
            None => false,
        }
    }
}

/// A walsender's failed login: logged with the server's own words, and only its client is
/// told ("login failed"); other clients of the pool are not failed with it, since a missing
/// REPLICATION role or pg_hba.conf line does not stop ordinary logins.
pub(super) fn login_failed(e: &ConnectError, started: Instant) -> CheckoutError {
    match e {
        ConnectError::Login(LoginError::Server(fields)) => {
            tracing::error!("S: login failed: {}: {}", fields.severity, fields.message);
        }
        other => tracing::error!(error = %other, "S: login failed"),
    }
    tracing::info!(
        "closing because: login failed (age={}s)",
        started.elapsed().as_secs()
    );
    CheckoutError::Login(REPLICATION_LOGIN_FAILED)
}
