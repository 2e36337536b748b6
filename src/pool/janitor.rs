//! The janitor: once a second, closes idle servers past `server_idle_timeout` or
//! `server_lifetime` and those the server closed (a restart: SHOW SERVERS and the fds must not
//! keep dead ones until a client trips over them), marks those idle past `server_check_delay` as `used`, and opens servers
//! up to `min_pool_size`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::Config;
use crate::pool::checkout::Upstream;
use crate::pool::{Pool, PoolRegistry};

const PERIOD: Duration = Duration::from_secs(1);

/// What the janitor needs from the process: the pools, how to reach servers, when to stop.
pub trait JanitorHandle: Send + Sync + 'static {
    fn pools(&self) -> &PoolRegistry;
    fn upstream(&self) -> Upstream<'_>;
    fn stopping(&self) -> bool;
    /// The current configuration snapshot.
    fn config(&self) -> Arc<Config>;
}

/// Runs until shutdown starts.
pub async fn run<H: JanitorHandle>(app: Arc<H>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if app.stopping() {
            return;
        }
        app.pools().ensure_forced_min_pools(&app.config());
        for pool in app.pools().all() {
            sweep(&pool);
            // min_pool_size applies to forced-user pools and to pools that have clients
            if pool.def().min_pool_size > 0
                && (pool.def().forced_user || pool.client_count.load(Ordering::Relaxed) > 0)
                && pool.start_filling()
            {
                let app = app.clone();
                tokio::spawn(async move {
                    pool.fill_min(&app.upstream()).await;
                    pool.done_filling();
                });
            }
        }
    }
}

/// Closes idle servers that outlived `server_idle_timeout` or `server_lifetime`, or that the
/// server closed or spoke on while idle (PgBouncer: "server conn crashed?").
pub fn sweep(pool: &Pool) {
    let idle_timeout = pool.def().server_idle_timeout;
    let lifetime = pool.def().server_lifetime;
    let min = pool.def().min_pool_size;
    let total = pool.server_count.load(Ordering::Relaxed);
    let mut closable = total.saturating_sub(min);
    let closed = pool.drain_idle_where(|c| {
        let server: &mut crate::server::conn::ServerConn = c;
        let health = server.stream.idle_health(&mut server.rbuf);
        if health != crate::net::stream::IdleHealth::Quiet {
            tracing::info!(
                db = %pool.def().db_name, server = c.id, ?health,
                "closing because: server conn crashed?"
            );
            return true;
        }
        if c.entry().close_needed() {
            // marked by RELOAD / SET / RECONNECT after it was checked there
            pool.log_server_close(c, super::closing::CONFIG_CHANGED);
            return true;
        }
        let too_old = c.created.elapsed() >= lifetime;
        let too_idle =
            !idle_timeout.is_zero() && c.last_used.elapsed() >= idle_timeout && closable > 0;
        if too_idle && !too_old {
            closable -= 1;
        }
        too_old || too_idle
    });
    for conn in closed {
        tracing::debug!(db = %pool.db_name, server = conn.id, "closing idle server");
    }
    mark_used(pool);
}

/// Idle servers unused for `server_check_delay` become `used` (SHOW POOLS `sv_used`): their
/// next checkout runs `server_check_query` first.
fn mark_used(pool: &Pool) {
    let delay = pool.def().server_check_delay;
    pool.for_each_idle(|conn| {
        if conn.last_used.elapsed() >= delay
            && conn.entry().state() == crate::pool::ServerState::Idle
        {
            pool.servers
                .transition(conn.entry(), crate::pool::ServerState::Used);
        }
    });
}
