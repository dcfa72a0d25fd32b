//! Functions and their versions.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Db;

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
    /// Models the function may load by name, comma-separated; `None`: all of its tenant's.
    pub models: Option<String>,
    pub created_at_ms: i64,
}

impl Db {
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
             timeout_ms, max_concurrency, public, allowed_hosts, created_at_ms, models)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
        .bind(&record.models)
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
        models: row.try_get("models")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

impl Db {
    /// How many functions a tenant has, and the bytes of all their stored versions.
    pub async fn tenant_footprint(&self, tenant: &str) -> anyhow::Result<(i64, i64)> {
        let functions: i64 = sqlx::query("SELECT COUNT(*) AS n FROM functions WHERE tenant = $1")
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let bytes: i64 = sqlx::query(
            "SELECT CAST(COALESCE((SELECT SUM(size_bytes) FROM function_versions WHERE tenant = $1), 0)
                  + COALESCE((SELECT SUM(size_bytes) FROM models WHERE tenant = $2), 0) AS BIGINT) AS n",
        )
        .bind(tenant)
        .bind(tenant)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok((functions, bytes))
    }
}
