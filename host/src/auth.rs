//! Tenants' API keys: issued once, stored only as a SHA-256 hash, looked up
//! by hash and compared in constant time. Unknown, revoked and malformed keys
//! all get the same `401`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::db::{Db, KeyRecord};
use crate::error::ApiError;
use crate::registry::DEFAULT_TENANT;

/// Prefix of every secret key, so leaked keys are easy to recognise.
const KEY_PREFIX: &str = "muon_sk_";
/// How long a verified key is trusted without asking the database again.
/// Revocation is immediate on the node that revoked; other nodes sharing the
/// database see it within this time.
const CACHE_TTL: Duration = Duration::from_secs(2);

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: String,
    pub key_id: String,
    /// Admin keys act as their tenant and may manage every tenant.
    pub admin: bool,
}

impl Principal {
    /// Whether this caller may act on `tenant`'s resources.
    pub fn can_access(&self, tenant: &str) -> bool {
        self.admin || self.tenant == tenant
    }
}

/// A freshly issued key; the secret is shown once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuedKey {
    pub id: String,
    pub tenant: String,
    pub key: String,
}

/// Key verification with a short-lived cache.
pub struct Auth {
    db: Db,
    cache: DashMap<String, (Principal, Instant)>,
}

impl Auth {
    /// Creates tenant `default` and, on the first start, an admin key written
    /// to `DATA_DIR/admin.key` (mode 0600).
    pub async fn bootstrap(db: Db, data_dir: &Path) -> anyhow::Result<Self> {
        let auth = Self { db, cache: DashMap::new() };
        auth.db.insert_tenant(DEFAULT_TENANT, now_ms()).await?;
        if !auth.db.admin_key_exists().await? {
            let issued = auth.issue(DEFAULT_TENANT, true).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            write_secret(&data_dir.join("admin.key"), &issued.key)?;
            tracing::info!(path = %data_dir.join("admin.key").display(), "created the admin key");
        }
        Ok(auth)
    }

    /// The caller behind an `Authorization: Bearer KEY` header.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, ApiError> {
        let key = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| k.starts_with(KEY_PREFIX) && k.len() < 200)
            .ok_or(ApiError::Unauthorized)?;
        let hash = hash_key(key);
        if let Some(entry) = self.cache.get(&hash) {
            let (principal, checked) = entry.value();
            if checked.elapsed() < CACHE_TTL {
                return Ok(principal.clone());
            }
        }
        let record = self.db.key_by_hash(&hash).await?.ok_or(ApiError::Unauthorized)?;
        // The lookup was by hash; compare again without early exit so the
        // time taken says nothing about how much of a guess matched.
        if !bool::from(record.key_hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(ApiError::Unauthorized);
        }
        let principal = Principal { tenant: record.tenant, key_id: record.id, admin: record.admin };
        self.cache.insert(hash, (principal.clone(), Instant::now()));
        Ok(principal)
    }

    /// Issues a new key for `tenant`.
    pub async fn issue(&self, tenant: &str, admin: bool) -> Result<IssuedKey, ApiError> {
        let key = format!("{KEY_PREFIX}{}", random_hex(32)?);
        let record = KeyRecord { id: format!("key_{}", random_hex(8)?), tenant: tenant.to_owned(), key_hash: hash_key(&key), admin };
        self.db.insert_key(&record, now_ms()).await?;
        Ok(IssuedKey { id: record.id, tenant: record.tenant, key })
    }

    /// Revokes key `id`; a non-admin may revoke only its own tenant's keys.
    pub async fn revoke(&self, caller: &Principal, id: &str) -> Result<(), ApiError> {
        let scope = (!caller.admin).then_some(caller.tenant.as_str());
        let hash = self
            .db
            .revoke_key(id, scope, now_ms())
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("key `{id}`")))?;
        self.cache.remove(&hash);
        Ok(())
    }
}

fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn random_hex(bytes: usize) -> Result<String, ApiError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| ApiError::Internal(anyhow::anyhow!("no randomness: {e}")))?;
    Ok(hex::encode(buffer))
}

fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{secret}")?;
    Ok(())
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
