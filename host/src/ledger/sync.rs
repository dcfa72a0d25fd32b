//! `ledger_sync = "interval"`: records are committed to the database's log
//! without a sync, and this syncs the log to disk at least every interval
//! while anything was committed.
//!
//! A commit without a sync is already safe from a crash of muon: SQLite has
//! written it to the `-wal` file (the kernel holds it), PostgreSQL to its WAL
//! buffers (the database server holds it). Only a power loss or a kernel
//! crash (on PostgreSQL, a crash of the database server too) before the next
//! sync can lose it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::sqlite::WalSync;
use crate::db::Db;

/// What the sync writes to disk.
pub(super) enum SyncTarget {
    /// SQLite's `-wal` file, committed to with `synchronous=NORMAL`.
    Wal(Arc<std::sync::Mutex<WalSync>>),
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
    /// `committed` as it was when the last sync started; held during a sync,
    /// so that one runs at a time (the loop's or a flush's).
    synced: tokio::sync::Mutex<u64>,
}

impl Syncer {
    /// A syncer for `target`, and the task syncing it every `every`, which
    /// ends once the syncer is dropped.
    pub(super) fn start(target: SyncTarget, every: Duration) -> Arc<Self> {
        let syncer = Arc::new(Self {
            target,
            committed: AtomicU64::new(0),
            newest: std::sync::Mutex::new(String::new()),
            synced: tokio::sync::Mutex::new(0),
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
        let mut synced = self.synced.lock().await;
        let committed = self.committed.load(Ordering::Acquire);
        if committed == *synced {
            return Ok(());
        }
        let started = std::time::Instant::now();
        match &self.target {
            SyncTarget::Wal(wal) => {
                let wal = Arc::clone(wal);
                tokio::task::spawn_blocking(move || {
                    wal.lock().map_err(|_| anyhow::anyhow!("the WAL sync is poisoned"))?.sync()
                })
                .await??;
            }
            SyncTarget::Postgres(db) => {
                let newest = self.newest.lock().map(|id| id.clone()).unwrap_or_default();
                db.sync_usage(&newest).await?;
            }
        }
        *synced = committed;
        metrics::counter!("muon_ledger_syncs_total").increment(1);
        metrics::histogram!("muon_ledger_sync_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }
}

async fn sync_loop(syncer: Weak<Syncer>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Logged when syncs start failing and when they work again, not at every tick.
    let mut failing = false;
    loop {
        tick.tick().await;
        let Some(syncer) = syncer.upgrade() else { return };
        match syncer.sync().await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("the usage ledger syncs to disk again");
            }
            Ok(()) => {}
            // Retried at the next tick; the records stay committed meanwhile.
            Err(err) if !failing => {
                failing = true;
                tracing::error!(error = format!("{err:#}"), "cannot sync the usage ledger to disk; retrying");
            }
            Err(_) => {}
        }
        metrics::gauge!("muon_ledger_sync_failing").set(f64::from(u8::from(failing)));
    }
}
