//! The billing ledger: every request's usage record is durable before its
//! response is sent.
//!
//! With `ledger_sync = "interval"` (the default), durable means in muon's
//! journal (see `journal.rs`): one append to a file, no database transaction,
//! so a crash or `kill -9` of muon loses nothing. The mover (see `mover.rs`)
//! syncs the journal to disk every `ledger_sync_interval_ms`, so a power loss
//! or a kernel crash can lose at most that window, and puts its records into
//! the database in one synced transaction a second (sooner for a flush, which
//! every reader of the ledger asks for first). A start first moves whatever a
//! previous run left in the journal.
//!
//! With `"always"`, durable means synced into the database. Group commit:
//! many concurrent requests share one transaction and one sync. On SQLite the
//! requests themselves take turns as the writer (see `SqliteGroup`); on
//! PostgreSQL they hand records to a writer task.
//!
//! Either way, if a record cannot be made durable (or, journaled, the oldest
//! record not yet in the database is too old: see `mover::OUTAGE_GRACE`),
//! the request fails with `503` instead of running unbilled, and a unique
//! request id keeps a record from being written twice.

mod journal;
mod mover;
pub mod pricing;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};

use crate::db::{Db, UsageRecord, UsageWriter};
use journal::Journal;
use mover::Sink;

/// The ledger cannot take a record; the work must not be delivered unbilled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// The write failed, timed out or found the queue full, or the database
    /// has been unreachable for too long.
    #[error("the usage ledger is unavailable; the request was not served: {0}")]
    Unavailable(String),
}

/// When usage records reach the disk (`ledger_sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LedgerSync {
    /// In muon's journal before the response leaves; synced to disk at least
    /// every `ledger_sync_interval_ms` (a power loss can lose that window) and
    /// moved into the database once a second.
    #[default]
    Interval,
    /// Synced into the database before the response leaves.
    Always,
}

/// The ledger's settings.
#[derive(Debug, Clone)]
pub struct LedgerSettings {
    /// When records reach the disk.
    pub sync: LedgerSync,
    /// With [`LedgerSync::Interval`], the longest a record waits to be moved
    /// into the database and synced.
    pub sync_interval: Duration,
    /// The journal's directory (`DATA_DIR/ledger`), of this process alone.
    pub journal_dir: PathBuf,
}

impl LedgerSettings {
    /// The defaults, journaling under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            sync: LedgerSync::Interval,
            sync_interval: Duration::from_millis(50),
            journal_dir: journal_dir(data_dir),
        }
    }
}

/// The journal's directory under a data dir.
pub fn journal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("ledger")
}

/// Records that may wait for the writer before requests are refused (`always`).
const QUEUE: usize = 65_536;
/// Records written per transaction at most (`always`, PostgreSQL).
const MAX_BATCH: usize = 2048;
/// Records per transaction when a start moves what the journal holds.
const REPLAY_BATCH: usize = 16_384;
/// A journaled record waiting this long past its move (`mover::move_every`) means
/// the writer is behind (`/readyz` says so), well before requests are refused
/// at `mover::OUTAGE_GRACE`.
const BEHIND_AFTER: Duration = Duration::from_secs(1);

/// How long a request waits for its record to be written (`always`).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

type Ack = oneshot::Sender<Result<(), String>>;
/// A record to write, or `None`: a barrier answered once everything before it is written.
type Entry = (Option<UsageRecord>, Ack);

/// How far the ledger's writer is behind the requests it records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// Records not yet in the database (journaled or queued).
    pub waiting: usize,
    /// How long the oldest of them has waited, where the writer knows.
    pub oldest: Option<Duration>,
    /// Whether that is more than normal: the database is slow or unreachable.
    pub behind: bool,
}

/// Handle to the ledger.
#[derive(Clone)]
pub struct Ledger {
    writer: Writer,
    /// The longest a journaled record should wait in normal operation.
    behind_after: Duration,
    /// The journal directory's lock, held while any handle lives.
    _lock: Arc<std::fs::File>,
}

#[derive(Clone)]
enum Writer {
    /// `interval`: the journal, emptied into the database by the mover.
    Journal(Arc<Journal>),
    /// `always`: a writer task fed by a channel (PostgreSQL).
    Task(mpsc::Sender<Entry>),
    /// `always`: leader/follower group commit on the requests' own threads (SQLite).
    Group(Arc<SqliteGroup>),
}

