//! The database: the catalog of tenant objects, tenants and keys, and the usage ledger.
//!
//! SQLite under the data directory by default (bundled, no system library).
//! Queries are written once, with `$n` placeholders, for both SQLite and
//! PostgreSQL through sqlx's `Any` driver.

use std::path::Path;

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

/// One schema migration: the same SQL for both databases, or one for each
/// where their dialects differ (JSON functions, mostly).
enum Migration {
    Both(&'static str),
    Each { sqlite: &'static str, postgres: &'static str },
}

use Migration::{Both, Each};

/// Schema migrations, applied in order; an applied one is never edited.
const MIGRATIONS: &[Migration] = &[
    Both("CREATE TABLE IF NOT EXISTS muon_schema (version BIGINT NOT NULL)"),
    Both(
        "CREATE TABLE IF NOT EXISTS functions (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        active_version BIGINT NOT NULL,
        PRIMARY KEY (tenant, name)
    )",
    ),
    Both(
        "CREATE TABLE IF NOT EXISTS function_versions (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        version BIGINT NOT NULL,
        digest TEXT NOT NULL,
        kind TEXT NOT NULL,
        size_bytes BIGINT NOT NULL,
        memory_mb BIGINT NOT NULL,
        timeout_ms BIGINT NOT NULL,
        max_concurrency BIGINT NOT NULL,
        public BIGINT NOT NULL,
        allowed_hosts TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant, name, version)
    )",
    ),
    Both(
        "CREATE TABLE IF NOT EXISTS components (
        digest TEXT PRIMARY KEY,
        bytes BYTEA NOT NULL
    )",
    ),
    Both(
        "CREATE TABLE IF NOT EXISTS tenants (
        name TEXT PRIMARY KEY,
        created_at_ms BIGINT NOT NULL,
        quotas TEXT NOT NULL DEFAULT '{}'
    )",
    ),
    Both(
        "CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        admin BIGINT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        revoked_at_ms BIGINT
    )",
    ),
    Both(
        "CREATE TABLE IF NOT EXISTS usage_records (
        request_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        function TEXT NOT NULL,
        version BIGINT NOT NULL,
        start_ms BIGINT NOT NULL,
        wall_us BIGINT NOT NULL,
        cpu_us BIGINT NOT NULL,
        peak_memory_bytes BIGINT NOT NULL,
        memory_byte_ms BIGINT NOT NULL,
        nn_cpu_us BIGINT NOT NULL,
        nn_gpu_us BIGINT NOT NULL,
        bytes_in BIGINT NOT NULL,
        bytes_out BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        cost_micros BIGINT NOT NULL
    )",
    ),
    Both("CREATE INDEX IF NOT EXISTS usage_by_tenant_time ON usage_records (tenant, start_ms)"),
    // NULL: the function may use every model of its tenant.
    Both("ALTER TABLE function_versions ADD COLUMN models TEXT"),
    Both(
        "CREATE TABLE IF NOT EXISTS models (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        size_bytes BIGINT NOT NULL,
        backend TEXT NOT NULL,
        target TEXT NOT NULL,
        signature TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant, name)
    )",
    ),
    // Model bytes, for nodes sharing one database (PostgreSQL) only.
    Both(
        "CREATE TABLE IF NOT EXISTS model_blobs (
        digest TEXT PRIMARY KEY,
        bytes BYTEA NOT NULL
    )",
    ),
    // Whether any version still references a component, asked at every prune and delete.
    Both("CREATE INDEX IF NOT EXISTS function_versions_by_digest ON function_versions (digest)"),
    // One catalog for every kind of versioned tenant object (functions,
    // models, datasets, ...): what is common is columns, what is particular
    // to a kind is its `meta` JSON. Blobs are stored once, whatever the kind.
    Both(
        "CREATE TABLE IF NOT EXISTS objects (
        kind TEXT NOT NULL,
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        active_version BIGINT NOT NULL,
        PRIMARY KEY (kind, tenant, name)
    )",
    ),
    Both(
        "CREATE TABLE IF NOT EXISTS object_versions (
        kind TEXT NOT NULL,
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        version BIGINT NOT NULL,
        digest TEXT NOT NULL,
        size_bytes BIGINT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        meta TEXT NOT NULL,
        PRIMARY KEY (kind, tenant, name, version)
    )",
    ),
    Both("CREATE INDEX IF NOT EXISTS object_versions_by_digest ON object_versions (digest)"),
    Both("CREATE TABLE IF NOT EXISTS blobs (digest TEXT PRIMARY KEY, bytes BYTEA NOT NULL)"),
    Both(
        "INSERT INTO objects (kind, tenant, name, active_version)
        SELECT 'function', tenant, name, active_version FROM functions",
    ),
    Each {
        sqlite: "INSERT INTO object_versions
            SELECT 'function', tenant, name, version, digest, size_bytes, created_at_ms,
            json_object('kind', kind, 'memory_mb', memory_mb, 'timeout_ms', timeout_ms,
                'max_concurrency', max_concurrency, 'public', json(CASE WHEN public <> 0 THEN 'true' ELSE 'false' END),
                'allowed_hosts', allowed_hosts, 'models', models)
            FROM function_versions",
        postgres: "INSERT INTO object_versions
            SELECT 'function', tenant, name, version, digest, size_bytes, created_at_ms,
            json_build_object('kind', kind, 'memory_mb', memory_mb, 'timeout_ms', timeout_ms,
                'max_concurrency', max_concurrency, 'public', public <> 0,
                'allowed_hosts', allowed_hosts, 'models', models)::text
            FROM function_versions",
    },
    // A model name held one model; it becomes version 1 of that name.
    Both("INSERT INTO objects (kind, tenant, name, active_version) SELECT 'model', tenant, name, 1 FROM models"),
    Each {
        sqlite: "INSERT INTO object_versions
            SELECT 'model', tenant, name, 1, digest, size_bytes, created_at_ms,
            json_object('backend', backend, 'target', target, 'signature', json(signature))
            FROM models",
        postgres: "INSERT INTO object_versions
            SELECT 'model', tenant, name, 1, digest, size_bytes, created_at_ms,
            json_build_object('backend', backend, 'target', target, 'signature', signature::json)::text
            FROM models",
    },
    Both("INSERT INTO blobs (digest, bytes) SELECT digest, bytes FROM components"),
    Both(
        "INSERT INTO blobs (digest, bytes) SELECT digest, bytes FROM model_blobs
        WHERE digest NOT IN (SELECT digest FROM blobs)",
    ),
    Both("DROP TABLE functions"),
    Both("DROP TABLE function_versions"),
    Both("DROP TABLE models"),
    Both("DROP TABLE components"),
    Both("DROP TABLE model_blobs"),
    Both(
        "CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        spec TEXT NOT NULL,
        function TEXT NOT NULL,
        function_version BIGINT NOT NULL,
        dataset TEXT NOT NULL,
        dataset_version BIGINT NOT NULL,
        parallel BIGINT NOT NULL,
        state TEXT NOT NULL,
        error TEXT,
        created_at_ms BIGINT NOT NULL,
        started_at_ms BIGINT,
        finished_at_ms BIGINT,
        result TEXT,
        next_seq BIGINT NOT NULL,
        lease_owner TEXT,
        lease_until_ms BIGINT
    )",
    ),
    Both("CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant, created_at_ms)"),
    Both(
        "CREATE TABLE IF NOT EXISTS trials (
        job_id TEXT NOT NULL,
        trial BIGINT NOT NULL,
        hyper TEXT NOT NULL,
        state TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        attempt BIGINT NOT NULL,
        metrics TEXT NOT NULL,
        error TEXT,
        cpu_us BIGINT NOT NULL,
        nn_cpu_us BIGINT NOT NULL,
        nn_gpu_us BIGINT NOT NULL,
        cost_micros BIGINT NOT NULL,
        stdout TEXT NOT NULL,
        stderr TEXT NOT NULL,
        lease_owner TEXT,
        lease_until_ms BIGINT,
        PRIMARY KEY (job_id, trial)
    )",
    ),
    Both(
        "CREATE TABLE IF NOT EXISTS checkpoints (
        job_id TEXT NOT NULL,
        trial BIGINT NOT NULL,
        epoch BIGINT NOT NULL,
        bytes BYTEA NOT NULL,
        PRIMARY KEY (job_id, trial)
    )",
    ),
    Both(
        "CREATE TABLE IF NOT EXISTS job_events (
        job_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        trial BIGINT,
        epoch BIGINT,
        at_ms BIGINT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    )",
    ),
    Both(
        "CREATE TABLE IF NOT EXISTS alerts (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL,
        starts_at_ms BIGINT NOT NULL,
        ends_at_ms BIGINT,
        labels TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        baseline DOUBLE PRECISION NOT NULL,
        summary TEXT NOT NULL
    )",
    ),
    Both("CREATE INDEX IF NOT EXISTS alerts_by_tenant ON alerts (tenant, state, starts_at_ms)"),
    Both("CREATE UNIQUE INDEX IF NOT EXISTS alerts_firing_once ON alerts (fingerprint) WHERE state = 'firing'"),
    Each {
        sqlite: "CREATE TABLE IF NOT EXISTS audit_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        message TEXT NOT NULL,
        detail TEXT NOT NULL
    )",
        postgres: "CREATE TABLE IF NOT EXISTS audit_events (
        id BIGSERIAL PRIMARY KEY,
        tenant TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        message TEXT NOT NULL,
        detail TEXT NOT NULL
    )",
    },
    Both("CREATE INDEX IF NOT EXISTS audit_events_by_tenant ON audit_events (tenant, id)"),
    Both(
        "CREATE TABLE IF NOT EXISTS alert_sinks (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        last_delivery TEXT,
        PRIMARY KEY (tenant, name)
    )",
    ),
    Both(
        "CREATE TABLE IF NOT EXISTS rollouts (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        stable_version BIGINT NOT NULL,
        candidate_version BIGINT NOT NULL,
        percent BIGINT NOT NULL,
        started_at_ms BIGINT NOT NULL,
        until_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant, name)
    )",
    ),
    Both(
        "CREATE TABLE IF NOT EXISTS thresholds (
        tenant TEXT NOT NULL,
        function TEXT NOT NULL,
        settings TEXT NOT NULL,
        PRIMARY KEY (tenant, function)
    )",
    ),
];

