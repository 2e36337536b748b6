//! All pools, keyed by (database, user), plus the per-database and per-user connection budgets
//! they share (`max_db_connections`, `max_user_connections`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::config::{Config, DatabaseDef};
use crate::pool::{DbControl, Pool, PoolDef, lock};

/// Pool key: the client-facing database name and the login user of the pool.
pub(crate) type PoolKey = (String, String);

#[derive(Default)]
pub struct PoolRegistry {
    pools: Mutex<HashMap<PoolKey, Arc<Pool>>>,
    db_limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    user_limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// PAUSE/DISABLE state per database name (kept across reloads, as PgBouncer does).
    db_controls: Mutex<HashMap<String, Arc<DbControl>>>,
    /// Process-wide PAUSE.
    pub global: Arc<DbControl>,
}

impl PoolRegistry {
    pub fn new() -> PoolRegistry {
        PoolRegistry::default()
    }

    /// The pool for clients of `db` logging in as `client_user`, created on first use. A
    /// forced-user database has one pool whatever the client user is.
    pub(crate) fn get_or_create(
        &self,
        config: &Config,
        db: &DatabaseDef,
        client_user: &str,
    ) -> Arc<Pool> {
        let login_user = db.user.clone().unwrap_or_else(|| client_user.to_string());
        let key = (db.name.clone(), login_user.clone());
        let mut pools = lock(&self.pools);
        if let Some(p) = pools.get(&key) {
            return p.clone();
        }
        // [users] settings of the pool's user apply: the forced user's, not the client's
        // (PgBouncer's `pool->user_credentials->global_user`)
        let def = PoolDef::resolve(config, db, &login_user);
        let db_limit = limit(&self.db_limits, &db.name, def.max_db_connections);
        let user_limit = limit(&self.user_limits, &login_user, def.max_user_connections);
        let control = self.db_control(&db.name);
        let pool = Arc::new(Pool::new(
            def,
            db_limit,
            user_limit,
            control,
            self.global.clone(),
        ));
        pools.insert(key, pool.clone());
        pool
    }

    /// The pool `auth_query` runs in: database `db` logged in as `auth_user`, whatever
    /// user the database forces (PgBouncer's `get_pool(auth_db, auth_user_credentials)`),
    /// with `auth_user`'s users.txt secret. Without a forced user (or with `auth_user` as the
    /// forced user) that is the ordinary pool of `auth_user`.
    pub(crate) fn get_or_create_auth(
        &self,
        config: &Config,
        db: &DatabaseDef,
        auth_user: &str,
    ) -> Arc<Pool> {
        match db.user.as_deref() {
            None => self.get_or_create(config, db, auth_user),
            Some(forced) if forced == auth_user => self.get_or_create(config, db, auth_user),
            Some(_) => {
                // a reload re-resolves this pool as the forced user's and retires it; the
                // next auth_query makes it again (rare: auth_user differing from user=)
                let as_auth = DatabaseDef {
                    user: Some(auth_user.to_string()),
                    password: None,
                    ..db.clone()
                };
                self.get_or_create(config, &as_auth, auth_user)
            }
        }
    }

    /// Creates the pools of forced-user databases with a `min_pool_size` (PgBouncer has them
    /// from config load on, so the janitor fills them before any client comes, also for
    /// databases a reload added).
    pub(crate) fn ensure_forced_min_pools(&self, config: &Config) {
        for db in config.databases.values() {
            if let Some(user) = &db.user {
                if config.min_pool_size_for(db) > 0 {
                    self.get_or_create(config, db, user);
                }
            }
        }
    }

    /// The PAUSE/DISABLE switches of database `name`, created on first use.
    pub(crate) fn db_control(&self, name: &str) -> Arc<DbControl> {
        lock(&self.db_controls)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// The switches of `name` if the database has been seen (config or pools).
    pub fn existing_db_control(&self, name: &str) -> Option<Arc<DbControl>> {
        lock(&self.db_controls).get(name).cloned()
    }

    /// Pools of database `db`.
    pub fn pools_of_db(&self, db: &str) -> Vec<Arc<Pool>> {
        self.all().into_iter().filter(|p| p.db_name == db).collect()
    }

    /// Replaces a pool whose definition changed on reload: the old pool stays alive for the
    /// clients still using it (its servers close at release), new clients get the new one.
    pub fn retire(&self, key: &PoolKey) -> Option<Arc<Pool>> {
        let pool = lock(&self.pools).remove(key);
        if let Some(p) = &pool {
            p.retire();
        }
        pool
    }

    /// Every pool, sorted by (database, user) for stable SHOW output.
    pub(crate) fn all_sorted(&self) -> Vec<Arc<Pool>> {
        let mut v = self.all();
        v.sort_by(|a, b| {
            (a.db_name.as_str(), a.login_user.as_str())
                .cmp(&(b.db_name.as_str(), b.login_user.as_str()))
        });
        v
    }

    /// A snapshot of every pool (for the janitor and, later, SHOW).
    pub(crate) fn all(&self) -> Vec<Arc<Pool>> {
        lock(&self.pools).values().cloned().collect()
    }

    pub(crate) fn close_idle_in_db(&self, db: &str) -> bool {
        self.all()
            .iter()
            .filter(|p| p.db_name == db)
            .any(|p| p.close_one_idle())
    }

    pub(crate) fn close_idle_of_user(&self, user: &str) -> bool {
        self.all()
            .iter()
            .filter(|p| p.login_user == user)
            .any(|p| p.close_one_idle())
    }
}

fn limit(
    map: &Mutex<HashMap<String, Arc<Semaphore>>>,
    name: &str,
    size: usize,
) -> Option<Arc<Semaphore>> {
    if size == 0 {
        return None;
    }
    Some(
        lock(map)
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(size)))
            .clone(),
    )
}
