//! Per-function concurrency: a bounded number of instances, a bounded queue,
//! and a bounded wait, then `503 overloaded` with `Retry-After`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::tenancy::{AnonymousGate, AnonymousLimits};

/// Every slot of a function is taken and its queue is full or timed out.
#[derive(Debug, Clone, Copy)]
pub struct Overloaded {
    /// When a retry may find a slot, in seconds.
    pub retry_after_s: u32,
}

/// Admission control for one function.
#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    waiting: AtomicU32,
    queue_depth: u32,
    queue_timeout: Duration,
    /// What callers without the tenant's key may use of this function.
    pub anonymous: AnonymousGate,
}

impl Admission {
    /// Allows `max_concurrency` at once and `queue_depth` waiting up to
    /// `queue_timeout`; anonymous callers get their own share under `anonymous`.
    pub fn new(max_concurrency: u32, queue_depth: u32, queue_timeout: Duration, anonymous: AnonymousLimits) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrency as usize)),
            waiting: AtomicU32::new(0),
            queue_depth,
            queue_timeout,
            anonymous: AnonymousGate::new(anonymous, max_concurrency),
        }
    }

    /// Waits for a slot; the slot is held until the permit is dropped.
    pub async fn enter(self: Arc<Self>) -> Result<OwnedSemaphorePermit, Overloaded> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Ok(permit);
        }
        let overloaded = || {
            let retry_after_s = u32::try_from(self.queue_timeout.as_secs()).unwrap_or(u32::MAX).max(1);
            Overloaded { retry_after_s }
        };
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue_depth {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(overloaded());
        }
        let started = Instant::now();
        let acquired = tokio::time::timeout(self.queue_timeout, Arc::clone(&self.permits).acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        metrics::histogram!("muon_queue_wait_seconds").record(started.elapsed().as_secs_f64());
        match acquired {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(overloaded()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_is_refused_at_once() {
        let admission = Arc::new(Admission::new(1, 0, Duration::from_secs(5), AnonymousLimits::default()));
        let held = Arc::clone(&admission).enter().await;
        assert!(held.is_ok());
        let started = Instant::now();
        assert!(matches!(admission.enter().await, Err(Overloaded { .. })));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn waiter_gets_the_slot_when_it_frees() {
        let admission = Arc::new(Admission::new(1, 4, Duration::from_secs(5), AnonymousLimits::default()));
        let held = Arc::clone(&admission).enter().await;
        let (second, ()) = tokio::join!(admission.enter(), async { drop(held) });
        assert!(second.is_ok());
    }
}
