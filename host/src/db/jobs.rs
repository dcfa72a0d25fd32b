//! Training jobs in the database: jobs, their trials, each trial's latest
//! checkpoint and the job's event log.
//!
//! A trial is run by whichever node holds its lease. Every write a running
//! trial makes checks that lease in the same statement, so a node that lost
//! it (paused past the lease, say, while another node took over) changes
//! nothing. Events are numbered per job from the job's row, which the
//! numbering transaction locks: numbers are handed out in commit order, and a
//! reader resuming after number `n` never misses one committed later.

use anyhow::Context as _;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Db;

/// A job's row.
#[derive(Debug, Clone)]
pub struct JobRow {
    /// Its id.
    pub id: String,
    /// The tenant that owns it.
    pub tenant: String,
    /// The spec as JSON.
    pub spec: String,
    /// The function's name and the version it runs.
    pub function: String,
    /// The function version pinned at submission.
    pub function_version: i64,
    /// The dataset's name.
    pub dataset: String,
    /// The dataset version pinned at submission.
    pub dataset_version: i64,
    /// Trials run at once.
    pub parallel: i64,
    /// `queued`, `running`, ...
    pub state: String,
    /// Why it failed or stopped.
    pub error: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// When its first trial started.
    pub started_at_ms: Option<i64>,
    /// When it ended.
    pub finished_at_ms: Option<i64>,
    /// The final result as JSON (test figures, export).
    pub result: Option<String>,
}

/// A trial's row.
#[derive(Debug, Clone)]
pub struct TrialRow {
    /// The job.
    pub job_id: String,
    /// Its number.
    pub trial: i64,
    /// Its hyper-parameters as a JSON object.
    pub hyper: String,
    /// `pending`, `running`, ...
    pub state: String,
    /// Epochs completed and checkpointed.
    pub epoch: i64,
    /// Attempts started.
    pub attempt: i64,
    /// The latest epoch's metrics as a JSON object.
    pub metrics: String,
    /// Why its last attempt failed.
    pub error: Option<String>,
    /// What its steps used so far.
    pub usage: TrialUsage,
    /// The tail of what its guests printed.
    pub stdout: String,
    /// The tail of what its guests printed on stderr.
    pub stderr: String,
}

/// What a trial's work used, summed over its checkpoints.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrialUsage {
    /// Guest CPU time.
    pub cpu_us: i64,
    /// wasi-nn compute time (CPU and GPU).
    pub nn_cpu_us: i64,
    /// wasi-nn compute time on GPU.
    pub nn_gpu_us: i64,
    /// Its price.
    pub cost_micros: i64,
}

/// One stored event.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Its number in the job, from 1.
    pub seq: i64,
    /// The event as JSON.
    pub data: String,
}

/// An event to append: the JSON and, for an epoch, which trial and epoch it is.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The trial, for trial and epoch events.
    pub trial: Option<i64>,
    /// The epoch, for epoch events.
    pub epoch: Option<i64>,
    /// The event as JSON.
    pub data: String,
}

/// A checkpoint a trial writes at the end of an epoch, with what comes with it.
pub struct Checkpoint<'a> {
    /// Epochs completed.
    pub epoch: i64,
    /// The parameters, serialized.
    pub bytes: &'a [u8],
    /// The latest metrics as JSON.
    pub metrics: &'a str,
    /// What the interval used, added to the trial's sums.
    pub usage: TrialUsage,
    /// The new tails of the guests' output.
    pub stdout: &'a str,
    /// The new tail of the guests' stderr.
    pub stderr: &'a str,
    /// The interval's epoch events.
    pub events: Vec<NewEvent>,
}

/// A trial's new state, with what goes with it.
pub struct TrialChange<'a> {
    /// `running` (a retry), or how it ended.
    pub state: &'a str,
    /// Why the last attempt failed.
    pub error: Option<&'a str>,
    /// Attempts started.
    pub attempt: i64,
    /// The tail of the guests' stdout.
    pub stdout: &'a str,
    /// The tail of the guests' stderr.
    pub stderr: &'a str,
    /// The event, as JSON.
    pub event: &'a str,
}

const JOB_COLUMNS: &str = "id, tenant, spec, function, function_version, dataset, dataset_version, parallel, state, \
                           error, created_at_ms, started_at_ms, finished_at_ms, result";
