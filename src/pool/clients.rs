//! Logged-in clients: one `ClientEntry` per client (what SHOW CLIENTS shows, its state, its
//! link, and the kill switch KILL / KILL_CLIENT pull), registered at login and removed when
//! the client task ends. State changes move the owning pool's `cl_*` counts (no rescans).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::net::stream::ClientStream;
use crate::pool::Pool;
use crate::pool::state::now_us;
pub use crate::pool::state::{CLIENT_STATES, ClientState};
use crate::protocol::pooler_errors::PoolerError;

/// Where a client connected from and to.
#[derive(Clone, Debug, Default)]
pub struct ClientAddrs {
    pub addr: String,
    pub port: u16,
    pub local_addr: String,
    pub local_port: u16,
    pub tls: String,
}

impl ClientAddrs {
    /// Reads the socket addresses of an accepted connection.
    pub fn of(stream: &ClientStream) -> ClientAddrs {
        let tcp = match stream {
            ClientStream::Tcp(s) => s,
            ClientStream::Tls(s) => s.get_ref().0,
            ClientStream::Unix(_) => {
                return ClientAddrs {
                    addr: "unix".to_string(),
                    local_addr: "unix".to_string(),
                    ..ClientAddrs::default()
                };
            }
        };
        let peer = tcp.peer_addr().ok();
        let local = tcp.local_addr().ok();
        ClientAddrs {
            addr: peer.map(|a| a.ip().to_string()).unwrap_or_default(),
            port: peer.map(|a| a.port()).unwrap_or(0),
            local_addr: local.map(|a| a.ip().to_string()).unwrap_or_default(),
            local_port: local.map(|a| a.port()).unwrap_or(0),
            // PgBouncer's `tls_get_connection_info`: empty without TLS
            tls: stream.tls_info().map(|i| i.to_string()).unwrap_or_default(),
        }
    }
}

/// One logged-in client.
pub struct ClientEntry {
    pub id: u64,
    pub user: String,
    pub database: String,
    pub addrs: ClientAddrs,
    pub application_name: String,
    pub connect_time: SystemTime,
    /// The pool it belongs to (`None` for admin console clients); it changes only when a
    /// reload replaced the pool (`ClientEntry::move_to`).
    pool: Mutex<Option<Arc<Pool>>>,
    state: AtomicU8,
    request_time_us: AtomicU64,
    /// When it started waiting for a server (0: not waiting).
    wait_start_us: AtomicU64,
    /// The linked server's id (0: none).
    link: AtomicU64,
    kill: CancellationToken,
    kill_reason: Mutex<Option<PoolerError>>,
}

impl ClientEntry {
    fn pool_slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Pool>>> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pool it belongs to (`None` for admin console clients).
    pub fn pool(&self) -> Option<Arc<Pool>> {
        self.pool_slot().clone()
    }

    pub fn is_admin(&self) -> bool {
        self.pool_slot().is_none()
    }

