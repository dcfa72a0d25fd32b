//! The mover (`ledger_sync = "interval"`): puts the journal's records into
//! the database, in one synced transaction per interval.
//!
//! Every `ledger_sync_interval_ms`, or as soon as [`MAX_BATCH`] records wait,
//! or when a flush asks: take the records appended since the last time and
//! turn the live file into a segment ([`Journal::take`]), sync the segment to
//! disk, read its records back (from the page cache), write them in one
//! transaction that is synced (SQLite `synchronous=FULL`, PostgreSQL
//! `synchronous_commit = on`), and delete the segment. A record is written
//! twice at worst (a crash between the commit and the delete), and the
//! request id, the primary key, keeps the second out.
//!
//! If the database fails, the segments stay, and their records are read and
//! written again with the next batch; the journal meanwhile refuses new
//! records once the oldest waiting one is older than the interval and
//! [`OUTAGE_GRACE`], and takes them again once the database does.
//!
//! [`MAX_BATCH`]: super::journal::MAX_BATCH

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::journal::{Journal, Progress, Taken, load, sync_dir};
use super::sqlite::SqliteWriter;
use super::{LedgerError, record_batch};
use crate::db::{Db, UsageRecord, UsageWriter};

/// How much longer than its interval a record may wait for the database
/// before new work is refused (`503 ledger_unavailable`). The records are
/// safe in the journal meanwhile, but work served while the database is down
/// is billed only if this node comes back, so the window stays short; long
/// enough, though, to ride out a slow disk sync, a busy SQLite writer (a
/// deploy: up to 5 s of busy timeout) or a PostgreSQL failover without failing
/// requests.
pub(super) const OUTAGE_GRACE: Duration = Duration::from_secs(5);

/// How long a flush waits for the database to take what was appended.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL write that takes longer is abandoned and tried again.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where records go: the database, in synced transactions.
pub(super) enum Sink {
    /// SQLite's own writer, run on a blocking thread; `None` while it runs there.
    Sqlite(PathBuf, Option<SqliteWriter>),
    /// PostgreSQL, on a connection of the ledger's own.
    Postgres(UsageWriter),
}

impl Sink {
    /// A sink into `db`.
    pub(super) fn new(db: &Db) -> Self {
        match db.sqlite_path() {
            Some(path) => Self::Sqlite(path.to_owned(), None),
            None => Self::Postgres(db.usage_writer()),
        }
    }

    /// Writes `records` in one synced transaction.
    pub(super) async fn write(&mut self, records: Vec<UsageRecord>) -> anyhow::Result<()> {
        match self {
            Self::Postgres(writer) => match tokio::time::timeout(WRITE_TIMEOUT, writer.insert(&records)).await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!("the database did not answer within {WRITE_TIMEOUT:?}")),
            },
            Self::Sqlite(path, slot) => {
                let (path, writer) = (path.clone(), slot.take());
                let written = tokio::task::spawn_blocking(move || {
                    let mut writer = match writer {
                        Some(writer) => writer,
                        None => SqliteWriter::open(&path)?,
                    };
                    writer.write(&records)?;
                    anyhow::Ok(writer)
                })
                .await;
                // A writer that failed is opened afresh next time.
                *slot = Some(written??);
                Ok(())
            }
        }
    }
}

/// Moves the journal's records into `sink` until the journal is dropped.
pub(super) async fn run(journal: Weak<Journal>, wake: Arc<Notify>, mut sink: Sink, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut mover = Mover { segments: Vec::new(), upto: 0, failing: false };
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = wake.notified() => {}
        }
        let Some(journal) = journal.upgrade() else { return };
        mover.step(&journal, &mut sink).await;
        metrics::gauge!("muon_ledger_backlog").set(journal.backlog() as f64);
        metrics::gauge!("muon_ledger_sync_failing").set(f64::from(u8::from(mover.failing)));
    }
}

/// What the mover took and has not yet written.
struct Mover {
    /// Synced, and not yet in the database.
    segments: Vec<PathBuf>,
    /// The sequence number of the last record taken.
    upto: u64,
    /// Logged when moves start failing and when they work again, not at every tick.
    failing: bool,
}

