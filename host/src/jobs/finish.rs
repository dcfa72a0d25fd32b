//! The end of a job, once every trial has ended: the best trial by the
//! objective is evaluated on the test split (a confusion matrix for a
//! classifier) and, when the spec asks, exported as a model version.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::api::datasets::Split;
use crate::api::jobs::{ExportedModel, JobSpec, JobState, TestResult, Trial, TrialState};
use crate::engine::NamedTensor;
use crate::invoke::GuestLog;
use crate::nn::ModelOptions;
use crate::settle::Outcome;

use super::evaluate::Classes;
use super::runner::{Stop, TrialRun};
use super::{Jobs, checkpoint};

/// What a finished job stores as its result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobResult {
    /// The best trial.
    pub best_trial: Option<u32>,
    /// Its figures on the test split.
    pub test: Option<TestResult>,
    /// The model version made from it.
    pub exported: Option<ExportedModel>,
}

/// Ends job `id`, whose trials have all ended; this node holds its lease.
pub(super) async fn finish(jobs: &Arc<Jobs>, id: &str) {
    let (state, error, result) = match outcome(jobs, id).await {
        Ok(result) => (JobState::Succeeded, None, Some(result)),
        Err(Stop::Failed(message)) => (JobState::Failed, Some(message), None),
        Err(Stop::Abandoned) => return,
        Err(Stop::Internal(err)) => {
            tracing::warn!(job = id, error = %format!("{err:#}"), "a job's final evaluation failed; it is tried again");
            return;
        }
    };
    let result = result.and_then(|r| serde_json::to_string(&r).ok());
    if let Err(err) = jobs.end(id, state, error.as_deref(), result.as_deref()).await {
        tracing::warn!(job = id, error = %format!("{err:#}"), "a finished job could not be recorded; it is tried again");
    }
}

async fn outcome(jobs: &Arc<Jobs>, id: &str) -> Result<JobResult, Stop> {
    let Some(row) = jobs.deps.db.job_by_id(id).await? else { return Err(Stop::Abandoned) };
    let spec: JobSpec = serde_json::from_str(&row.spec).map_err(anyhow::Error::from)?;
    let job = jobs.get(&row.tenant, id).await.map_err(|err| Stop::Internal(anyhow::anyhow!(err)))?;
    let Some(best) = job.best_trial else {
        return Err(Stop::Failed(no_best(&spec, &job.trials)));
    };
    let Some((_, bytes)) = jobs.deps.db.checkpoint(id, i64::from(best)).await? else {
        return Err(Stop::Failed(format!("trial {best} has no checkpoint")));
    };
    let parameters = checkpoint::decode(&bytes)?;
    let hyper = job.trials.iter().find(|t| t.trial == best).map(|t| t.hyper.clone()).unwrap_or_default();
    let log = GuestLog::new(0, "", "");
    let run = TrialRun::new(jobs, &row, &spec, i64::from(best), hyper.into_iter().collect(), &log);
    let test = test(&run, &parameters).await?;
    let exported = match &spec.export {
        Some(export) => Some(self::export(jobs, id, &row.tenant, &export.model, &export.template, &parameters).await?),
        None => None,
    };
    Ok(JobResult { best_trial: Some(best), test, exported })
}

/// The best trial's figures on the test split, billed like its steps.
async fn test(run: &TrialRun<'_>, parameters: &[NamedTensor]) -> Result<Option<TestResult>, Stop> {
    let version = run.version().await?;
    let dataset = run.dataset().await?;
    let mut interval = super::runner::Interval::begin();
    let (metrics, classes) = run.evaluate_split(&version, &dataset, Split::Test, parameters, &mut interval, 0).await?;
    run.settle(&version, &mut interval, "test", Outcome::Ok).await?;
    if classes.rows == 0 {
        return Ok(None);
    }
    Ok(Some(TestResult { rows: classes.rows, metrics, confusion: confusion(&classes) }))
}

/// `confusion[true][predicted]`, when `evaluate` predicted a class for every row.
fn confusion(classes: &Classes) -> Option<Vec<Vec<u64>>> {
    if classes.truth.is_empty() || classes.truth.len() as u64 != classes.rows {
        return None;
    }
    let size = classes.truth.iter().chain(&classes.predicted).copied().max()?.checked_add(1)?;
    let size = usize::try_from(size).ok().filter(|&n| n <= 1000)?;
    let mut matrix = vec![vec![0u64; size]; size];
    for (&truth, &predicted) in classes.truth.iter().zip(&classes.predicted) {
        let (t, p) = (usize::try_from(truth).ok()?, usize::try_from(predicted).ok()?);
        matrix[t][p] += 1;
    }
    Some(matrix)
}

/// Writes `parameters` into a copy of the tenant's `template` model and
/// stores it as the next version of `model`.
async fn export(
    jobs: &Jobs,
    job: &str,
    tenant: &str,
    model: &str,
    template: &str,
    parameters: &[NamedTensor],
) -> Result<ExportedModel, Stop> {
    let models = &jobs.deps.models;
    let record = models
        .get(tenant, template)
        .ok_or_else(|| Stop::Failed(format!("export: the template model `{template}` was deleted")))?;
    let bytes = models.bytes(&record).await.map_err(|err| Stop::Internal(anyhow::anyhow!(err)))?;
    let named: Vec<(String, crate::nn::HostTensor)> =
        parameters.iter().map(|p| (p.name.clone(), p.tensor.clone().into())).collect();
    let filled = crate::nn::template::fill(&bytes, &named).map_err(|err| Stop::Failed(format!("export: {err}")))?;
    let quota = jobs
        .deps
        .tenancy
        .check_upload(tenant, filled.len() as u64)
        .await
        .map_err(|err| Stop::Failed(format!("export: {err}")))?;
    let options = ModelOptions {
        encoding: None,
        backend: Some(record.backend),
        target: Some(record.target),
        job: Some(job.to_owned()),
        batching: record.batching,
    };
    let stored = models
        .put(tenant, model, bytes::Bytes::from(filled), options, quota)
        .await
        .map_err(|err| Stop::Failed(format!("export to model `{model}`: {err}")))?;
    Ok(ExportedModel { model: model.to_owned(), version: stored.version })
}

/// Why no trial can be the best, naming the first failure.
fn no_best(spec: &JobSpec, trials: &[Trial]) -> String {
    if let Some(failed) = trials.iter().find(|t| t.state == TrialState::Failed) {
        return format!(
            "no trial succeeded; trial {} failed: {}",
            failed.trial,
            failed.error.as_deref().unwrap_or("no reason given")
        );
    }
    let reported: BTreeMap<&str, ()> = trials.iter().flat_map(|t| t.metrics.keys()).map(|k| (k.as_str(), ())).collect();
    format!(
        "no trial reported the objective `{}`; the trials reported: {}",
        spec.objective.metric,
        reported.keys().copied().collect::<Vec<_>>().join(", ")
    )
}
