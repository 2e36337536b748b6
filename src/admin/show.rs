//! The admin console's SHOW commands, with PgBouncer 1.25's column names, order and types
//! (`src/admin.c`, `src/stats.c`); krbouncer's own columns only at the end.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;

use crate::app::App;
use crate::client::registry::ClientState;
use crate::config::Config;
use crate::pool::{Pool, ServerState};
use crate::protocol::result_set::{ColType, data_row, row_description};

use ColType::{Int4 as I, Text as S};

pub use super::show_conns::{clients, servers, sockets};
pub use super::show_stats::{stats, stats_totals_or_averages, totals};

/// What PgBouncer's SHOW VERSION prints; the exporter parses the `PgBouncer x.y.z` head.
pub const VERSION_TEXT: &str = concat!(
    "PgBouncer 1.25.0 (krbouncer ",
    env!("CARGO_PKG_VERSION"),
    ")"
);

/// Rows of text values; `None` is NULL.
pub type Rows = Vec<Vec<Option<String>>>;

/// Writes a whole result set (RowDescription + DataRows); the caller completes it.
pub fn table(buf: &mut BytesMut, cols: &[(&str, ColType)], rows: &Rows) {
    row_description(buf, cols);
    for r in rows {
        data_row(buf, r);
    }
}

pub(crate) fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// `usec_t` as PgBouncer's `format_time_s` renders it (UTC here).
pub fn format_time_us(us: u64) -> String {
    let secs = (us / 1_000_000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn load_balance_hosts(config: &Config, db: &str) -> Option<String> {
    let def = config.database_for(db)?;
    def.host
        .as_deref()
        .filter(|h| h.contains(','))
        .map(|_| def.load_balance_hosts.as_str().to_string())
}

pub fn pools(app: &App, buf: &mut BytesMut) {
    let config = app.config();
    let cols = [
        ("database", S),
        ("user", S),
        ("cl_active", I),
        ("cl_waiting", I),
        ("cl_active_cancel_req", I),
        ("cl_waiting_cancel_req", I),
        ("sv_active", I),
        ("sv_active_cancel", I),
        ("sv_being_canceled", I),
        ("sv_idle", I),
        ("sv_used", I),
        ("sv_tested", I),
        ("sv_login", I),
        ("maxwait", I),
        ("maxwait_us", I),
        ("pool_mode", S),
        ("load_balance_hosts", S),
    ];
    let clients = app.client_registry.snapshot();
    let admins = clients.iter().filter(|c| c.is_admin()).count();
    let mut rows = Rows::new();
    rows.push(vec![
        s("pgbouncer"),
        s("pgbouncer"),
        s(admins),
        s(0),
        s(0),
        s(0),
        s(0),
        s(0),
        s(0),
        s(0),
        s(0),
        s(0),
        s(0),
        s(0),
        s(0),
        s("statement"),
        None,
    ]);
    for pool in app.pools.all_sorted() {
        let cl = |st: ClientState| pool.client_states.get(st as usize);
        let sv = |st: ServerState| pool.servers.count(st);
        let maxwait = clients
            .iter()
            .filter(|c| c.belongs_to(&pool))
            .map(|c| c.waiting_for_us())
            .max()
            .unwrap_or(0);
        rows.push(vec![
            s(&pool.def.db_name),
            s(&pool.def.login_user),
            s(cl(ClientState::Active)),
            s(cl(ClientState::Waiting)),
            s(cl(ClientState::ActiveCancelReq)),
            s(cl(ClientState::WaitingCancelReq)),
            s(sv(ServerState::Active)),
            s(sv(ServerState::ActiveCancel)),
            s(sv(ServerState::BeingCanceled)),
            s(sv(ServerState::Idle)),
            s(sv(ServerState::Used)),
            s(sv(ServerState::Tested)),
            s(sv(ServerState::Login)),
            s(maxwait / 1_000_000),
            s(maxwait % 1_000_000),
            s(pool.def.pool_mode.as_str()),
            load_balance_hosts(&config, &pool.def.db_name),
        ]);
    }
    table(buf, &cols, &rows);
}

/// Database names SHOW DATABASES lists: configured ones, plus those auto-created from `*`.
fn database_names(app: &App, config: &Config) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = config.databases.keys().cloned().collect();
    for p in app.pools.all() {
        if config.database_for(&p.def.db_name).is_some() {
            names.insert(p.def.db_name.clone());
        }
    }
    names
}

pub fn databases(app: &App, buf: &mut BytesMut) {
    let config = app.config();
    let st = &config.settings;
    let cols = [
        ("name", S),
        ("host", S),
        ("port", I),
        ("database", S),
        ("force_user", S),
        ("pool_size", I),
        ("min_pool_size", I),
        ("reserve_pool_size", I),
        ("server_lifetime", I),
        ("pool_mode", S),
        ("load_balance_hosts", S),
        ("max_connections", I),
        ("current_connections", I),
        ("max_client_connections", I),
        ("current_client_connections", I),
        ("paused", I),
        ("disabled", I),
        // krbouncer
        ("server_krb_spn", S),
        ("server_gssauth_negotiate", S),
        ("server_gssencmode", S),
    ];
    let admins = app
        .client_registry
        .snapshot()
        .iter()
        .filter(|c| c.is_admin())
        .count();
    let mut rows = Rows::new();
    for name in database_names(app, &config) {
        let Some(db) = config.database_for(&name) else {
            continue;
        };
        let pools = app.pools.pools_of_db(&name);
        let servers: usize = pools
            .iter()
            .map(|p| p.server_count.load(Ordering::Relaxed))
            .sum();
        let clients: usize = pools
            .iter()
            .map(|p| p.client_count.load(Ordering::Relaxed))
            .sum();
        let control = app.pools.db_control(&name);
        let spn = config.krb_spn_for(&db);
        rows.push(vec![
            s(&name),
            db.host.clone(),
            s(db.port),
            s(&db.dbname),
            db.user.clone(),
            s(db.pool_size.unwrap_or(st.default_pool_size)),
            s(db.min_pool_size.unwrap_or(st.min_pool_size)),
            s(db.reserve_pool_size.unwrap_or(st.reserve_pool_size)),
            s(config.server_lifetime_for(&db).as_secs()),
            db.pool_mode.map(|m| m.as_str().to_string()),
            load_balance_hosts(&config, &name),
            s(config.max_db_connections_for(&db)),
            s(servers),
            s(config.max_db_client_connections_for(&db)),
            s(clients),
            s(i32::from(control.paused.is_closed())),
            s(i32::from(control.is_disabled())),
            if spn.is_empty() { None } else { Some(spn) },
            s(config.gss_negotiate_for(&db).as_str()),
            s(config.gssencmode_for(&db).as_str()),
        ]);
    }
    rows.push(vec![
        s("pgbouncer"),
        None,
        s(st.listen_port),
        s("pgbouncer"),
        s("pgbouncer"),
        s(2),
        s(0),
        s(0),
        s(st.server_lifetime.as_secs()),
        s("statement"),
        None,
        s(0),
        s(0),
        // PgBouncer: database_max_client_connections() of the admin database, the global one
        s(st.max_db_client_connections),
        s(admins),
        s(0),
        s(0),
        None,
        None,
        None,
    ]);
    table(buf, &cols, &rows);
}

pub fn users(app: &App, buf: &mut BytesMut) {
    let config = app.config();
    let cols = [
        ("name", S),
        ("pool_size", S),
        ("reserve_pool_size", S),
        ("pool_mode", S),
        ("max_user_connections", I),
        ("current_connections", I),
        ("max_user_client_connections", I),
        ("current_client_connections", I),
    ];
    let mut names: BTreeSet<String> = config.users.keys().cloned().collect();
    names.extend(config.auth_file.users.keys().cloned());
    let pools = app.pools.all();
    names.extend(pools.iter().map(|p| p.def.login_user.clone()));
    let all_clients = app.client_registry.snapshot();
    names.extend(all_clients.iter().map(|c| c.user.clone()));
    let mut rows = Rows::new();
    for name in names {
        let u = config.user_def(&name);
        let mine: Vec<&Arc<Pool>> = pools.iter().filter(|p| p.def.login_user == name).collect();
        let servers: usize = mine
            .iter()
            .map(|p| p.server_count.load(Ordering::Relaxed))
            .sum();
        // per client login user, admin console clients included (PgBouncer's
        // user->client_connection_count), not per pool login user
        let clients = all_clients.iter().filter(|c| c.user == name).count();
        rows.push(vec![
            s(&name),
            s(u.and_then(|u| u.pool_size)
                .map(|n| format!("{n:9}"))
                .unwrap_or_default()),
            s(u.and_then(|u| u.reserve_pool_size)
                .map(|n| format!("{n:9}"))
                .unwrap_or_default()),
            u.and_then(|u| u.pool_mode).map(|m| m.as_str().to_string()),
            s(config.max_user_connections_for(&name)),
            s(servers),
            s(config.max_user_client_connections_for(&name)),
            s(clients),
        ]);
    }
    table(buf, &cols, &rows);
}

/// Per-database (current totals, totals at the tick before last), databases sorted.
pub fn lists(app: &App, buf: &mut BytesMut) {
    let config = app.config();
    let clients = app.client_registry.snapshot().len();
    let servers: usize = app
        .pools
        .all()
        .iter()
        .map(|p| p.server_count.load(Ordering::Relaxed))
        .sum();
    let mut users: BTreeSet<&str> = config.users.keys().map(String::as_str).collect();
    users.extend(config.auth_file.users.keys().map(String::as_str));
    let items: [(&str, usize); 14] = [
        ("databases", database_names(app, &config).len() + 1),
        ("users", users.len()),
        ("peers", config.peers.len()),
        ("pools", app.pools.all().len() + 1),
        ("peer_pools", 0),
        ("free_clients", 0),
        ("used_clients", clients),
        ("login_clients", 0),
        ("free_servers", 0),
        ("used_servers", servers),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ];
    let rows: Rows = items.iter().map(|(n, v)| vec![s(n), s(v)]).collect();
    table(buf, &[("list", S), ("items", I)], &rows);
}

pub fn config(app: &App, buf: &mut BytesMut) {
    let rows: Rows = app
        .config()
        .settings
        .show_config_rows()
        .into_iter()
        .map(|r| {
            vec![
                s(r.key),
                r.value,
                r.default.map(str::to_string),
                s(if r.changeable { "yes" } else { "no" }),
            ]
        })
        .collect();
    table(
        buf,
        &[("key", S), ("value", S), ("default", S), ("changeable", S)],
        &rows,
    );
}

pub fn peers(app: &App, buf: &mut BytesMut) {
    let config = app.config();
    let rows: Rows = config
        .peers
        .values()
        .map(|p| {
            vec![
                s(p.peer_id),
                s(&p.host),
                s(p.port),
                s(p.pool_size.unwrap_or(config.settings.default_pool_size)),
            ]
        })
        .collect();
    table(
        buf,
        &[("peer_id", I), ("host", S), ("port", I), ("pool_size", I)],
        &rows,
    );
}

pub fn state(app: &App, buf: &mut BytesMut) {
    let paused = app.pools.global.paused.is_closed();
    let yes_no = |b: bool| s(if b { "yes" } else { "no" });
    let rows: Rows = vec![
        vec![s("active"), yes_no(!paused)],
        vec![s("paused"), yes_no(paused)],
        vec![s("suspended"), yes_no(false)],
    ];
    table(buf, &[("key", S), ("value", S)], &rows);
}

/// Result sets krbouncer has nothing to put in (no slab allocator, DNS cache, fd handover).
pub fn empty(buf: &mut BytesMut, which: &str) {
    let q = ColType::Int8;
    let cols: Vec<(&str, ColType)> = match which {
        "mem" => vec![
            ("name", S),
            ("size", I),
            ("used", I),
            ("free", I),
            ("memtotal", I),
        ],
        "dns_hosts" => vec![("hostname", S), ("ttl", q), ("addrs", S)],
        "dns_zones" => vec![("zonename", S), ("serial", q), ("count", I)],
        "peer_pools" => vec![
            ("peer_id", I),
            ("cl_active_cancel_req", I),
            ("cl_waiting_cancel_req", I),
            ("sv_active_cancel", I),
            ("sv_login", I),
        ],
        _ => vec![
            ("fd", I),
            ("task", S),
            ("user", S),
            ("database", S),
            ("addr", S),
            ("port", I),
            ("cancel", q),
            ("link", I),
            ("client_encoding", S),
            ("std_strings", S),
            ("datestyle", S),
            ("timezone", S),
            ("password", S),
            ("scram_client_key", S),
            ("scram_server_key", S),
        ],
    };
    table(buf, &cols, &Rows::new());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_like_pgbouncer() {
        assert_eq!(format_time_us(0), "1970-01-01 00:00:00 UTC");
        // 2024-02-29 12:34:56 UTC
        assert_eq!(
            format_time_us(1_709_210_096_000_000),
            "2024-02-29 12:34:56 UTC"
        );
    }
}
