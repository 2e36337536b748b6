//! Taking a server out of a pool for a client (waiting first come, first served, with
//! `query_wait_timeout` and the reserve pool) and giving it back (reset, then idle).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::pool::slots::Slot;

use crate::auth::gss::GssRuntime;
use crate::config::{PoolMode, ServerCheck};
use crate::net::stream::IdleHealth;
use crate::pool::limit_wait::{LimitKind, LimitWait};
use crate::pool::{
    DefSnapshot, Pool, PoolDef, PoolRegistry, Pooled, ServerEntry, ServerSet, ServerState,
};
use crate::protocol::pooler_errors::{ErrorKind, PoolerError, SERVER_LOGIN_WRONG_PASSWORD_TYPE};
use crate::server::conn::ServerConn;
use crate::server::connect::{ConnectError, TlsConnectError, handshake_detail};
use crate::server::connect::{ConnectSpec, connect};
use crate::server::login::{AuthError, LoginError};
use crate::server::query::run_simple;

/// Process-wide things a pool needs to open server connections.
pub struct Upstream<'a> {
    pub gss: &'a GssRuntime,
    /// A clone of the current connector (cheap: an `Arc` inside), so a reload can swap it.
    pub tls: Option<tokio_rustls::TlsConnector>,
    pub registry: &'a PoolRegistry,
    /// TCP options of the current configuration for new server sockets.
    pub tcp: crate::net::sockopt::TcpOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// Waited `query_wait_timeout` for a server.
    #[error("query_wait_timeout")]
    WaitTimeout,
    /// A login failed within `server_login_retry`: fail fast with the cached error.
    #[error("server login has been failing, cached error: {0} (server_login_retry)")]
    LoginRetry(String),
    /// This attempt's login failed; what the client is told.
    #[error("{0}")]
    Login(PoolerError),
    #[error("pooler is shutting down")]
    Closed,
}

/// A server lent to one client. `release` returns it; dropping the guard closes the server.
pub struct ServerGuard {
    pool: Arc<Pool>,
    /// The pool's settings as of the checkout (refreshed at release): read once per link.
    def: DefSnapshot,
    conn: Option<Pooled>,
    _slot: Slot,
}

/// Counts a login in progress as `sv_login` until it ends.
struct LoginInFlight<'a>(&'a ServerSet);

impl<'a> LoginInFlight<'a> {
    fn start(set: &'a ServerSet) -> LoginInFlight<'a> {
        set.counts.enter(ServerState::Login as usize);
        LoginInFlight(set)
    }
}

impl Drop for LoginInFlight<'_> {
    fn drop(&mut self) {
        self.0.counts.leave(ServerState::Login as usize);
    }
}

impl ServerGuard {
    pub(super) fn new(pool: Arc<Pool>, conn: Pooled, slot: Slot) -> ServerGuard {
        ServerGuard {
            def: pool.def_snapshot(),
            pool,
            conn: Some(conn),
            _slot: slot,
        }
    }

