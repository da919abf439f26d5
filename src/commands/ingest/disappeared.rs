//! How many indexed files under the ingested folders are gone from disk: told in the summary, with
//! `imgvec prune` suggested. Cheap: the store's paths under the roots (no vectors) against the
//! files the walk found; only paths the walk did not see are looked at on disk.
//!
//! Not for: removing anything (`prune` does, after checking content too).

use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::PathBuf;

use crate::commands::prune::check::{root_of, Root};
use crate::commands::prune::docs_under;
use crate::store::VectorStore;
use crate::walk::absolute;

/// The indexed files under `paths` (the roots that exist) that are gone; `seen` holds the absolute
/// paths the walk found (images, and files it could not read). `Err` with why it could not be told.
pub async fn count_disappeared(
    store: &dyn VectorStore,
    paths: &[PathBuf],
    seen: &HashSet<String>,
) -> Result<usize, String> {
    let roots: Vec<Root> = paths
        .iter()
        .map(|p| absolute(p))
        .filter_map(|p| {
            let meta = std::fs::metadata(&p).ok()?;
            Some(root_of(p, meta.is_dir()))
        })
        .collect();
    if roots.is_empty() {
        return Ok(0);
    }
    let docs = docs_under(store, &roots)
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(docs
        .iter()
        .filter(|d| !seen.contains(&d.path))
        .filter(|d| match std::fs::metadata(&d.path) {
            Ok(m) => !m.is_file(),
            Err(e) => matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory),
        })
        .count())
}
