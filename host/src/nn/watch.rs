//! What muon watches about a served model version: its statistics series,
//! the run of backend failures that calls for a reload, and (for a model a
//! training job made) a tally of its input features, which the monitor
//! compares with the training data.
//!
//! Everything here is recorded inline by the compute path, so it must stay
//! cheap: one lock per compute for the series, one for the tally, a few
//! atomics; and bounded: the tally is a sum and a sum of squares per
//! feature, which the monitor drains every window.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::error::ErrorCode;
use super::signature::{Dim, Signature};
use super::tensor::{ElementType, HostTensor};
use crate::stats::Series;

/// Backend failures in a row after which a model is reloaded from its bytes.
pub const RELOAD_AFTER_FAILURES: u32 = 5;

/// A model is reloaded at most this often: a model that fails for a reason
/// a reload cannot fix is not reloaded in a loop.
pub const RELOAD_COOLDOWN_MS: i64 = 60_000;

/// Rows of one compute that the feature tally reads, at most: a huge batch
/// costs the compute path no more than this.
const TALLY_ROWS: usize = 256;

/// Features a tally keeps, at most (the model's last input dimension).
const TALLY_FEATURES: usize = 4096;

/// One version of a tenant's model, as the compute path records it.
pub struct ModelWatch {
    /// The owning tenant.
    pub tenant: Arc<str>,
    /// The model's name.
    pub name: Arc<str>,
    /// Its version.
    pub version: i64,
    /// The training job that made it, if one did.
    pub job: Option<String>,
    series: Arc<Series>,
    failures: AtomicU32,
    last_reload_ms: AtomicI64,
    reloading: AtomicBool,
    features: Option<FeatureTally>,
}

impl ModelWatch {
    /// The watch of a version recorded into `series`; its input features
    /// are tallied when a job made it and its first input is a matrix of
    /// numbers with a fixed last dimension.
    pub(super) fn new(
        tenant: &str,
        name: &str,
        version: i64,
        job: Option<String>,
        signature: &Signature,
        series: Arc<Series>,
    ) -> Self {
        let features = job.as_ref().and_then(|_| FeatureTally::for_signature(signature));
        Self {
            tenant: Arc::from(tenant),
            name: Arc::from(name),
            version,
            job,
            series,
            failures: AtomicU32::new(0),
            last_reload_ms: AtomicI64::new(i64::MIN),
            reloading: AtomicBool::new(false),
            features,
        }
    }

    /// A watch of a trained model (for other modules' tests).
    #[cfg(test)]
    pub fn new_for_tests(tenant: &str, name: &str, version: i64, signature: &Signature, series: Arc<Series>) -> Self {
        Self::new(tenant, name, version, Some("job".to_owned()), signature, series)
    }

    /// The statistics series computes are recorded into.
    pub fn series(&self) -> &Arc<Series> {
        &self.series
    }

    /// The feature tally, when this model's inputs are tallied.
    pub fn features(&self) -> Option<&FeatureTally> {
        self.features.as_ref()
    }

