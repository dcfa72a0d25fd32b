//! `/v1/jobs`: training jobs. A [`JobSpec`] is what `POST /v1/jobs` takes;
//! [`Job`] is what `GET /v1/jobs/{id}` shows (its trials included);
//! [`JobEvent`] is one Server-Sent Event of `GET /v1/jobs/{id}/events`;
//! [`JobReport`] is `GET /v1/jobs/{id}/report`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A training job as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The training-step function of the tenant that runs each step.
    pub function: String,
    /// The tenant's dataset (its latest version when the job is submitted).
    pub dataset: String,
    /// Passes over the train split per trial.
    pub epochs: u32,
    /// Rows per training step [default: 32].
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Most training batches one sandboxed call of the function's `steps`
    /// takes [default: 64]. The host passes fewer where they would not fit
    /// in a sixteenth of the function's memory or would take more than a
    /// quarter of its deadline, and never more than the rest of the epoch.
    /// The result does not depend on it; 1 is a call per batch.
    #[serde(default = "default_steps_per_call")]
    pub steps_per_call: u32,
    /// Seed of the search and of every shuffle; the same seed gives the same job [default: 0].
    #[serde(default)]
    pub seed: u64,
    /// Given to the function's `init` as JSON text, with `seed` added when absent.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// Hyper-parameters by name: a fixed number or a search space.
    #[serde(default)]
    pub hyper: BTreeMap<String, HyperValue>,
    /// How trials are chosen [default: one trial].
    #[serde(default)]
    pub search: Search,
    /// The metric that ranks trials [default: `val_loss`, lower is better].
    #[serde(default)]
    pub objective: Objective,
    /// Epochs between checkpoints [default: 1].
    #[serde(default = "one")]
    pub checkpoint_every_epochs: u32,
    /// The job is stopped (`timed_out`) after this many seconds of running [default: no limit].
    #[serde(default)]
    pub max_runtime_s: Option<u64>,
    /// Times a failed attempt of a trial is retried from its last checkpoint [default: 0].
    #[serde(default)]
    pub max_retries: u32,
    /// A model made from the best trial's parameters when the job succeeds.
    #[serde(default)]
    pub export: Option<Export>,
}

fn default_batch_size() -> u32 {
    32
}

fn default_steps_per_call() -> u32 {
    64
}

fn one() -> u32 {
    1
}

/// A hyper-parameter: a fixed value, or where the search draws it from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum HyperValue {
    /// The same value in every trial.
    Fixed(f64),
    /// A search space.
    Space(Space),
}

/// A search space of one hyper-parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Space {
    /// One of these values.
    Choice(Vec<f64>),
    /// Uniform between the two bounds.
    Uniform([f64; 2]),
    /// Log-uniform between the two (positive) bounds.
    LogUniform([f64; 2]),
    /// A whole number between the two bounds, both included.
    IntUniform([i64; 2]),
}

/// How the trials of a job are chosen and run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// `grid` (every combination of `choice` spaces), `random` or `tpe` [default: `random`].
    #[serde(default)]
    pub method: SearchMethod,
    /// Trials to run (`grid`: at most the number of combinations) [default: 1].
    #[serde(default = "one")]
    pub trials: u32,
    /// Trials running at once [default: 1].
    #[serde(default = "one")]
    pub parallel: u32,
    /// Stops trials that fall behind [default: none].
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
}

impl Default for Search {
    fn default() -> Self {
        Self { method: SearchMethod::Random, trials: 1, parallel: 1, early_stopping: None }
    }
}

/// A search method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchMethod {
    /// Every combination of the `choice` spaces, in order.
    Grid,
    /// Independent draws from every space, seeded.
    #[default]
    Random,
    /// Tree-structured Parzen estimator, as Optuna's default sampler: the
    /// first third of the trials (2 to 10) at random, then each drawn when it
    /// starts, where the best tenth of the trials finished by then were.
    Tpe,
}

/// An early-stopping rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum EarlyStopping {
    /// Asynchronous successive halving, as Ray Tune's `ASHAScheduler`.
    Asha(Asha),
}

/// ASHA's rungs: at `grace_epochs × reduction_factor^k` epochs, a trial goes
/// on only if its objective is in the top `1 / reduction_factor` of the
/// trials that reached that rung.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Asha {
    /// The first rung, in epochs [default: 1].
    #[serde(default = "one")]
    pub grace_epochs: u32,
    /// How much each rung thins the trials (at least 2) [default: 3].
    #[serde(default = "three")]
    pub reduction_factor: u32,
}

fn three() -> u32 {
    3
}

/// The metric that ranks trials, and which way is better.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    /// A metric's name: `loss` (the mean training loss of the epoch), or
    /// `val_` and a name the function's `evaluate` returns, such as `val_accuracy`.
    pub metric: String,
    /// `min` or `max`.
    pub mode: Mode,
}

impl Default for Objective {
    fn default() -> Self {
        Self { metric: "val_loss".to_owned(), mode: Mode::Min }
    }
}

/// Which way an objective is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

/// Where the best trial's parameters go when the job succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// The model name of the tenant that receives a new version.
    pub model: String,
    /// An ONNX model of the tenant whose initializers have the parameters'
    /// names; the trained values are written into a copy of it.
    pub template: String,
}

/// The state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted; no trial has started.
    Queued,
    /// Trials are running.
    Running,
    /// Every trial ended and the best one was evaluated (and exported).
    Succeeded,
    /// No trial succeeded, or the export failed: see `error`.
    Failed,
    /// Cancelled by its owner.
    Cancelled,
    /// Stopped by `max_runtime_s` or the tenant's monthly budget: see `error`.
    TimedOut,
}

