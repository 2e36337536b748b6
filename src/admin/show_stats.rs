//! SHOW STATS, STATS_TOTALS, STATS_AVERAGES and TOTALS, counted as PgBouncer's `src/stats.c`
//! (per-database sums over the current pools).

use std::collections::BTreeMap;

use bytes::BytesMut;

use crate::protocol::result_set::ColType;
use crate::shared::Shared;
use crate::stats::StatsTotals;

use ColType::{Numeric as N, Text as S};

use super::table::{Rows, s, table};

fn stats_by_db(app: &Shared) -> BTreeMap<String, (StatsTotals, StatsTotals)> {
    let mut by_db: BTreeMap<String, (StatsTotals, StatsTotals)> = BTreeMap::new();
    for pool in app.pools.all() {
        let e = by_db.entry(pool.db_name.clone()).or_default();
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

pub fn stats(app: &Shared, buf: &mut BytesMut) {
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
pub fn stats_totals_or_averages(app: &Shared, buf: &mut BytesMut, averages: bool) {
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

pub fn totals(app: &Shared, buf: &mut BytesMut) {
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
    // PgBouncer's totals run over every pool, its admin console's included
    cur += app.admin_stats.totals();
    old += app.admin_stats.older_totals();
    let avg = crate::stats_period::average(&cur, &old, app.stats_clock.window_us());
    let mut rows = Rows::new();
    for (prefix, t) in [("total_", &cur), ("avg_", &avg)] {
        for (n, v) in names.iter().zip(counters(t)) {
            rows.push(vec![s(format!("{prefix}{n}")), s(v)]);
        }
    }
    table(buf, &[("name", S), ("value", N)], &rows);
}
