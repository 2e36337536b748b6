//! Transaction and statement pooling through krbouncer against a real PostgreSQL, as PgBouncer
//! 1.25 does them: servers shared between clients at transaction boundaries, tracked parameters
//! carried across servers, named prepared statements surviving server moves, pipelining, COPY
//! both ways, cancel, every timeout, statement mode refusing transactions, and a client that
//! vanishes mid-transaction leaving no dirty server behind.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::bouncer::{Bouncer, BouncerConfig};
use common::client::{Failure, first_value};
use common::pg::{self, PgCluster};
use common::pgbench::{pgbench, pgbench_init};
use common::wire;
use futures_util::{SinkExt, StreamExt, pin_mut};

const USER: &str = pg::TRUST_USER;
const PASS: &str = pg::TRUST_PASS;

fn config(mode: &str, pool_size: usize) -> BouncerConfig {
    let pg = PgCluster::shared();
    BouncerConfig::new()
        .database(format!("testdb = {}", pg.connstr("testdb")))
        .auth(USER, PASS)
        .auth(pg::SCRAM_USER, pg::SCRAM_PASS)
        .set("pool_mode", mode)
        .set("default_pool_size", pool_size)
}

async fn connect(b: &Bouncer) -> tokio_postgres::Client {
    connect_with(b, "").await
}

async fn connect_with(b: &Bouncer, extra: &str) -> tokio_postgres::Client {
    let conninfo = format!("{} {extra}", b.conninfo(USER, PASS, "testdb"));
    match common::bouncer::connect_conninfo(&conninfo).await {
        Ok((c, _task)) => c,
        Err(e) => panic!("login: {e}\n{}", b.log()),
    }
}

async fn pid(c: &tokio_postgres::Client) -> String {
    first_value(c, "SELECT pg_backend_pid()")
        .await
        .expect("pid query")
}

/// Waits until PostgreSQL reports a query containing `marker` as running (it has reached the
/// server, so a cancel can find it).
async fn wait_running(marker: &str) -> bool {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
         AND pid <> pg_backend_pid() AND query LIKE '%{marker}%'"
    );
    tokio::task::spawn_blocking(move || {
        let pg = PgCluster::shared();
        common::wait::until(Duration::from_secs(10), || pg.psql_super(&sql) != "0")
    })
    .await
    .unwrap_or(false)
}

/// Waits until the server backend of the client connected with `application_name` has been
/// idle for longer than `secs` (its `state_change` says so).
async fn wait_idle_longer_than(application_name: &str, secs: f64) -> bool {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle' \
         AND application_name = '{application_name}' \
         AND now() - state_change > interval '{secs} seconds'"
    );
    tokio::task::spawn_blocking(move || {
        let pg = PgCluster::shared();
        common::wait::until(Duration::from_secs(10), || pg.psql_super(&sql) != "0")
    })
    .await
    .unwrap_or(false)
}

fn sqlstate_and_message(e: &tokio_postgres::Error) -> String {
    Failure::from_pg(e).to_string()
}

#[tokio::test]
async fn clients_share_one_server_without_seeing_each_others_parameters() {
    let b = config("transaction", 1).start();
    let c1 = connect_with(&b, "application_name=one").await;
    let c2 = connect_with(&b, "application_name=two").await;
    assert_eq!(pid(&c1).await, pid(&c2).await, "pool_size=1: one server");
    c1.batch_execute("SET application_name = 'changed'; SET DateStyle = 'German'")
        .await
        .expect("set");
    for _ in 0..3 {
        assert_eq!(
            first_value(&c2, "SHOW application_name").await.unwrap(),
            "two"
        );
        assert_eq!(
            first_value(&c2, "SHOW DateStyle").await.unwrap(),
            "ISO, MDY"
        );
        assert_eq!(
            first_value(&c1, "SHOW application_name").await.unwrap(),
            "changed"
        );
        assert_eq!(
            first_value(&c1, "SHOW DateStyle").await.unwrap(),
            "German, DMY"
        );
    }
    // interleaved transactions: each sees its own rows only after commit
    c1.batch_execute("CREATE TABLE IF NOT EXISTS tx_interleave(who text)")
        .await
        .expect("create");
    c1.batch_execute("BEGIN; INSERT INTO tx_interleave VALUES ('c1'); COMMIT")
        .await
        .expect("c1 tx");
    c2.batch_execute("BEGIN; INSERT INTO tx_interleave VALUES ('c2'); COMMIT")
        .await
        .expect("c2 tx");
    assert_eq!(
        first_value(
            &c1,
            "SELECT count(*) FROM tx_interleave WHERE who IN ('c1','c2')"
        )
        .await
        .unwrap()
        .parse::<i64>()
        .unwrap()
            % 2,
        0
    );
}

