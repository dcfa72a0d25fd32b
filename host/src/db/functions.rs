//! Functions in the catalog: a version's typed view.

use super::Db;
use super::catalog::{CatalogChange, ObjectKind, ObjectVersion, Retention};

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
    /// Host-side failures in a row that open its circuit breaker; 0: no breaker.
    pub breaker_failures: i64,
    /// How long its breaker stays open before it lets one call through, in seconds.
    pub breaker_cooldown_s: i64,
    /// When it was deployed (Unix milliseconds), shown in listings.
    pub created_at_ms: i64,
}

/// What the catalog keeps of a function version beyond the common columns.
#[derive(serde::Serialize, serde::Deserialize)]
struct FunctionMeta {
    kind: String,
    memory_mb: i64,
    timeout_ms: i64,
    max_concurrency: i64,
    public: bool,
    allowed_hosts: String,
    models: Option<String>,
    /// Versions stored before breakers existed have none.
    #[serde(default)]
    breaker_failures: i64,
    #[serde(default)]
    breaker_cooldown_s: i64,
}

impl VersionRecord {
    fn to_object(&self) -> anyhow::Result<ObjectVersion> {
        let meta = FunctionMeta {
            kind: self.kind.clone(),
            memory_mb: self.memory_mb,
            timeout_ms: self.timeout_ms,
            max_concurrency: self.max_concurrency,
            public: self.public,
            allowed_hosts: self.allowed_hosts.clone(),
            models: self.models.clone(),
            breaker_failures: self.breaker_failures,
            breaker_cooldown_s: self.breaker_cooldown_s,
        };
        Ok(ObjectVersion {
            kind: ObjectKind::Function,
            tenant: self.tenant.clone(),
            name: self.name.clone(),
            version: self.version,
            digest: self.digest.clone(),
            size_bytes: self.size_bytes,
            created_at_ms: self.created_at_ms,
            meta: serde_json::to_string(&meta)?,
        })
    }

    fn from_object(object: ObjectVersion) -> anyhow::Result<Self> {
        let meta: FunctionMeta = serde_json::from_str(&object.meta)?;
        Ok(Self {
            tenant: object.tenant,
            name: object.name,
            version: object.version,
            digest: object.digest,
            kind: meta.kind,
            size_bytes: object.size_bytes,
            memory_mb: meta.memory_mb,
            timeout_ms: meta.timeout_ms,
            max_concurrency: meta.max_concurrency,
            public: meta.public,
            allowed_hosts: meta.allowed_hosts,
            models: meta.models,
            breaker_failures: meta.breaker_failures,
            breaker_cooldown_s: meta.breaker_cooldown_s,
            created_at_ms: object.created_at_ms,
        })
    }
}

impl Db {
    /// Every function's active version.
    pub async fn active_versions(&self) -> anyhow::Result<Vec<VersionRecord>> {
        self.active_objects(ObjectKind::Function).await?.into_iter().map(VersionRecord::from_object).collect()
    }

    /// All versions of one function, oldest first.
    pub async fn versions(&self, tenant: &str, name: &str) -> anyhow::Result<Vec<VersionRecord>> {
        self.object_versions(ObjectKind::Function, tenant, name)
            .await?
            .into_iter()
            .map(VersionRecord::from_object)
            .collect()
    }
}

impl CatalogChange {
    /// Stores a new function version with its component and makes it active;
    /// `record.version` is set to the number it got.
    pub async fn insert_version(&mut self, record: &mut VersionRecord, component: &[u8]) -> anyhow::Result<()> {
        let mut object = record.to_object()?;
        self.insert(&mut object, component).await?;
        record.version = object.version;
        Ok(())
    }

    /// Keeps a function's `keep` newest versions, the active one and the
    /// one before it (the rollback target); returns the removed digests.
    pub async fn prune_function(&mut self, tenant: &str, name: &str, keep: usize) -> anyhow::Result<Vec<String>> {
        self.prune(ObjectKind::Function, tenant, name, Retention { newest: keep, rollback_target: true }).await
    }
}
