//! The SQLite ledger writer: one connection, one prepared statement, one
//! synced transaction per batch.
//!
//! sqlx's generic path costs about 45 µs a row here (a statement per batch
//! size, per-parameter conversions, a thread hop per call); this one costs a
//! few microseconds. PostgreSQL keeps using sqlx.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior, params};

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
    /// Opens the database file the catalog already migrated, with
    /// `synchronous=FULL`: the WAL is synced at every commit, so a written
    /// batch survives a power loss (and a journal segment may be deleted).
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        Ok(Self { connection })
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

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

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

    /// A temporary data dir with a migrated SQLite database; removed on drop.
    pub(crate) struct TempDb(pub PathBuf, pub crate::db::Db);

    impl TempDb {
        pub(crate) async fn new(name: &str) -> anyhow::Result<Self> {
            let dir = std::env::temp_dir().join(format!("muon-{name}-{}", std::process::id()));
            drop(std::fs::remove_dir_all(&dir));
            std::fs::create_dir_all(&dir)?;
            let db = crate::db::Db::open_sqlite(&dir).await?;
            Ok(Self(dir.join("muon.db"), db))
        }

        /// The data dir.
        pub(crate) fn dir(&self) -> &Path {
            self.0.parent().unwrap_or(Path::new("."))
        }

        /// Usage records in the database.
        pub(crate) fn count(&self) -> rusqlite::Result<i64> {
            Connection::open(&self.0)?.query_row("SELECT COUNT(*) FROM usage_records", [], |row| row.get(0))
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            drop(std::fs::remove_dir_all(self.dir()));
        }
    }

    #[tokio::test]
    async fn every_batch_is_synced_and_written_once() -> anyhow::Result<()> {
        let db = TempDb::new("sqlite-writer").await?;
        let mut writer = SqliteWriter::open(&db.0)?;
        let synchronous: i64 = writer.connection.pragma_query_value(None, "synchronous", |row| row.get(0))?;
        assert_eq!(synchronous, 2, "FULL");
        writer.write(&[record(1), record(2)])?;
        writer.write(&[record(2), record(3)])?;
        assert_eq!(db.count()?, 3, "a request id already written is skipped");
        db.1.close().await;
        Ok(())
    }
}