#[tokio::test]
async fn a_tracked_set_follows_the_client_to_another_server() {
    let b = config("transaction", 2).start();
    let c1 = connect(&b).await;
    let c2 = connect(&b).await;
    c1.batch_execute("SET TimeZone = 'Asia/Tokyo'")
        .await
        .expect("set");
    let first = pid(&c1).await;
    // c2 holds the only idle server in a transaction; c1 must get the other one
    c2.batch_execute("BEGIN").await.expect("begin");
    let held = pid(&c2).await;
    assert_eq!(held, first, "LIFO: c2 took the idle server");
    let row = c1
        .simple_query("SELECT pg_backend_pid()::text || ' ' || current_setting('TimeZone')")
        .await
        .expect("query");
    let text = row
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a row");
    let (other_pid, tz) = text.split_once(' ').expect("pid tz");
    assert_ne!(other_pid, held, "c1 ran on the second server");
    assert_eq!(tz, "Asia/Tokyo");
    c2.batch_execute("COMMIT").await.expect("commit");
}

#[tokio::test]
async fn startup_options_are_applied_on_every_server() {
    let b = config("transaction", 2).start();
    let c = connect_with(&b, "options='-c TimeZone=Europe/Oslo'").await;
    let others = [connect(&b).await, connect(&b).await];
    for _ in 0..4 {
        others[0].batch_execute("BEGIN").await.unwrap();
        assert_eq!(
            first_value(&c, "SHOW TimeZone").await.unwrap(),
            "Europe/Oslo"
        );
        others[0].batch_execute("COMMIT").await.unwrap();
        assert_eq!(
            first_value(&c, "SHOW TimeZone").await.unwrap(),
            "Europe/Oslo"
        );
    }
}

#[tokio::test]
async fn named_prepared_statements_survive_server_moves_and_pipelining() {
    let b = config("transaction", 3).start();
    let mut tasks = Vec::new();
    for n in 0..4i32 {
        let c = connect(&b).await;
        tasks.push(tokio::spawn(async move {
            let add = c
                .prepare("SELECT $1::int + $2::int")
                .await
                .expect("prepare add");
            let who = c
                .prepare("SELECT pg_backend_pid()")
                .await
                .expect("prepare pid");
            let mut pids = std::collections::HashSet::new();
            for i in 0..60i32 {
                // pipelined: both requests are in flight before either answer is read
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&i, &n];
                let (sum, p) = tokio::join!(c.query_one(&add, &params), c.query_one(&who, &[]));
                let sum: i32 = sum.expect("execute add").get(0);
                assert_eq!(sum, i + n);
                pids.insert(p.expect("execute pid").get::<_, i32>(0));
                if i % 10 == 0 {
                    let t = c
                        .prepare(&format!("SELECT {i} + $1::int"))
                        .await
                        .expect("prepare");
                    let v: i32 = c.query_one(&t, &[&1i32]).await.expect("run").get(0);
                    assert_eq!(v, i + 1);
                }
            }
            pids.len()
        }));
    }
    let mut max_servers = 0;
    for t in tasks {
        max_servers = max_servers.max(t.await.unwrap_or_else(|e| panic!("{e}\n{}", b.log())));
    }
    assert!(
        max_servers > 1,
        "statements were used on more than one server"
    );
}

#[tokio::test]
async fn deallocate_all_forgets_the_clients_statements() {
    let b = config("transaction", 1).start();
    let c = connect(&b).await;
    let s = c.prepare("SELECT 42").await.expect("prepare");
    let v: i32 = c.query_one(&s, &[]).await.expect("run").get(0);
    assert_eq!(v, 42);
    c.batch_execute("DEALLOCATE ALL").await.expect("deallocate");
    let e = c.query_one(&s, &[]).await.expect_err("statement is gone");
    assert!(
        sqlstate_and_message(&e).contains("prepared statement did not exist"),
        "{e:?}"
    );
}

