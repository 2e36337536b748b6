//! Waiting at `max_db_connections` / `max_user_connections`: the budget is held by servers
//! (their permits live inside the connection), so a waiter is served either by a server of its
//! own pool coming back idle or by an idle server of another pool it may close.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::pool::Pool;
use crate::pool::checkout::CheckoutError;
use crate::pool::registry::PoolRegistry;

/// How often a waiter looks again. A released server goes to its own pool's idle list and
/// keeps its permit, so no semaphore wakes the waiter; PgBouncer likewise re-examines waiting
/// clients on its maintenance loop. Only clients blocked at a limit pay for this.
const RECHECK: Duration = Duration::from_millis(50);

/// What ends a wait at a limit.
pub(super) enum LimitWait {
    Permit(OwnedSemaphorePermit),
    /// A server of this pool is idle again: take it instead of opening one.
    OwnIdle,
}

#[derive(Clone, Copy)]
pub(super) enum LimitKind {
    Db,
    User,
}

impl Pool {
    /// Frees budget by closing an idle server of another pool sharing it (PgBouncer does the
    /// same); true if one was closed.
    fn close_idle_sharing(&self, which: LimitKind, registry: &PoolRegistry) -> bool {
        match which {
            LimitKind::Db => registry.close_idle_in_db(&self.db_name),
            LimitKind::User => registry.close_idle_of_user(&self.login_user),
        }
    }

    /// Waits (at most `query_wait_timeout`, 0 = forever) for a permit of `sem`.
    pub(super) async fn wait_limit(
        &self,
        sem: &Arc<Semaphore>,
        which: LimitKind,
        registry: &PoolRegistry,
    ) -> Result<LimitWait, CheckoutError> {
        let wait = async {
            loop {
                if let Ok(p) = sem.clone().try_acquire_owned() {
                    return Ok(LimitWait::Permit(p));
                }
                if self.idle_count() > 0 {
                    return Ok(LimitWait::OwnIdle);
                }
                if self.close_idle_sharing(which, registry) {
                    if let Ok(p) = sem.clone().try_acquire_owned() {
                        return Ok(LimitWait::Permit(p));
                    }
                }
                tokio::select! {
                    p = sem.clone().acquire_owned() => {
                        return p.map(LimitWait::Permit).map_err(|_| CheckoutError::Closed);
                    }
                    _ = tokio::time::sleep(RECHECK) => {}
                }
            }
        };
        let limit = self.def().query_wait_timeout;
        if limit.is_zero() {
            wait.await
        } else {
            tokio::time::timeout(limit, wait)
                .await
                .map_err(|_| CheckoutError::WaitTimeout)?
        }
    }
}
