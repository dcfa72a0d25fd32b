//! The billing ledger: every request's usage record is committed before its
//! response is sent.
//!
//! Committed means in the database's log, synced to disk before the response
//! with `ledger_sync = "always"`, or at least every `ledger_sync_interval_ms`
//! with `"interval"` (see [`sync`]): either way a crash of muon loses nothing.
//!
//! Group commit: many concurrent requests share one transaction (and, when
//! always syncing, one sync). On SQLite the requests themselves take turns as
//! the writer (see [`SqliteGroup`]); on PostgreSQL they hand records to a
//! writer task. If the write fails, every waiting request fails with `503`
//! instead of running unbilled. A unique request id keeps a record from being
//! written twice.

pub mod pricing;
mod sqlite;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::db::{Db, UsageRecord, UsageWriter};
use sync::{SyncTarget, Syncer};

/// The ledger cannot take a record; the work must not be delivered unbilled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// The write failed, timed out or found the queue full.
    #[error("the usage ledger is unavailable; the request was not served: {0}")]
    Unavailable(String),
}

/// When usage records reach the disk (`ledger_sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LedgerSync {
    /// In the database's log before the response leaves, synced to disk at
    /// least every `ledger_sync_interval_ms`: a power loss can lose that window.
    #[default]
    Interval,
    /// Synced to disk before the response leaves.
    Always,
}

/// The ledger's settings.
#[derive(Debug, Clone, Copy)]
pub struct LedgerSettings {
    /// When records reach the disk.
    pub sync: LedgerSync,
    /// With [`LedgerSync::Interval`], the longest a committed record waits for a sync.
    pub sync_interval: Duration,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self { sync: LedgerSync::Interval, sync_interval: Duration::from_millis(50) }
    }
}

/// Records written per transaction at most.
const MAX_BATCH: usize = 2048;
/// Records that may wait for the writer before requests are refused.
const QUEUE: usize = 65_536;
/// How long a request waits for its record to be written.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

type Ack = oneshot::Sender<Result<(), String>>;
/// A record to write, or `None`: a barrier answered once everything before it is written.
type Entry = (Option<UsageRecord>, Ack);

/// Handle to the ledger writer.
#[derive(Clone)]
pub struct Ledger {
    writer: Writer,
    /// With `ledger_sync = "interval"`: syncs what the writer committed.
    syncer: Option<Arc<Syncer>>,
}

#[derive(Clone)]
enum Writer {
    /// A writer task fed by a channel (PostgreSQL).
    Task(mpsc::Sender<Entry>),
    /// Leader/follower group commit on the requests' own threads (SQLite).
    Group(Arc<SqliteGroup>),
}

impl Ledger {
    /// Starts the writer (and in interval mode the syncer); the writer ends
    /// once every handle is dropped and the queue is drained. SQLite gets a
    /// dedicated thread, PostgreSQL a task.
    pub fn start(db: Db, settings: LedgerSettings) -> anyhow::Result<Self> {
        let always = settings.sync == LedgerSync::Always;
        let syncer = (!always).then(|| {
            let target = match db.sqlite_path() {
                Some(path) => SyncTarget::Wal(Arc::new(std::sync::Mutex::new(sqlite::WalSync::new(path)))),
                None => SyncTarget::Postgres(db.clone()),
            };
            Syncer::start(target, settings.sync_interval)
        });
        let writer = match db.sqlite_path() {
            Some(path) => {
                let writer = sqlite::SqliteWriter::open(path, always)?;
                let sink = match &syncer {
                    Some(syncer) => SqliteSink::Inline(Arc::new(std::sync::Mutex::new(writer)), Arc::clone(syncer)),
                    None => SqliteSink::Thread(SyncThread::start(writer)?),
                };
                Writer::Group(Arc::new(SqliteGroup {
                    queue: std::sync::Mutex::new(Vec::new()),
                    writer: tokio::sync::Mutex::new(sink),
                }))
            }
            None => {
                let (sender, receiver) = mpsc::channel(QUEUE);
                tokio::spawn(write_loop(db.usage_writer(always), receiver, syncer.clone()));
                Writer::Task(sender)
            }
        };
        Ok(Self { writer, syncer })
    }

    /// Writes `record`; returns once it is committed.
    pub async fn record(&self, record: UsageRecord) -> Result<(), LedgerError> {
        self.send(Some(record)).await
    }