const TRIAL_COLUMNS: &str = "job_id, trial, hyper, state, epoch, attempt, metrics, error, cpu_us, nn_cpu_us, \
                             nn_gpu_us, cost_micros, stdout, stderr";

impl Db {
    /// Stores a new job and its trials (their hyper-parameters as JSON),
    /// queued; the audit log records it.
    pub async fn insert_job(&self, job: &JobRow, trials: &[String], event: &str) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO jobs ({JOB_COLUMNS}, next_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0)"
        ))
        .bind(&job.id)
        .bind(&job.tenant)
        .bind(&job.spec)
        .bind(&job.function)
        .bind(job.function_version)
        .bind(&job.dataset)
        .bind(job.dataset_version)
        .bind(job.parallel)
        .bind(&job.state)
        .bind(&job.error)
        .bind(job.created_at_ms)
        .bind(job.started_at_ms)
        .bind(job.finished_at_ms)
        .bind(&job.result)
        .execute(&mut *tx)
        .await?;
        for (trial, hyper) in trials.iter().enumerate() {
            sqlx::query(
                "INSERT INTO trials (job_id, trial, hyper, state, epoch, attempt, metrics, cpu_us, nn_cpu_us, \
                 nn_gpu_us, cost_micros, stdout, stderr) VALUES ($1, $2, $3, 'pending', 0, 0, '{}', 0, 0, 0, 0, '', '')",
            )
            .bind(&job.id)
            .bind(i64::try_from(trial)?)
            .bind(hyper)
            .execute(&mut *tx)
            .await?;
        }
        append_events(&mut tx, &job.id, &[NewEvent { trial: None, epoch: None, data: event.to_owned() }]).await?;
        audit_job_state(&mut tx, &job.tenant, &job.id, &job.state, None, job.created_at_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The job `id` of `tenant`.
    pub async fn job(&self, tenant: &str, id: &str) -> anyhow::Result<Option<JobRow>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = $1 AND id = $2"))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| job_row(&row)).transpose()
    }

    /// The job `id`, whoever owns it (for the workers).
    pub async fn job_by_id(&self, id: &str) -> anyhow::Result<Option<JobRow>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| job_row(&row)).transpose()
    }

    /// `tenant`'s jobs, newest first.
    pub async fn jobs(&self, tenant: &str) -> anyhow::Result<Vec<JobRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = $1 ORDER BY created_at_ms DESC, id DESC"
        ))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_row).collect()
    }

    /// How many of `tenant`'s jobs are queued or running.
    pub async fn active_jobs(&self, tenant: &str) -> anyhow::Result<u64> {
        let count: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE tenant = $1 AND state IN ('queued', 'running')")
                .bind(tenant)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// The trials of job `id`, by number.
    pub async fn trials(&self, id: &str) -> anyhow::Result<Vec<TrialRow>> {
        let rows = sqlx::query(&format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE job_id = $1 ORDER BY trial"))
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(trial_row).collect()
    }

    /// Leases the next trial that may run to `node` until `until_ms`: of
    /// the oldest job with room under its `parallel`, the first trial not
    /// ended whose lease (if any) expired by `now_ms`. Marks it running, and
    /// its job running (the audit log records a job that starts). Returns
    /// the job and trial.
    pub async fn claim_trial(&self, node: &str, now_ms: i64, until_ms: i64) -> anyhow::Result<Option<(String, i64)>> {
        let mut tx = self.begin_write().await?;
        let lock = if self.is_shared() { " FOR UPDATE SKIP LOCKED" } else { "" };
        let jobs = sqlx::query(&format!(
            "SELECT id, tenant, parallel FROM jobs WHERE state IN ('queued', 'running') ORDER BY created_at_ms, id LIMIT 32{lock}"
        ))
        .fetch_all(&mut *tx)
        .await?;
        for job in jobs {
            let id: String = job.try_get("id")?;
            let parallel: i64 = job.try_get("parallel")?;
            let leased: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM trials WHERE job_id = $1 AND state = 'running' AND lease_until_ms >= $2",
            )
            .bind(&id)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            if leased >= parallel {
                continue;
            }
            let trial = sqlx::query(
                "SELECT trial FROM trials WHERE job_id = $1 AND state IN ('pending', 'running')
                 AND (lease_until_ms IS NULL OR lease_until_ms < $2) ORDER BY trial LIMIT 1",
            )
            .bind(&id)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(trial) = trial else { continue };
            let trial: i64 = trial.try_get("trial")?;
            sqlx::query(
                "UPDATE trials SET state = 'running', lease_owner = $1, lease_until_ms = $2 WHERE job_id = $3 AND trial = $4",
            )
            .bind(node)
            .bind(until_ms)
            .bind(&id)
            .bind(trial)
            .execute(&mut *tx)
            .await?;
            let started = sqlx::query(
                "UPDATE jobs SET state = 'running', started_at_ms = COALESCE(started_at_ms, $1) WHERE id = $2 AND state = 'queued'",
            )
            .bind(now_ms)
            .bind(&id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if started == 1 {
                let tenant: String = job.try_get("tenant")?;
                audit_job_state(&mut tx, &tenant, &id, "running", None, now_ms).await?;
            }
            tx.commit().await?;
            return Ok(Some((id, trial)));
        }
        tx.commit().await?;
        Ok(None)
    }

    /// Records the hyper-parameters drawn for a trial as it starts (TPE);
    /// `false` when `node` no longer holds its lease.
    pub async fn set_trial_hyper(&self, job: &str, trial: i64, node: &str, hyper: &str) -> anyhow::Result<bool> {
        const SQL: &str = "UPDATE trials SET hyper = $1 WHERE job_id = $2 AND trial = $3 AND lease_owner = $4 \
                           AND state = 'running'";
        self.update_leased(sqlx::query(SQL).bind(hyper), job, trial, node).await
    }

    /// Extends `node`'s lease of a trial; `false` when it no longer holds it.
    pub async fn renew_trial(&self, job: &str, trial: i64, node: &str, until_ms: i64) -> anyhow::Result<bool> {
        const SQL: &str = "UPDATE trials SET lease_until_ms = $1 WHERE job_id = $2 AND trial = $3 \
                           AND lease_owner = $4 AND state = 'running'";
        self.update_leased(sqlx::query(SQL).bind(until_ms), job, trial, node).await
    }

    /// Runs `update` (its `$1` bound) on a running trial that `node` leases.
    async fn update_leased<'q>(
        &self,
        update: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        job: &'q str,
        trial: i64,
        node: &'q str,
    ) -> anyhow::Result<bool> {
        let updated = update.bind(job).bind(trial).bind(node).execute(&self.pool).await?.rows_affected();
        Ok(updated == 1)
    }

    /// Gives up every lease: on SQLite one node owns the database (its data
    /// directory is locked), so what a killed process held is free at once.
    pub async fn release_all_leases(&self) -> anyhow::Result<()> {
        sqlx::query("UPDATE trials SET lease_owner = NULL, lease_until_ms = NULL").execute(&self.pool).await?;
        sqlx::query("UPDATE jobs SET lease_owner = NULL, lease_until_ms = NULL").execute(&self.pool).await?;
        Ok(())
    }

    /// The trial's latest checkpoint: its epoch and bytes.
    pub async fn checkpoint(&self, job: &str, trial: i64) -> anyhow::Result<Option<(i64, Vec<u8>)>> {
        let row = sqlx::query("SELECT epoch, bytes FROM checkpoints WHERE job_id = $1 AND trial = $2")
            .bind(job)
            .bind(trial)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| anyhow::Ok((row.try_get("epoch")?, row.try_get("bytes")?))).transpose()
    }

    /// Records the end of an interval of epochs in one transaction: the
    /// checkpoint, the trial's progress and sums, and the interval's events.
    /// `false` (and nothing written) when `node` lost the lease.
    pub async fn save_checkpoint(
        &self,
        job: &str,
        trial: i64,
        node: &str,
        checkpoint: Checkpoint<'_>,
    ) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let Some(numbers) = lock_job(&mut tx, job, checkpoint.events.len()).await? else { return Ok(false) };
        let updated = sqlx::query(
            "UPDATE trials SET epoch = $1, metrics = $2, cpu_us = cpu_us + $3, nn_cpu_us = nn_cpu_us + $4,
             nn_gpu_us = nn_gpu_us + $5, cost_micros = cost_micros + $6, stdout = $7, stderr = $8
             WHERE job_id = $9 AND trial = $10 AND lease_owner = $11 AND state = 'running'",
        )
        .bind(checkpoint.epoch)
        .bind(checkpoint.metrics)
        .bind(checkpoint.usage.cpu_us)
        .bind(checkpoint.usage.nn_cpu_us)
        .bind(checkpoint.usage.nn_gpu_us)
        .bind(checkpoint.usage.cost_micros)
        .bind(checkpoint.stdout)
        .bind(checkpoint.stderr)
        .bind(job)
        .bind(trial)
        .bind(node)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO checkpoints (job_id, trial, epoch, bytes) VALUES ($1, $2, $3, $4)
             ON CONFLICT (job_id, trial) DO UPDATE SET epoch = excluded.epoch, bytes = excluded.bytes",
        )
        .bind(job)
        .bind(trial)
        .bind(checkpoint.epoch)
        .bind(checkpoint.bytes.to_vec())
        .execute(&mut *tx)
        .await?;
        insert_events(&mut tx, job, numbers, &checkpoint.events).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Sets a running trial's state (and error, attempt and log), with its
    /// event; `false` when `node` lost the lease.
    pub async fn set_trial_state(
        &self,
        job: &str,
        trial: i64,
        node: &str,
        change: TrialChange<'_>,
    ) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let Some(numbers) = lock_job(&mut tx, job, 1).await? else { return Ok(false) };
        let ended = change.state != "running";
        let updated = sqlx::query(
            "UPDATE trials SET state = $1, error = $2, attempt = $3, stdout = $4, stderr = $5,
             lease_owner = CASE WHEN $6 THEN NULL ELSE lease_owner END,
             lease_until_ms = CASE WHEN $6 THEN NULL ELSE lease_until_ms END
             WHERE job_id = $7 AND trial = $8 AND lease_owner = $9 AND state = 'running'",
        )
        .bind(change.state)
        .bind(change.error)
        .bind(change.attempt)
        .bind(change.stdout)
        .bind(change.stderr)
        .bind(ended)
        .bind(job)
        .bind(trial)
        .bind(node)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            return Ok(false);
        }
        let event = NewEvent { trial: Some(trial), epoch: None, data: change.event.to_owned() };
        insert_events(&mut tx, job, numbers, &[event]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The objective values the job's trials reported at `epoch`, from
    /// their epoch events (ASHA's rung records).
    pub async fn epoch_events(&self, job: &str, epoch: i64) -> anyhow::Result<Vec<String>> {
        let rows = sqlx::query("SELECT data FROM job_events WHERE job_id = $1 AND epoch = $2 ORDER BY seq")
            .bind(job)
            .bind(epoch)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(row.try_get("data")?)).collect()
    }

    /// Events of job `id` numbered after `after`, at most `limit`.
    pub async fn job_events(&self, id: &str, after: i64, limit: i64) -> anyhow::Result<Vec<EventRow>> {
        let rows = sqlx::query("SELECT seq, data FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .bind(id)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(EventRow { seq: row.try_get("seq")?, data: row.try_get("data")? })).collect()
    }

    /// Ends a job that is not over yet: sets its state, error and result,
    /// ends its trials that are not over as `cancelled`, and logs the event
    /// and the audit entry.
    /// `false` when it was already over.
    pub async fn end_job(
        &self,
        id: &str,
        state: &str,
        error: Option<&str>,
        result: Option<&str>,
        now_ms: i64,
        events: &[NewEvent],
    ) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE jobs SET state = $1, error = $2, result = $3, finished_at_ms = $4, lease_owner = NULL,
             lease_until_ms = NULL WHERE id = $5 AND state IN ('queued', 'running')",
        )
        .bind(state)
        .bind(error)
        .bind(result)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE trials SET state = 'cancelled', lease_owner = NULL, lease_until_ms = NULL
             WHERE job_id = $1 AND state IN ('pending', 'running')",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        append_events(&mut tx, id, events).await?;
        let tenant: String = sqlx::query("SELECT tenant FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("tenant")?;
        audit_job_state(&mut tx, &tenant, id, state, error, now_ms).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Leases, to `node` until `until_ms`, a job whose trials have all
    /// ended but which is not over: it is ready for its final evaluation.
    pub async fn claim_finished_job(&self, node: &str, now_ms: i64, until_ms: i64) -> anyhow::Result<Option<String>> {
        let mut tx = self.begin_write().await?;
        let lock = if self.is_shared() { " FOR UPDATE SKIP LOCKED" } else { "" };
        let row = sqlx::query(&format!(
            "SELECT id FROM jobs j WHERE state IN ('queued', 'running')
             AND (lease_until_ms IS NULL OR lease_until_ms < $1)
             AND NOT EXISTS (SELECT 1 FROM trials t WHERE t.job_id = j.id AND t.state IN ('pending', 'running'))
             ORDER BY created_at_ms LIMIT 1{lock}"
        ))
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let id: String = row.try_get("id")?;
        sqlx::query("UPDATE jobs SET lease_owner = $1, lease_until_ms = $2 WHERE id = $3")
            .bind(node)
            .bind(until_ms)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Removes job `id` of `tenant` with everything it stored; `false` when there is none.
    pub async fn delete_job(&self, tenant: &str, id: &str) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM jobs WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 1 {
            for table in ["trials", "checkpoints", "job_events"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE job_id = $1")).bind(id).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(deleted == 1)
    }
}

/// Locks job `id`'s row for the transaction and reserves numbers for
/// `events` events of its log: the first of them, or `None` when there is
/// no such job. Every transaction that writes a job's trials takes its
/// job's row first (ending a job locks the job, then its trials), so two of
/// them never wait on each other in a circle; the numbers are handed out in
/// commit order, since the row stays locked until the commit.
async fn lock_job(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
    events: usize,
) -> anyhow::Result<Option<i64>> {
    let count = i64::try_from(events)?;
    let row = sqlx::query("UPDATE jobs SET next_seq = next_seq + $1 WHERE id = $2 RETURNING next_seq")
        .bind(count)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let last: i64 = row.try_get("next_seq")?;
    Ok(Some(last - count + 1))
}

/// The `job_state` entry of the audit log for job `id` reaching `state`,
/// written in the transaction that changes the state, so that the log has
/// each job's states in the order they happened.
async fn audit_job_state(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant: &str,
    id: &str,
    state: &str,
    error: Option<&str>,
    at_ms: i64,
) -> anyhow::Result<()> {
    let message = match error {
        Some(error) => format!("job {id} {state}: {error}"),
        None => format!("job {id} {state}"),
    };
    let detail = serde_json::json!({ "job": id, "state": state, "error": error });
    let entry = super::NewAudit { tenant, kind: "job_state", subject: id, message: &message, detail };
    super::monitor::audit_in(tx, &entry, at_ms).await
}

/// Appends `events` to job `id`'s log, numbering them from the job's row.
async fn append_events(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
    events: &[NewEvent],
) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let first = lock_job(tx, id, events.len()).await?.with_context(|| format!("job {id} does not exist"))?;
    insert_events(tx, id, first, events).await
}

/// Writes `events` to job `id`'s log, numbered from `first` (reserved by [`lock_job`]).
async fn insert_events(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
    first: i64,
    events: &[NewEvent],
) -> anyhow::Result<()> {
    let now = crate::clock::now_ms();
    for (seq, event) in (first..).zip(events) {
        sqlx::query("INSERT INTO job_events (job_id, seq, trial, epoch, at_ms, data) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id)
            .bind(seq)
            .bind(event.trial)
            .bind(event.epoch)
            .bind(now)
            .bind(&event.data)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn job_row(row: &AnyRow) -> anyhow::Result<JobRow> {
    Ok(JobRow {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        spec: row.try_get("spec")?,
        function: row.try_get("function")?,
        function_version: row.try_get("function_version")?,
        dataset: row.try_get("dataset")?,
        dataset_version: row.try_get("dataset_version")?,
        parallel: row.try_get("parallel")?,
        state: row.try_get("state")?,
        error: row.try_get("error")?,
        created_at_ms: row.try_get("created_at_ms")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        result: row.try_get("result")?,
    })
}

fn trial_row(row: &AnyRow) -> anyhow::Result<TrialRow> {
    Ok(TrialRow {
        job_id: row.try_get("job_id")?,
        trial: row.try_get("trial")?,
        hyper: row.try_get("hyper")?,
        state: row.try_get("state")?,
        epoch: row.try_get("epoch")?,
        attempt: row.try_get("attempt")?,
        metrics: row.try_get("metrics")?,
        error: row.try_get("error")?,
        usage: TrialUsage {
            cpu_us: row.try_get("cpu_us")?,
            nn_cpu_us: row.try_get("nn_cpu_us")?,
            nn_gpu_us: row.try_get("nn_gpu_us")?,
            cost_micros: row.try_get("cost_micros")?,
        },
        stdout: row.try_get("stdout")?,
        stderr: row.try_get("stderr")?,
    })
}
