//! Tenants and their API keys (stored only as hashes).

use sqlx::Row;

use super::Db;

/// A tenant.
#[derive(Debug, Clone)]
pub struct TenantRecord {
    /// The namespace in URLs (`/fn/{tenant}/...`) and in every other table.
    pub name: String,
    /// When it was created (Unix milliseconds), shown in listings.
    pub created_at_ms: i64,
    /// Quotas set through the admin API, as JSON.
    pub quotas: String,
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The key is revoked; its hash, to drop it from caches.
    Revoked {
        /// The revoked key's hash.
        key_hash: String,
    },
    /// No live key by that id is visible to the caller.
    NotFound,
    /// The key is an admin key and the caller is not an admin.
    AdminOnly,
    /// The key is the last live admin key; revoking it would lock the operator out.
    LastAdmin,
}

/// A live (not revoked) API key, without its secret.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    /// The public id, to list or revoke the key.
    pub id: String,
    /// The tenant the key acts as.
    pub tenant: String,
    /// SHA-256 of the secret: keys are looked up by it, never stored in clear.
    pub key_hash: String,
    /// Admin keys may manage every tenant.
    pub admin: bool,
}

impl Db {
    /// Creates a tenant; `false` when it already exists.
    pub async fn insert_tenant(&self, name: &str, now_ms: i64) -> anyhow::Result<bool> {
        let inserted =
            sqlx::query("INSERT INTO tenants (name, created_at_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(now_ms)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(inserted > 0)
    }

    /// All tenants, by name.
    pub async fn tenants(&self) -> anyhow::Result<Vec<TenantRecord>> {
        let rows =
            sqlx::query("SELECT name, created_at_ms, quotas FROM tenants ORDER BY name").fetch_all(&self.pool).await?;
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
        let row =
            sqlx::query("SELECT quotas FROM tenants WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get("quotas")).transpose()?)
    }

    /// Whether a tenant exists.
    pub async fn tenant_exists(&self, name: &str) -> anyhow::Result<bool> {
        Ok(sqlx::query("SELECT 1 AS one FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
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

    /// Stores a key's hash unconditionally (the admin key at start and in a
    /// recovery must never be refused).
    pub async fn insert_key(&self, key: &KeyRecord, now_ms: i64) -> anyhow::Result<()> {
        Self::insert_key_in(&mut *self.pool.acquire().await?, key, now_ms).await
    }

    /// Stores a key's hash unless its tenant already has `max_live` live
    /// keys; `false` when it has. The count and the insert are one
    /// transaction holding the tenant's row, so parallel issues cannot pass
    /// the limit together.
    pub async fn insert_key_within(&self, key: &KeyRecord, max_live: u32, now_ms: i64) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        // A write first: it takes SQLite's write lock at once (so the count
        // cannot go stale before the insert) and, on PostgreSQL, locks the
        // tenant's row until the commit.
        sqlx::query("UPDATE tenants SET quotas = quotas WHERE name = $1").bind(&key.tenant).execute(&mut *tx).await?;
        let live: i64 = sqlx::query("SELECT COUNT(*) AS n FROM api_keys WHERE tenant = $1 AND revoked_at_ms IS NULL")
            .bind(&key.tenant)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if live >= i64::from(max_live) {
            return Ok(false);
        }
        Self::insert_key_in(&mut tx, key, now_ms).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_key_in(connection: &mut sqlx::AnyConnection, key: &KeyRecord, now_ms: i64) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO api_keys (id, tenant, key_hash, admin, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(&key.id)
            .bind(&key.tenant)
            .bind(&key.key_hash)
            .bind(i64::from(key.admin))
            .bind(now_ms)
            .execute(connection)
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

    /// Whether a live (not revoked) admin key exists.
    pub async fn live_admin_key_exists(&self) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM api_keys WHERE admin = 1 AND revoked_at_ms IS NULL")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Revokes key `id` for a caller of `caller_tenant`. A non-admin caller
    /// sees only its own tenant's keys and may not revoke admin keys; nobody
    /// may revoke the last live admin key.
    pub async fn revoke_key(
        &self,
        id: &str,
        caller_tenant: &str,
        caller_admin: bool,
        now_ms: i64,
    ) -> anyhow::Result<Revocation> {
        let mut tx = self.pool.begin().await?;
        // A write first: it takes SQLite's write lock at once and, on
        // PostgreSQL, locks every live admin key until the commit, so two
        // revocations of the last two admin keys cannot both see two left.
        sqlx::query("UPDATE api_keys SET revoked_at_ms = NULL WHERE admin = 1 AND revoked_at_ms IS NULL")
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query("SELECT tenant, admin, key_hash FROM api_keys WHERE id = $1 AND revoked_at_ms IS NULL")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(Revocation::NotFound);
        };
        let owner: String = row.try_get("tenant")?;
        let admin = row.try_get::<i64, _>("admin")? != 0;
        if !caller_admin && owner != caller_tenant {
            return Ok(Revocation::NotFound);
        }
        if admin && !caller_admin {
            return Ok(Revocation::AdminOnly);
        }
        if admin {
            let live: i64 = sqlx::query("SELECT COUNT(*) AS n FROM api_keys WHERE admin = 1 AND revoked_at_ms IS NULL")
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            if live <= 1 {
                return Ok(Revocation::LastAdmin);
            }
        }
        sqlx::query("UPDATE api_keys SET revoked_at_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Revocation::Revoked { key_hash: row.try_get("key_hash")? })
    }
}
