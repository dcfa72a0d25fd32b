//! Tenants' API keys: issued once, stored only as a SHA-256 hash, looked up
//! by hash and compared in constant time. Unknown, revoked and malformed keys
//! all get the same `401`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::now_ms;
use crate::db::{Db, KeyRecord, Revocation};
use crate::names::DEFAULT_TENANT;
use crate::tenancy::QuotaExceeded;

/// Prefix of every secret key, so leaked keys are easy to recognise.
const KEY_PREFIX: &str = "muon_sk_";
/// How long a verified key is trusted without asking the database again.
/// Revocation is immediate on the node that revoked; other nodes sharing the
/// database see it within this time.
const CACHE_TTL: Duration = Duration::from_secs(2);

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The tenant whose key was presented: the namespace its calls act in.
    pub tenant: String,
    /// The key's public id (never the secret), for logs and usage records.
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
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The public id, to list or revoke the key later.
    pub id: String,
    /// The tenant the key acts as.
    pub tenant: String,
    /// The secret bearer token; only its hash is stored.
    pub key: String,
}

/// Key verification with a short-lived cache.
pub struct Auth {
    db: Db,
    cache: DashMap<String, (Principal, Instant)>,
}

impl Auth {
    /// Creates tenant `default` and, when no live admin key exists (the
    /// first start, or every admin key was revoked), an admin key written to
    /// `DATA_DIR/admin.key` (mode 0600).
    pub async fn bootstrap(db: Db, data_dir: &Path) -> anyhow::Result<Self> {
        db.insert_tenant(DEFAULT_TENANT, now_ms()).await?;
        if !db.live_admin_key_exists().await? {
            let issued = reset_admin_key(&db, data_dir).await?;
            tracing::info!(key_id = %issued.id, path = %data_dir.join("admin.key").display(), "created the admin key");
        }
        Ok(Self { db, cache: DashMap::new() })
    }

    /// The caller behind an `Authorization: Bearer KEY` header.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, AuthError> {
        let key = bearer_token(headers)
            .filter(|k| k.starts_with(KEY_PREFIX) && k.len() < 200)
            .ok_or(AuthError::Unauthorized)?;
        let hash = hash_key(key);
        if let Some(entry) = self.cache.get(&hash) {
            let (principal, checked) = entry.value();
            if checked.elapsed() < CACHE_TTL {
                return Ok(principal.clone());
            }
        }
        let record = self.db.key_by_hash(&hash).await?.ok_or(AuthError::Unauthorized)?;
        // The lookup was by hash; compare again without early exit so the
        // time taken says nothing about how much of a guess matched.
        if !bool::from(record.key_hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(AuthError::Unauthorized);
        }
        let principal = Principal { tenant: record.tenant, key_id: record.id, admin: record.admin };
        self.cache.insert(hash, (principal.clone(), Instant::now()));
        Ok(principal)
    }

    /// Issues a new key for `tenant`, which may hold at most `max_live` live keys.
    pub async fn issue(&self, tenant: &str, admin: bool, max_live: u32) -> Result<IssuedKey, AuthError> {
        let (record, issued) = new_key(tenant, admin)?;
        if !self.db.insert_key_within(&record, max_live, now_ms()).await? {
            return Err(AuthError::TooManyKeys(QuotaExceeded {
                message: format!(
                    "tenant `{tenant}` already has {max_live} live keys, its limit; revoke one (DELETE /v1/keys/ID) first"
                ),
                retry_after_s: 3600,
            }));
        }
        Ok(issued)
    }

    /// Revokes key `id`. A non-admin may revoke only its own tenant's
    /// non-admin keys; the last live admin key cannot be revoked.
    pub async fn revoke(&self, caller: &Principal, id: &str) -> Result<(), AuthError> {
        match self.db.revoke_key(id, &caller.tenant, caller.admin, now_ms()).await? {
            Revocation::Revoked { key_hash } => {
                self.cache.remove(&key_hash);
                Ok(())
            }
            Revocation::NotFound => Err(AuthError::NotFound(format!("key `{id}`"))),
            Revocation::AdminOnly => {
                Err(AuthError::Forbidden(format!("key `{id}` is an admin key; only an admin key may revoke it")))
            }
            Revocation::LastAdmin => Err(AuthError::LastAdmin(format!(
                "key `{id}` is the last live admin key; issue another admin key first \
                 (POST /v1/tenants/default/keys with {{\"admin\": true}}), then revoke this one"
            ))),
        }
    }
}

/// Issues a new admin key of tenant `default` and writes it to
/// `DATA_DIR/admin.key`: the first start, and the recovery when every admin
/// key is lost or revoked (`muon admin reset-key`). Other admin keys stay live.
pub async fn reset_admin_key(db: &Db, data_dir: &Path) -> anyhow::Result<IssuedKey> {
    db.insert_tenant(DEFAULT_TENANT, now_ms()).await?;
    let (record, issued) = new_key(DEFAULT_TENANT, true).map_err(|e| anyhow::anyhow!("{e}"))?;
    db.insert_key(&record, now_ms()).await?;
    write_secret(&data_dir.join("admin.key"), &issued.key)?;
    Ok(issued)
}

/// The token of an `Authorization: Bearer TOKEN` header; the scheme is
/// case-insensitive (RFC 9110, section 11.1).
fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A fresh key: the record to store (hash only) and the secret to show once.
fn new_key(tenant: &str, admin: bool) -> Result<(KeyRecord, IssuedKey), AuthError> {
    let key = format!("{KEY_PREFIX}{}", random_hex(32)?);
    let record =
        KeyRecord { id: format!("key_{}", random_hex(8)?), tenant: tenant.to_owned(), key_hash: hash_key(&key), admin };
    let issued = IssuedKey { id: record.id.clone(), tenant: record.tenant.clone(), key };
    Ok((record, issued))
}

fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn random_hex(bytes: usize) -> Result<String, AuthError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| AuthError::Internal(anyhow::anyhow!("no randomness: {e}")))?;
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

/// A key that does not authenticate, or a key change refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No valid API key. The same for missing, malformed, unknown and revoked keys.
    #[error("missing or invalid API key; send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// The caller may not do this to that key.
    #[error("{0}")]
    Forbidden(String),
    /// No such key visible to the caller.
    #[error("{0} was not found")]
    NotFound(String),
    /// The tenant holds as many live keys as it may.
    #[error(transparent)]
    TooManyKeys(QuotaExceeded),
    /// Revoking the last live admin key would lock every admin out.
    #[error("{0}")]
    LastAdmin(String),
    /// The database or the system's randomness failed.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let token = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, http::HeaderValue::from_str(value).ok()?);
            bearer_token(&headers).map(str::to_owned)
        };
        for value in ["Bearer k", "bearer k", "BEARER k", "bEaReR   k "] {
            assert_eq!(token(value).as_deref(), Some("k"), "{value}");
        }
        for value in ["Basic k", "Bearerk", "Bearer", "k"] {
            assert_eq!(token(value), None, "{value}");
        }
    }
}
