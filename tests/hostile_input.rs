//! Hostile input against the running binary: each case must end in an ErrorResponse (with
//! PostgreSQL's SQLSTATE where it has one) and a closed socket, quickly, while a client that is
//! already logged in keeps being served and the pooler's memory stays bounded.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::bouncer::{Bouncer, BouncerConfig};
use common::pg::{self, PgCluster};
use common::wire::{self, Closing, Msg};

const ALICE: (&str, &str) = ("alice", "alice-secret");

fn config() -> BouncerConfig {
    let pg = PgCluster::shared();
    BouncerConfig::new()
        .database(format!(
            "app = {} user={}",
            pg.connstr("testdb"),
            pg::TRUST_USER
        ))
        .auth(ALICE.0, ALICE.1)
}

fn alice_startup() -> Vec<u8> {
    wire::startup_packet(wire::PROTO_3_0, &[("user", ALICE.0), ("database", "app")])
}

/// A logged-in raw client that must keep working whatever the others send.
struct Bystander(TcpStream);

impl Bystander {
    fn login(b: &Bouncer) -> Bystander {
        let mut s = wire::connect(b.port(), Duration::from_secs(10)).expect("connect");
        let login = wire::login(&mut s, &alice_startup(), ALICE.0, ALICE.1).expect("login io");
        assert!(login.ready, "{login:?}\n{}", b.log());
        Bystander(s)
    }

    fn still_served(&mut self, after: &str) {
        let answer = wire::simple_query(&mut self.0, "SELECT 41 + 1").expect("bystander io");
        assert_eq!(
            answer,
            Ok(vec!["42".to_string()]),
            "bystander after {after}"
        );
    }
}

/// Sends `bytes` and expects the connection closed within `within`, after nothing but
/// ErrorResponses; returns them.
fn refused(b: &Bouncer, name: &str, bytes: &[u8], within: Duration) -> Vec<Msg> {
    let mut s = wire::connect(b.port(), within).expect("connect");
    let started = Instant::now();
    let _ = s.write_all(bytes);
    match wire::read_until_closed(&mut s, within) {
        Closing::Closed(msgs) => {
            assert!(
                msgs.iter().all(|m| m.tag == b'E'),
                "{name}: only an ErrorResponse may come back: {msgs:?}"
            );
            assert!(started.elapsed() < within, "{name}");
            msgs
        }
        Closing::StillOpen(msgs) => panic!(
            "{name}: still open after {within:?} ({msgs:?})\n{}",
            b.log()
        ),
    }
}

fn sqlstate(msgs: &[Msg]) -> String {
    msgs.first().map(Msg::sqlstate).unwrap_or_default()
}

#[test]
fn impossible_length_words_are_refused_at_once() {
    let b = config().start();
    let mut bystander = Bystander::login(&b);
    // a lone length word, nothing after it: PostgreSQL refuses as soon as it has 4 bytes
    for (name, word) in [
        ("length 4", 4u32),
        ("length 0", 0),
        ("length 7", 7),
        ("negative length", 0xffff_ffff),
        ("length 2^31-1", 0x7fff_ffff),
    ] {
        let msgs = refused(&b, name, &word.to_be_bytes(), Duration::from_secs(3));
        assert_eq!(sqlstate(&msgs), "08P01", "{name}: {msgs:?}");
        bystander.still_served(name);
    }
}

#[test]
fn garbage_and_truncated_packets_never_hang_or_disturb() {
    let b = config().set("client_login_timeout", 2).start();
    let mut bystander = Bystander::login(&b);
    for i in 0..20u8 {
        let mut junk: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
        junk[0] = i % 2; // some plausible lengths, some absurd
        refused(&b, &format!("garbage {i}"), &junk, Duration::from_secs(5));
    }
    bystander.still_served("garbage");
    // a startup packet cut short and then silence: client_login_timeout ends it
    let startup = alice_startup();
    let msgs = refused(
        &b,
        "truncated startup packet",
        &startup[..startup.len() / 2],
        Duration::from_secs(6),
    );
    assert!(
        msgs.iter()
            .any(|m| m.message().contains("client_login_timeout")),
        "{msgs:?}\n{}",
        b.log()
    );
    bystander.still_served("truncated packet");
}

