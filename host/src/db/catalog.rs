//! The one catalog of versioned, content-addressed tenant objects.
//!
//! Every kind of object (functions, models, and what comes next: datasets,
//! jobs, checkpoints) is a name per tenant with numbered, immutable versions,
//! one of them active. A version names its bytes by digest; the bytes are
//! stored once whatever the number of versions, tenants or kinds that keep
//! them. Versioning, listing, pruning, deletion and the release of bytes no
//! version keeps are written here, once; what is particular to a kind is its
//! `meta` JSON, which the kind's module types (see `functions.rs`, `models.rs`).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Db;

/// What kind of tenant object a catalog entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A function's component.
    Function,
    /// An ONNX model.
    Model,
    /// A dataset, stored as Parquet.
    Dataset,
}

impl ObjectKind {
    /// The name stored in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Function => "function",
            Self::Model => "model",
            Self::Dataset => "dataset",
        }
    }
}

/// One stored version of a tenant object.
#[derive(Debug, Clone)]
pub struct ObjectVersion {
    /// What kind of object.
    pub kind: ObjectKind,
    /// The owning tenant: objects are named per tenant.
    pub tenant: String,
    /// The object's name within its tenant and kind.
    pub name: String,
    /// Counts up from 1 per name; set by [`CatalogChange::insert`].
    pub version: i64,
    /// SHA-256 of the bytes, which are stored once per digest.
    pub digest: String,
    /// The bytes' size, counted (once per digest) against the tenant's storage quota.
    pub size_bytes: i64,
    /// When it was stored (Unix milliseconds), shown in listings.
    pub created_at_ms: i64,
    /// What is particular to the kind, as JSON.
    pub meta: String,
}

/// Which versions a prune keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// The newest versions kept (at least one).
    pub newest: usize,
    /// Whether the version before the active one is kept too, as the target
    /// of a rollback.
    pub rollback_target: bool,
}

/// How much a tenant stores: what its quotas are checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Functions (names), whatever their number of versions.
    pub functions: i64,
    /// Bytes of the distinct blobs its versions keep, of every kind: a blob
    /// kept by several versions is stored, and counted, once.
    pub bytes: i64,
}

impl Db {
    /// Every active version of `kind`, of every tenant.
    pub async fn active_objects(&self, kind: ObjectKind) -> anyhow::Result<Vec<ObjectVersion>> {
        let rows = sqlx::query(
            "SELECT v.* FROM object_versions v JOIN objects o
             ON o.kind = v.kind AND o.tenant = v.tenant AND o.name = v.name AND o.active_version = v.version
             WHERE v.kind = $1 ORDER BY v.tenant, v.name",
        )
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| object_from_row(kind, row)).collect()
    }

    /// `tenant`'s active versions of `kind`, by name.
    pub async fn tenant_objects(&self, kind: ObjectKind, tenant: &str) -> anyhow::Result<Vec<ObjectVersion>> {
        let rows = sqlx::query(
            "SELECT v.* FROM object_versions v JOIN objects o
             ON o.kind = v.kind AND o.tenant = v.tenant AND o.name = v.name AND o.active_version = v.version
             WHERE v.kind = $1 AND v.tenant = $2 ORDER BY v.name",
        )
        .bind(kind.as_str())
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| object_from_row(kind, row)).collect()
    }

    /// All versions of one object, oldest first.
    pub async fn object_versions(
        &self,
        kind: ObjectKind,
        tenant: &str,
        name: &str,
    ) -> anyhow::Result<Vec<ObjectVersion>> {
        let rows =
            sqlx::query("SELECT * FROM object_versions WHERE kind = $1 AND tenant = $2 AND name = $3 ORDER BY version")
                .bind(kind.as_str())
                .bind(tenant)
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|row| object_from_row(kind, row)).collect()
    }

    /// Begins a catalog change of `tenant`'s objects: a write transaction
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

    /// A tenant's footprint as committed now (for checks before a change).
    pub async fn tenant_footprint(&self, tenant: &str) -> anyhow::Result<Footprint> {
        let mut connection = self.pool.acquire().await?;
        footprint(&mut connection, tenant).await
    }

    /// Whether some version, of any kind and tenant, on any node, keeps `digest`.
    pub async fn is_referenced(&self, digest: &str) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM object_versions WHERE digest = $1 LIMIT 1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Every digest some version of `kind` keeps, on any node.
    pub async fn referenced_digests(&self, kind: ObjectKind) -> anyhow::Result<std::collections::HashSet<String>> {
        let rows = sqlx::query("SELECT DISTINCT digest FROM object_versions WHERE kind = $1")
            .bind(kind.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(row.try_get("digest")?)).collect()
    }

    /// Removes the database copies of blobs no version keeps (left by a
    /// crash of an older muon, or by a change that never committed).
    pub async fn release_orphan_blobs(&self) -> anyhow::Result<usize> {
        let candidates: Vec<String> = sqlx::query(
            "SELECT digest FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM object_versions v WHERE v.digest = b.digest)",
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

    /// Stored bytes by digest (kept in the database on PostgreSQL only).
    pub async fn blob(&self, digest: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let row =
            sqlx::query("SELECT bytes FROM blobs WHERE digest = $1").bind(digest).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get("bytes")).transpose()?)
    }

    /// Stores bytes once per digest, outside any change: what tests use to
    /// leave an orphan behind.
    pub async fn put_blob(&self, digest: &str, bytes: &[u8]) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO blobs (digest, bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING")
            .bind(digest)
            .bind(bytes.to_vec())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many blobs the database keeps, and their bytes in all.
    pub async fn stored_blobs(&self) -> anyhow::Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(LENGTH(bytes)), 0) AS BIGINT) AS b FROM blobs",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("b")?))
    }
}

