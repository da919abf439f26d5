//! The one-process-at-a-time lock of a store directory (`imgvec.lock`).
//!
//! What it is for: an OS file lock held for a [`LocalStore`](super::LocalStore)'s lifetime, so a
//! second imgvec process gets a clear "in use by another imgvec process (pid N)" error instead of
//! meeting the first; the file records the holder's pid for that message.
//!
//! What it is not for: serializing threads inside one process (the store's mutex does that) or
//! guarding against writers that are not imgvec.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::LOCK_FILE;
use crate::store::StoreError;

/// Takes the exclusive lock on `dir/imgvec.lock`, waiting at most `wait`; records our pid in it.
pub(super) fn acquire_lock(dir: &Path, wait: Duration) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::Other(format!("cannot open lock file {}: {e}", path.display())))?;
    let deadline = Instant::now() + wait;
    loop {
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => break,
            Err(fs4::TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    return Err(in_use(dir, &path));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(fs4::TryLockError::Error(e)) => {
                return Err(StoreError::Other(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )))
            }
        }
    }
    // The pid is only for the message of `in_use`: failing to write it is not an error.
    let _ = file.set_len(0);
    let _ = writeln!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(file)
}

/// The error for a store whose lock file `path` another process holds, naming its pid if known.
fn in_use(dir: &Path, path: &Path) -> StoreError {
    let pid = fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map(|p| p.to_string())
        .unwrap_or_else(|| "unknown".into());
    StoreError::Other(format!(
        "store {} is in use by another imgvec process (pid {pid}): wait for it to finish, or use another --store",
        dir.display()
    ))
}