mod catalog;
mod functions;
mod jobs;
mod models;
mod monitor;
mod tenants;
mod usage;

pub use catalog::{CatalogChange, Footprint, ObjectKind, ObjectVersion, Retention};
pub use functions::VersionRecord;
pub use jobs::{Checkpoint, EventRow, JobRow, NewEvent, TrialChange, TrialRow, TrialUsage};
pub use models::ModelRow;
pub use monitor::{AlertRow, AuditRow, NewAudit, RolloutRow, SinkRow};
pub use tenants::{KeyRecord, Revocation, TenantRecord};
pub(crate) use usage::insert_usage_sql;
pub use usage::{GroupBy, UsageQuery, UsageRecord, UsageTotals, UsageWriter};

/// How long a SQLite writer waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `sync` every `period`, forever: how a node keeps up with what other
/// nodes sharing the database changed. A failed round is logged and retried.
pub async fn follow<E, F>(period: std::time::Duration, what: &'static str, mut sync: impl FnMut() -> F)
where
    E: std::fmt::Display,
    F: Future<Output = Result<(), E>>,
{
    let mut interval = tokio::time::interval(period);
    loop {
        interval.tick().await;
        if let Err(err) = sync().await {
            tracing::warn!(error = %err, "cannot sync {what} from the database");
        }
    }
}

/// Handle to the database (SQLite or PostgreSQL).
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    /// SQLite binds `?` positionally; naming (`$n`) costs a lookup per
    /// parameter, which shows in large batched inserts.
    positional: bool,
    /// The SQLite file, when the database is one.
    sqlite_path: Option<std::path::PathBuf>,
}

