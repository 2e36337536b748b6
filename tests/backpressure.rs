//! Backpressure: a client asks for a 1 GB result and reads it a few KB per millisecond, then
//! stops reading. krbouncer must pass the pressure on to PostgreSQL (its backend ends up
//! blocked in `ClientWrite`) instead of buffering the result: its RSS stays within a few
//! megabytes of where it started, and other clients are served meanwhile.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::bouncer::{Bouncer, BouncerConfig};
use common::client::first_value;
use common::pg::{self, PgCluster};
use common::wait::until;
use common::wire;

/// 1 000 000 rows of 1000 bytes: about 1 GB on the wire.
const HUGE: &str = "SELECT repeat('x', 1000) FROM generate_series(1, 1000000)";
/// What the slow reader reads before it stalls: far beyond any buffer on the way.
const READ_SLOWLY: u64 = 24 << 20;
/// The bound on the pooler's growth (RSS, not time: machines are noisy).
const RSS_SLACK_KB: u64 = 32 << 10;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn logged_in(b: &Bouncer) -> std::net::TcpStream {
    let mut s = wire::connect(b.port(), Duration::from_secs(30)).expect("connect");
    let startup = wire::startup_packet(196608, &[("user", pg::TRUST_USER), ("database", "testdb")]);
    let login = wire::login(&mut s, &startup, pg::TRUST_USER, pg::TRUST_PASS).expect("login");
    assert!(login.ready, "login: {:?}\n{}", login.error, b.log());
    s
}

fn huge_query_backend_waits_on(pg: &PgCluster, event: &str) -> bool {
    pg.psql_super(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE query = '{}' AND wait_event = '{event}'",
        HUGE.replace('\'', "''")
    )) == "1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowly_read_1gb_result_keeps_the_pooler_flat_and_others_served() {
    let pg = PgCluster::shared();
    let b = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(pg::TRUST_USER, pg::TRUST_PASS)
        .set("pool_mode", "transaction")
        .start();
    let pid = b.pid().expect("krbouncer pid");
    // warm up: pools, buffers and code paths the big result will use
    let (bystander, _conn) = b
        .connect(pg::TRUST_USER, pg::TRUST_PASS, "testdb")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.log()));
    first_value(
        &bystander,
        "SELECT count(*) FROM (SELECT repeat('x', 1000) FROM generate_series(1, 20000)) s",
    )
    .await
    .expect("warm-up");
    let baseline = rss_kb(pid);

    let read = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut reader = logged_in(&b);
    reader
        .write_all(&wire::frontend_msg(b'Q', format!("{HUGE}\0").as_bytes()))
        .expect("send the query");
    let slow = {
        let (read, stop) = (read.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while read.load(Ordering::Relaxed) < READ_SLOWLY {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => panic!("the result ended early"),
                    Ok(n) => read.fetch_add(n as u64, Ordering::Relaxed),
                };
                std::thread::sleep(Duration::from_millis(1));
            }
            // stall: keep the socket open without reading
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(reader);
        })
    };

    let mut peak = baseline;
    let mut answered = 0;
    while read.load(Ordering::Relaxed) < READ_SLOWLY {
        peak = peak.max(rss_kb(pid));
        first_value(&bystander, "SELECT 1")
            .await
            .unwrap_or_else(|f| panic!("bystander during the slow read: {f}\n{}", b.log()));
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // the reader stalls: PostgreSQL must end up blocked writing to krbouncer
    let blocked = tokio::task::block_in_place(|| {
        until(Duration::from_secs(30), || {
            huge_query_backend_waits_on(pg, "ClientWrite")
        })
    });
    for _ in 0..10 {
        peak = peak.max(rss_kb(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first_value(&bystander, "SELECT 'still served'")
        .await
        .expect("bystander while the reader stalls");
    eprintln!(
        "read {} MB slowly; RSS baseline {baseline} kB, peak {peak} kB (+{} kB); bystander answered {answered} times",
        read.load(Ordering::Relaxed) >> 20,
        peak.saturating_sub(baseline)
    );
    assert!(
        blocked,
        "PostgreSQL never blocked on its writes: the pooler is buffering\n{}",
        pg.psql_super("SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE backend_type = 'client backend'")
    );
    assert!(
        peak < baseline + RSS_SLACK_KB,
        "RSS grew from {baseline} kB to {peak} kB while a client read a huge result slowly"
    );

    // the reader leaves mid-result: its server is cut and PostgreSQL's backend ends
    stop.store(true, Ordering::Relaxed);
    slow.join().expect("slow reader");
    let freed = tokio::task::block_in_place(|| {
        until(Duration::from_secs(30), || {
            pg.psql_super(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE query = '{}' AND state = 'active'",
                HUGE.replace('\'', "''")
            )) == "0"
        })
    });
    assert!(freed, "the abandoned query still runs\n{}", b.log());
    first_value(&bystander, "SELECT 1")
        .await
        .expect("bystander after the reader left");
}
