//! Is an indexed file still there, with the content it was indexed with? The roots a command may
//! touch, and one document checked against its file.
//!
//! What it is for: turning the paths a user gives into roots (absolute, existing) and the string
//! prefixes a store lists by; deciding whether a document's path is really under a root (path
//! components, not string prefixes: `/photos2` is not under `/photos`); and the verdict on one
//! document — size first, then the modification time, and the hash only when those cannot tell.
//!
//! What it is not for: talking to a store or printing (the `prune` and `ingest` commands do).

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf, MAIN_SEPARATOR};

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};

use crate::pipeline::mtime_ms;
use crate::store::DocFile;
use crate::walk::absolute;

/// A modification time this close to (or after) the time a document was indexed is not trusted:
/// the file may have been written again within the same clock tick (coarse file-system clocks,
/// FAT's 2 s), so its content is hashed instead ("racy" times, as git calls them).
pub const MTIME_SLACK_MS: u64 = 2_000;

/// A folder or file whose documents a command looks at, and the store prefix that lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub path: PathBuf,
    /// `path` as stored, with a trailing separator for a folder (so `/a/b` does not list `/a/bc`).
    pub prefix: String,
}

impl Root {
    /// Whether `path` (a document's stored path) is this root or inside it.
    pub fn holds(&self, path: &str) -> bool {
        Path::new(path).starts_with(&self.path)
    }
}

/// The roots for `paths`, each made absolute as ingest stores paths. A path that does not exist is
/// an error: its documents would all look gone (an unmounted drive, a typo).
pub fn roots(paths: &[PathBuf]) -> Result<Vec<Root>> {
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let path = absolute(p);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => bail!(
                "{}: {e}. Nothing was removed: give folders that exist (is the drive mounted?); \
to drop a folder deleted on purpose, prune the folder it was in",
                path.display()
            ),
        };
        out.push(root_of(path, meta.is_dir()));
    }
    Ok(out)
}

/// The root for an absolute `path` that is a folder or not.
pub fn root_of(path: PathBuf, is_dir: bool) -> Root {
    let mut prefix = path.display().to_string();
    if is_dir && !prefix.ends_with(MAIN_SEPARATOR) {
        prefix.push(MAIN_SEPARATOR);
    }
    Root { path, prefix }
}

/// What became of an indexed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same size and time, or same hash.
    Unchanged,
    /// No file at the path any more.
    Gone,
    /// A file is there, with other content.
    Changed,
    /// Could not be checked (permission, I/O error): kept.
    Unknown(String),
}

/// The verdict on `doc`, and whether its file had to be hashed to reach it.
pub fn check(doc: &DocFile) -> (Verdict, bool) {
    let path = Path::new(&doc.path);
    let meta = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return (Verdict::Gone, false),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return (Verdict::Gone, false)
        }
        Err(e) => return (Verdict::Unknown(e.to_string()), false),
    };
    if meta.len() != doc.bytes {
        return (Verdict::Changed, false);
    }
    if mtime_vouches(doc, mtime_ms(&meta)) {
        return (Verdict::Unchanged, false);
    }
    match sha256_file(path) {
        Ok(sha) if sha == doc.id => (Verdict::Unchanged, true),
        Ok(_) => (Verdict::Changed, true),
        Err(e) if e.kind() == ErrorKind::NotFound => (Verdict::Gone, true),
        Err(e) => (Verdict::Unknown(e.to_string()), true),
    }
}

/// Whether the file's modification time `now` says it is as indexed: the same as stored, and not
/// racy (well before the document was indexed).
pub fn mtime_vouches(doc: &DocFile, now: Option<u64>) -> bool {
    match (doc.mtime_ms, now) {
        (Some(stored), Some(now)) => {
            stored == now && stored.saturating_add(MTIME_SLACK_MS) < doc.indexed_at_ms
        }
        _ => false,
    }
}

/// Lower-case hex SHA-256 of a file, read in blocks.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &Path, bytes: &[u8], mtime_ms: Option<u64>, indexed_at_ms: u64) -> DocFile {
        DocFile {
            id: crate::pipeline::sha256_hex(bytes),
            path: path.display().to_string(),
            bytes: bytes.len() as u64,
            mtime_ms,
            indexed_at_ms,
        }
    }

    #[test]
    fn a_root_holds_its_own_paths_only() {
        let root = root_of(PathBuf::from("/data/photos"), true);
        assert_eq!(root.prefix, format!("/data/photos{MAIN_SEPARATOR}"));
        assert!(root.holds("/data/photos/a/b.jpg"));
        assert!(!root.holds("/data/photos2/b.jpg"));
        let file = root_of(PathBuf::from("/data/x.jpg"), false);
        assert_eq!(file.prefix, "/data/x.jpg");
        assert!(file.holds("/data/x.jpg") && !file.holds("/data/x.jpg2"));
        assert!(roots(&[PathBuf::from("/no/such/folder/anywhere")]).is_err());
    }

    #[test]
    fn size_then_time_then_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        std::fs::write(&path, b"hello").unwrap();
        let now = mtime_ms(&std::fs::metadata(&path).unwrap());
        let later = now.unwrap_or(0) + 60_000;
        // Same size and trusted time: no hash.
        assert_eq!(
            check(&doc(&path, b"hello", now, later)),
            (Verdict::Unchanged, false)
        );
        // Other size: changed, no hash.
        assert_eq!(
            check(&doc(&path, b"hello!", now, later)),
            (Verdict::Changed, false)
        );
        // Same size, no stored time: hashed; same bytes.
        assert_eq!(
            check(&doc(&path, b"hello", None, later)),
            (Verdict::Unchanged, true)
        );
        // Same size, other bytes, time moved: hashed, changed.
        assert_eq!(
            check(&doc(&path, b"jello", now.map(|t| t - 5_000), later)),
            (Verdict::Changed, true)
        );
        // A racy time (indexed within the slack) is not trusted.
        assert_eq!(
            check(&doc(&path, b"jello", now, now.unwrap_or(0) + 10)),
            (Verdict::Changed, true)
        );
        assert_eq!(
            check(&doc(&dir.path().join("gone.png"), b"x", None, later)),
            (Verdict::Gone, false)
        );
        let under_a_file = path.join("x.png");
        assert_eq!(
            check(&doc(&under_a_file, b"x", None, later)),
            (Verdict::Gone, false)
        );
    }
}
