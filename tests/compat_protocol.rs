//! Protocol details new clients and servers bring: a libpq 18 client asking for protocol 3.2
//! (negotiated down to 3.0, as PgBouncer does) and tracked list parameters with odd values
//! (an empty `search_path`).
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::bouncer::{Bouncer, BouncerConfig};
use common::pg::{self, PgCluster};
use common::python::run_python;
use common::wire;

const USER: &str = pg::TRUST_USER;
const PASS: &str = pg::TRUST_PASS;

fn bouncer(settings: &[(&str, &str)]) -> Bouncer {
    let pg = PgCluster::shared();
    let mut cfg = BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(USER, PASS);
    for (k, v) in settings {
        cfg = cfg.set(k, v);
    }
    cfg.start()
}

/// Connects with psycopg (libpq 18) using `extra` conninfo and prints `SELECT 41+1` and the
/// negotiated protocol version.
const LIBPQ18_CLIENT: &str = r#"
import sys, psycopg
assert psycopg.pq.version() >= 180000, psycopg.pq.version()
with psycopg.connect(sys.argv[1]) as c:
    v = c.execute("SELECT 41+1").fetchone()[0]
    print(v, c.pgconn.protocol_version)
"#;

fn libpq18_query(b: &Bouncer, extra: &str) -> String {
    let conninfo = format!("{} {extra}", b.conninfo(USER, PASS, "testdb"));
    let out = run_python(LIBPQ18_CLIENT, &[&conninfo]);
    assert!(
        out.status.success(),
        "{extra}: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn libpq18_asking_for_protocol_3_2_gets_3_0() {
    let b = bouncer(&[]);
    assert_eq!(libpq18_query(&b, "max_protocol_version=3.2"), "42 3");
    assert_eq!(libpq18_query(&b, "max_protocol_version=latest"), "42 3");
    assert_eq!(
        libpq18_query(&b, "min_protocol_version=3.0 max_protocol_version=3.2"),
        "42 3"
    );
}

/// A `search_path` of one empty element is reported by the server as `""`; the re-sync must
/// send it as a literal (`''`), not as the zero-length identifier `""` the server refuses.
/// PostgreSQL 15 does not report search_path, so the client's startup value is synced on
/// every link, which is exactly the path under test.
#[test]
fn empty_tracked_search_path_survives_the_resync() {
    let b = bouncer(&[
        ("track_extra_parameters", "search_path"),
        ("pool_mode", "transaction"),
    ]);
    for (value, shown) in [("\"\"", "\"\""), ("\"$user\", Public", "\"$user\", public")] {
        let mut s = wire::connect(b.port(), Duration::from_secs(10)).expect("connect");
        let startup = wire::startup_packet(
            wire::PROTO_3_0,
            &[
                ("user", USER),
                ("database", "testdb"),
                ("search_path", value),
            ],
        );
        let login = wire::login(&mut s, &startup, USER, PASS).expect("login io");
        assert!(login.ready, "{login:?}\n{}", b.log());
        for _ in 0..2 {
            assert_eq!(
                wire::simple_query(&mut s, "SHOW search_path").expect("io"),
                Ok(vec![shown.to_string()]),
                "{value}\n{}",
                b.log()
            );
        }
        wire::terminate(s);
    }
}
