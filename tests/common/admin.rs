//! Admin console helpers: a bouncer with admin and stats users, simple-query result tables,
//! and PgBouncer 1.25's column lists to compare SHOW output with.

use tokio_postgres::{Client, SimpleQueryMessage};

use super::bouncer::{Bouncer, BouncerConfig, connect_conninfo, error_text};
use super::pg::{self, PgCluster};

pub const ADMIN: &str = "admin";
pub const ADMIN_PASS: &str = "admin-pw";
pub const WATCHER: &str = "watcher";
pub const WATCHER_PASS: &str = "watcher-pw";

/// `testdb` and `otherdb` on the shared cluster, trust_user in users.txt, an admin user and a
/// stats user, plus `settings`.
pub fn admin_config(settings: &[(&str, &str)]) -> BouncerConfig {
    let pg = PgCluster::shared();
    let mut cfg = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .database(format!("otherdb = {}", pg.connstr("testdb")))
        .auth(pg::TRUST_USER, pg::TRUST_PASS)
        .auth(ADMIN, ADMIN_PASS)
        .auth(WATCHER, WATCHER_PASS)
        .set("admin_users", ADMIN)
        .set("stats_users", WATCHER);
    for (k, v) in settings {
        cfg = cfg.set(k, v);
    }
    cfg
}

/// A result set from the admin console, values as text.
#[derive(Debug, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Table {
    pub fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }

    /// The first row whose `key` column equals `value`.
    pub fn row_where(&self, key: &str, value: &str) -> Option<&Vec<Option<String>>> {
        let k = self.col(key);
        self.rows.iter().find(|r| r[k].as_deref() == Some(value))
    }

    /// `col` of the first row whose `key` column equals `value`.
    pub fn get(&self, key: &str, value: &str, col: &str) -> Option<String> {
        let c = self.col(col);
        self.row_where(key, value).and_then(|r| r[c].clone())
    }

    /// `col` of the row matching `key = value` as a number (0 when absent).
    pub fn num(&self, key: &str, value: &str, col: &str) -> i64 {
        self.get(key, value, col)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Runs one simple query and collects its (last) result set.
pub async fn admin_query(client: &Client, sql: &str) -> Result<Table, String> {
    let msgs = client.simple_query(sql).await.map_err(|e| error_text(&e))?;
    let mut t = Table::default();
    for m in msgs {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                t.columns = cols.iter().map(|c| c.name().to_string()).collect();
                t.rows.clear();
            }
            SimpleQueryMessage::Row(r) => {
                if t.columns.is_empty() {
                    t.columns = r.columns().iter().map(|c| c.name().to_string()).collect();
                }
                t.rows
                    .push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
            }
            _ => {}
        }
    }
    Ok(t)
}

/// Logs in to the admin console over TCP.
pub async fn admin_connect(b: &Bouncer, user: &str, password: &str) -> Client {
    match connect_conninfo(&b.conninfo(user, password, "pgbouncer")).await {
        Ok((c, _task)) => c,
        Err(e) => panic!("admin login as {user}: {}\n{}", error_text(&e), b.log()),
    }
}

/// Runs `sql` on a fresh admin connection; panics on error.
pub async fn show(b: &Bouncer, sql: &str) -> Table {
    let c = admin_connect(b, ADMIN, ADMIN_PASS).await;
    match admin_query(&c, sql).await {
        Ok(t) => t,
        Err(e) => panic!("{sql}: {e}\n{}", b.log()),
    }
}

pub const POOLS_COLUMNS: [&str; 17] = [
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
    "load_balance_hosts",
];

pub const SOCKET_COLUMNS: [&str; 21] = [
    "type",
    "user",
    "database",
    "replication",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
    "id",
];

pub const DATABASES_COLUMNS: [&str; 17] = [
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "server_lifetime",
    "pool_mode",
    "load_balance_hosts",
    "max_connections",
    "current_connections",
    "max_client_connections",
    "current_client_connections",
    "paused",
    "disabled",
];

/// SHOW STATS in PgBouncer 1.25 order (the `client_login_count` pair is PgBouncer master's).
pub const STATS_COLUMNS: [&str; 25] = [
    "database",
    "total_server_assignment_count",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "total_client_parse_count",
    "total_server_parse_count",
    "total_bind_count",
    "total_client_login_count",
    "avg_server_assignment_count",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
    "avg_client_login_count",
];

pub const USERS_COLUMNS: [&str; 8] = [
    "name",
    "pool_size",
    "reserve_pool_size",
    "pool_mode",
    "max_user_connections",
    "current_connections",
    "max_user_client_connections",
    "current_client_connections",
];