#[test]
fn duplicate_statement_name_is_refused() {
    let b = config("transaction", 1).start();
    let mut s = wire::connect(b.port(), Duration::from_secs(10)).expect("connect");
    let startup = wire::startup_packet(wire::PROTO_3_0, &[("user", USER), ("database", "testdb")]);
    wire::login(&mut s, &startup, USER, PASS).expect("login");
    let parse = |name: &str| {
        let mut body = name.as_bytes().to_vec();
        body.extend_from_slice(b"\0SELECT 1\0\0\0");
        wire::frontend_msg(b'P', &body)
    };
    let mut batch = parse("dup");
    batch.extend(wire::frontend_msg(b'S', b""));
    batch.extend(parse("dup"));
    batch.extend(wire::frontend_msg(b'S', b""));
    std::io::Write::write_all(&mut s, &batch).expect("send");
    let mut seen = Vec::new();
    loop {
        match wire::read_msg(&mut s) {
            Ok(m) => {
                if m.tag == b'E' {
                    assert!(
                        m.message()
                            .contains("prepared statement name is already in use"),
                        "{}",
                        m.message()
                    );
                    return;
                }
                seen.push(m.tag as char);
            }
            Err(e) => panic!("no error before close ({e}); saw {seen:?}\n{}", b.log()),
        }
    }
}

#[tokio::test]
async fn copy_in_and_out_in_transaction_mode() {
    let b = config("transaction", 1).start();
    let c = connect(&b).await;
    let other = connect(&b).await;
    c.batch_execute("DROP TABLE IF EXISTS copy_tx; CREATE TABLE copy_tx(n int, t text)")
        .await
        .expect("create");
    let sink = c.copy_in("COPY copy_tx FROM STDIN").await.expect("copy in");
    pin_mut!(sink);
    let mut data = String::new();
    for i in 0..5000 {
        data.push_str(&format!("{i}\trow {i}\n"));
    }
    sink.send(bytes::Bytes::from(data)).await.expect("send");
    let n = sink.finish().await.expect("finish");
    assert_eq!(n, 5000);
    assert_eq!(
        first_value(&other, "SELECT count(*) FROM copy_tx")
            .await
            .unwrap(),
        "5000"
    );
    let stream = c
        .copy_out("COPY (SELECT * FROM copy_tx ORDER BY n) TO STDOUT")
        .await
        .expect("copy out");
    pin_mut!(stream);
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        total += chunk.expect("chunk").len();
    }
    assert!(total > 5000 * 6, "got {total} bytes");
    assert_eq!(first_value(&other, "SELECT 1").await.unwrap(), "1");
}

