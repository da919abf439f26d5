//! The final account of an ingest: every file found ends in exactly one of its counts.
//!
//! Not for: deciding what happens to a file (the pipeline and the indexer do that).

use std::path::Path;

use serde::Serialize;

/// What an ingest did, file by file, in counts.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub found: usize,
    pub indexed: usize,
    pub already_present: usize,
    pub failed: usize,
    pub skipped_not_images: usize,
    /// Images left to the other parts of a split ingest (`--shard I/N`).
    pub other_shards: usize,
    /// Indexed files under the paths that are gone from disk (`imgvec prune` removes them);
    /// `None` when that could not be told.
    pub disappeared: Option<usize>,
    pub interrupted: bool,
    pub seconds: f64,
    pub images_per_second: f64,
    /// (path, reason) for each failure.
    pub failures: Vec<(String, String)>,
    /// (path, what) for each file indexed with a warning (truncated, with --allow-truncated).
    pub warnings: Vec<(String, String)>,
}

impl Summary {
    pub fn fail(&mut self, path: &Path, reason: impl Into<String>) {
        self.failed += 1;
        self.failures
            .push((path.display().to_string(), reason.into()));
    }

    pub fn warn(&mut self, path: &Path, what: impl Into<String>) {
        self.warnings
            .push((path.display().to_string(), what.into()));
    }

    /// Adds the counts of a part of the work done elsewhere (the indexer's).
    pub fn add(&mut self, other: Summary) {
        self.indexed += other.indexed;
        self.already_present += other.already_present;
        self.failed += other.failed;
        self.other_shards += other.other_shards;
        self.failures.extend(other.failures);
        self.warnings.extend(other.warnings);
    }

    /// Prints the failures (one line each) and the totals, or one JSON object.
    pub fn print(&self, as_json: bool) {
        if as_json {
            match serde_json::to_string(self) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("imgvec: cannot print the summary: {e}"),
            }
            return;
        }
        for (path, what) in &self.warnings {
            eprintln!("imgvec: warning: {path}: {what}");
        }
        for (path, why) in &self.failures {
            eprintln!("imgvec: failed: {path}: {why}");
        }
        let gone = match self.disappeared {
            Some(n) if n > 0 => format!(", gone from disk {n}"),
            _ => String::new(),
        };
        let shards = if self.other_shards > 0 {
            format!(", other shards {}", self.other_shards)
        } else {
            String::new()
        };
        let interrupted = if self.interrupted {
            " (interrupted: run again to resume)"
        } else {
            ""
        };
        let warnings = if self.warnings.is_empty() {
            String::new()
        } else {
            format!(" ({} with warnings)", self.warnings.len())
        };
        println!(
            "indexed {}{warnings}, already present {}, failed {}, not images {}{shards}{gone}; {:.1} s, {:.2} img/s{interrupted}",
            self.indexed,
            self.already_present,
            self.failed,
            self.skipped_not_images,
            self.seconds,
            self.images_per_second
        );
        if let Some(n @ 1..) = self.disappeared {
            eprintln!(
                "imgvec: {n} indexed file(s) under these paths are gone from disk: `imgvec prune` with \
the same paths removes them from the index (--dry-run shows which)"
            );
        }
    }
}
