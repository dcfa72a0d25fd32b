//! The SQLite ledger writer: one connection, one prepared statement, one
//! transaction per batch (and one sync, when always syncing).
//!
//! sqlx's generic path costs about 45 µs a row here (a statement per batch
//! size, per-parameter conversions, a thread hop per call); this one costs a
//! few microseconds, which is what keeps metering cheap. PostgreSQL keeps
//! using sqlx.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, TransactionBehavior, params};

use crate::db::UsageRecord;

const INSERT: &str = "INSERT INTO usage_records (request_id, tenant, function, version, start_ms, wall_us, \
     cpu_us, peak_memory_bytes, memory_byte_ms, nn_cpu_us, nn_gpu_us, bytes_in, bytes_out, outcome, cost_micros)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
     ON CONFLICT (request_id) DO NOTHING";

/// How long a write waits for another connection's write to end.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection dedicated to writing usage records.
pub struct SqliteWriter {
    connection: Connection,
}

impl SqliteWriter {
    /// Opens the database file the catalog already migrated.
    ///
    /// With `always_sync`, `synchronous=FULL`: the WAL is synced at every
    /// commit, so a committed batch survives a power loss. Without,
    /// `synchronous=NORMAL`: a commit is written to the WAL (a crash of muon
    /// loses nothing) and [`WalSync`] syncs the WAL on its interval, and
    /// checkpoints it too: a checkpoint syncs twice, which would stall every
    /// request waiting on this writer.
    pub fn open(path: &Path, always_sync: bool) -> rusqlite::Result<Self> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        if always_sync {
            connection.pragma_update(None, "synchronous", "FULL")?;
        } else {
            connection.pragma_update(None, "synchronous", "NORMAL")?;
            connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        }
        Ok(Self { connection })
    }

    /// Writes a batch unless another connection holds the write lock, which
    /// it does not wait for: `Ok(false)` then, and nothing is written.
    pub fn try_write(&mut self, records: &[UsageRecord]) -> rusqlite::Result<bool> {
        self.connection.busy_timeout(std::time::Duration::ZERO)?;
        let written = self.write(records);
        self.connection.busy_timeout(BUSY_TIMEOUT)?;
        match written {
            Ok(()) => Ok(true),
            Err(rusqlite::Error::SqliteFailure(err, _)) if err.code == ErrorCode::DatabaseBusy => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Writes a batch in one transaction, waiting for another connection's
    /// write (a deploy, say) to end first.
    pub fn write(&mut self, records: &[UsageRecord]) -> rusqlite::Result<()> {
        // IMMEDIATE: the write lock is taken at BEGIN, so a busy database is
        // found before anything is written.
        let transaction = self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = transaction.prepare_cached(INSERT)?;
            for r in records {
                insert.execute(params![
                    r.request_id,
                    r.tenant,
                    r.function,
                    r.version,
                    r.start_ms,
                    r.wall_us,
                    r.cpu_us,
                    r.peak_memory_bytes,
                    r.memory_byte_ms,
                    r.nn_cpu_us,
                    r.nn_gpu_us,
                    r.bytes_in,
                    r.bytes_out,
                    r.outcome,
                    r.cost_micros,
                ])?;
            }
        }
        transaction.commit()
    }
}

/// A WAL this large is checkpointed into the database file at the next sync
/// (SQLite's own automatic checkpoint comes at 1000 pages, about as large).
const CHECKPOINT_BYTES: u64 = 4 << 20;

/// Syncs the ledger's WAL to disk (`ledger_sync = "interval"`), and
/// checkpoints it once it has grown, in place of the writer.
pub struct WalSync {
    database: PathBuf,
    wal: PathBuf,
    /// For checkpoints; opened on the first one.
    connection: Option<Connection>,
    /// The `-wal` file synced last, by inode: a new one needs its directory synced too.
    synced_inode: Option<u64>,
}

impl WalSync {
    /// Syncs the WAL of the database at `path`.
    pub fn new(path: &Path) -> Self {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Self { database: path.to_owned(), wal: PathBuf::from(wal), connection: None, synced_inode: None }
    }