/// One atomic change of the catalog; dropped without [`CatalogChange::commit`], it changes nothing.
pub struct CatalogChange {
    pub(super) tx: sqlx::Transaction<'static, sqlx::Any>,
    /// Whether blobs are kept in the database (for other nodes).
    shared: bool,
}

impl CatalogChange {
    /// The tenant's footprint as this transaction sees it.
    pub async fn footprint(&mut self, tenant: &str) -> anyhow::Result<Footprint> {
        footprint(&mut self.tx, tenant).await
    }

    /// Stores a new version (numbered after the highest so far) and makes it
    /// active; on a shared database its bytes go with it.
    pub async fn insert(&mut self, object: &mut ObjectVersion, bytes: &[u8]) -> anyhow::Result<()> {
        if self.shared {
            // The upsert locks the blob's row, so a concurrent release of the
            // same digest (which locks it too) sees this version before it
            // decides that nothing references the bytes.
            sqlx::query(
                "INSERT INTO blobs (digest, bytes) VALUES ($1, $2)
                 ON CONFLICT (digest) DO UPDATE SET digest = excluded.digest",
            )
            .bind(&object.digest)
            .bind(bytes.to_vec())
            .execute(&mut *self.tx)
            .await?;
        }
        let latest: i64 = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) AS v FROM object_versions WHERE kind = $1 AND tenant = $2 AND name = $3",
        )
        .bind(object.kind.as_str())
        .bind(&object.tenant)
        .bind(&object.name)
        .fetch_one(&mut *self.tx)
        .await?
        .try_get("v")?;
        object.version = latest + 1;
        sqlx::query(
            "INSERT INTO object_versions (kind, tenant, name, version, digest, size_bytes, created_at_ms, meta)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(object.kind.as_str())
        .bind(&object.tenant)
        .bind(&object.name)
        .bind(object.version)
        .bind(&object.digest)
        .bind(object.size_bytes)
        .bind(object.created_at_ms)
        .bind(&object.meta)
        .execute(&mut *self.tx)
        .await?;
        self.activate(object.kind, &object.tenant, &object.name, object.version).await
    }

    /// Makes `version` the active one.
    pub async fn activate(&mut self, kind: ObjectKind, tenant: &str, name: &str, version: i64) -> anyhow::Result<()> {
        let updated =
            sqlx::query("UPDATE objects SET active_version = $4 WHERE kind = $1 AND tenant = $2 AND name = $3")
                .bind(kind.as_str())
                .bind(tenant)
                .bind(name)
                .bind(version)
                .execute(&mut *self.tx)
                .await?
                .rows_affected();
        if updated == 0 {
            sqlx::query("INSERT INTO objects (kind, tenant, name, active_version) VALUES ($1, $2, $3, $4)")
                .bind(kind.as_str())
                .bind(tenant)
                .bind(name)
                .bind(version)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Removes the versions `retention` does not keep, never the active one.
    /// Returns the digests the removed versions had.
    pub async fn prune(
        &mut self,
        kind: ObjectKind,
        tenant: &str,
        name: &str,
        retention: Retention,
    ) -> anyhow::Result<Vec<String>> {
        let active: Option<i64> =
            sqlx::query("SELECT active_version FROM objects WHERE kind = $1 AND tenant = $2 AND name = $3")
                .bind(kind.as_str())
                .bind(tenant)
                .bind(name)
                .fetch_optional(&mut *self.tx)
                .await?
                .map(|row| row.try_get("active_version"))
                .transpose()?;
        let rows = sqlx::query(
            "SELECT version, digest FROM object_versions WHERE kind = $1 AND tenant = $2 AND name = $3
             ORDER BY version DESC",
        )
        .bind(kind.as_str())
        .bind(tenant)
        .bind(name)
        .fetch_all(&mut *self.tx)
        .await?;
        let versions: Vec<(i64, String)> = rows
            .iter()
            .map(|row| Ok((row.try_get("version")?, row.try_get("digest")?)))
            .collect::<anyhow::Result<_>>()?;
        let rollback_target = active
            .filter(|_| retention.rollback_target)
            .and_then(|active| versions.iter().map(|(v, _)| *v).find(|&v| v < active));
        let mut removed = Vec::new();
        for (index, (version, digest)) in versions.into_iter().enumerate() {
            if index < retention.newest.max(1) || Some(version) == active || Some(version) == rollback_target {
                continue;
            }
            sqlx::query("DELETE FROM object_versions WHERE kind = $1 AND tenant = $2 AND name = $3 AND version = $4")
                .bind(kind.as_str())
                .bind(tenant)
                .bind(name)
                .bind(version)
                .execute(&mut *self.tx)
                .await?;
            removed.push(digest);
        }
        Ok(removed)
    }

    /// Removes an object and all its versions; `None` when it did not
    /// exist, else the digests its versions had.
    pub async fn delete(&mut self, kind: ObjectKind, tenant: &str, name: &str) -> anyhow::Result<Option<Vec<String>>> {
        let removed = sqlx::query("DELETE FROM objects WHERE kind = $1 AND tenant = $2 AND name = $3")
            .bind(kind.as_str())
            .bind(tenant)
            .bind(name)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        let digests = sqlx::query("SELECT digest FROM object_versions WHERE kind = $1 AND tenant = $2 AND name = $3")
            .bind(kind.as_str())
            .bind(tenant)
            .bind(name)
            .fetch_all(&mut *self.tx)
            .await?
            .iter()
            .map(|row| row.try_get("digest"))
            .collect::<Result<Vec<String>, _>>()?;
        sqlx::query("DELETE FROM object_versions WHERE kind = $1 AND tenant = $2 AND name = $3")
            .bind(kind.as_str())
            .bind(tenant)
            .bind(name)
            .execute(&mut *self.tx)
            .await?;
        Ok((removed > 0).then_some(digests))
    }

    /// Of `digests`, those that no version of any kind and tenant (on any
    /// node) keeps any more; their database copies are removed here, in
    /// this transaction.
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

async fn footprint(connection: &mut sqlx::AnyConnection, tenant: &str) -> anyhow::Result<Footprint> {
    let functions: i64 = sqlx::query("SELECT COUNT(*) AS n FROM objects WHERE kind = 'function' AND tenant = $1")
        .bind(tenant)
        .fetch_one(&mut *connection)
        .await?
        .try_get("n")?;
    let bytes: i64 = sqlx::query(
        "SELECT CAST(COALESCE(SUM(s), 0) AS BIGINT) AS n FROM
         (SELECT MAX(size_bytes) AS s FROM object_versions WHERE tenant = $1 GROUP BY digest) AS d",
    )
    .bind(tenant)
    .fetch_one(&mut *connection)
    .await?
    .try_get("n")?;
    Ok(Footprint { functions, bytes })
}

/// Removes the database copy of `digest` if no version keeps it; true when
/// nothing keeps it (whether or not the database held a copy).
async fn release_one(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    digest: &str,
    shared: bool,
) -> anyhow::Result<bool> {
    // Lock the blob first (a no-op lock on SQLite, where the transaction
    // already holds the write lock): a change that upserted it before us is
    // then committed, and the reference check below, a new statement, sees it.
    let lock = if shared {
        "SELECT digest FROM blobs WHERE digest = $1 FOR UPDATE"
    } else {
        "SELECT digest FROM blobs WHERE digest = $1"
    };
    sqlx::query(lock).bind(digest).fetch_optional(&mut **tx).await?;
    let referenced = sqlx::query("SELECT 1 AS one FROM object_versions WHERE digest = $1 LIMIT 1")
        .bind(digest)
        .fetch_optional(&mut **tx)
        .await?
        .is_some();
    if !referenced {
        sqlx::query("DELETE FROM blobs WHERE digest = $1").bind(digest).execute(&mut **tx).await?;
    }
    Ok(!referenced)
}

fn object_from_row(kind: ObjectKind, row: &AnyRow) -> anyhow::Result<ObjectVersion> {
    Ok(ObjectVersion {
        kind,
        tenant: row.try_get("tenant")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        digest: row.try_get("digest")?,
        size_bytes: row.try_get("size_bytes")?,
        created_at_ms: row.try_get("created_at_ms")?,
        meta: row.try_get("meta")?,
    })
}
