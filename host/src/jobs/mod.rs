//! Training jobs: the host owns the loop, the data, the checkpoints, the
//! search and the bill; the training logic is the tenant's sandboxed
//! training-step function.
//!
//! A job is stored with all its trials (their hyper-parameters drawn up
//! front, [`search`]). Each node's scheduler ([`Jobs::run`]) leases trials
//! from the database and runs each ([`runner`]) on its bounded pool of
//! workers: `init` once, then per epoch the shuffled train split through
//! `step` and the validation split through `evaluate`, every call through
//! the one invoker; a checkpoint and the epoch's events in one transaction;
//! the work settled per checkpoint interval. When every trial has ended, one
//! node evaluates the best on the test split and exports it ([`finish`]).
//! After a crash, a trial resumes from its checkpoint: the order of every
//! epoch's batches is a function of the seed, so the result is the same.

mod checkpoint;
mod error;
mod evaluate;
mod feed;
mod finish;
pub mod report;
mod runner;
pub mod search;
mod tpe;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashSet;
use tokio::sync::{Notify, Semaphore};

use crate::api::jobs::{Job, JobEvent, JobLogs, JobSpec, JobState, JobSummary, Trial, TrialLog, TrialState};
use crate::datasets::DatasetStore;
use crate::db::{Db, JobRow, NewEvent};
use crate::engine::FunctionKind;
use crate::invoke::Invoker;
use crate::nn::ModelStore;
use crate::registry::Registry;
use crate::settle::Settler;
use crate::tenancy::Tenancy;

pub use error::JobError;
pub use runner::epoch_seed;

/// How jobs run on this node.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Trials this node runs at once.
    pub workers: usize,
    /// How long a trial's lease lasts without renewal; another node takes
    /// over a trial whose lease expired.
    pub lease: Duration,
    /// How often the scheduler looks for work it was not told about (other
    /// nodes' jobs, expired leases).
    pub poll: Duration,
    /// Bytes of each trial's guest output kept, per stream.
    pub log_bytes: usize,
}

/// What jobs need from the rest of the host.
pub struct JobDeps {
    /// The catalog, trials, checkpoints and events.
    pub db: Db,
    /// Runs every step.
    pub invoker: Arc<Invoker>,
    /// The tenants' functions.
    pub registry: Arc<Registry>,
    /// The tenants' datasets.
    pub datasets: Arc<DatasetStore>,
    /// The tenants' models (templates and exports).
    pub models: Arc<ModelStore>,
    /// Pays for the work.
    pub settler: Arc<Settler>,
    /// Quotas and budgets.
    pub tenancy: Arc<Tenancy>,
}

/// The training jobs of every tenant, and this node's workers.
pub struct Jobs {
    deps: JobDeps,
    settings: JobSettings,
    /// This process's name in leases.
    node: String,
    workers: Arc<Semaphore>,
    /// Wakes the scheduler: a job was submitted or a trial ended.
    wake: Notify,
    /// Wakes event streams: this node appended events.
    appended: tokio::sync::watch::Sender<u64>,
    /// Jobs cancelled on this node, so that their trials stop at the next step.
    cancelled: DashSet<String>,
}

impl Jobs {
    /// Jobs over `deps`; call [`Jobs::run`] to start this node's workers.
    pub async fn open(deps: JobDeps, settings: JobSettings) -> anyhow::Result<Arc<Self>> {
        if !deps.db.is_shared() {
            // One process owns a SQLite database: what a killed one leased is free.
            deps.db.release_all_leases().await?;
        }
        let node = crate::names::random_id("node")?;
        let workers = Arc::new(Semaphore::new(settings.workers.max(1)));
        Ok(Arc::new(Self {
            deps,
            settings,
            node,
            workers,
            wake: Notify::new(),
            appended: tokio::sync::watch::channel(0).0,
            cancelled: DashSet::new(),
        }))
    }