    pub fn belongs_to(&self, pool: &Arc<Pool>) -> bool {
        self.pool_slot()
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, pool))
    }

    /// Moves a pool client to the pool that replaced its own on reload, taking its counts
    /// along.
    pub(crate) fn move_to(&self, to: Arc<Pool>) {
        let mut slot = self.pool_slot();
        let state = self.state.load(Ordering::Relaxed) as usize;
        if let Some(old) = slot.take() {
            old.client_states.leave(state);
            old.client_count.fetch_sub(1, Ordering::Relaxed);
        }
        to.client_states.enter(state);
        to.client_count.fetch_add(1, Ordering::Relaxed);
        *slot = Some(to);
    }

    pub(crate) fn state(&self) -> ClientState {
        // invariant: only ClientState values are stored
        ClientState::try_from(self.state.load(Ordering::Relaxed))
            .unwrap_or(ClientState::WaitingCancelReq)
    }

    /// Moves the client to `to`, keeping its pool's counts right. The clock is read only
    /// when waiting starts (the other states keep no time of their own).
    pub(crate) fn set_state(&self, to: ClientState) {
        let now = if to == ClientState::Waiting {
            now_us(SystemTime::now())
        } else {
            0
        };
        self.set_state_at(to, now);
    }

    /// [`ClientEntry::set_state`] at `now_us` (read only for `Waiting`).
    fn set_state_at(&self, to: ClientState, now_us: u64) {
        let slot = self.pool_slot();
        let from = self.state.swap(to as u8, Ordering::Relaxed);
        if let Some(pool) = slot.as_ref() {
            pool.client_states.moved(from as usize, to as usize);
        }
        drop(slot);
        let wait_start = if to == ClientState::Waiting {
            now_us
        } else {
            0
        };
        self.wait_start_us.store(wait_start, Ordering::Relaxed);
    }

    /// The session loop: the client asked for a server (waiting starts). One clock read
    /// serves both stamps (they are the same moment).
    pub(crate) fn start_waiting(&self) {
        let now = now_us(SystemTime::now());
        self.request_time_us.store(now, Ordering::Relaxed);
        self.set_state_at(ClientState::Waiting, now);
    }

    /// The session loop: a server is linked.
    pub(crate) fn linked(&self, server_id: u64) {
        self.link.store(server_id, Ordering::Relaxed);
        self.set_state(ClientState::Active);
    }

    /// The session loop: the server went back to the pool.
    pub(crate) fn unlinked(&self) {
        self.link.store(0, Ordering::Relaxed);
        self.set_state(ClientState::Active);
    }

    pub(crate) fn link(&self) -> u64 {
        self.link.load(Ordering::Relaxed)
    }

    pub(crate) fn request_time_us(&self) -> u64 {
        self.request_time_us.load(Ordering::Relaxed)
    }

    /// Microseconds since the client started waiting (0 if not waiting).
    pub(crate) fn waiting_for_us(&self) -> u64 {
        match self.wait_start_us.load(Ordering::Relaxed) {
            0 => 0,
            start => now_us(SystemTime::now()).saturating_sub(start),
        }
    }

    /// Asks the client task to end, sending `reason` to the client first.
    pub fn kill(&self, reason: PoolerError) {
        *self.kill_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        self.kill.cancel();
    }

    /// Resolves once the client was killed, with the error to send it.
    pub async fn killed(&self) -> PoolerError {
        self.kill.cancelled().await;
        self.kill_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or(crate::protocol::pooler_errors::ADMIN_FORCED_DISCONNECT)
    }
}

/// What a client tells the registry at login.
pub struct NewClient {
    pub id: u64,
    pub user: String,
    pub database: String,
    pub addrs: ClientAddrs,
    pub application_name: String,
    pub pool: Option<Arc<Pool>>,
}

/// Every logged-in client, by id.
#[derive(Default)]
pub struct ClientRegistry {
    clients: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
    /// Woken whenever a client leaves (a client over a connection limit waits on it).
    left: tokio::sync::Notify,
}

/// Removes its client from the registry (and its pool's counts) when dropped.
pub struct Registration<'a> {
    registry: &'a ClientRegistry,
    pub entry: Arc<ClientEntry>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.entry.id);
        let slot = self.entry.pool_slot();
        if let Some(pool) = slot.as_ref() {
            pool.client_states.leave(self.entry.state() as usize);
            pool.client_count.fetch_sub(1, Ordering::Relaxed);
        }
        drop(slot);
        self.registry.left.notify_waiters();
    }
}

