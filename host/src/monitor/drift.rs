//! Drift: the inputs a model sees, compared with the data it was trained on.
//!
//! A model a training job exported is linked to its job, and the job to the
//! dataset version it read. The dataset's report holds each column's mean
//! and standard deviation (and the normalization the training reader
//! applied); the model's first input, `[N, features]`, takes the stored
//! feature columns in order (numeric features, then one-hot columns, as
//! `datasets::write` lays them out). wasi-nn tallies each feature's sum and
//! sum of squares ([`crate::nn::FeatureTally`]); every window the monitor
//! drains the tally and keeps the last [`WINDOWS`] of them, so memory stays
//! at a few numbers per feature.
//!
//! A feature drifts when, over those windows and with at least
//! [`MIN_ROWS`] rows, its mean is more than `drift_sigmas` training standard
//! deviations from the training mean: the mean of 100 rows has a standard
//! error of a tenth of a deviation, so noise does not reach 3. The alert
//! resolves when the mean comes back. One-hot columns (whose share per
//! category the report does not keep) and constant columns are not compared.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, PoisonError};

use crate::api::AlertLabels;
use crate::api::datasets::DatasetReport;
use crate::datasets::DatasetError;
use crate::db::Db;
use crate::nn::{ModelWatch, Tally};

use super::models::{ModelSide, Tracked, VersionKey};
use super::{Firing, Monitor};

/// Windows of tallies compared with the training statistics.
pub const WINDOWS: usize = 6;

/// Rows those windows must hold before a feature is judged.
pub const MIN_ROWS: u64 = 100;

/// The detector name of a drift alert.
const DRIFT: &str = "drift";

/// A model's training statistics, by input feature position.
#[derive(Debug, Clone, PartialEq)]
pub struct Training {
    /// The dataset and version the job trained on, for summaries.
    pub dataset: String,
    /// Each feature, or `None` where there is nothing to compare with.
    pub features: Vec<Option<FeatureStats>>,
}

/// One feature's training statistics, as the model sees it (normalized).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    /// The dataset's column.
    pub name: String,
    /// Its mean.
    pub mean: f64,
    /// Its standard deviation (positive).
    pub std: f64,
}

impl Training {
    /// The statistics of the features `report`'s dataset feeds a model,
    /// in the training reader's order; `None` for a preprocessed dataset,
    /// whose features are tensors.
    pub fn from_report(report: &DatasetReport) -> Option<Self> {
        if report.preprocess.is_some() {
            return None;
        }
        let label = report.label.as_ref().map(|l| l.column.as_str());
        let features = report
            .stored_columns
            .iter()
            .filter(|c| c.ty == "fp64" && c.shape.is_empty() && Some(c.name.as_str()) != label)
            .map(|stored| {
                let column = report.columns.iter().find(|c| c.name == stored.name)?;
                let stats = column.stats.as_ref()?;
                let (offset, scale) = column.normalization.map_or((0.0, 1.0), |n| (n.offset, n.scale));
                let std = stats.std? / scale;
                (std.is_finite() && std > 0.0).then(|| FeatureStats {
                    name: stored.name.clone(),
                    mean: (stats.mean - offset) / scale,
                    std,
                })
            })
            .collect();
        Some(Self { dataset: format!("{} version {}", report.name, report.version), features })
    }
}

/// What one check decided about one feature.
struct Verdict {
    labels: AlertLabels,
    fire: Option<Firing>,
}

impl Monitor {
    /// Compares the recent inputs of every tallied model with its training
    /// statistics; fires `drift` per feature that moved, resolves it when
    /// the feature comes back.
    pub async fn check_drift(&self) -> anyhow::Result<()> {
        let Some(side) = self.models.get() else { return Ok(()) };
        self.seed_drift_firing(side).await?;
        let watched = side.models.watched();
        let mut verdicts = Vec::new();
        for watch in &watched {
            let key: VersionKey = (Arc::clone(&watch.tenant), Arc::clone(&watch.name), watch.version);
            let known = side.state.lock().unwrap_or_else(PoisonError::into_inner).drift.contains_key(&key);
            if !known && !self.track(side, watch, key.clone()).await? {
                continue;
            }
            let drained = watch.features().map(|f| f.drain()).unwrap_or_default();
            let sigmas = self.thresholds.effective(&watch.tenant, "").drift_sigmas;
            let mut state = side.state.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(tracked) = state.drift.get_mut(&key) {
                verdicts.extend(judge(watch, tracked, drained, sigmas));
            }
        }
        verdicts.extend(self.forget_untracked(side, &watched));
        for verdict in verdicts {
            match verdict.fire {
                Some(firing) => drop(self.alerts.fire(firing).await?),
                None => drop(self.alerts.resolve(&verdict.labels).await?),
            }
        }
        Ok(())
    }

