//! Server and client connection states as PgBouncer names them (`sv_*`, `cl_*`), the per-pool counts kept by
//! state transitions, the per-server entries behind `SHOW SERVERS`, and the per-database
//! controls (PAUSE, DISABLE) that admin commands and signals flip.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Notify;

/// Locks a std mutex; a poisoned lock still holds consistent data here because every critical
/// section is a single push/pop/assign.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

crate::repr::u8_enum! {
    /// A server connection's state (PgBouncer's `SV_*` lists).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum ServerState {
        /// Connecting and logging in (`new`, counted as `sv_login`).
        Login = 0,
        /// Linked to a client.
        Active = 1,
        /// In the idle list, ready.
        Idle = 2,
        /// Running the reset or check query.
        Tested = 3,
        /// A cancel request is being sent for it.
        ActiveCancel = 4,
        BeingCanceled = 5,
        /// Idle past `server_check_delay`: checked before its next use.
        Used = 6,
    }
}

pub(crate) const SERVER_STATES: usize = ServerState::ALL.len();

impl ServerState {
    /// The `state` column of SHOW SERVERS.
    pub(crate) fn show_name(self) -> &'static str {
        match self {
            ServerState::Login => "new",
            ServerState::Active => "active",
            ServerState::Idle => "idle",
            ServerState::Tested => "tested",
            ServerState::ActiveCancel => "active_cancel",
            ServerState::BeingCanceled => "being_canceled",
            ServerState::Used => "used",
        }
    }
}

crate::repr::u8_enum! {
    /// A client's state (PgBouncer's `CL_*` lists).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum ClientState {
        /// Logged in; shown as `idle` while no server is linked.
        Active = 0,
        /// Waiting for a server.
        Waiting = 1,
        ActiveCancelReq = 2,
        WaitingCancelReq = 3,
    }
}

pub const CLIENT_STATES: usize = ClientState::ALL.len();

impl ClientState {
    pub(crate) fn show_name(self) -> &'static str {
        match self {
            ClientState::Active => "active",
            ClientState::Waiting => "waiting",
            ClientState::ActiveCancelReq => "active_cancel_req",
            ClientState::WaitingCancelReq => "waiting_cancel_req",
        }
    }
}

/// Counts per state, kept by the transitions (never by scanning).
pub struct StateCounts<const N: usize> {
    counts: [AtomicUsize; N],
}

impl<const N: usize> Default for StateCounts<N> {
    fn default() -> Self {
        StateCounts {
            counts: std::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }
}

impl<const N: usize> StateCounts<N> {
    pub fn get(&self, state: usize) -> usize {
        self.counts[state].load(Ordering::Relaxed)
    }

    pub(crate) fn enter(&self, state: usize) {
        self.counts[state].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn leave(&self, state: usize) {
        self.counts[state].fetch_sub(1, Ordering::Relaxed);
    }

    /// Moves one unit from `from` to `to`.
    pub(crate) fn moved(&self, from: usize, to: usize) {
        if from != to {
            self.enter(to);
            self.leave(from);
        }
    }
}

/// What SHOW SERVERS shows about one server connection.
pub struct ServerEntry {
    pub id: u64,
    pub addr: String,
    pub port: u16,
    pub local_addr: String,
    pub local_port: u16,
    pub connect_time: SystemTime,
    /// Microseconds since the epoch of the last link or release.
    request_time_us: AtomicU64,
    state: AtomicU8,
    /// The linked client's id (0: none).
    link: AtomicU64,
    pub remote_pid: i32,
    /// The transport (`tls`, `gssenc`) for the `tls` column; empty when plain.
    pub tls: &'static str,
    /// RECONNECT / reload: close at release instead of reusing.
    close_needed: AtomicBool,
}

pub(crate) fn now_us(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl ServerEntry {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        addr: String,
        port: u16,
        local: Option<std::net::SocketAddr>,
        remote_pid: i32,
        tls: &'static str,
    ) -> ServerEntry {
        let now = SystemTime::now();
        ServerEntry {
            id,
            addr,
            port,
            local_addr: local.map(|a| a.ip().to_string()).unwrap_or_default(),
            local_port: local.map(|a| a.port()).unwrap_or(0),
            connect_time: now,
            request_time_us: AtomicU64::new(now_us(now)),
            state: AtomicU8::new(ServerState::Login as u8),
            link: AtomicU64::new(0),
            remote_pid,
            tls,
            close_needed: AtomicBool::new(false),
        }
    }

    /// `127.0.0.1:40888`: the pooler's end of a TCP server connection (None on unix sockets).
    pub(crate) fn local_addr_text(&self) -> Option<String> {
        (!self.local_addr.is_empty()).then(|| format!("{}:{}", self.local_addr, self.local_port))
    }

    pub(crate) fn state(&self) -> ServerState {
        // invariant: only ServerState values are stored
        ServerState::try_from(self.state.load(Ordering::Relaxed))
            .unwrap_or(ServerState::BeingCanceled)
    }

    pub(crate) fn request_time_us(&self) -> u64 {
        self.request_time_us.load(Ordering::Relaxed)
    }

    pub(crate) fn link(&self) -> u64 {
        self.link.load(Ordering::Relaxed)
    }

    pub(crate) fn set_link(&self, client_id: u64) {
        self.link.store(client_id, Ordering::Relaxed);
        self.request_time_us
            .store(now_us(SystemTime::now()), Ordering::Relaxed);
    }

    pub(crate) fn close_needed(&self) -> bool {
        self.close_needed.load(Ordering::Relaxed)
    }

    pub fn mark_close_needed(&self) {
        self.close_needed.store(true, Ordering::Relaxed);
    }
}

/// The servers of one pool, for SHOW SERVERS and the state counts of SHOW POOLS.
#[derive(Default)]
pub struct ServerSet {
    entries: Mutex<BTreeMap<u64, Arc<ServerEntry>>>,
    pub counts: StateCounts<SERVER_STATES>,
}

impl ServerSet {
    pub(crate) fn insert(&self, entry: Arc<ServerEntry>) {
        self.counts.enter(entry.state() as usize);
        lock(&self.entries).insert(entry.id, entry);
    }