impl Ledger {
    /// Moves what a previous run left in the journal into the database, then
    /// starts the writer: the journal and its mover, or with `always` the
    /// group commit (a dedicated thread for SQLite, a task for PostgreSQL).
    /// The writer ends once every handle is dropped.
    pub async fn start(db: Db, settings: LedgerSettings) -> anyhow::Result<Self> {
        describe_metrics();
        let lock = Arc::new(recover(&db, &settings.journal_dir).await?);
        let writer = match (settings.sync, db.sqlite_path()) {
            (LedgerSync::Interval, _) => {
                let max_age = mover::move_every(settings.sync_interval) + mover::OUTAGE_GRACE;
                let journal = Arc::new(Journal::create(&settings.journal_dir, max_age)?);
                let (weak, wake) = (Arc::downgrade(&journal), Arc::clone(&journal.wake));
                tokio::spawn(mover::run(weak, wake, Sink::new(&db), settings.sync_interval));
                Writer::Journal(journal)
            }
            (LedgerSync::Always, Some(path)) => Writer::Group(Arc::new(SqliteGroup {
                queue: std::sync::Mutex::new(Vec::new()),
                writer: tokio::sync::Mutex::new(SyncThread::start(sqlite::SqliteWriter::open(path)?)?),
            })),
            (LedgerSync::Always, None) => {
                let (sender, receiver) = mpsc::channel(QUEUE);
                tokio::spawn(write_loop(db.usage_writer(), receiver));
                Writer::Task(sender)
            }
        };
        let behind_after = mover::move_every(settings.sync_interval) + BEHIND_AFTER;
        Ok(Self { writer, behind_after, _lock: lock })
    }

    /// Writes `record`; returns once it is durable (see the module's doc).
    pub async fn record(&self, record: UsageRecord) -> Result<(), LedgerError> {
        match &self.writer {
            Writer::Journal(journal) => journal.append(&record),
            _ => self.send(Some(record)).await,
        }
    }

    /// How far the writer is behind: cheap (a lock or two), for `/readyz`.
    pub fn lag(&self) -> Lag {
        let (waiting, oldest) = match &self.writer {
            Writer::Journal(journal) => (journal.backlog(), journal.oldest_waiting().map(|at| at.elapsed())),
            Writer::Task(sender) => (sender.max_capacity() - sender.capacity(), None),
            Writer::Group(group) => (group.queue.lock().map_or(0, |queue| queue.len()), None),
        };
        let behind = oldest.map_or(waiting > QUEUE / 2, |age| age > self.behind_after);
        Lag { waiting, oldest, behind }
    }

