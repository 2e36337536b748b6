//! Cancel requests: every client gets its own random BackendKeyData; a CancelRequest carrying
//! it is forwarded, on a new connection, with the key of the server the client runs on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand::RngCore;

use crate::server::conn::CancelTarget;

/// The key a client got at login: process id (sign bit clear, as PgBouncer) and secret.
pub type ClientKey = (i32, [u8; 4]);

/// Where a client currently runs, updated as servers are linked and unlinked.
#[derive(Default)]
pub struct CancelSlot {
    target: Mutex<Option<CancelTarget>>,
}

impl CancelSlot {
    pub fn link(&self, target: CancelTarget) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = Some(target);
    }

    pub fn unlink(&self) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn current(&self) -> Option<CancelTarget> {
        self.target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
    /// Issues a fresh random key for a client.
    pub fn register(&self) -> CancelRegistration<'_> {
        let mut rng = rand::thread_rng();
        let mut map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let pid = (rng.next_u32() & 0x7fff_ffff) as i32;
            let mut secret = [0u8; 4];
            rng.fill_bytes(&mut secret);
            let key = (pid, secret);
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
        let Some(target) = slot.and_then(|s| s.current()) else {
            tracing::debug!("cancel request for an unknown or idle client, dropped");
            return;
        };
        crate::server::cancel::send_cancel(&target, timeout).await;
    }
}
