//! What `SHOW POOLS` reports about one pool's clients and servers, computed in one place for
//! the admin console and the metrics exporter: the per-state counts the pool keeps by
//! transitions (`pool::state`) and the longest wait among its clients (`pool::clients`).

use std::sync::Arc;

use crate::pool::clients::ClientEntry;
use crate::pool::state::ClientState;
use crate::pool::{Pool, ServerState};

/// One `SHOW POOLS` row's numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounts {
    pub cl_active: u64,
    pub cl_waiting: u64,
    pub cl_active_cancel_req: u64,
    pub cl_waiting_cancel_req: u64,
    pub sv_active: u64,
    pub sv_active_cancel: u64,
    pub sv_being_canceled: u64,
    pub sv_idle: u64,
    pub sv_used: u64,
    pub sv_tested: u64,
    pub sv_login: u64,
    /// Microseconds the oldest waiting client of the pool has waited (`maxwait` +
    /// `maxwait_us`).
    pub maxwait_us: u64,
}

impl PoolCounts {
    /// The counts of `pool`; `clients` are the logged-in clients (for `maxwait`).
    pub fn of(pool: &Arc<Pool>, clients: &[Arc<ClientEntry>]) -> PoolCounts {
        let cl = |st: ClientState| pool.client_states.get(st as usize) as u64;
        let sv = |st: ServerState| pool.servers.count(st) as u64;
        PoolCounts {
            cl_active: cl(ClientState::Active),
            cl_waiting: cl(ClientState::Waiting),
            cl_active_cancel_req: cl(ClientState::ActiveCancelReq),
            cl_waiting_cancel_req: cl(ClientState::WaitingCancelReq),
            sv_active: sv(ServerState::Active),
            sv_active_cancel: sv(ServerState::ActiveCancel),
            sv_being_canceled: sv(ServerState::BeingCanceled),
            sv_idle: sv(ServerState::Idle),
            sv_used: sv(ServerState::Used),
            sv_tested: sv(ServerState::Tested),
            sv_login: sv(ServerState::Login),
            maxwait_us: clients
                .iter()
                .filter(|c| c.belongs_to(pool))
                .map(|c| c.waiting_for_us())
                .max()
                .unwrap_or(0),
        }
    }
}
