//! The metrics the prometheus-community pgbouncer_exporter (v0.12) derives from the admin
//! console, with its names and labels verbatim so existing dashboards keep working. Computed
//! from the same state that backs `SHOW` (`Pool`, `PoolStats`, the config snapshot).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::DatabaseDef;
use crate::metrics::family::{Families, Family};
use crate::pool::Pool;
use crate::pool::clients::{ClientEntry, ClientState};
use crate::pool::counts::PoolCounts;
use crate::shared::Shared;
use crate::stats::StatsTotals;

/// The admin console's virtual database (and its pool's user), listed by SHOW like any other.
const ADMIN_DB: &str = crate::config::connstr::ADMIN_DB;

/// Everything the exporter would have scraped, written into `out`.
pub fn collect(app: &Shared, version: &str, out: &mut Families) {
    let config = app.config();
    let s = &config.settings;
    let pools = app.pools.all();

    out.gauge("pgbouncer_up", "The pgbouncer scrape succeeded", 1.0);
    let mut v = Family::gauge("pgbouncer_version_info", "The pgbouncer version info");
    v.add(&[("version", version)], 1.0);
    out.push(v);

    lists(app, &pools, config.databases.len(), out);

    out.gauge(
        "pgbouncer_config_max_client_connections",
        "Config maximum number of client connections",
        f64::from(s.max_client_conn),
    );
    out.gauge(
        "pgbouncer_config_max_user_connections",
        "Config maximum number of server connections per user",
        f64::from(s.max_user_connections),
    );

    let clients = app.client_registry.snapshot();
    client_connections(&clients, out);
    databases(app, &pools, out);
    // Every configured database has a SHOW STATS_TOTALS row, traffic or not (and so does the
    // admin console's), so the names are there from the first scrape.
    let mut names: Vec<&str> = config.databases.keys().map(String::as_str).collect();
    names.push(ADMIN_DB);
    stats_totals(&names, &pools, out);
    pool_gauges(&pools, &clients, out);
}

