//! `tcp_keepalive`, `tcp_keepidle`, `tcp_keepintvl` and `tcp_keepcnt` reach both the client
//! sockets krbouncer accepts and the server sockets it opens, read back from the kernel with
//! `ss` (iproute2), so a peer that vanishes without a FIN is eventually noticed.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::process::Command;

use common::bouncer::{Bouncer, BouncerConfig, connect_conninfo};
use common::pg::{self, PgCluster};

fn config() -> BouncerConfig {
    let pg = PgCluster::shared();
    BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(pg::TRUST_USER, pg::TRUST_PASS)
}

/// `ss` lines of the bouncer process's established TCP sockets: (local port, peer port, line).
fn sockets_of(b: &Bouncer) -> Vec<(u16, u16, String)> {
    let out = Command::new("ss")
        .args(["-H", "-tnop", "state", "established"])
        .output()
        .expect("ss runs (iproute2; .ci/install-deps.sh installs it)");
    assert!(out.status.success(), "ss: {out:?}");
    let pid = format!("pid={},", b.pid().expect("bouncer runs"));
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&pid))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((port(cols.get(2)?), port(cols.get(3)?), l.to_string()))
        })
        .collect()
}

/// The keepalive timer's remaining time in seconds, from `timer:(keepalive,16sec,0)` or
/// `timer:(keepalive,119min,0)`; None without a keepalive timer.
fn keepalive_secs(line: &str) -> Option<u64> {
    let t = line.split("timer:(keepalive,").nth(1)?;
    let v = t.split(',').next()?;
    if let Some(m) = v.strip_suffix("min") {
        return m.parse::<u64>().ok().map(|m| m * 60);
    }
    let v = v.strip_suffix("sec").unwrap_or(v);
    // "16sec" or "1.2sec"-like forms
    v.split('.').next()?.parse().ok()
}

/// Client and server socket lines of one linked client.
async fn linked_sockets(b: &Bouncer) -> (String, String, tokio_postgres::Client) {
    let (c, _task) = connect_conninfo(&b.conninfo(pg::TRUST_USER, pg::TRUST_PASS, "testdb"))
        .await
        .expect("login");
    c.simple_query("SELECT 1").await.expect("query");
    let pg_port = PgCluster::shared().port();
    // wait until nothing is in flight: a socket with unacknowledged data shows its
    // retransmission timer instead of the keepalive one
    let settled = |l: &str| l.split_whitespace().take(2).all(|q| q == "0");
    let mut socks = Vec::new();
    let found = common::wait::until(std::time::Duration::from_secs(10), || {
        socks = sockets_of(b);
        let cl = socks.iter().find(|s| s.0 == b.port());
        let sv = socks.iter().find(|s| s.1 == pg_port);
        matches!((cl, sv), (Some(cl), Some(sv)) if settled(&cl.2) && settled(&sv.2))
    });
    assert!(
        found,
        "client and server sockets not both found idle: {socks:#?}"
    );
    let line = |f: &dyn Fn(&(u16, u16, String)) -> bool| {
        socks
            .iter()
            .find(|s| f(s))
            .map(|s| s.2.clone())
            .unwrap_or_default()
    };
    (line(&|s| s.0 == b.port()), line(&|s| s.1 == pg_port), c)
}

#[tokio::test]
async fn keepalive_settings_reach_client_and_server_sockets() {
    let b = config()
        .set("tcp_keepalive", 1)
        .set("tcp_keepidle", 17)
        .set("tcp_keepintvl", 3)
        .set("tcp_keepcnt", 4)
        .start();
    let (client, server, _c) = linked_sockets(&b).await;
    for (side, line) in [("client", &client), ("server", &server)] {
        let left = keepalive_secs(line).unwrap_or_else(|| panic!("{side}: no keepalive: {line}"));
        assert!(
            left <= 17,
            "{side}: keepidle 17 s, timer says {left} s: {line}"
        );
    }
}

#[tokio::test]
async fn keepalive_is_on_by_default_and_off_when_disabled() {
    let b = config().start();
    let (client, server, _c) = linked_sockets(&b).await;
    for (side, line) in [("client", &client), ("server", &server)] {
        // the kernel's default idle time (2 h) applies
        let left = keepalive_secs(line).unwrap_or_else(|| panic!("{side}: no keepalive: {line}"));
        assert!(left > 17, "{side}: {line}");
    }
    let b = config().set("tcp_keepalive", 0).start();
    let (client, server, _c) = linked_sockets(&b).await;
    for (side, line) in [("client", &client), ("server", &server)] {
        assert!(
            keepalive_secs(line).is_none(),
            "{side}: keepalive still on: {line}"
        );
    }
}

/// `tcp_socket_buffer` is set before the server socket connects (and before the listener
/// listens): set after the handshake, Linux keeps the window scale of the default buffer and a
/// result bigger than a few hundred KiB stalled for good.
#[tokio::test]
async fn small_socket_buffers_do_not_stall_a_big_result() {
    let b = config().set("tcp_socket_buffer", 4096).start();
    let sql = "COPY (SELECT repeat('x', 1000) FROM generate_series(1, 5000)) TO STDOUT";
    let b = std::sync::Arc::new(b);
    let run = {
        let b = b.clone();
        tokio::task::spawn_blocking(move || {
            b.psql(pg::TRUST_USER, pg::TRUST_PASS, "testdb", &["-c", sql])
        })
    };
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("COPY through 4 KiB socket buffers finishes")
        .expect("psql task");
    assert!(out.status.success(), "psql: {out:?}");
    assert_eq!(out.stdout.len(), 5000 * 1001, "every row arrives");
}
