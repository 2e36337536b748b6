//! Pools of server connections, one per (database, user): the registry, the idle list, the
//! limits, and what every pool remembers (welcome parameters, last login failure, SCRAM keys).

pub mod cancel;
pub mod checkout;
pub mod clients;
mod closing;
pub mod counts;
pub mod def;
pub mod janitor;
mod limit_wait;
mod login_retry;
pub mod peers;
pub mod pooled;
pub mod registry;
mod replication;
mod slots;
pub mod state;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::auth::secret::Secret;
use crate::protocol::pooler_errors::PoolerError;
use crate::server::login::ScramKeys;
use crate::server::params::ParamSet;

pub use checkout::{CheckoutError, ServerGuard};
pub use def::PoolDef;
pub use pooled::Pooled;
pub use registry::PoolRegistry;
use state::lock;
pub use state::{DbControl, ServerEntry, ServerSet, ServerState};

/// A pool's settings as of one generation: held across a checkout and its release (and by
/// a session between links), refreshed with [`Pool::refresh_def`].
#[derive(Clone)]
pub struct DefSnapshot {
    def: Arc<PoolDef>,
    generation: u64,
}

impl DefSnapshot {
    pub fn def(&self) -> &Arc<PoolDef> {
        &self.def
    }
}

impl std::ops::Deref for DefSnapshot {
    type Target = PoolDef;
    fn deref(&self) -> &PoolDef {
        &self.def
    }
}

/// One pool. Usage slots (`pool_size`) are a fair semaphore, so waiting clients are served
/// first come, first served; a slot holder takes an idle server or opens one, which keeps
/// `active + idle <= pool_size + reserve` without counting by hand.
pub struct Pool {
    /// The database name clients use (`def().db_name`, which never changes for a pool).
    pub db_name: String,
    /// The role the pool logs in as (`def().login_user`, fixed for a pool).
    pub login_user: String,
    /// Swapped in place by SET / RELOAD when only sizes and timeouts changed.
    def: RwLock<Arc<PoolDef>>,
    /// Bumped after each swap of `def`: a [`DefSnapshot`] checks it (one atomic load) instead
    /// of taking the lock at every checkout and release.
    def_generation: AtomicU64,
    slots: slots::Slots,
    reserve: slots::Slots,
    /// Idle servers, most recently used last (taken LIFO, as PgBouncer does by default).
    idle: Mutex<Vec<Pooled>>,
    welcome: Mutex<Option<Arc<ParamSet>>>,
    /// When the last server login failed and what its clients were told.
    login_failure: Mutex<Option<(Instant, PoolerError)>>,
    /// The last connect failed because the server was away (`login_retry.rs`).
    server_away: AtomicBool,
    scram_keys: Mutex<Option<ScramKeys>>,
    /// The login user's secret as auth_query last returned it (users not in users.txt):
    /// PgBouncer's dynamic credentials, which its server logins use too.
    fetched_secret: Mutex<Option<Secret>>,
    next_address: AtomicUsize,
    /// Server connections that exist (idle, active, being reset or checked).
    pub server_count: Arc<AtomicUsize>,
    /// Clients currently logged in to this pool.
    pub client_count: AtomicUsize,
    /// Replaced by reload: clients move to the new pool at their next checkout.
    retired: AtomicBool,
    /// Totals and latencies for SHOW STATS and /metrics.
    pub stats: crate::stats::PoolStats,
    /// Every server of this pool by state (SHOW SERVERS, SHOW POOLS).
    pub servers: Arc<ServerSet>,
    /// Clients of this pool by state (SHOW POOLS), kept by `pool::clients`.
    pub client_states: state::StateCounts<{ state::CLIENT_STATES }>,
    /// PAUSE / DISABLE of this pool's database.
    pub db: Arc<DbControl>,
    /// Process-wide PAUSE (PAUSE without a database, SIGUSR1).
    pub global: Arc<DbControl>,
    spn_logged: AtomicBool,
    /// A janitor task is filling `min_pool_size` (one at a time).
    filling: AtomicBool,
    db_limit: Option<Arc<Semaphore>>,
    user_limit: Option<Arc<Semaphore>>,
}

