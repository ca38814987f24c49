//! Atomic writes: a temporary file next to the target, flushed to disk, then renamed over it.
//! A reader sees the old file or the new one, never half of one; a failed write leaves the old
//! file as it was.

use std::io::Write;
use std::path::Path;

use crate::error::{Result, io};

/// Write `bytes` to `path` atomically (temp file in the same folder, fsync, rename, fsync of the
/// folder where the platform allows it).
///
/// # Errors
/// [`crate::FileError::Io`] naming `path` when any step fails; the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io(path.display(), "not a file path"))?
        .to_string_lossy()
        .to_string();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            // Persist the rename itself; not every platform lets a folder be synced.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path.display(), e));
    }
    Ok(())
}
