//! One trial, run by the host: `init` (or the last checkpoint), then per
//! epoch the train split's shuffled batches through `step` and the
//! validation split through `evaluate`, with a checkpoint, the epoch's
//! events and the interval's bill at the end of each checkpoint interval.
//! The batches are read ahead ([`Feed`]), and a checkpoint is stored while
//! the next epoch trains, so the guest waits on neither.
//! A failed attempt is retried from the last checkpoint up to
//! `max_retries` times.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::api::ErrorCode;
use crate::api::datasets::Split;
use crate::api::jobs::{EarlyStopping, JobEvent, JobSpec, JobState, TrialState};
use crate::db::{Checkpoint, JobRow, NewEvent, TrialChange, TrialUsage};
use crate::engine::{FunctionKind, NamedTensor};
use crate::invoke::{Caller, GuestLog, Input, InvokeError, Output};
use crate::metering::Measurement;
use crate::registry::Version;
use crate::settle::{Outcome, Work};

use super::evaluate;
use super::feed::Feed;
use super::{Jobs, checkpoint, event_json, metrics_json, search};

/// How long a node waits for a deploy made on another node to reach it.
const REGISTRY_WAIT: Duration = Duration::from_secs(10);

/// Why an attempt stopped short of the end.
pub(super) enum Stop {
    /// The attempt failed: the trial may retry it.
    Failed(String),
    /// The job ended, or this node lost the trial's lease: nothing more to do here.
    Abandoned,
    /// A host-side failure: the lease runs out and the trial is picked up again.
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}

/// Runs trial `trial` of job `job`, which this node has leased.
pub(super) async fn run_trial(jobs: &Arc<Jobs>, job: &str, trial: i64) {
    if let Err(err) = run(jobs, job, trial).await {
        tracing::warn!(job, trial, error = %format!("{err:#}"), "trial interrupted; its lease will run out and it resumes");
    }
}

async fn run(jobs: &Arc<Jobs>, job_id: &str, trial_no: i64) -> anyhow::Result<()> {
    let db = &jobs.deps.db;
    let Some(job) = db.job_by_id(job_id).await? else { return Ok(()) };
    let spec: JobSpec = serde_json::from_str(&job.spec)?;
    let Some(trial) = db.trials(job_id).await?.into_iter().find(|t| t.trial == trial_no) else { return Ok(()) };
    let hyper = match serde_json::from_str::<Option<BTreeMap<String, f64>>>(&trial.hyper)? {
        Some(hyper) => hyper,
        None => {
            let hyper = tpe_draw(jobs, job_id, &spec, trial_no).await?;
            if !db.set_trial_hyper(job_id, trial_no, &jobs.node, &serde_json::to_string(&hyper)?).await? {
                return Ok(());
            }
            hyper
        }
    };
    let log = GuestLog::new(jobs.settings.log_bytes, &trial.stdout, &trial.stderr);
    let set_state = async |state: TrialState, error: Option<&str>, attempt: i64| -> anyhow::Result<bool> {
        let event =
            event_json(&JobEvent::Trial { trial: u32::try_from(trial_no)?, state, error: error.map(str::to_owned) })?;
        let (stdout, stderr) = log.contents();
        let change =
            TrialChange { state: state.as_str(), error, attempt, stdout: &stdout, stderr: &stderr, event: &event };
        let changed = db.set_trial_state(job_id, trial_no, &jobs.node, change).await?;
        jobs.events_appended();
        Ok(changed)
    };
    let mut attempt = trial.attempt;
    if attempt == 0 {
        attempt = 1;
        if !set_state(TrialState::Running, None, attempt).await? {
            return Ok(());
        }
    }
    let run = TrialRun::new(jobs, &job, &spec, trial_no, hyper.into_iter().collect(), &log);
    loop {
        let (state, error) = match run.attempt(attempt).await {
            Ok(state) => (state, None),
            Err(Stop::Abandoned) => return Ok(()),
            Err(Stop::Internal(err)) => return Err(err),
            Err(Stop::Failed(message)) if attempt <= i64::from(spec.max_retries) => {
                let error = format!("attempt {attempt} failed: {message}; retrying from the last checkpoint");
                attempt += 1;
                if !set_state(TrialState::Running, Some(&error), attempt).await? {
                    return Ok(());
                }
                continue;
            }
            Err(Stop::Failed(message)) => (TrialState::Failed, Some(message)),
        };
        set_state(state, error.as_deref(), attempt).await?;
        return Ok(());
    }
}