impl Mover {
    async fn step(&mut self, journal: &Journal, sink: &mut Sink) {
        let started = Instant::now();
        match journal.take() {
            Ok(Some(taken)) => self.hold(journal, taken).await,
            Ok(None) => {}
            Err(err) => self.failed(journal, &err),
        }
        if self.segments.is_empty() {
            return;
        }
        let segments = self.segments.clone();
        let result = match tokio::task::spawn_blocking(move || load(&segments)).await {
            Ok(Ok(records)) => {
                let (count, written) = (records.len(), Instant::now());
                let result = sink.write(records).await;
                record_batch(count, written);
                result
            }
            Ok(Err(err)) => Err(err),
            Err(err) => Err(anyhow::anyhow!("the ledger's reader thread failed: {err}")),
        };
        if let Err(err) = result {
            self.failed(journal, &err);
            return;
        }
        for segment in self.segments.drain(..) {
            if let Err(err) = std::fs::remove_file(&segment) {
                // Read again at the next start; the request ids keep it from billing twice.
                tracing::warn!(segment = %segment.display(), error = %err, "cannot delete a moved journal segment");
            }
        }
        metrics::counter!("muon_ledger_syncs_total").increment(1);
        metrics::histogram!("muon_ledger_sync_seconds").record(started.elapsed().as_secs_f64());
        journal.moved();
        // Last: a flush that returns sees the move whole, its metrics included.
        journal.progress.send_modify(|progress| {
            *progress = Progress { moved: self.upto, tried: self.upto, error: None };
        });
        if self.failing {
            self.failing = false;
            tracing::info!("the usage ledger reaches its database again");
        }
    }

    /// Keeps `taken` until it is written, synced to disk meanwhile: a power
    /// loss then costs at most the records of one interval, whatever the
    /// database does.
    async fn hold(&mut self, journal: &Journal, taken: Taken) {
        let Taken { segment, file, upto } = taken;
        let dir = journal.dir().to_owned();
        let synced = tokio::task::spawn_blocking(move || {
            file.sync_data()?;
            sync_dir(&dir)
        })
        .await;
        match synced {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(error = format!("{err:#}"), "cannot sync the ledger journal to disk"),
            Err(err) => tracing::error!(error = %err, "cannot sync the ledger journal to disk"),
        }
        self.segments.push(segment);
        self.upto = upto;
    }

    fn failed(&mut self, journal: &Journal, err: &anyhow::Error) {
        let message: Arc<str> = Arc::from(format!("{err:#}"));
        if !self.failing {
            self.failing = true;
            tracing::error!(
                error = %message,
                waiting = journal.backlog(),
                "cannot move usage records into the database; they wait in the journal, retrying"
            );
        }
        let upto = self.upto;
        journal.progress.send_modify(|progress| {
            progress.tried = progress.tried.max(upto);
            progress.error = Some(Arc::clone(&message));
        });
    }
}

/// Returns once every record appended before the call is in the database,
/// or fails if the database does not take them.
pub(super) async fn flush(journal: &Journal) -> Result<(), LedgerError> {
    let target = journal.appended()?;
    let mut progress = journal.progress.subscribe();
    if progress.borrow().moved >= target {
        return Ok(());
    }
    journal.wake.notify_one();
    let done = |p: &Progress| p.moved >= target || (p.tried >= target && p.error.is_some());
    match tokio::time::timeout(FLUSH_TIMEOUT, progress.wait_for(done)).await {
        Ok(Ok(progress)) => match &progress.error {
            Some(error) if progress.moved < target => {
                Err(LedgerError::Unavailable(format!("cannot write the usage records to the database: {error}")))
            }
            _ => Ok(()),
        },
        Ok(Err(_)) => Err(LedgerError::Unavailable("the ledger's mover stopped".to_owned())),
        Err(_) => Err(LedgerError::Unavailable(format!(
            "the database did not take the usage records within {FLUSH_TIMEOUT:?}"
        ))),
    }
}
