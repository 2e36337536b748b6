//! A pool's usage slots (`pool_size`, `reserve_pool_size`) as a fair semaphore whose size an
//! admin `SET` or a RELOAD changes in place: growing wakes clients already waiting, shrinking
//! takes free permits at once and the rest as busy slots come back.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Semaphore size standing for "unlimited" (`pool_size = 0`).
const UNLIMITED: usize = Semaphore::MAX_PERMITS >> 4;

/// A semaphore of `size` permits, resizable while permits are out.
pub(crate) struct Slots {
    sem: Arc<Semaphore>,
    /// The permits in circulation (held + free), after `owed` are taken back.
    size: Mutex<usize>,
    /// Permits to forget when they come back (a shrink while they were held).
    owed: Arc<AtomicUsize>,
}

/// One slot; it goes back to the semaphore when dropped, unless a shrink claims it.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    owed: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(p) = self.permit.take() else { return };
        let claimed = self
            .owed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if claimed {
            p.forget();
        }
    }
}

fn permits_for(size: usize, zero_is_unlimited: bool) -> usize {
    if size == 0 && zero_is_unlimited {
        UNLIMITED
    } else {
        size
    }
}

impl Slots {
    /// `zero_is_unlimited`: `pool_size = 0` means no limit; `reserve_pool_size = 0` means none.
    pub(crate) fn new(size: usize, zero_is_unlimited: bool) -> Slots {
        let n = permits_for(size, zero_is_unlimited);
        Slots {
            sem: Arc::new(Semaphore::new(n)),
            size: Mutex::new(n),
            owed: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn wrap(&self, permit: OwnedSemaphorePermit) -> Slot {
        Slot {
            permit: Some(permit),
            owed: self.owed.clone(),
        }
    }

    pub(crate) fn try_acquire(&self) -> Result<Slot, TryAcquireError> {
        self.sem.clone().try_acquire_owned().map(|p| self.wrap(p))
    }

    /// Waits first come, first served.
    pub(crate) async fn acquire(&self) -> Result<Slot, AcquireError> {
        self.sem.clone().acquire_owned().await.map(|p| self.wrap(p))
    }

    pub(crate) fn available(&self) -> usize {
        self.sem.available_permits()
    }

    /// Changes the size; waiting clients are served at once when it grows.
    pub(crate) fn resize(&self, size: usize, zero_is_unlimited: bool) {
        let target = permits_for(size, zero_is_unlimited);
        let mut cur = self.size.lock().unwrap_or_else(|p| p.into_inner());
        if target > *cur {
            let mut grow = target - *cur;
            // first cancel a shrink still owed
            while grow > 0 {
                let took = self
                    .owed
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                    .is_ok();
                if !took {
                    break;
                }
                grow -= 1;
            }
            self.sem.add_permits(grow);
        } else if target < *cur {
            let shrink = *cur - target;
            let forgotten = self.sem.forget_permits(shrink);
            self.owed.fetch_add(shrink - forgotten, Ordering::AcqRel);
        }
        *cur = target;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn growing_serves_a_waiter_and_shrinking_waits_for_busy_slots() {
        let slots = Arc::new(Slots::new(1, true));
        let held = slots.try_acquire().expect("one free");
        assert!(slots.try_acquire().is_err());
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire().await.map(|_| ()) })
        };
        slots.resize(2, true);
        waiter.await.expect("task").expect("served after the grow");
        // back to 1 while one is held: the held one is not returned
        slots.resize(1, true);
        drop(held);
        assert_eq!(slots.available(), 1);
        let again = slots.try_acquire().expect("one free");
        assert!(slots.try_acquire().is_err());
        drop(again);
        slots.resize(0, false);
        assert!(slots.try_acquire().is_err());
    }
}