#[tokio::test]
async fn cancel_stops_a_running_query_in_transaction_mode() {
    let b = config("transaction", 2).start();
    let c = connect(&b).await;
    let token = c.cancel_token();
    let started = std::time::Instant::now();
    let canceller = tokio::spawn(async move {
        assert!(
            wait_running("cancel_in_transaction_mode").await,
            "query never ran"
        );
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let e = tokio::time::timeout(
        Duration::from_secs(20),
        c.simple_query("SELECT pg_sleep(30) /* cancel_in_transaction_mode */"),
    )
    .await
    .expect("the cancel ended the query")
    .expect_err("canceled");
    canceller.await.unwrap().expect("cancel sent");
    assert!(sqlstate_and_message(&e).contains("57014"), "{e:?}");
    eprintln!("cancel round trip: {:?}", started.elapsed());
    assert_eq!(first_value(&c, "SELECT 1").await.unwrap(), "1");
}

#[tokio::test]
async fn cancel_for_an_idle_client_touches_nobody() {
    let b = config("transaction", 1).start();
    let idle = connect(&b).await;
    let busy = connect(&b).await;
    let token = idle.cancel_token();
    let run = tokio::spawn(async move {
        busy.simple_query("SELECT pg_sleep(1.5) /* busy_beside_idle */")
            .await
            .map(|_| ())
    });
    assert!(wait_running("busy_beside_idle").await, "query never ran");
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    run.await
        .unwrap()
        .expect("the other client's query was not canceled");
}

/// The client is disconnected with PgBouncer's reason. A client that was idle when it
/// happened only sees the connection closed (the FATAL arrived unasked, as with PgBouncer), so
/// the reason is checked in the log too.
async fn expect_disconnect(c: &tokio_postgres::Client, sql: &str, text: &str, b: &Bouncer) {
    let e = c.batch_execute(sql).await.expect_err("timeout");
    let got = sqlstate_and_message(&e);
    let logged = format!("closing because: {text}");
    assert!(
        got.contains(text) || b.wait_for_log(&logged, Duration::from_secs(5)),
        "wanted {text:?}, got {got}\n{}",
        b.log()
    );
}

#[tokio::test]
async fn query_timeout_closes_the_server_and_the_client() {
    let b = config("transaction", 1).set("query_timeout", "1").start();
    let c = connect(&b).await;
    expect_disconnect(&c, "SELECT pg_sleep(10)", "query timeout", &b).await;
    let c2 = connect(&b).await;
    assert_eq!(first_value(&c2, "SELECT 1").await.unwrap(), "1");
}

#[tokio::test]
async fn idle_transaction_timeout_applies_inside_transactions_only() {
    let b = config("transaction", 1)
        .set("idle_transaction_timeout", "1")
        .start();
    let c = connect_with(&b, "application_name=idle_outside_tx").await;
    c.batch_execute("SELECT 1").await.unwrap();
    // idle past the timeout, outside a transaction
    assert!(
        wait_idle_longer_than("idle_outside_tx", 1.6).await,
        "never idle\n{}",
        b.log()
    );
    c.batch_execute("BEGIN")
        .await
        .expect("idle outside a transaction is fine");
    assert!(
        b.wait_for_log(
            "closing because: idle transaction timeout",
            Duration::from_secs(20)
        ),
        "{}",
        b.log()
    );
    expect_disconnect(&c, "SELECT 1", "idle transaction timeout", &b).await;
}

#[tokio::test]
async fn transaction_timeout_ends_long_transactions() {
    let b = config("transaction", 1)
        .set("transaction_timeout", "2")
        .start();
    let c = connect(&b).await;
    c.batch_execute("BEGIN").await.unwrap();
    let mut failed = None;
    for _ in 0..10 {
        if let Err(e) = c.batch_execute("SELECT pg_sleep(0.5)").await {
            failed = Some(sqlstate_and_message(&e));
            break;
        }
    }
    let got = failed.expect("transaction_timeout fired");
    assert!(got.contains("transaction timeout"), "{got}\n{}", b.log());
}

#[tokio::test]
async fn client_idle_timeout_disconnects_idle_clients() {
    let b = config("transaction", 1)
        .set("client_idle_timeout", "1")
        .start();
    let c = connect(&b).await;
    c.batch_execute("SELECT 1").await.unwrap();
    assert!(
        b.wait_for_log(
            "closing because: client_idle_timeout",
            Duration::from_secs(20)
        ),
        "{}",
        b.log()
    );
    expect_disconnect(&c, "SELECT 1", "client_idle_timeout", &b).await;
}

#[tokio::test]
async fn statement_mode_refuses_transaction_blocks() {
    let b = config("statement", 1).start();
    let c = connect(&b).await;
    assert_eq!(first_value(&c, "SELECT 7").await.unwrap(), "7");
    let e = c.batch_execute("BEGIN").await.expect_err("refused");
    assert!(
        sqlstate_and_message(&e)
            .contains("transaction blocks not allowed in statement pooling mode"),
        "{e:?}"
    );
    let c2 = connect(&b).await;
    assert_eq!(
        first_value(&c2, "SELECT now() = statement_timestamp()")
            .await
            .unwrap(),
        "t",
        "the server was not left inside the transaction"
    );
}

#[tokio::test]
async fn client_dropping_mid_transaction_leaves_no_dirty_server() {
    let pg = PgCluster::shared();
    let b = config("transaction", 1).start();
    let c = connect(&b).await;
    c.batch_execute(
        "BEGIN; CREATE TEMP TABLE dirty_tx(x int) ON COMMIT DROP; INSERT INTO dirty_tx VALUES (1)",
    )
    .await
    .unwrap();
    drop(c);
    let c2 = connect(&b).await;
    assert_eq!(
        first_value(&c2, "SELECT now() = statement_timestamp()")
            .await
            .unwrap(),
        "t",
        "c2 is not inside c1's transaction"
    );
    assert_eq!(
        first_value(
            &c2,
            "SELECT count(*) FROM pg_class WHERE relname = 'dirty_tx'"
        )
        .await
        .unwrap(),
        "0"
    );
    let in_tx = pg.psql_super(
        "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND query LIKE '%dirty_tx%'",
    );
    assert_eq!(in_tx.trim(), "0", "no backend left idle in transaction");
}

#[tokio::test]
async fn user_pool_mode_overrides_the_global_one() {
    let b = config("session", 1)
        .user_line(format!("{USER} = pool_mode=transaction"))
        .start();
    let c1 = connect(&b).await;
    let c2 = connect(&b).await;
    // in session mode c2 would wait forever for c1's server
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        (pid(&c1).await, pid(&c2).await)
    })
    .await
    .expect("both clients run on the one server");
    assert_eq!(r.0, r.1);
}

