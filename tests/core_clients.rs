//! Real clients and raw protocol edge cases through krbouncer: psql over TCP and the unix
//! socket, pgbench load in simple and extended mode, hostile startup packets, SSLRequest,
//! protocol 3.2 negotiation and startup parameter filtering, as PgBouncer 1.25 handles them.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::bouncer::{Bouncer, BouncerConfig};
use common::client::query_one_conninfo;
use common::pg::{self, PgCluster};
use common::pgbench::{pgbench, pgbench_init};
use common::wire::{self, Closing};

const ALICE: (&str, &str) = ("alice", "alice-secret");

/// `app` forced to trust_user, `testdb` with the client's own user; alice and scram_user
/// (plaintext) in users.txt.
fn config() -> BouncerConfig {
    let pg = PgCluster::shared();
    BouncerConfig::new()
        .database(format!(
            "app = {} user={}",
            pg.connstr("testdb"),
            pg::TRUST_USER
        ))
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(ALICE.0, ALICE.1)
        .auth(pg::SCRAM_USER, pg::SCRAM_PASS)
}

fn alice_startup(version: u32, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut params = vec![("user", ALICE.0), ("database", "app")];
    params.extend_from_slice(extra);
    wire::startup_packet(version, &params)
}

/// A raw md5 login as alice followed by `SELECT 1`.
fn assert_raw_login_works(b: &Bouncer) {
    let mut s = wire::connect(b.port(), Duration::from_secs(10)).expect("connect");
    let login = wire::login(
        &mut s,
        &alice_startup(wire::PROTO_3_0, &[]),
        ALICE.0,
        ALICE.1,
    )
    .unwrap_or_else(|e| panic!("login io: {e}\n{}", b.log()));
    assert!(login.ready, "{login:?}\n{}", b.log());
    assert_eq!(
        wire::simple_query(&mut s, "SELECT 1").expect("io"),
        Ok(vec!["1".to_string()])
    );
    wire::terminate(s);
}

#[test]
fn psql_over_tcp_and_unix_socket() {
    let b = config().start();
    let out = b.psql(ALICE.0, ALICE.1, "app", &["-At", "-c", "select 1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    let out = Command::new("psql")
        .args(["-X", "-At", "-h"])
        .arg(b.dir())
        .arg("-p")
        .arg(b.port().to_string())
        .args(["-U", ALICE.0, "-d", "app", "-c", "select current_user"])
        .env("PGPASSWORD", ALICE.1)
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "unix socket: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pg::TRUST_USER);
}

#[tokio::test]
async fn tokio_postgres_over_unix_socket() {
    let b = config().start();
    let r = query_one_conninfo(&b.conninfo_unix(ALICE.0, ALICE.1, "app"), "SELECT 7").await;
    assert_eq!(r.unwrap_or_else(|f| panic!("{f}\n{}", b.log())), "7");
}

fn assert_pgbench_clean(mode: &str, out: &std::process::Output, b: &Bouncer) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pgbench {mode}: {}\n{stdout}\n{stderr}\n{}",
        out.status,
        b.log()
    );
    if let Some(line) = stdout
        .lines()
        .find(|l| l.starts_with("number of failed transactions"))
    {
        assert!(line.contains(": 0 "), "pgbench {mode}: {line}");
    }
    let processed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|rest| rest.split('/').next())
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(processed > 0, "pgbench {mode} processed nothing:\n{stdout}");
}

#[test]
fn pgbench_session_mode_simple_and_extended() {
    let b = config()
        .set("default_pool_size", "25")
        .set("max_client_conn", "100")
        .start();
    pgbench_init(&b);
    for mode in ["simple", "extended"] {
        let out = pgbench(&b, &["-c", "20", "-j", "2", "-T", "5", "-M", mode]);
        assert_pgbench_clean(mode, &out, &b);
    }
}

/// Sends `bytes` as the very first thing on a new connection and expects the bouncer to close
/// it (optionally after an ErrorResponse) within 5 s.
fn assert_rejected(b: &Bouncer, name: &str, bytes: &[u8]) {
    let mut s = wire::connect(b.port(), Duration::from_secs(5)).expect("connect");
    let _ = s.write_all(bytes);
    match wire::read_until_closed(&mut s, Duration::from_secs(5)) {
        Closing::Closed(msgs) => {
            for m in &msgs {
                assert_eq!(
                    m.tag, b'E',
                    "{name}: only an ErrorResponse may come back, got {m:?}"
                );
            }
        }
        Closing::StillOpen(msgs) => {
            panic!(
                "{name}: connection still open after 5 s ({msgs:?})\n{}",
                b.log()
            )
        }
    }
}