    pub(crate) fn remove(&self, id: u64) {
        if let Some(e) = lock(&self.entries).remove(&id) {
            self.counts.leave(e.state() as usize);
        }
    }

    /// Moves a server to `to`, keeping the counts right.
    pub(crate) fn transition(&self, entry: &ServerEntry, to: ServerState) {
        let from = entry.state.swap(to as u8, Ordering::Relaxed);
        self.counts.moved(from as usize, to as usize);
    }

    pub fn count(&self, state: ServerState) -> usize {
        self.counts.get(state as usize)
    }

    pub(crate) fn snapshot(&self) -> Vec<Arc<ServerEntry>> {
        lock(&self.entries).values().cloned().collect()
    }

    /// RECONNECT: every current server closes at its next release.
    pub fn mark_all_close_needed(&self) {
        for e in lock(&self.entries).values() {
            e.mark_close_needed();
        }
    }

    pub fn any_close_needed(&self) -> bool {
        lock(&self.entries).values().any(|e| e.close_needed())
    }
}

/// A flag that tasks can wait on until it clears (PAUSE until RESUME).
#[derive(Default)]
pub struct Gate {
    closed: AtomicBool,
    opened: Notify,
}

impl Gate {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the gate; true if it was open.
    pub fn close(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }

    /// Opens the gate; true if it was closed.
    pub fn open(&self) -> bool {
        let was = self.closed.swap(false, Ordering::AcqRel);
        self.opened.notify_waiters();
        was
    }

    /// Waits until the gate is open.
    pub(crate) async fn wait_open(&self) {
        loop {
            // registered before the check, so an open() in between is not missed
            let notified = self.opened.notified();
            if !self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// Per-database switches shared by every pool of the database.
#[derive(Default)]
pub struct DbControl {
    /// PAUSE db / KILL db (until RESUME db).
    pub paused: Gate,
    /// DISABLE db (until ENABLE db).
    pub disabled: AtomicBool,
    /// SUSPEND (only on the process-wide control).
    pub suspended: AtomicBool,
}

impl DbControl {
    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_transitions() {
        let set = ServerSet::default();
        let e = Arc::new(ServerEntry::new(7, "h".into(), 5432, None, 1, ""));
        set.insert(e.clone());
        assert_eq!(set.count(ServerState::Login), 1);
        set.transition(&e, ServerState::Active);
        assert_eq!(set.count(ServerState::Login), 0);
        assert_eq!(set.count(ServerState::Active), 1);
        set.remove(7);
        assert_eq!(set.count(ServerState::Active), 0);
    }

    #[tokio::test]
    async fn gate_wakes_waiters() {
        let g = Arc::new(Gate::default());
        assert!(g.close());
        let g2 = g.clone();
        let waiter = tokio::spawn(async move { g2.wait_open().await });
        tokio::task::yield_now().await;
        assert!(g.open());
        waiter.await.expect("waiter finishes once the gate opens");
    }
}