impl JobState {
    /// The state as JSON and the database write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled, Self::TimedOut]
            .into_iter()
            .find(|state| state.as_str() == name)
    }

    /// Whether the job is over.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// The state of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    /// Waiting for a worker.
    Pending,
    /// A worker runs it.
    Running,
    /// It ran every epoch.
    Succeeded,
    /// Early stopping ended it at a rung.
    Stopped,
    /// Its last attempt failed: see `error`.
    Failed,
    /// The job was cancelled or stopped before it ended.
    Cancelled,
}

impl TrialState {
    /// The state as JSON and the database write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Pending, Self::Running, Self::Succeeded, Self::Stopped, Self::Failed, Self::Cancelled]
            .into_iter()
            .find(|state| state.as_str() == name)
    }

    /// Whether the trial is over.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

/// What `POST /v1/jobs` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobCreated {
    /// The job's id.
    pub id: String,
    /// Its state (`queued`).
    pub state: JobState,
}

/// A job and its trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// The job's id.
    pub id: String,
    /// Its state.
    pub state: JobState,
    /// Why it failed or stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The spec, as submitted.
    pub spec: JobSpec,
    /// The function version and dataset version the job runs on.
    pub function_version: i64,
    /// The dataset version the job reads.
    pub dataset_version: i64,
    /// When it was submitted, started and finished, in Unix milliseconds.
    pub created_at_ms: i64,
    /// When its first trial started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    /// When it reached a final state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    /// The trials, by number.
    pub trials: Vec<Trial>,
    /// The best trial so far by the objective.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_trial: Option<u32>,
}

/// One trial of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Trial {
    /// Its number, from 0.
    pub trial: u32,
    /// Its hyper-parameters.
    pub hyper: BTreeMap<String, f64>,
    /// Its state.
    pub state: TrialState,
    /// Epochs completed.
    pub epoch: u32,
    /// Attempts started (1 unless a failure was retried).
    pub attempt: u32,
    /// The metrics of its latest epoch.
    pub metrics: BTreeMap<String, f64>,
    /// Why its last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// The tenant's jobs, newest first, without their trials.
    pub jobs: Vec<JobSummary>,
}

/// One entry of `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    /// The job's id.
    pub id: String,
    /// Its state.
    pub state: JobState,
    /// The training function.
    pub function: String,
    /// The dataset.
    pub dataset: String,
    /// When it was submitted, in Unix milliseconds.
    pub created_at_ms: i64,
}

/// One event of a job's stream: an epoch of a trial, or a change of state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    /// A trial finished an epoch.
    Epoch {
        /// The trial.
        trial: u32,
        /// Epochs completed, from 1.
        epoch: u32,
        /// The epoch's metrics: `loss` (mean training loss) and `val_*`.
        metrics: BTreeMap<String, f64>,
    },
    /// A trial changed state.
    Trial {
        /// The trial.
        trial: u32,
        /// Its new state.
        state: TrialState,
        /// Why, when it failed or an attempt is retried.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The job changed state.
    Job {
        /// Its new state.
        state: JobState,
        /// Why, when it failed or stopped.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// `GET /v1/jobs/{id}/logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobLogs {
    /// What each trial's guests printed, the most recent part of it.
    pub trials: Vec<TrialLog>,
}

/// What a trial's guests printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrialLog {
    /// The trial.
    pub trial: u32,
    /// Its standard output, the last bytes kept.
    pub stdout: String,
    /// Its standard error, the last bytes kept.
    pub stderr: String,
}

/// `GET /v1/jobs/{id}/report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobReport {
    /// The job's id.
    pub id: String,
    /// Its state.
    pub state: JobState,
    /// The objective trials were ranked by.
    pub objective: Objective,
    /// Per trial: its hyper-parameters, state and curves.
    pub trials: Vec<TrialReport>,
    /// The best trial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_trial: Option<u32>,
    /// The best trial's hyper-parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_hyper: Option<BTreeMap<String, f64>>,
    /// The best trial's figures on the test split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<TestResult>,
    /// The model version made from the best trial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exported: Option<ExportedModel>,
    /// From the first trial's start to the job's end, in seconds.
    pub wall_time_s: f64,
    /// Guest CPU time of every step and evaluation, in seconds.
    pub cpu_time_s: f64,
    /// wasi-nn compute time on CPU and GPU, in seconds.
    pub nn_cpu_time_s: f64,
    /// wasi-nn compute time on GPU, in seconds.
    pub nn_gpu_time_s: f64,
    /// What the job cost, in micro-units of the tenant's plan's currency.
    pub cost_micros: i64,
}

/// One trial in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrialReport {
    /// The trial.
    pub trial: u32,
    /// Its hyper-parameters.
    pub hyper: BTreeMap<String, f64>,
    /// Its state.
    pub state: TrialState,
    /// Each metric by epoch (index 0 is epoch 1).
    pub curves: BTreeMap<String, Vec<f64>>,
}

/// The best trial on the test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TestResult {
    /// Rows of the test split.
    pub rows: u64,
    /// The metrics `evaluate` returned, averaged over the split.
    pub metrics: BTreeMap<String, f64>,
    /// For a classifier: `confusion[true][predicted]` counts, over the label's classes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confusion: Option<Vec<Vec<u64>>>,
}

/// A model version a job made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExportedModel {
    /// The model's name.
    pub model: String,
    /// The version made.
    pub version: i64,
}