    /// Notes a compute that succeeded: the run of failures is over.
    pub(super) fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// Notes a compute that failed with `code`; true when this failure
    /// calls for a reload (and this caller is the one to do it).
    pub(super) fn failed(&self, code: ErrorCode) -> bool {
        if !is_backend_fault(code) {
            return false;
        }
        let run = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = crate::clock::now_ms();
        let cooled = now_ms.saturating_sub(self.last_reload_ms.load(Ordering::Relaxed)) >= RELOAD_COOLDOWN_MS;
        if run < RELOAD_AFTER_FAILURES || !cooled {
            return false;
        }
        // One reload at a time, however many computes fail together.
        if self.reloading.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.last_reload_ms.store(now_ms, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        true
    }

    /// Notes that the reload [`ModelWatch::failed`] asked for is over.
    pub(super) fn reloaded(&self) {
        self.reloading.store(false, Ordering::Release);
    }
}

/// Whether a compute error is the backend's fault, which a reload may fix:
/// a runtime error. Not the caller's faults (an invalid argument, tensors
/// too large for its memory, its deadline) nor what the model cannot do
/// (an unsupported operation), which a reload would not change.
pub fn is_backend_fault(code: ErrorCode) -> bool {
    code == ErrorCode::RuntimeError
}

/// The error code a compute error is counted under in the statistics.
pub fn stats_code(code: ErrorCode) -> crate::api::ErrorCode {
    use crate::api::ErrorCode as Api;
    match code {
        ErrorCode::InvalidArgument | ErrorCode::InvalidEncoding | ErrorCode::UnsupportedOperation => Api::BadRequest,
        ErrorCode::Timeout => Api::Timeout,
        ErrorCode::TooLarge => Api::MemoryLimit,
        ErrorCode::NotFound => Api::NotFound,
        ErrorCode::Security => Api::Forbidden,
        ErrorCode::RuntimeError => Api::Internal,
    }
}

/// Per-feature sums of the rows a model was given, since the monitor last
/// drained them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Rows counted.
    pub rows: u64,
    /// Each feature's sum.
    pub sums: Vec<f64>,
    /// Each feature's sum of squares.
    pub squares: Vec<f64>,
}

impl Tally {
    fn with_width(width: usize) -> Self {
        Self { rows: 0, sums: vec![0.0; width], squares: vec![0.0; width] }
    }

    /// Adds `other`'s rows to this one's (tallies of the same width).
    pub fn merge(&mut self, other: &Tally) {
        if self.sums.len() != other.sums.len() {
            *self = other.clone();
            return;
        }
        self.rows += other.rows;
        for (sum, add) in self.sums.iter_mut().zip(&other.sums) {
            *sum += add;
        }
        for (square, add) in self.squares.iter_mut().zip(&other.squares) {
            *square += add;
        }
    }

    /// Feature `i`'s mean and (population) standard deviation, if any row was counted.
    pub fn moments(&self, i: usize) -> Option<(f64, f64)> {
        if self.rows == 0 {
            return None;
        }
        let n = self.rows as f64;
        let mean = self.sums.get(i)? / n;
        let variance = (self.squares.get(i)? / n - mean * mean).max(0.0);
        Some((mean, variance.sqrt()))
    }
}

/// The running tally of a model's first input, by its last dimension.
pub struct FeatureTally {
    input: String,
    width: usize,
    enabled: AtomicBool,
    tally: Mutex<Tally>,
}

impl FeatureTally {
    /// A tally of the signature's first input, when it is fp32 or fp64 with a
    /// fixed last dimension of at most [`TALLY_FEATURES`].
    fn for_signature(signature: &Signature) -> Option<Self> {
        let input = signature.inputs.first()?;
        if !matches!(input.ty, ElementType::Fp32 | ElementType::Fp64) {
            return None;
        }
        let width = match input.shape.last()? {
            Dim::Fixed(width) => usize::try_from(*width).ok().filter(|w| (1..=TALLY_FEATURES).contains(w))?,
            Dim::Symbol(_) => return None,
        };
        Some(Self {
            input: input.name.clone(),
            width,
            enabled: AtomicBool::new(true),
            tally: Mutex::new(Tally::default()),
        })
    }

    /// How many features a row has.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Stops tallying (the monitor found no training statistics to compare with).
    pub fn disable(&self) {
        self.enabled.store(false, Ordering::Relaxed);
    }

