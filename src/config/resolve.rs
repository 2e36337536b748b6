//! Per-pool value resolution: which `[users]` / `[databases]` / global value applies to a
//! pool. PgBouncer's precedence is user > database > global wherever a level exists. `user`
//! is the pool's user: the forced `user=` of the database if set, else the client's name.

use std::time::Duration;

use super::Config;
use super::connstr::{ADMIN_DB, DatabaseDef};
use super::enums::{GssAuthNegotiate, GssEncMode, PoolMode};
use super::users_section::UserDef;
use crate::auth::secret::Secret;

impl Config {
    /// The database a client asking for `name` gets: the explicit entry, else the `*`
    /// fallback instantiated for `name`. `None` for unknown names and for the admin console.
    pub(crate) fn database_for(&self, name: &str) -> Option<DatabaseDef> {
        if name == ADMIN_DB {
            return None;
        }
        if let Some(db) = self.databases.get(name) {
            return Some(db.clone());
        }
        self.fallback_database
            .as_ref()
            .map(|star| star.instantiate_fallback(name))
    }

    /// The `[users]` entry for `user`.
    pub(crate) fn user_def(&self, user: &str) -> Option<&UserDef> {
        self.users.get(user)
    }

    /// The auth_file secret of `user`.
    pub fn secret_for(&self, user: &str) -> Option<&Secret> {
        self.auth_file.get(user)
    }

    /// The secret to log in to the server as the forced user: the database's `password=`
    /// if given, else the forced user's auth_file entry. `None` without a forced user.
    pub fn forced_user_secret(&self, db: &DatabaseDef) -> Option<Secret> {
        let user = db.user.as_deref()?;
        match db.password.as_deref() {
            Some(pw) if !pw.is_empty() => Some(Secret::parse(pw)),
            _ => Some(self.secret_for(user).cloned().unwrap_or(Secret::Empty)),
        }
    }

    pub(crate) fn pool_mode_for(&self, db: &DatabaseDef, user: &str) -> PoolMode {
        self.user_def(user)
            .and_then(|u| u.pool_mode)
            .or(db.pool_mode)
            .unwrap_or(self.settings.pool_mode)
    }

    /// 0 = unlimited (1.24+).
    pub(crate) fn pool_size_for(&self, db: &DatabaseDef, user: &str) -> i32 {
        self.user_def(user)
            .and_then(|u| u.pool_size)
            .or(db.pool_size)
            .unwrap_or(self.settings.default_pool_size)
    }

    pub(crate) fn reserve_pool_size_for(&self, db: &DatabaseDef, user: &str) -> i32 {
        self.user_def(user)
            .and_then(|u| u.reserve_pool_size)
            .or(db.reserve_pool_size)
            .unwrap_or(self.settings.reserve_pool_size)
    }

    pub(crate) fn min_pool_size_for(&self, db: &DatabaseDef) -> i32 {
        db.min_pool_size.unwrap_or(self.settings.min_pool_size)
    }

    /// 0 = unlimited.
    pub(crate) fn max_db_connections_for(&self, db: &DatabaseDef) -> i32 {
        db.max_db_connections
            .unwrap_or(self.settings.max_db_connections)
    }

    /// 0 = unlimited.
    pub fn max_db_client_connections_for(&self, db: &DatabaseDef) -> i32 {
        db.max_db_client_connections
            .unwrap_or(self.settings.max_db_client_connections)
    }

    /// 0 = unlimited.
    pub(crate) fn max_user_connections_for(&self, user: &str) -> i32 {
        self.user_def(user)
            .and_then(|u| u.max_user_connections)
            .unwrap_or(self.settings.max_user_connections)
    }

    /// 0 = unlimited.
    pub fn max_user_client_connections_for(&self, user: &str) -> i32 {
        self.user_def(user)
            .and_then(|u| u.max_user_client_connections)
            .unwrap_or(self.settings.max_user_client_connections)
    }

    pub(crate) fn server_lifetime_for(&self, db: &DatabaseDef) -> Duration {
        db.server_lifetime.unwrap_or(self.settings.server_lifetime)
    }

    /// Zero disables.
    pub(crate) fn query_wait_timeout_for(&self, db: &DatabaseDef, user: &str) -> Duration {
        self.user_def(user)
            .and_then(|u| u.query_wait_timeout)
            .or(db.query_wait_timeout)
            .unwrap_or(self.settings.query_wait_timeout)
    }

    /// Zero disables.
    pub(crate) fn query_timeout_for(&self, user: &str) -> Duration {
        self.user_def(user)
            .and_then(|u| u.query_timeout)
            .unwrap_or(self.settings.query_timeout)
    }

    /// Zero disables.
    pub(crate) fn idle_transaction_timeout_for(&self, user: &str) -> Duration {
        self.user_def(user)
            .and_then(|u| u.idle_transaction_timeout)
            .unwrap_or(self.settings.idle_transaction_timeout)
    }

    /// Zero disables.
    pub(crate) fn transaction_timeout_for(&self, user: &str) -> Duration {
        self.user_def(user)
            .and_then(|u| u.transaction_timeout)
            .unwrap_or(self.settings.transaction_timeout)
    }

    /// Zero disables.
    pub(crate) fn client_idle_timeout_for(&self, user: &str) -> Duration {
        self.user_def(user)
            .and_then(|u| u.client_idle_timeout)
            .unwrap_or(self.settings.client_idle_timeout)
    }

    pub(crate) fn gss_negotiate_for(&self, db: &DatabaseDef) -> GssAuthNegotiate {
        db.server_gssauth_negotiate
            .unwrap_or(self.settings.server_gssauth_negotiate)
    }

    pub(crate) fn gssencmode_for(&self, db: &DatabaseDef) -> GssEncMode {
        db.server_gssencmode
            .unwrap_or(self.settings.server_gssencmode)
    }

    /// The configured server principal; empty = build `<srvname>@<host>` per connected host.
    pub(crate) fn krb_spn_for(&self, db: &DatabaseDef) -> String {
        db.server_krb_spn
            .clone()
            .unwrap_or_else(|| self.settings.server_krb_spn.clone())
    }

    /// The service name for a default principal (`postgres`).
    pub fn krb_srvname_for(&self, db: &DatabaseDef) -> String {
        db.server_krb_srvname
            .clone()
            .unwrap_or_else(|| self.settings.server_krb_srvname.clone())
    }

    pub fn auth_user_for<'a>(&'a self, db: &'a DatabaseDef) -> Option<&'a str> {
        db.auth_user
            .as_deref()
            .or(self.settings.auth_user.as_deref())
    }

    pub fn auth_query_for<'a>(&'a self, db: &'a DatabaseDef) -> &'a str {
        db.auth_query
            .as_deref()
            .unwrap_or(&self.settings.auth_query)
    }

    /// `None` = run auth_query in the target database itself.
    pub fn auth_dbname_for<'a>(&'a self, db: &'a DatabaseDef) -> Option<&'a str> {
        db.auth_dbname
            .as_deref()
            .or(self.settings.auth_dbname.as_deref())
    }
}
