//! A trial's evaluations: `evaluate` over a split in file order, each
//! metric averaged by rows, with the rows' true and predicted classes. The
//! validation split, evaluated every epoch, is read once an attempt and
//! held in memory when it is small enough.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::api::datasets::Split;
use crate::datasets::{Batch, Cursor, SplitReader};
use crate::engine::NamedTensor;
use crate::invoke::{Evaluation, Input, Output};
use crate::registry::Version;

use super::runner::{Interval, Stop, TrialRun, tensor_bytes};

/// A split's true and predicted classes, for a confusion matrix.
#[derive(Debug, Default)]
pub(super) struct Classes {
    /// Rows evaluated.
    pub rows: u64,
    /// Each row's label.
    pub truth: Vec<i64>,
    /// Each row's predicted class.
    pub predicted: Vec<i64>,
}

/// Batches held in memory: each one's tensors and rows.
pub(super) type HeldBatches = Vec<(Vec<NamedTensor>, usize)>;

/// Whether the validation split is held in memory.
#[derive(Default)]
pub(super) enum Held {
    #[default]
    Unread,
    Batches(Arc<HeldBatches>),
    /// Larger than the budget: read at every evaluation.
    TooLarge,
}

/// An evaluation's figures so far: each metric's sum weighted by rows.
#[derive(Default)]
struct Tally {
    sums: BTreeMap<String, f64>,
    classes: Classes,
}

impl Tally {
    /// Each metric averaged by rows, and the rows' classes.
    fn finish(mut self) -> (BTreeMap<String, f64>, Classes) {
        let rows = self.classes.rows;
        if rows > 0 {
            self.sums.values_mut().for_each(|sum| *sum /= rows as f64);
        }
        (self.sums, self.classes)
    }
}

impl TrialRun<'_> {
    /// `evaluate` over a split in file order: each metric averaged by rows,
    /// and the rows' true and predicted classes.
    pub(super) async fn evaluate_split(
        &self,
        version: &Arc<Version>,
        dataset: &Path,
        split: Split,
        parameters: &[NamedTensor],
        interval: &mut Interval,
        attempt: i64,
    ) -> Result<(BTreeMap<String, f64>, Classes), Stop> {
        let batch_size = self.spec.batch_size.max(256);
        let mut tally = Tally::default();
        let held = match split {
            Split::Validation => self.held_validation(version, dataset, batch_size).await?,
            _ => None,
        };
        if let Some(batches) = held {
            for (tensors, rows) in batches.iter() {
                self.evaluate_batch(version, parameters, tensors.clone(), *rows, &mut tally, interval, attempt).await?;
            }
        } else {
            let mut reader = open(dataset, split, batch_size, None).await?;
            loop {
                let (back, batch) = read(tokio::task::spawn_blocking(read_batches(reader, 1))).await?;
                reader = back;
                let Some(batch) = batch.into_iter().next() else { break };
                self.evaluate_batch(version, parameters, batch.tensors, batch.rows, &mut tally, interval, attempt)
                    .await?;
            }
        }
        Ok(tally.finish())
    }

    /// `evaluate` on one batch of `rows` rows, added to `tally`.
    #[expect(clippy::too_many_arguments, reason = "the call's context, the batch, and where its figures go")]
    async fn evaluate_batch(
        &self,
        version: &Arc<Version>,
        parameters: &[NamedTensor],
        batch: Vec<NamedTensor>,
        rows: usize,
        tally: &mut Tally,
        interval: &mut Interval,
        attempt: i64,
    ) -> Result<(), Stop> {
        let labels = labels(&batch);
        let input = Input::TrainEvaluate { parameters: parameters.to_vec(), batch };
        let Evaluation { metrics, predictions } = match self.call(version, input, interval, attempt).await? {
            Output::Evaluation(evaluation) => evaluation,
            _ => return Err(Stop::Failed("`evaluate` returned something other than an evaluation".to_owned())),
        };
        for (name, value) in metrics {
            *tally.sums.entry(name).or_default() += value * rows as f64;
        }
        if let Some(labels) = labels
            && predictions.len() == labels.len()
        {
            tally.classes.truth.extend(labels);
            tally.classes.predicted.extend(predictions);
        }
        tally.classes.rows += rows as u64;
        Ok(())
    }

    /// The validation split's batches, read once an attempt when they fit
    /// in a sixteenth of the function's memory (as one call's batches
    /// must): every epoch evaluates on the same rows, and reading them
    /// again cost more than the evaluation. `None` when they do not fit.
    async fn held_validation(
        &self,
        version: &Version,
        dataset: &Path,
        batch_size: u32,
    ) -> Result<Option<Arc<HeldBatches>>, Stop> {
        match &*self.validation.lock().map_err(|_| anyhow::anyhow!("the validation cache is poisoned"))? {
            Held::Unread => {}
            Held::Batches(batches) => return Ok(Some(batches.clone())),
            Held::TooLarge => return Ok(None),
        }
        let budget = (u64::from(version.limits.memory_mb) << 20) / 16;
        let path = dataset.to_owned();
        let read = tokio::task::spawn_blocking(move || {
            let mut reader = SplitReader::open(&path, Split::Validation, batch_size as usize, None, None::<Cursor>)?;
            let (mut batches, mut bytes) = (Vec::new(), 0);
            while let Some(batch) = reader.next_batch()? {
                bytes += tensor_bytes(&batch.tensors);
                if bytes > budget {
                    return Ok(None);
                }
                batches.push((batch.tensors, batch.rows));
            }
            Ok::<_, crate::datasets::DatasetError>(Some(Arc::new(batches)))
        });
        let held = read
            .await
            .map_err(|err| Stop::Internal(anyhow::anyhow!(err)))?
            .map_err(|err| Stop::Failed(format!("the dataset cannot be read: {err}")))?;
        if let Ok(mut cache) = self.validation.lock() {
            *cache = held.as_ref().map_or(Held::TooLarge, |batches| Held::Batches(Arc::clone(batches)));
        }
        Ok(held)
    }
}

