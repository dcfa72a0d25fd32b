//! Models as tenant objects: upload, list, delete, and the lookup behind
//! wasi-nn's `load-by-name`.
//!
//! Bytes are stored once per digest under `DATA_DIR/models`, the names in the
//! catalog database; a model is loaded into its backend at upload (so a bad
//! model is refused at once) and lazily after a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use dashmap::DashMap;
use sha2::{Digest, Sha256};

use super::backend::{BackendKind, Device};
use super::batch::{BatchCounts, Batcher, Batching, batchable};
use super::error::NnError;
use super::signature::{Signature, inspect_onnx};
use super::watch::ModelWatch;
use super::{Graph, Inference, ModelBytes, ModelSpec};
use crate::db::{Db, ModelRow, NewAudit, ObjectKind, Retention};
use crate::stats::{SeriesKey, SeriesKind, StatsStore};
use crate::tenancy::{QuotaExceeded, StorageQuota};

/// A tenant's model.
#[derive(Debug, Clone)]
pub struct ModelRecord {
    /// The name functions load it by.
    pub name: String,
    /// The owning tenant.
    pub tenant: String,
    /// Counts up from 1 per name: each upload to the name is a new version.
    pub version: i64,
    /// SHA-256 of the model's bytes: the same bytes are stored and loaded once.
    pub digest: String,
    /// The bytes' size, counted against the tenant's storage quota.
    pub size: u64,
    /// The inference backend it runs on.
    pub backend: BackendKind,
    /// The device it runs on.
    pub target: Device,
    /// The training job that made it, when a job exported it.
    pub job: Option<String>,
    /// What a guest must pass, in graph order.
    pub inputs: Vec<super::TensorSpec>,
    /// What a guest gets back, in graph order.
    pub outputs: Vec<super::TensorSpec>,
    /// When it was uploaded (Unix milliseconds).
    pub created_at_ms: i64,
    /// How its concurrent computes are merged.
    pub batching: Batching,
    signature: Arc<Signature>,
}

impl ModelRecord {
    /// Whether the model can be batched at all (see [`batchable`]).
    pub fn batchable(&self) -> bool {
        batchable(&self.signature)
    }
}

/// What an upload asks for beyond the bytes.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// `onnx` or `autodetect` (the default).
    pub encoding: Option<String>,
    /// The backend; the host's default when unset.
    pub backend: Option<BackendKind>,
    /// Where to compute; CPU when unset.
    pub target: Option<Device>,
    /// The training job that made it, when a job exported it.
    pub job: Option<String>,
    /// How its concurrent computes are merged; off by default.
    pub batching: Batching,
}

/// Which of its tenant's models a function may load by name.
#[derive(Debug, Clone)]
pub enum ModelAccess {
    /// Every model of the tenant.
    All,
    /// Only these names.
    Only(Arc<[String]>),
}

impl ModelAccess {
    /// Parses the stored form: `None` for all, else a comma-separated list.
    pub fn from_stored(stored: Option<&str>) -> Self {
        match stored {
            None => Self::All,
            Some(list) => Self::Only(list.split(',').filter(|n| !n.is_empty()).map(str::to_owned).collect()),
        }
    }