    /// The rows tallied since the last call, leaving an empty tally.
    pub fn drain(&self) -> Tally {
        std::mem::take(&mut *self.tally.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The tally of the tallied input among `inputs`, to add once the
    /// compute succeeded (so that rejected inputs are not counted).
    pub(super) fn observe(&self, inputs: &[(String, HostTensor)]) -> Option<Tally> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let (_, tensor) = inputs.iter().find(|(name, _)| *name == self.input)?;
        let values: Box<dyn Iterator<Item = f64>> = match tensor.ty {
            ElementType::Fp32 => {
                Box::new(tensor.data.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))))
            }
            ElementType::Fp64 => Box::new(
                tensor.data.chunks_exact(8).map(|b| f64::from_le_bytes(<[u8; 8]>::try_from(b).unwrap_or_default())),
            ),
            _ => return None,
        };
        if tensor.dimensions.last().and_then(|w| usize::try_from(*w).ok()) != Some(self.width) {
            return None;
        }
        let mut tally = Tally::with_width(self.width);
        let mut column = 0;
        for value in values.take(TALLY_ROWS * self.width) {
            tally.sums[column] += value;
            tally.squares[column] += value * value;
            column += 1;
            if column == self.width {
                column = 0;
                tally.rows += 1;
            }
        }
        Some(tally)
    }

    /// Adds what [`FeatureTally::observe`] read, once its compute succeeded.
    pub(super) fn add(&self, tally: &Tally) {
        let mut kept = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.sums.is_empty() {
            *kept = Tally::with_width(self.width);
        }
        kept.merge(tally);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::TensorSpec;
    use crate::stats::{SeriesKey, SeriesKind, StatsSettings, StatsStore};

    fn watch(job: Option<&str>, last_dim: Dim) -> ModelWatch {
        let signature = Signature {
            inputs: vec![TensorSpec {
                name: "x".to_owned(),
                ty: ElementType::Fp32,
                shape: vec![Dim::Symbol("N".to_owned()), last_dim],
            }],
            outputs: Vec::new(),
        };
        let key = SeriesKey { kind: SeriesKind::Model, tenant: Arc::from("t"), name: Arc::from("m"), version: 1 };
        let series = StatsStore::new(StatsSettings::default()).series(key);
        ModelWatch::new("t", "m", 1, job.map(str::to_owned), &signature, series)
    }

    fn rows(values: &[[f32; 2]]) -> Vec<(String, HostTensor)> {
        let data = values.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
        vec![("x".to_owned(), HostTensor { dimensions: vec![values.len() as u32, 2], ty: ElementType::Fp32, data })]
    }

    #[test]
    fn only_a_run_of_backend_failures_asks_for_one_reload() {
        let watch = watch(None, Dim::Fixed(2));
        for _ in 0..20 {
            assert!(!watch.failed(ErrorCode::InvalidArgument), "the caller's mistakes are not the backend's");
        }
        for _ in 1..RELOAD_AFTER_FAILURES {
            assert!(!watch.failed(ErrorCode::RuntimeError));
        }
        watch.succeeded();
        for _ in 1..RELOAD_AFTER_FAILURES {
            assert!(!watch.failed(ErrorCode::RuntimeError), "a success ends the run");
        }
        assert!(watch.failed(ErrorCode::RuntimeError), "the fifth in a row");
        watch.reloaded();
        for _ in 0..RELOAD_AFTER_FAILURES * 2 {
            assert!(!watch.failed(ErrorCode::RuntimeError), "not again within the cool-down");
        }
    }

    #[test]
    fn features_are_tallied_for_trained_models_with_a_fixed_width() {
        assert!(watch(None, Dim::Fixed(2)).features().is_none(), "no job, no training data to compare with");
        assert!(watch(Some("job"), Dim::Symbol("F".to_owned())).features().is_none());
        let watch = watch(Some("job"), Dim::Fixed(2));
        assert!(watch.features().is_some(), "a trained model's features are tallied");
        let Some(features) = watch.features() else { return };
        let seen = features.observe(&rows(&[[1.0, 10.0], [3.0, 10.0]]));
        assert_eq!(seen.as_ref().map(|t| t.rows), Some(2));
        if let Some(seen) = &seen {
            features.add(seen);
            features.add(seen);
        }
        let drained = features.drain();
        assert_eq!(drained.rows, 4);
        assert_eq!(drained.moments(0), Some((2.0, 1.0)));
        assert_eq!(drained.moments(1), Some((10.0, 0.0)));
        assert_eq!(features.drain().rows, 0, "drained");
        let wrong =
            vec![("x".to_owned(), HostTensor { dimensions: vec![1, 3], ty: ElementType::Fp32, data: vec![0; 12] })];
        assert!(features.observe(&wrong).is_none(), "another width is not this model's features");
        features.disable();
        assert!(features.observe(&rows(&[[1.0, 1.0]])).is_none());
    }
}
