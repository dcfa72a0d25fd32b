//! The monitor's view of the models: which cannot be loaded (an alert per
//! model, `model_unloadable`), and the state the drift detector keeps
//! (`drift.rs`). nn keeps the lists; this module turns them into alerts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use crate::api::AlertLabels;
use crate::datasets::DatasetStore;
use crate::nn::{ModelStore, Tally};

use super::{Firing, Monitor};

/// How often models that cannot be loaded are checked again (their file
/// may have been restored), in milliseconds.
const RECHECK_MS: i64 = 30_000;

/// The detector name of the alert on a model that cannot be loaded.
pub(super) const UNLOADABLE: &str = "model_unloadable";

/// What the monitor reads about models, and what it keeps between windows.
pub struct ModelSide {
    pub(super) models: Arc<ModelStore>,
    pub(super) datasets: Arc<DatasetStore>,
    pub(super) state: Mutex<ModelState>,
}

/// A model version's identity: tenant, name, version.
pub(super) type VersionKey = (Arc<str>, Arc<str>, i64);

/// What the model detectors remember from one window to the next.
#[derive(Default)]
pub(super) struct ModelState {
    /// Models whose `model_unloadable` alert this node knows to be firing;
    /// `None` until read from the database (alerts outlive a restart).
    pub unloadable_firing: Option<HashSet<(String, String)>>,
    /// When unloadable models were last checked again.
    pub rechecked_ms: i64,
    /// Per tallied model version: its training statistics and recent windows.
    pub drift: HashMap<VersionKey, Tracked>,
    /// `drift` alerts firing when this node started, not yet claimed by a
    /// tracked model; `None` until read from the database.
    pub drift_firing: Option<HashSet<(String, String, String)>>,
}

/// One tallied model version, as the drift detector follows it.
pub(super) struct Tracked {
    /// Its training statistics, by feature position (`None`: not compared).
    pub training: Arc<super::drift::Training>,
    /// The tallies of its recent windows, newest last.
    pub windows: VecDeque<Tally>,
    /// The features whose `drift` alert is firing.
    pub firing: HashSet<String>,
}

impl Monitor {
    /// Lets the monitor watch `models` (unloadable models, drift), comparing
    /// inputs with the training statistics of `datasets`. Called once, by
    /// the server, before [`Monitor::run`].
    pub fn watch_models(&self, models: Arc<ModelStore>, datasets: Arc<DatasetStore>) {
        let side = ModelSide { models, datasets, state: Mutex::new(ModelState::default()) };
        if self.models.set(side).is_err() {
            tracing::warn!("the monitor already watches the models");
        }
    }

    /// The model detectors, once a window: models that cannot be loaded, then drift.
    pub async fn check_models(&self) {
        if let Err(err) = self.check_unloadable().await {
            tracing::warn!(error = format!("{err:#}"), "cannot check for unloadable models");
        }
        if let Err(err) = self.check_drift().await {
            tracing::warn!(error = format!("{err:#}"), "cannot check the models' inputs for drift");
        }
    }

    /// Fires `model_unloadable` for each model that cannot be loaded, and
    /// resolves it once the model loads (or is gone).
    async fn check_unloadable(&self) -> anyhow::Result<()> {
        let Some(side) = self.models.get() else { return Ok(()) };
        let now_ms = crate::clock::now_ms();
        let (seeded, recheck) = {
            let mut state = side.state.lock().unwrap_or_else(PoisonError::into_inner);
            let recheck = now_ms.saturating_sub(state.rechecked_ms) >= RECHECK_MS;
            if recheck {
                state.rechecked_ms = now_ms;
            }
            (state.unloadable_firing.is_some(), recheck)
        };
        if !seeded {
            let firing: HashSet<(String, String)> = self
                .alerts
                .firing()
                .await?
                .into_iter()
                .filter(|a| a.labels.detector == UNLOADABLE)
                .filter_map(|a| Some((a.labels.tenant, a.labels.model?)))
                .collect();
            side.state.lock().unwrap_or_else(PoisonError::into_inner).unloadable_firing = Some(firing);
        }
        if recheck {
            side.models.recheck_unloadable().await;
        }
        let broken = side.models.unloadable_models();
        let known = self.unloadable_firing(side);
        for model in &broken {
            if known.contains(&(model.tenant.clone(), model.name.clone())) {
                continue;
            }
            let summary = format!(
                "model {} version {} cannot be loaded: {}; upload it again (PUT /v1/models/{}) or restore its file",
                model.name, model.version, model.reason, model.name
            );
            let firing =
                Firing { labels: unloadable_labels(&model.tenant, &model.name), value: 1.0, baseline: 0.0, summary };
            self.alerts.fire(firing).await?;
            self.set_unloadable_firing(side, &model.tenant, &model.name, true);
        }
        for (tenant, name) in known {
            let healthy = side.models.loads(&tenant, &name) || side.models.get(&tenant, &name).is_none();
            if healthy && !broken.iter().any(|m| m.tenant == tenant && m.name == name) {
                self.alerts.resolve(&unloadable_labels(&tenant, &name)).await?;
                self.set_unloadable_firing(side, &tenant, &name, false);
            }
        }
        Ok(())
    }

    fn unloadable_firing(&self, side: &ModelSide) -> HashSet<(String, String)> {
        let state = side.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.unloadable_firing.clone().unwrap_or_default()
    }

    fn set_unloadable_firing(&self, side: &ModelSide, tenant: &str, name: &str, firing: bool) {
        let mut state = side.state.lock().unwrap_or_else(PoisonError::into_inner);
        let set = state.unloadable_firing.get_or_insert_default();
        let key = (tenant.to_owned(), name.to_owned());
        if firing {
            set.insert(key);
        } else {
            set.remove(&key);
        }
    }
}

fn unloadable_labels(tenant: &str, model: &str) -> AlertLabels {
    AlertLabels {
        tenant: tenant.to_owned(),
        detector: UNLOADABLE.to_owned(),
        function: None,
        version: None,
        model: Some(model.to_owned()),
        feature: None,
    }
}