    /// fdatasyncs the `-wal` file: every frame written to it before is then
    /// durable (SQLite's checksums drop a torn tail at recovery). Its
    /// directory is synced too when the file is new (SQLite made it since the
    /// last sync), so that its name survives a power loss. No WAL: everything
    /// is checkpointed into the database file, which SQLite syncs.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        let file = match std::fs::File::open(&self.wal) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err.into()),
        };
        file.sync_data()?;
        let metadata = file.metadata()?;
        if self.synced_inode != Some(metadata.ino())
            && let Some(dir) = self.wal.parent()
        {
            std::fs::File::open(dir)?.sync_all()?;
        }
        self.synced_inode = Some(metadata.ino());
        if metadata.len() >= CHECKPOINT_BYTES {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Copies the WAL into the database file (syncing both), without waiting
    /// for readers or blocking the writer; the writer then starts the WAL over.
    fn checkpoint(&mut self) -> rusqlite::Result<()> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => self.connection.insert(Connection::open(&self.database)?),
        };
        connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(id: usize) -> UsageRecord {
        UsageRecord {
            request_id: format!("r{id:09}"),
            tenant: "default".to_owned(),
            function: "hello".to_owned(),
            version: 1,
            start_ms: 1_700_000_000_000,
            wall_us: 10,
            cpu_us: 5,
            peak_memory_bytes: 65536,
            memory_byte_ms: 1,
            nn_cpu_us: 0,
            nn_gpu_us: 0,
            bytes_in: 0,
            bytes_out: 14,
            outcome: "ok".to_owned(),
            cost_micros: 100,
        }
    }

    /// The writer leaves checkpoints to the sync (none on the requests' path),
    /// and the sync does checkpoint a grown WAL, so it cannot grow forever.
    #[tokio::test]
    async fn the_interval_sync_checkpoints_in_place_of_the_writer() -> anyhow::Result<()> {
        let db = TempDb::new("wal-sync").await?;
        let (mut writer, mut sync) = (SqliteWriter::open(&db.0, false)?, WalSync::new(&db.0));
        let wal = sync.wal.clone();
        let wal_len = || std::fs::metadata(&wal).map(|m| m.len());
        let mut next = 0;
        // Past SQLite's automatic checkpoint (1000 pages), which would have started the WAL over.
        while wal_len()? < CHECKPOINT_BYTES + (1 << 20) && next < 1_000_000 {
            writer.write(&(next..next + 20).map(record).collect::<Vec<_>>())?;
            next += 20;
        }
        let grown = wal_len()?;
        assert!(grown >= CHECKPOINT_BYTES + (1 << 20), "the WAL stopped growing at {grown} bytes");
        sync.sync()?;
        writer.write(&[record(next)])?;
        assert_eq!(wal_len()?, grown, "after the checkpoint the writer starts the WAL over instead of growing it");
        let count: i64 = writer.connection.query_row("SELECT COUNT(*) FROM usage_records", [], |row| row.get(0))?;
        assert_eq!(count, i64::try_from(next + 1)?);
        db.1.close().await;
        Ok(())
    }

    /// A temporary data dir with a migrated SQLite database; removed on drop.
    pub(crate) struct TempDb(pub PathBuf, pub crate::db::Db);

    impl TempDb {
        pub(crate) async fn new(name: &str) -> anyhow::Result<Self> {
            let dir = std::env::temp_dir().join(format!("muon-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let db = crate::db::Db::open_sqlite(&dir).await?;
            Ok(Self(dir.join("muon.db"), db))
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                drop(std::fs::remove_dir_all(dir));
            }
        }
    }

    #[tokio::test]
    async fn interval_commits_without_a_sync_and_always_with_one() -> anyhow::Result<()> {
        let db = TempDb::new("sync-modes").await?;
        let pragma = |writer: &SqliteWriter, name: &str| -> rusqlite::Result<i64> {
            writer.connection.pragma_query_value(None, name, |row| row.get(0))
        };
        let interval = SqliteWriter::open(&db.0, false)?;
        assert_eq!((pragma(&interval, "synchronous")?, pragma(&interval, "wal_autocheckpoint")?), (1, 0));
        let always = SqliteWriter::open(&db.0, true)?;
        assert_eq!((pragma(&always, "synchronous")?, pragma(&always, "wal_autocheckpoint")?), (2, 1000));
        db.1.close().await;
        Ok(())
    }

    #[tokio::test]
    async fn try_write_gives_way_to_another_writer() -> anyhow::Result<()> {
        let db = TempDb::new("try-write").await?;
        let mut writer = SqliteWriter::open(&db.0, false)?;
        let other = Connection::open(&db.0)?;
        other.execute_batch("BEGIN IMMEDIATE")?;
        assert!(!writer.try_write(&[record(1)])?, "the other connection holds the write lock");
        other.execute_batch("COMMIT")?;
        assert!(writer.try_write(&[record(2)])?);
        let ids: Vec<String> = other
            .prepare("SELECT request_id FROM usage_records")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        assert_eq!(ids, [record(2).request_id], "the refused batch wrote nothing");
        db.1.close().await;
        Ok(())
    }
}