    /// Returns once every record handed in before is written and synced to disk.
    pub async fn flush(&self) -> Result<(), LedgerError> {
        self.send(None).await?;
        match &self.syncer {
            Some(syncer) => syncer.sync().await.map_err(|err| LedgerError::Unavailable(format!("{err:#}"))),
            None => Ok(()),
        }
    }

    async fn send(&self, entry: Option<UsageRecord>) -> Result<(), LedgerError> {
        let sender = match &self.writer {
            Writer::Group(group) => {
                return match tokio::time::timeout(WRITE_TIMEOUT, group.commit(entry)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(message)) => Err(LedgerError::Unavailable(message)),
                    Err(_) => Err(LedgerError::Unavailable("the write did not finish in time".to_owned())),
                };
            }
            Writer::Task(sender) => sender,
        };
        let (ack, done) = oneshot::channel();
        sender.try_send((entry, ack)).map_err(|_| LedgerError::Unavailable("the ledger queue is full".to_owned()))?;
        match tokio::time::timeout(WRITE_TIMEOUT, done).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(message))) => Err(LedgerError::Unavailable(message)),
            Ok(Err(_)) => Err(LedgerError::Unavailable("the ledger writer stopped".to_owned())),
            Err(_) => Err(LedgerError::Unavailable("the write did not finish in time".to_owned())),
        }
    }
}

/// SQLite group commit: a request queues its record and takes the writer
/// lock; whoever gets the lock first writes everything queued as one
/// transaction (see [`SqliteSink`]) and answers all of it, and those behind
/// find their record already written. One transaction per batch, not per
/// record, and no tokio worker ever blocks in a sync.
struct SqliteGroup {
    queue: std::sync::Mutex<Vec<(UsageRecord, Ack)>>,
    writer: tokio::sync::Mutex<SqliteSink>,
}

/// Where the group's leader hands its batch.
enum SqliteSink {
    /// Always syncing: to the writer thread, since a commit syncs.
    Thread(SyncThread),
    /// Syncing on an interval: written by the leader itself, on its own
    /// thread. A commit there only writes to the WAL (tens of microseconds,
    /// no sync, no checkpoint: see [`sqlite::SqliteWriter::open`]), less than
    /// handing it to a thread and waking the request again would cost. The
    /// mutex is never contended (the group's lock is held around it); it lets
    /// a blocking thread borrow the writer when it must wait.
    Inline(Arc<std::sync::Mutex<sqlite::SqliteWriter>>, Arc<Syncer>),
}

impl SqliteSink {
    async fn write(&mut self, records: Vec<UsageRecord>) -> Result<(), String> {
        let (writer, syncer) = match self {
            Self::Thread(thread) => return thread.write(records).await,
            Self::Inline(writer, syncer) => (writer, syncer),
        };
        let written = writer.lock().map_err(|_| POISONED.to_owned())?.try_write(&records);
        let records = match written {
            Ok(true) => records,
            // Another connection holds the write lock (a deploy, say): wait
            // for it on a blocking thread, never on a runtime worker.
            Ok(false) => {
                let writer = Arc::clone(writer);
                tokio::task::spawn_blocking(move || {
                    match writer.lock().map_err(|_| POISONED.to_owned())?.write(&records) {
                        Ok(()) => Ok(records),
                        Err(err) => Err(logged(&err, records.len())),
                    }
                })
                .await
                .map_err(|_| "the ledger writer stopped".to_owned())??
            }
            Err(err) => return Err(logged(&err, records.len())),
        };
        if let Some(last) = records.last() {
            syncer.committed(&last.request_id);
        }
        Ok(())
    }
}

const POISONED: &str = "the ledger writer is poisoned";

fn logged(err: &rusqlite::Error, records: usize) -> String {
    tracing::error!(error = %err, records, "cannot write usage records");
    err.to_string()
}

type Batch = (Vec<UsageRecord>, oneshot::Sender<Result<(), String>>);

/// The thread that owns the SQLite connection and runs each batch's
/// transaction (and, always syncing, its sync).
struct SyncThread {
    batches: std::sync::mpsc::Sender<Batch>,
}

