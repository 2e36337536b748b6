//! The native metrics endpoint (`metrics_addr`): `/metrics` parsed as Prometheus text with the
//! pgbouncer_exporter names and labels, counters moving as queries run, login failures by
//! reason, latency histograms, and the `/healthz` / `/readyz` probes across a shutdown.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::bouncer::{Bouncer, BouncerConfig};
use common::client::{assert_login_fails, query_one};
use common::pg::{self, PgCluster};
use common::ports::free_port;
use common::wait;
use nix::sys::signal::Signal;

const USER: &str = pg::TRUST_USER;
const PASS: &str = pg::TRUST_PASS;

fn bouncer() -> (Bouncer, u16) {
    let pg = PgCluster::shared();
    let metrics_port = free_port();
    let b = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(USER, PASS)
        .set("metrics_addr", format!("127.0.0.1:{metrics_port}"))
        .set("default_pool_size", "7")
        .start();
    (b, metrics_port)
}

/// One HTTP GET; returns (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics_addr");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {resp}"));
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

fn scrape(port: u16) -> prometheus_parse::Scrape {
    let (status, body) = get(port, "/metrics");
    assert_eq!(status, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{body}"))
}

/// The value of `name` whose labels include all of `labels`.
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name} is not a scalar: {other:?}"),
        })
}

/// Every prometheus-community pgbouncer_exporter metric name (v0.12, collector.go).
const EXPORTER_NAMES: &[&str] = &[
    "pgbouncer_up",
    "pgbouncer_version_info",
    "pgbouncer_databases",
    "pgbouncer_users",
    "pgbouncer_pools",
    "pgbouncer_free_clients",
    "pgbouncer_used_clients",
    "pgbouncer_login_clients",
    "pgbouncer_free_servers",
    "pgbouncer_used_servers",
    "pgbouncer_cached_dns_names",
    "pgbouncer_cached_dns_zones",
    "pgbouncer_in_flight_dns_queries",
    "pgbouncer_config_max_client_connections",
    "pgbouncer_config_max_user_connections",
    "pgbouncer_client_connections",
    "pgbouncer_databases_pool_size",
    "pgbouncer_databases_reserve_pool",
    "pgbouncer_databases_max_connections",
    "pgbouncer_databases_current_connections",
    "pgbouncer_databases_paused",
    "pgbouncer_databases_disabled",
    "pgbouncer_stats_totals_queries_pooled_total",
    "pgbouncer_stats_totals_queries_duration_seconds_total",
    "pgbouncer_stats_totals_received_bytes_total",
    "pgbouncer_stats_totals_sent_bytes_total",
    "pgbouncer_stats_totals_client_wait_seconds_total",
    "pgbouncer_stats_totals_sql_transactions_pooled_total",
    "pgbouncer_stats_totals_server_in_transaction_seconds_total",
    "pgbouncer_stats_totals_client_parses_total",
    "pgbouncer_stats_totals_server_parses_total",
    "pgbouncer_stats_totals_binds_total",
    "pgbouncer_stats_totals_server_assignments_total",
    "pgbouncer_stats_totals_queries_total",
    "pgbouncer_pools_client_active_connections",
    "pgbouncer_pools_client_active_cancel_connections",
    "pgbouncer_pools_client_waiting_connections",
    "pgbouncer_pools_client_waiting_cancel_connections",
    "pgbouncer_pools_server_active_connections",
    "pgbouncer_pools_server_active_cancel_connections",
    "pgbouncer_pools_server_being_canceled_connections",
    "pgbouncer_pools_server_idle_connections",
    "pgbouncer_pools_server_used_connections",
    "pgbouncer_pools_server_testing_connections",
    "pgbouncer_pools_server_login_connections",
    "pgbouncer_pools_client_maxwait_seconds",
];

