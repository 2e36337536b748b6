//! What one pool (database, user) needs to know, resolved once from the config snapshot with
//! PgBouncer's precedence: `[users]` over `[databases]` over `[pgbouncer]`.

use std::time::Duration;

use crate::auth::gss::{GssTarget, target_name};
use crate::auth::secret::Secret;
use crate::config::enums::LoadBalanceHosts;
use crate::config::{Config, DatabaseDef, GssEncMode, PoolMode, SslMode};
use crate::server::address::ServerAddress;
use crate::server::gss_login::GssNegotiate;

/// A pool's resolved settings. Immutable; a reload builds a new one.
#[derive(Debug)]
pub struct PoolDef {
    /// The database name clients use.
    pub db_name: String,
    /// The database name sent to the server.
    pub dbname: String,
    pub addresses: Vec<ServerAddress>,
    /// `disable`: stay on one host of a list until a connect to it fails.
    pub load_balance_hosts: LoadBalanceHosts,
    /// GSSAPI target per address (None where none can be formed, e.g. unix sockets).
    pub gss_targets: Vec<Option<GssTarget>>,
    /// The role krbouncer logs in as.
    pub login_user: String,
    pub forced_user: bool,
    /// Password or hash for `login_user`, from `[databases]` or users.txt.
    pub secret: Option<Secret>,
    pub extra_params: Vec<(String, String)>,
    pub pool_mode: PoolMode,
    /// 0 = unlimited.
    pub pool_size: usize,
    pub min_pool_size: usize,
    pub reserve_pool_size: usize,
    pub reserve_pool_timeout: Duration,
    pub max_db_connections: usize,
    pub max_user_connections: usize,
    pub server_lifetime: Duration,
    pub server_idle_timeout: Duration,
    pub server_connect_timeout: Duration,
    pub server_login_retry: Duration,
    pub query_wait_timeout: Duration,
    pub server_reset_query: String,
    pub server_reset_query_always: bool,
    pub server_check_query: String,
    pub server_check_delay: Duration,
    pub connect_query: Option<String>,
    /// `log_connections`: PgBouncer logs a new server connection only when it is set.
    pub log_connections: bool,
    /// `log_disconnections`: a server closed after a failed login is logged with its reason.
    pub log_disconnections: bool,
    pub gss_negotiate: GssNegotiate,
    pub gssencmode: GssEncMode,
    pub sslmode: SslMode,
}

impl PoolDef {
    /// Whether `other` opens the same server connections as this definition: everything but
    /// the sizes and timeouts, which a live pool takes over in place (`Pool::update_def`), as
    /// PgBouncer reads them from its settings at each use.
    pub(crate) fn same_connections(&self, other: &PoolDef) -> bool {
        let key = |d: &PoolDef| {
            format!(
                "{:?}",
                (
                    (&d.db_name, &d.dbname, &d.addresses, &d.gss_targets),
                    d.load_balance_hosts,
                    (&d.login_user, d.forced_user, &d.secret, &d.extra_params),
                    (d.max_db_connections, d.max_user_connections),
                    (&d.connect_query, d.gss_negotiate, d.gssencmode, d.sslmode),
                )
            )
        };
        key(self) == key(other)
    }

    /// Resolves the pool for clients of `db` logging in as `client_user`.
    pub(crate) fn resolve(config: &Config, db: &DatabaseDef, client_user: &str) -> PoolDef {
        let s = &config.settings;
        let (login_user, forced_user) = match &db.user {
            Some(u) => (u.clone(), true),
            None => (client_user.to_string(), false),
        };
        let secret = match (&db.password, forced_user) {
            (Some(pw), _) => Some(Secret::parse(pw)),
            (None, _) => config.auth_file.users.get(&login_user).cloned(),
        };
        let port = db.port;
        let addresses: Vec<ServerAddress> = match &db.host {
            Some(hosts) => hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(|h| ServerAddress::from_host(h, port))
                .collect(),
            None => vec![ServerAddress::from_host(&s.unix_socket_dir, port)],
        };
        let spn = config.krb_spn_for(db);
        let gss_targets = addresses
            .iter()
            .map(|a| {
                let host = a.tcp_host()?;
                match target_name(&spn, &s.server_krb_srvname, host) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        tracing::warn!(database = %db.name, error = %e, "no GSSAPI target for server");
                        None
                    }
                }
            })
            .collect();
        let mut extra_params = Vec::new();
        for (name, value) in [
            ("client_encoding", &db.client_encoding),
            ("DateStyle", &db.datestyle),
            ("TimeZone", &db.timezone),
            ("application_name", &db.application_name),
        ] {
            if let Some(v) = value {
                extra_params.push((name.to_string(), v.clone()));
            }
        }
        PoolDef {
            db_name: db.name.clone(),
            dbname: db.dbname.clone(),
            addresses,
            load_balance_hosts: db.load_balance_hosts,
            gss_targets,
            pool_mode: config.pool_mode_for(db, client_user),
            pool_size: config.pool_size_for(db, client_user) as usize,
            min_pool_size: config.min_pool_size_for(db) as usize,
            reserve_pool_size: config.reserve_pool_size_for(db, client_user) as usize,
            reserve_pool_timeout: s.reserve_pool_timeout,
            max_db_connections: config.max_db_connections_for(db) as usize,
            max_user_connections: config.max_user_connections_for(&login_user) as usize,
            server_lifetime: config.server_lifetime_for(db),
            server_idle_timeout: s.server_idle_timeout,
            server_connect_timeout: s.server_connect_timeout,
            server_login_retry: s.server_login_retry,
            query_wait_timeout: config.query_wait_timeout_for(db, client_user),
            server_reset_query: s.server_reset_query.clone(),
            server_reset_query_always: s.server_reset_query_always,
            server_check_query: s.server_check_query.clone(),
            server_check_delay: s.server_check_delay,
            connect_query: db.connect_query.clone(),
            log_connections: s.log_connections,
            log_disconnections: s.log_disconnections,
            gss_negotiate: config.gss_negotiate_for(db),
            gssencmode: config.gssencmode_for(db),
            sslmode: s.server_tls_sslmode,
            login_user,
            forced_user,
            secret,
            extra_params,
        }
    }
}
