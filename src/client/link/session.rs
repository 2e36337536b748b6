//! A logged-in client's life in every pool mode: wait for a request, link a server (parameters
//! brought in line first), relay, and give the server back. Session pooling keeps the link
//! until the client leaves; transaction and statement pooling release it at each idle
//! ReadyForQuery with nothing owed, and link again at the next request. The timeouts of a
//! linked client (`query_timeout`, `idle_transaction_timeout`, `transaction_timeout`) and of
//! an idle one (`client_idle_timeout`) are enforced here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::client::error::{ClientError, protocol, send_error};
use crate::client::link::local::{LocalContext, answer_unlinked};
use crate::client::link::prepared::ClientStatements;
use crate::client::link::wait_notify::{notify_delay, notify_if_queued};
use crate::client::link::watch::{LinkWatcher, PreparedLink, Timing};
use crate::config::{Config, PoolMode};
use crate::net::relay::{Dir, Pump, RelayEnd, relay};
use crate::net::stream::ClientStream;
use crate::pool::cancel::{CancelShow, CancelSlot};
use crate::pool::{CheckoutError, DefSnapshot, Pool, ServerGuard};
use crate::protocol::pooler_errors::{
    CLIENT_IDLE_TIMEOUT, CLIENT_UNEXPECTED_EOF, DATABASE_CONFIG_CHANGED, IDLE_TRANSACTION_TIMEOUT,
    INVALID_SERVER_PARAMETER, PoolerError, QUERY_TIMEOUT, QUERY_WAIT_TIMEOUT, SERVER_CONN_CRASHED,
    SERVER_SHUTTING_DOWN, TRANSACTION_TIMEOUT, server_login_retry,
};
use crate::server::params::{ParamSet, sync_query};
use crate::server::query::run_simple;
use crate::shared::Shared;
use crate::shutdown::ShutdownMode;

/// How often a linked client's timeouts are re-evaluated when one is configured: a state
/// change (a query starting, a transaction going idle) is noticed at most this late.
/// PgBouncer's reason for a client that left by itself.
const CLIENT_CLOSE: &str = "client close request";

const TIMEOUT_RECHECK: Duration = Duration::from_millis(250);

/// Per-client limits, resolved at login (`[users]` overrides the global settings).
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub query_timeout: Duration,
    pub idle_transaction_timeout: Duration,
    pub transaction_timeout: Duration,
    pub client_idle_timeout: Duration,
    pub cancel_wait_timeout: Duration,
    pub max_packet_size: usize,
    /// `max_prepared_statements`; 0 disables prepared-statement support.
    pub max_prepared_statements: usize,
    /// `server_fast_close`: session-mode servers marked close_needed close when idle.
    pub server_fast_close: bool,
}

impl SessionLimits {
    pub fn resolve(config: &Config, user: &str) -> SessionLimits {
        let s = &config.settings;
        SessionLimits {
            query_timeout: config.query_timeout_for(user),
            idle_transaction_timeout: config.idle_transaction_timeout_for(user),
            transaction_timeout: config.transaction_timeout_for(user),
            client_idle_timeout: config.client_idle_timeout_for(user),
            cancel_wait_timeout: s.cancel_wait_timeout,
            max_packet_size: s.max_packet_size as usize,
            max_prepared_statements: s.max_prepared_statements.max(0) as usize,
            server_fast_close: s.server_fast_close,
        }
    }

    fn linked_timeouts_enabled(&self) -> bool {
        !(self.query_timeout.is_zero()
            && self.idle_transaction_timeout.is_zero()
            && self.transaction_timeout.is_zero())
    }

    /// The timeout a linked client has run into, if any.
    fn expired(&self, t: &Timing, now: Instant) -> Option<ClientError> {
        let over = |start: Option<Instant>, limit: Duration| {
            !limit.is_zero() && start.is_some_and(|s| now.duration_since(s) >= limit)
        };
        if over(t.query_start, self.query_timeout) {
            Some(QUERY_TIMEOUT)
        } else if over(t.idle_in_xact_since, self.idle_transaction_timeout) {
            Some(IDLE_TRANSACTION_TIMEOUT)
        } else if over(t.xact_start, self.transaction_timeout) {
            Some(TRANSACTION_TIMEOUT)
        } else {
            None
        }
    }

    /// When to look at the timeouts next.
    fn next_check(&self, t: &Timing, now: Instant) -> Instant {
        let mut next = now + TIMEOUT_RECHECK;
        for (start, limit) in [
            (t.query_start, self.query_timeout),
            (t.idle_in_xact_since, self.idle_transaction_timeout),
            (t.xact_start, self.transaction_timeout),
        ] {
            if let (Some(s), false) = (start, limit.is_zero()) {
                next = next.min(s + limit);
            }
        }
        next.max(now)
    }
}