fn lists(app: &Shared, pools: &[Arc<Pool>], databases: usize, out: &mut Families) {
    let users: std::collections::BTreeSet<&str> =
        pools.iter().map(|p| p.login_user.as_str()).collect();
    let servers: usize = pools
        .iter()
        .map(|p| p.server_count.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    let clients = app.client_count() as f64;
    // (name, help, value) as SHOW LISTS; the admin database counts as one database.
    let rows: [(&str, &str, f64); 11] = [
        ("databases", "Count of databases", (databases + 1) as f64),
        ("users", "Count of users", users.len() as f64),
        ("pools", "Count of pools", pools.len() as f64),
        ("free_clients", "Count of free clients", 0.0),
        ("used_clients", "Count of used clients", clients),
        ("login_clients", "Count of clients in login state", 0.0),
        ("free_servers", "Count of free servers", 0.0),
        ("used_servers", "Count of used servers", servers as f64),
        ("cached_dns_names", "Count of DNS names in the cache", 0.0),
        ("cached_dns_zones", "Count of DNS zones in the cache", 0.0),
        (
            "in_flight_dns_queries",
            "Count of in-flight DNS queries",
            0.0,
        ),
    ];
    for (name, help, value) in rows {
        out.gauge(&format!("pgbouncer_{name}"), help, value);
    }
}

/// As the exporter derives it from SHOW CLIENTS: one series per (database, user,
/// application_name, state) with the number of clients in it. Admin console clients are
/// listed under the `pgbouncer` database, as SHOW CLIENTS lists them.
fn client_connections(clients: &[Arc<ClientEntry>], out: &mut Families) {
    let mut f = Family::gauge(
        "pgbouncer_client_connections",
        "Client connections by database, user, application_name and state",
    );
    let mut by_labels: std::collections::BTreeMap<(&str, &str, &str, &str), u64> =
        Default::default();
    for c in clients {
        let state = if c.state() == ClientState::Waiting {
            "waiting"
        } else {
            "active"
        };
        *by_labels
            .entry((
                c.database.as_str(),
                c.user.as_str(),
                c.application_name.as_str(),
                state,
            ))
            .or_default() += 1;
    }
    for ((db, user, app_name, state), n) in by_labels {
        f.add(
            &[
                ("database", db),
                ("user", user),
                ("application_name", app_name),
                ("state", state),
            ],
            n as f64,
        );
    }
    // absent while no client is connected (the prometheus encoder refuses empty families)
    out.push(f);
}

/// One `SHOW DATABASES` row's labels and gauges.
struct DbRow {
    name: String,
    host: String,
    port: String,
    database: String,
    force_user: String,
    pool_mode: String,
    pool_size: f64,
    reserve_pool: f64,
    max_connections: f64,
    current_connections: f64,
    paused: f64,
    disabled: f64,
}

fn db_row(app: &Shared, db: &DatabaseDef, pools: &[Arc<Pool>]) -> DbRow {
    let s = &app.config().settings;
    let current: usize = pools
        .iter()
        .filter(|p| p.db_name == db.name)
        .map(|p| p.server_count.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    DbRow {
        name: db.name.clone(),
        host: db.host.clone().unwrap_or_default(),
        port: db.port.to_string(),
        database: db.dbname.clone(),
        force_user: db.user.clone().unwrap_or_default(),
        pool_mode: db.pool_mode.map(|m| m.to_string()).unwrap_or_default(),
        pool_size: f64::from(db.pool_size.unwrap_or(s.default_pool_size)),
        reserve_pool: f64::from(db.reserve_pool_size.unwrap_or(s.reserve_pool_size)),
        max_connections: f64::from(db.max_db_connections.unwrap_or(s.max_db_connections)),
        current_connections: current as f64,
        paused: f64::from(u8::from(
            app.pools
                .existing_db_control(&db.name)
                .is_some_and(|c| c.paused.is_closed()),
        )),
        disabled: f64::from(u8::from(
            app.pools
                .existing_db_control(&db.name)
                .is_some_and(|c| c.is_disabled()),
        )),
    }
}

fn databases(app: &Shared, pools: &[Arc<Pool>], out: &mut Families) {
    let config = app.config();
    let mut rows: Vec<DbRow> = config
        .databases
        .values()
        .map(|db| db_row(app, db, pools))
        .collect();
    // The admin console's own row, as PgBouncer lists it.
    rows.push(DbRow {
        name: ADMIN_DB.into(),
        host: String::new(),
        port: config.settings.listen_port.to_string(),
        database: ADMIN_DB.into(),
        force_user: ADMIN_DB.into(),
        pool_mode: "statement".into(),
        pool_size: 2.0,
        reserve_pool: 0.0,
        max_connections: 0.0,
        current_connections: 0.0,
        paused: 0.0,
        disabled: 0.0,
    });
    type Pick = fn(&DbRow) -> f64;
    let gauges: [(&str, &str, Pick); 6] = [
        ("pool_size", "Maximum number of server connections", |r| {
            r.pool_size
        }),
        (
            "reserve_pool",
            "Maximum number of additional connections for this database",
            |r| r.reserve_pool,
        ),
        (
            "max_connections",
            "Maximum number of allowed connections for this database",
            |r| r.max_connections,
        ),
        (
            "current_connections",
            "Current number of connections for this database",
            |r| r.current_connections,
        ),
        (
            "paused",
            "1 if this database is currently paused, else 0",
            |r| r.paused,
        ),
        (
            "disabled",
            "1 if this database is currently disabled, else 0",
            |r| r.disabled,
        ),
    ];
    for (name, help, pick) in gauges {
        let mut f = Family::gauge(&format!("pgbouncer_databases_{name}"), help);
        for r in &rows {
            f.add(
                &[
                    ("name", &r.name),
                    ("host", &r.host),
                    ("port", &r.port),
                    ("database", &r.database),
                    ("force_user", &r.force_user),
                    ("pool_mode", &r.pool_mode),
                ],
                pick(r),
            );
        }
        out.push(f);
    }
}

/// Per-database totals: the sum over that database's pools (as `SHOW STATS_TOTALS`), with a
/// zero row for each of `databases` that has no pool yet.
pub fn totals_by_database(
    databases: &[&str],
    pools: &[Arc<Pool>],
) -> BTreeMap<String, StatsTotals> {
    let mut by_db: BTreeMap<String, StatsTotals> = databases
        .iter()
        .map(|d| (d.to_string(), StatsTotals::default()))
        .collect();
    for p in pools {
        *by_db.entry(p.db_name.clone()).or_default() += p.stats.totals();
    }
    by_db
}

fn stats_totals(databases: &[&str], pools: &[Arc<Pool>], out: &mut Families) {
    let by_db = totals_by_database(databases, pools);
    type Pick = fn(&StatsTotals) -> f64;
    let counters: [(&str, &str, Pick); 12] = [
        (
            "queries_pooled_total",
            "Total number of SQL queries pooled",
            |t| t.query_count as f64,
        ),
        (
            "queries_duration_seconds_total",
            "Total number of seconds spent waiting for queries",
            |t| t.query_time_us as f64 / 1e6,
        ),
        (
            "received_bytes_total",
            "Total volume in bytes of network traffic received",
            |t| t.bytes_received as f64,
        ),
        (
            "sent_bytes_total",
            "Total volume in bytes of network traffic sent",
            |t| t.bytes_sent as f64,
        ),
        (
            "client_wait_seconds_total",
            "Time spent by clients waiting for a server, in seconds",
            |t| t.wait_time_us as f64 / 1e6,
        ),
        (
            "sql_transactions_pooled_total",
            "Total number of SQL transactions pooled",
            |t| t.xact_count as f64,
        ),
        (
            "server_in_transaction_seconds_total",
            "Total number of seconds spent in a transaction",
            |t| t.xact_time_us as f64 / 1e6,
        ),
        (
            "client_parses_total",
            "Total number of prepared statements created by clients",
            |t| t.client_parse_count as f64,
        ),
        (
            "server_parses_total",
            "Total number of prepared statements created on a server",
            |t| t.server_parse_count as f64,
        ),
        (
            "binds_total",
            "Total number of prepared statements readied for execution",
            |t| t.bind_count as f64,
        ),
        (
            "server_assignments_total",
            "Total number of times a server was assigned to a client",
            |t| t.server_assignment_count as f64,
        ),
        (
            "queries_total",
            "Total number of SQL requests pooled (legacy name)",
            |t| t.query_count as f64,
        ),
    ];
    for (name, help, pick) in counters {
        let mut f = Family::counter(&format!("pgbouncer_stats_totals_{name}"), help);
        for (db, t) in &by_db {
            f.add(&[("database", db)], pick(t));
        }
        out.push(f);
    }
}

fn pool_gauges(pools: &[Arc<Pool>], clients: &[Arc<ClientEntry>], out: &mut Families) {
    let mut rows: Vec<(&str, &str, PoolCounts)> = pools
        .iter()
        .map(|p| {
            let counts = PoolCounts::of(p, clients);
            (p.db_name.as_str(), p.login_user.as_str(), counts)
        })
        .collect();
    // SHOW POOLS always lists the admin console's own pool.
    rows.push((ADMIN_DB, ADMIN_DB, PoolCounts::default()));
    type Pick = fn(&PoolCounts) -> f64;
    let gauges: [(&str, &str, Pick); 12] = [
        (
            "client_active_connections",
            "Client connections linked to a server or idle",
            |c| c.cl_active as f64,
        ),
        (
            "client_active_cancel_connections",
            "Client connections that forwarded a cancel",
            |c| c.cl_active_cancel_req as f64,
        ),
        (
            "client_waiting_connections",
            "Client connections waiting for a server",
            |c| c.cl_waiting as f64,
        ),
        (
            "client_waiting_cancel_connections",
            "Cancel requests not yet forwarded",
            |c| c.cl_waiting_cancel_req as f64,
        ),
        (
            "server_active_connections",
            "Server connections linked to a client",
            |c| c.sv_active as f64,
        ),
        (
            "server_active_cancel_connections",
            "Server connections forwarding a cancel",
            |c| c.sv_active_cancel as f64,
        ),
        (
            "server_being_canceled_connections",
            "Server connections being canceled",
            |c| c.sv_being_canceled as f64,
        ),
        (
            "server_idle_connections",
            "Server connections idle and ready",
            |c| c.sv_idle as f64,
        ),
        (
            "server_used_connections",
            "Server connections idle, to be checked",
            |c| c.sv_used as f64,
        ),
        (
            "server_testing_connections",
            "Server connections running a check or reset",
            |c| c.sv_tested as f64,
        ),
        (
            "server_login_connections",
            "Server connections logging in",
            |c| c.sv_login as f64,
        ),
        (
            "client_maxwait_seconds",
            "Age of the oldest waiting client, in seconds",
            |c| c.maxwait_us as f64 / 1e6,
        ),
    ];
    for (name, help, pick) in gauges {
        let mut f = Family::gauge(&format!("pgbouncer_pools_{name}"), help);
        for (db, user, c) in &rows {
            f.add(&[("database", db), ("user", user)], pick(c));
        }
        out.push(f);
    }
}
