//! The one settle path: every unit of metered work (an HTTP call today;
//! dataset preprocessing and training steps next) ends here. [`Settler::settle`]
//! builds the usage record, prices it, writes it to the ledger, charges the
//! tenant's budget, updates the metrics, and publishes a [`CallEvent`] that
//! anyone may subscribe to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::api::ErrorCode;
use crate::db::UsageRecord;
use crate::ledger::{Ledger, LedgerError};
use crate::metering::Measurement;
use crate::stats::{Sample, Series};
use crate::telemetry::FunctionMetrics;
use crate::tenancy::{Tenancy, TenancyError};

/// Events kept for a subscriber that falls behind; past that it skips the
/// oldest (and is told how many) rather than slowing any request.
const EVENT_BUFFER: usize = 4096;

/// How a unit of work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and succeeded.
    Ok,
    /// A quota or rate limit refused it before anything ran: recorded, free.
    Refused(ErrorCode),
    /// It ran, or was tried, and failed with this error code.
    Failed(ErrorCode),
}

impl Outcome {
    /// The error code, or `None` for success.
    pub fn error_code(self) -> Option<ErrorCode> {
        match self {
            Self::Ok => None,
            Self::Refused(code) | Self::Failed(code) => Some(code),
        }
    }

    /// The outcome as the ledger stores it: `ok` or the error code.
    pub fn as_str(self) -> &'static str {
        self.error_code().map_or("ok", ErrorCode::as_str)
    }
}

/// Work that could not be settled, and so must not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The usage record could not be written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The tenant's plan could not be read.
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
}

/// One finished call, as subscribers see it.
#[derive(Debug, Clone)]
pub struct CallEvent {
    /// The tenant that owns the function.
    pub tenant: Arc<str>,
    /// The function's name.
    pub function: Arc<str>,
    /// The function's version.
    pub version: i64,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time from admission to the end of the call.
    pub latency: Duration,
    /// Guest CPU time.
    pub cpu: Duration,
    /// wasi-nn compute time on CPU and on GPU, in microseconds.
    pub nn_cpu_us: u64,
    /// wasi-nn compute time on GPU, in microseconds.
    pub nn_gpu_us: u64,
    /// What it cost, in micro-units of the plan's currency.
    pub cost_micros: i64,
}

/// The work being settled: who did what, when, and how much data moved.
pub struct Work<'a> {
    /// The request id (or job and trial id); one ledger record per id.
    pub id: &'a str,
    /// The tenant billed.
    pub tenant: &'a str,
    /// The function run.
    pub function: &'a str,
    /// Its version.
    pub version: i64,
    /// When the work started, in Unix milliseconds.
    pub start_ms: i64,
    /// When the work started, for its wall time.
    pub started: Instant,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// The function's metric series.
    pub metrics: &'a FunctionMetrics,
    /// The version's statistics, if the work is a call.
    pub stats: Option<&'a Series>,
}

/// Settles metered work: the ledger (when metering is on), the tenants'
/// budgets, the metrics and the call events.
pub struct Settler {
    ledger: Option<Ledger>,
    tenancy: Arc<Tenancy>,
    events: broadcast::Sender<CallEvent>,
}

impl Settler {
    /// A settler writing to `ledger`, or metering nothing when it is `None`.
    pub fn new(ledger: Option<Ledger>, tenancy: Arc<Tenancy>) -> Self {
        Self { ledger, tenancy, events: broadcast::channel(EVENT_BUFFER).0 }
    }

    /// Call events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CallEvent> {
        self.events.subscribe()
    }

    /// The ledger, if metering is on.
    pub fn ledger(&self) -> Option<&Ledger> {
        self.ledger.as_ref()
    }

    /// Records `work`, which used `used` and ended with `outcome`. Returns
    /// its cost once the usage record is in the ledger: an error means the
    /// work must not be delivered, since it could not be billed.
    pub async fn settle(&self, work: Work<'_>, used: &Measurement, outcome: Outcome) -> Result<i64, SettleError> {
        let latency = work.started.elapsed();
        work.metrics.record(work.started, outcome.error_code().map(ErrorCode::as_str));
        let mut cost_micros = 0;
        if let Some(ledger) = &self.ledger {
            let mut record = usage_record(&work, latency, used, outcome);
            if !matches!(outcome, Outcome::Refused(_)) {
                record.cost_micros = self.tenancy.plan(work.tenant).await?.cost(&record);
            }
            cost_micros = record.cost_micros;
            ledger.record(record).await?;
            self.tenancy.charge(work.tenant, cost_micros).await;
            work.metrics.record_cost(cost_micros);
        }
        if let Some(stats) = work.stats {
            stats.record(&Sample {
                error: outcome.error_code(),
                latency,
                cpu: used.cpu,
                nn_cpu_us: used.nn_cpu_us,
                nn_gpu_us: used.nn_gpu_us,
                cost_micros,
            });
        }
        if self.events.receiver_count() > 0 {
            // Nobody listening is the usual case until the monitor lands; a
            // send then would only build an event to drop it.
            drop(self.events.send(CallEvent {
                tenant: Arc::from(work.tenant),
                function: Arc::from(work.function),
                version: work.version,
                outcome,
                latency,
                cpu: used.cpu,
                nn_cpu_us: used.nn_cpu_us,
                nn_gpu_us: used.nn_gpu_us,
                cost_micros,
            }));
        }
        Ok(cost_micros)
    }
}