impl SyncThread {
    fn start(mut writer: sqlite::SqliteWriter) -> anyhow::Result<Self> {
        let (batches, incoming) = std::sync::mpsc::channel::<Batch>();
        std::thread::Builder::new().name("muon-ledger".into()).spawn(move || {
            for (records, done) in incoming {
                drop(done.send(writer.write(&records).map_err(|err| logged(&err, records.len()))));
            }
        })?;
        Ok(Self { batches })
    }

    async fn write(&self, records: Vec<UsageRecord>) -> Result<(), String> {
        let (done, result) = oneshot::channel();
        self.batches.send((records, done)).map_err(|_| "the ledger writer stopped".to_owned())?;
        result.await.unwrap_or_else(|_| Err("the ledger writer stopped".to_owned()))
    }
}

impl SqliteGroup {
    /// Commits `record`, or with `None` whatever is queued (a flush).
    async fn commit(&self, record: Option<UsageRecord>) -> Result<(), String> {
        let (ack, mut done) = oneshot::channel();
        let flush = record.is_none();
        if let Some(record) = record {
            let mut queue = self.queue.lock().map_err(|_| "the ledger queue is poisoned".to_owned())?;
            if queue.len() >= QUEUE {
                return Err("the ledger queue is full".to_owned());
            }
            queue.push((record, ack));
        }
        let mut writer = self.writer.lock().await;
        if let Ok(result) = done.try_recv() {
            return result;
        }
        // Let the requests queued behind this one on its thread reach the
        // ledger first: each record that joins this batch is one sync fewer.
        tokio::task::yield_now().await;
        let batch = std::mem::take(&mut *self.queue.lock().map_err(|_| "the ledger queue is poisoned".to_owned())?);
        if batch.is_empty() {
            return Ok(());
        }
        let (records, acks): (Vec<UsageRecord>, Vec<Ack>) = batch.into_iter().unzip();
        let (count, started) = (records.len(), std::time::Instant::now());
        let result = writer.write(records).await;
        record_batch(count, started);
        for ack in acks {
            drop(ack.send(result.clone()));
        }
        drop(writer);
        if flush {
            return result;
        }
        done.try_recv().unwrap_or_else(|_| Err("the usage record was lost".to_owned()))
    }
}

fn record_batch(records: usize, started: std::time::Instant) {
    metrics::histogram!("muon_ledger_batch_size").record(records as f64);
    metrics::histogram!("muon_ledger_write_seconds").record(started.elapsed().as_secs_f64());
}

async fn write_loop(mut db: UsageWriter, mut receiver: mpsc::Receiver<Entry>, syncer: Option<Arc<Syncer>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (records, acks): (Vec<Option<UsageRecord>>, Vec<Ack>) = batch.drain(..).unzip();
        let records: Vec<UsageRecord> = records.into_iter().flatten().collect();
        if records.is_empty() {
            acks.into_iter().for_each(|ack| drop(ack.send(Ok(()))));
            continue;
        }
        let started = std::time::Instant::now();
        let result = db.insert(&records).await.map_err(|err| {
            tracing::error!(error = format!("{err:#}"), records = records.len(), "cannot write usage records");
            format!("{err:#}")
        });
        record_batch(records.len(), started);
        if let (Ok(()), Some(syncer), Some(last)) = (&result, &syncer, records.last()) {
            syncer.committed(&last.request_id);
        }
        for ack in acks {
            let _ = ack.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlite::tests::{TempDb, record};

    /// In interval mode the leader writes on its own thread, but never waits
    /// there for another connection's write lock: a runtime with one worker
    /// would then stall until the busy timeout and fail the write.
    #[tokio::test(flavor = "current_thread")]
    async fn a_held_write_lock_is_waited_for_off_the_runtime() -> anyhow::Result<()> {
        let db = TempDb::new("held-lock").await?;
        let ledger = Ledger::start(db.1.clone(), LedgerSettings::default())?;
        let other = rusqlite::Connection::open(&db.0)?;
        other.execute_batch("BEGIN IMMEDIATE")?;
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            other.execute_batch("COMMIT")
        });
        let started = std::time::Instant::now();
        ledger.record(record(1)).await?;
        assert!(started.elapsed() >= Duration::from_millis(250), "written while the lock was held?");
        release.await??;
        ledger.flush().await?;
        let count: i64 =
            rusqlite::Connection::open(&db.0)?.query_row("SELECT COUNT(*) FROM usage_records", [], |row| row.get(0))?;
        assert_eq!(count, 1);
        Ok(())
    }
}