#[tokio::test]
async fn exporter_names_appear_with_live_values() {
    let (b, port) = bouncer();
    let (c, task) = b.connect(USER, PASS, "testdb").await.expect("login");
    for _ in 0..5 {
        c.simple_query("SELECT 1").await.expect("query");
    }
    let s = scrape(port);
    let names: std::collections::BTreeSet<&str> =
        s.samples.iter().map(|x| x.metric.as_str()).collect();
    let missing: Vec<&&str> = EXPORTER_NAMES
        .iter()
        .filter(|n| !names.contains(**n))
        .collect();
    assert!(missing.is_empty(), "missing {missing:?}\nhave {names:?}");
    assert_eq!(value(&s, "pgbouncer_up", &[]), Some(1.0));
    let pool = [("database", "testdb"), ("user", USER)];
    assert_eq!(
        value(&s, "pgbouncer_pools_client_active_connections", &pool),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "pgbouncer_databases_pool_size",
            &[("name", "testdb"), ("database", "testdb")]
        ),
        Some(7.0)
    );
    assert!(
        value(
            &s,
            "pgbouncer_stats_totals_queries_pooled_total",
            &[("database", "testdb")]
        )
        .is_some()
    );
    for name in [
        "krbouncer_query_duration_seconds",
        "krbouncer_transaction_duration_seconds",
        "krbouncer_client_wait_seconds",
        "krbouncer_server_login_duration_seconds",
    ] {
        let hist = s
            .samples
            .iter()
            .find(|x| x.metric == name && x.labels.get("database") == Some("testdb"))
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            matches!(hist.value, prometheus_parse::Value::Histogram(_)),
            "{name}: {:?}",
            hist.value
        );
    }
    drop(c);
    let _ = task.await;
}