#[test]
fn hostile_startup_packets_are_rejected_quickly() {
    let b = config().start();
    let mut huge = (1u32 << 30).to_be_bytes().to_vec();
    huge.extend(wire::PROTO_3_0.to_be_bytes());
    assert_rejected(&b, "1 GiB length", &huge);
    assert_raw_login_works(&b);

    // a full 8-byte header whose length field (3) cannot even hold itself
    let mut short = 3u32.to_be_bytes().to_vec();
    short.extend(wire::PROTO_3_0.to_be_bytes());
    assert_rejected(&b, "length 3", &short);
    assert_raw_login_works(&b);

    let mut garbage = 32u32.to_be_bytes().to_vec();
    garbage.extend(0x1234_5678u32.to_be_bytes());
    garbage.extend((0..24).map(|_| rand::random::<u8>()));
    assert_rejected(&b, "unknown protocol code", &garbage);
    assert_raw_login_works(&b);

    // Protocol 2.0: fixed 296-byte startup packet.
    let mut v2 = 296u32.to_be_bytes().to_vec();
    v2.extend(0x0002_0000u32.to_be_bytes());
    let mut fields = vec![0u8; 288];
    fields[..3].copy_from_slice(b"app");
    fields[64..69].copy_from_slice(b"alice");
    v2.extend(fields);
    assert_rejected(&b, "protocol 2.0", &v2);
    assert_raw_login_works(&b);

    assert_rejected(
        &b,
        "HTTP request",
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_raw_login_works(&b);
}

#[test]
fn ssl_request_is_declined_then_plain_startup_works() {
    let b = config().start();
    let mut s = wire::connect(b.port(), Duration::from_secs(10)).expect("connect");
    s.write_all(&wire::ssl_request()).expect("send SSLRequest");
    let mut answer = [0u8; 1];
    std::io::Read::read_exact(&mut s, &mut answer).expect("SSLRequest answer");
    assert_eq!(answer[0], b'N', "no TLS configured: expect 'N'");
    let login = wire::login(
        &mut s,
        &alice_startup(wire::PROTO_3_0, &[]),
        ALICE.0,
        ALICE.1,
    )
    .expect("login io");
    assert!(login.ready, "{login:?}\n{}", b.log());
    assert_eq!(
        wire::simple_query(&mut s, "SELECT 2").expect("io"),
        Ok(vec!["2".to_string()])
    );
}

fn negotiate_fields(m: &wire::Msg) -> (i32, Vec<String>) {
    assert!(m.body.len() >= 8, "short NegotiateProtocolVersion {m:?}");
    let minor = i32::from_be_bytes([m.body[0], m.body[1], m.body[2], m.body[3]]);
    let names = m.body[8..]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    (minor, names)
}

#[test]
fn protocol_3_2_is_negotiated_down_to_3_0() {
    let b = config().start();
    let mut s = wire::connect(b.port(), Duration::from_secs(10)).expect("connect");
    let login = wire::login(
        &mut s,
        &alice_startup(wire::PROTO_3_2, &[]),
        ALICE.0,
        ALICE.1,
    )
    .expect("login io");
    let negotiate = login
        .negotiate
        .as_ref()
        .expect("NegotiateProtocolVersion ('v')");
    let (minor, names) = negotiate_fields(negotiate);
    assert_eq!(minor, 3 << 16, "newest supported version, 3.0");
    assert!(names.is_empty(), "{names:?}");
    assert!(login.ready, "{login:?}\n{}", b.log());
    assert_eq!(
        wire::simple_query(&mut s, "SELECT 3").expect("io"),
        Ok(vec!["3".to_string()])
    );
}

#[test]
fn protocol_options_are_reported_as_unsupported() {
    let b = config().start();
    let mut s = wire::connect(b.port(), Duration::from_secs(10)).expect("connect");
    let startup = alice_startup(wire::PROTO_3_0, &[("_pq_.test_option", "on")]);
    let login = wire::login(&mut s, &startup, ALICE.0, ALICE.1).expect("login io");
    let negotiate = login
        .negotiate
        .as_ref()
        .expect("NegotiateProtocolVersion ('v')");
    let (minor, names) = negotiate_fields(negotiate);
    assert_eq!(minor, 3 << 16);
    assert_eq!(names, vec!["_pq_.test_option".to_string()]);
    assert!(login.ready, "{login:?}\n{}", b.log());
}

#[test]
fn unsupported_startup_parameter_is_refused_unless_ignored() {
    let strict = config().start();
    let mut s = wire::connect(strict.port(), Duration::from_secs(10)).expect("connect");
    let startup = alice_startup(wire::PROTO_3_0, &[("extra_float_digits", "2")]);
    let login = wire::login(&mut s, &startup, ALICE.0, ALICE.1).expect("login io");
    let err = login.error.as_ref().expect("an ErrorResponse");
    assert_eq!(
        err.message(),
        "unsupported startup parameter: extra_float_digits"
    );
    assert!(!login.ready);

    let lenient = config()
        .set("ignore_startup_parameters", "extra_float_digits")
        .start();
    let mut s = wire::connect(lenient.port(), Duration::from_secs(10)).expect("connect");
    let login = wire::login(&mut s, &startup, ALICE.0, ALICE.1).expect("login io");
    assert!(login.ready, "{login:?}\n{}", lenient.log());
    // application_name is always accepted
    let mut s = wire::connect(strict.port(), Duration::from_secs(10)).expect("connect");
    let startup = alice_startup(wire::PROTO_3_0, &[("application_name", "core_clients")]);
    let login = wire::login(&mut s, &startup, ALICE.0, ALICE.1).expect("login io");
    assert!(login.ready, "{login:?}\n{}", strict.log());
}
