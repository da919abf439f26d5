//! Filesystem helpers of the local store: the store directory itself, and atomic file writes.
//!
//! What it is for: creating (or checking) the store directory with a clear error, and replacing a
//! file so that a crash leaves the old or the new one, never a torn one.
//!
//! What it is not for: the database (SQLite does its own durability, see `db`), the process lock
//! (`lock`), or deciding what to write.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::store::StoreError;

/// `path` with `.tmp` added: where a file is written before it replaces `path`.
pub(super) fn temp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Appends `bytes` to the file `tmp` (a temp file in `path`'s directory), makes it durable and
/// renames it onto `path`, then syncs the directory: a crash leaves either the old file or the
/// whole new one.
pub(super) fn append_and_replace(tmp: &Path, bytes: &[u8], path: &Path) -> Result<(), StoreError> {
    {
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(tmp)
            .map_err(|e| io_error("open", tmp, e))?;
        file.write_all(bytes)
            .map_err(|e| io_error("write", tmp, e))?;
        file.sync_all().map_err(|e| io_error("sync", tmp, e))?;
    }
    fs::rename(tmp, path).map_err(|e| io_error("rename onto", path, e))?;
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn io_error(what: &str, p: &Path, e: std::io::Error) -> StoreError {
    StoreError::Other(format!("cannot {what} {}: {e}", p.display()))
}

/// Creates the store directory if needed; its absolute path.
pub(super) fn prepare_dir(dir: &Path) -> Result<PathBuf, StoreError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(StoreError::Other(format!(
            "store path {} is not a directory: give --store a directory (it is created if missing)",
            dir.display()
        )))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| {
                StoreError::Other(format!(
                    "cannot create store directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        Err(e) => {
            return Err(StoreError::Other(format!(
                "cannot use store directory {}: {e}",
                dir.display()
            )))
        }
    }
    fs::canonicalize(dir).map_err(|e| {
        StoreError::Other(format!("cannot use store directory {}: {e}", dir.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_replaces_the_file_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache.bin");
        let write = |bytes: &[u8]| {
            File::create(temp_path(&path)).unwrap();
            append_and_replace(&temp_path(&path), bytes, &path).unwrap();
        };
        write(b"old");
        write(b"new contents");
        assert_eq!(fs::read(&path).unwrap(), b"new contents");
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["cache.bin"]);
    }

    #[test]
    fn prepare_dir_creates_a_directory_and_refuses_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("b");
        let made = prepare_dir(&dir).unwrap();
        assert!(made.is_absolute() && made.is_dir(), "{}", made.display());
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = prepare_dir(&file).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
    }
}
