//! Functions and their versions.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Db;

/// A stored function version.
#[derive(Debug, Clone)]
pub struct VersionRecord {
    /// The owning tenant: functions are named per tenant.
    pub tenant: String,
    /// The function's name within its tenant.
    pub name: String,
    /// Counts up from 1 per function; rollbacks pick an older one.
    pub version: i64,
    /// SHA-256 of the component, which is stored once per digest.
    pub digest: String,
    /// The function kind detected at deploy (`handler`, `http`, ...), so a
    /// restart need not inspect the component again.
    pub kind: String,
    /// The component's size, counted against the tenant's storage quota.
    pub size_bytes: i64,
    /// The memory limit of one instance.
    pub memory_mb: i64,
    /// The deadline of one call.
    pub timeout_ms: i64,
    /// Calls of this version that may run at once; more wait, then get 503.
    pub max_concurrency: i64,
    /// Whether callers without a key may call it.
    pub public: bool,
    /// Hosts the function may reach over outbound HTTP, comma-separated.
    pub allowed_hosts: String,
    /// Models the function may load by name, comma-separated; `None`: all of its tenant's.
    pub models: Option<String>,
    /// When it was deployed (Unix milliseconds), shown in listings.
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
        let rows = sqlx::query("SELECT * FROM function_versions WHERE tenant = $1 AND name = $2 ORDER BY version")
            .bind(tenant)
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(version_from_row).collect()
    }

    /// Begins a catalog change of `tenant`'s functions: a write transaction
    /// that, on PostgreSQL, also holds the tenant's row lock, so that nodes
    /// sharing the database check the tenant's quotas one change at a time.
    pub async fn change(&self, tenant: &str) -> anyhow::Result<CatalogChange> {
        let mut tx = self.begin_write().await?;
        if self.is_shared() {
            let locked = sqlx::query("SELECT name FROM tenants WHERE name = $1 FOR UPDATE")
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
            anyhow::ensure!(locked.is_some(), "tenant `{tenant}` has no row to lock");
        }
        Ok(CatalogChange { tx, shared: self.is_shared() })
    }
}

/// How much a tenant stores: what its quotas are checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Functions (names), whatever their number of versions.
    pub functions: i64,
    /// Bytes of the distinct components its versions keep and of its models:
    /// a component kept by several versions is stored, and counted, once.
    pub bytes: i64,
}

/// One atomic change of the catalog; dropped without [`CatalogChange::commit`], it changes nothing.
pub struct CatalogChange {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    /// Whether component bytes are kept in the database (for other nodes).
    shared: bool,
}

impl CatalogChange {
    /// The tenant's footprint as this transaction sees it.
    pub async fn footprint(&mut self, tenant: &str) -> anyhow::Result<Footprint> {
        let functions: i64 = sqlx::query("SELECT COUNT(*) AS n FROM functions WHERE tenant = $1")
            .bind(tenant)
            .fetch_one(&mut *self.tx)
            .await?
            .try_get("n")?;
        let bytes: i64 =
            sqlx::query(FOOTPRINT_BYTES).bind(tenant).bind(tenant).fetch_one(&mut *self.tx).await?.try_get("n")?;
        Ok(Footprint { functions, bytes })
    }

    /// Stores a new version (numbered after the highest so far) and makes it
    /// active; on a shared database the component's bytes go with it.
    pub async fn insert_version(&mut self, record: &mut VersionRecord, bytes: &[u8]) -> anyhow::Result<()> {
        if self.shared {
            // The upsert locks the blob's row, so a concurrent release of the
            // same digest (which locks it too) sees this version before it
            // decides that nothing references the bytes.
            sqlx::query(
                "INSERT INTO components (digest, bytes) VALUES ($1, $2)
                 ON CONFLICT (digest) DO UPDATE SET digest = excluded.digest",
            )
            .bind(&record.digest)
            .bind(bytes.to_vec())
            .execute(&mut *self.tx)
            .await?;
        }
        let latest: i64 =
            sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM function_versions WHERE tenant = $1 AND name = $2")
                .bind(&record.tenant)
                .bind(&record.name)
                .fetch_one(&mut *self.tx)
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
        .execute(&mut *self.tx)
        .await?;
        set_active(&mut self.tx, &record.tenant, &record.name, record.version).await
    }

    /// Makes `version` the active one.
    pub async fn activate(&mut self, tenant: &str, name: &str, version: i64) -> anyhow::Result<()> {
        set_active(&mut self.tx, tenant, name, version).await
    }

