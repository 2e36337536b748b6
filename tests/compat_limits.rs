//! Limits, ids and admin output PgBouncer 1.25's own suite (test_limits, test_admin,
//! test_load_balance_hosts) relies on: SET of a pool size serving clients already waiting, the
//! reserve pool logged once per connection, `server_lifetime = 0`, `min_pool_size` within
//! `max_db_connections` and for forced-user databases added by RELOAD, one id counter for
//! clients and servers, `idle` clients, SHOW VERSION, admin traffic in SHOW TOTALS and
//! `load_balance_hosts = disable`.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::admin::{ADMIN, ADMIN_PASS, admin_config, admin_connect, admin_query, show};
use common::bouncer::{Bouncer, run_to_exit};
use common::client::first_value;
use common::pg::{self, PgCluster};
use common::wait;

const USER: &str = pg::TRUST_USER;
const PASS: &str = pg::TRUST_PASS;
const WAIT: Duration = Duration::from_secs(20);

async fn client(b: &Bouncer, db: &str) -> tokio_postgres::Client {
    match b.connect(USER, PASS, db).await {
        Ok((c, _task)) => c,
        Err(e) => panic!("login: {e:?}\n{}", b.log()),
    }
}

async fn servers_of(b: &Bouncer, db: &str) -> usize {
    let t = show(b, "SHOW SERVERS").await;
    let c = t.col("database");
    t.rows
        .iter()
        .filter(|r| r[c].as_deref() == Some(db))
        .count()
}

/// test_pool_size: `SET default_pool_size` applies to the existing pool, and a client already
/// queued for a slot gets one at once (before, it waited for the holder to leave).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_default_pool_size_serves_a_client_already_waiting() {
    let b = admin_config(&[("pool_mode", "session"), ("default_pool_size", "1")]).start();
    let holder = client(&b, "testdb").await;
    assert_eq!(first_value(&holder, "SELECT 1").await.unwrap(), "1");
    let waiter = client(&b, "testdb").await;
    let queued = tokio::spawn(async move { first_value(&waiter, "SELECT 2").await });
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    assert!(
        wait::until_async(WAIT, || async {
            admin_query(&admin, "SHOW POOLS")
                .await
                .is_ok_and(|t| t.num("database", "testdb", "cl_waiting") == 1)
        })
        .await,
        "second client queued\n{}",
        b.log()
    );
    admin_query(&admin, "SET default_pool_size = 2")
        .await
        .expect("set");
    let served = tokio::time::timeout(WAIT, queued).await;
    assert!(
        matches!(served, Ok(Ok(Ok(ref v))) if v == "2"),
        "queued client served while the first still holds its server: {served:?}\n{}",
        b.log()
    );
    assert_eq!(first_value(&holder, "SELECT 3").await.unwrap(), "3");
}

/// test_reserve_pool_size: "taking connection from reserve_pool" once per reserve connection,
/// not once per client waiting past `reserve_pool_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_pool_is_logged_once_per_connection_taken() {
    let b = admin_config(&[
        ("pool_mode", "session"),
        ("default_pool_size", "1"),
        ("reserve_pool_size", "1"),
        ("reserve_pool_timeout", "1"),
    ])
    .start();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(client(&b, "testdb").await);
    }
    let mut queries = Vec::new();
    for c in held {
        queries.push(tokio::spawn(async move {
            let r = first_value(&c, "SELECT 1").await;
            (c, r)
        }));
    }
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    // two servers (pool + reserve), the third client still waiting
    assert!(
        wait::until_async(WAIT, || async {
            admin_query(&admin, "SHOW POOLS").await.is_ok_and(|t| {
                t.num("database", "testdb", "cl_waiting") == 1
                    && t.num("database", "testdb", "sv_active") == 2
            })
        })
        .await,
        "pool and reserve in use, one waiting\n{}",
        b.log()
    );
    let taken = b
        .log()
        .matches("taking connection from reserve_pool")
        .count();
    assert_eq!(taken, 1, "{}", b.log());
    for q in queries {
        q.abort();
    }
}

/// PgBouncer's `server_lifetime = 0`: a server is used once, then closed (test_socket_id and
/// test_server_id count on it).
#[tokio::test]
async fn server_lifetime_zero_uses_each_server_once() {
    let b = admin_config(&[("pool_mode", "session"), ("server_lifetime", "0")]).start();
    let pid = |c: tokio_postgres::Client| async move {
        first_value(&c, "SELECT pg_backend_pid()").await.unwrap()
    };
    let first = pid(client(&b, "testdb").await).await;
    // the first client is gone (its server released) before the second asks
    assert!(
        wait::until_async(WAIT, || async {
            show(&b, "SHOW CLIENTS")
                .await
                .row_where("database", "testdb")
                .is_none()
        })
        .await,
        "{}",
        b.log()
    );
    let second = pid(client(&b, "testdb").await).await;
    assert_ne!(first, second, "a new server each time\n{}", b.log());
}