    pub fn conn(&mut self) -> &mut ServerConn {
        // invariant: conn is Some from checkout until release/drop consumes the guard
        self.conn
            .as_mut()
            .expect("invariant: a ServerGuard holds its connection until released")
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The pool's settings this link works with (as of its checkout).
    pub fn def(&self) -> &DefSnapshot {
        &self.def
    }

    /// Records which client uses this server (SHOW SERVERS `link`, SHOW CLIENTS `link`).
    pub fn link_client(&self, client_id: u64) {
        if let Some(c) = &self.conn {
            c.entry().set_link(client_id);
        }
    }

    /// This server's SHOW SERVERS entry (its `close_needed` flag is read while linked).
    pub fn server_entry(&self) -> Option<Arc<ServerEntry>> {
        self.conn.as_ref().map(|c| c.entry().clone())
    }

    /// This server's id (SHOW SERVERS `id`), for a client entry's `link`.
    pub fn server_id(&self) -> u64 {
        self.conn.as_ref().map(|c| c.id).unwrap_or(0)
    }

    /// Gives the server back. `clean` says the client left it idle at a message boundary;
    /// otherwise it is closed. In session mode (or with `server_reset_query_always`) the reset
    /// query runs first; a failing reset or an exceeded `server_lifetime` closes it.
    pub async fn release(mut self, clean: bool) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        self.pool.refresh_def(&mut self.def);
        let def = &self.def;
        let entry = conn.entry().clone();
        entry.set_link(0);
        if !clean {
            // The client left a query running: stop it, or the backend keeps working (and
            // holding locks) for nobody until it next tries to write.
            let target = conn.cancel.clone();
            let timeout = def.server_connect_timeout;
            drop(conn);
            tokio::spawn(async move { crate::server::cancel::send_cancel(&target, timeout).await });
            return;
        }
        let mut now = Instant::now();
        if expired(&conn, def.server_lifetime, now) {
            return;
        }
        // RECONNECT / reload / PAUSE: servers close when released
        if entry.close_needed() {
            self.pool
                .log_server_close(&conn, super::closing::CLOSE_NEEDED);
            return;
        }
        if self.pool.is_paused() {
            return;
        }
        self.pool.servers.transition(&entry, ServerState::Tested);
        let reset = def.pool_mode == PoolMode::Session || def.server_reset_query_always;
        if reset && !def.server_reset_query.trim().is_empty() {
            let reset = Box::pin(run_simple(
                &mut conn,
                &def.server_reset_query,
                def.server_connect_timeout,
            ));
            if let Err(e) = reset.await {
                tracing::info!(server = conn.id, error = %e, "server reset failed, closing");
                return;
            }
            // DISCARD ALL (or whatever the reset does) may have dropped the statements the
            // pooler prepared; forgetting them only costs a re-Parse
            conn.prepared.clear();
            now = Instant::now();
        }
        conn.last_used = now;
        self.pool.servers.transition(&entry, ServerState::Idle);
        // push before the slot permit drops, so the next waiter finds it
        self.pool.push_idle(conn);
    }
}

/// `server_lifetime = 0` means "use once, then close", as in PgBouncer (not "forever").
fn expired(conn: &ServerConn, lifetime: Duration, now: Instant) -> bool {
    now.saturating_duration_since(conn.created) >= lifetime
}

impl Pool {
    /// Waits for a usage slot (FIFO), then hands out an idle server or logs in a new one.
    pub async fn checkout(
        self: &Arc<Self>,
        up: &Upstream<'_>,
    ) -> Result<ServerGuard, CheckoutError> {
        self.checkout_with(up, self.def_snapshot()).await
    }

    /// [`Pool::checkout`] with the caller's current view of the settings (a session keeps
    /// one between links: no lock per checkout).
    pub async fn checkout_with(
        self: &Arc<Self>,
        up: &Upstream<'_>,
        def: DefSnapshot,
    ) -> Result<ServerGuard, CheckoutError> {
        let started = Instant::now();
        let (guard, now) = self.checkout_inner(up, def, started).await?;
        self.stats.record_assignment();
        self.stats.record_wait(now.duration_since(started));
        Ok(guard)
    }

