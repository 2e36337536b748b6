//! Session pooling: a server is linked to the client at its first request and stays until
//! the client leaves; then it is reset and returned, or closed if the client left it busy.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use crate::app::App;
use crate::client::cancel::CancelSlot;
use crate::client::error::{ClientError, protocol, send_error};
use crate::client::watch::{ClientWatcher, Outstanding, ServerWatcher};
use crate::net::relay::{Pump, RelayEnd, relay};
use crate::net::stream::ClientStream;
use crate::pool::{CheckoutError, Pool, ServerGuard};
use crate::protocol::pooler_errors::{
    INVALID_SERVER_PARAMETER, QUERY_WAIT_TIMEOUT, SERVER_CONN_CRASHED, SERVER_SHUTTING_DOWN,
    server_login_retry,
};
use crate::server::params::{ParamSet, sync_query};
use crate::server::query::run_simple;

/// A logged-in client, ready to forward.
pub struct Session<'a> {
    pub app: &'a Arc<App>,
    pub pool: Arc<Pool>,
    pub stream: &'a mut ClientStream,
    /// Client bytes already read (after the startup packet and login).
    pub rbuf: BytesMut,
    pub params: ParamSet,
    pub tracked: Vec<String>,
    pub cancel: Arc<CancelSlot>,
    /// This client's SHOW CLIENTS entry (state, link, kill switch).
    pub entry: Arc<crate::client::registry::ClientEntry>,
}

/// Maps a checkout failure to what the client sees.
pub fn checkout_error(e: CheckoutError) -> ClientError {
    match e {
        CheckoutError::WaitTimeout => QUERY_WAIT_TIMEOUT,
        CheckoutError::Closed => SERVER_SHUTTING_DOWN,
        CheckoutError::LoginRetry(cached) => server_login_retry(&cached),
        CheckoutError::Login(failure) => failure,
    }
}

impl Session<'_> {
    /// Forwards until the client or the server goes away.
    pub async fn run(mut self, mut linked: Option<ServerGuard>) {
        if linked.is_none() {
            // session mode links at the first request, so idle clients hold no server
            if !self.wait_for_first_request().await {
                return;
            }
            self.entry.start_waiting();
            match self.pool.checkout(&self.app.upstream()).await {
                Ok(g) => {
                    g.link_client(self.entry.id);
                    self.entry.linked(g.server_id());
                    linked = Some(g)
                }
                Err(e) => return send_error(self.stream, &checkout_error(e)).await,
            }
        }
        let Some(mut guard) = linked else { return };
        if let Err(e) = self.sync_params(&mut guard).await {
            return send_error(self.stream, &e).await;
        }
        self.cancel.link(guard.conn().cancel.clone());
        let (end, clean) = self.forward(&mut guard).await;
        self.cancel.unlink();
        match &end {
            RelayEnd::ClientStop | RelayEnd::ClientEof => {}
            RelayEnd::ClientError(e) => tracing::debug!(error = %e, "client connection error"),
            RelayEnd::ClientProtocol(e) => {
                send_error(self.stream, &protocol(e.clone())).await;
            }
            RelayEnd::ServerStop
            | RelayEnd::ServerEof
            | RelayEnd::ServerError(_)
            | RelayEnd::ServerProtocol(_) => {
                tracing::info!(server = guard.conn().id, reason = ?end, "server connection ended");
                send_error(self.stream, &SERVER_CONN_CRASHED).await;
            }
        }
        let server_fine = matches!(
            end,
            RelayEnd::ClientStop | RelayEnd::ClientEof | RelayEnd::ClientError(_)
        );
        if !(clean && server_fine) {
            tracing::info!(
                server = guard.conn().id,
                "client left the server busy, closing it"
            );
        }
        self.entry.unlinked();
        guard.release(clean && server_fine).await;
    }

    /// Waits for the client's first bytes; false if it left (or said Terminate) first.
    async fn wait_for_first_request(&mut self) -> bool {
        while self.rbuf.is_empty() {
            self.rbuf.reserve(4096);
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
        self.rbuf.first() != Some(&b'X')
    }

    /// Brings the server's tracked parameters in line with the client's, invisibly.
    async fn sync_params(&mut self, guard: &mut ServerGuard) -> Result<(), ClientError> {
        let timeout = self.pool.def.server_connect_timeout;
        let conn = guard.conn();
        if let Some(sql) = sync_query(&self.params, &conn.params) {
            if let Err(e) = run_simple(conn, &sql, timeout).await {
                tracing::warn!(error = %e, "parameter sync failed");
                return Err(INVALID_SERVER_PARAMETER);
            }
        }
        Ok(())
    }

    /// The relay proper; returns how it ended and whether the server is reusable.
    async fn forward(&mut self, guard: &mut ServerGuard) -> (RelayEnd, bool) {
        let max_packet = self.app.config().settings.max_packet_size as usize;
        let conn = guard.conn();
        let outstanding = Outstanding::new();
        let mut c2s = Pump::new(max_packet).with_pending(std::mem::take(&mut self.rbuf));
        let mut s2c = Pump::new(max_packet).with_pending(std::mem::take(&mut conn.rbuf));
        let mut cw = ClientWatcher {
            outstanding: &outstanding,
        };
        let mut sw = ServerWatcher {
            outstanding: &outstanding,
            server_params: &mut conn.params,
            client_params: &mut self.params,
            tracked: &self.tracked,
        };
        let end = relay(
            &mut *self.stream,
            &mut conn.stream,
            &mut c2s,
            &mut s2c,
            &mut cw,
            &mut sw,
        )
        .await;
        // session mode: bytes are counted once per session (until the issue 4 loop counts them)
        self.pool
            .stats
            .record_bytes(c2s.forwarded_bytes, s2c.forwarded_bytes);
        let clean = outstanding.is_idle() && s2c.is_idle() && c2s.is_idle();
        (end, clean)
    }
}
