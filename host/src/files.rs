//! Files under the data directory: content-addressed (named by digest), so a
//! file once written never changes, and written through a temporary file and
//! a rename, so no reader and no crash ever sees half of one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Removes a file; one already gone is no error (another change removed it).
pub fn remove_if_present(path: &Path) {
    if let Err(err) = std::fs::remove_file(path)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %err, path = %path.display(), "cannot remove file");
    }
}

/// Removes from `dir` the temporary files a crash left behind and every file
/// whose name `keep` refuses; returns how many went.
pub fn sweep(dir: &Path, keep: impl Fn(&str) -> bool) -> anyhow::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type()?.is_file() && (is_temporary(&name) || !keep(&name)) {
            remove_if_present(&entry.path());
            removed += 1;
        }
    }
    Ok(removed)
}

/// `NAME.tmpPID-N`: unique per write, so two writers of one file (two
/// tenants deploying the same bytes) never rename each other's half.
fn temporary(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{TEMPORARY}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    path.with_file_name(name)
}

const TEMPORARY: &str = ".tmp";

fn is_temporary(name: &str) -> bool {
    name.contains(TEMPORARY)
}