    /// Submits a job of `tenant`: checks the spec, the function, the dataset
    /// and the quotas, then stores it queued. Returns its id.
    pub async fn submit(&self, tenant: &str, spec: JobSpec) -> Result<String, JobError> {
        let trials = search::trials(&spec)?;
        let version =
            self.deps.registry.get(tenant, &spec.function).ok_or_else(|| {
                JobError::bad_spec("function", format!("no function `{}` is deployed", spec.function))
            })?;
        if version.entry.kind() != FunctionKind::TrainingStep {
            return Err(JobError::bad_spec(
                "function",
                format!(
                    "`{}` is a {} function; a job needs a training step (world `training-step`)",
                    spec.function,
                    version.entry.kind().as_str()
                ),
            ));
        }
        let (_, dataset) = self.deps.datasets.file(tenant, &spec.dataset, None).await.map_err(|err| match err {
            crate::datasets::DatasetError::NotFound(_) => {
                JobError::bad_spec("dataset", format!("no dataset `{}`; upload it first", spec.dataset))
            }
            other => JobError::Internal(anyhow::anyhow!(other)),
        })?;
        if let Some(export) = &spec.export
            && self.deps.models.get(tenant, &export.template).is_none()
        {
            return Err(JobError::bad_spec(
                "export.template",
                format!("no model `{}`; upload the ONNX inference graph to fill first", export.template),
            ));
        }
        let active = self.deps.db.active_jobs(tenant).await?;
        self.deps.tenancy.check_job(tenant, active, spec.search.parallel).await?;
        let id = crate::names::random_id("job")?;
        let row = JobRow {
            id: id.clone(),
            tenant: tenant.to_owned(),
            spec: serde_json::to_string(&spec).map_err(anyhow::Error::from)?,
            function: spec.function.clone(),
            function_version: version.record.version,
            dataset: spec.dataset.clone(),
            dataset_version: i64::try_from(dataset.version).unwrap_or(i64::MAX),
            parallel: i64::from(spec.search.parallel),
            state: JobState::Queued.as_str().to_owned(),
            error: None,
            created_at_ms: crate::clock::now_ms(),
            started_at_ms: None,
            finished_at_ms: None,
            result: None,
        };
        let hyper =
            trials.iter().map(serde_json::to_string).collect::<Result<Vec<_>, _>>().map_err(anyhow::Error::from)?;
        let event = event_json(&JobEvent::Job { state: JobState::Queued, error: None })?;
        self.deps.db.insert_job(&row, &hyper, &event).await?;
        self.events_appended();
        self.wake.notify_one();
        Ok(id)
    }

    /// Job `id` of `tenant`, with its trials.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Job, JobError> {
        let row = self.row(tenant, id).await?;
        let trials = self.deps.db.trials(id).await?;
        let spec: JobSpec = serde_json::from_str(&row.spec).map_err(anyhow::Error::from)?;
        let trials = trials
            .iter()
            .map(|t| {
                Ok(Trial {
                    trial: u32::try_from(t.trial)?,
                    hyper: serde_json::from_str::<Option<_>>(&t.hyper)?.unwrap_or_default(),
                    state: TrialState::parse(&t.state).unwrap_or(TrialState::Failed),
                    epoch: u32::try_from(t.epoch)?,
                    attempt: u32::try_from(t.attempt)?,
                    metrics: serde_json::from_str(&t.metrics)?,
                    error: t.error.clone(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let best_trial = best(&spec, &trials);
        Ok(Job {
            id: row.id,
            state: JobState::parse(&row.state).unwrap_or(JobState::Failed),
            error: row.error,
            spec,
            function_version: row.function_version,
            dataset_version: row.dataset_version,
            created_at_ms: row.created_at_ms,
            started_at_ms: row.started_at_ms,
            finished_at_ms: row.finished_at_ms,
            trials,
            best_trial,
        })
    }

    /// `tenant`'s jobs, newest first.
    pub async fn list(&self, tenant: &str) -> Result<Vec<JobSummary>, JobError> {
        Ok(self
            .deps
            .db
            .jobs(tenant)
            .await?
            .into_iter()
            .map(|row| JobSummary {
                state: JobState::parse(&row.state).unwrap_or(JobState::Failed),
                id: row.id,
                function: row.function,
                dataset: row.dataset,
                created_at_ms: row.created_at_ms,
            })
            .collect())
    }

    /// Cancels job `id` of `tenant`: its trials stop at their next step.
    pub async fn cancel(&self, tenant: &str, id: &str) -> Result<Job, JobError> {
        let row = self.row(tenant, id).await?;
        let state = JobState::parse(&row.state).unwrap_or(JobState::Failed);
        if state.is_final() {
            return Err(JobError::Conflict(format!("job `{id}` is already {}", state.as_str())));
        }
        self.end(id, JobState::Cancelled, Some("cancelled by its owner"), None).await?;
        self.get(tenant, id).await
    }

    /// Deletes job `id` of `tenant` with its checkpoints, events and logs,
    /// stopping it first if it runs.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<(), JobError> {
        let row = self.row(tenant, id).await?;
        if !JobState::parse(&row.state).is_some_and(JobState::is_final) {
            self.end(id, JobState::Cancelled, Some("deleted by its owner"), None).await?;
        }
        if !self.deps.db.delete_job(tenant, id).await? {
            return Err(JobError::NotFound(format!("job `{id}`")));
        }
        Ok(())
    }

    /// The parameters of trial `trial` of job `id` (the best trial when
    /// `None`) at its latest checkpoint.
    pub async fn parameters(
        &self,
        tenant: &str,
        id: &str,
        trial: Option<u32>,
    ) -> Result<Vec<crate::engine::NamedTensor>, JobError> {
        let job = self.get(tenant, id).await?;
        let trial = trial.or(job.best_trial).ok_or_else(|| {
            JobError::NotFound(format!("a best trial of job `{id}` (none has reported its objective yet)"))
        })?;
        let (_, bytes) = self
            .deps
            .db
            .checkpoint(id, i64::from(trial))
            .await?
            .ok_or_else(|| JobError::NotFound(format!("a checkpoint of trial {trial} of job `{id}`")))?;
        Ok(checkpoint::decode(&bytes)?)
    }

    /// The last bytes each trial's guests printed.
    pub async fn logs(&self, tenant: &str, id: &str) -> Result<JobLogs, JobError> {
        self.row(tenant, id).await?;
        let trials = self.deps.db.trials(id).await?;
        Ok(JobLogs {
            trials: trials
                .into_iter()
                .map(|t| TrialLog { trial: u32::try_from(t.trial).unwrap_or(0), stdout: t.stdout, stderr: t.stderr })
                .collect(),
        })
    }

    /// Job `id`'s events numbered after `after` (at most `limit`), and
    /// whether the job is over; `Err` when `tenant` has no such job.
    pub async fn events(
        &self,
        tenant: &str,
        id: &str,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<crate::db::EventRow>, bool), JobError> {
        let row = self.row(tenant, id).await?;
        let over = JobState::parse(&row.state).is_none_or(JobState::is_final);
        Ok((self.deps.db.job_events(id, after, limit).await?, over))
    }

    /// Resolves when events may have been appended (on this node), or after
    /// `poll` (for other nodes' events).
    pub async fn appended(&self) {
        let mut receiver = self.appended.subscribe();
        let _ = tokio::time::timeout(self.settings.poll, receiver.changed()).await;
    }

    /// This node's scheduler: leases trials while workers are free, and
    /// ends jobs whose trials have all ended. Runs until the process ends.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(err) = self.schedule().await {
                tracing::warn!(error = %format!("{err:#}"), "job scheduling failed; trying again");
            }
            let _ = tokio::time::timeout(self.settings.poll, self.wake.notified()).await;
        }
    }

