//! Operations: muon watches what it runs. Statistics come from the settle
//! path and wasi-nn (`stats`); every window, the detectors (`detect.rs`)
//! compare each series with its own recent past and fire or resolve alerts
//! (`alerts.rs`); guarded rollouts (`rollout.rs`) compare a new version with
//! the stable one and roll back or promote on their own; sinks
//! (`sinks.rs`) post alerts to webhooks.

mod alerts;
mod detect;
mod drift;
mod models;
mod rollout;
mod sinks;
mod thresholds;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How often guarded rollouts are judged, at most.
const ROLLOUT_CHECK: Duration = Duration::from_secs(1);
/// How long after a window ends its calls are still settling into it.
const GRACE_MS: i64 = 200;

pub use alerts::{Alerts, Firing};
pub use sinks::{SIGNATURE_HEADER, SinkError, SinkSettings, Sinks, check_url as check_sink_url, signature};
pub use thresholds::{Limits, ThresholdStore, check as check_thresholds};

use crate::api::AlertLabels;
use crate::db::Db;
use crate::registry::Registry;
use crate::stats::{StatsSettings, StatsStore};

/// How the monitor runs.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// Whether statistics are kept and detectors run.
    pub enabled: bool,
    /// Windows: length, retention, the cap on their number.
    pub stats: StatsSettings,
    /// The host defaults of the detectors' thresholds.
    pub defaults: Limits,
    /// How long a plain deploy is watched against the version before it.
    pub watch: Duration,
    /// Calls the new version of a guarded rollout needs before it is judged.
    pub min_sample: u64,
    /// Whether sinks may be private or loopback addresses.
    pub allow_private_sinks: bool,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            stats: StatsSettings::default(),
            defaults: Limits::default(),
            watch: Duration::from_secs(120),
            min_sample: 50,
            allow_private_sinks: false,
        }
    }
}

/// The monitor of this node.
pub struct Monitor {
    db: Db,
    stats: Arc<StatsStore>,
    alerts: Arc<Alerts>,
    sinks: Arc<Sinks>,
    thresholds: ThresholdStore,
    registry: Arc<Registry>,
    settings: MonitorSettings,
    /// Each detector's count of windows in a row, by the labels it fires with.
    tracks: Mutex<HashMap<AlertLabels, detect::Track>>,
    /// Alerts to resolve at a time (those of rollbacks, once the stable
    /// version has served again for a while).
    resolutions: Mutex<Vec<(AlertLabels, i64)>>,
    /// The models it watches, once the server hands them over (`models.rs`).
    models: std::sync::OnceLock<models::ModelSide>,
}

impl Monitor {
    /// A monitor over `stats`, which the registry and wasi-nn record into.
    pub fn new(db: Db, stats: Arc<StatsStore>, registry: Arc<Registry>, settings: MonitorSettings) -> Self {
        Self {
            alerts: Arc::new(Alerts::new(db.clone())),
            sinks: Arc::new(Sinks::new(
                db.clone(),
                SinkSettings { allow_private: settings.allow_private_sinks, ..SinkSettings::default() },
            )),
            thresholds: ThresholdStore::new(db.clone(), settings.defaults),
            db,
            stats,
            registry,
            settings,
            tracks: Mutex::new(HashMap::new()),
            resolutions: Mutex::new(Vec::new()),
            models: std::sync::OnceLock::new(),
        }
    }

    /// The statistics.
    pub fn stats(&self) -> &Arc<StatsStore> {
        &self.stats
    }

    /// The alerts.
    pub fn alerts(&self) -> &Arc<Alerts> {
        &self.alerts
    }

    /// The alert sinks.
    pub fn sinks(&self) -> &Arc<Sinks> {
        &self.sinks
    }

    /// Starts posting the alerts this node fires and resolves to their
    /// tenants' sinks; `external_url` is where this muon answers (the
    /// payloads link to it).
    pub fn start_sinks(&self, external_url: String) -> tokio::task::JoinHandle<()> {
        tokio::spawn(Arc::clone(&self.sinks).run(self.alerts.subscribe(), external_url))
    }

    /// The detectors' thresholds.
    pub fn thresholds(&self) -> &ThresholdStore {
        &self.thresholds
    }

    /// Its settings.
    pub fn settings(&self) -> &MonitorSettings {
        &self.settings
    }

    /// The database it keeps alerts and the audit log in.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The registry whose rollouts it guards.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
}

impl Monitor {
    /// Runs the detectors and guarded rollouts every window, forever.
    pub async fn run(self: Arc<Self>) {
        if !self.settings.enabled {
            return;
        }
        let mut interval = tokio::time::interval(self.settings.stats.window.min(ROLLOUT_CHECK));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let window_ms = self.stats.window_ms();
        let mut judged_ms = crate::clock::now_ms() - crate::clock::now_ms().rem_euclid(window_ms) - window_ms;
        loop {
            interval.tick().await;
            let now_ms = crate::clock::now_ms();
            self.judge_rollouts(now_ms).await;
            self.resolve_due(now_ms).await;
            // A window is judged once it has closed, and a little after, so
            // that calls settling at its end are in it.
            let closed_ms = now_ms - GRACE_MS - (now_ms - GRACE_MS).rem_euclid(window_ms) - window_ms;
            if closed_ms > judged_ms {
                if let Err(err) = self.thresholds.refresh().await {
                    tracing::warn!(error = format!("{err:#}"), "cannot read the detectors' thresholds");
                }
                self.detect(closed_ms).await;
                judged_ms = closed_ms;
                self.stats.trim(now_ms);
                self.check_models().await;
                self.alerts.refresh_metrics().await;
            }
        }
    }

    /// Resolves the alert with `labels` at `at_ms`.
    fn resolve_later(&self, labels: AlertLabels, at_ms: i64) {
        self.resolutions.lock().unwrap_or_else(PoisonError::into_inner).push((labels, at_ms));
    }

    async fn resolve_due(&self, now_ms: i64) {
        let due: Vec<AlertLabels> = {
            let mut pending = self.resolutions.lock().unwrap_or_else(PoisonError::into_inner);
            let (due, later) = pending.drain(..).partition(|(_, at_ms)| *at_ms <= now_ms);
            *pending = later;
            due.into_iter().map(|(labels, _)| labels).collect()
        };
        for labels in due {
            if let Err(err) = self.alerts.resolve(&labels).await {
                tracing::warn!(error = format!("{err:#}"), "cannot resolve an alert");
            }
        }
    }
}