impl Pool {
    pub(crate) fn new(
        def: PoolDef,
        db_limit: Option<Arc<Semaphore>>,
        user_limit: Option<Arc<Semaphore>>,
        db: Arc<DbControl>,
        global: Arc<DbControl>,
    ) -> Pool {
        Pool {
            slots: slots::Slots::new(def.pool_size, true),
            reserve: slots::Slots::new(def.reserve_pool_size, false),
            db_name: def.db_name.clone(),
            login_user: def.login_user.clone(),
            def: RwLock::new(Arc::new(def)),
            def_generation: AtomicU64::new(0),
            idle: Mutex::new(Vec::new()),
            welcome: Mutex::new(None),
            login_failure: Mutex::new(None),
            server_away: AtomicBool::new(false),
            scram_keys: Mutex::new(None),
            fetched_secret: Mutex::new(None),
            next_address: AtomicUsize::new(0),
            server_count: Arc::new(AtomicUsize::new(0)),
            client_count: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
            stats: crate::stats::PoolStats::default(),
            servers: Arc::new(ServerSet::default()),
            client_states: state::StateCounts::default(),
            db,
            global,
            spn_logged: AtomicBool::new(false),
            filling: AtomicBool::new(false),
            db_limit,
            user_limit,
        }
    }

    /// The pool's current settings.
    pub fn def(&self) -> Arc<PoolDef> {
        self.def.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies a definition that differs from the current one only in what
    /// [`PoolDef::same_connections`] lets change in place: the sizes take effect at once
    /// (clients already waiting get the new slots), the rest at the next checkout.
    pub fn update_def(&self, new: PoolDef) {
        self.slots.resize(new.pool_size, true);
        self.reserve.resize(new.reserve_pool_size, false);
        *self.def.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        self.def_generation.fetch_add(1, Ordering::Release);
    }

    /// The current settings with their generation, for [`Pool::refresh_def`].
    pub fn def_snapshot(&self) -> DefSnapshot {
        // the generation first: a swap in between is then seen by the next refresh
        let generation = self.def_generation.load(Ordering::Acquire);
        DefSnapshot {
            def: self.def(),
            generation,
        }
    }

    /// Brings `snap` up to date; the usual case (nothing changed) is one atomic load.
    pub fn refresh_def(&self, snap: &mut DefSnapshot) {
        if self.def_generation.load(Ordering::Acquire) != snap.generation {
            *snap = self.def_snapshot();
        }
    }

    /// The ParameterStatus set clients get at login, once a server has logged in.
    pub fn welcome(&self) -> Option<Arc<ParamSet>> {
        lock(&self.welcome).clone()
    }

    fn set_welcome_once(&self, params: &ParamSet) {
        let mut w = lock(&self.welcome);
        if w.is_none() {
            *w = Some(Arc::new(params.clone()));
        }
    }

    /// Remembers the SCRAM keys of a client that proved knowledge of the stored secret.
    pub fn set_scram_keys(&self, keys: ScramKeys) {
        *lock(&self.scram_keys) = Some(keys);
    }

    pub(crate) fn scram_keys(&self) -> Option<ScramKeys> {
        *lock(&self.scram_keys)
    }

    /// Remembers the secret auth_query returned for this pool's login user.
    pub fn set_fetched_secret(&self, secret: Secret) {
        *lock(&self.fetched_secret) = Some(secret);
    }

    /// The secret server logins use: the configured one, else the one auth_query fetched.
    pub(crate) fn login_secret(&self) -> Option<Secret> {
        self.def()
            .secret
            .clone()
            .or_else(|| lock(&self.fetched_secret).clone())
    }

    /// Whether checkouts must wait (PAUSE of the database or of everything).
    pub(crate) fn is_paused(&self) -> bool {
        self.db.paused.is_closed() || self.global.paused.is_closed()
    }

    /// Waits until neither the database nor the process is paused.
    pub(crate) async fn wait_resumed(&self) {
        while self.is_paused() {
            self.db.paused.wait_open().await;
            self.global.paused.wait_open().await;
        }
    }

    /// Closes every idle server now (KILL, PAUSE, RECONNECT); returns how many.
    pub fn close_idle(&self) -> usize {
        let closed = std::mem::take(&mut *lock(&self.idle));
        closed.len()
    }

    /// Closes idle servers marked `close_needed` (RECONNECT, reload), each logged as
    /// PgBouncer's janitor does ("database configuration changed").
    pub fn close_idle_needing_close(&self) -> usize {
        let closed = self.drain_idle_where(|c| c.entry().close_needed());
        for conn in &closed {
            self.log_server_close(conn, closing::CONFIG_CHANGED);
        }
        closed.len()
    }

    /// Claims the `min_pool_size` fill; false if one is already running.
    pub(crate) fn start_filling(&self) -> bool {
        !self.filling.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn done_filling(&self) {
        self.filling.store(false, Ordering::Release);
    }

    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Whether a checkout now would have to wait: every `pool_size` slot is in use.
    pub(crate) fn would_wait(&self) -> bool {
        self.slots.available() == 0
    }

    pub fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }

    fn pop_idle(&self) -> Option<Pooled> {
        lock(&self.idle).pop()
    }

    fn push_idle(&self, conn: Pooled) {
        lock(&self.idle).push(conn);
    }

    /// Visits every idle server (the janitor updates their SHOW states).
    fn for_each_idle(&self, mut f: impl FnMut(&Pooled)) {
        for conn in lock(&self.idle).iter() {
            f(conn);
        }
    }

    /// Takes out idle servers matching `pred` (the janitor closes them).
    fn drain_idle_where(&self, mut pred: impl FnMut(&mut Pooled) -> bool) -> Vec<Pooled> {
        let mut idle = lock(&self.idle);
        let mut out = Vec::new();
        let mut i = 0;
        while i < idle.len() {
            if pred(&mut idle[i]) {
                out.push(idle.remove(i))
            } else {
                i += 1
            }
        }
        out
    }

    /// Closes one idle server, if any: used when another pool of the same database or user
    /// needs the connection budget (`max_db_connections`, `max_user_connections`).
    pub(crate) fn close_one_idle(&self) -> bool {
        self.take_oldest_idle().is_some()
    }

    /// Takes out the least recently used idle server.
    fn take_oldest_idle(&self) -> Option<Pooled> {
        let mut idle = lock(&self.idle);
        if idle.is_empty() {
            return None;
        }
        Some(idle.remove(0))
    }

    /// The login error of the last failed attempt, while `server_login_retry` has not passed.
    fn recent_login_failure(&self) -> Option<(Instant, PoolerError)> {
        let f = lock(&self.login_failure);
        match &*f {
            Some((at, e)) if at.elapsed() < self.def().server_login_retry => Some((*at, e.clone())),
            _ => None,
        }
    }

    fn record_login_result(&self, failure: Option<PoolerError>) {
        *lock(&self.login_failure) = failure.map(|m| (Instant::now(), m));
    }

    /// Which host of the list the next connect uses: the next one (`round-robin`) or the
    /// current one (`disable`, moved on by [`Pool::address_failed`]).
    fn next_address_index(&self) -> usize {
        let def = self.def();
        let n = def.addresses.len().max(1);
        let i = match def.load_balance_hosts {
            crate::config::enums::LoadBalanceHosts::RoundRobin => {
                self.next_address.fetch_add(1, Ordering::Relaxed)
            }
            crate::config::enums::LoadBalanceHosts::Disable => {
                self.next_address.load(Ordering::Relaxed)
            }
        };
        i % n
    }

    /// A connect to host `i` failed: with `load_balance_hosts = disable` the next connect
    /// tries the following host, as PgBouncer does.
    fn address_failed(&self, i: usize) {
        let def = self.def();
        if def.load_balance_hosts == crate::config::enums::LoadBalanceHosts::Disable {
            let n = def.addresses.len().max(1);
            let _ = self.next_address.compare_exchange(
                i,
                (i + 1) % n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

#[cfg(test)]
mod tests;
