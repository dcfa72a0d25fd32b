//! The inference pool: a fixed set of OS threads that run model loads and
//! computes, so tokio's workers keep serving HTTP while models work.
//!
//! Queued work is bounded by the requests that can be in flight (instances
//! are capped per function and per host), and each waits under its request's
//! deadline. A job whose request is gone is skipped or stopped.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::backend::Cancel;
use super::error::{ErrorCode, NnError};

type Job = Box<dyn FnOnce() + Send>;

/// A bounded set of inference threads.
pub struct ComputePool {
    jobs: mpsc::Sender<Job>,
    threads: usize,
}

impl ComputePool {
    /// Starts `threads` inference threads.
    pub fn start(threads: usize) -> anyhow::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new().name(format!("muon-nn-{index}")).spawn(move || {
                loop {
                    // The lock is held only while taking a job, never while running one.
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            })?;
        }
        Ok(Self { jobs, threads: threads.max(1) })
    }

    /// Number of inference threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `work` on an inference thread. If the returned future is dropped
    /// (the request hit its deadline), the work is cancelled: skipped if it
    /// has not started, told to stop through [`Cancel`] if it has.
    pub async fn run<T, W>(&self, work: W) -> Result<T, NnError>
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
        let gone = || NnError::new(ErrorCode::RuntimeError, "the inference pool has stopped");
        self.jobs.send(job).map_err(|_| gone())?;
        let output = result.await.map_err(|_| gone())?;
        guard.0 = None;
        Ok(output)
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
