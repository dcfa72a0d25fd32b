//! Models in the catalog: a version's typed view.

use super::Db;
use super::catalog::{ObjectKind, ObjectVersion};

/// A stored model version (its bytes live in the data directory, by digest).
#[derive(Debug, Clone)]
pub struct ModelRow {
    /// The owning tenant: models are named per tenant.
    pub tenant: String,
    /// The name functions load it by.
    pub name: String,
    /// Counts up from 1 per name: an upload to a name makes a new version.
    pub version: i64,
    /// SHA-256 of the model's bytes, which name its file.
    pub digest: String,
    /// The bytes' size, counted against the tenant's storage quota.
    pub size_bytes: i64,
    /// The inference backend chosen at upload (`tract` or `onnxruntime`).
    pub backend: String,
    /// The device it runs on (`cpu` or `gpu`).
    pub target: String,
    /// The signature as JSON.
    pub signature: serde_json::Value,
    /// The training job that made it, when a job exported it.
    pub job: Option<String>,
    /// When it was uploaded (Unix milliseconds), shown in listings.
    pub created_at_ms: i64,
    /// Most rows of one batched compute; 0 when computes are not batched.
    pub batch_max: u32,
    /// How long a batch waits for more requests, in microseconds.
    pub batch_wait_us: u64,
}

/// What the catalog keeps of a model version beyond the common columns.
#[derive(serde::Serialize, serde::Deserialize)]
struct ModelMeta {
    backend: String,
    target: String,
    signature: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job: Option<String>,
    // Absent from versions stored before batching existed: not batched.
    #[serde(default, skip_serializing_if = "is_zero")]
    batch_max: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    batch_wait_us: u64,
}

fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl ModelRow {
    /// The catalog's form of this model (its version is set when inserted).
    pub fn to_object(&self) -> anyhow::Result<ObjectVersion> {
        let meta = ModelMeta {
            backend: self.backend.clone(),
            target: self.target.clone(),
            signature: self.signature.clone(),
            job: self.job.clone(),
            batch_max: self.batch_max,
            batch_wait_us: self.batch_wait_us,
        };
        Ok(ObjectVersion {
            kind: ObjectKind::Model,
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
        let meta: ModelMeta = serde_json::from_str(&object.meta)?;
        Ok(Self {
            tenant: object.tenant,
            name: object.name,
            version: object.version,
            digest: object.digest,
            size_bytes: object.size_bytes,
            backend: meta.backend,
            target: meta.target,
            signature: meta.signature,
            job: meta.job,
            created_at_ms: object.created_at_ms,
            batch_max: meta.batch_max,
            batch_wait_us: meta.batch_wait_us,
        })
    }
}

impl Db {
    /// Every model's active version, of every tenant.
    pub async fn models(&self) -> anyhow::Result<Vec<ModelRow>> {
        self.active_objects(ObjectKind::Model).await?.into_iter().map(ModelRow::from_object).collect()
    }
}
