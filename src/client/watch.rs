//! What session forwarding watches in each direction: Terminate from the client, and
//! ReadyForQuery / ParameterStatus from the server, plus enough request counting to know
//! whether a server is idle at a message boundary when the client leaves.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};

use crate::net::relay::{Verdict, Watcher};
use crate::protocol::backend::parse_parameter_status;
use crate::server::params::{ParamSet, is_tracked};

/// Requests in flight on a linked server. Atomics only because the two watchers live in one
/// future that must be `Send`; there is no cross-thread sharing.
#[derive(Default)]
pub struct Outstanding {
    /// Query / Sync / FunctionCall sent minus ReadyForQuery received.
    syncs: AtomicI64,
    /// Extended-protocol messages sent since the last Sync.
    unsynced: AtomicBool,
    /// Status byte of the last ReadyForQuery ('I', 'T', 'E').
    status: AtomicU8,
}

impl Outstanding {
    pub fn new() -> Outstanding {
        let o = Outstanding::default();
        o.status.store(b'I', Ordering::Relaxed);
        o
    }

    /// Idle, outside a transaction, nothing pending: safe to reset and reuse.
    pub fn is_idle(&self) -> bool {
        self.syncs.load(Ordering::Relaxed) == 0
            && !self.unsynced.load(Ordering::Relaxed)
            && self.status.load(Ordering::Relaxed) == b'I'
    }
}

/// Client-to-server direction.
pub struct ClientWatcher<'a> {
    pub outstanding: &'a Outstanding,
}

impl Watcher for ClientWatcher<'_> {
    fn wants_whole(&self, tag: u8) -> bool {
        tag == b'X'
    }

    fn on_message(&mut self, _tag: u8, _msg: &[u8]) -> Verdict {
        // Terminate: the server stays with the pool, so it never sees it
        Verdict::DropAndStop
    }

    fn on_tag(&mut self, tag: u8) {
        match tag {
            b'Q' | b'F' => {
                self.outstanding.syncs.fetch_add(1, Ordering::Relaxed);
            }
            b'S' => {
                self.outstanding.syncs.fetch_add(1, Ordering::Relaxed);
                self.outstanding.unsynced.store(false, Ordering::Relaxed);
            }
            b'P' | b'B' | b'E' | b'D' | b'C' | b'H' => {
                self.outstanding.unsynced.store(true, Ordering::Relaxed)
            }
            _ => {}
        }
    }
}

/// Server-to-client direction.
pub struct ServerWatcher<'a> {
    pub outstanding: &'a Outstanding,
    pub server_params: &'a mut ParamSet,
    pub client_params: &'a mut ParamSet,
    pub tracked: &'a [String],
}

impl Watcher for ServerWatcher<'_> {
    fn wants_whole(&self, tag: u8) -> bool {
        tag == b'Z' || tag == b'S'
    }

    fn on_message(&mut self, tag: u8, msg: &[u8]) -> Verdict {
        match tag {
            b'Z' => {
                if let Some(&status) = msg.get(5) {
                    self.outstanding.status.store(status, Ordering::Relaxed);
                }
                let _ = self.outstanding.syncs.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |n| Some((n - 1).max(0)),
                );
            }
            _ => {
                if let Ok((name, value)) = parse_parameter_status(msg) {
                    self.server_params.set(name, value);
                    if is_tracked(name, self.tracked) {
                        self.client_params.set(name, value);
                    }
                }
            }
        }
        Verdict::Forward
    }

    fn on_tag(&mut self, _tag: u8) {}
}