impl Db {
    /// Opens (creating if needed) the SQLite catalog under `data_dir`.
    pub async fn open_sqlite(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("muon.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut db = Self::connect(&url).await?;
        db.sqlite_path = Some(path);
        Ok(db)
    }

    /// Connects to a database URL (`sqlite://...` or `postgres://...`) and migrates it.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            // A database outage should fail requests quickly, not hang them.
            .acquire_timeout(std::time::Duration::from_secs(3))
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if sqlite {
                        // A writer waits this long for another (the ledger's
                        // connection, say) instead of failing with SQLITE_BUSY.
                        let pragma = format!("PRAGMA busy_timeout = {}", SQLITE_BUSY_TIMEOUT.as_millis());
                        sqlx::query(&pragma).execute(connection).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .with_context(|| format!("cannot open the database at {url}"))?;
        if sqlite {
            // WAL lets readers proceed during a write; the setting persists in the file.
            sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await?;
        }
        let db = Self { pool, positional: sqlite, sqlite_path: None };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let sql_of = |migration: &Migration| match *migration {
            Both(sql) => sql,
            Each { sqlite, postgres } => {
                if self.is_shared() {
                    postgres
                } else {
                    sqlite
                }
            }
        };
        sqlx::query(sql_of(&MIGRATIONS[0])).execute(&self.pool).await?;
        let applied: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM muon_schema")
            .fetch_one(&self.pool)
            .await?
            .try_get("v")?;
        let mut tx = self.pool.begin().await?;
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(1) {
            let version = i64::try_from(index)?;
            if version > applied {
                sqlx::query(sql_of(migration))
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("migration {version} failed"))?;
                sqlx::query("INSERT INTO muon_schema (version) VALUES ($1)").bind(version).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The SQLite file, when the database is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.sqlite_path.as_deref()
    }

    /// Whether other nodes may share this database (PostgreSQL, not SQLite).
    pub fn is_shared(&self) -> bool {
        !self.positional
    }

    /// Begins a transaction that will write.
    ///
    /// On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken at the start
    /// (waiting up to the busy timeout), so no other writer can commit between
    /// what the transaction reads and what it writes. A deferred transaction
    /// would fail there with `SQLITE_BUSY_SNAPSHOT` ("database is locked"),
    /// which no busy timeout retries. PostgreSQL locks rows instead.
    pub async fn begin_write(&self) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Any>> {
        let tx =
            if self.is_shared() { self.pool.begin().await? } else { self.pool.begin_with("BEGIN IMMEDIATE").await? };
        Ok(tx)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Closes the pool, waiting for open connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