    /// Reads the drift alerts firing when this node started, once, so that
    /// they resolve when their features come back.
    async fn seed_drift_firing(&self, side: &ModelSide) -> anyhow::Result<()> {
        if side.state.lock().unwrap_or_else(PoisonError::into_inner).drift_firing.is_some() {
            return Ok(());
        }
        let firing: HashSet<(String, String, String)> = self
            .alerts
            .firing()
            .await?
            .into_iter()
            .filter(|a| a.labels.detector == DRIFT)
            .filter_map(|a| Some((a.labels.tenant, a.labels.model?, a.labels.feature?)))
            .collect();
        side.state.lock().unwrap_or_else(PoisonError::into_inner).drift_firing = Some(firing);
        Ok(())
    }

    /// Starts following `watch`: finds its training statistics. Returns
    /// whether there are any; without, its tally is turned off.
    async fn track(&self, side: &ModelSide, watch: &ModelWatch, key: VersionKey) -> anyhow::Result<bool> {
        let training = training_of(&self.db, side, watch).await?;
        let width = watch.features().map_or(0, |f| f.width());
        let Some(training) = training.filter(|t| t.features.len() == width && t.features.iter().any(Option::is_some))
        else {
            tracing::info!(tenant = %watch.tenant, model = %watch.name, version = watch.version,
                "no training statistics match this model's inputs; its inputs are not checked for drift");
            if let Some(features) = watch.features() {
                features.disable();
            }
            return Ok(false);
        };
        let mut state = side.state.lock().unwrap_or_else(PoisonError::into_inner);
        let claimed = state.drift_firing.as_mut().map(|firing| {
            let mine: HashSet<String> = firing
                .iter()
                .filter(|(t, m, _)| **t == *watch.tenant && **m == *watch.name)
                .map(|(_, _, feature)| feature.clone())
                .collect();
            firing.retain(|(t, m, _)| !(**t == *watch.tenant && **m == *watch.name));
            mine
        });
        let tracked =
            Tracked { training: Arc::new(training), windows: VecDeque::new(), firing: claimed.unwrap_or_default() };
        state.drift.insert(key, tracked);
        Ok(true)
    }

    /// Drops the versions no longer watched (replaced, deleted), resolving their alerts.
    fn forget_untracked(&self, side: &ModelSide, watched: &[Arc<ModelWatch>]) -> Vec<Verdict> {
        let live: HashSet<VersionKey> =
            watched.iter().map(|w| (Arc::clone(&w.tenant), Arc::clone(&w.name), w.version)).collect();
        let mut state = side.state.lock().unwrap_or_else(PoisonError::into_inner);
        let gone: Vec<VersionKey> = state.drift.keys().filter(|k| !live.contains(*k)).cloned().collect();
        let mut verdicts = Vec::new();
        for key in gone {
            if let Some(tracked) = state.drift.remove(&key) {
                for feature in tracked.firing {
                    verdicts.push(Verdict { labels: drift_labels(&key.0, &key.1, &feature), fire: None });
                }
            }
        }
        verdicts
    }
}

