//! The train split's batches, read ahead of the guest.
//!
//! A blocking thread reads epoch after epoch, each shuffled with its own
//! seed, into a queue that holds at most a byte budget. So the guest never
//! waits on the dataset file: not for the next call's batches, and not for
//! the first batches of the next epoch, which are read while it trains on
//! this one. One reader serves every epoch ([`SplitReader::restart`]), so a
//! small split is decoded once; the batches are exactly those a reader
//! opened per epoch gives.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use crate::api::datasets::Split;
use crate::datasets::{Batch, Cursor, SplitReader};

use super::runner::{Stop, tensor_bytes};

/// Budget permits are kibibytes, so that a budget fits in a `u32`.
const PERMIT_BYTES: u64 = 1024;

/// What the reading thread sends.
enum Fed {
    Batch(Batch),
    /// The epoch's last batch has been sent.
    EpochEnd,
    Failed(String),
}

/// Batches read ahead, epoch after epoch; dropping it stops the reading.
pub(super) struct Feed {
    queue: mpsc::UnboundedReceiver<(Fed, u32)>,
    budget: Arc<Semaphore>,
    /// The last call returned the epoch's last batches: the next returns none.
    ended: bool,
}

impl Feed {
    /// Starts reading `dataset`'s train split for `epochs`, `batch_size`
    /// rows a batch, each epoch shuffled with `seed(epoch)`, at most
    /// `budget_bytes` ahead of the guest (and always one batch).
    pub(super) fn start(
        dataset: PathBuf,
        batch_size: u32,
        epochs: RangeInclusive<i64>,
        seed: impl Fn(i64) -> u64 + Send + 'static,
        budget_bytes: u64,
    ) -> Self {
        let permits = u32::try_from(budget_bytes / PERMIT_BYTES).unwrap_or(u32::MAX).max(1);
        let budget = Arc::new(Semaphore::new(permits as usize));
        let (sender, queue) = mpsc::unbounded_channel();
        let reader_budget = Arc::clone(&budget);
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            // In file order until each epoch's restart sets its shuffle.
            let opened = SplitReader::open(&dataset, Split::Train, batch_size as usize, None, None::<Cursor>);
            let mut reader = match opened {
                Ok(reader) => reader,
                Err(err) => return drop(sender.send((Fed::Failed(err.to_string()), 0))),
            };
            for epoch in epochs {
                reader.restart(Some(seed(epoch)));
                loop {
                    let batch = match reader.next_batch() {
                        Ok(Some(batch)) => batch,
                        Ok(None) => break,
                        Err(err) => return drop(sender.send((Fed::Failed(err.to_string()), 0))),
                    };
                    let bytes = tensor_bytes(&batch.tensors);
                    let wanted = u32::try_from(bytes.div_ceil(PERMIT_BYTES)).unwrap_or(u32::MAX).clamp(1, permits);
                    // Closed when the feed is dropped: the trial has stopped.
                    let Ok(permit) = runtime.block_on(reader_budget.acquire_many(wanted)) else { return };
                    permit.forget();
                    if sender.send((Fed::Batch(batch), wanted)).is_err() {
                        return;
                    }
                }
                if sender.send((Fed::EpochEnd, 0)).is_err() {
                    return;
                }
            }
        });
        Self { queue, budget, ended: false }
    }

    /// Up to `count` of the epoch's next batches; none once the epoch is over.
    pub(super) async fn next(&mut self, count: usize) -> Result<Vec<Batch>, Stop> {
        if std::mem::take(&mut self.ended) {
            return Ok(Vec::new());
        }
        let mut batches = Vec::with_capacity(count);
        // Handed back once for all the batches taken, not batch by batch:
        // each return wakes the reading thread.
        let mut taken = 0usize;
        let outcome = loop {
            if batches.len() >= count.max(1) {
                break Ok(());
            }
            let Some((fed, permits)) = self.queue.recv().await else {
                break Err(Stop::Internal(anyhow::anyhow!("the dataset's reading thread stopped")));
            };
            taken += permits as usize;
            match fed {
                Fed::Batch(batch) => batches.push(batch),
                Fed::EpochEnd => {
                    self.ended = !batches.is_empty();
                    break Ok(());
                }
                Fed::Failed(err) => break Err(Stop::Failed(format!("the dataset cannot be read: {err}"))),
            }
        };
        self.budget.add_permits(taken);
        outcome.map(|()| batches)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.budget.close();
    }
}
