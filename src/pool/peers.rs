//! Peering (`peer_id`, `[peers]`): which process a cancel key belongs to, and forwarding a
//! cancel for another peer's client to that peer, bounded per peer by its `pool_size`.
//!
//! The key layout is PgBouncer 1.21+'s, so krbouncer and PgBouncer processes can share one
//! peer group: bytes 1 and 2 of the 8-byte key (process id, then secret) carry the peer id
//! (little end first), and the two low bits of byte 7 a time-to-live that each forwarding
//! decrements, so a misconfigured group cannot bounce a cancel around for ever.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::config::PeerDef;
use crate::protocol::frontend;
use crate::server::address::{RawSocket, ServerAddress};

/// The two TTL bits in the last key byte (PgBouncer's `CANCELLATION_TTL_MASK`).
pub const TTL_MASK: u8 = 0x03;

/// The 8 key bytes as they travel in BackendKeyData and CancelRequest.
pub fn key_bytes(pid: i32, secret: [u8; 4]) -> [u8; 8] {
    let p = pid.to_be_bytes();
    [
        p[0], p[1], p[2], p[3], secret[0], secret[1], secret[2], secret[3],
    ]
}

fn split_key(key: [u8; 8]) -> (i32, [u8; 4]) {
    (
        i32::from_be_bytes([key[0], key[1], key[2], key[3]]),
        [key[4], key[5], key[6], key[7]],
    )
}

/// Marks a freshly drawn random key as this peer's: the peer id in bytes 1-2 and a full TTL.
/// With peering off (`peer_id = 0`) the key stays fully random.
pub fn stamp(pid: i32, secret: [u8; 4], peer_id: u16) -> (i32, [u8; 4]) {
    if peer_id == 0 {
        return (pid, secret);
    }
    let mut k = key_bytes(pid, secret);
    let [lo, hi] = peer_id.to_le_bytes();
    k[1] = lo;
    k[2] = hi;
    k[7] |= TTL_MASK;
    split_key(k)
}

/// This process's `peer_id`; 0 (peering off) for values that do not fit the key's two bytes
/// (config validation warns about them).
pub fn own_peer_id(settings: &crate::config::Settings) -> u16 {
    u16::try_from(settings.peer_id).unwrap_or(0)
}

/// Where a CancelRequest has to go.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelRoute {
    /// One of our own clients: look the key up (with the TTL bits as they were issued).
    Local { pid: i32, secret: [u8; 4] },
    /// Another peer's client: send it this key (TTL already decremented).
    Peer {
        peer_id: u16,
        pid: i32,
        secret: [u8; 4],
    },
    /// Another peer's client, but the request was forwarded too often already.
    TtlExhausted,
}

/// Decides the route of a cancel key received by the process with `own_peer_id`.
pub fn route(own_peer_id: u16, pid: i32, secret: [u8; 4]) -> CancelRoute {
    if own_peer_id == 0 {
        return CancelRoute::Local { pid, secret };
    }
    let mut k = key_bytes(pid, secret);
    let peer_id = u16::from_le_bytes([k[1], k[2]]);
    if peer_id == own_peer_id {
        k[7] |= TTL_MASK;
        let (pid, secret) = split_key(k);
        return CancelRoute::Local { pid, secret };
    }
    if k[7] & TTL_MASK == 0 {
        return CancelRoute::TtlExhausted;
    }
    // the TTL lives in the lowest bits, so this only ever touches them
    k[7] -= 1;
    let (pid, secret) = split_key(k);
    CancelRoute::Peer {
        peer_id,
        pid,
        secret,
    }
}

/// One peer's cancel "pool": at most `pool_size` forwarded cancels at once (PgBouncer's
/// peer pool), with the counts SHOW PEER_POOLS shows.
struct PeerLane {
    slots: Semaphore,
    pool_size: usize,
    waiting: AtomicUsize,
    connecting: AtomicUsize,
    active: AtomicUsize,
}

/// SHOW PEER_POOLS: one row per peer a cancel was forwarded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPoolRow {
    pub peer_id: u16,
    pub cl_active_cancel_req: usize,
    pub cl_waiting_cancel_req: usize,
    pub sv_active_cancel: usize,
    pub sv_login: usize,
}

/// Why a cancel could not be forwarded (logged; a cancel has nobody to answer to).
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("could not find peer to forward request to")]
    UnknownPeer,
    #[error("failed to forward cancel request because its TTL was exhausted")]
    TtlExhausted,
    #[error("cancel_wait_timeout: no free slot to peer {0}")]
    WaitTimeout(u16),
    #[error("forwarding cancel request to peer {peer_id}: {source}")]
    Io {
        peer_id: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("forwarding cancel request to peer {0}: timed out")]
    Timeout(u16),
}

/// The lanes of every peer cancels were forwarded to, created at first use. A lane is
/// replaced when a reload changes that peer's `pool_size`.
#[derive(Default)]
pub struct PeerCancels {
    lanes: Mutex<BTreeMap<u16, Arc<PeerLane>>>,
}