    fn allows(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

/// The model catalog of every tenant.
pub struct ModelStore {
    db: Db,
    dir: PathBuf,
    inference: Arc<Inference>,
    records: DashMap<String, Arc<ModelRecord>>,
    /// Serialises uploads and deletes, so a name never points at half a change
    /// and a model file is never removed while an upload is using it.
    changes: tokio::sync::Mutex<()>,
    /// Where computes are recorded, per model version.
    stats: Arc<StatsStore>,
    /// The watch of each model served by name, by `tenant/name`.
    pub(super) watches: DashMap<String, Arc<ModelWatch>>,
    /// Models that cannot be loaded, by `tenant/name` (see `health.rs`).
    pub(super) unloadable: DashMap<String, super::health::Unloadable>,
    /// The batcher of each batched model, with its version, by `tenant/name`.
    batchers: DashMap<String, (i64, Arc<Batcher>)>,
}

impl ModelStore {
    /// Opens the catalog; models are loaded into backends on first use
    /// ([`ModelStore::check_loadable`] checks them all at once); computes are
    /// recorded into `stats`.
    pub async fn open(
        db: Db,
        data_dir: &Path,
        inference: Arc<Inference>,
        stats: Arc<StatsStore>,
    ) -> anyhow::Result<Self> {
        let dir = data_dir.join("models");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let records = DashMap::new();
        for row in db.models().await? {
            let record = record_from_row(row)?;
            records.insert(key(&record.tenant, &record.name), Arc::new(record));
        }
        Ok(Self {
            db,
            dir,
            inference,
            records,
            changes: tokio::sync::Mutex::new(()),
            stats,
            watches: DashMap::new(),
            unloadable: DashMap::new(),
            batchers: DashMap::new(),
        })
    }

    /// The inference service models are loaded into.
    pub fn inference(&self) -> &Arc<Inference> {
        &self.inference
    }

    /// Stores `bytes` as `tenant/name`: checks the model, loads it into its
    /// backend, then records it as the name's new version, replacing what the
    /// name held; the tenant's `quota` is checked in the transaction that
    /// stores it.
    pub async fn put(
        &self,
        tenant: &str,
        name: &str,
        bytes: Bytes,
        options: ModelOptions,
        quota: StorageQuota,
    ) -> Result<Arc<ModelRecord>, ModelError> {
        match options.encoding.as_deref() {
            None | Some("onnx" | "autodetect") => {}
            Some(other) => {
                return Err(ModelError::BadOption(format!(
                    "encoding `{other}` is not supported; muon serves ONNX models (encoding=onnx or autodetect)"
                )));
            }
        }
        let invalid = |err: NnError| ModelError::Invalid(err.message);
        let backend =
            self.inference.choose_backend(options.backend).map_err(|err| ModelError::BadOption(err.message))?;
        let target = options.target.unwrap_or(Device::Cpu);
        // One change at a time, from the file written to the name recorded,
        // so a failed upload never removes a file another one is about to use.
        let _guard = self.changes.lock().await;
        let digest = hex::encode(Sha256::digest(&bytes));
        let bytes: Arc<[u8]> = Arc::from(bytes.as_ref());
        let parse_bytes = Arc::clone(&bytes);
        let signature = Arc::new(
            self.inference
                .run_blocking(tenant, move || inspect_onnx(&parse_bytes))
                .await
                .map_err(invalid)?
                .map_err(invalid)?,
        );
        store_file(&self.path(&digest), &digest, &bytes).await?;
        let load_bytes = Arc::clone(&bytes);
        let spec = ModelSpec {
            tenant: Arc::from(tenant),
            digest: digest.clone(),
            backend,
            device: target,
            signature: Arc::clone(&signature),
        };
        let graph = match self.inference.load(spec, Box::new(move || Ok(load_bytes))).await {
            Ok(graph) => graph,
            Err(err) => {
                // Leave no orphan file behind a model no backend can load.
                self.forget_if_unused(&digest).await;
                return Err(invalid(err));
            }
        };
        let mut record = ModelRecord {
            name: name.to_owned(),
            tenant: tenant.to_owned(),
            version: 0,
            digest,
            size: bytes.len() as u64,
            backend,
            target: graph.model.device(),
            job: options.job,
            inputs: signature.inputs.clone(),
            outputs: signature.outputs.clone(),
            created_at_ms: crate::clock::now_ms(),
            batching: options.batching,
            signature,
        };
        match self.store(&mut record, &bytes, quota).await {
            Ok(()) => {}
            Err(err) => {
                self.forget_if_unused(&record.digest).await;
                return Err(err);
            }
        }
        let record = Arc::new(record);
        self.unloadable.remove(&key(tenant, name));
        self.audit_load(&record, "at upload").await;
        let replaced = self.records.insert(key(tenant, name), Arc::clone(&record));
        if let Some(old) = replaced.filter(|old| old.digest != record.digest) {
            self.forget_if_unused(&old.digest).await;
        }
        Ok(record)
    }

    /// Writes `record` to the catalog as its name's new version, keeping no
    /// older one (an upload replaces), within the tenant's `quota`.
    async fn store(&self, record: &mut ModelRecord, bytes: &[u8], quota: StorageQuota) -> Result<(), ModelError> {
        let mut object = row_from_record(record)?.to_object()?;
        let mut change = self.db.change(&record.tenant).await?;
        let before = change.footprint(&record.tenant).await?;
        change.insert(&mut object, bytes).await?;
        let pruned = change.prune(ObjectKind::Model, &record.tenant, &record.name, REPLACE).await?;
        quota.check(before, change.footprint(&record.tenant).await?)?;
        change.release(pruned).await?;
        change.commit().await?;
        record.version = object.version;
        Ok(())
    }

    /// Changes how `tenant/name`'s computes are batched: the same bytes
    /// stored as the name's next version with `batching`, which replaces
    /// the one before, as an upload would.
    pub async fn set_batching(
        &self,
        tenant: &str,
        name: &str,
        batching: Batching,
        quota: StorageQuota,
    ) -> Result<Arc<ModelRecord>, ModelError> {
        let _guard = self.changes.lock().await;
        let old = self.get(tenant, name).ok_or_else(|| ModelError::NotFound(format!("model `{name}`")))?;
        let bytes = self.bytes(&old).await?;
        let mut record = ModelRecord { batching, created_at_ms: crate::clock::now_ms(), ..old.as_ref().clone() };
        self.store(&mut record, &bytes, quota).await?;
        let record = Arc::new(record);
        self.records.insert(key(tenant, name), Arc::clone(&record));
        Ok(record)
    }

    /// What `record`'s batcher did on this node, if its version is batched here.
    pub fn batch_counts(&self, record: &ModelRecord) -> Option<BatchCounts> {
        let batcher = self.batchers.get(&key(&record.tenant, &record.name))?;
        (batcher.0 == record.version).then(|| batcher.1.counts())
    }

    /// Every model of every tenant.
    pub(super) fn records(&self) -> impl Iterator<Item = Arc<ModelRecord>> {
        let all: Vec<Arc<ModelRecord>> = self.records.iter().map(|r| Arc::clone(r.value())).collect();
        all.into_iter()
    }

    /// The catalog database.
    pub(super) fn db(&self) -> &Db {
        &self.db
    }

    /// A tenant's model by name.
    pub fn get(&self, tenant: &str, name: &str) -> Option<Arc<ModelRecord>> {
        self.records.get(&key(tenant, name)).map(|r| Arc::clone(r.value()))
    }

    /// A tenant's models, by name.
    pub fn list(&self, tenant: &str) -> Vec<Arc<ModelRecord>> {
        let mut models: Vec<_> =
            self.records.iter().filter(|r| r.tenant == tenant).map(|r| Arc::clone(r.value())).collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        models
    }

    /// Deletes a model's name; its bytes go when no name uses them.
    pub async fn delete(&self, tenant: &str, name: &str) -> Result<(), ModelError> {
        let _guard = self.changes.lock().await;
        let mut change = self.db.change(tenant).await?;
        let digests = change
            .delete(ObjectKind::Model, tenant, name)
            .await?
            .ok_or_else(|| ModelError::NotFound(format!("model `{name}`")))?;
        change.release(digests).await?;
        change.commit().await?;
        self.forget_watch(tenant, name);
        if let Some((_, old)) = self.records.remove(&key(tenant, name)) {
            self.forget_if_unused(&old.digest).await;
        }
        Ok(())
    }

    /// Keeps this node's catalog in step with other nodes sharing the
    /// database: every `period`, names added, changed or removed elsewhere.
    pub async fn follow(self: Arc<Self>, period: std::time::Duration) {
        crate::db::follow(period, "models", || async { self.sync().await.map_err(|err| format!("{err:#}")) }).await;
    }

    async fn sync(&self) -> anyhow::Result<()> {
        // Rows read before the lock could miss an upload that commits in
        // between, and the `retain` below would then drop the new model.
        let _guard = self.changes.lock().await;
        let rows = self.db.models().await?;
        let mut seen = std::collections::HashSet::new();
        for row in rows {
            let label = key(&row.tenant, &row.name);
            let changed = self.records.get(&label).is_none_or(|r| r.version != row.version);
            if changed {
                let record = Arc::new(record_from_row(row)?);
                tracing::info!(model = %label, digest = %record.digest, "model picked up from the database");
                self.records.insert(label.clone(), Arc::clone(&record));
                self.check_one(&record).await;
            }
            seen.insert(label);
        }
        let gone: Vec<Arc<ModelRecord>> =
            self.records.iter().filter(|r| !seen.contains(r.key())).map(|r| Arc::clone(r.value())).collect();
        for record in gone {
            self.forget_watch(&record.tenant, &record.name);
        }
        self.records.retain(|label, _| seen.contains(label));
        Ok(())
    }

    /// The loaded model behind `name`, if `access` allows it: what
    /// `load-by-name` returns. Microseconds once loaded.
    pub async fn graph(&self, tenant: &str, name: &str, access: &ModelAccess) -> Result<Graph, NnError> {
        let record = self.get(tenant, name).filter(|_| access.allows(name)).ok_or_else(|| {
            NnError::new(super::ErrorCode::NotFound, format!("no model named `{name}` is available to this function"))
        })?;
        let (mut graph, fresh) = match self.inference.load_reporting(self.spec(&record), self.reader(&record)).await {
            Ok(loaded) => loaded,
            Err(err) => {
                self.mark_unloadable(&record, &err.message);
                return Err(err);
            }
        };
        if fresh {
            self.unloadable.remove(&key(tenant, name));
            self.audit_load(&record, "at first use").await;
        }
        graph.watch = Some(self.watch(&record));
        graph.batcher = self.batcher(&record).map(|batcher| Arc::new(batcher.hold()));
        Ok(graph)
    }

    /// The batcher of `record`'s version, started at its first use by name,
    /// when the model batches and can be batched.
    fn batcher(&self, record: &ModelRecord) -> Option<Arc<Batcher>> {
        if !record.batching.is_on() || !record.batchable() {
            return None;
        }
        let start = || (record.version, Arc::new(Batcher::start(Arc::clone(&self.inference), record.batching)));
        let mut slot = self.batchers.entry(key(&record.tenant, &record.name)).or_insert_with(start);
        if slot.0 != record.version {
            // The version before's task ends once its last compute is answered.
            *slot = start();
        }
        Some(Arc::clone(&slot.1))
    }

    /// What loading `record` takes: its digest, backend, device and signature.
    pub(super) fn spec(&self, record: &ModelRecord) -> ModelSpec {
        ModelSpec {
            tenant: Arc::from(record.tenant.as_str()),
            digest: record.digest.clone(),
            backend: record.backend,
            device: record.target,
            signature: Arc::clone(&record.signature),
        }
    }

    /// Reads `record`'s bytes on a load thread, checked against its digest.
    pub(super) fn reader(&self, record: &ModelRecord) -> ModelBytes {
        let (path, digest) = (self.path(&record.digest), record.digest.clone());
        let shared = self.db.is_shared().then(|| (self.db.clone(), tokio::runtime::Handle::current()));
        Box::new(move || read_model(&path, digest.as_str(), shared))
    }

    /// The watch of `record`'s version, made at its first use by name.
    fn watch(&self, record: &ModelRecord) -> Arc<ModelWatch> {
        let label = key(&record.tenant, &record.name);
        if let Some(watch) = self.watches.get(&label).filter(|w| w.version == record.version) {
            return Arc::clone(watch.value());
        }
        let series = self.stats.series(SeriesKey {
            kind: SeriesKind::Model,
            tenant: Arc::from(record.tenant.as_str()),
            name: Arc::from(record.name.as_str()),
            version: record.version,
        });
        let watch = Arc::new(ModelWatch::new(
            &record.tenant,
            &record.name,
            record.version,
            record.job.clone(),
            &record.signature,
            series,
        ));
        self.watches.insert(label, Arc::clone(&watch));
        watch
    }

    /// Forgets what was watched of a deleted model: its statistics, its
    /// watch, whether it was unloadable.
    fn forget_watch(&self, tenant: &str, name: &str) {
        let label = key(tenant, name);
        self.watches.remove(&label);
        self.batchers.remove(&label);
        self.unloadable.remove(&label);
        self.stats.forget(SeriesKind::Model, tenant, name);
    }

    /// Appends a `model_load` event to the audit log.
    async fn audit_load(&self, record: &ModelRecord, when: &str) {
        let message = format!(
            "model {} version {} loaded {when} ({} on {})",
            record.name,
            record.version,
            record.backend.as_str(),
            record.target.as_str()
        );
        self.db
            .audit_or_log(NewAudit {
                tenant: &record.tenant,
                kind: "model_load",
                subject: &record.name,
                message: &message,
                detail: serde_json::json!({ "version": record.version, "digest": record.digest,
                    "backend": record.backend.as_str(), "target": record.target.as_str() }),
            })
            .await;
    }

    /// The bytes of `record`, from this node's file or, when another node
    /// stored it, from the database.
    pub async fn bytes(&self, record: &ModelRecord) -> Result<Bytes, ModelError> {
        match tokio::fs::read(self.path(&record.digest)).await {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let bytes = self.db.blob(&record.digest).await?.ok_or_else(|| {
                    ModelError::Internal(anyhow::anyhow!(
                        "model {} is on no node and not in the database",
                        record.digest
                    ))
                })?;
                Ok(Bytes::from(bytes))
            }
            Err(err) => Err(ModelError::Internal(anyhow::Error::from(err).context("cannot read the model file"))),
        }
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.onnx"))
    }

    async fn forget_if_unused(&self, digest: &str) {
        if self.records.iter().any(|r| r.digest == digest) {
            return;
        }
        self.inference.unload(digest);
        if let Err(err) = tokio::fs::remove_file(self.path(digest)).await {
            tracing::warn!(%err, digest, "cannot remove an unused model file");
        }
    }
}

/// An upload or deletion of a model refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An upload option is not supported.
    #[error("{0}")]
    BadOption(String),
    /// The bytes are not a model muon can serve.
    #[error("{0}")]
    Invalid(String),
    /// No such model.
    #[error("{0} was not found")]
    NotFound(String),
    /// The upload would pass the tenant's storage quota.
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    /// The disk or the database failed.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// A model's bytes from its file, or, on a node sharing the database, from the
/// database (written to the file for next time): when the file is missing,
/// or does not match its digest (damaged on disk). Runs on a load thread,
/// which may block on the runtime `handle`.
pub(super) fn read_model(
    path: &Path,
    digest: &str,
    shared: Option<(Db, tokio::runtime::Handle)>,
) -> Result<Arc<[u8]>, NnError> {
    let unreadable = |err: &dyn std::fmt::Display| NnError::runtime(&format!("cannot read model {digest}"), err);
    let problem = match std::fs::read(path) {
        Ok(bytes) if hex::encode(Sha256::digest(&bytes)) == digest => return Ok(Arc::from(bytes)),
        Ok(_) => format!("its file {} does not match its digest (damaged on disk)", path.display()),
        Err(err) => format!("{}: {err}", path.display()),
    };
    let Some((db, handle)) = shared else { return Err(unreadable(&problem)) };
    let bytes = handle
        .block_on(db.blob(digest))
        .map_err(|err| unreadable(&format!("{problem}; the database: {err:#}")))?
        .ok_or_else(|| unreadable(&format!("{problem}, and the database has no copy")))?;
    if hex::encode(Sha256::digest(&bytes)) != digest {
        return Err(unreadable(&format!("{problem}, and the database's copy does not match its digest either")));
    }
    if let Err(err) = crate::files::write_atomically(path, &bytes) {
        tracing::warn!(error = format!("{err:#}"), digest, "cannot keep a model fetched from the database");
    }
    Ok(Arc::from(bytes))
}

/// Writes a model's file unless an intact one is there: an upload of the
/// same bytes replaces a file damaged on disk (what repairs a model that
/// could not be loaded).
async fn store_file(path: &Path, digest: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let intact = tokio::fs::read(path).await.is_ok_and(|stored| hex::encode(Sha256::digest(&stored)) == digest);
    if !intact {
        crate::files::remove_if_present(path);
    }
    crate::files::store_once(path, bytes).await.context("cannot store the model")
}

/// An upload replaces what its name held: only the new version is kept.
const REPLACE: Retention = Retention { newest: 1, rollback_target: false };

fn key(tenant: &str, name: &str) -> String {
    format!("{tenant}/{name}")
}

fn row_from_record(record: &ModelRecord) -> anyhow::Result<ModelRow> {
    Ok(ModelRow {
        tenant: record.tenant.clone(),
        name: record.name.clone(),
        digest: record.digest.clone(),
        version: record.version,
        size_bytes: i64::try_from(record.size)?,
        backend: record.backend.as_str().to_owned(),
        target: record.target.as_str().to_owned(),
        signature: serde_json::to_value(record.signature.as_ref())?,
        job: record.job.clone(),
        created_at_ms: record.created_at_ms,
        batch_max: record.batching.max_rows,
        batch_wait_us: record.batching.wait_us,
    })
}

fn record_from_row(row: ModelRow) -> anyhow::Result<ModelRecord> {
    let signature: Signature = serde_json::from_value(row.signature).context("unreadable model signature")?;
    Ok(ModelRecord {
        backend: BackendKind::parse(&row.backend).with_context(|| format!("unknown backend `{}`", row.backend))?,
        target: Device::parse(&row.target).with_context(|| format!("unknown target `{}`", row.target))?,
        size: u64::try_from(row.size_bytes)?,
        inputs: signature.inputs.clone(),
        outputs: signature.outputs.clone(),
        signature: Arc::new(signature),
        name: row.name,
        tenant: row.tenant,
        version: row.version,
        digest: row.digest,
        job: row.job,
        created_at_ms: row.created_at_ms,
        batching: Batching { max_rows: row.batch_max, wait_us: row.batch_wait_us },
    })
}
