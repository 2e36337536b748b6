//! `stats_period`: every period each pool's totals are snapshotted, the averages behind
//! `SHOW STATS` / `STATS_AVERAGES` / `TOTALS` are computed against the snapshot before last
//! (as PgBouncer's `refresh_stats`), and with `log_stats` one "stats: ..." line is logged.

use std::sync::Arc;
use std::time::Duration;

use crate::shared::Shared;
use crate::stats::StatsTotals;

/// Averages over one window, named as `StatsTotals` (rates per second, times per event).
pub(crate) fn average(cur: &StatsTotals, old: &StatsTotals, window_us: u64) -> StatsTotals {
    let mut avg = StatsTotals::default();
    if window_us == 0 {
        return avg;
    }
    let rate = |c: u64, o: u64| 1_000_000u64.saturating_mul(c.saturating_sub(o)) / window_us;
    let per = |c: u64, o: u64, n: u64| c.saturating_sub(o).checked_div(n).unwrap_or(0);
    let queries = cur.query_count.saturating_sub(old.query_count);
    let xacts = cur.xact_count.saturating_sub(old.xact_count);
    let assignments = cur
        .server_assignment_count
        .saturating_sub(old.server_assignment_count);
    avg.query_count = rate(cur.query_count, old.query_count);
    avg.xact_count = rate(cur.xact_count, old.xact_count);
    avg.server_assignment_count = rate(cur.server_assignment_count, old.server_assignment_count);
    avg.client_login_count = rate(cur.client_login_count, old.client_login_count);
    avg.bytes_received = rate(cur.bytes_received, old.bytes_received);
    avg.bytes_sent = rate(cur.bytes_sent, old.bytes_sent);
    avg.query_time_us = per(cur.query_time_us, old.query_time_us, queries);
    avg.xact_time_us = per(cur.xact_time_us, old.xact_time_us, xacts);
    avg.wait_time_us = per(cur.wait_time_us, old.wait_time_us, assignments);
    avg.client_parse_count = rate(cur.client_parse_count, old.client_parse_count);
    avg.server_parse_count = rate(cur.server_parse_count, old.server_parse_count);
    avg.bind_count = rate(cur.bind_count, old.bind_count);
    avg
}

/// The "stats: ..." line PgBouncer logs every `stats_period` with `log_stats`.
pub fn log_line(avg: &StatsTotals) -> String {
    format!(
        "stats: {} xacts/s, {} queries/s, {} client parses/s, {} server parses/s, {} binds/s, \
         in {} B/s, out {} B/s, xact {} us, query {} us, wait {} us",
        avg.xact_count,
        avg.query_count,
        avg.client_parse_count,
        avg.server_parse_count,
        avg.bind_count,
        avg.bytes_received,
        avg.bytes_sent,
        avg.xact_time_us,
        avg.query_time_us,
        avg.wait_time_us
    )
}

/// Runs until shutdown: ticks every `stats_period` (re-read each time, so SET/RELOAD apply).
pub async fn run(app: Arc<Shared>) {
    loop {
        let period = Duration::from_secs(app.config().settings.stats_period.max(1) as u64);
        tokio::time::sleep(period).await;
        if app.shutdown.mode() == crate::shutdown::ShutdownMode::Immediate {
            return;
        }
        app.stats_clock.tick();
        let mut cur = StatsTotals::default();
        let mut old = StatsTotals::default();
        for stats in app
            .pools
            .all()
            .iter()
            .map(|p| &p.stats)
            .chain([&app.admin_stats])
        {
            stats.rotate_period();
            cur += stats.totals();
            old += stats.older_totals();
        }
        if app.config().settings.log_stats {
            let avg = average(&cur, &old, app.stats_clock.window_us());
            tracing::info!("{}", log_line(&avg));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_are_rates_and_per_event_times() {
        let old = StatsTotals::default();
        let cur = StatsTotals {
            query_count: 20,
            query_time_us: 2000,
            server_assignment_count: 4,
            wait_time_us: 400,
            bytes_received: 1000,
            ..StatsTotals::default()
        };
        let avg = average(&cur, &old, 2_000_000);
        assert_eq!(avg.query_count, 10);
        assert_eq!(avg.query_time_us, 100);
        assert_eq!(avg.wait_time_us, 100);
        assert_eq!(avg.bytes_received, 500);
        assert!(log_line(&avg).starts_with("stats: 0 xacts/s, 10 queries/s,"));
    }
}
