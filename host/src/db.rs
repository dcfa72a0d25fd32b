//! The catalog database: functions and their versions.
//!
//! SQLite under the data directory by default (bundled, no system library).
//! Queries are written once, with `$n` placeholders, for both SQLite and
//! PostgreSQL through sqlx's `Any` driver.

use std::path::Path;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Schema migrations, applied in order; an applied one is never edited.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS muon_schema (version BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS functions (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        active_version BIGINT NOT NULL,
        PRIMARY KEY (tenant, name)
    )",
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
];

/// A stored function version.
#[derive(Debug, Clone)]
pub struct VersionRecord {
    pub tenant: String,
    pub name: String,
    pub version: i64,
    pub digest: String,
    pub kind: String,
    pub size_bytes: i64,
    pub memory_mb: i64,
    pub timeout_ms: i64,
    pub max_concurrency: i64,
    pub public: bool,
    pub allowed_hosts: String,
    pub created_at_ms: i64,
}

/// Handle to the catalog database.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
}

impl Db {
    /// Opens (creating if needed) the SQLite catalog under `data_dir`.
    pub async fn open_sqlite(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("muon.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::connect(&url).await
    }

    /// Connects to a database URL (`sqlite://...` or `postgres://...`) and migrates it.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await
            .with_context(|| format!("cannot open the database at {url}"))?;
        if url.starts_with("sqlite:") {
            // WAL lets readers proceed during a write; the setting persists in the file.
            sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await?;
        }
        let db = Self { pool };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        sqlx::query(MIGRATIONS[0]).execute(&self.pool).await?;
        let applied: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM muon_schema")
            .fetch_one(&self.pool)
            .await?
            .try_get("v")?;
        let mut tx = self.pool.begin().await?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(1) {
            let version = i64::try_from(index)?;
            if version > applied {
                sqlx::query(sql).execute(&mut *tx).await.with_context(|| format!("migration {version} failed"))?;
                sqlx::query("INSERT INTO muon_schema (version) VALUES ($1)").bind(version).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every function's active version.
    pub async fn active_versions(&self) -> anyhow::Result<Vec<VersionRecord>> {
        let rows = sqlx::query(
            "SELECT v.* FROM function_versions v JOIN functions f
             ON f.tenant = v.tenant AND f.name = v.name AND f.active_version = v.version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_from_row).collect()
    }

    /// All versions of one function, oldest first.
    pub async fn versions(&self, tenant: &str, name: &str) -> anyhow::Result<Vec<VersionRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM function_versions WHERE tenant = $1 AND name = $2 ORDER BY version",
        )
        .bind(tenant)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_from_row).collect()
    }

    /// Stores a new version (numbered after the highest so far) and makes it active.
    pub async fn insert_version(&self, record: &mut VersionRecord) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let latest: i64 = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) AS v FROM function_versions WHERE tenant = $1 AND name = $2",
        )
        .bind(&record.tenant)
        .bind(&record.name)
        .fetch_one(&mut *tx)
        .await?
        .try_get("v")?;
        record.version = latest + 1;
        sqlx::query(
            "INSERT INTO function_versions (tenant, name, version, digest, kind, size_bytes, memory_mb,
             timeout_ms, max_concurrency, public, allowed_hosts, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&record.tenant)
        .bind(&record.name)
        .bind(record.version)
        .bind(&record.digest)
        .bind(&record.kind)
        .bind(record.size_bytes)
        .bind(record.memory_mb)
        .bind(record.timeout_ms)
        .bind(record.max_concurrency)
        .bind(i64::from(record.public))
        .bind(&record.allowed_hosts)
        .bind(record.created_at_ms)
        .execute(&mut *tx)
        .await?;
        set_active(&mut tx, &record.tenant, &record.name, record.version).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Makes `version` the active one.
    pub async fn activate(&self, tenant: &str, name: &str, version: i64) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        set_active(&mut tx, tenant, name, version).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a function and all its versions.
    pub async fn delete_function(&self, tenant: &str, name: &str) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let removed = sqlx::query("DELETE FROM functions WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM function_versions WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(removed > 0)
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

async fn set_active(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    name: &str,
    version: i64,
) -> anyhow::Result<()> {
    let updated = sqlx::query("UPDATE functions SET active_version = $3 WHERE tenant = $1 AND name = $2")
        .bind(tenant)
        .bind(name)
        .bind(version)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if updated == 0 {
        sqlx::query("INSERT INTO functions (tenant, name, active_version) VALUES ($1, $2, $3)")
            .bind(tenant)
            .bind(name)
            .bind(version)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn version_from_row(row: &AnyRow) -> anyhow::Result<VersionRecord> {
    Ok(VersionRecord {
        tenant: row.try_get("tenant")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        digest: row.try_get("digest")?,
        kind: row.try_get("kind")?,
        size_bytes: row.try_get("size_bytes")?,
        memory_mb: row.try_get("memory_mb")?,
        timeout_ms: row.try_get("timeout_ms")?,
        max_concurrency: row.try_get("max_concurrency")?,
        public: row.try_get::<i64, _>("public")? != 0,
        allowed_hosts: row.try_get("allowed_hosts")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}