impl ClientRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ClientEntry>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a logged-in client in state `active` (idle, no link).
    pub fn register(&self, c: NewClient) -> Registration<'_> {
        let now = SystemTime::now();
        let entry = Arc::new(ClientEntry {
            id: c.id,
            user: c.user,
            database: c.database,
            addrs: c.addrs,
            application_name: c.application_name,
            connect_time: now,
            pool: Mutex::new(c.pool),
            state: AtomicU8::new(ClientState::Active as u8),
            request_time_us: AtomicU64::new(now_us(now)),
            wait_start_us: AtomicU64::new(0),
            link: AtomicU64::new(0),
            kill: CancellationToken::new(),
            kill_reason: Mutex::new(None),
        });
        if let Some(pool) = entry.pool_slot().as_ref() {
            pool.client_states.enter(ClientState::Active as usize);
            pool.client_count.fetch_add(1, Ordering::Relaxed);
        }
        self.lock().insert(entry.id, entry.clone());
        Registration {
            registry: self,
            entry,
        }
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientEntry>> {
        self.lock().get(&id).cloned()
    }

    /// How many clients `pred` holds for, counted under the lock (no snapshot).
    pub(crate) fn count_where(&self, pred: impl Fn(&ClientEntry) -> bool) -> usize {
        self.lock().values().filter(|c| pred(c)).count()
    }

    /// Resolves at the next client's departure. Create it before looking at the counts, so a
    /// departure between the look and the wait is not missed.
    pub(crate) fn departure(&self) -> tokio::sync::futures::Notified<'_> {
        self.left.notified()
    }

    /// Every client, by id.
    pub(crate) fn snapshot(&self) -> Vec<Arc<ClientEntry>> {
        self.lock().values().cloned().collect()
    }

    /// Kills every pooled (non-admin) client of `db`, or of every database; returns how many.
    pub fn kill_db(&self, db: Option<&str>, reason: PoolerError) -> usize {
        let targets: Vec<_> = self
            .snapshot()
            .into_iter()
            .filter(|c| !c.is_admin() && db.is_none_or(|d| c.database == d))
            .collect();
        for c in &targets {
            c.kill(reason.clone());
        }
        targets.len()
    }

    /// Clients still waiting for a server (SIGINT disconnects them).
    pub fn kill_waiting(&self, reason: PoolerError) -> usize {
        let targets: Vec<_> = self
            .snapshot()
            .into_iter()
            .filter(|c| !c.is_admin() && c.state() == ClientState::Waiting)
            .collect();
        for c in &targets {
            c.kill(reason.clone());
        }
        targets.len()
    }

    /// Pooled clients (admin console excluded).
    pub fn pooled_count(&self) -> usize {
        self.lock().values().filter(|c| !c.is_admin()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client of user `u` on `database`, without a pool.
    fn new_client(id: u64, database: &str) -> NewClient {
        NewClient {
            id,
            user: "u".into(),
            database: database.into(),
            addrs: ClientAddrs::default(),
            application_name: String::new(),
            pool: None,
        }
    }

    #[tokio::test]
    async fn kill_wakes_the_client_with_its_reason() {
        let reg = ClientRegistry::default();
        let r = reg.register(new_client(3, "pgbouncer"));
        assert!(reg.get(3).is_some());
        reg.get(3)
            .expect("registered above")
            .kill(crate::protocol::pooler_errors::ADMIN_FORCED_DISCONNECT);
        let e = r.entry.killed().await;
        assert_eq!(e.message, "admin forced disconnect");
        drop(r);
        assert!(reg.get(3).is_none());
    }

    #[tokio::test]
    async fn a_departure_wakes_a_waiter_armed_before_it() {
        let reg = ClientRegistry::default();
        let r = reg.register(new_client(4, "db"));
        assert_eq!(reg.count_where(|c| c.user == "u"), 1);
        let departure = reg.departure();
        tokio::pin!(departure);
        departure.as_mut().enable();
        // the client leaves after the waiter looked and before it awaits: not missed
        drop(r);
        tokio::time::timeout(std::time::Duration::from_secs(5), departure)
            .await
            .expect("woken by the departure");
        assert_eq!(reg.count_where(|c| c.user == "u"), 0);
    }
}