#[test]
fn messages_out_of_order_during_authentication_are_refused() {
    let b = config().start();
    let mut bystander = Bystander::login(&b);
    for (name, tag) in [
        ("Query", b'Q'),
        ("Sync", b'S'),
        ("Parse", b'P'),
        ("Terminate?", b'X'),
    ] {
        let mut s = wire::connect(b.port(), Duration::from_secs(5)).expect("connect");
        s.write_all(&alice_startup()).expect("startup");
        let m = wire::read_msg(&mut s).expect("auth request");
        assert_eq!(m.tag, b'R', "{m:?}");
        let body: &[u8] = if tag == b'Q' { b"SELECT 1\0" } else { b"" };
        let _ = s.write_all(&wire::frontend_msg(tag, body));
        match wire::read_until_closed(&mut s, Duration::from_secs(5)) {
            Closing::Closed(msgs) => assert!(
                msgs.iter().all(|m| m.tag == b'E'),
                "{name} instead of a password: {msgs:?}"
            ),
            Closing::StillOpen(msgs) => panic!("{name}: still open {msgs:?}\n{}", b.log()),
        }
        bystander.still_served(name);
    }
}

#[test]
fn a_query_over_max_packet_size_closes_only_its_client() {
    let b = config().set("max_packet_size", 16384).start();
    let mut bystander = Bystander::login(&b);
    let mut s = wire::connect(b.port(), Duration::from_secs(10)).expect("connect");
    let login = wire::login(&mut s, &alice_startup(), ALICE.0, ALICE.1).expect("login io");
    assert!(login.ready, "{login:?}");
    let sql = format!("SELECT '{}'\0", "x".repeat(100_000));
    let _ = s.write_all(&wire::frontend_msg(b'Q', sql.as_bytes()));
    match wire::read_until_closed(&mut s, Duration::from_secs(5)) {
        Closing::Closed(msgs) => {
            assert!(msgs.iter().all(|m| m.tag == b'E'), "{msgs:?}");
            assert_eq!(sqlstate(&msgs), "08P01", "{msgs:?}");
        }
        Closing::StillOpen(msgs) => panic!("still open {msgs:?}\n{}", b.log()),
    }
    bystander.still_served("an oversized query");
}

#[test]
fn a_flood_beyond_max_client_conn_is_refused_and_the_pooler_recovers() {
    let b = config().set("max_client_conn", 5).start();
    let mut bystander = Bystander::login(&b);
    let mut held = Vec::new();
    let mut refused_count = 0;
    for _ in 0..40 {
        let mut s = wire::connect(b.port(), Duration::from_secs(10)).expect("connect");
        let login = wire::login(&mut s, &alice_startup(), ALICE.0, ALICE.1).expect("login io");
        if login.ready {
            held.push(s);
        } else {
            let e = login.error.expect("refused with an error");
            assert!(
                e.message()
                    .contains("no more connections allowed (max_client_conn)"),
                "{e:?}"
            );
            refused_count += 1;
        }
    }
    assert!(
        held.len() <= 5,
        "{} logged in past max_client_conn",
        held.len()
    );
    assert!(refused_count >= 35, "only {refused_count} refused");
    bystander.still_served("the flood");
    held.clear();
    // the slots come back once the flood leaves
    let ok = common::wait::until(Duration::from_secs(10), || {
        let Ok(mut s) = wire::connect(b.port(), Duration::from_secs(5)) else {
            return false;
        };
        wire::login(&mut s, &alice_startup(), ALICE.0, ALICE.1).is_ok_and(|l| l.ready)
    });
    assert!(ok, "logins work again after the flood\n{}", b.log());
}

#[test]
fn a_login_that_never_finishes_is_closed_by_client_login_timeout() {
    let b = config().set("client_login_timeout", 1).start();
    let mut bystander = Bystander::login(&b);
    let mut s = wire::connect(b.port(), Duration::from_secs(10)).expect("connect");
    s.write_all(&alice_startup()).expect("startup");
    let m = wire::read_msg(&mut s).expect("auth request");
    assert_eq!(m.tag, b'R');
    // ... and never answer the password request
    let started = Instant::now();
    match wire::read_until_closed(&mut s, Duration::from_secs(5)) {
        Closing::Closed(msgs) => {
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "{:?}",
                started.elapsed()
            );
            assert!(
                msgs.iter()
                    .any(|m| m.message().contains("client_login_timeout")),
                "{msgs:?}"
            );
        }
        Closing::StillOpen(_) => panic!("not closed by client_login_timeout\n{}", b.log()),
    }
    bystander.still_served("a stalled login");
}
