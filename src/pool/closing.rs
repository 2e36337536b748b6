//! PgBouncer's `S-<id>: db/user@host:port closing because: <reason> (age=<s>s)` line for a
//! pooled server the pooler closes, with the reasons PgBouncer gives for the cases it logs.

use crate::pool::Pool;
use crate::server::conn::ServerConn;

/// The janitor's reason for an idle server marked `close_needed` (RELOAD / SET of something
/// it connects with, RECONNECT).
pub const CONFIG_CHANGED: &str = "database configuration changed";
/// A `close_needed` server found idle by a checkout.
pub const OBSOLETE: &str = "obsolete connection";
/// A `close_needed` server given back by its client.
pub const CLOSE_NEEDED: &str = "close_needed";

impl Pool {
    /// Logs why `conn` is being closed (with `log_disconnections`), under its server span.
    pub(crate) fn log_server_close(&self, conn: &ServerConn, reason: &str) {
        if !self.def().log_disconnections {
            return;
        }
        self.server_span(conn.id, &conn.cancel.address)
            .in_scope(|| {
                tracing::info!(
                    "closing because: {reason} (age={}s)",
                    conn.created.elapsed().as_secs()
                )
            });
    }
}
