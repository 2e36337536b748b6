//! A server connection while a pool owns it: the connection plus the pool's bookkeeping for
//! it (its SHOW SERVERS entry, the pool's server count, the `max_db_connections` /
//! `max_user_connections` permits). `server::conn` knows nothing of pools.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::OwnedSemaphorePermit;

use crate::pool::{ServerEntry, ServerSet};
use crate::server::conn::ServerConn;

/// A logged-in server connection that belongs to a pool (idle in it or lent to a client).
/// Boxed once when the server logs in: it moves between the idle list, a client's guard and
/// its futures at every checkout and release, which then move a pointer, and the client task
/// (whose future holds it while linked) stays small.
pub struct Pooled(Box<PooledConn>);

struct PooledConn {
    conn: ServerConn,
    /// Held for the connection's lifetime: `max_db_connections` / `max_user_connections`.
    _limit_permits: Vec<OwnedSemaphorePermit>,
    tally: Tally,
}

/// Keeps a pool's server count and server list right when a connection ends, however it ends.
struct Tally {
    count: Arc<AtomicUsize>,
    servers: Arc<ServerSet>,
    entry: Arc<ServerEntry>,
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.servers.remove(self.entry.id);
    }
}

impl Pooled {
    /// Counts `conn` in the pool (`count`, `servers`) until it is dropped.
    pub(crate) fn new(
        conn: ServerConn,
        entry: Arc<ServerEntry>,
        count: Arc<AtomicUsize>,
        servers: Arc<ServerSet>,
        limit_permits: Vec<OwnedSemaphorePermit>,
    ) -> Pooled {
        count.fetch_add(1, Ordering::Relaxed);
        servers.insert(entry.clone());
        Pooled(Box::new(PooledConn {
            conn,
            _limit_permits: limit_permits,
            tally: Tally {
                count,
                servers,
                entry,
            },
        }))
    }

    /// This connection's SHOW SERVERS entry.
    pub(crate) fn entry(&self) -> &Arc<ServerEntry> {
        &self.0.tally.entry
    }
}

/// A pooled connection is used as its server connection everywhere outside the pool's own
/// bookkeeping, which `Pooled` adds without changing what the connection is.
impl Deref for Pooled {
    type Target = ServerConn;
    fn deref(&self) -> &ServerConn {
        &self.0.conn
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut ServerConn {
        &mut self.0.conn
    }
}
