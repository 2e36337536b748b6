//! One upstream PostgreSQL connection after login: its stream, leftover input, the parameters
//! it reported, its BackendKeyData, and the times the janitor and pool need.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::net::stream::ServerStream;
use crate::server::address::ServerAddress;
use crate::server::params::ParamSet;
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Ids for clients and servers alike, from one counter as PgBouncer numbers its sockets (SHOW
/// SOCKETS, SHOW CLIENTS and SHOW SERVERS `id`, the `C-<id>` / `S-<id>` log prefixes).
static NEXT_SOCKET_ID: AtomicU64 = AtomicU64::new(1);

/// The next socket id (clients take theirs at accept, servers at login).
pub fn next_socket_id() -> u64 {
    NEXT_SOCKET_ID.fetch_add(1, Ordering::Relaxed)
}

/// Where and how to send a CancelRequest for the query running on a server connection.
#[derive(Clone, Debug)]
pub struct CancelTarget {
    pub address: ServerAddress,
    pub pid: i32,
    pub key: Vec<u8>,
}

/// A logged-in server connection.
pub struct ServerConn {
    pub id: u64,
    pub stream: ServerStream,
    /// Bytes read from the server but not consumed yet (always at a message boundary).
    pub rbuf: BytesMut,
    /// The values the server reported with ParameterStatus, kept current while linked.
    pub params: ParamSet,
    /// Shared, so a client linked to this server holds it without a copy at every link.
    pub cancel: std::sync::Arc<CancelTarget>,
    /// Statements the pooler prepared on this connection (transaction / statement pooling).
    pub prepared: crate::server::statements::ServerStatements,
    pub created: Instant,
    pub last_used: Instant,
    /// The relay's output queues (to the server, to the client), empty between links and
    /// kept here for their capacity: the pool's few servers hold them, not every client.
    pub relay_queues: [VecDeque<Bytes>; 2],
    /// The link watcher's request queue, empty between links and kept for its capacity too.
    pub requests: crate::server::requests::RequestQueue,
}

impl ServerConn {
    pub(crate) fn new(
        stream: ServerStream,
        rbuf: BytesMut,
        params: ParamSet,
        cancel: CancelTarget,
    ) -> ServerConn {
        let now = Instant::now();
        ServerConn {
            id: next_socket_id(),
            stream,
            rbuf,
            params,
            cancel: std::sync::Arc::new(cancel),
            prepared: Default::default(),
            created: now,
            last_used: now,
            relay_queues: Default::default(),
            requests: Default::default(),
        }
    }
}

impl Drop for ServerConn {
    /// Says goodbye (Terminate) on plain sockets, best effort and without blocking, so the
    /// server logs a clean disconnect instead of an unexpected EOF.
    fn drop(&mut self) {
        const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];
        let _ = match &self.stream {
            ServerStream::Tcp(s) => s.try_write(&TERMINATE).map(|_| ()),
            ServerStream::Unix(s) => s.try_write(&TERMINATE).map(|_| ()),
            _ => Ok(()),
        };
    }
}
