//! Dataset versions in the one catalog: a built dataset's Parquet file is
//! stored once per digest under `DATA_DIR/datasets` (and, on PostgreSQL, in
//! the database, so other nodes can read it); its report is the version's
//! meta. Versions are never pruned: a dataset version never changes.
//!
//! An upload is spooled and built under `DATA_DIR/datasets/spool`, whose
//! files are removed when the upload ends, whatever the outcome, and at
//! start (a `kill -9` leaves them); a start also removes dataset files no
//! version keeps (a crash between storing the file and committing).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::{DatasetError, Format, FunctionPreprocessor, Preprocessor};
use crate::api::{DatasetOptions, DatasetReport, DatasetSummary};
use crate::db::{Db, ObjectKind, ObjectVersion};
use crate::tenancy::StorageQuota;

/// A tenant's datasets, every version.
pub struct DatasetStore {
    db: Db,
    dir: PathBuf,
    spool_dir: PathBuf,
    /// Serialises this node's changes, so a file is never removed while an
    /// upload of the same digest is being stored.
    changes: tokio::sync::Mutex<()>,
    /// Builds running at once; see [`BUILDS_AT_ONCE`].
    builds: tokio::sync::Semaphore,
}

/// Builds that may run at once on a node. A build holds its kept rows in
/// memory (up to about twice its file), so parallel uploads of many tenants
/// must not add up past the node's memory: the others wait, spooled on disk.
pub const BUILDS_AT_ONCE: usize = 2;

/// A file under the spool directory, removed when dropped.
pub struct SpoolFile {
    path: PathBuf,
}

impl SpoolFile {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        crate::files::remove_if_present(&self.path);
    }
}

impl DatasetStore {
    /// Opens the store under `data_dir`, removing what a crash left.
    pub async fn open(db: Db, data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("datasets");
        let spool_dir = dir.join("spool");
        if spool_dir.exists() {
            std::fs::remove_dir_all(&spool_dir).with_context(|| format!("cannot empty {}", spool_dir.display()))?;
        }
        std::fs::create_dir_all(&spool_dir).with_context(|| format!("cannot create {}", spool_dir.display()))?;
        let store = Self {
            db,
            dir,
            spool_dir,
            changes: tokio::sync::Mutex::new(()),
            builds: tokio::sync::Semaphore::new(BUILDS_AT_ONCE),
        };
        let referenced = store.db.referenced_digests(ObjectKind::Dataset).await?;
        let removed = crate::files::sweep(&store.dir, |name| {
            name.strip_suffix(".parquet").is_some_and(|digest| referenced.contains(digest))
        })?;
        if removed > 0 {
            tracing::info!(removed, "removed dataset files no version keeps");
        }
        Ok(store)
    }

    /// A new, empty file for an upload or a build, removed when dropped.
    pub fn spool_file(&self, what: &str) -> SpoolFile {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        SpoolFile { path: self.spool_dir.join(format!("{what}-{unique}")) }
    }

