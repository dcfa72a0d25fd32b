//! The usage ledger: one record per request, written in batches.

use anyhow::Context;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use sqlx::{ConnectOptions, Connection, Executor, Row};

use super::Db;

/// What one request used, and what it cost (integer micro-units): the API's
/// type, so the ledger stores what the API shows.
pub use crate::api::UsageRecord;

const COLUMNS: &str = "request_id, tenant, function, version, start_ms, wall_us, cpu_us, peak_memory_bytes, \
     memory_byte_ms, nn_cpu_us, nn_gpu_us, bytes_in, bytes_out, outcome, cost_micros";
const COLUMN_COUNT: usize = 15;

/// A usage query: one tenant, a time range, an optional function, a grouping.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    /// Whose usage.
    pub tenant: String,
    /// From (inclusive), Unix milliseconds.
    pub from_ms: i64,
    /// To (exclusive), Unix milliseconds.
    pub to_ms: i64,
    /// Only this function, if set.
    pub function: Option<String>,
    /// How totals are grouped.
    pub group_by: GroupBy,
}

/// How usage totals are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// One group per function.
    Function,
    /// One group per UTC day.
    Day,
    /// One group per UTC hour.
    Hour,
}

/// Totals of one group: the API's type.
pub use crate::api::UsageTotals;

/// How long the ledger waits for a connection of its own.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The ledger's own connection for writing usage records (PostgreSQL), with
/// `synchronous_commit = on` for its session, explicitly, so that a written
/// batch is on disk even where the server's default is off: a pool
/// connection would carry a session setting on to whoever borrows it next.
pub struct UsageWriter {
    db: Db,
    /// Opened on first use, and again after a failed or abandoned write.
    connection: Option<AnyConnection>,
}

impl UsageWriter {
    /// Writes a batch atomically and synced; a request id already present is
    /// skipped, so a retried write never bills twice. A batch that fits one
    /// statement is written without an explicit transaction (one round trip).
    /// Cancel-safe: a write dropped midway leaves no connection behind.
    pub async fn insert(&mut self, records: &[UsageRecord]) -> anyhow::Result<()> {
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => connect(&self.db).await?,
        };
        self.db.insert_usage(&mut connection, records).await?;
        // A failed write drops the connection, which may be broken (a restarted server, say).
        self.connection = Some(connection);
        Ok(())
    }
}

/// A connection outside the pool, with `synchronous_commit` on for its session.
async fn connect(db: &Db) -> anyhow::Result<AnyConnection> {
    let options = db.pool.connect_options();
    let mut connection = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .context("timed out connecting to the database")??;
    connection.execute("SET synchronous_commit = on").await?;
    Ok(connection)
}

