//! `ledger_sync = "interval"`: records are committed to the database's log
//! without a sync, and this syncs the log to disk at least every interval
//! while anything was committed.
//!
//! A commit without a sync is already safe from a crash of muon: SQLite has
//! written it to the `-wal` file (the kernel holds it), PostgreSQL to its WAL
//! buffers (the server holds it). Only a power loss or a kernel crash, before
//! the next sync, can lose it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::db::Db;

/// What the sync writes to disk.
pub(super) enum SyncTarget {
    /// SQLite's `-wal` file, committed to with `synchronous=NORMAL`: it is
    /// fdatasynced (any frame in it when the sync starts is then durable;
    /// SQLite's checksums drop a torn tail, and it syncs the WAL itself
    /// before every checkpoint).
    Wal(PathBuf),
    /// PostgreSQL, committed to with `synchronous_commit = off`: a synced
    /// commit flushes the WAL up to it, the asynchronous commits before it
    /// included (see [`Db::sync_usage`]).
    Postgres(Db),
}

/// Syncs what the ledger writer committed without a sync.
pub(super) struct Syncer {
    target: SyncTarget,
    /// Batches committed so far; the writer bumps it after each commit.
    committed: AtomicU64,
    /// The newest request id committed (PostgreSQL's sync locks its row).
    newest: std::sync::Mutex<String>,
    /// One sync at a time (the loop's or a flush's).
    state: tokio::sync::Mutex<SyncState>,
}

#[derive(Default)]
struct SyncState {
    /// `committed` as it was when the last sync started.
    synced: u64,
    /// The `-wal` file synced last, by inode: a new one needs its directory synced too.
    wal_inode: Option<u64>,
}

impl Syncer {
    /// A syncer for `target`, and the task syncing it every `every`, which
    /// ends once the syncer is dropped.
    pub(super) fn start(target: SyncTarget, every: Duration) -> Arc<Self> {
        let syncer = Arc::new(Self {
            target,
            committed: AtomicU64::new(0),
            newest: std::sync::Mutex::new(String::new()),
            state: tokio::sync::Mutex::new(SyncState::default()),
        });
        tokio::spawn(sync_loop(Arc::downgrade(&syncer), every));
        syncer
    }

    /// Tells the syncer that a batch ending with `newest` is committed.
    pub(super) fn committed(&self, newest: &str) {
        if matches!(self.target, SyncTarget::Postgres(_))
            && let Ok(mut id) = self.newest.lock()
        {
            newest.clone_into(&mut id);
        }
        self.committed.fetch_add(1, Ordering::Release);
    }

    /// Syncs everything committed before this call, if anything is unsynced.
    pub(super) async fn sync(&self) -> anyhow::Result<()> {
        let mut state = self.state.lock().await;
        let committed = self.committed.load(Ordering::Acquire);
        if committed == state.synced {
            return Ok(());
        }
        let started = std::time::Instant::now();
        match &self.target {
            SyncTarget::Wal(path) => {
                let (path, known) = (path.clone(), state.wal_inode);
                state.wal_inode = tokio::task::spawn_blocking(move || sync_wal(&path, known)).await??;
            }
            SyncTarget::Postgres(db) => {
                let newest = self.newest.lock().map(|id| id.clone()).unwrap_or_default();
                db.sync_usage(&newest).await?;
            }
        }
        state.synced = committed;
        metrics::counter!("muon_ledger_syncs_total").increment(1);
        metrics::histogram!("muon_ledger_sync_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }
}

async fn sync_loop(syncer: Weak<Syncer>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(syncer) = syncer.upgrade() else { return };
        if let Err(err) = syncer.sync().await {
            // Retried at the next tick; records stay committed meanwhile.
            tracing::error!(error = format!("{err:#}"), "cannot sync the usage ledger to disk");
        }
    }
}

/// fdatasyncs SQLite's `-wal` file, and its directory when the file is not
/// the one synced last (SQLite made it since), so that its name survives a
/// power loss too. Returns the file's inode; `None` when there is no WAL
/// (everything is checkpointed into the database file, which SQLite syncs).
fn sync_wal(path: &Path, synced_inode: Option<u64>) -> std::io::Result<Option<u64>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    file.sync_data()?;
    let inode = file.metadata()?.ino();
    if synced_inode != Some(inode)
        && let Some(dir) = path.parent()
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(Some(inode))
}
