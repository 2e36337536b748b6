//! The admin console's SHOW commands, with PgBouncer 1.25's column names, order and types
//! (`src/admin.c`, `src/stats.c`); krbouncer's own columns only at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;

use crate::app::App;
use crate::client::registry::{ClientEntry, ClientState};
use crate::config::Config;
use crate::pool::{Pool, ServerEntry, ServerState};
use crate::protocol::result_set::{ColType, data_row, row_description};
use crate::stats::StatsTotals;

use ColType::{Int4 as I, Numeric as N, Text as S, Time as T};

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

fn s(v: impl ToString) -> Option<String> {
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

const SOCKET_COLS: [(&str, ColType); 21] = [
    ("type", S),
    ("user", S),
    ("database", S),
    ("replication", S),
    ("state", S),
    ("addr", S),
    ("port", I),
    ("local_addr", S),
    ("local_port", I),
    ("connect_time", T),
    ("request_time", T),
    ("wait", I),
    ("wait_us", I),
    ("close_needed", I),
    ("ptr", S),
    ("link", S),
    ("remote_pid", I),
    ("tls", S),
    ("application_name", S),
    ("prepared_statements", I),
    ("id", I),
];

const DEBUG_COLS: [&str; 7] = [
    "recv_pos",
    "pkt_pos",
    "pkt_remain",
    "send_pos",
    "send_remain",
    "pkt_avail",
    "send_avail",
];

fn client_ptr(id: u64) -> String {
    format!("0xc{id:07x}")
}

fn server_ptr(id: u64) -> String {
    format!("0x5{id:07x}")
}

fn client_row(c: &ClientEntry, state_prefix: &str) -> Vec<Option<String>> {
    let state = c.state();
    let shown = if state == ClientState::Active && c.link() == 0 && state_prefix.is_empty() {
        "idle"
    } else {
        state.show_name()
    };
    let wait = c.waiting_for_us();
    let link = c.link();
    vec![
        s("C"),
        s(&c.user),
        s(&c.database),
        s("none"),
        s(format!("{state_prefix}{shown}")),
        s(&c.addrs.addr),
        s(c.addrs.port),
        s(&c.addrs.local_addr),
        s(c.addrs.local_port),
        s(format_time_us(crate::pool::state::now_us(c.connect_time))),
        s(format_time_us(c.request_time_us())),
        s(wait / 1_000_000),
        s(wait % 1_000_000),
        s(0),
        s(client_ptr(c.id)),
        s(if link == 0 {
            String::new()
        } else {
            server_ptr(link)
        }),
        s(0),
        s(&c.addrs.tls),
        s(&c.application_name),
        s(0),
        s(c.id),
    ]
}

fn server_row(pool: &Pool, e: &ServerEntry, state_prefix: &str) -> Vec<Option<String>> {
    let link = e.link();
    let state = if state_prefix.is_empty() {
        e.state().show_name().to_string()
    } else if e.state() == ServerState::Login {
        format!("{state_prefix}login")
    } else {
        format!("{state_prefix}{}", e.state().show_name())
    };
    vec![
        s("S"),
        s(&pool.def.login_user),
        s(&pool.def.db_name),
        s("none"),
        s(state),
        s(&e.addr),
        s(e.port),
        s(&e.local_addr),
        s(e.local_port),
        s(format_time_us(crate::pool::state::now_us(e.connect_time))),
        s(format_time_us(e.request_time_us())),
        s(0),
        s(0),
        s(i32::from(e.close_needed())),
        s(server_ptr(e.id)),
        s(if link == 0 {
            String::new()
        } else {
            client_ptr(link)
        }),
        s(e.remote_pid),
        s(e.tls),
        s(""),
        s(0),
        s(e.id),
    ]
}

pub fn clients(app: &App, buf: &mut BytesMut) {
    let rows: Rows = app
        .client_registry
        .snapshot()
        .iter()
        .map(|c| client_row(c, ""))
        .collect();
    table(buf, &SOCKET_COLS, &rows);
}

pub fn servers(app: &App, buf: &mut BytesMut) {
    let mut rows = Rows::new();
    for pool in app.pools.all_sorted() {
        for e in pool.servers.snapshot() {
            rows.push(server_row(&pool, &e, ""));
        }
    }
    table(buf, &SOCKET_COLS, &rows);
}

/// SHOW SOCKETS / ACTIVE_SOCKETS: every socket with `cl_`/`sv_` states and the buffer columns
/// (krbouncer's buffers live in the relay, so those are 0).
pub fn sockets(app: &App, buf: &mut BytesMut) {
    let mut cols: Vec<(&str, ColType)> = SOCKET_COLS.to_vec();
    cols.extend(DEBUG_COLS.iter().map(|n| (*n, I)));
    let pad = |mut r: Vec<Option<String>>| {
        r.extend(DEBUG_COLS.iter().map(|_| s(0)));
        r
    };
    let mut rows = Rows::new();
    for c in app.client_registry.snapshot() {
        rows.push(pad(client_row(&c, "cl_")));
    }
    for pool in app.pools.all_sorted() {
        for e in pool.servers.snapshot() {
            rows.push(pad(server_row(&pool, &e, "sv_")));
        }
    }
    table(buf, &cols, &rows);
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
        s(st.max_client_conn),
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
    let mut rows = Rows::new();
    for name in names {
        let u = config.user_def(&name);
        let mine: Vec<&Arc<Pool>> = pools.iter().filter(|p| p.def.login_user == name).collect();
        let servers: usize = mine
            .iter()
            .map(|p| p.server_count.load(Ordering::Relaxed))
            .sum();
        let clients: usize = mine
            .iter()
            .map(|p| p.client_count.load(Ordering::Relaxed))
            .sum();
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
fn stats_by_db(app: &App) -> BTreeMap<String, (StatsTotals, StatsTotals)> {
    let mut by_db: BTreeMap<String, (StatsTotals, StatsTotals)> = BTreeMap::new();
    for pool in app.pools.all() {
        let e = by_db.entry(pool.def.db_name.clone()).or_default();
        e.0 += pool.stats.totals();
        e.1 += pool.stats.older_totals();
    }
    by_db
}

fn counters(t: &StatsTotals) -> [u64; 12] {
    [
        t.server_assignment_count,
        t.xact_count,
        t.query_count,
        t.bytes_received,
        t.bytes_sent,
        t.xact_time_us,
        t.query_time_us,
        t.wait_time_us,
        t.client_parse_count,
        t.server_parse_count,
        t.bind_count,
        t.client_login_count,
    ]
}

pub fn stats(app: &App, buf: &mut BytesMut) {
    let names = [
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
    let mut cols = vec![("database", S)];
    cols.extend(names.iter().map(|n| (*n, N)));
    let window = app.stats_clock.window_us();
    let rows: Rows = stats_by_db(app)
        .into_iter()
        .map(|(db, (cur, old))| {
            let avg = crate::stats_period::average(&cur, &old, window);
            let mut r = vec![s(db)];
            r.extend(counters(&cur).iter().map(s));
            r.extend(counters(&avg).iter().map(s));
            r
        })
        .collect();
    table(buf, &cols, &rows);
}

/// SHOW STATS_TOTALS (`averages = false`) and SHOW STATS_AVERAGES.
pub fn stats_totals_or_averages(app: &App, buf: &mut BytesMut, averages: bool) {
    let (parse, sparse, bind) = if averages {
        (
            "avg_client_parse_count",
            "avg_server_parse_count",
            "avg_bind_count",
        )
    } else {
        ("client_parse_count", "server_parse_count", "bind_count")
    };
    let names = [
        "server_assignment_count",
        "xact_count",
        "query_count",
        "bytes_received",
        "bytes_sent",
        "xact_time",
        "query_time",
        "wait_time",
        parse,
        sparse,
        bind,
        "client_login_count",
    ];
    let mut cols = vec![("database", S)];
    cols.extend(names.iter().map(|n| (*n, N)));
    let window = app.stats_clock.window_us();
    let rows: Rows = stats_by_db(app)
        .into_iter()
        .map(|(db, (cur, old))| {
            let v = if averages {
                crate::stats_period::average(&cur, &old, window)
            } else {
                cur
            };
            let mut r = vec![s(db)];
            r.extend(counters(&v).iter().map(s));
            r
        })
        .collect();
    table(buf, &cols, &rows);
}

pub fn totals(app: &App, buf: &mut BytesMut) {
    let names = [
        "server_assignment_count",
        "xact_count",
        "query_count",
        "client_bytes",
        "server_bytes",
        "xact_time",
        "query_time",
        "wait_time",
        "ps_client_parse_count",
        "ps_server_parse_count",
        "ps_bind_count",
        "client_login_count",
    ];
    let mut cur = StatsTotals::default();
    let mut old = StatsTotals::default();
    for (_, (c, o)) in stats_by_db(app) {
        cur += c;
        old += o;
    }
    let avg = crate::stats_period::average(&cur, &old, app.stats_clock.window_us());
    let mut rows = Rows::new();
    for (prefix, t) in [("total_", &cur), ("avg_", &avg)] {
        for (n, v) in names.iter().zip(counters(t)) {
            rows.push(vec![s(format!("{prefix}{n}")), s(v)]);
        }
    }
    table(buf, &[("name", S), ("value", N)], &rows);
}

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
