//! Counters and latency histograms every pool keeps, counted the way PgBouncer counts them
//! (`src/stats.c`): the single source behind `SHOW STATS*`, `SHOW TOTALS` and `/metrics`.
//!
//! Everything is a relaxed atomic: writers are the client tasks on the hot path, readers are
//! the admin console and the metrics scrape, and no reader needs a consistent cut across
//! counters (PgBouncer's own snapshots are not consistent either).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implicit.
pub(crate) const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A fixed-bucket latency histogram (cumulative counts are computed when read). Hand-written
/// rather than `prometheus::Histogram` so that the stats layer has no registry to thread
/// through pools; the metrics endpoint turns a [`HistogramSnapshot`] into Prometheus text.
#[derive(Default)]
pub struct Histogram {
    /// Count per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// A point-in-time copy of a [`Histogram`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts for each bound of [`LATENCY_BUCKETS`] (not including `+Inf`).
    pub cumulative: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Histogram {
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut acc = 0;
        let cumulative = LATENCY_BUCKETS
            .iter()
            .enumerate()
            .map(|(i, _)| {
                acc += self.buckets[i].load(Ordering::Relaxed);
                acc
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// One pool's totals since it was created. Field names follow `SHOW STATS_TOTALS`.
#[derive(Default)]
pub struct PoolStats {
    /// Times a server was linked to a client.
    pub server_assignment_count: AtomicU64,
    /// Transactions completed (a ReadyForQuery 'I' after work on a linked server).
    pub xact_count: AtomicU64,
    /// Queries completed (each ReadyForQuery, as PgBouncer counts `query_count`).
    pub query_count: AtomicU64,
    /// Bytes received from clients.
    pub bytes_received: AtomicU64,
    /// Bytes sent to clients (from servers).
    pub bytes_sent: AtomicU64,
    /// Microseconds spent in transactions.
    pub xact_time_us: AtomicU64,
    /// Microseconds spent in queries.
    pub query_time_us: AtomicU64,
    /// Microseconds clients spent waiting for a server.
    pub wait_time_us: AtomicU64,
    /// Parse messages received from clients (prepared statements, transaction mode).
    pub client_parse_count: AtomicU64,
    /// Parse messages sent to servers by the pooler's prepared-statement support.
    pub server_parse_count: AtomicU64,
    /// Bind messages received from clients.
    pub bind_count: AtomicU64,
    /// Successful client logins.
    pub client_login_count: AtomicU64,
    pub query_latency: Histogram,
    pub xact_latency: Histogram,
    pub wait_latency: Histogram,
    pub server_login_latency: Histogram,
    /// Totals at the last two `stats_period` ticks (older, newer), for the averages.
    pub period_snapshots: std::sync::Mutex<(StatsTotals, StatsTotals)>,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl PoolStats {
    pub(crate) fn record_assignment(&self) {
        add(&self.server_assignment_count, 1);
    }

    pub(crate) fn record_query(&self, took: Duration) {
        add(&self.query_count, 1);
        add(&self.query_time_us, took.as_micros() as u64);
        self.query_latency.observe(took);
    }

    pub(crate) fn record_xact(&self, took: Duration) {
        add(&self.xact_count, 1);
        add(&self.xact_time_us, took.as_micros() as u64);
        self.xact_latency.observe(took);
    }

    pub(crate) fn record_wait(&self, waited: Duration) {
        add(&self.wait_time_us, waited.as_micros() as u64);
        self.wait_latency.observe(waited);
    }

    pub(crate) fn record_bytes(&self, from_client: u64, to_client: u64) {
        add(&self.bytes_received, from_client);
        add(&self.bytes_sent, to_client);
    }

    pub(crate) fn record_client_parse(&self) {
        add(&self.client_parse_count, 1);
    }

    pub(crate) fn record_server_parse(&self) {
        add(&self.server_parse_count, 1);
    }

    pub(crate) fn record_bind(&self) {
        add(&self.bind_count, 1);
    }

    pub fn record_client_login(&self) {
        add(&self.client_login_count, 1);
    }

    pub(crate) fn record_server_login(&self, took: Duration) {
        self.server_login_latency.observe(took);
    }

    /// A `stats_period` tick: the newer snapshot becomes the older one.
    pub fn rotate_period(&self) {
        let now = self.totals();
        let mut p = self
            .period_snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        p.0 = p.1;
        p.1 = now;
    }

    /// The totals at the tick before last (the base of the current averages).
    pub(crate) fn older_totals(&self) -> StatsTotals {
        self.period_snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
    }

    /// The counters in `SHOW STATS_TOTALS` order (after `database`).
    pub fn totals(&self) -> StatsTotals {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsTotals {
            server_assignment_count: l(&self.server_assignment_count),
            xact_count: l(&self.xact_count),
            query_count: l(&self.query_count),
            bytes_received: l(&self.bytes_received),
            bytes_sent: l(&self.bytes_sent),
            xact_time_us: l(&self.xact_time_us),
            query_time_us: l(&self.query_time_us),
            wait_time_us: l(&self.wait_time_us),
            client_parse_count: l(&self.client_parse_count),
            server_parse_count: l(&self.server_parse_count),
            bind_count: l(&self.bind_count),
            client_login_count: l(&self.client_login_count),
        }
    }
}

/// A copy of the counters, addable across pools (per-database totals are the sum over pools).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsTotals {
    pub server_assignment_count: u64,
    pub xact_count: u64,
    pub query_count: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub xact_time_us: u64,
    pub query_time_us: u64,
    pub wait_time_us: u64,
    pub client_parse_count: u64,
    pub server_parse_count: u64,
    pub bind_count: u64,
    pub client_login_count: u64,
}

impl std::ops::AddAssign for StatsTotals {
    fn add_assign(&mut self, o: StatsTotals) {
        self.server_assignment_count += o.server_assignment_count;
        self.xact_count += o.xact_count;
        self.query_count += o.query_count;
        self.bytes_received += o.bytes_received;
        self.bytes_sent += o.bytes_sent;
        self.xact_time_us += o.xact_time_us;
        self.query_time_us += o.query_time_us;
        self.wait_time_us += o.wait_time_us;
        self.client_parse_count += o.client_parse_count;
        self.server_parse_count += o.server_parse_count;
        self.bind_count += o.bind_count;
        self.client_login_count += o.client_login_count;
    }
}

/// The times of the last two `stats_period` ticks.
pub struct StatsClock {
    /// (old_stamp, new_stamp) as in PgBouncer's stats.c.
    stamps: Mutex<(Instant, Instant)>,
}

impl Default for StatsClock {
    fn default() -> Self {
        StatsClock::new()
    }
}

impl StatsClock {
    pub(crate) fn new() -> StatsClock {
        let now = Instant::now();
        // PgBouncer starts with old_stamp one second back, so early averages are per second
        let old = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        StatsClock {
            stamps: Mutex::new((old, now)),
        }
    }

    /// A `stats_period` tick (`stats_period::run`).
    pub fn tick(&self) {
        let mut s = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = s.1;
        s.1 = Instant::now();
    }

    /// Microseconds since the tick before last: the averaging window.
    pub(crate) fn window_us(&self) -> u64 {
        let s = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        s.0.elapsed().as_micros() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300)); // <= 0.0005
        h.observe(Duration::from_millis(3)); // <= 0.005
        h.observe(Duration::from_secs(100)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], 1);
        assert_eq!(s.cumulative[3], 2);
        assert_eq!(*s.cumulative.last().unwrap(), 2);
        assert!((s.sum_seconds - 100.0033).abs() < 1e-6);
    }

    #[test]
    fn totals_add_up_across_pools() {
        let a = PoolStats::default();
        a.record_query(Duration::from_micros(10));
        a.record_bytes(5, 7);
        let b = PoolStats::default();
        b.record_query(Duration::from_micros(20));
        let mut t = a.totals();
        t += b.totals();
        assert_eq!(t.query_count, 2);
        assert_eq!(t.query_time_us, 30);
        assert_eq!(t.bytes_received, 5);
        assert_eq!(t.bytes_sent, 7);
    }
}
