//! Pool bookkeeping without PostgreSQL: server connections over in-memory socket pairs
//! (`UnixStream::pair`, the socket flavour of `tokio::io::duplex` that `ServerStream` takes).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

use crate::config::Config;
use crate::net::stream::ServerStream;
use crate::pool::{DbControl, Pool, PoolDef, Pooled, ServerEntry, ServerSet, ServerState};
use crate::server::address::ServerAddress;
use crate::server::conn::{CancelTarget, ServerConn};
use crate::server::params::ParamSet;

fn conn() -> (ServerConn, UnixStream) {
    let (ours, theirs) = UnixStream::pair().expect("socket pair");
    let cancel = CancelTarget {
        address: ServerAddress::Tcp {
            host: "127.0.0.1".into(),
            port: 1,
        },
        pid: 1,
        key: vec![0; 4],
    };
    let c = ServerConn::new(
        ServerStream::Unix(ours),
        BytesMut::new(),
        ParamSet::new(),
        cancel,
    );
    (c, theirs)
}

fn pool(settings: &str) -> Arc<Pool> {
    let dir = tempfile::tempdir().expect("tempdir");
    let ini = format!(
        "[databases]\ndb = host=127.0.0.1 port=1 dbname=db\n[pgbouncer]\nauth_type = trust\n{settings}\n"
    );
    std::fs::write(dir.path().join("pgbouncer.ini"), ini).expect("write ini");
    let config = Config::load_with_base(Path::new("pgbouncer.ini"), dir.path()).expect("config");
    let db = config.database_for("db").expect("db is configured");
    let def = PoolDef::resolve(&config, &db, "u");
    Arc::new(Pool::new(
        def,
        None,
        None,
        Arc::new(DbControl::default()),
        Arc::new(DbControl::default()),
    ))
}

/// A pooled connection of `pool`, as `open_server` makes one.
fn pooled(pool: &Pool) -> (Pooled, UnixStream) {
    let (c, peer) = conn();
    let entry = Arc::new(ServerEntry::new(c.id, "127.0.0.1".into(), 1, None, 1, ""));
    let p = Pooled::new(
        c,
        entry,
        pool.server_count.clone(),
        pool.servers.clone(),
        Vec::new(),
    );
    (p, peer)
}

#[tokio::test]
async fn a_pooled_connection_is_counted_until_dropped_and_says_goodbye() {
    let count = Arc::new(AtomicUsize::new(0));
    let servers = Arc::new(ServerSet::default());
    let (c, mut peer) = conn();
    let id = c.id;
    let entry = Arc::new(ServerEntry::new(id, "h".into(), 1, None, 1, ""));
    let p = Pooled::new(c, entry, count.clone(), servers.clone(), Vec::new());
    servers.transition(p.entry(), ServerState::Idle);
    assert_eq!(count.load(Ordering::Relaxed), 1);
    assert_eq!(servers.count(ServerState::Idle), 1);
    assert_eq!(p.id, id, "a Pooled is used as its ServerConn");
    drop(p);
    assert_eq!(count.load(Ordering::Relaxed), 0);
    assert_eq!(servers.count(ServerState::Idle), 0);
    let mut goodbye = [0u8; 5];
    peer.read_exact(&mut goodbye).await.expect("Terminate");
    assert_eq!(goodbye, [b'X', 0, 0, 0, 4]);
}

#[tokio::test]
async fn idle_servers_are_taken_last_in_first_out() {
    let p = pool("");
    let (a, _pa) = pooled(&p);
    let (b, _pb) = pooled(&p);
    let (a_id, b_id) = (a.id, b.id);
    p.push_idle(a);
    p.push_idle(b);
    assert_eq!(p.idle_count(), 2);
    assert_eq!(p.pop_idle().map(|c| c.id), Some(b_id));
    assert_eq!(p.pop_idle().map(|c| c.id), Some(a_id));
    assert!(p.pop_idle().is_none());
    assert_eq!(
        p.server_count.load(Ordering::Relaxed),
        0,
        "dropped ones are uncounted"
    );
}

#[tokio::test]
async fn close_one_idle_closes_the_least_recently_used() {
    let p = pool("");
    let (a, mut peer_a) = pooled(&p);
    let (b, _pb) = pooled(&p);
    let b_id = b.id;
    p.push_idle(a);
    p.push_idle(b);
    assert!(p.close_one_idle());
    let mut goodbye = [0u8; 5];
    peer_a
        .read_exact(&mut goodbye)
        .await
        .expect("the older one was closed");
    assert_eq!(p.pop_idle().map(|c| c.id), Some(b_id));
    assert!(!p.close_one_idle());
}

#[tokio::test]
async fn the_janitor_closes_servers_past_server_lifetime_only() {
    let p = pool("server_lifetime = 1\nserver_idle_timeout = 0");
    let (mut old, _po) = pooled(&p);
    let (young, _py) = pooled(&p);
    let young_id = young.id;
    old.created -= Duration::from_secs(5);
    p.push_idle(old);
    p.push_idle(young);
    crate::pool::janitor::sweep(&p);
    assert_eq!(p.idle_count(), 1);
    assert_eq!(p.pop_idle().map(|c| c.id), Some(young_id));
}

#[tokio::test]
async fn close_needed_servers_are_closed_when_idle() {
    let p = pool("");
    let (a, _pa) = pooled(&p);
    let (b, _pb) = pooled(&p);
    a.entry().mark_close_needed();
    p.push_idle(a);
    p.push_idle(b);
    assert_eq!(p.close_idle_needing_close(), 1);
    assert_eq!(p.idle_count(), 1);
}