    async fn schedule(self: &Arc<Self>) -> anyhow::Result<()> {
        loop {
            let Ok(permit) = Arc::clone(&self.workers).try_acquire_owned() else { break };
            let now = crate::clock::now_ms();
            let Some((job, trial)) = self.deps.db.claim_trial(&self.node, now, now + self.lease_ms()).await? else {
                break;
            };
            let jobs = Arc::clone(self);
            tokio::spawn(async move {
                runner::run_trial(&jobs, &job, trial).await;
                drop(permit);
                jobs.wake.notify_one();
            });
        }
        let now = crate::clock::now_ms();
        while let Some(job) = self.deps.db.claim_finished_job(&self.node, now, now + self.lease_ms()).await? {
            finish::finish(self, &job).await;
        }
        Ok(())
    }

    async fn row(&self, tenant: &str, id: &str) -> Result<JobRow, JobError> {
        self.deps.db.job(tenant, id).await?.ok_or_else(|| JobError::NotFound(format!("job `{id}`")))
    }

    /// Ends job `id` with `state`, if it is not over yet.
    async fn end(&self, id: &str, state: JobState, error: Option<&str>, result: Option<&str>) -> anyhow::Result<bool> {
        let event = event_json(&JobEvent::Job { state, error: error.map(str::to_owned) })?;
        let events = [NewEvent { trial: None, epoch: None, data: event }];
        let ended = self.deps.db.end_job(id, state.as_str(), error, result, crate::clock::now_ms(), &events).await?;
        if ended && state != JobState::Succeeded {
            self.cancelled.insert(id.to_owned());
        }
        self.events_appended();
        Ok(ended)
    }

    fn events_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The best trial by the spec's objective, among those that report it.
fn best(spec: &JobSpec, trials: &[Trial]) -> Option<u32> {
    let metric = &spec.objective.metric;
    let better = |a: f64, b: f64| match spec.objective.mode {
        crate::api::jobs::Mode::Min => a < b,
        crate::api::jobs::Mode::Max => a > b,
    };
    let mut best: Option<(u32, f64)> = None;
    for trial in trials.iter().filter(|t| matches!(t.state, TrialState::Succeeded | TrialState::Stopped)) {
        let Some(&value) = trial.metrics.get(metric) else { continue };
        if value.is_finite() && best.is_none_or(|(_, b)| better(value, b)) {
            best = Some((trial.trial, value));
        }
    }
    best.map(|(trial, _)| trial)
}

/// An event as stored.
fn event_json(event: &JobEvent) -> anyhow::Result<String> {
    Ok(serde_json::to_string(event)?)
}

/// Metrics as stored.
fn metrics_json(metrics: &BTreeMap<String, f64>) -> anyhow::Result<String> {
    Ok(serde_json::to_string(metrics)?)
}
