//! The mover (`ledger_sync = "interval"`): syncs the journal to disk every
//! interval, and puts its records into the database in far fewer synced
//! transactions.
//!
//! Every `ledger_sync_interval_ms`, it takes the records appended since the
//! last time and turns the live file into a segment ([`Journal::take`]), and
//! syncs the segment to disk: from then on a power loss cannot lose them.
//! Every [`MOVE_EVERY`] (or every interval, if that is longer), as soon as
//! [`MOVE_BATCH`] records wait, or when a flush asks, it reads the segments'
//! records back (from the page cache), writes them in one transaction that is
//! synced (SQLite `synchronous=FULL`, PostgreSQL `synchronous_commit = on`),
//! and deletes the segments. A record is written twice at worst (a crash
//! between the commit and the delete), and the request id, the primary key,
//! keeps the second out.
//!
//! If the database fails, the segments stay, and their records are read and
//! written again with the next batch; the journal meanwhile refuses new
//! records once the oldest waiting one is older than [`move_every`] and
//! [`OUTAGE_GRACE`], and takes them again once the database does.
//!
//! [`MOVE_BATCH`]: super::journal::MOVE_BATCH

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

/// How often, at most, the records synced in the journal are moved into the
/// database. Each transaction rewrites the tail pages of the usage table's
/// B-trees and syncs, whatever its size: on SQLite that is about half of what
/// a record costs at 20 transactions a second (the interval's 50 ms) and a
/// tenth of it at one. Readers of the ledger flush first, so they never see
/// the delay.
pub(super) const MOVE_EVERY: Duration = Duration::from_secs(1);

/// How long journaled records may wait for the database in normal
/// operation, for syncs every `sync_interval`.
pub(super) fn move_every(sync_interval: Duration) -> Duration {
    sync_interval.max(MOVE_EVERY)
}

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

/// Syncs the journal every `sync_interval` and moves its records into
/// `sink`, until the journal is dropped.
pub(super) async fn run(journal: Weak<Journal>, wake: Arc<Notify>, mut sink: Sink, sync_interval: Duration) {
    let mut tick = tokio::time::interval(sync_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Due one tick early: a move never waits a whole extra interval.
    let hold_for = move_every(sync_interval).saturating_sub(sync_interval);
    let mut mover = Mover { segments: Vec::new(), held_since: None, upto: 0, failing: false };
    loop {
        let asked = tokio::select! {
            _ = tick.tick() => false,
            () = wake.notified() => true,
        };
        let Some(journal) = journal.upgrade() else { return };
        mover.sync(&journal).await;
        let due = mover.held_since.is_some_and(|since| since.elapsed() >= hold_for);
        if asked || due || mover.failing {
            mover.move_held(&journal, &mut sink).await;
        }
        metrics::gauge!("muon_ledger_backlog").set(journal.backlog() as f64);
        metrics::gauge!("muon_ledger_sync_failing").set(f64::from(u8::from(mover.failing)));
    }
}

/// What the mover took and has not yet written.
struct Mover {
    /// Synced, and not yet in the database.
    segments: Vec<PathBuf>,
    /// When the first of `segments` was taken.
    held_since: Option<Instant>,
    /// The sequence number of the last record taken.
    upto: u64,
    /// Logged when moves start failing and when they work again, not at every tick.
    failing: bool,
}

impl Mover {
    /// Takes what was appended since the last time, and syncs it to disk.
    async fn sync(&mut self, journal: &Journal) {
        match journal.take() {
            Ok(Some(taken)) => self.hold(journal, taken).await,
            Ok(None) => {}
            Err(err) => self.failed(journal, &err),
        }
    }

    /// Writes every held segment's records into the database, then deletes them.
    async fn move_held(&mut self, journal: &Journal, sink: &mut Sink) {
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
        self.held_since = None;
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
        let (dir, started) = (journal.dir().to_owned(), Instant::now());
        let synced = tokio::task::spawn_blocking(move || {
            file.sync_data()?;
            sync_dir(&dir)
        })
        .await;
        match synced {
            Ok(Ok(())) => {
                metrics::counter!("muon_ledger_syncs_total").increment(1);
                metrics::histogram!("muon_ledger_sync_seconds").record(started.elapsed().as_secs_f64());
            }
            Ok(Err(err)) => tracing::error!(error = format!("{err:#}"), "cannot sync the ledger journal to disk"),
            Err(err) => tracing::error!(error = %err, "cannot sync the ledger journal to disk"),
        }
        self.segments.push(segment);
        self.held_since.get_or_insert(started);
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