    /// Removes all but the `keep` newest versions of a function, never the
    /// active one nor the version before it (the rollback target). Returns
    /// the digests the removed versions had.
    pub async fn prune(&mut self, tenant: &str, name: &str, keep: usize) -> anyhow::Result<Vec<String>> {
        let active: Option<i64> = sqlx::query("SELECT active_version FROM functions WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await?
            .map(|row| row.try_get("active_version"))
            .transpose()?;
        let rows = sqlx::query(
            "SELECT version, digest FROM function_versions WHERE tenant = $1 AND name = $2 ORDER BY version DESC",
        )
        .bind(tenant)
        .bind(name)
        .fetch_all(&mut *self.tx)
        .await?;
        let versions: Vec<(i64, String)> = rows
            .iter()
            .map(|row| Ok((row.try_get("version")?, row.try_get("digest")?)))
            .collect::<anyhow::Result<_>>()?;
        let rollback_target = active.and_then(|active| versions.iter().map(|(v, _)| *v).find(|&v| v < active));
        let mut removed = Vec::new();
        for (index, (version, digest)) in versions.into_iter().enumerate() {
            if index < keep.max(1) || Some(version) == active || Some(version) == rollback_target {
                continue;
            }
            sqlx::query("DELETE FROM function_versions WHERE tenant = $1 AND name = $2 AND version = $3")
                .bind(tenant)
                .bind(name)
                .bind(version)
                .execute(&mut *self.tx)
                .await?;
            removed.push(digest);
        }
        Ok(removed)
    }

    /// Removes a function and all its versions; `None` when it did not
    /// exist, else the digests its versions had.
    pub async fn delete_function(&mut self, tenant: &str, name: &str) -> anyhow::Result<Option<Vec<String>>> {
        let removed = sqlx::query("DELETE FROM functions WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        let digests = sqlx::query("SELECT digest FROM function_versions WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_all(&mut *self.tx)
            .await?
            .iter()
            .map(|row| row.try_get("digest"))
            .collect::<Result<Vec<String>, _>>()?;
        sqlx::query("DELETE FROM function_versions WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&mut *self.tx)
            .await?;
        Ok((removed > 0).then_some(digests))
    }

    /// Of `digests`, those that no version of any tenant (on any node)
    /// references any more; their bytes are removed from the database here,
    /// in this transaction.
    pub async fn release(&mut self, digests: Vec<String>) -> anyhow::Result<Vec<String>> {
        let mut unique = digests;
        unique.sort_unstable();
        unique.dedup();
        let mut released = Vec::new();
        for digest in unique {
            if release_one(&mut self.tx, &digest, self.shared).await? {
                released.push(digest);
            }
        }
        Ok(released)
    }

    /// Makes the change durable.
    pub async fn commit(self) -> anyhow::Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// Bytes of the distinct components a tenant's versions keep, plus its models'.
const FOOTPRINT_BYTES: &str = "SELECT CAST(
      COALESCE((SELECT SUM(s) FROM (SELECT MAX(size_bytes) AS s FROM function_versions WHERE tenant = $1 GROUP BY digest) AS c), 0)
    + COALESCE((SELECT SUM(s) FROM (SELECT MAX(size_bytes) AS s FROM models WHERE tenant = $2 GROUP BY digest) AS m), 0)
    AS BIGINT) AS n";

/// Removes the database copy of `digest` if no version references it; true
/// when nothing references it (whether or not the database held a copy).
async fn release_one(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    digest: &str,
    shared: bool,
) -> anyhow::Result<bool> {
    // Lock the blob first (a no-op lock on SQLite, where the transaction
    // already holds the write lock): a deploy that upserted it before us is
    // then committed, and the reference check below, a new statement, sees it.
    let lock = if shared {
        "SELECT digest FROM components WHERE digest = $1 FOR UPDATE"
    } else {
        "SELECT digest FROM components WHERE digest = $1"
    };
    sqlx::query(lock).bind(digest).fetch_optional(&mut **tx).await?;
    let referenced = sqlx::query("SELECT 1 AS one FROM function_versions WHERE digest = $1 LIMIT 1")
        .bind(digest)
        .fetch_optional(&mut **tx)
        .await?
        .is_some();
    if !referenced {
        sqlx::query("DELETE FROM components WHERE digest = $1").bind(digest).execute(&mut **tx).await?;
    }
    Ok(!referenced)
}

async fn set_active(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
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
    /// A tenant's footprint as committed now (for checks before a change).
    pub async fn tenant_footprint(&self, tenant: &str) -> anyhow::Result<Footprint> {
        let functions: i64 = sqlx::query("SELECT COUNT(*) AS n FROM functions WHERE tenant = $1")
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let bytes: i64 =
            sqlx::query(FOOTPRINT_BYTES).bind(tenant).bind(tenant).fetch_one(&self.pool).await?.try_get("n")?;
        Ok(Footprint { functions, bytes })
    }

    /// Whether some version, of any tenant, on any node, references `digest`.
    pub async fn is_referenced(&self, digest: &str) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM function_versions WHERE digest = $1 LIMIT 1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Every digest some version references, on any node.
    pub async fn referenced_digests(&self) -> anyhow::Result<std::collections::HashSet<String>> {
        let rows = sqlx::query("SELECT DISTINCT digest FROM function_versions").fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok(row.try_get("digest")?)).collect()
    }

    /// Removes the database copies of components no version references (left
    /// by a crash of an older muon, or by a change that never committed).
    pub async fn release_orphan_blobs(&self) -> anyhow::Result<usize> {
        let candidates: Vec<String> = sqlx::query(
            "SELECT digest FROM components c WHERE NOT EXISTS (SELECT 1 FROM function_versions v WHERE v.digest = c.digest)",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| row.try_get("digest"))
        .collect::<Result<_, _>>()?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut released = 0;
        for digest in &candidates {
            released += usize::from(release_one(&mut tx, digest, self.is_shared()).await?);
        }
        tx.commit().await?;
        Ok(released)
    }
}