    /// Returns once every record handed in before is in the database and
    /// synced to disk: read the ledger after this to see them.
    pub async fn flush(&self) -> Result<(), LedgerError> {
        match &self.writer {
            Writer::Journal(journal) => mover::flush(journal).await,
            _ => self.send(None).await,
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
            Writer::Journal(_) => return Err(LedgerError::Unavailable("the ledger journals its records".to_owned())),
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

/// Moves what a previous run left in the journal at `journal_dir` into the
/// database: for a start with metering off, which keeps no ledger.
pub async fn replay(db: &Db, journal_dir: &Path) -> anyhow::Result<()> {
    recover(db, journal_dir).await.map(drop)
}

/// Locks the journal directory, and moves every record its files hold into
/// the database (synced), then deletes them. Returns the lock.
async fn recover(db: &Db, dir: &Path) -> anyhow::Result<std::fs::File> {
    let lock = journal::lock_dir(dir)?;
    let leftovers = journal::replay(dir)?;
    if leftovers.files.is_empty() {
        return Ok(lock);
    }
    let (mut sink, mut rest) = (Sink::new(db), leftovers.records);
    let count = rest.len();
    while !rest.is_empty() {
        let chunk = rest.split_off(rest.len().saturating_sub(REPLAY_BATCH));
        sink.write(chunk)
            .await
            .context("cannot move the usage records left in the ledger journal into the database")?;
    }
    for file in &leftovers.files {
        std::fs::remove_file(file).with_context(|| format!("cannot delete {}", file.display()))?;
    }
    journal::sync_dir(dir)?;
    tracing::info!(
        records = count,
        files = leftovers.files.len(),
        "moved the ledger journal's records into the database"
    );
    Ok(lock)
}

fn describe_metrics() {
    metrics::describe_counter!(
        "muon_ledger_syncs_total",
        "Journal segments of usage records synced to disk (ledger_sync = interval): one per interval with records"
    );
    metrics::describe_histogram!("muon_ledger_sync_seconds", "Time to sync one journal segment to disk");
    metrics::describe_gauge!(
        "muon_ledger_sync_failing",
        "1 while the database refuses the journal's records (they wait in the journal; requests fail with 503 past a bound)"
    );
    metrics::describe_gauge!("muon_ledger_backlog", "Usage records in the journal not yet in the database");
    metrics::describe_histogram!("muon_ledger_batch_size", "Usage records per database transaction");
    metrics::describe_histogram!(
        "muon_ledger_write_seconds",
        "Time to write one batch of usage records to the database"
    );
}

/// SQLite group commit: a request queues its record and takes the writer
/// lock; whoever gets the lock first hands everything queued to the writer
/// thread as one transaction and answers all of it, and those behind find
/// their record already written. One transaction and one sync per batch, not
/// per record, and no tokio worker ever blocks in a sync.
struct SqliteGroup {
    queue: std::sync::Mutex<Vec<(UsageRecord, Ack)>>,
    writer: tokio::sync::Mutex<SyncThread>,
}

fn logged(err: &rusqlite::Error, records: usize) -> String {
    tracing::error!(error = %err, records, "cannot write usage records");
    err.to_string()
}

type Batch = (Vec<UsageRecord>, oneshot::Sender<Result<(), String>>);

/// The thread that owns the SQLite connection and runs each batch's
/// transaction and sync.
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
        let writer = self.writer.lock().await;
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

async fn write_loop(mut db: UsageWriter, mut receiver: mpsc::Receiver<Entry>) {
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
        for ack in acks {
            let _ = ack.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlite::tests::{TempDb, record};

    fn settings(db: &TempDb, sync: LedgerSync) -> LedgerSettings {
        LedgerSettings { sync, ..LedgerSettings::new(db.dir()) }
    }

    /// Journaled, a request never waits for the database: another
    /// connection's write lock delays the move, not the record (on a runtime
    /// with one worker, which a wait there would stall).
    #[tokio::test(flavor = "current_thread")]
    async fn a_journaled_record_never_waits_for_the_database() -> anyhow::Result<()> {
        let db = TempDb::new("held-lock").await?;
        let ledger = Ledger::start(db.1.clone(), settings(&db, LedgerSync::Interval)).await?;
        let other = rusqlite::Connection::open(&db.0)?;
        other.execute_batch("BEGIN IMMEDIATE")?;
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            other.execute_batch("COMMIT")
        });
        let started = std::time::Instant::now();
        ledger.record(record(1)).await?;
        assert!(started.elapsed() < Duration::from_millis(100), "the record waited for the database");
        ledger.flush().await?;
        assert!(started.elapsed() >= Duration::from_millis(250), "moved while the lock was held?");
        release.await??;
        assert_eq!(db.count()?, 1);
        Ok(())
    }

    /// The journal is synced every interval, but moved into the database only
    /// once a second: twenty transactions a second cost the mover about half
    /// of what a record costs it.
    #[tokio::test]
    async fn records_are_synced_every_interval_and_moved_once_a_second() -> anyhow::Result<()> {
        let db = TempDb::new("move-every").await?;
        let fast = LedgerSettings { sync_interval: Duration::from_millis(20), ..settings(&db, LedgerSync::Interval) };
        let ledger = Ledger::start(db.1.clone(), fast.clone()).await?;
        let started = std::time::Instant::now();
        ledger.record(record(1)).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let segments = std::fs::read_dir(&fast.journal_dir)?
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("segment-"))
            .count();
        assert_eq!(segments, 1, "taken from the live file and synced within the interval");
        assert_eq!(db.count()?, 0, "moved before its second was out");
        while db.count()? == 0 && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(db.count()?, 1, "not moved within 5 s");
        assert!(started.elapsed() >= mover::MOVE_EVERY - Duration::from_millis(100), "{:?}", started.elapsed());
        Ok(())
    }

    /// What one run journaled and never moved (a crash) is moved by the next
    /// start, once, whatever its mode; a record already moved is not doubled.
    #[tokio::test]
    async fn a_start_moves_what_the_journal_holds() -> anyhow::Result<()> {
        let db = TempDb::new("replay").await?;
        let slow = LedgerSettings { sync_interval: Duration::from_secs(3600), ..settings(&db, LedgerSync::Interval) };
        let ledger = Ledger::start(db.1.clone(), slow.clone()).await?;
        ledger.record(record(1)).await?;
        ledger.flush().await?;
        for id in 2..=5 {
            ledger.record(record(id)).await?;
        }
        let refused = Ledger::start(db.1.clone(), slow.clone()).await.err().map(|err| err.to_string());
        assert!(refused.unwrap_or_default().contains("another muon process"), "the journal is in use");
        drop(ledger);
        assert_eq!(db.count()?, 1, "records 2-5 are only in the journal");
        let always = Ledger::start(db.1.clone(), settings(&db, LedgerSync::Always)).await?;
        assert_eq!(db.count()?, 5);
        drop(always);
        replay(&db.1, &slow.journal_dir).await?;
        assert_eq!(db.count()?, 5);
        let left: Vec<_> =
            std::fs::read_dir(&slow.journal_dir)?.filter_map(Result::ok).map(|e| e.file_name()).collect();
        assert_eq!(left, [std::ffi::OsString::from("lock")], "the journal's files are gone once moved");
        Ok(())
    }
}
