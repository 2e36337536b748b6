//! Cancel requests: every client gets its own random BackendKeyData; a CancelRequest carrying
//! it is forwarded, on a new connection, with the key of the server the client runs on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use rand::RngCore;

use crate::pool::clients::ClientState;
use crate::pool::{Pool, ServerEntry, ServerState};
use crate::server::conn::CancelTarget;

/// What SHOW POOLS counts while a cancel is on its way: the cancel request as a client in
/// `cl_active_cancel_req`, its connection as `sv_active_cancel`, and the target server as
/// `sv_being_canceled`.
#[derive(Clone)]
pub struct CancelShow {
    pub pool: Arc<Pool>,
    pub server: Option<Arc<ServerEntry>>,
}

impl CancelShow {
    fn begin(&self) {
        self.pool
            .client_states
            .enter(ClientState::ActiveCancelReq as usize);
        self.pool
            .servers
            .counts
            .enter(ServerState::ActiveCancel as usize);
        if let Some(e) = &self.server {
            if e.state() == ServerState::Active {
                self.pool.servers.transition(e, ServerState::BeingCanceled);
            }
        }
    }

    fn end(&self) {
        self.pool
            .client_states
            .leave(ClientState::ActiveCancelReq as usize);
        self.pool
            .servers
            .counts
            .leave(ServerState::ActiveCancel as usize);
        if let Some(e) = &self.server {
            if e.state() == ServerState::BeingCanceled {
                self.pool.servers.transition(e, ServerState::Active);
            }
        }
    }
}

/// The key a client got at login: process id (sign bit clear, as PgBouncer) and secret.
pub(crate) type ClientKey = (i32, [u8; 4]);

/// Where a client currently runs, updated as servers are linked and unlinked, and how many
/// cancels for it are on their way (the server is not released to anyone else before they
/// land, as PgBouncer keeps it `being_canceled`).
#[derive(Default)]
pub struct CancelSlot {
    target: Mutex<Option<(Arc<CancelTarget>, Option<CancelShow>)>>,
    in_flight: AtomicUsize,
    settled: Notify,
}

impl CancelSlot {
    pub(crate) fn link(&self, target: Arc<CancelTarget>, show: Option<CancelShow>) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = Some((target, show));
    }

    /// Stops new cancels from reaching the server, then waits (at most `wait`) for those
    /// already sent.
    pub(crate) async fn unlink(&self, wait: Duration) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if self.in_flight.load(Ordering::Acquire) == 0 {
            return; // the usual case, without a clock read for the deadline
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let settled = self.settled.notified();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                tracing::info!("cancel_wait_timeout: releasing server with a cancel in flight");
                return;
            }
        }
    }

    /// The current target, counted as in flight until [`CancelSlot::finish_cancel`].
    fn begin_cancel(&self) -> Option<(Arc<CancelTarget>, Option<CancelShow>)> {
        let target = self.target.lock().unwrap_or_else(|p| p.into_inner());
        let t = target.clone()?;
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(t)
    }

    fn finish_cancel(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.settled.notify_waiters();
    }
}

/// All logged-in clients by cancel key.
#[derive(Default)]
pub struct CancelRegistry {
    by_key: Mutex<HashMap<ClientKey, Arc<CancelSlot>>>,
}

/// Removes the client's key when its connection ends.
pub struct CancelRegistration<'a> {
    registry: &'a CancelRegistry,
    pub key: ClientKey,
    pub slot: Arc<CancelSlot>,
}

impl Drop for CancelRegistration<'_> {
    fn drop(&mut self) {
        self.registry
            .by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl CancelRegistry {
    /// Issues a fresh random key for a client, stamped with `peer_id` when peering is on.
    pub fn register(&self, peer_id: u16) -> CancelRegistration<'_> {
        let mut rng = rand::thread_rng();
        let mut map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let pid = (rng.next_u32() & 0x7fff_ffff) as i32;
            let mut secret = [0u8; 4];
            rng.fill_bytes(&mut secret);
            let key = crate::pool::peers::stamp(pid, secret, peer_id);
            if let std::collections::hash_map::Entry::Vacant(e) = map.entry(key) {
                let slot = Arc::new(CancelSlot::default());
                e.insert(slot.clone());
                return CancelRegistration {
                    registry: self,
                    key,
                    slot,
                };
            }
        }
    }

    /// Forwards a cancel for the client with this key, if it is running on a server.
    /// Unknown keys and idle clients are ignored, as in PgBouncer.
    pub async fn cancel(&self, pid: i32, secret: &[u8], timeout: std::time::Duration) {
        let Ok(secret) = <[u8; 4]>::try_from(secret) else {
            return;
        };
        let slot = self
            .by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(pid, secret))
            .cloned();
        let Some(slot) = slot else {
            tracing::debug!("cancel request for an unknown client, dropped");
            return;
        };
        let Some(target) = slot.begin_cancel() else {
            tracing::debug!("cancel request for an idle client, dropped");
            return;
        };
        let (target, show) = target;
        if let Some(s) = &show {
            s.begin();
        }
        crate::server::cancel::send_cancel(&target, timeout).await;
        if let Some(s) = &show {
            s.end();
        }
        slot.finish_cancel();
    }
}