/// Leaves a counter when dropped, so every exit path (timeouts included) counts right.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn enter(c: &'a AtomicUsize) -> Counted<'a> {
        c.fetch_add(1, Ordering::AcqRel);
        Counted(c)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PeerCancels {
    fn lane(&self, peer_id: u16, pool_size: usize) -> Arc<PeerLane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = lanes.get(&peer_id) {
            if l.pool_size == pool_size {
                return l.clone();
            }
        }
        let lane = Arc::new(PeerLane {
            slots: Semaphore::new(pool_size.max(1)),
            pool_size,
            waiting: AtomicUsize::new(0),
            connecting: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
        });
        lanes.insert(peer_id, lane.clone());
        lane
    }

    /// Sends the cancel to `peer` on a new connection and waits until the peer closes it
    /// (it has then acted on the request), as PgBouncer's peer pools do.
    /// `wait` bounds the wait for a free slot (0: no bound), `timeout` the connection.
    pub async fn forward(
        &self,
        peer: &PeerDef,
        default_pool_size: i32,
        pid: i32,
        secret: [u8; 4],
        wait: Duration,
        timeout: Duration,
    ) -> Result<(), ForwardError> {
        let peer_id = u16::try_from(peer.peer_id).map_err(|_| ForwardError::UnknownPeer)?;
        let pool_size = usize::try_from(peer.pool_size.unwrap_or(default_pool_size)).unwrap_or(1);
        let lane = self.lane(peer_id, pool_size);
        let permit = {
            let _waiting = Counted::enter(&lane.waiting);
            let acquire = lane.slots.acquire();
            if wait.is_zero() {
                acquire.await
            } else {
                tokio::time::timeout(wait, acquire)
                    .await
                    .map_err(|_| ForwardError::WaitTimeout(peer_id))?
            }
        };
        // the semaphore lives as long as the lane and is never closed
        let _permit = permit.map_err(|_| ForwardError::WaitTimeout(peer_id))?;
        let _active = Counted::enter(&lane.active);
        let address = ServerAddress::from_host(&peer.host, peer.port);
        let io = |source| ForwardError::Io { peer_id, source };
        let send = async {
            let socket = {
                let _login = Counted::enter(&lane.connecting);
                address.connect(timeout).await.map_err(io)?
            };
            let mut pkt = BytesMut::with_capacity(16);
            frontend::cancel_request(&mut pkt, pid, &secret);
            match socket {
                RawSocket::Tcp(mut s) => send_and_drain(&mut s, &pkt).await,
                RawSocket::Unix(mut s) => send_and_drain(&mut s, &pkt).await,
            }
            .map_err(io)
        };
        tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| ForwardError::Timeout(peer_id))?
    }

    /// SHOW PEER_POOLS rows, in peer id order.
    pub fn rows(&self) -> Vec<PeerPoolRow> {
        let lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes
            .iter()
            .map(|(id, l)| {
                let active = l.active.load(Ordering::Acquire);
                let login = l.connecting.load(Ordering::Acquire);
                PeerPoolRow {
                    peer_id: *id,
                    cl_active_cancel_req: active,
                    cl_waiting_cancel_req: l.waiting.load(Ordering::Acquire),
                    sv_active_cancel: active - login.min(active),
                    sv_login: login,
                }
            })
            .collect()
    }
}

async fn send_and_drain<S>(s: &mut S, pkt: &[u8]) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(pkt).await?;
    // the peer answers nothing and closes once the cancel is handled
    let mut sink = [0u8; 64];
    while s.read(&mut sink).await? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_key_routes_home_and_loses_ttl_on_each_hop() {
        let (pid, secret) = stamp(0x1234_5678, [9, 8, 7, 0xfc], 513);
        let k = key_bytes(pid, secret);
        assert_eq!((k[1], k[2]), (0x01, 0x02));
        assert_eq!(k[7] & TTL_MASK, TTL_MASK);
        assert_eq!(route(513, pid, secret), CancelRoute::Local { pid, secret });
        // received by peer 7: forwarded with TTL 2, then 1, then 0, then refused
        let mut cur = (pid, secret);
        for ttl in [2u8, 1, 0] {
            match route(7, cur.0, cur.1) {
                CancelRoute::Peer {
                    peer_id,
                    pid,
                    secret,
                } => {
                    assert_eq!(peer_id, 513);
                    assert_eq!(secret[3] & TTL_MASK, ttl);
                    cur = (pid, secret);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(route(7, cur.0, cur.1), CancelRoute::TtlExhausted);
        // the home peer restores the TTL bits, so the key matches what the client got
        assert_eq!(route(513, cur.0, cur.1), CancelRoute::Local { pid, secret });
    }

    #[test]
    fn without_peering_keys_stay_random_and_local() {
        assert_eq!(stamp(5, [1, 2, 3, 4], 0), (5, [1, 2, 3, 4]));
        assert_eq!(
            route(0, 5, [1, 2, 3, 4]),
            CancelRoute::Local {
                pid: 5,
                secret: [1, 2, 3, 4]
            }
        );
    }

    #[test]
    fn a_peer_id_above_the_pid_sign_byte_keeps_the_pid_positive() {
        let (pid, _) = stamp(0x7fff_ffff, [0; 4], 0xffff);
        assert!(pid > 0, "byte 0 is untouched, so the sign bit stays clear");
    }
}