#[test]
fn pgbench_transaction_mode_all_protocols() {
    let b = config("transaction", 5)
        .set("max_client_conn", "200")
        .start();
    pgbench_init(&b);
    for mode in ["simple", "extended", "prepared"] {
        let out = pgbench(&b, &["-c", "50", "-j", "2", "-T", "4", "-M", mode]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "pgbench {mode}: {}\n{stdout}\n{stderr}\n{}",
            out.status,
            b.log()
        );
        let failed = stdout
            .lines()
            .find(|l| l.starts_with("number of failed transactions"))
            .unwrap_or("number of failed transactions: 0 ");
        assert!(
            failed.contains(": 0 "),
            "pgbench {mode}: {failed}\n{stdout}\n{stderr}"
        );
        assert!(!stderr.contains("ERROR"), "pgbench {mode}: {stderr}");
        eprintln!(
            "pgbench -M {mode}: {}",
            stdout
                .lines()
                .filter(|l| l.starts_with("tps"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
}

#[tokio::test]
async fn psql_transactions_and_copy_in_transaction_mode() {
    let b = config("transaction", 1).start();
    let other = connect(&b).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("rows.csv");
    let script = format!(
        "DROP TABLE IF EXISTS psql_tx; CREATE TABLE psql_tx(n int);\n\
         BEGIN;\nINSERT INTO psql_tx SELECT generate_series(1, 100);\nCOMMIT;\n\
         \\copy (SELECT n FROM psql_tx) TO '{0}' CSV\n\
         \\copy psql_tx FROM '{0}' CSV\n\
         SELECT 'total=' || count(*) FROM psql_tx;\n",
        csv.display()
    );
    let file = dir.path().join("script.sql");
    std::fs::write(&file, script).expect("write script");
    let out = b.psql(
        USER,
        PASS,
        "testdb",
        &["-v", "ON_ERROR_STOP=1", "-f", file.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("total=200"),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    // the other client shares the single server between psql's transactions
    assert_eq!(
        first_value(&other, "SELECT count(*) FROM psql_tx")
            .await
            .unwrap(),
        "200"
    );
}

#[tokio::test]
async fn prepared_statements_survive_server_reset_query_always() {
    let b = config("transaction", 1)
        .set("server_reset_query_always", "1")
        .start();
    let c = connect(&b).await;
    let s = c.prepare("SELECT $1::int * 2").await.expect("prepare");
    for i in 0..5i32 {
        let v: i32 = c
            .query_one(&s, &[&i])
            .await
            .unwrap_or_else(|e| panic!("run {i}: {e:?}\n{}", b.log()))
            .get(0);
        assert_eq!(v, i * 2);
    }
}

#[tokio::test]
async fn per_user_query_timeout_from_the_users_section() {
    let b = config("transaction", 1)
        .user_line(format!("{USER} = query_timeout=1"))
        .start();
    let c = connect(&b).await;
    expect_disconnect(&c, "SELECT pg_sleep(10)", "query timeout", &b).await;
}

#[tokio::test]
async fn function_call_is_tracked_and_releases_the_server() {
    let b = config("transaction", 1).start();
    let other = connect(&b).await;
    let mut s = wire::connect(b.port(), Duration::from_secs(10)).expect("connect");
    let startup = wire::startup_packet(wire::PROTO_3_0, &[("user", USER), ("database", "testdb")]);
    wire::login(&mut s, &startup, USER, PASS).expect("login");
    // FunctionCall pg_backend_pid() (oid 2026): no argument formats, no arguments, text result
    let mut body = 2026u32.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    std::io::Write::write_all(&mut s, &wire::frontend_msg(b'F', &body)).expect("send");
    let mut tags = Vec::new();
    loop {
        let m = wire::read_msg(&mut s).expect("response");
        tags.push(m.tag);
        if m.tag == b'Z' {
            break;
        }
    }
    assert_eq!(
        tags,
        vec![b'V', b'Z'],
        "FunctionCallResponse then ReadyForQuery"
    );
    // the single server went back to the pool: the other client gets it
    let r = tokio::time::timeout(Duration::from_secs(10), first_value(&other, "SELECT 1"))
        .await
        .expect("server released after the function call");
    assert_eq!(r.unwrap(), "1");
}

#[tokio::test]
async fn a_server_terminated_while_idle_is_not_handed_out() {
    let pg = PgCluster::shared();
    let b = config("transaction", 1).start();
    let c = connect(&b).await;
    let victim: i32 = pid(&c).await.parse().expect("pid");
    pg.psql_super(&format!("SELECT pg_terminate_backend({victim})"));
    assert!(
        common::wait::until(Duration::from_secs(10), || !pg.backend_alive(victim)),
        "backend {victim} did not exit"
    );
    // the pooled connection is dead; the next transaction must get a fresh one, not an error
    let next: i32 = first_value(&c, "SELECT pg_backend_pid()")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.log()))
        .parse()
        .expect("pid");
    assert_ne!(next, victim);
}