    /// The checkout proper; also returns when it ended (one clock read serves the idle
    /// server's age checks and the wait statistics).
    async fn checkout_inner(
        self: &Arc<Self>,
        up: &Upstream<'_>,
        mut def: DefSnapshot,
        mut started: Instant,
    ) -> Result<(ServerGuard, Instant), CheckoutError> {
        // PAUSE: new work waits (without query_wait_timeout) until RESUME
        if self.is_paused() {
            Box::pin(self.wait_resumed()).await;
            started = Instant::now();
            self.refresh_def(&mut def);
        }
        let slot = self.acquire_slot(&def).await?;
        loop {
            if let Some(mut conn) = self.pop_idle() {
                let server: &mut ServerConn = &mut conn;
                let health = server.stream.idle_health(&mut server.rbuf);
                if health != IdleHealth::Quiet {
                    tracing::info!(server = conn.id, ?health, "idle server went away, closing");
                    continue;
                }
                let entry = conn.entry().clone();
                let now = Instant::now();
                if expired(&conn, def.server_lifetime, now) {
                    continue;
                }
                if entry.close_needed() {
                    self.log_server_close(&conn, super::closing::OBSOLETE);
                    continue;
                }
                // `<empty>` (the default) is an empty Query message, not that text
                let check = ServerCheck::parse(&def.server_check_query).sql();
                if let (Some(sql), true) = (
                    check,
                    now.saturating_duration_since(conn.last_used) >= def.server_check_delay,
                ) {
                    self.servers.transition(&entry, ServerState::Tested);
                    // boxed, here and for the other rare paths below: the client task's future
                    // is as large as its largest state, and every connected client holds it
                    let checked = Box::pin(run_simple(&mut conn, sql, def.server_connect_timeout));
                    if let Err(e) = checked.await {
                        tracing::info!(server = conn.id, error = %e, "server check failed, closing");
                        continue;
                    }
                    conn.last_used = Instant::now();
                }
                self.servers.transition(&entry, ServerState::Active);
                let guard = ServerGuard {
                    pool: self.clone(),
                    def,
                    conn: Some(conn),
                    _slot: slot,
                };
                return Ok((guard, now));
            }
            let conn = match Box::pin(self.open_server(up, started, true, None)).await {
                Ok(Some(conn)) => conn,
                Ok(None) => continue,
                Err(e @ (CheckoutError::Login(_) | CheckoutError::LoginRetry(_)))
                    if self.is_server_away() =>
                {
                    // stay queued and try again, as PgBouncer does
                    if !Box::pin(self.wait_login_retry(started)).await {
                        return Err(e);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.refresh_def(&mut def);
            let guard = ServerGuard {
                pool: self.clone(),
                def,
                conn: Some(conn),
                _slot: slot,
            };
            return Ok((guard, Instant::now()));
        }
    }

    pub(super) async fn acquire_slot(&self, def: &PoolDef) -> Result<Slot, CheckoutError> {
        if let Ok(p) = self.slots.try_acquire() {
            return Ok(p);
        }
        let reserve_after = def.reserve_pool_timeout;
        let wait = async {
            tokio::select! {
                p = self.slots.acquire() => p,
                p = async {
                    // a reserve_pool_size set to 0 has no permits: this waits forever
                    tokio::time::sleep(reserve_after).await;
                    let p = self.reserve.acquire().await;
                    // once per reserve connection taken (PgBouncer's warning), not per waiter
                    tracing::warn!(db = %self.db_name, "taking connection from reserve_pool");
                    p
                } => p,
            }
        };
        bounded_wait(def.query_wait_timeout, wait).await
    }

    /// Opens and logs in a server, respecting `server_login_retry` and the db/user limits;
    /// None when, while waiting at a limit, a server of this pool came back idle.
    /// `for_client = false` (the `min_pool_size` fill) never waits at a limit nor closes
    /// another pool's server for its budget: the pool then stays below `min_pool_size`.
    /// `replication` is a walsender's whole set of extra startup parameters
    /// (`pool/replication.rs`): its login failure concerns only its own client.
    pub(super) async fn open_server(
        self: &Arc<Self>,
        up: &Upstream<'_>,
        waiting_since: Instant,
        for_client: bool,
        replication: Option<&[(String, String)]>,
    ) -> Result<Option<Pooled>, CheckoutError> {
        if let (Some((failed_at, error)), None) = (self.recent_login_failure(), replication) {
            // kill_pool_logins: clients already waiting when the login failed get the
            // server's own error; later ones the cached one (check_fast_fail)
            if failed_at >= waiting_since {
                return Err(CheckoutError::Login(error));
            }
            return Err(CheckoutError::LoginRetry(error.message.to_string()));
        }
        let def = self.def();
        let mut permits = Vec::new();
        for (limit, which) in [
            (&self.db_limit, LimitKind::Db),
            (&self.user_limit, LimitKind::User),
        ] {
            if let Some(sem) = limit {
                if !for_client {
                    match sem.clone().try_acquire_owned() {
                        Ok(p) => permits.push(p),
                        Err(_) => return Ok(None),
                    }
                    continue;
                }
                match self.wait_limit(sem, which, up.registry).await? {
                    LimitWait::Permit(p) => permits.push(p),
                    LimitWait::OwnIdle => return Ok(None),
                }
            }
        }
        let i = self.next_address_index();
        let address = &def.addresses[i % def.addresses.len()];
        let target = def.gss_targets.get(i).and_then(|t| t.as_ref());
        if let Some(t) = target {
            if def.gss_negotiate != crate::server::gss_login::GssNegotiate::Disable
                && !self.spn_logged.swap(true, Ordering::Relaxed)
            {
                tracing::info!(db = %self.db_name, spn = %t, "GSSAPI service principal for this pool");
            }
        }
        let scram_keys = self.scram_keys();
        let secret = self.login_secret();
        let spec = ConnectSpec {
            address,
            user: &self.login_user,
            database: &def.dbname,
            extra_params: replication.unwrap_or(&def.extra_params),
            secret: secret.as_ref(),
            scram_keys,
            gss_negotiate: def.gss_negotiate,
            gssencmode: def.gssencmode,
            gss_target: target,
            gss_runtime: up.gss,
            sslmode: def.sslmode,
            tls: up.tls.as_ref(),
            connect_timeout: def.server_connect_timeout,
            tcp: up.tcp,
        };
        let started = Instant::now();
        let in_flight = LoginInFlight::start(&self.servers);
        let result = connect(&spec).await;
        drop(in_flight);
        match result {
            Ok(connected) => {
                self.stats.record_server_login(started.elapsed());
                let entry = Arc::new(server_entry(&connected.conn));
                let mut conn = Pooled::new(
                    connected.conn,
                    entry.clone(),
                    self.server_count.clone(),
                    self.servers.clone(),
                    permits,
                );
                self.servers.transition(&entry, ServerState::Active);
                self.record_login_result(None);
                self.set_server_away(false);
                if replication.is_none() {
                    // a walsender reports its client's own settings
                    self.set_welcome_once(&conn.params);
                }
                // PgBouncer logs this only with log_connections; -v still shows it
                if def.log_connections {
                    // PgBouncer's line, under the server's own `S-<id>: db/user@host:port`
                    let local = entry.local_addr_text();
                    let ms = started.elapsed().as_millis() as u64;
                    self.server_span(conn.id, address).in_scope(|| match local {
                        Some(from) => tracing::info!(
                            transport = conn.stream.transport_name(),
                            gss = connected.gss_authenticated,
                            ms,
                            "new connection to server (from {from})"
                        ),
                        None => tracing::info!(
                            transport = conn.stream.transport_name(),
                            gss = connected.gss_authenticated,
                            ms,
                            "new connection to server"
                        ),
                    });
                } else {
                    tracing::debug!(server = conn.id, %address, "new server connection");
                }
                if let Some(q) = &def.connect_query {
                    if let Err(e) = run_simple(&mut conn, q, def.server_connect_timeout).await {
                        tracing::warn!(db = %self.db_name, error = %e, "connect_query failed");
                    }
                }
                Ok(Some(conn))
            }
            Err(e) if replication.is_some() => Err(super::replication::login_failed(&e, started)),
            Err(e) => {
                let for_client = client_facing(&e);
                let dns = matches!(&e, ConnectError::Socket { source, .. }
                    if crate::server::address::is_dns_failure(source));
                if dns {
                    tracing::warn!(
                        db = %self.db_name, user = %self.login_user, %address, error = %e,
                        "closing because: server DNS lookup failed"
                    );
                } else if matches!(e, ConnectError::Socket { .. }) {
                    // PgBouncer's wording for a server it cannot reach
                    tracing::warn!(
                        db = %self.db_name, user = %self.login_user, %address, error = %e,
                        "closing because: connect failed"
                    );
                } else if let ConnectError::Login(LoginError::Server(fields)) = &e {
                    // PgBouncer's kill_pool_logins_server_error wording, then the server's
                    // disconnect_server line
                    tracing::warn!(
                        db = %self.db_name, user = %self.login_user, %address,
                        "server login failed: {} {}", fields.severity, fields.message
                    );
                    if def.log_disconnections {
                        tracing::info!(
                            db = %self.db_name, user = %self.login_user, %address,
                            "closing because: {} (age=0s)", fields.message
                        );
                    }
                } else if let ConnectError::Tls(TlsConnectError::Handshake(io)) = &e {
                    // PgBouncer's two lines for a failed upstream handshake
                    tracing::warn!(
                        db = %self.db_name, user = %self.login_user, %address,
                        "TLS handshake error: handshake failed: {}", handshake_detail(io)
                    );
                    if def.log_disconnections {
                        tracing::info!(
                            db = %self.db_name, user = %self.login_user, %address,
                            "closing because: server conn crashed? (age=0s)"
                        );
                    }
                } else {
                    tracing::warn!(
                        db = %self.db_name, user = %self.login_user, %address,
                        spn = target.map(|t| t.to_string()).unwrap_or_default(),
                        "server login failed: {e}"
                    );
                }
                if matches!(e, ConnectError::Socket { .. } | ConnectError::Timeout) {
                    self.address_failed(i);
                }
                self.record_login_result(Some(for_client.clone()));
                self.set_server_away(super::login_retry::server_away(&e));
                Err(CheckoutError::Login(for_client))
            }
        }
    }

    /// The `server` span PgBouncer's `S-<id>: db/user@host:port` log prefix comes from.
    pub(crate) fn server_span(
        &self,
        id: u64,
        address: &crate::server::address::ServerAddress,
    ) -> tracing::Span {
        tracing::info_span!(
            "server",
            id,
            db = %self.db_name,
            user = %self.login_user,
            addr = %address
        )
    }

    /// Opens servers until `min_pool_size` exist (janitor), without blocking on slots.
    pub(crate) async fn fill_min(self: &Arc<Self>, up: &Upstream<'_>) {
        while self.server_count.load(Ordering::Relaxed) < self.def().min_pool_size {
            let Ok(slot) = self.slots.try_acquire() else {
                return;
            };
            match self.open_server(up, Instant::now(), false, None).await {
                Ok(Some(mut conn)) => {
                    conn.last_used = Instant::now();
                    self.servers.transition(conn.entry(), ServerState::Idle);
                    self.push_idle(conn);
                    drop(slot);
                }
                Ok(None) | Err(_) => return,
            }
        }
    }
}

/// The SHOW SERVERS entry for a freshly logged-in connection.
fn server_entry(conn: &ServerConn) -> ServerEntry {
    use crate::net::stream::ServerStream;
    let (peer, local) = match &conn.stream {
        ServerStream::Tcp(s) => (s.peer_addr().ok(), s.local_addr().ok()),
        ServerStream::Tls(s) => (
            s.get_ref().0.peer_addr().ok(),
            s.get_ref().0.local_addr().ok(),
        ),
        ServerStream::Gss(s) => (s.get_ref().peer_addr().ok(), s.get_ref().local_addr().ok()),
        ServerStream::Unix(_) => (None, None),
    };
    let (addr, port) = match peer {
        Some(p) => (p.ip().to_string(), p.port()),
        None => ("unix".to_string(), conn.cancel.address.port()),
    };
    let tls = match conn.stream.transport_name() {
        "tls" => "tls",
        "gssenc" => "gssenc",
        _ => "",
    };
    ServerEntry::new(conn.id, addr, port, local, conn.cancel.pid, tls)
}

/// What a client waiting on a failed server login is told. A server's own ErrorResponse
/// reaches the client with its text and SQLSTATE, as in PgBouncer; the pooler's own reasons
/// (connect, TLS, GSSAPI, auth method) read "server login failed: ...".
fn client_facing(e: &ConnectError) -> PoolerError {
    match e {
        ConnectError::Login(LoginError::Server(fields)) if fields.code != "57P03" => PoolerError {
            sqlstate: fields.code.clone().into(),
            fatal: true,
            message: fields.message.clone().into(),
            kind: ErrorKind::ServerLoginFailed,
        },
        // PgBouncer tells clients only the short reason; the log has the detail
        ConnectError::Login(LoginError::Auth(
            AuthError::WrongSecretType { .. } | AuthError::NoScramKeys,
        )) => PoolerError::fatal_text(SERVER_LOGIN_WRONG_PASSWORD_TYPE.to_string())
            .with_kind(ErrorKind::ServerLoginFailed),
        other => PoolerError::fatal_text(format!("server login failed: {other}"))
            .with_kind(ErrorKind::ServerLoginFailed),
    }
}

/// Waits for a permit for at most `query_wait_timeout` (0 = forever).
async fn bounded_wait(
    limit: Duration,
    wait: impl std::future::Future<Output = Result<Slot, tokio::sync::AcquireError>>,
) -> Result<Slot, CheckoutError> {
    let permit = if limit.is_zero() {
        wait.await
    } else {
        tokio::time::timeout(limit, wait)
            .await
            .map_err(|_| CheckoutError::WaitTimeout)?
    };
    permit.map_err(|_| CheckoutError::Closed)
}
