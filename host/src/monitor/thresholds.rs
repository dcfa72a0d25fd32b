//! The detectors' thresholds: the host defaults, under what a tenant set
//! for all its functions, under what it set for one function.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use crate::api::Thresholds;
use crate::db::Db;

/// Resolved thresholds: every value set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Calls a window needs before a detector judges it.
    pub min_requests: u64,
    /// Windows in a row a condition must hold before it fires.
    pub for_windows: u32,
    /// An error rate this far (absolute) above the baseline's fires.
    pub error_rate_increase: f64,
    /// A p99 latency this many times the baseline's fires.
    pub latency_ratio: f64,
    /// A request rate this many times the baseline's fires `rate_spike`.
    pub rate_spike_ratio: f64,
    /// Whether a rate falling to zero fires `rate_drop`.
    pub rate_drop: bool,
    /// Training standard deviations a feature's mean may move before `drift`.
    pub drift_sigmas: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            min_requests: 20,
            for_windows: 3,
            error_rate_increase: 0.1,
            latency_ratio: 2.0,
            rate_spike_ratio: 10.0,
            rate_drop: true,
            drift_sigmas: 3.0,
        }
    }
}

impl Limits {
    /// These limits with whatever `set` sets over them.
    pub fn with(self, set: &Thresholds) -> Self {
        Self {
            min_requests: set.min_requests.unwrap_or(self.min_requests).max(1),
            for_windows: set.for_windows.unwrap_or(self.for_windows).max(1),
            error_rate_increase: set.error_rate_increase.unwrap_or(self.error_rate_increase),
            latency_ratio: set.latency_ratio.unwrap_or(self.latency_ratio),
            rate_spike_ratio: set.rate_spike_ratio.unwrap_or(self.rate_spike_ratio),
            rate_drop: set.rate_drop.unwrap_or(self.rate_drop),
            drift_sigmas: set.drift_sigmas.unwrap_or(self.drift_sigmas),
        }
    }

    /// The limits as the API shows them, every field set.
    pub fn as_thresholds(&self) -> Thresholds {
        Thresholds {
            min_requests: Some(self.min_requests),
            for_windows: Some(self.for_windows),
            error_rate_increase: Some(self.error_rate_increase),
            latency_ratio: Some(self.latency_ratio),
            rate_spike_ratio: Some(self.rate_spike_ratio),
            rate_drop: Some(self.rate_drop),
            drift_sigmas: Some(self.drift_sigmas),
        }
    }
}

/// Checks what a tenant asks to set; the message names the field.
pub fn check(set: &Thresholds) -> Result<(), String> {
    let positive = |name: &str, value: Option<f64>| match value {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(format!("{name} must be a positive number, got {v}")),
        _ => Ok(()),
    };
    positive("error_rate_increase", set.error_rate_increase)?;
    positive("latency_ratio", set.latency_ratio)?;
    positive("rate_spike_ratio", set.rate_spike_ratio)?;
    positive("drift_sigmas", set.drift_sigmas)?;
    if set.error_rate_increase.is_some_and(|v| v > 1.0) {
        return Err("error_rate_increase is a share of calls, at most 1".to_owned());
    }
    if set.min_requests == Some(0) || set.for_windows == Some(0) {
        return Err("min_requests and for_windows must be at least 1".to_owned());
    }
    Ok(())
}

/// The thresholds every tenant and function set, cached from the database
/// (refreshed every window, so another node's change applies here too).
pub struct ThresholdStore {
    db: Db,
    defaults: Limits,
    set: RwLock<HashMap<(String, String), Thresholds>>,
}

impl ThresholdStore {
    /// The store over `db`, with the host `defaults`.
    pub fn new(db: Db, defaults: Limits) -> Self {
        Self { db, defaults, set: RwLock::new(HashMap::new()) }
    }

    /// Rereads every setting.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let mut fresh = HashMap::new();
        for (tenant, function, json) in self.db.all_thresholds().await? {
            fresh.insert((tenant, function), serde_json::from_str(&json)?);
        }
        *self.set.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// What was set for `function` of `tenant` (`""`: the tenant's own).
    pub fn get(&self, tenant: &str, function: &str) -> Thresholds {
        let set = self.set.read().unwrap_or_else(PoisonError::into_inner);
        set.get(&(tenant.to_owned(), function.to_owned())).cloned().unwrap_or_default()
    }

    /// What applies to `function` of `tenant` (`""`: to its functions with none of their own).
    pub fn effective(&self, tenant: &str, function: &str) -> Limits {
        let tenant_wide = self.defaults.with(&self.get(tenant, ""));
        if function.is_empty() { tenant_wide } else { tenant_wide.with(&self.get(tenant, function)) }
    }

    /// Sets the thresholds of `function` of `tenant` (`""`: the tenant's own).
    pub async fn set(&self, tenant: &str, function: &str, thresholds: &Thresholds) -> anyhow::Result<()> {
        self.db.set_thresholds(tenant, function, &serde_json::to_string(thresholds)?).await?;
        self.set
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((tenant.to_owned(), function.to_owned()), thresholds.clone());
        Ok(())
    }
}
