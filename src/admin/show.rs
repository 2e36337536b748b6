//! The admin console's SHOW commands, with PgBouncer 1.25's column names, order and types
//! (`src/admin.c`, `src/stats.c`); krbouncer's own columns only at the end.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;

use crate::config::Config;
use crate::pool::Pool;
use crate::pool::counts::PoolCounts;
use crate::protocol::result_set::ColType;
use crate::shared::Shared;

use ColType::{Int4 as I, Text as S};

use super::table::{Rows, s, table};

pub use super::show_conns::{clients, servers, sockets};
pub use super::show_stats::{stats, stats_totals_or_averages, totals};

/// What PgBouncer's SHOW VERSION prints; the exporter parses the `PgBouncer x.y.z` head.
pub const VERSION_TEXT: &str = crate::cli::VERSION_LINE;

fn load_balance_hosts(config: &Config, db: &str) -> Option<String> {
    let def = config.database_for(db)?;
    def.host
        .as_deref()
        .filter(|h| h.contains(','))
        .map(|_| def.load_balance_hosts.as_str().to_string())
}

pub fn pools(app: &Shared, buf: &mut BytesMut) {
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
        let c = PoolCounts::of(&pool, &clients);
        rows.push(vec![
            s(&pool.db_name),
            s(&pool.login_user),
            s(c.cl_active),
            s(c.cl_waiting),
            s(c.cl_active_cancel_req),
            s(c.cl_waiting_cancel_req),
            s(c.sv_active),
            s(c.sv_active_cancel),
            s(c.sv_being_canceled),
            s(c.sv_idle),
            s(c.sv_used),
            s(c.sv_tested),
            s(c.sv_login),
            s(c.maxwait_us / 1_000_000),
            s(c.maxwait_us % 1_000_000),
            s(pool.def().pool_mode.as_str()),
            load_balance_hosts(&config, &pool.db_name),
        ]);
    }
    table(buf, &cols, &rows);
}

/// Database names SHOW DATABASES lists: configured ones, plus those auto-created from `*`.
fn database_names(app: &Shared, config: &Config) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = config.databases.keys().cloned().collect();
    for p in app.pools.all() {
        if config.database_for(&p.db_name).is_some() {
            names.insert(p.db_name.clone());
        }
    }
    names
}

pub fn databases(app: &Shared, buf: &mut BytesMut) {
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

pub fn users(app: &Shared, buf: &mut BytesMut) {
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
    names.extend(pools.iter().map(|p| p.login_user.clone()));
    let all_clients = app.client_registry.snapshot();
    names.extend(all_clients.iter().map(|c| c.user.clone()));
    let mut rows = Rows::new();
    for name in names {
        let u = config.user_def(&name);
        let mine: Vec<&Arc<Pool>> = pools.iter().filter(|p| p.login_user == name).collect();
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
pub fn lists(app: &Shared, buf: &mut BytesMut) {
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
        ("peer_pools", app.peer_cancels.rows().len()),
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

pub fn config(app: &Shared, buf: &mut BytesMut) {
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

pub fn peers(app: &Shared, buf: &mut BytesMut) {
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

/// SHOW PEER_POOLS: one row per peer a cancel was forwarded to.
pub fn peer_pools(app: &Shared, buf: &mut BytesMut) {
    let rows: Rows = app
        .peer_cancels
        .rows()
        .into_iter()
        .map(|r| {
            vec![
                s(r.peer_id),
                s(r.cl_active_cancel_req),
                s(r.cl_waiting_cancel_req),
                s(r.sv_active_cancel),
                s(r.sv_login),
            ]
        })
        .collect();
    table(buf, &PEER_POOLS_COLUMNS, &rows);
}

const PEER_POOLS_COLUMNS: [(&str, ColType); 5] = [
    ("peer_id", ColType::Int4),
    ("cl_active_cancel_req", ColType::Int4),
    ("cl_waiting_cancel_req", ColType::Int4),
    ("sv_active_cancel", ColType::Int4),
    ("sv_login", ColType::Int4),
];

pub fn state(app: &Shared, buf: &mut BytesMut) {
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
