//! The SQLite ledger writer: one connection, one prepared statement, one
//! transaction per batch (and one sync, when always syncing).
//!
//! sqlx's generic path costs about 45 µs a row here (a statement per batch
//! size, per-parameter conversions, a thread hop per call); this one costs a
//! few microseconds, which is what keeps metering cheap. PostgreSQL keeps
//! using sqlx.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use crate::db::UsageRecord;

const INSERT: &str = "INSERT INTO usage_records (request_id, tenant, function, version, start_ms, wall_us, \
     cpu_us, peak_memory_bytes, memory_byte_ms, nn_cpu_us, nn_gpu_us, bytes_in, bytes_out, outcome, cost_micros)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
     ON CONFLICT (request_id) DO NOTHING";

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
    /// loses nothing) and the ledger's syncer syncs the WAL on its interval.
    pub fn open(path: &Path, always_sync: bool) -> rusqlite::Result<Self> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", if always_sync { "FULL" } else { "NORMAL" })?;
        Ok(Self { connection })
    }

    /// Writes a batch in one transaction.
    pub fn write(&mut self, records: &[UsageRecord]) -> rusqlite::Result<()> {
        let transaction = self.connection.transaction()?;
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

/// The WAL file of the database at `path` (SQLite names it so).
pub fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}
