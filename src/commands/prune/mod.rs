//! `imgvec prune PATH... [--dry-run]`: keep an index in step with folders that changed — remove the
//! documents whose file under PATH is gone or no longer has the content that was indexed.
//!
//! The steps, in [`run`]: the roots (each must exist) → the store's documents under them (no
//! vectors) → each checked against its file, in parallel (size, then modification time, the hash
//! only when those cannot tell; see `check`) → what goes printed, one line each → deleted in
//! batches (not with `--dry-run`) → refresh → summary. What goes is a path: a document seen at
//! several paths (copies of one file) loses that path and stays while it has another. Documents outside the roots are never
//! listed, let alone touched; a file that cannot be checked (permissions, I/O) is kept and
//! reported. A changed file's new content is not indexed here: `ingest` does that.
//!
//! Not for: finding new files (`ingest`) or anything about vectors.

pub mod check;

use std::process::ExitCode;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use super::{exit, open_store, runtime, PARTIAL_FAILURE};
use crate::cli::PruneArgs;
use crate::progress::Progress;
use crate::store::{DocFile, DocPath, PathsRemoved, VectorStore};
use check::{check, roots, Root, Verdict};

/// Paths per `remove_paths` call (one transaction / one `_mget` and `_bulk` each).
const REMOVE_BATCH: usize = 1_000;

/// What a prune found and did.
#[derive(Debug, Default, Serialize)]
pub struct PruneSummary {
    /// Documents under the roots.
    pub checked: usize,
    pub unchanged: usize,
    /// Paths whose file is gone.
    pub gone: Vec<String>,
    /// Paths whose file now has other content.
    pub changed: Vec<String>,
    /// Files hashed because size and time could not tell.
    pub hashed: usize,
    /// (path, reason) of files that could not be checked (kept).
    pub unchecked: Vec<(String, String)>,
    /// Paths removed (0 with `--dry-run`).
    pub removed: u64,
    /// Documents deleted because their last path went (0 with `--dry-run`).
    pub documents_removed: u64,
    pub dry_run: bool,
}

pub fn run(args: &PruneArgs) -> Result<ExitCode> {
    let roots = roots(&args.paths)?;
    let rt = runtime()?;
    let store = open_store(&args.store)?;
    let docs = rt.block_on(docs_under(store.as_ref(), &roots))?;
    let (mut summary, going) = check_all(&docs, args.quiet);
    summary.dry_run = args.dry_run;
    if !args.json {
        print_removals(&summary);
    }
    if !args.dry_run && !going.is_empty() {
        let removed = rt.block_on(remove(store.as_ref(), &going))?;
        summary.removed = removed.paths;
        summary.documents_removed = removed.documents;
    }
    print_summary(&summary, args.json);
    Ok(if summary.unchecked.is_empty() {
        ExitCode::SUCCESS
    } else {
        exit(PARTIAL_FAILURE)
    })
}

/// The store's documents that are really under one of `roots`.
pub async fn docs_under(store: &dyn VectorStore, roots: &[Root]) -> Result<Vec<DocFile>> {
    let prefixes: Vec<String> = roots.iter().map(|r| r.prefix.clone()).collect();
    let mut docs = store.files_under(&prefixes).await?;
    docs.retain(|d| roots.iter().any(|r| r.holds(&d.path)));
    docs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(docs)
}

/// Checks every document's path against its file, in parallel, with progress: the account, and
/// the paths that go, each with its document (an edited file re-ingested has two documents with
/// one path, the old content's and the new: only the old one's goes).
pub fn check_all(docs: &[DocFile], quiet: bool) -> (PruneSummary, Vec<DocPath>) {
    let progress = std::sync::Mutex::new(Progress::new(docs.len() as u64, quiet, "checked"));
    let verdicts: Vec<(Verdict, bool)> = docs
        .par_iter()
        .map(|d| {
            let v = check(d);
            if let Ok(mut p) = progress.lock() {
                p.advance(1, 0);
            }
            v
        })
        .collect();
    if let Ok(p) = progress.lock() {
        p.finish();
    }
    let mut s = PruneSummary {
        checked: docs.len(),
        ..PruneSummary::default()
    };
    let mut going = Vec::new();
    for (doc, (verdict, hashed)) in docs.iter().zip(verdicts) {
        s.hashed += usize::from(hashed);
        let goes = matches!(verdict, Verdict::Gone | Verdict::Changed);
        match verdict {
            Verdict::Unchanged => s.unchanged += 1,
            Verdict::Gone => s.gone.push(doc.path.clone()),
            Verdict::Changed => s.changed.push(doc.path.clone()),
            Verdict::Unknown(why) => s.unchecked.push((doc.path.clone(), why)),
        }
        if goes {
            going.push(DocPath {
                id: doc.id.clone(),
                path: doc.path.clone(),
                mtime_ms: None,
            });
        }
    }
    (s, going)
}

/// Removes `paths` in batches, then refreshes.
async fn remove(store: &dyn VectorStore, paths: &[DocPath]) -> Result<PathsRemoved> {
    let removed = remove_paths(store, paths).await?;
    store.refresh().await?;
    Ok(removed)
}

/// Removes `paths` in batches (no refresh): documents left with no path are deleted.
pub async fn remove_paths(store: &dyn VectorStore, paths: &[DocPath]) -> Result<PathsRemoved> {
    let mut removed = PathsRemoved::default();
    for batch in paths.chunks(REMOVE_BATCH) {
        let r = store.remove_paths(batch).await?;
        removed.paths += r.paths;
        removed.documents += r.documents;
    }
    Ok(removed)
}

/// One line per document that goes (stdout), one per file that could not be checked (stderr).
fn print_removals(s: &PruneSummary) {
    for path in &s.gone {
        println!("gone     {path}");
    }
    for path in &s.changed {
        println!("changed  {path}");
    }
    for (path, why) in &s.unchecked {
        eprintln!("imgvec: cannot check {path}: {why} (kept)");
    }
}

fn print_summary(s: &PruneSummary, as_json: bool) {
    if as_json {
        match serde_json::to_string(s) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("imgvec: cannot print the summary: {e}"),
        }
        return;
    }
    let goes = s.gone.len() + s.changed.len();
    let done = if s.dry_run {
        format!("would remove {goes} (dry run: nothing removed)")
    } else {
        format!(
            "removed {} (documents deleted {}, the rest kept for their other paths)",
            s.removed, s.documents_removed
        )
    };
    println!(
        "checked {}: unchanged {}, gone {}, changed {}, not checkable {} ({} hashed); {done}",
        s.checked,
        s.unchanged,
        s.gone.len(),
        s.changed.len(),
        s.unchecked.len(),
        s.hashed
    );
    if !s.changed.is_empty() && !s.dry_run {
        eprintln!("imgvec: the changed files' new content is not indexed yet: run `imgvec ingest` on these folders");
    }
}
