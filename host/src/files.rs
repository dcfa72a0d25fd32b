//! Files under the data directory: content-addressed (named by digest), so a
//! file once written never changes, and written through a temporary file and
//! a rename, so no reader and no crash ever sees half of one.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Writes `bytes` to `path` atomically.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = temporary(path);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename into {}", path.display()))
}

/// Writes `bytes` to `path` atomically unless the file exists already.
pub async fn store_once(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if tokio::fs::try_exists(path).await.unwrap_or(false) {
        return Ok(());
    }
    let tmp = temporary(path);
    tokio::fs::write(&tmp, bytes).await.with_context(|| format!("cannot write {}", tmp.display()))?;
    tokio::fs::rename(&tmp, path).await.with_context(|| format!("cannot rename into {}", path.display()))
}

fn temporary(path: &Path) -> PathBuf {
    path.with_extension(format!("tmp{}", std::process::id()))
}