/// A logged-in client, ready to forward.
pub struct Session<'a> {
    pub app: &'a Arc<Shared>,
    pub pool: Arc<Pool>,
    /// `pool`'s settings, refreshed (one atomic load) when a request arrives and handed to
    /// the checkout, so a transaction takes no lock for them.
    pub def: DefSnapshot,
    pub stream: &'a mut ClientStream,
    /// Client bytes already read (after the startup packet and login) and not yet relayed.
    pub rbuf: BytesMut,
    pub params: ParamSet,
    /// The tracked parameter names, shared by every client of one configuration.
    pub tracked: Arc<[String]>,
    pub cancel: Arc<CancelSlot>,
    pub limits: SessionLimits,
    /// Named prepared statements (transaction / statement pooling).
    pub statements: ClientStatements,
    /// This client's SHOW CLIENTS entry (state, link, kill switch).
    pub entry: Arc<crate::pool::clients::ClientEntry>,
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

/// How one link ended.
enum LinkEnd {
    /// Transaction / statement pooling: the server is idle and goes back to the pool.
    Released,
    /// The client left (Terminate, EOF or a socket error); `clean` says the server is idle.
    ClientLeft { clean: bool },
    /// The client is disconnected with this error; `clean` as above.
    Failed { error: ClientError, clean: bool },
    /// The server connection broke.
    ServerGone,
}

/// What the client did while unlinked.
enum Idle {
    Request,
    Gone,
    TimedOut,
}

