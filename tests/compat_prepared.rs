//! Protocol-level prepared statements as PgBouncer 1.25's suite expects them: an admin `SET
//! max_prepared_statements` reaches clients already logged in (server caches evict down to
//! the new size), and reusing a statement name is refused with PgBouncer's log line.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::admin::{ADMIN, ADMIN_PASS, admin_config, admin_connect};
use common::client::first_value;
use common::pg;

#[tokio::test]
async fn admin_set_max_prepared_statements_reaches_logged_in_clients() {
    let b = admin_config(&[
        ("pool_mode", "transaction"),
        ("default_pool_size", "1"),
        ("max_prepared_statements", "200"),
    ])
    .start();
    let (c, _t) = b
        .connect(pg::TRUST_USER, pg::TRUST_PASS, "testdb")
        .await
        .unwrap();
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    admin
        .simple_query("SET max_prepared_statements = 1")
        .await
        .unwrap();
    for i in 0..3 {
        let stmt = c.prepare(&format!("SELECT {i}::int")).await.unwrap();
        let row = c.query_one(&stmt, &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i);
    }
    let n = first_value(&c, "SELECT count(*) FROM pg_prepared_statements")
        .await
        .unwrap();
    assert_eq!(n, "1", "the server keeps one statement\n{}", b.log());
}

const PREPARE_TWICE: &str = r#"
import sys, psycopg
from psycopg import pq
conn = psycopg.connect(sys.argv[1])
assert conn.pgconn.prepare(b"test", b"SELECT 1").status == pq.ExecStatus.COMMAND_OK
r = conn.pgconn.prepare(b"test", b"SELECT 1")
print(pq.ExecStatus(r.status).name, (r.error_message or b"").decode())
"#;

#[tokio::test]
async fn reusing_a_statement_name_is_refused_with_pgbouncers_words() {
    let b = admin_config(&[
        ("pool_mode", "transaction"),
        ("max_prepared_statements", "10"),
    ])
    .start();
    let out = common::python::run_python(
        PREPARE_TWICE,
        &[&b.conninfo(pg::TRUST_USER, pg::TRUST_PASS, "testdb")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("FATAL_ERROR"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        b.wait_for_log(
            "prepared statement 'test' was already prepared",
            Duration::from_secs(5)
        ),
        "{}",
        b.log()
    );
}