/// A batch's `y` as class indices, when the label is categorical.
fn labels(tensors: &[NamedTensor]) -> Option<Vec<i64>> {
    let y = tensors.iter().find(|t| t.name == "y")?;
    if y.tensor.ty != crate::engine::TensorType::I64 {
        return None;
    }
    Some(
        y.tensor
            .data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect(),
    )
}

async fn open(dataset: &Path, split: Split, batch_size: u32, seed: Option<u64>) -> Result<SplitReader, Stop> {
    let path = dataset.to_owned();
    tokio::task::spawn_blocking(move || SplitReader::open(&path, split, batch_size as usize, seed, None::<Cursor>))
        .await
        .map_err(|err| Stop::Internal(anyhow::anyhow!(err)))?
        .map_err(|err| Stop::Failed(format!("the dataset cannot be read: {err}")))
}

/// Reading up to `count` batches, for a blocking task; none at the end of the pass.
fn read_batches(
    mut reader: SplitReader,
    count: usize,
) -> impl FnOnce() -> (SplitReader, Result<Vec<Batch>, crate::datasets::DatasetError>) {
    move || {
        let mut batches = Vec::with_capacity(count);
        while batches.len() < count {
            match reader.next_batch() {
                Ok(Some(batch)) => batches.push(batch),
                Ok(None) => break,
                Err(err) => return (reader, Err(err)),
            }
        }
        (reader, Ok(batches))
    }
}

/// The reader and the batches a blocking task of [`read_batches`] read.
async fn read(
    task: tokio::task::JoinHandle<(SplitReader, Result<Vec<Batch>, crate::datasets::DatasetError>)>,
) -> Result<(SplitReader, Vec<Batch>), Stop> {
    let (reader, batches) = task.await.map_err(|err| Stop::Internal(anyhow::anyhow!(err)))?;
    let batches = batches.map_err(|err| Stop::Failed(format!("the dataset cannot be read: {err}")))?;
    Ok((reader, batches))
}
