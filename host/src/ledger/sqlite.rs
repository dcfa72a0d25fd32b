//! The SQLite ledger writer: one connection, one prepared statement, one
//! synced transaction per batch.
//!
//! sqlx's generic path costs about 45 µs a row here (a statement per batch
//! size, per-parameter conversions, a thread hop per call); this one costs a
//! few microseconds. PostgreSQL keeps using sqlx.

use std::path::Path;

use rusqlite::types::ToSql;
use rusqlite::{Connection, TransactionBehavior, params_from_iter};

use crate::db::{UsageRecord, insert_usage_sql};

/// Rows per `INSERT`: one statement for many rows spends SQLite's per-statement
/// work (bind, step, reset) once for all of them, about a quarter of a row's
/// cost; 64 rows bind 960 parameters, far below SQLite's bound of 32766.
const ROWS_PER_INSERT: usize = 64;

/// How long a write waits for another connection's write to end.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection dedicated to writing usage records.
pub struct SqliteWriter {
    connection: Connection,
    /// The `INSERT` of [`ROWS_PER_INSERT`] rows, and of one (for the rest of a batch).
    insert_many: String,
    insert_one: String,
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
        Ok(Self {
            connection,
            insert_many: insert_usage_sql(ROWS_PER_INSERT, true),
            insert_one: insert_usage_sql(1, true),
        })
    }

    /// Writes a batch in one transaction, waiting for another connection's
    /// write (a deploy, say) to end first.
    pub fn write(&mut self, records: &[UsageRecord]) -> rusqlite::Result<()> {
        // IMMEDIATE: the write lock is taken at BEGIN, so a busy database is
        // found before anything is written.
        let transaction = self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut chunks = records.chunks_exact(ROWS_PER_INSERT);
            let mut insert = transaction.prepare_cached(&self.insert_many)?;
            for chunk in &mut chunks {
                insert.execute(params_from_iter(chunk.iter().flat_map(columns)))?;
            }
            let mut insert = transaction.prepare_cached(&self.insert_one)?;
            for record in chunks.remainder() {
                insert.execute(params_from_iter(columns(record)))?;
            }
        }
        transaction.commit()
    }
}

/// A record's columns, in the order of the `INSERT`.
fn columns(r: &UsageRecord) -> [&dyn ToSql; 15] {
    [
        &r.request_id,
        &r.tenant,
        &r.function,
        &r.version,
        &r.start_ms,
        &r.wall_us,
        &r.cpu_us,
        &r.peak_memory_bytes,
        &r.memory_byte_ms,
        &r.nn_cpu_us,
        &r.nn_gpu_us,
        &r.bytes_in,
        &r.bytes_out,
        &r.outcome,
        &r.cost_micros,
    ]
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
        // Two statements of ROWS_PER_INSERT rows and six single rows, a few already written.
        let batch: Vec<UsageRecord> = (0..2 * ROWS_PER_INSERT + 6).map(record).collect();
        writer.write(&batch)?;
        assert_eq!(db.count()?, i64::try_from(batch.len())?);
        let written = db.1.usage_records("default", "", 1000).await?;
        assert_eq!(written, batch, "every column of every row, in order");
        db.1.close().await;
        Ok(())
    }
}