impl Session<'_> {
    fn mode(&self) -> PoolMode {
        self.def.pool_mode
    }

    /// Serves the client until it leaves; returns why it ended (for "closing because: ...").
    /// `linked` is a server already checked out at login.
    pub async fn run(mut self, mut linked: Option<ServerGuard>) -> String {
        if self.mode() != PoolMode::Session {
            // the server that logged in for the welcome is not this client's until it asks
            if let Some(g) = linked.take() {
                g.release(true).await;
                // SHOW CLIENTS: a client without a server is `idle`, not `active`
                self.entry.unlinked();
            }
        }
        loop {
            let mut guard = match linked.take() {
                Some(g) => g,
                None => {
                    loop {
                        match self.wait_for_request().await {
                            Idle::Request => {
                                self.pool.refresh_def(&mut self.def);
                                self.follow_runtime_settings();
                            }
                            Idle::Gone => return CLIENT_CLOSE.to_string(),
                            Idle::TimedOut => return self.fail(&CLIENT_IDLE_TIMEOUT).await,
                        }
                        match self.answer_locally().await {
                            Ok(true) => continue,
                            Ok(false) => break,
                            Err(e) => return self.fail(&e).await,
                        }
                    }
                    self.follow_reload();
                    self.entry.start_waiting();
                    // SHUTDOWN WAIT_FOR_SERVERS: a client needing a new server (a new
                    // transaction, or one already queued) is closed, as PgBouncer does.
                    let stopping = self.app.shutdown.reached(ShutdownMode::WaitForServers);
                    let upstream = self.app.upstream();
                    let notify = notify_delay(self.app.config().settings.query_wait_notify);
                    let wait = notify_if_queued(
                        self.pool.checkout_with(&upstream, self.def.clone()),
                        notify,
                        self.stream,
                    );
                    let checkout = tokio::select! {
                        biased;
                        () = stopping => Err(CheckoutError::Closed),
                        r = wait => r,
                    };
                    match checkout {
                        Ok(g) => {
                            g.link_client(self.entry.id);
                            self.entry.linked(g.server_id());
                            g
                        }
                        Err(e) => return self.fail(&checkout_error(e)).await,
                    }
                }
            };
            if let Err(e) = self.sync_params(&mut guard).await {
                return self.fail(&e).await;
            }
            let show = CancelShow {
                pool: self.pool.clone(),
                server: guard.server_entry(),
            };
            self.cancel.link(guard.conn().cancel.clone(), Some(show));
            let end = self.forward(&mut guard).await;
            // A cancel already on its way must land before the server can serve anyone else.
            self.cancel.unlink(self.limits.cancel_wait_timeout).await;
            self.entry.unlinked();
            match end {
                LinkEnd::Released => guard.release(true).await,
                LinkEnd::ClientLeft { clean } => {
                    if !clean {
                        tracing::info!(
                            server = guard.conn().id,
                            "client left the server busy, closing it"
                        );
                    }
                    guard.release(clean).await;
                    return CLIENT_CLOSE.to_string();
                }
                LinkEnd::Failed { error, clean } => {
                    guard.release(clean).await;
                    return self.fail(&error).await;
                }
                LinkEnd::ServerGone => {
                    guard.release(false).await;
                    return self.fail(&SERVER_CONN_CRASHED).await;
                }
            }
        }
    }

    /// A reload replaced this client's pool (its definition changed): use the new one from
    /// now on, as PgBouncer applies a changed database to its clients' next server. A removed
    /// database keeps its old pool for the clients still connected.
    fn follow_reload(&mut self) {
        if !self.pool.is_retired() {
            return;
        }
        let config = self.app.config();
        let Some(db) = config.database_for(&self.pool.db_name) else {
            return;
        };
        let pool = self.app.pools.get_or_create(&config, &db, &self.entry.user);
        if Arc::ptr_eq(&pool, &self.pool) {
            return;
        }
        tracing::info!(db = %pool.db_name, "client moves to the reloaded pool");
        self.entry.move_to(pool.clone());
        self.def = pool.def_snapshot();
        self.pool = pool;
        self.limits = SessionLimits::resolve(&config, &self.entry.user);
    }

    /// Settings an admin `SET` changes for clients already logged in, as in PgBouncer (which
    /// reads its globals at each use): `max_prepared_statements` (the server caches evict
    /// down to a smaller size at their next insert).
    fn follow_runtime_settings(&mut self) {
        let max = self.app.config().settings.max_prepared_statements.max(0) as usize;
        self.limits.max_prepared_statements = max;
    }

    /// Answers what needs no server (see `client::local`); true if nothing is left to send
    /// to one.
    async fn answer_locally(&mut self) -> Result<bool, ClientError> {
        if self.mode() == PoolMode::Session || self.limits.max_prepared_statements == 0 {
            return Ok(false);
        }
        let mut out = BytesMut::new();
        let mut cx = LocalContext {
            registry: &self.app.statements,
            statements: &mut self.statements,
            stats: &self.pool.stats,
            max_packet_size: self.limits.max_packet_size,
            accept_unchecked: self.pool.would_wait(),
        };
        let result = answer_unlinked(&mut self.rbuf, &mut cx, &mut out);
        if !out.is_empty() {
            self.stream
                .write_all(&out)
                .await
                .map_err(|_| CLIENT_UNEXPECTED_EOF)?;
        }
        result?;
        Ok(self.rbuf.is_empty())
    }

    /// Sends the client its error; the text is also the reason the connection closes.
    async fn fail(&mut self, e: &ClientError) -> String {
        send_error(self.stream, e).await;
        e.message.to_string()
    }

    /// Waits for the client's next bytes (`client_idle_timeout` applies to unlinked clients).
    async fn wait_for_request(&mut self) -> Idle {
        let limit = self.limits.client_idle_timeout;
        while self.rbuf.is_empty() {
            // no read buffer while idle: one is lent once the request is there
            let read = self.stream.read_when_ready(&mut self.rbuf);
            let n = if limit.is_zero() {
                read.await
            } else {
                match tokio::time::timeout(limit, read).await {
                    Ok(r) => r,
                    Err(_) => return Idle::TimedOut,
                }
            };
            match n {
                Ok(0) | Err(_) => return Idle::Gone,
                Ok(_) => {}
            }
        }
        if self.rbuf.first() == Some(&b'X') {
            Idle::Gone
        } else {
            Idle::Request
        }
    }

    /// Brings the server's tracked parameters in line with the client's, invisibly; the
    /// client then holds the server's spelling of each value.
    async fn sync_params(&mut self, guard: &mut ServerGuard) -> Result<(), ClientError> {
        let timeout = guard.def().server_connect_timeout;
        let conn = guard.conn();
        if let Some(sql) = sync_query(&self.params, &conn.params) {
            // boxed: rare, and kept out of the size of every client's task
            if let Err(e) = Box::pin(run_simple(conn, &sql, timeout)).await {
                tracing::warn!(error = %e, "parameter sync failed");
                return Err(INVALID_SERVER_PARAMETER);
            }
            let names: Vec<String> = self.params.iter().map(|(k, _)| k.to_string()).collect();
            for name in names {
                if let Some(v) = conn.params.get(&name) {
                    let v = v.to_string();
                    self.params.set(&name, &v);
                }
            }
        }
        Ok(())
    }

    /// Relays one link until it is released, either side leaves, or a timeout fires.
    async fn forward(&mut self, guard: &mut ServerGuard) -> LinkEnd {
        let mode = guard.def().pool_mode;
        let limits = self.limits;
        let stats = &self.pool.stats;
        let server_entry = guard.server_entry();
        let conn = guard.conn();
        let [to_server, to_client] = std::mem::take(&mut conn.relay_queues);
        let mut c2s = Pump::new(Dir::ToServer, limits.max_packet_size)
            .with_pending(std::mem::take(&mut self.rbuf))
            .with_out_queue(to_server);
        let mut s2c = Pump::new(Dir::ToClient, limits.max_packet_size)
            .with_pending(std::mem::take(&mut conn.rbuf))
            .with_out_queue(to_client);
        let prepared =
            (mode != PoolMode::Session && limits.max_prepared_statements > 0).then(|| {
                PreparedLink {
                    registry: &self.app.statements,
                    client: &mut self.statements,
                    server: &mut conn.prepared,
                    capacity: limits.max_prepared_statements,
                }
            });
        let mut w = LinkWatcher::new(
            mode,
            &mut conn.requests,
            &mut conn.params,
            &mut self.params,
            &self.tracked,
            prepared,
            stats,
        );
        // PgBouncer's janitor closes idle close_needed session servers (server_fast_close)
        let fast_close = limits.server_fast_close && mode == PoolMode::Session;
        let timers = limits.linked_timeouts_enabled() || fast_close;
        let outcome = if !timers {
            // the usual case: no timer to arm or clock to read at every wake-up
            Ok(relay(
                &mut *self.stream,
                &mut conn.stream,
                &mut c2s,
                &mut s2c,
                &mut w,
            )
            .await)
        } else {
            loop {
                let check = limits.next_check(&w.timing, Instant::now());
                tokio::select! {
                    end = relay(&mut *self.stream, &mut conn.stream, &mut c2s, &mut s2c, &mut w) => {
                        break Ok(end);
                    }
                    // Dropping the relay future loses nothing: its state lives in the pumps and
                    // the watcher, and the next call picks up where it stopped.
                    _ = tokio::time::sleep_until(check.into()), if timers => {
                        if let Some(e) = limits.expired(&w.timing, Instant::now()) {
                            break Err(e);
                        }
                        let close_needed = server_entry.as_ref().is_some_and(|e| e.close_needed());
                        if fast_close
                            && close_needed
                            && w.is_idle()
                            && c2s.is_idle()
                            && s2c.is_idle()
                        {
                            break Err(DATABASE_CONFIG_CHANGED);
                        }
                    }
                }
            }
        };
        stats.record_bytes(c2s.forwarded_bytes, s2c.forwarded_bytes);
        let clean = w.is_idle() && c2s.is_idle() && s2c.is_idle();
        let failure = w.failure.take();
        let release_ready = w.release_ready;
        drop(w);
        let releasable = release_ready && !c2s.has_output();
        let end = link_end(outcome, failure, releasable, clean, conn.id);
        if matches!(end, LinkEnd::Released) {
            // what the client already sent of its next request waits for the next link
            self.rbuf = c2s.take_unread();
            conn.rbuf = s2c.take_unread();
            conn.relay_queues = [c2s.take_out_queue(), s2c.take_out_queue()];
        }
        end
    }
}

