//! Tenants and their API keys (stored only as hashes).

use sqlx::Row;

use super::Db;

/// A tenant.
#[derive(Debug, Clone)]
pub struct TenantRecord {
    pub name: String,
    pub created_at_ms: i64,
    /// Quotas set through the admin API, as JSON.
    pub quotas: String,
}

/// A live (not revoked) API key, without its secret.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: String,
    pub tenant: String,
    pub key_hash: String,
    pub admin: bool,
}

impl Db {
    /// Creates a tenant; `false` when it already exists.
    pub async fn insert_tenant(&self, name: &str, now_ms: i64) -> anyhow::Result<bool> {
        let inserted = sqlx::query("INSERT INTO tenants (name, created_at_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(now_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(inserted > 0)
    }

    /// All tenants, by name.
    pub async fn tenants(&self) -> anyhow::Result<Vec<TenantRecord>> {
        let rows = sqlx::query("SELECT name, created_at_ms, quotas FROM tenants ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(TenantRecord {
                    name: r.try_get("name")?,
                    created_at_ms: r.try_get("created_at_ms")?,
                    quotas: r.try_get("quotas")?,
                })
            })
            .collect()
    }

    /// The quotas (JSON) set through the API for one tenant.
    pub async fn tenant_quotas(&self, name: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT quotas FROM tenants WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get("quotas")).transpose()?)
    }

    /// Whether a tenant exists.
    pub async fn tenant_exists(&self, name: &str) -> anyhow::Result<bool> {
        Ok(sqlx::query("SELECT 1 AS one FROM tenants WHERE name = $1").bind(name).fetch_optional(&self.pool).await?.is_some())
    }

    /// Replaces a tenant's quotas (JSON); `false` when there is no such tenant.
    pub async fn set_tenant_quotas(&self, name: &str, quotas: &str) -> anyhow::Result<bool> {
        let updated = sqlx::query("UPDATE tenants SET quotas = $2 WHERE name = $1")
            .bind(name)
            .bind(quotas)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(updated > 0)
    }

    /// Stores a key's hash.
    pub async fn insert_key(&self, key: &KeyRecord, now_ms: i64) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO api_keys (id, tenant, key_hash, admin, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(&key.id)
            .bind(&key.tenant)
            .bind(&key.key_hash)
            .bind(i64::from(key.admin))
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The live key with this hash.
    pub async fn key_by_hash(&self, key_hash: &str) -> anyhow::Result<Option<KeyRecord>> {
        let row = sqlx::query(
            "SELECT id, tenant, key_hash, admin FROM api_keys WHERE key_hash = $1 AND revoked_at_ms IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(KeyRecord {
                id: r.try_get("id")?,
                tenant: r.try_get("tenant")?,
                key_hash: r.try_get("key_hash")?,
                admin: r.try_get::<i64, _>("admin")? != 0,
            })
        })
        .transpose()
    }

    /// Whether any admin key exists.
    pub async fn admin_key_exists(&self) -> anyhow::Result<bool> {
        Ok(sqlx::query("SELECT 1 AS one FROM api_keys WHERE admin = 1").fetch_optional(&self.pool).await?.is_some())
    }

    /// Revokes key `id`, limited to `tenant` unless `None` (admin); returns
    /// the revoked key's hash, or `None` when no such live key is visible.
    pub async fn revoke_key(&self, id: &str, tenant: Option<&str>, now_ms: i64) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT tenant, key_hash FROM api_keys WHERE id = $1 AND revoked_at_ms IS NULL")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let owner: String = row.try_get("tenant")?;
        if tenant.is_some_and(|t| t != owner) {
            return Ok(None);
        }
        sqlx::query("UPDATE api_keys SET revoked_at_ms = $2 WHERE id = $1").bind(id).bind(now_ms).execute(&self.pool).await?;
        Ok(Some(row.try_get("key_hash")?))
    }
}
