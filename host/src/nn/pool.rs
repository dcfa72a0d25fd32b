//! The inference pools: fixed sets of OS threads that run model loads and
//! computes, so tokio's workers keep serving HTTP while models work.
//!
//! A compute cannot always be stopped once it runs (ONNX Runtime's terminate
//! and tract's cancellation both wait for the running kernel), so the pool
//! is fair between tenants instead of first come, first served: each tenant
//! has its own queue, queues are served round-robin, and a tenant holds at
//! most `per_tenant` threads at once. One tenant's long computes therefore
//! leave the other threads to everyone else.
//!
//! Queued work is bounded by the requests that can be in flight (instances
//! are capped per function and per host), and each waits under its request's
//! deadline. A job whose request is gone is skipped or stopped.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::oneshot;

use super::backend::Cancel;
use super::error::{ErrorCode, NnError};

type Job = Box<dyn FnOnce() + Send>;

/// A bounded set of inference threads shared fairly by tenants.
pub struct ComputePool {
    shared: Arc<Shared>,
    threads: usize,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Each tenant's waiting jobs, oldest first.
    queues: HashMap<Arc<str>, VecDeque<Job>>,
    /// Tenants with waiting jobs, next to serve first.
    turn: VecDeque<Arc<str>>,
    /// Threads each tenant holds now.
    running: HashMap<Arc<str>, usize>,
    per_tenant: usize,
}

impl State {
    /// The next job to run: the first tenant in turn that holds fewer than
    /// its share of threads gives its oldest job and goes to the back.
    fn next(&mut self) -> Option<(Arc<str>, Job)> {
        let position =
            self.turn.iter().position(|tenant| self.running.get(tenant).copied().unwrap_or(0) < self.per_tenant)?;
        let tenant = self.turn.remove(position)?;
        let queue = self.queues.get_mut(&tenant)?;
        let job = queue.pop_front()?;
        if queue.is_empty() {
            self.queues.remove(&tenant);
        } else {
            self.turn.push_back(Arc::clone(&tenant));
        }
        *self.running.entry(Arc::clone(&tenant)).or_default() += 1;
        Some((tenant, job))
    }

    fn finished(&mut self, tenant: &Arc<str>) {
        if let Some(count) = self.running.get_mut(tenant) {
            *count -= 1;
            if *count == 0 {
                self.running.remove(tenant);
            }
        }
    }
}

impl ComputePool {
    /// Starts `threads` threads named `name-N`, of which one tenant may hold
    /// at most `per_tenant` at once.
    pub fn start(name: &str, threads: usize, per_tenant: usize) -> anyhow::Result<Self> {
        let threads = threads.max(1);
        let state = State { per_tenant: per_tenant.clamp(1, threads), ..State::default() };
        let shared = Arc::new(Shared { state: Mutex::new(state), changed: Condvar::new() });
        for index in 0..threads {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new().name(format!("{name}-{index}")).spawn(move || shared.serve())?;
        }
        Ok(Self { shared, threads })
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `work` on a thread, in `tenant`'s turn. If the returned future is
    /// dropped (the request hit its deadline), the work is cancelled: skipped
    /// if it has not started, told to stop through [`Cancel`] if it has.
    pub async fn run<T, W>(&self, tenant: &str, work: W) -> Result<T, NnError>
    where
        T: Send + 'static,
        W: FnOnce(&Cancel) -> T + Send + 'static,
    {
        let cancel = Arc::new(Cancel::default());
        let mut guard = CancelOnDrop(Some(Arc::clone(&cancel)));
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            if !cancel.is_cancelled() {
                let _ = done.send(work(&cancel));
            }
        });
        self.submit(Arc::from(tenant), job)?;
        let output = result
            .await
            .map_err(|_| NnError::new(ErrorCode::RuntimeError, "the inference work stopped without an answer"))?;
        guard.0 = None;
        Ok(output)
    }

    fn submit(&self, tenant: Arc<str>, job: Job) -> Result<(), NnError> {
        let mut state = self
            .shared
            .state
            .lock()
            .map_err(|_| NnError::new(ErrorCode::RuntimeError, "the inference pool has stopped"))?;
        let queue = state.queues.entry(Arc::clone(&tenant)).or_default();
        queue.push_back(job);
        if queue.len() == 1 {
            state.turn.push_back(tenant);
        }
        drop(state);
        self.shared.changed.notify_all();
        Ok(())
    }
}

impl Shared {
    fn serve(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        loop {
            let Some((tenant, job)) = state.next() else {
                state = match self.changed.wait(state) {
                    Ok(state) => state,
                    Err(_) => return,
                };
                continue;
            };
            drop(state);
            // A panicking backend must not take the thread, or the tenant's
            // count, with it: the job's caller sees its answer dropped.
            if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                tracing::error!(tenant = %tenant, "an inference job panicked");
            }
            state = match self.state.lock() {
                Ok(state) => state,
                Err(_) => return,
            };
            state.finished(&tenant);
            // A thread the tenant gave back may let a waiting job of it run.
            self.changed.notify_all();
        }
    }
}

/// Cancels a compute whose waiting future was dropped.
struct CancelOnDrop(Option<Arc<Cancel>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = &self.0 {
            cancel.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "multi_thread")]
    async fn one_tenant_cannot_hold_every_thread() -> anyhow::Result<()> {
        let pool = Arc::new(ComputePool::start("test-pool", 2, 1)?);
        let hogs: Vec<_> = (0..4)
            .map(|_| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move { pool.run("hog", |_| std::thread::sleep(Duration::from_millis(300))).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        pool.run("bystander", |_| ()).await?;
        assert!(started.elapsed() < Duration::from_millis(150), "waited {:?}", started.elapsed());
        for hog in hogs {
            hog.await??;
        }
        Ok(())
    }
}
