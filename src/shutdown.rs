//! Shutdown state shared by the listener, the janitor and client tasks: PgBouncer's
//! "wait for clients" (SIGTERM), "wait for servers" (SIGINT) and immediate (SIGQUIT) exits.

use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::watch;

crate::repr::u8_enum! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum ShutdownMode {
        Running = 0,
        /// Stop accepting; exit when every client has left.
        WaitForClients = 1,
        /// Stop accepting; exit when every server has been released.
        WaitForServers = 2,
        /// Exit now.
        Immediate = 3,
    }
}

pub struct Shutdown {
    mode: AtomicU8,
    tx: watch::Sender<ShutdownMode>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub(crate) fn new() -> Shutdown {
        Shutdown {
            mode: AtomicU8::new(0),
            tx: watch::channel(ShutdownMode::Running).0,
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.mode.load(Ordering::Relaxed) != ShutdownMode::Running as u8
    }

    /// Moves to a stricter mode (never back).
    pub fn request(&self, mode: ShutdownMode) {
        let prev = self.mode.fetch_max(mode as u8, Ordering::Relaxed);
        if (mode as u8) > prev {
            let _ = self.tx.send(mode);
        }
    }

    pub fn mode(&self) -> ShutdownMode {
        // invariant: only ShutdownMode values are stored (fetch_max of two of them)
        ShutdownMode::try_from(self.mode.load(Ordering::Relaxed)).unwrap_or(ShutdownMode::Immediate)
    }

    pub fn subscribe(&self) -> watch::Receiver<ShutdownMode> {
        self.tx.subscribe()
    }

    /// Resolves once the mode is `mode` or stricter.
    pub async fn reached(&self, mode: ShutdownMode) {
        let mut rx = self.subscribe();
        // the sender lives as long as `self`, so the wait can only end by reaching the mode
        let _ = rx.wait_for(|m| (*m as u8) >= mode as u8).await;
    }
}
