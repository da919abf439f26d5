//! The write lock of a store directory (`imgvec.lock`): one write at a time, across processes.
//!
//! What it is for: an OS file lock (`flock`) taken around each write of a
//! [`LocalStore`](super::LocalStore) — one upsert batch, one delete, a save of the graph file — and
//! released right after, so several writers (two `ingest`s, a `watch` and a `prune`) take turns
//! batch by batch instead of shutting each other out for hours. The file records the holder's pid
//! and command line, so a writer that has to wait can say for whom ([`WaitNotice`]).
//!
//! Readers never take it: SQLite's WAL mode gives each read a consistent snapshot while a writer
//! commits, and the HNSW graph of a reader is its own (see `graph`).
//!
//! What it is not for: serializing threads inside one process (the store's mutex does that) or
//! guarding against writers that are not imgvec.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::LOCK_FILE;
use crate::store::StoreError;

/// How long a writer waits before it says that it is waiting (and again every this often × 15).
const ANNOUNCE_AFTER: Duration = Duration::from_secs(2);

/// What a writer that waits for another is told, for the user.
#[derive(Debug, Clone)]
pub struct WaitNotice {
    /// The store directory.
    pub dir: std::path::PathBuf,
    /// The pid of the process holding the lock, if it recorded one.
    pub holder_pid: Option<u32>,
    /// Its command line, if it recorded one (e.g. `imgvec ingest ~/Pictures`).
    pub holder_command: String,
    /// How long this writer has waited so far.
    pub waited: Duration,
}

/// Called while a writer waits for another (first after 2 s, then every 30 s).
#[derive(Clone)]
pub struct WaitHook(pub Arc<dyn Fn(&WaitNotice) + Send + Sync>);

impl std::fmt::Debug for WaitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitHook(..)")
    }
}

/// The lock, held until dropped (closing the file releases it, also when the process dies).
pub(super) struct WriteLock {
    _file: File,
}

/// Takes the write lock of `dir`, waiting for another writer at most `wait` (`None`: as long as it
/// takes, telling `hook` now and then); records our pid and command line in it.
pub(super) fn lock_for_writing(
    dir: &Path,
    wait: Option<Duration>,
    hook: Option<&WaitHook>,
) -> Result<WriteLock, StoreError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::Other(format!("cannot open lock file {}: {e}", path.display())))?;
    let start = Instant::now();
    let mut next_notice = ANNOUNCE_AFTER;
    loop {
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => break,
            Err(fs4::TryLockError::WouldBlock) => {
                let waited = start.elapsed();
                if wait.is_some_and(|w| waited >= w) {
                    return Err(busy(dir, &path));
                }
                if waited >= next_notice {
                    if let Some(hook) = hook {
                        let (holder_pid, holder_command) = holder(&path);
                        (hook.0)(&WaitNotice {
                            dir: dir.to_path_buf(),
                            holder_pid,
                            holder_command,
                            waited,
                        });
                    }
                    next_notice = waited + ANNOUNCE_AFTER * 15;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(fs4::TryLockError::Error(e)) => {
                return Err(StoreError::Other(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )))
            }
        }
    }
    // Only for the messages of other writers: failing to write it is not an error.
    let _ = file.set_len(0);
    let command: Vec<String> = std::env::args().collect();
    let _ = writeln!(file, "{}\n{}", std::process::id(), command.join(" "));
    let _ = file.flush();
    Ok(WriteLock { _file: file })
}

/// Takes the write lock only if it is free now.
pub(super) fn try_lock_for_writing(dir: &Path) -> Option<WriteLock> {
    lock_for_writing(dir, Some(Duration::ZERO), None).ok()
}

/// The pid and command line recorded in the lock file.
fn holder(path: &Path) -> (Option<u32>, String) {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    let pid = lines.next().and_then(|s| s.trim().parse::<u32>().ok());
    (pid, lines.next().unwrap_or("").trim().to_string())
}

/// The error for a write that waited its limit for another writer, naming it if known.
fn busy(dir: &Path, path: &Path) -> StoreError {
    let (pid, command) = holder(path);
    let pid = pid.map_or_else(|| "unknown".to_string(), |p| p.to_string());
    let command = if command.is_empty() {
        String::new()
    } else {
        format!(", `{command}`")
    };
    StoreError::Other(format!(
        "store {} is being written by another imgvec process (pid {pid}{command}) and stayed busy: try again when it is done",
        dir.display()
    ))
}
