//! Peering (`peer_id`, `[peers]`, `so_reuseport`): several krbouncer processes behind one
//! address, as replicas behind a Kubernetes Service. A cancel opens a new connection, which the
//! balancer may hand to any replica; each one forwards a key it did not issue to the peer that
//! did, so every cancel lands.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::admin::show;
use common::bouncer::{Bouncer, BouncerConfig, connect_conninfo, error_text};
use common::forwarder::Forwarder;
use common::pg::{self, PgCluster};
use common::ports::free_port;
use common::wait::until;
use nix::sys::signal::Signal;

fn replica(peer_id: u16) -> BouncerConfig {
    let pg = PgCluster::shared();
    BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(pg::TRUST_USER, pg::TRUST_PASS)
        .auth(common::admin::ADMIN, common::admin::ADMIN_PASS)
        .set("admin_users", common::admin::ADMIN)
        .set("peer_id", peer_id)
}

/// Appends `[peers]` (every replica, our own entry included, as PgBouncer allows) to each
/// replica's ini, reloads, and waits until SHOW PEERS lists them all.
fn peer_up(replicas: &[Bouncer], entry: impl Fn(usize, &Bouncer) -> String) {
    let mut section = String::from("\n[peers]\n");
    for (i, b) in replicas.iter().enumerate() {
        section += &format!("{} = {}\n", i + 1, entry(i, b));
    }
    for b in replicas {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(b.ini_path())
            .expect("ini opens for append");
        f.write_all(section.as_bytes()).expect("ini append");
        b.send_signal(Signal::SIGHUP);
    }
    let rt = tokio::runtime::Handle::current();
    for b in replicas {
        let listed = until(Duration::from_secs(10), || {
            tokio::task::block_in_place(|| rt.block_on(show(b, "SHOW PEERS")))
                .rows
                .len()
                == replicas.len()
        });
        assert!(listed, "SHOW PEERS after reload:\n{}", b.log());
    }
}

/// Runs `pg_sleep` on a client reached through `conninfo`, cancels it through a new
/// connection made by `before_cancel`'s choice, and expects query_canceled.
async fn cancel_lands(conninfo: &str, before_cancel: impl FnOnce(), context: &str) {
    let pg = PgCluster::shared();
    let (c, _task) = match connect_conninfo(conninfo).await {
        Ok(c) => c,
        Err(e) => panic!("{context}: login: {}", error_text(&e)),
    };
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let token = c.cancel_token();
    let query =
        tokio::spawn(async move { c.simple_query("SELECT pg_sleep(20)").await.map(|_| ()) });
    let running = tokio::task::block_in_place(|| {
        until(Duration::from_secs(10), || {
            pg.backend_state(pid).as_deref() == Some("active")
        })
    });
    assert!(running, "{context}: the query never started");
    before_cancel();
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    let outcome = tokio::time::timeout(Duration::from_secs(10), query)
        .await
        .unwrap_or_else(|_| panic!("{context}: the cancel did not land within 10 s"))
        .expect("query task");
    match outcome {
        Err(e) => assert!(
            error_text(&e).contains("57014"),
            "{context}: {}",
            error_text(&e)
        ),
        Ok(()) => panic!("{context}: the query was not canceled"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cancel_lands_whichever_replica_receives_it() {
    let replicas: Vec<Bouncer> = (1..=3).map(|id| replica(id).start()).collect();
    peer_up(&replicas, |_, b| {
        format!("host=127.0.0.1 port={}", b.port())
    });
    let fwd = Forwarder::start(replicas.iter().map(Bouncer::port).collect());
    let conninfo = format!(
        "host=127.0.0.1 port={} user={} password={} dbname=testdb sslmode=disable connect_timeout=20",
        fwd.port(),
        pg::TRUST_USER,
        pg::TRUST_PASS
    );
    for home in 0..3 {
        for via in 0..3 {
            fwd.set_next(home);
            let context = format!(
                "client on replica {}, cancel via replica {}",
                home + 1,
                via + 1
            );
            cancel_lands(&conninfo, || fwd.set_next(via), &context).await;
        }
    }
    assert_eq!(fwd.accepted(), 18, "one login and one cancel per case");
    // replica 1 forwarded cancels to 2 and 3: its peer pools exist, now idle
    let pools = show(&replicas[0], "SHOW PEER_POOLS").await;
    let ids: Vec<_> = pools
        .rows
        .iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect();
    assert_eq!(ids, ["2", "3"], "{pools:?}");
    for r in &pools.rows {
        assert!(
            r[1..].iter().all(|v| v.as_deref() == Some("0")),
            "{pools:?}"
        );
    }
    assert!(
        replicas[1].log().contains("cancel request sent"),
        "replica 2 sent its client's cancel to PostgreSQL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn so_reuseport_lets_three_replicas_share_one_port() {
    let port = free_port();
    let replicas: Vec<Bouncer> = (1..=3)
        .map(|id| replica(id).set("so_reuseport", 1).start_on_port(port))
        .collect();
    // peers reach each other over their own unix sockets: the shared TCP port would not do
    peer_up(&replicas, |_, b| {
        format!("host={} port={port}", b.dir().display())
    });
    let conninfo = format!(
        "host=127.0.0.1 port={port} user={} password={} dbname=testdb sslmode=disable connect_timeout=20",
        pg::TRUST_USER,
        pg::TRUST_PASS
    );
    for i in 0..9 {
        cancel_lands(&conninfo, || (), &format!("attempt {i}")).await;
    }
    // the kernel spread the logins: every process served some
    let served = replicas
        .iter()
        .filter(|b| b.log().contains("login attempt"))
        .count();
    let logs: Vec<String> = replicas.iter().map(Bouncer::log).collect();
    assert!(
        served >= 2,
        "only {served} of 3 replicas got connections:\n{logs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_for_an_unknown_peer_is_dropped_with_pgbouncers_reason() {
    let b = replica(1).start();
    // a key stamped with peer 9, which is not in [peers]
    let mut key = [0u8; 8];
    key[1] = 9;
    key[7] = 3;
    let mut pkt = vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];
    pkt.extend_from_slice(&key);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", b.port())).expect("connect");
    s.write_all(&pkt).expect("send cancel");
    assert!(
        b.wait_for_log(
            "could not find peer to forward request to",
            Duration::from_secs(10)
        ),
        "{}",
        b.log()
    );
}
