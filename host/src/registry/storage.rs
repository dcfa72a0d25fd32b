//! The files a function version keeps on this node: its component under
//! `DATA_DIR/components` and its compiled artifact under `DATA_DIR/compiled`,
//! both named by digest and shared by every version with the same bytes.
//!
//! A digest's files go when no version (of any tenant, on any node) references
//! it and no deploy on this node is using it. Deploys in flight pin their
//! digest from before they compile until their change is committed or undone;
//! the pin check and the removal happen under one lock, so a deploy that
//! finds a file present can rely on it staying.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::db::{Db, ObjectKind};
use crate::engine::Runtime;

/// Component files and artifacts of this node.
pub struct LocalStore {
    components_dir: PathBuf,
    runtime: Arc<Runtime>,
    pins: Arc<Mutex<HashMap<String, usize>>>,
}

/// A digest in use by a deploy; unpinned on drop.
pub struct Pin {
    digest: String,
    pins: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        if let Ok(mut pins) = self.pins.lock()
            && let Some(count) = pins.get_mut(&self.digest)
        {
            *count -= 1;
            if *count == 0 {
                pins.remove(&self.digest);
            }
        }
    }
}

impl LocalStore {
    /// The store under `components_dir`, with artifacts in `runtime`'s cache.
    pub fn new(components_dir: PathBuf, runtime: Arc<Runtime>) -> Self {
        Self { components_dir, runtime, pins: Arc::default() }
    }

    /// Keeps `digest`'s files while the returned pin lives.
    pub fn pin(&self, digest: &str) -> Pin {
        if let Ok(mut pins) = self.pins.lock() {
            *pins.entry(digest.to_owned()).or_default() += 1;
        }
        Pin { digest: digest.to_owned(), pins: Arc::clone(&self.pins) }
    }

    /// The component file of `digest`.
    pub fn component_path(&self, digest: &str) -> PathBuf {
        self.components_dir.join(format!("{digest}.wasm"))
    }

    /// Removes the files of `digests` (which no version references any
    /// more), except those a deploy in flight has pinned.
    pub fn remove(&self, digests: &[String]) {
        let Ok(pins) = self.pins.lock() else { return };
        for digest in digests.iter().filter(|d| !pins.contains_key(*d)) {
            crate::files::remove_if_present(&self.component_path(digest));
            self.runtime.remove_artifact(digest);
        }
    }

    /// Removes the files of `digest` if no version references it and no
    /// deploy has pinned it: what a refused or failed deploy cleans up.
    pub async fn forget_if_unused(&self, db: &Db, digest: &str) -> anyhow::Result<()> {
        if !db.is_referenced(digest).await? {
            self.remove(&[digest.to_owned()]);
        }
        Ok(())
    }

    /// Removes every file no version references: temporary files a crash
    /// left, files of deleted versions another node removed, artifacts of an
    /// older engine. On start (nothing pinned) and when following other nodes.
    pub async fn sweep(&self, db: &Db) -> anyhow::Result<usize> {
        let referenced: HashSet<String> = db.referenced_digests(ObjectKind::Function).await?;
        let Ok(pins) = self.pins.lock() else { anyhow::bail!("pins poisoned") };
        let keep = |digest: &str| referenced.contains(digest) || pins.contains_key(digest);
        let components =
            crate::files::sweep(&self.components_dir, |name| name.strip_suffix(".wasm").is_some_and(keep))?;
        let artifacts = self.runtime.sweep_artifacts(keep)?;
        Ok(components + artifacts)
    }
}