/// A TPE trial's hyper-parameters, from the job's trials finished so far.
async fn tpe_draw(jobs: &Jobs, job_id: &str, spec: &JobSpec, trial: i64) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut observations = Vec::new();
    for row in jobs.deps.db.trials(job_id).await? {
        let state = TrialState::parse(&row.state);
        if !matches!(state, Some(TrialState::Succeeded | TrialState::Stopped)) {
            continue;
        }
        let (Ok(Some(hyper)), Ok(metrics)) = (
            serde_json::from_str::<Option<BTreeMap<String, f64>>>(&row.hyper),
            serde_json::from_str::<BTreeMap<String, f64>>(&row.metrics),
        ) else {
            continue;
        };
        if let Some(&objective) = metrics.get(&spec.objective.metric) {
            observations.push(super::tpe::Observation { hyper, objective });
        }
    }
    Ok(super::tpe::draw(spec, &observations, spec.seed ^ (trial as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

/// One trial of one job, as a worker runs it.
pub(super) struct TrialRun<'a> {
    pub jobs: &'a Arc<Jobs>,
    pub job: &'a JobRow,
    pub spec: &'a JobSpec,
    pub trial: i64,
    pub hyper: Vec<(String, f64)>,
    pub log: &'a GuestLog,
    /// When this node last renewed the trial's lease (Unix milliseconds).
    renewed_ms: AtomicI64,
    /// When this node last read the job's state (Unix milliseconds).
    checked_ms: AtomicI64,
    /// When the job started running (Unix milliseconds), once read; 0 before.
    started_ms: AtomicI64,
    /// How fast the last training call went, to size the next one.
    pace: Pace,
    /// The validation split, once read.
    pub(super) validation: std::sync::Mutex<evaluate::Held>,
}

/// What the last call of `steps` showed: its wall time per batch, and a
/// batch's bytes. Zero until a call has told; the first call of an
/// attempt takes one batch to find out.
#[derive(Default)]
struct Pace {
    step_us: AtomicU64,
    batch_bytes: AtomicU64,
}

impl<'a> TrialRun<'a> {
    /// The trial `trial` of `job`, run with `hyper`, its guests' output in `log`.
    pub(super) fn new(
        jobs: &'a Arc<Jobs>,
        job: &'a JobRow,
        spec: &'a JobSpec,
        trial: i64,
        hyper: Vec<(String, f64)>,
        log: &'a GuestLog,
    ) -> Self {
        Self {
            jobs,
            job,
            spec,
            trial,
            hyper,
            log,
            renewed_ms: AtomicI64::new(0),
            checked_ms: AtomicI64::new(0),
            started_ms: AtomicI64::new(0),
            pace: Pace::default(),
            validation: std::sync::Mutex::default(),
        }
    }
}

/// What a checkpoint's task ([`TrialRun::save`]) came to.
async fn landed(save: tokio::task::JoinHandle<Result<(), Stop>>) -> Result<(), Stop> {
    save.await.map_err(|err| Stop::Internal(anyhow::anyhow!(err)))?
}

/// A checkpoint to store: an interval's end, already billed.
struct Saved {
    epoch: i64,
    bytes: Vec<u8>,
    metrics: String,
    usage: TrialUsage,
    events: Vec<NewEvent>,
}

/// What one checkpoint interval did, to settle and store at its end.
#[derive(Default)]
pub(super) struct Interval {
    used: Measurement,
    events: Vec<NewEvent>,
    start_ms: i64,
    started: Option<Instant>,
}

impl TrialRun<'_> {
    /// One attempt, from the last checkpoint (or `init`) to the last epoch,
    /// or to early stopping.
    async fn attempt(&self, attempt: i64) -> Result<TrialState, Stop> {
        let version = self.version().await?;
        let dataset = self.dataset().await?;
        let (mut epoch, mut parameters) = match self.jobs.deps.db.checkpoint(&self.job.id, self.trial).await? {
            Some((epoch, bytes)) => (epoch, checkpoint::decode(&bytes)?),
            None => (0, Vec::new()),
        };
        let mut interval = Interval::begin();
        if epoch == 0 && parameters.is_empty() {
            parameters = self.init(&version, &mut interval, attempt).await?;
        } else if self.asha_rung(epoch) && !self.asha_continues(epoch, &self.checkpointed_metrics().await?).await? {
            // Stopped at this rung by an attempt that ended before it could say so.
            return Ok(TrialState::Stopped);
        }
        let epochs = i64::from(self.spec.epochs);
        let mut feed = self.feed(&version, dataset.clone(), epoch + 1..=epochs);
        // An epoch's checkpoint is written while the next epoch trains.
        let mut saving: Option<tokio::task::JoinHandle<Result<(), Stop>>> = None;
        while epoch < epochs {
            epoch += 1;
            // The job is checked while the epoch trains (the check may wait
            // on the database behind the last checkpoint); a failed check
            // drops the epoch's work.
            let train = async {
                let epoch = self.train_epoch(&version, &mut feed, epoch, &mut parameters, &mut interval, attempt);
                tokio::try_join!(self.check_job(), epoch).map(|((), trained)| trained)
            };
            // The checkpoint lands even when the epoch fails: a retry
            // resumes from it, as it would have without the overlap.
            let (trained, saved) = tokio::join!(train, async {
                match saving.take() {
                    Some(save) => landed(save).await,
                    None => Ok(()),
                }
            });
            saved?;
            let (train_loss, _) = trained?;
            let mut metrics = BTreeMap::new();
            metrics.insert("loss".to_owned(), train_loss);
            let (validation, _) =
                self.evaluate_split(&version, &dataset, Split::Validation, &parameters, &mut interval, attempt).await?;
            for (name, value) in validation {
                metrics.insert(format!("val_{name}"), value);
            }
            let event = JobEvent::Epoch {
                trial: u32::try_from(self.trial).unwrap_or(0),
                epoch: u32::try_from(epoch).unwrap_or(0),
                metrics: metrics.clone(),
            };
            interval.events.push(NewEvent { trial: Some(self.trial), epoch: Some(epoch), data: event_json(&event)? });
            let rung = self.asha_rung(epoch);
            if epoch % i64::from(self.spec.checkpoint_every_epochs) == 0 || epoch == epochs || rung {
                let usage = self.settle(&version, &mut interval, &format!("{epoch}:{attempt}"), Outcome::Ok).await?;
                let checkpoint = Saved {
                    epoch,
                    bytes: checkpoint::encode(&parameters)?,
                    metrics: metrics_json(&metrics)?,
                    usage,
                    events: std::mem::take(&mut interval.events),
                };
                let save = self.save(checkpoint);
                if epoch == epochs || rung {
                    landed(save).await?;
                } else {
                    saving = Some(save);
                    // A task spawned from a worker waits in that worker's
                    // next-task slot, which no other worker takes from, until
                    // this task yields: without this, the save would start
                    // only once the next epoch had trained, and hold up its end.
                    tokio::task::yield_now().await;
                }
            }
            if rung && !self.asha_continues(epoch, &metrics).await? {
                return Ok(TrialState::Stopped);
            }
        }
        Ok(TrialState::Succeeded)
    }

    /// The function version the job was submitted with, still deployed.
    /// Another node's deploy reaches this node's registry within a few
    /// seconds, so a version this node does not know yet is waited for.
    pub(super) async fn version(&self) -> Result<Arc<Version>, Stop> {
        let mut waited = Duration::ZERO;
        loop {
            let found = self.jobs.deps.registry.get(&self.job.tenant, &self.job.function);
            match found {
                Some(version)
                    if version.record.version == self.job.function_version
                        && version.entry.kind() == FunctionKind::TrainingStep =>
                {
                    return Ok(version);
                }
                Some(version) if version.record.version > self.job.function_version || waited >= REGISTRY_WAIT => {
                    return Err(Stop::Failed(format!(
                        "function `{}` was redeployed (version {} to {}) while the job ran; submit the job again \
                         to train with the new version",
                        self.job.function, self.job.function_version, version.record.version
                    )));
                }
                None if waited >= REGISTRY_WAIT => {
                    return Err(Stop::Failed(format!(
                        "function `{}` was deleted while the job ran",
                        self.job.function
                    )));
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    waited += Duration::from_millis(200);
                }
            }
        }
    }

    pub(super) async fn dataset(&self) -> Result<PathBuf, Stop> {
        let version = u64::try_from(self.job.dataset_version).ok();
        match self.jobs.deps.datasets.file(&self.job.tenant, &self.job.dataset, version).await {
            Ok((path, _)) => Ok(path),
            Err(crate::datasets::DatasetError::NotFound(what)) => {
                Err(Stop::Failed(format!("{what} was deleted while the job ran")))
            }
            Err(err) => Err(Stop::Internal(anyhow::anyhow!(err))),
        }
    }

    async fn init(
        &self,
        version: &Arc<Version>,
        interval: &mut Interval,
        attempt: i64,
    ) -> Result<Vec<NamedTensor>, Stop> {
        let mut config = match &self.spec.config {
            serde_json::Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        // A seed per trial, unless the spec sets one: the same job
        // initialises the same, and trials differ.
        config.entry("seed").or_insert_with(|| self.spec.seed.wrapping_add(self.trial as u64).into());
        let input = Input::TrainInit { config: serde_json::Value::Object(config).to_string() };
        match self.call(version, input, interval, attempt).await? {
            Output::Parameters(parameters) => Ok(parameters),
            _ => Err(Stop::Failed("`init` returned something other than parameters".to_owned())),
        }
    }

    /// One pass over the train split, as many batches a call of `steps` as
    /// [`TrialRun::batches_per_call`] allows; returns the mean loss by rows.
    /// A call never crosses an epoch, so the checkpoints, the events and
    /// the result are those of a call per batch.
    async fn train_epoch(
        &self,
        version: &Arc<Version>,
        feed: &mut Feed,
        epoch: i64,
        parameters: &mut Vec<NamedTensor>,
        interval: &mut Interval,
        attempt: i64,
    ) -> Result<(f64, u64), Stop> {
        let (mut loss_sum, mut rows) = (0.0, 0u64);
        loop {
            let batches = feed.next(self.batches_per_call(version)).await?;
            if batches.is_empty() {
                break;
            }
            if self.jobs.cancelled.contains(&self.job.id) {
                return Err(Stop::Abandoned);
            }
            self.renew().await?;
            let sizes: Vec<usize> = batches.iter().map(|batch| batch.rows).collect();
            let bytes = batches.iter().map(|batch| tensor_bytes(&batch.tensors)).max().unwrap_or(0);
            let input = Input::TrainSteps {
                parameters: std::mem::take(parameters),
                batches: batches.into_iter().map(|batch| batch.tensors).collect(),
                hyper: self.hyper.clone(),
            };
            let started = Instant::now();
            let output = self.call(version, input, interval, attempt).await?;
            self.pace.record(started.elapsed(), sizes.len(), bytes);
            let Output::Steps(steps) = output else {
                return Err(Stop::Failed("`steps` returned something other than its output".to_owned()));
            };
            if steps.losses.len() != sizes.len() {
                return Err(Stop::Failed(format!(
                    "`steps` returned {} losses for {} batches; it must return one a batch",
                    steps.losses.len(),
                    sizes.len()
                )));
            }
            *parameters = steps.parameters;
            for (loss, batch_rows) in steps.losses.into_iter().zip(sizes) {
                if !loss.is_finite() {
                    return Err(Stop::Failed(format!("the loss of epoch {epoch} is {loss}; lower the learning rate")));
                }
                loss_sum += loss * batch_rows as f64;
                rows += batch_rows as u64;
            }
        }
        if rows == 0 {
            return Err(Stop::Failed("the dataset's train split has no rows".to_owned()));
        }
        Ok((loss_sum / rows as f64, rows))
    }

    /// The train split's batches for `epochs`, read ahead of the guest by
    /// as much as one call may take (a sixteenth of the function's memory).
    fn feed(&self, version: &Version, dataset: PathBuf, epochs: std::ops::RangeInclusive<i64>) -> Feed {
        let (seed, trial) = (self.spec.seed, self.trial);
        let budget = (u64::from(version.limits.memory_mb) << 20) / 16;
        Feed::start(dataset, self.spec.batch_size, epochs, move |epoch| epoch_seed(seed, trial, epoch), budget)
    }

    /// How many batches the next call of `steps` takes: the spec's
    /// `steps_per_call` at most, and no more than fill a sixteenth of the
    /// function's memory or, at the last call's pace, a quarter of its
    /// deadline, so that batching never makes a call fail that would pass
    /// one batch at a time. One while the pace is not known yet.
    fn batches_per_call(&self, version: &Version) -> usize {
        let (step_us, batch_bytes) =
            (self.pace.step_us.load(Ordering::Relaxed), self.pace.batch_bytes.load(Ordering::Relaxed));
        if step_us == 0 {
            return 1;
        }
        let by_time = version.limits.timeout_ms.saturating_mul(1000) / 4 / step_us;
        let by_memory = (u64::from(version.limits.memory_mb) << 20) / 16 / batch_bytes.max(1);
        let most = u64::from(self.spec.steps_per_call).min(by_time).min(by_memory).max(1);
        usize::try_from(most).unwrap_or(1)
    }

    /// One guest call of the trial, its use added to the interval; a
    /// failure is billed at once and fails the attempt.
    pub(super) async fn call(
        &self,
        version: &Arc<Version>,
        input: Input,
        interval: &mut Interval,
        attempt: i64,
    ) -> Result<Output, Stop> {
        let work_id = format!("{}/{}", self.job.id, self.trial);
        let caller = Caller { work_id: &work_id, log: Some(self.log) };
        let (result, used) = self.jobs.deps.invoker.run(version, input, None, caller).await;
        interval.used.add(&used);
        match result {
            Ok(output) => Ok(output),
            Err(err) => {
                let (code, message) = (err.code(), describe(&err));
                self.settle(version, interval, &format!("failed:{attempt}"), Outcome::Failed(code)).await?;
                Err(Stop::Failed(message))
            }
        }
    }

    /// Settles the interval's work (one usage record, whose id makes a
    /// repeat after a crash a no-op) and starts a new one.
    pub(super) async fn settle(
        &self,
        version: &Arc<Version>,
        interval: &mut Interval,
        tag: &str,
        outcome: Outcome,
    ) -> Result<TrialUsage, Stop> {
        let done = std::mem::replace(interval, Interval::begin());
        let id = format!("{}:{}:{tag}", self.job.id, self.trial);
        let work = Work {
            id: &id,
            tenant: &self.job.tenant,
            function: &self.job.function,
            version: version.record.version,
            start_ms: done.start_ms,
            started: done.started.unwrap_or_else(Instant::now),
            bytes_in: 0,
            bytes_out: 0,
            metrics: &version.metrics,
            // An interval of training is not a call: it would skew the
            // function's latency statistics.
            stats: None,
        };
        let cost_micros = match self.jobs.deps.settler.settle(work, &done.used, outcome).await {
            Ok(cost) => cost,
            Err(err) => {
                return Err(Stop::Internal(anyhow::anyhow!(err).context("the trial's work could not be billed")));
            }
        };
        interval.events = done.events;
        let int = |value: u128| i64::try_from(value).unwrap_or(i64::MAX);
        Ok(TrialUsage {
            cpu_us: int(done.used.cpu.as_micros()),
            nn_cpu_us: int(done.used.nn_cpu_us.into()),
            nn_gpu_us: int(done.used.nn_gpu_us.into()),
            cost_micros,
        })
    }

    /// Stores a checkpoint, whose interval has been billed, with the
    /// progress and the interval's events together. On a task of its own,
    /// so that it goes on while the guest runs on this one.
    fn save(&self, saved: Saved) -> tokio::task::JoinHandle<Result<(), Stop>> {
        let (stdout, stderr) = self.log.contents();
        let (jobs, job, trial) = (Arc::clone(self.jobs), self.job.id.clone(), self.trial);
        tokio::spawn(async move {
            let checkpoint = Checkpoint {
                epoch: saved.epoch,
                bytes: &saved.bytes,
                metrics: &saved.metrics,
                usage: saved.usage,
                stdout: &stdout,
                stderr: &stderr,
                events: saved.events,
            };
            if !jobs.deps.db.save_checkpoint(&job, trial, &jobs.node, checkpoint).await? {
                return Err(Stop::Abandoned);
            }
            jobs.events_appended();
            Ok(())
        })
    }

    /// The metrics the trial's last checkpoint was written with.
    async fn checkpointed_metrics(&self) -> Result<BTreeMap<String, f64>, Stop> {
        let trials = self.jobs.deps.db.trials(&self.job.id).await?;
        let metrics = trials.iter().find(|t| t.trial == self.trial).map(|t| t.metrics.as_str()).unwrap_or("{}");
        Ok(serde_json::from_str(metrics).map_err(anyhow::Error::from)?)
    }

    fn asha_rung(&self, epoch: i64) -> bool {
        match &self.spec.search.early_stopping {
            Some(EarlyStopping::Asha(asha)) => {
                search::is_rung(asha, u32::try_from(epoch).unwrap_or(u32::MAX), self.spec.epochs)
            }
            None => false,
        }
    }

    /// ASHA's decision at a rung, over what every trial recorded there.
    async fn asha_continues(&self, epoch: i64, metrics: &BTreeMap<String, f64>) -> Result<bool, Stop> {
        let Some(EarlyStopping::Asha(asha)) = &self.spec.search.early_stopping else { return Ok(true) };
        let metric = &self.spec.objective.metric;
        let mine = metrics.get(metric).copied().unwrap_or(f64::NAN);
        let mut recorded = Vec::new();
        for data in self.jobs.deps.db.epoch_events(&self.job.id, epoch).await? {
            if let Ok(JobEvent::Epoch { metrics, .. }) = serde_json::from_str(&data)
                && let Some(value) = metrics.get(metric)
            {
                recorded.push(*value);
            }
        }
        Ok(search::continues(asha, self.spec.objective.mode, &recorded, mine))
    }

    /// Stops the attempt when the job is over, past its runtime, or out of
    /// budget. The job's state is read at most every [`JOB_CHECK_MS`]: a
    /// small model's epochs come hundreds a second, and a read each would
    /// cost the training a database round trip an epoch, for a change
    /// (another node's cancel, another trial's failure) that a quarter of a
    /// second later stops it all the same. A cancel on this node stops it
    /// at once.
    async fn check_job(&self) -> Result<(), Stop> {
        if self.jobs.cancelled.contains(&self.job.id) {
            return Err(Stop::Abandoned);
        }
        self.renew().await?;
        let now = crate::clock::now_ms();
        if now - self.checked_ms.load(Ordering::Relaxed) >= JOB_CHECK_MS {
            let Some(job) = self.jobs.deps.db.job_by_id(&self.job.id).await? else { return Err(Stop::Abandoned) };
            if JobState::parse(&job.state).is_none_or(JobState::is_final) {
                return Err(Stop::Abandoned);
            }
            self.started_ms.store(job.started_at_ms.unwrap_or(0), Ordering::Relaxed);
            self.checked_ms.store(now, Ordering::Relaxed);
        }
        let started = Some(self.started_ms.load(Ordering::Relaxed)).filter(|&ms| ms > 0);
        if let (Some(limit), Some(started)) = (self.spec.max_runtime_s, started)
            && now - started > i64::try_from(limit.saturating_mul(1000)).unwrap_or(i64::MAX)
        {
            let error = format!("the job ran past its max_runtime_s of {limit} s");
            self.jobs.end(&self.job.id, JobState::TimedOut, Some(&error), None).await?;
            return Err(Stop::Abandoned);
        }
        if let Err(err) = self.jobs.deps.tenancy.check_spend(&self.job.tenant).await {
            let error = format!("stopped: {err}");
            self.jobs.end(&self.job.id, JobState::TimedOut, Some(&error), None).await?;
            return Err(Stop::Abandoned);
        }
        Ok(())
    }

    /// Extends the trial's lease once a third of it has passed; a write
    /// per step or per epoch would cost more than the steps of a small model.
    async fn renew(&self) -> Result<(), Stop> {
        let now = crate::clock::now_ms();
        if now - self.renewed_ms.load(Ordering::Relaxed) < self.jobs.lease_ms() / 3 {
            return Ok(());
        }
        if self.jobs.deps.db.renew_trial(&self.job.id, self.trial, &self.jobs.node, now + self.jobs.lease_ms()).await? {
            self.renewed_ms.store(now, Ordering::Relaxed);
            Ok(())
        } else {
            Err(Stop::Abandoned)
        }
    }
}

/// How often a trial reads its job's state, at most (milliseconds).
const JOB_CHECK_MS: i64 = 250;

impl Pace {
    /// A call of `steps` on `batches` batches of at most `bytes` each took `elapsed`.
    fn record(&self, elapsed: Duration, batches: usize, bytes: u64) {
        let per_batch = elapsed.as_micros() / batches.max(1) as u128;
        self.step_us.store(u64::try_from(per_batch).unwrap_or(u64::MAX).max(1), Ordering::Relaxed);
        self.batch_bytes.store(bytes, Ordering::Relaxed);
    }
}

impl Interval {
    pub(super) fn begin() -> Self {
        Self { start_ms: crate::clock::now_ms(), started: Some(Instant::now()), ..Self::default() }
    }
}

/// The seed of one epoch's shuffle of the train split: a function of the
/// job's seed, the trial (from 0) and the epoch (from 1) alone, so a resumed
/// trial sees the same batches, and so does a benchmark that replays a job's.
pub fn epoch_seed(seed: u64, trial: i64, epoch: i64) -> u64 {
    seed ^ (trial as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (epoch as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

fn describe(err: &InvokeError) -> String {
    match err.code() {
        ErrorCode::FunctionError => format!("the training step returned an error: {err}"),
        _ => err.to_string(),
    }
}

/// The bytes of a batch's tensors.
pub(super) fn tensor_bytes(tensors: &[NamedTensor]) -> u64 {
    tensors.iter().map(|tensor| tensor.tensor.data.len() as u64).sum()
}