/// What a finished relay means for the link: `failure` is the watcher's own verdict (a
/// protocol rule broken inside a message), `releasable` whether the server stopped at a
/// release point with nothing of the client's still queued for it.
fn link_end(
    outcome: Result<RelayEnd, PoolerError>,
    failure: Option<PoolerError>,
    releasable: bool,
    clean: bool,
    server: u64,
) -> LinkEnd {
    if let (Some(error), Ok(_)) = (failure, &outcome) {
        return LinkEnd::Failed {
            error,
            clean: false,
        };
    }
    match outcome {
        Err(error) => {
            tracing::info!(server, reason = %error.message, "closing server");
            LinkEnd::Failed {
                error,
                clean: false,
            }
        }
        Ok(RelayEnd::ServerStop) if releasable => LinkEnd::Released,
        Ok(RelayEnd::ServerStop) => LinkEnd::ClientLeft { clean: false },
        Ok(RelayEnd::ClientStop | RelayEnd::ClientEof) => LinkEnd::ClientLeft { clean },
        Ok(RelayEnd::ClientError(e)) => {
            tracing::debug!(error = %e, "client connection error");
            LinkEnd::ClientLeft { clean }
        }
        Ok(RelayEnd::ClientProtocol(e)) => LinkEnd::Failed {
            error: protocol(e.to_string()),
            clean: false,
        },
        Ok(
            end @ (RelayEnd::ServerEof | RelayEnd::ServerError(_) | RelayEnd::ServerProtocol(_)),
        ) => {
            tracing::info!(server, reason = ?end, "server connection ended");
            LinkEnd::ServerGone
        }
    }
}