/// `INSERT` of `rows` usage records, a request id already present skipped:
/// `?` placeholders where `positional` (SQLite), else `$n` (PostgreSQL).
pub(crate) fn insert_usage_sql(rows: usize, positional: bool) -> String {
    let mut sql = format!("INSERT INTO usage_records ({COLUMNS}) VALUES ");
    for i in 0..rows {
        let base = i * COLUMN_COUNT;
        let placeholders: Vec<String> =
            (1..=COLUMN_COUNT).map(|c| if positional { "?".to_owned() } else { format!("${}", base + c) }).collect();
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        sql.push_str(&placeholders.join(","));
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (request_id) DO NOTHING");
    sql
}

impl Db {
    /// A writer of usage records on a connection of its own, each batch
    /// synced to disk before the write returns.
    pub fn usage_writer(&self) -> UsageWriter {
        UsageWriter { db: self.clone(), connection: None }
    }

    async fn insert_usage(&self, connection: &mut AnyConnection, records: &[UsageRecord]) -> anyhow::Result<()> {
        // Bounded by SQLite's 32766 bound parameters per statement.
        const ROWS_PER_STATEMENT: usize = 1000;
        if records.len() <= ROWS_PER_STATEMENT {
            let sql = insert_usage_sql(records.len(), self.positional);
            bind_usage(sqlx::query(&sql), records).execute(&mut *connection).await?;
            return Ok(());
        }
        let mut tx = connection.begin().await?;
        for chunk in records.chunks(ROWS_PER_STATEMENT) {
            let sql = insert_usage_sql(chunk.len(), self.positional);
            bind_usage(sqlx::query(&sql), chunk).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Raw records of a tenant after `after` (a request id), in id order.
    pub async fn usage_records(&self, tenant: &str, after: &str, limit: i64) -> anyhow::Result<Vec<UsageRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM usage_records WHERE tenant = $1 AND request_id > $2 ORDER BY request_id LIMIT $3"
        ))
        .bind(tenant)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Totals per group, computed from the raw records.
    pub async fn usage_totals(&self, query: &UsageQuery) -> anyhow::Result<Vec<UsageTotals>> {
        let group = match query.group_by {
            GroupBy::Function => "function".to_owned(),
            GroupBy::Day => "CAST((start_ms / 86400000) * 86400000 AS BIGINT)".to_owned(),
            GroupBy::Hour => "CAST((start_ms / 3600000) * 3600000 AS BIGINT)".to_owned(),
        };
        let group_text =
            if query.group_by == GroupBy::Function { group.clone() } else { format!("CAST({group} AS TEXT)") };
        let sql = format!(
            "SELECT {group_text} AS grp, COUNT(*) AS requests,
                CAST(SUM(cpu_us) AS BIGINT) AS cpu_us, CAST(SUM(wall_us) AS BIGINT) AS wall_us,
                CAST(SUM(memory_byte_ms) AS BIGINT) AS byte_ms,
                CAST(SUM(nn_cpu_us + nn_gpu_us) AS BIGINT) AS compute_us,
                CAST(SUM(bytes_in) AS BIGINT) AS bytes_in, CAST(SUM(bytes_out) AS BIGINT) AS bytes_out,
                CAST(SUM(cost_micros) AS BIGINT) AS cost
             FROM usage_records
             WHERE tenant = $1 AND start_ms >= $2 AND start_ms < $3 AND ($4 = '' OR function = $4)
             GROUP BY {group} ORDER BY {group}"
        );
        let rows = sqlx::query(&sql)
            .bind(&query.tenant)
            .bind(query.from_ms)
            .bind(query.to_ms)
            .bind(query.function.clone().unwrap_or_default())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let micros = |name: &str| -> anyhow::Result<f64> { Ok(r.try_get::<i64, _>(name)? as f64 / 1000.0) };
                let group: String = r.try_get("grp")?;
                Ok(UsageTotals {
                    group,
                    requests: r.try_get("requests")?,
                    cpu_ms: micros("cpu_us")?,
                    wall_ms: micros("wall_us")?,
                    gb_seconds: r.try_get::<i64, _>("byte_ms")? as f64 / 1e12,
                    compute_ms: micros("compute_us")?,
                    bytes_in: r.try_get("bytes_in")?,
                    bytes_out: r.try_get("bytes_out")?,
                    cost_micros: r.try_get("cost")?,
                })
            })
            .collect()
    }

    /// A tenant's total cost since `since_ms`.
    pub async fn cost_since(&self, tenant: &str, since_ms: i64) -> anyhow::Result<i64> {
        Ok(sqlx::query(
            "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS cost FROM usage_records WHERE tenant = $1 AND start_ms >= $2",
        )
        .bind(tenant)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?
        .try_get("cost")?)
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind_usage<'q>(mut query: AnyQuery<'q>, rows: &'q [UsageRecord]) -> AnyQuery<'q> {
    for r in rows {
        query = query
            .bind(&r.request_id)
            .bind(&r.tenant)
            .bind(&r.function)
            .bind(r.version)
            .bind(r.start_ms)
            .bind(r.wall_us)
            .bind(r.cpu_us)
            .bind(r.peak_memory_bytes)
            .bind(r.memory_byte_ms)
            .bind(r.nn_cpu_us)
            .bind(r.nn_gpu_us)
            .bind(r.bytes_in)
            .bind(r.bytes_out)
            .bind(&r.outcome)
            .bind(r.cost_micros);
    }
    query
}

fn record_from_row(r: &AnyRow) -> anyhow::Result<UsageRecord> {
    Ok(UsageRecord {
        request_id: r.try_get("request_id")?,
        tenant: r.try_get("tenant")?,
        function: r.try_get("function")?,
        version: r.try_get("version")?,
        start_ms: r.try_get("start_ms")?,
        wall_us: r.try_get("wall_us")?,
        cpu_us: r.try_get("cpu_us")?,
        peak_memory_bytes: r.try_get("peak_memory_bytes")?,
        memory_byte_ms: r.try_get("memory_byte_ms")?,
        nn_cpu_us: r.try_get("nn_cpu_us")?,
        nn_gpu_us: r.try_get("nn_gpu_us")?,
        bytes_in: r.try_get("bytes_in")?,
        bytes_out: r.try_get("bytes_out")?,
        outcome: r.try_get("outcome")?,
        cost_micros: r.try_get("cost_micros")?,
    })
}