#[tokio::test]
async fn counters_move_as_queries_run() {
    let (b, port) = bouncer();
    query_one(&b, USER, PASS, "testdb", "SELECT 1")
        .await
        .expect("first query");
    let db = [("database", "testdb")];
    let before = scrape(port);
    let q0 = value(&before, "pgbouncer_stats_totals_queries_pooled_total", &db).expect("q");
    let sent0 = value(&before, "pgbouncer_stats_totals_sent_bytes_total", &db).expect("sent");
    let (c, task) = b.connect(USER, PASS, "testdb").await.expect("login");
    for _ in 0..10 {
        c.simple_query("SELECT repeat('x', 1000)")
            .await
            .expect("query");
    }
    drop(c);
    let _ = task.await;
    let moved = wait::until(Duration::from_secs(30), || {
        let s = scrape(port);
        let q = value(&s, "pgbouncer_stats_totals_queries_pooled_total", &db).unwrap_or(0.0);
        let sent = value(&s, "pgbouncer_stats_totals_sent_bytes_total", &db).unwrap_or(0.0);
        q >= q0 + 10.0 && sent >= sent0 + 10_000.0
    });
    assert!(moved, "counters did not move:\n{}", get(port, "/metrics").1);
    let s = scrape(port);
    let hist = s
        .samples
        .iter()
        .find(|x| x.metric == "krbouncer_query_duration_seconds")
        .expect("query histogram");
    match &hist.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let inf = buckets.last().expect("buckets").count;
            assert!(inf >= 10.0, "{buckets:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
}

#[tokio::test]
async fn login_failures_are_counted_by_reason() {
    let (b, port) = bouncer();
    assert_login_fails(&b, USER, "wrong-password", "testdb").await;
    assert_login_fails(&b, USER, PASS, "no_such_db").await;
    let counted = wait::until(Duration::from_secs(30), || {
        let s = scrape(port);
        let r = |reason| {
            value(
                &s,
                "krbouncer_client_login_failures_total",
                &[("reason", reason)],
            )
            .unwrap_or(0.0)
        };
        r("auth_failed") >= 1.0 && r("no_such_database") >= 1.0
    });
    assert!(counted, "{}", get(port, "/metrics").1);
}

#[tokio::test]
async fn probes_follow_the_shutdown() {
    let (mut b, port) = bouncer();
    assert_eq!(get(port, "/healthz").0, 200);
    assert_eq!(get(port, "/readyz").0, 200);
    assert_eq!(get(port, "/nope").0, 404);
    // A connected client keeps a SIGTERM shutdown waiting: the process serves, not ready.
    let (c, task) = b.connect(USER, PASS, "testdb").await.expect("login");
    b.send_signal(Signal::SIGTERM);
    let not_ready = wait::until(Duration::from_secs(30), || get(port, "/readyz").0 == 503);
    assert!(not_ready, "{}", b.log());
    assert_eq!(get(port, "/healthz").0, 200);
    let s = scrape(port);
    assert_eq!(value(&s, "pgbouncer_up", &[]), Some(1.0));
    drop(c);
    let _ = task.await;
    assert!(
        b.wait_exit(Duration::from_secs(30)).is_some(),
        "{}",
        b.log()
    );
}

/// Kerberos upstream (real MIT KDC lab): GSS logins are counted, a failure is counted by reason,
/// and the ticket expiry gauge shows a positive number of seconds.
#[tokio::test]
async fn gss_logins_failures_and_ticket_expiry() {
    use common::kdc::{KrbLab, LabOptions};
    // a missing tool is a failure, never a skip
    assert!(
        KrbLab::available(),
        "the Kerberos lab needs krb5-kdc, krb5-admin-server, openssl"
    );
    let lab = KrbLab::start(LabOptions::default());
    let metrics_port = free_port();
    let db = |name: &str, extra: &str| {
        format!(
            "{name} = host=localhost port={} dbname=labdb user={} {extra}",
            lab.pg_port(),
            lab.user_principal()
        )
    };
    let mut cfg = BouncerConfig::new()
        .auth("app", "app-password")
        .database(db("good", &format!("server_krb_spn={}", lab.spn())))
        .database(db("bad", "server_krb_spn=postgres/nohost@TEST.LOCAL"))
        .set("server_gssauth_negotiate", "allow")
        .set("server_connect_timeout", "3")
        .set("metrics_addr", format!("127.0.0.1:{metrics_port}"));
    for (k, v) in lab.env() {
        if k.starts_with("KRB5") && k != "KRB5CCNAME" {
            cfg = cfg.env(&k, v);
        }
    }
    let b = cfg.env("KRB5CCNAME", "MEMORY:krbouncer").start();
    let ok = query_one(&b, "app", "app-password", "good", "SELECT 1").await;
    assert_eq!(ok.as_deref(), Ok("1"), "{}", b.log());
    assert_login_fails(&b, "app", "app-password", "bad").await;
    let s = scrape(metrics_port);
    let logins = value(&s, "krbouncer_gss_logins_total", &[("purpose", "auth")]);
    assert!(
        logins.is_some_and(|n| n >= 1.0),
        "{}",
        get(metrics_port, "/metrics").1
    );
    let failures: f64 = s
        .samples
        .iter()
        .filter(|x| x.metric == "krbouncer_gss_failures_total")
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert!(failures >= 1.0, "{}", get(metrics_port, "/metrics").1);
    let expiry = value(&s, "krbouncer_kerberos_ticket_expiry_seconds", &[]);
    assert!(
        expiry.is_some_and(|secs| secs > 0.0),
        "{expiry:?}\n{}",
        b.log()
    );
}

#[tokio::test]
async fn client_connections_carry_the_application_name() {
    let (b, port) = bouncer();
    let conninfo = format!("{} application_name=etl", b.conninfo(USER, PASS, "testdb"));
    let (c, _task) = common::bouncer::connect_conninfo(&conninfo)
        .await
        .expect("login");
    c.simple_query("SELECT 1").await.expect("query");
    let s = scrape(port);
    let labels = [
        ("database", "testdb"),
        ("user", USER),
        ("application_name", "etl"),
        ("state", "active"),
    ];
    assert_eq!(
        value(&s, "pgbouncer_client_connections", &labels),
        Some(1.0),
        "{:?}",
        s.samples
            .iter()
            .filter(|x| x.metric == "pgbouncer_client_connections")
            .collect::<Vec<_>>()
    );
}