/// The training statistics of the dataset version the job behind `watch` read.
async fn training_of(db: &Db, side: &ModelSide, watch: &ModelWatch) -> anyhow::Result<Option<Training>> {
    let Some(job) = &watch.job else { return Ok(None) };
    let Some(row) = db.job_by_id(job).await? else { return Ok(None) };
    if row.tenant != *watch.tenant {
        return Ok(None);
    }
    let version = u64::try_from(row.dataset_version).ok();
    match side.datasets.get(&row.tenant, &row.dataset, version).await {
        Ok(report) => Ok(Training::from_report(&report)),
        Err(DatasetError::NotFound(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Adds the window's tally to `tracked` and judges each feature.
fn judge(watch: &ModelWatch, tracked: &mut Tracked, drained: Tally, sigmas: f64) -> Vec<Verdict> {
    tracked.windows.push_back(drained);
    while tracked.windows.len() > WINDOWS {
        tracked.windows.pop_front();
    }
    let mut recent = Tally::default();
    for window in tracked.windows.iter().filter(|w| w.rows > 0) {
        recent.merge(window);
    }
    if recent.rows < MIN_ROWS {
        // Too few rows to tell either way: alerts stay as they are.
        return Vec::new();
    }
    let mut verdicts = Vec::new();
    for (i, stats) in tracked.training.features.iter().enumerate() {
        let (Some(stats), Some((mean, spread))) = (stats, recent.moments(i)) else { continue };
        let distance = (mean - stats.mean).abs() / stats.std;
        let labels = drift_labels(&watch.tenant, &watch.name, &stats.name);
        let firing = tracked.firing.contains(&stats.name);
        if distance > sigmas && !firing {
            tracked.firing.insert(stats.name.clone());
            let summary = format!(
                "model {} version {}: input feature `{}` has a mean of {mean:.4} (spread {spread:.4}) over its last \
                 {} rows, {distance:.1} training standard deviations from {:.4} (spread {:.4}) in dataset {}; \
                 check what feeds the model, or retrain it on current data",
                watch.name, watch.version, stats.name, recent.rows, stats.mean, stats.std, tracked.training.dataset
            );
            verdicts.push(Verdict {
                fire: Some(Firing { labels: labels.clone(), value: mean, baseline: stats.mean, summary }),
                labels,
            });
        } else if distance <= sigmas && firing {
            tracked.firing.remove(&stats.name);
            verdicts.push(Verdict { labels, fire: None });
        }
    }
    verdicts
}

fn drift_labels(tenant: &str, model: &str, feature: &str) -> AlertLabels {
    AlertLabels {
        tenant: tenant.to_owned(),
        detector: DRIFT.to_owned(),
        function: None,
        version: None,
        model: Some(model.to_owned()),
        feature: Some(feature.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(rows: &[[f64; 2]]) -> Tally {
        let mut tally = Tally { rows: 0, sums: vec![0.0; 2], squares: vec![0.0; 2] };
        for row in rows {
            tally.rows += 1;
            for (i, x) in row.iter().enumerate() {
                tally.sums[i] += x;
                tally.squares[i] += x * x;
            }
        }
        tally
    }

    #[test]
    fn a_feature_that_moves_fires_and_resolves_when_it_comes_back() {
        use crate::nn::{Dim, ElementType, Signature, TensorSpec};
        use crate::stats::{SeriesKey, SeriesKind, StatsSettings, StatsStore};
        let signature = Signature {
            inputs: vec![TensorSpec { name: "x".to_owned(), ty: ElementType::Fp32, shape: vec![Dim::Fixed(2)] }],
            outputs: Vec::new(),
        };
        let key = SeriesKey { kind: SeriesKind::Model, tenant: Arc::from("t"), name: Arc::from("m"), version: 3 };
        let series = StatsStore::new(StatsSettings::default()).series(key);
        let watch = ModelWatch::new_for_tests("t", "m", 3, &signature, series);
        let training = Training {
            dataset: "d version 1".to_owned(),
            features: vec![Some(FeatureStats { name: "a".to_owned(), mean: 0.0, std: 1.0 }), None],
        };
        let mut tracked = Tracked { training: Arc::new(training), windows: VecDeque::new(), firing: HashSet::new() };
        let few = tally(&[[5.0, 9.0]; 50]);
        assert!(judge(&watch, &mut tracked, few, 3.0).is_empty(), "50 rows are too few to judge");
        let verdicts = judge(&watch, &mut tracked, tally(&[[5.0, 9.0]; 50]), 3.0);
        assert_eq!(verdicts.len(), 1, "one feature compared, and it moved");
        assert_eq!(verdicts[0].labels.feature.as_deref(), Some("a"));
        assert!(verdicts[0].fire.as_ref().is_some_and(|f| f.value == 5.0 && f.summary.contains("`a`")));
        assert!(judge(&watch, &mut tracked, tally(&[[5.0, 9.0]; 50]), 3.0).is_empty(), "fired once");
        let mut resolved = Vec::new();
        for _ in 0..WINDOWS {
            resolved.extend(judge(&watch, &mut tracked, tally(&[[0.5, 9.0]; 50]), 3.0));
        }
        assert_eq!(resolved.len(), 1);
        assert!(resolved[0].fire.is_none(), "back within 3 deviations: resolved");
    }

    #[test]
    fn moments_of_a_tally_are_the_rows_mean_and_spread() {
        let t = tally(&[[1.0, 10.0], [3.0, 10.0]]);
        assert_eq!(t.moments(0), Some((2.0, 1.0)));
        assert_eq!(t.moments(1), Some((10.0, 0.0)));
        assert_eq!(Tally::default().moments(0), None);
    }
}