/// test_socket_id: clients and servers take their ids from one counter, as PgBouncer's sockets.
#[tokio::test]
async fn clients_and_servers_share_one_id_counter() {
    let b = admin_config(&[("pool_mode", "session")]).start();
    let c = client(&b, "testdb").await;
    assert_eq!(first_value(&c, "SELECT 1").await.unwrap(), "1");
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    let clients = admin_query(&admin, "SHOW CLIENTS").await.unwrap();
    let servers = admin_query(&admin, "SHOW SERVERS").await.unwrap();
    let client_id = clients.num("database", "testdb", "id");
    let admin_id = clients.num("database", "pgbouncer", "id");
    let server_id = servers.num("database", "testdb", "id");
    // the client came first, its server next, the admin client after both (with a counter
    // each, the first client and the first server were both 1)
    assert!(server_id > client_id, "{clients:?}\n{servers:?}");
    assert!(admin_id > server_id, "{clients:?}\n{servers:?}");
}

/// test_client_states: a client whose server went back to the pool is `idle`, also the first
/// client of a pool (whose login brought up the pool's first server).
#[tokio::test]
async fn first_client_of_a_transaction_pool_is_idle() {
    let b = admin_config(&[("pool_mode", "transaction")]).start();
    let _c = client(&b, "testdb").await;
    let t = show(&b, "SHOW CLIENTS").await;
    assert_eq!(
        t.get("database", "testdb", "state").as_deref(),
        Some("idle"),
        "{t:?}"
    );
}

/// test_show_version: SHOW VERSION and `--version` print the same line.
#[tokio::test]
async fn show_version_is_the_version_flag_line() {
    let b = admin_config(&[]).start();
    let t = show(&b, "SHOW VERSION").await;
    let shown = t.rows[0][0].clone().unwrap();
    let (status, stdout, _) = run_to_exit(&["--version"], &[], Duration::from_secs(10));
    assert!(status.success());
    assert_eq!(stdout.lines().next(), Some(shown.as_str()));
    assert!(shown.starts_with("PgBouncer 1.25"), "{shown}");
}

/// test_show_stats: SHOW TOTALS counts admin console queries (one per admin connection, as
/// PgBouncer's admin pool does).
#[tokio::test]
async fn show_totals_include_the_admin_console() {
    let b = admin_config(&[]).start();
    let _ = show(&b, "SHOW VERSION").await;
    let t = show(&b, "SHOW TOTALS").await;
    assert_eq!(t.num("name", "total_query_count", "value"), 2, "{t:?}");
    assert_eq!(t.num("name", "total_xact_count", "value"), 2, "{t:?}");
}

/// test_min_pool_size_with_lower_max_db_connections: the janitor fills `min_pool_size` only
/// up to `max_db_connections`, without closing servers to make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_pool_size_stops_at_max_db_connections() {
    let pg = PgCluster::shared();
    let b = admin_config(&[("pool_mode", "session")])
        .database(format!(
            "capped = {} min_pool_size=4 pool_size=4 max_db_connections=2",
            pg.connstr("testdb")
        ))
        .start();
    let c = client(&b, "capped").await;
    assert_eq!(first_value(&c, "SELECT 1").await.unwrap(), "1");
    let news = |b: &Bouncer| b.log().matches("new connection to server (from ").count();
    assert!(
        wait::until(WAIT, || news(&b) >= 2),
        "filled to the limit\n{}",
        b.log()
    );
    // a few janitor rounds: no more servers, none replaced
    assert!(
        !wait::until(Duration::from_secs(4), || news(&b) > 2),
        "no server opened past max_db_connections\n{}",
        b.log()
    );
    assert_eq!(servers_of(&b, "capped").await, 2);
}

/// test_min_pool_size: a forced-user database RELOAD adds gets its `min_pool_size` servers
/// before any client comes.
#[tokio::test]
async fn min_pool_size_fills_a_forced_user_database_added_by_reload() {
    let pg = PgCluster::shared();
    let b = admin_config(&[]).start();
    let ini = std::fs::read_to_string(b.ini_path()).unwrap();
    let line = format!(
        "filled = {} user={USER} min_pool_size=2\n",
        pg.connstr("testdb")
    );
    let ini = ini.replacen("[databases]\n", &format!("[databases]\n{line}"), 1);
    std::fs::write(b.ini_path(), ini).unwrap();
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    admin_query(&admin, "RELOAD").await.expect("reload");
    assert!(
        wait::until_async(WAIT, || async {
            admin_query(&admin, "SHOW POOLS")
                .await
                .is_ok_and(|t| t.num("database", "filled", "sv_idle") == 2)
        })
        .await,
        "two idle servers for the new database\n{}",
        b.log()
    );
}

/// test_load_balance_hosts_disable_good_first: with `disable` every connection goes to the
/// first host while it works (round-robin would try the unreachable second one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balance_hosts_disable_stays_on_the_first_host() {
    let pg = PgCluster::shared();
    let b = admin_config(&[("pool_mode", "session")])
        .database(format!(
            "listed = host=127.0.0.1,127.0.0.3 port={} dbname=testdb load_balance_hosts=disable",
            pg.port()
        ))
        .start();
    let one = client(&b, "listed").await;
    let two = client(&b, "listed").await;
    let (a, z) = tokio::join!(
        first_value(&one, "SELECT pg_sleep(0.2)::text"),
        first_value(&two, "SELECT pg_sleep(0.2)::text")
    );
    assert!(a.is_ok() && z.is_ok(), "{a:?} {z:?}\n{}", b.log());
    assert_eq!(servers_of(&b, "listed").await, 2, "{}", b.log());
    assert!(!b.log().contains("connect failed"), "{}", b.log());
}
