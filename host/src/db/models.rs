//! The model catalog: which models each tenant has, under which names.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Db;

/// A stored model (its bytes live in the data directory, by digest).
#[derive(Debug, Clone)]
pub struct ModelRow {
    /// The owning tenant: models are named per tenant.
    pub tenant: String,
    /// The name functions load it by.
    pub name: String,
    /// SHA-256 of the model's bytes, which name its file.
    pub digest: String,
    /// The bytes' size, counted against the tenant's storage quota.
    pub size_bytes: i64,
    /// The inference backend chosen at upload (`tract` or `onnxruntime`).
    pub backend: String,
    /// The device it runs on (`cpu` or `gpu`).
    pub target: String,
    /// The signature as JSON.
    pub signature: String,
    /// When it was uploaded (Unix milliseconds), shown in listings.
    pub created_at_ms: i64,
}

impl Db {
    /// Every model of every tenant.
    pub async fn models(&self) -> anyhow::Result<Vec<ModelRow>> {
        let rows = sqlx::query("SELECT * FROM models ORDER BY tenant, name").fetch_all(&self.pool).await?;
        rows.iter().map(model_from_row).collect()
    }

    /// Stores a model under its name, replacing what the name held.
    pub async fn put_model(&self, row: &ModelRow) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO models (tenant, name, digest, size_bytes, backend, target, signature, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant, name) DO UPDATE SET digest = excluded.digest, size_bytes = excluded.size_bytes,
             backend = excluded.backend, target = excluded.target, signature = excluded.signature,
             created_at_ms = excluded.created_at_ms",
        )
        .bind(&row.tenant)
        .bind(&row.name)
        .bind(&row.digest)
        .bind(row.size_bytes)
        .bind(&row.backend)
        .bind(&row.target)
        .bind(&row.signature)
        .bind(row.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a model's name; true if it existed.
    pub async fn delete_model(&self, tenant: &str, name: &str) -> anyhow::Result<bool> {
        let removed = sqlx::query("DELETE FROM models WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed > 0)
    }
}

impl Db {
    /// Removes a model's bytes once no name of any tenant uses them.
    pub async fn delete_model_blob_if_unused(&self, digest: &str) -> anyhow::Result<()> {
        sqlx::query(
            "DELETE FROM model_blobs WHERE digest = $1 AND NOT EXISTS (SELECT 1 FROM models WHERE digest = $2)",
        )
        .bind(digest)
        .bind(digest)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn model_from_row(row: &AnyRow) -> anyhow::Result<ModelRow> {
    Ok(ModelRow {
        tenant: row.try_get("tenant")?,
        name: row.try_get("name")?,
        digest: row.try_get("digest")?,
        size_bytes: row.try_get("size_bytes")?,
        backend: row.try_get("backend")?,
        target: row.try_get("target")?,
        signature: row.try_get("signature")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}