    /// Builds the spooled upload `input` into `output` (see
    /// [`super::build`]) on a blocking thread, once one of the node's
    /// [`BUILDS_AT_ONCE`] build slots is free.
    pub async fn build(
        &self,
        input: &Path,
        format: Format,
        options: DatasetOptions,
        preprocessor: Option<Arc<FunctionPreprocessor>>,
        output: &Path,
    ) -> Result<DatasetReport, DatasetError> {
        let _slot =
            self.builds.acquire().await.map_err(|_| DatasetError::Storage("the build slots are closed".to_owned()))?;
        let (input, output) = (input.to_path_buf(), output.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let preprocessor = preprocessor.as_deref().map(|p| p as &dyn Preprocessor);
            super::build(&input, format, &options, preprocessor, &output)
        })
        .await
        .map_err(|err| DatasetError::Storage(format!("the build stopped: {err}")))?
    }

    /// Stores the file `built` (a spool file) as `tenant/name`'s next
    /// version, described by `report`, within the tenant's `quota`; answers
    /// the report with its name, version, digest, size and time filled in.
    pub async fn put(
        &self,
        tenant: &str,
        name: &str,
        built: &Path,
        mut report: DatasetReport,
        quota: StorageQuota,
    ) -> Result<DatasetReport, DatasetError> {
        let (digest, size) = digest_file(built.to_path_buf()).await?;
        report.name = name.to_owned();
        report.digest = format!("sha256:{digest}");
        report.size = size;
        report.created_at_ms = crate::clock::now_ms();
        let _guard = self.changes.lock().await;
        let path = self.path(&digest);
        tokio::fs::rename(built, &path).await.map_err(|err| DatasetError::io("storing the dataset", err))?;
        let stored = self.insert(tenant, &digest, size, &report, quota).await;
        match stored {
            Ok(version) => {
                report.version = version;
                Ok(report)
            }
            Err(err) => {
                self.forget_if_unused(&digest).await;
                Err(err)
            }
        }
    }

    async fn insert(
        &self,
        tenant: &str,
        digest: &str,
        size: u64,
        report: &DatasetReport,
        quota: StorageQuota,
    ) -> Result<u64, DatasetError> {
        let bytes = if self.db.is_shared() {
            tokio::fs::read(self.path(digest)).await.map_err(|err| DatasetError::io("reading the dataset", err))?
        } else {
            Vec::new()
        };
        let mut object = ObjectVersion {
            kind: ObjectKind::Dataset,
            tenant: tenant.to_owned(),
            name: report.name.clone(),
            version: 0,
            digest: digest.to_owned(),
            size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
            created_at_ms: report.created_at_ms,
            meta: serde_json::to_string(report).context("cannot encode the report")?,
        };
        let mut change = self.db.change(tenant).await?;
        let before = change.footprint(tenant).await?;
        change.insert(&mut object, &bytes).await?;
        quota.check(before, change.footprint(tenant).await?)?;
        change.commit().await?;
        Ok(u64::try_from(object.version).unwrap_or_default())
    }

    /// The report of `tenant/name` at `version` (the latest when `None`).
    pub async fn get(&self, tenant: &str, name: &str, version: Option<u64>) -> Result<DatasetReport, DatasetError> {
        let object = self.version(tenant, name, version).await?;
        report_of(&object)
    }

    /// The latest version of each of `tenant`'s datasets, by name.
    pub async fn list(&self, tenant: &str) -> Result<Vec<DatasetSummary>, DatasetError> {
        let objects = self.db.tenant_objects(ObjectKind::Dataset, tenant).await?;
        objects.iter().map(|o| Ok(DatasetSummary::of(&report_of(o)?))).collect()
    }

    /// Deletes every version of `tenant/name`.
    pub async fn delete(&self, tenant: &str, name: &str) -> Result<(), DatasetError> {
        let _guard = self.changes.lock().await;
        let mut change = self.db.change(tenant).await?;
        let digests = change
            .delete(ObjectKind::Dataset, tenant, name)
            .await?
            .ok_or_else(|| DatasetError::NotFound(format!("dataset `{name}`")))?;
        let released = change.release(digests).await?;
        change.commit().await?;
        for digest in released {
            crate::files::remove_if_present(&self.path(&digest));
        }
        Ok(())
    }

    /// The stored file of `tenant/name` at `version` (the latest when
    /// `None`), fetched from the database when another node stored it.
    pub async fn file(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<(PathBuf, DatasetReport), DatasetError> {
        let object = self.version(tenant, name, version).await?;
        let path = self.path(&object.digest);
        if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            let bytes = self.db.blob(&object.digest).await?.ok_or_else(|| {
                DatasetError::Storage(format!("dataset file {} is on no node and not in the database", object.digest))
            })?;
            crate::files::store_once(&path, &bytes).await.context("cannot keep the dataset file")?;
        }
        Ok((path, report_of(&object)?))
    }

    async fn version(&self, tenant: &str, name: &str, version: Option<u64>) -> Result<ObjectVersion, DatasetError> {
        let versions = self.db.object_versions(ObjectKind::Dataset, tenant, name).await?;
        let found = match version {
            None => versions.into_iter().next_back(),
            Some(wanted) => versions.into_iter().find(|o| u64::try_from(o.version).ok() == Some(wanted)),
        };
        found.ok_or_else(|| match version {
            None => DatasetError::NotFound(format!("dataset `{name}`")),
            Some(wanted) => DatasetError::NotFound(format!("version {wanted} of dataset `{name}`")),
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.parquet"))
    }

    async fn forget_if_unused(&self, digest: &str) {
        match self.db.is_referenced(digest).await {
            Ok(false) => crate::files::remove_if_present(&self.path(digest)),
            Ok(true) => {}
            Err(err) => {
                tracing::warn!(error = format!("{err:#}"), digest, "cannot check a dataset file; the next start will")
            }
        }
    }
}

fn report_of(object: &ObjectVersion) -> Result<DatasetReport, DatasetError> {
    let mut report: DatasetReport =
        serde_json::from_str(&object.meta).context("a stored dataset report cannot be read")?;
    report.version = u64::try_from(object.version).unwrap_or_default();
    Ok(report)
}

/// SHA-256 (hex) and size of a file, read on a blocking thread.
async fn digest_file(path: PathBuf) -> Result<(String, u64), DatasetError> {
    let hashed = tokio::task::spawn_blocking(move || -> std::io::Result<(String, u64)> {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let size = std::io::copy(&mut file, &mut hasher)?;
        Ok((hex::encode(hasher.finalize()), size))
    })
    .await
    .map_err(|err| DatasetError::Storage(format!("hashing the dataset stopped: {err}")))?;
    hashed.map_err(|err| DatasetError::io("hashing the dataset", err))
}
