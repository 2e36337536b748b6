//! Taking a server out of a pool for a client (waiting first come, first served, with
//! `query_wait_timeout` and the reserve pool) and giving it back (reset, then idle).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::gss::GssRuntime;
use crate::config::PoolMode;
use crate::pool::{Pool, PoolRegistry};
use crate::protocol::pooler_errors::PoolerError;
use crate::server::conn::ServerConn;
use crate::server::connect::ConnectError;
use crate::server::connect::{ConnectSpec, connect};
use crate::server::login::LoginError;
use crate::server::query::run_simple;

/// Process-wide things a pool needs to open server connections.
pub struct Upstream<'a> {
    pub gss: &'a GssRuntime,
    pub tls: Option<&'a tokio_rustls::TlsConnector>,
    pub registry: &'a PoolRegistry,
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
    conn: Option<ServerConn>,
    _slot: OwnedSemaphorePermit,
}

/// Decrements a pool's server count when a connection ends, however it ends.
pub(crate) struct Tally(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Tally {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ServerGuard {
    pub fn conn(&mut self) -> &mut ServerConn {
        // invariant: conn is Some from checkout until release/drop consumes the guard
        self.conn
            .as_mut()
            .expect("invariant: a ServerGuard holds its connection until released")
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Gives the server back. `clean` says the client left it idle at a message boundary;
    /// otherwise it is closed. In session mode (or with `server_reset_query_always`) the reset
    /// query runs first; a failing reset or an exceeded `server_lifetime` closes it.
    pub async fn release(mut self, clean: bool) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let def = &self.pool.def;
        if !clean {
            // The client left a query running: stop it, or the backend keeps working (and
            // holding locks) for nobody until it next tries to write.
            let target = conn.cancel.clone();
            let timeout = def.server_connect_timeout;
            drop(conn);
            tokio::spawn(async move { crate::server::cancel::send_cancel(&target, timeout).await });
            return;
        }
        if expired(&conn, def.server_lifetime) {
            return;
        }
        let reset = def.pool_mode == PoolMode::Session || def.server_reset_query_always;
        if reset && !def.server_reset_query.trim().is_empty() {
            if let Err(e) = run_simple(
                &mut conn,
                &def.server_reset_query,
                def.server_connect_timeout,
            )
            .await
            {
                tracing::info!(server = conn.id, error = %e, "server reset failed, closing");
                return;
            }
        }
        conn.last_used = Instant::now();
        // push before the slot permit drops, so the next waiter finds it
        self.pool.push_idle(conn);
    }
}

fn expired(conn: &ServerConn, lifetime: Duration) -> bool {
    !lifetime.is_zero() && conn.created.elapsed() >= lifetime
}

impl Pool {
    /// Waits for a usage slot (FIFO), then hands out an idle server or logs in a new one.
    pub async fn checkout(
        self: &Arc<Self>,
        up: &Upstream<'_>,
    ) -> Result<ServerGuard, CheckoutError> {
        let slot = self.acquire_slot().await?;
        loop {
            if let Some(mut conn) = self.pop_idle() {
                if expired(&conn, self.def.server_lifetime) {
                    continue;
                }
                if conn.last_used.elapsed() >= self.def.server_check_delay {
                    if let Err(e) = run_simple(
                        &mut conn,
                        &self.def.server_check_query,
                        self.def.server_connect_timeout,
                    )
                    .await
                    {
                        tracing::info!(server = conn.id, error = %e, "server check failed, closing");
                        continue;
                    }
                    conn.last_used = Instant::now();
                }
                return Ok(ServerGuard {
                    pool: self.clone(),
                    conn: Some(conn),
                    _slot: slot,
                });
            }
            let conn = self.open_server(up).await?;
            return Ok(ServerGuard {
                pool: self.clone(),
                conn: Some(conn),
                _slot: slot,
            });
        }
    }

    async fn acquire_slot(&self) -> Result<OwnedSemaphorePermit, CheckoutError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        let reserve_size = self.def.reserve_pool_size;
        let reserve_after = self.def.reserve_pool_timeout;
        let wait = async {
            tokio::select! {
                p = self.slots.clone().acquire_owned() => p,
                p = async {
                    if reserve_size == 0 {
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(reserve_after).await;
                    tracing::info!(db = %self.def.db_name, "taking connection from reserve_pool");
                    self.reserve.clone().acquire_owned().await
                } => p,
            }
        };
        bounded_wait(self.def.query_wait_timeout, wait).await
    }

    /// Opens and logs in a server, respecting `server_login_retry` and the db/user limits.
    async fn open_server(self: &Arc<Self>, up: &Upstream<'_>) -> Result<ServerConn, CheckoutError> {
        if let Some(cached) = self.recent_login_failure() {
            return Err(CheckoutError::LoginRetry(cached));
        }
        let mut permits = Vec::new();
        for (limit, which) in [
            (&self.db_limit, LimitKind::Db),
            (&self.user_limit, LimitKind::User),
        ] {
            if let Some(sem) = limit {
                permits.push(self.acquire_limit(sem, which, up.registry).await?);
            }
        }
        let i = self.next_address_index();
        let address = &self.def.addresses[i % self.def.addresses.len()];
        let target = self.def.gss_targets.get(i).and_then(|t| t.as_ref());
        if let Some(t) = target {
            if self.def.gss_negotiate != crate::server::gss_login::GssNegotiate::Disable
                && !self.spn_logged.swap(true, Ordering::Relaxed)
            {
                tracing::info!(db = %self.def.db_name, spn = %t, "GSSAPI service principal for this pool");
            }
        }
        let scram_keys = self.scram_keys();
        let spec = ConnectSpec {
            address,
            user: &self.def.login_user,
            database: &self.def.dbname,
            extra_params: &self.def.extra_params,
            secret: self.def.secret.as_ref(),
            scram_keys,
            gss_negotiate: self.def.gss_negotiate,
            gssencmode: self.def.gssencmode,
            gss_target: target,
            gss_runtime: up.gss,
            sslmode: self.def.sslmode,
            tls: up.tls,
            connect_timeout: self.def.server_connect_timeout,
        };
        let started = Instant::now();
        match connect(&spec).await {
            Ok(connected) => {
                let mut conn = connected.conn;
                self.server_count.fetch_add(1, Ordering::Relaxed);
                conn.tally = Some(Tally(self.server_count.clone()));
                conn.limit_permits = permits;
                self.record_login_result(None);
                self.set_welcome_once(&conn.params);
                tracing::info!(
                    db = %self.def.db_name, user = %self.def.login_user, server = conn.id, %address,
                    transport = conn.stream.transport_name(), gss = connected.gss_authenticated,
                    ms = started.elapsed().as_millis() as u64, "new server connection"
                );
                if let Some(q) = &self.def.connect_query {
                    if let Err(e) = run_simple(&mut conn, q, self.def.server_connect_timeout).await
                    {
                        tracing::warn!(db = %self.def.db_name, error = %e, "connect_query failed");
                    }
                }
                Ok(conn)
            }
            Err(e) => {
                let for_client = client_facing(&e);
                let msg = for_client.message.to_string();
                tracing::warn!(
                    db = %self.def.db_name, user = %self.def.login_user, %address,
                    spn = target.map(|t| t.to_string()).unwrap_or_default(), error = %e,
                    "server login failed"
                );
                self.record_login_result(Some(msg.clone()));
                Err(CheckoutError::Login(for_client))
            }
        }
    }

    async fn acquire_limit(
        &self,
        sem: &Arc<Semaphore>,
        which: LimitKind,
        registry: &PoolRegistry,
    ) -> Result<OwnedSemaphorePermit, CheckoutError> {
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Ok(p);
        }
        // PgBouncer frees the budget by closing an idle server of another pool
        let freed = match which {
            LimitKind::Db => registry.close_idle_in_db(&self.def.db_name),
            LimitKind::User => registry.close_idle_of_user(&self.def.login_user),
        };
        if freed {
            if let Ok(p) = sem.clone().try_acquire_owned() {
                return Ok(p);
            }
        }
        let wait = sem.clone().acquire_owned();
        bounded_wait(self.def.query_wait_timeout, wait).await
    }

    /// Opens servers until `min_pool_size` exist (janitor), without blocking on slots.
    pub(crate) async fn fill_min(self: &Arc<Self>, up: &Upstream<'_>) {
        while self.server_count.load(Ordering::Relaxed) < self.def.min_pool_size {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                return;
            };
            match self.open_server(up).await {
                Ok(mut conn) => {
                    conn.last_used = Instant::now();
                    self.push_idle(conn);
                    drop(slot);
                }
                Err(_) => return,
            }
        }
    }
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
        },
        other => PoolerError::fatal_text(format!("server login failed: {other}")),
    }
}

/// Waits for a permit for at most `query_wait_timeout` (0 = forever).
async fn bounded_wait(
    limit: Duration,
    wait: impl std::future::Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>>,
) -> Result<OwnedSemaphorePermit, CheckoutError> {
    let permit = if limit.is_zero() {
        wait.await
    } else {
        tokio::time::timeout(limit, wait)
            .await
            .map_err(|_| CheckoutError::WaitTimeout)?
    };
    permit.map_err(|_| CheckoutError::Closed)
}

#[derive(Clone, Copy)]
enum LimitKind {
    Db,
    User,
}
