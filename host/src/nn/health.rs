//! The model side of operations: computes recorded per model version,
//! backends that keep failing on healthy inputs reloaded from their bytes,
//! and models that cannot be loaded listed for the monitor (which alerts)
//! and `/readyz`.
//!
//! nn knows nothing of alerts: it keeps the lists, and the monitor reads
//! them every window ([`ModelStore::unloadable_models`], [`ModelStore::watched`]).

use std::sync::Arc;

use super::models::{ModelRecord, ModelStore};
use super::watch::{ModelWatch, RELOAD_AFTER_FAILURES, stats_code};
use super::{Caller, ComputeMeter, Graph, HostTensor, NnError};
use crate::db::{Db, NewAudit};
use crate::stats::Sample;

/// A model this node cannot load, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unloadable {
    /// The owning tenant.
    pub tenant: String,
    /// The model's name.
    pub name: String,
    /// The version that cannot be loaded.
    pub version: i64,
    /// What went wrong, for a person.
    pub reason: String,
}

impl ModelStore {
    /// Checks every model of the catalog can be loaded (its bytes are there
    /// and match their digest, its backend is available), so that a model
    /// broken while muon was down raises one alert at once rather than
    /// failing requests one at a time. Backends load them at first use.
    pub async fn check_loadable(self: Arc<Self>) {
        let records: Vec<Arc<ModelRecord>> = self.records().collect();
        for record in records {
            self.check_one(&record).await;
        }
    }

    /// Checks one model as [`ModelStore::check_loadable`] does.
    pub(super) async fn check_one(&self, record: &ModelRecord) {
        let bytes = self.reader(record);
        let readable = self.inference().run_blocking(&record.tenant, bytes).await.and_then(|read| read.map(drop));
        let checked = readable.and_then(|()| self.inference().choose_backend(Some(record.backend)).map(drop));
        match checked {
            Ok(()) => {
                self.unloadable.remove(&label(&record.tenant, &record.name));
            }
            Err(err) => self.mark_unloadable(record, &err.message),
        }
    }

    /// Tries again to load the models that could not be loaded (their file
    /// may have been restored); a model that loads leaves the list.
    pub async fn recheck_unloadable(&self) {
        let broken: Vec<Arc<ModelRecord>> =
            self.unloadable.iter().filter_map(|u| self.get(&u.tenant, &u.name)).collect();
        for record in broken {
            let access = super::ModelAccess::All;
            // `graph` loads it, and notes the outcome either way.
            drop(self.graph(&record.tenant, &record.name, &access).await);
        }
    }

    /// Notes that `record` cannot be loaded, for the monitor to alert on.
    pub(super) fn mark_unloadable(&self, record: &ModelRecord, reason: &str) {
        tracing::warn!(tenant = %record.tenant, model = %record.name, version = record.version, reason,
            "a model cannot be loaded");
        self.unloadable.insert(
            label(&record.tenant, &record.name),
            Unloadable {
                tenant: record.tenant.clone(),
                name: record.name.clone(),
                version: record.version,
                reason: reason.to_owned(),
            },
        );
    }

    /// What is degraded on the model side, for `/readyz`: each model that
    /// cannot be loaded, as `tenant/name: reason`.
    pub fn unloadable(&self) -> Vec<String> {
        let mut list: Vec<String> =
            self.unloadable.iter().map(|u| format!("{}/{}: {}", u.tenant, u.name, u.reason)).collect();
        list.sort();
        list
    }

    /// The models that cannot be loaded, for the monitor.
    pub fn unloadable_models(&self) -> Vec<Unloadable> {
        self.unloadable.iter().map(|u| u.value().clone()).collect()
    }

    /// Whether `tenant/name` is in the catalog and loads (as far as this node knows).
    pub fn loads(&self, tenant: &str, name: &str) -> bool {
        self.get(tenant, name).is_some() && !self.unloadable.contains_key(&label(tenant, name))
    }

    /// The watches of the model versions whose input features are tallied
    /// (models a training job made, served by name since this node started).
    pub fn watched(&self) -> Vec<Arc<ModelWatch>> {
        self.watches.iter().filter(|w| w.features().is_some()).map(|w| Arc::clone(w.value())).collect()
    }

    /// Computes `inputs` on `graph` (see [`super::Inference::compute`]); for
    /// a model served by name, records the compute in its version's series,
    /// tallies its input features, and reloads a backend that keeps failing.
    pub async fn compute(
        &self,
        graph: &Graph,
        inputs: Vec<(String, HostTensor)>,
        caller: &Caller,
        meter: Arc<ComputeMeter>,
    ) -> Result<Vec<(String, HostTensor)>, NnError> {
        let Some(watch) = graph.watch.clone() else {
            return self.inference().compute(graph, inputs, caller, meter).await;
        };
        let tallied = watch.features().and_then(|features| features.observe(&inputs));
        let own = Arc::new(ComputeMeter::default());
        let outcome = self.inference().compute(graph, inputs, caller, Arc::clone(&own)).await;
        let (cpu_us, gpu_us) = own.totals();
        meter.add_micros(cpu_us, gpu_us);
        watch.series().record(&Sample {
            error: outcome.as_ref().err().map(|err| stats_code(err.code)),
            latency: std::time::Duration::from_micros(cpu_us.saturating_add(gpu_us)),
            nn_cpu_us: cpu_us,
            nn_gpu_us: gpu_us,
            ..Sample::default()
        });
        match &outcome {
            Ok(_) => {
                watch.succeeded();
                if let (Some(features), Some(tallied)) = (watch.features(), tallied) {
                    features.add(&tallied);
                }
            }
            Err(err) if watch.failed(err.code) => self.repair(&watch, err),
            Err(_) => {}
        }
        outcome
    }

    /// Reloads the model behind `watch` from its bytes, off the request,
    /// and records the reload in the audit log.
    fn repair(&self, watch: &Arc<ModelWatch>, last: &NnError) {
        let Some(record) = self.get(&watch.tenant, &watch.name).filter(|r| r.version == watch.version) else {
            // Replaced or deleted meanwhile: the new version starts afresh.
            watch.reloaded();
            return;
        };
        tracing::warn!(tenant = %record.tenant, model = %record.name, version = record.version,
            error = %last.message, "a model's backend keeps failing; reloading it");
        let (inference, spec, bytes) = (Arc::clone(self.inference()), self.spec(&record), self.reader(&record));
        let (db, watch, last) = (self.db().clone(), Arc::clone(watch), last.message.clone());
        tokio::spawn(async move {
            let outcome = inference.reload(spec, bytes).await;
            watch.reloaded();
            audit_reload(&db, &record, &last, outcome.as_ref().err()).await;
        });
    }
}

/// Appends a `model_reload` event to the audit log.
async fn audit_reload(db: &Db, record: &ModelRecord, last: &str, failed: Option<&NnError>) {
    let message = match failed {
        None => format!(
            "model {} version {} reloaded after {RELOAD_AFTER_FAILURES} backend failures in a row",
            record.name, record.version
        ),
        Some(err) => format!(
            "model {} version {} failed {RELOAD_AFTER_FAILURES} times in a row and could not be reloaded: {}",
            record.name, record.version, err.message
        ),
    };
    db.audit_or_log(NewAudit {
        tenant: &record.tenant,
        kind: "model_reload",
        subject: &record.name,
        message: &message,
        detail: serde_json::json!({ "version": record.version, "failures": RELOAD_AFTER_FAILURES,
            "last_error": last, "reloaded": failed.is_none() }),
    })
    .await;
}

fn label(tenant: &str, name: &str) -> String {
    format!("{tenant}/{name}")
}