fn usage_record(work: &Work<'_>, latency: Duration, used: &Measurement, outcome: Outcome) -> UsageRecord {
    let int = |value: u128| i64::try_from(value).unwrap_or(i64::MAX);
    UsageRecord {
        request_id: work.id.to_owned(),
        tenant: work.tenant.to_owned(),
        function: work.function.to_owned(),
        version: work.version,
        start_ms: work.start_ms,
        wall_us: int(latency.as_micros()),
        cpu_us: int(used.cpu.as_micros()),
        peak_memory_bytes: int(used.peak_memory_bytes as u128),
        memory_byte_ms: int(used.memory_byte_ms),
        nn_cpu_us: int(used.nn_cpu_us.into()),
        nn_gpu_us: int(used.nn_gpu_us.into()),
        bytes_in: int(work.bytes_in.into()),
        bytes_out: int(work.bytes_out.into()),
        outcome: outcome.as_str().to_owned(),
        cost_micros: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::ledger::LedgerSettings;
    use crate::ledger::pricing::Plan;
    use crate::tenancy::TenancyConfig;

    /// A settler over a fresh SQLite database, metering on or off.
    async fn settler(metering: bool) -> anyhow::Result<(Settler, Db, std::path::PathBuf)> {
        let dir = std::env::temp_dir().join(format!("muon-settle-{}-{}", std::process::id(), crate::clock::now_ms()));
        std::fs::create_dir_all(&dir)?;
        let db = Db::open_sqlite(&dir).await?;
        let ledger = if metering { Some(Ledger::start(db.clone(), LedgerSettings::new(&dir)).await?) } else { None };
        let mut config = TenancyConfig::default();
        config.plans.insert("default".to_owned(), Plan { per_request: 7, ..Plan::default() });
        Ok((Settler::new(ledger, Arc::new(Tenancy::new(db.clone(), config))), db, dir))
    }

    fn work<'a>(id: &'a str, metrics: &'a FunctionMetrics) -> Work<'a> {
        Work {
            id,
            tenant: "default",
            function: "hello",
            version: 3,
            start_ms: crate::clock::now_ms(),
            started: Instant::now(),
            bytes_in: 10,
            bytes_out: 20,
            metrics,
            stats: None,
        }
    }

    #[tokio::test]
    async fn settled_work_is_recorded_and_published() -> anyhow::Result<()> {
        let (settler, db, dir) = settler(true).await?;
        let mut events = settler.subscribe();
        let metrics = FunctionMetrics::new("default/hello", "default");
        let used = Measurement { cpu: Duration::from_micros(1500), ..Measurement::default() };
        settler.settle(work("r-1", &metrics), &used, Outcome::Ok).await?;
        let refused = Outcome::Refused(ErrorCode::RateLimited);
        settler.settle(work("r-2", &metrics), &used, refused).await?;

        let ran = events.recv().await?;
        assert_eq!((&*ran.tenant, &*ran.function, ran.version, ran.outcome), ("default", "hello", 3, Outcome::Ok));
        assert_eq!(ran.cpu, Duration::from_micros(1500));
        assert_eq!(ran.cost_micros, 7, "the default plan charges per request");
        let free = events.recv().await?;
        assert_eq!((free.outcome, free.cost_micros), (Outcome::Refused(ErrorCode::RateLimited), 0));

        if let Some(ledger) = settler.ledger() {
            ledger.flush().await?;
        }
        let records = db.usage_records("default", "", 10).await?;
        let outcomes: Vec<(&str, &str, i64)> =
            records.iter().map(|r| (r.request_id.as_str(), r.outcome.as_str(), r.cost_micros)).collect();
        assert_eq!(outcomes, [("r-1", "ok", ran.cost_micros), ("r-2", "rate_limited", 0)]);
        db.close().await;
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[tokio::test]
    async fn a_subscriber_that_never_reads_slows_nothing() -> anyhow::Result<()> {
        let (settler, db, dir) = settler(false).await?;
        let mut stalled = settler.subscribe();
        let metrics = FunctionMetrics::new("default/hello", "default");
        let settled = 3 * EVENT_BUFFER;
        let all = async {
            for i in 0..settled {
                settler.settle(work(&i.to_string(), &metrics), &Measurement::default(), Outcome::Ok).await?;
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(Duration::from_secs(10), all).await??;
        // The subscriber lost the oldest events, and is told how many.
        let skipped = stalled.recv().await;
        assert!(
            matches!(skipped, Err(broadcast::error::RecvError::Lagged(n)) if n as usize == settled - EVENT_BUFFER),
            "{skipped:?}"
        );
        db.close().await;
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }
}
