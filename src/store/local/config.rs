//! The local store's file names, defaults and tunables ([`LocalConfig`]).
//!
//! What it is for: the names a store directory uses and the numbers a caller may change (write-lock
//! wait, cache save interval, exact-scan threshold, least search breadth), in one place.
//!
//! What it is not for: any behaviour. Nothing here opens files or touches the database.

use std::path::PathBuf;
use std::time::Duration;

use super::lock::WaitHook;

/// The SQLite database inside the store directory: the source of truth.
pub const DB_FILE: &str = "imgvec.sqlite3";
/// The write-lock file inside the store directory (holds the pid and command line of the writer).
pub const LOCK_FILE: &str = "imgvec.lock";
/// The similarity every index uses; scores are `1 / (1 + d²)` as with Elasticsearch's `l2_norm`.
pub const SIMILARITY: &str = "l2_norm";
/// HNSW graph degree when the [`IndexSpec`](crate::store::IndexSpec) leaves it open.
pub const DEFAULT_HNSW_M: u32 = 16;
/// HNSW `ef_construction` when the [`IndexSpec`](crate::store::IndexSpec) leaves it open.
pub const DEFAULT_HNSW_EF_CONSTRUCTION: u32 = 128;
/// Most candidates one query examines (as Elasticsearch's `num_candidates` bound).
pub use crate::store::MAX_NUM_CANDIDATES;
/// Defaults of [`LocalConfig::new`].
pub const DEFAULT_ANN_SAVE_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_EXACT_SCAN_ROWS: usize = 4_096;
pub const DEFAULT_FILTERED_SCAN_ROWS: usize = 131_072;
/// 128 MiB: the 2-bit codes (196 bytes a document at 768-d) of a label of up to 684,784
/// documents, or of half of a 1,000,000-document store and a tenth beside it (112 MiB), so that a
/// label of a tenth is not left to the int8 scan while one of half keeps its codes (the tenth's p50
/// 21.9 ms by the int8 scan, 11.3 ms by its 2-bit codes, on a Zen 3 EPYC; docs/performance.md).
/// Was 96 MiB (half alone).
pub const DEFAULT_FILTERED_CODE2_BYTES: usize = 128 << 20;
/// The 2-bit scan's candidates re-scored by their int8 codes (about 0.1 µs each at a million
/// documents on 2 cores): at a million documents 2,048 found 0.9940 of the top ten within a label
/// of half of them, 8,192 and 16,384 all (docs/performance.md).
pub const DEFAULT_FILTERED_CODE2_CANDIDATES: usize = 8_192;
pub const DEFAULT_FILTERED_MIN_EF: usize = 1_024;
/// At 1,000,000 documents (graph built on 2 cores, `num_candidates` 100) floor 512 gave recall@10
/// 0.9894–0.9902, 768 gave 0.9926 at p50 1.7 ms, 1,024 gave 0.9932 at 2.7 ms (docs/performance.md).
pub const DEFAULT_MIN_EF_SEARCH: usize = 768;
pub const DEFAULT_BACKGROUND_BUILD_ROWS: usize = 50_000;
pub const DEFAULT_CATCH_UP_ROWS: usize = 20_000;
/// Below this, a graph's nodes that a search for their own code misses are few (HNSW's pruning
/// cuts them off more as a graph grows) and a build checks them anyway.
pub const DEFAULT_RELINK_FROM_ROWS: usize = 50_000;

/// Where the store is and how it behaves.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The store directory (created if missing).
    pub dir: PathBuf,
    /// The index name (the CLI's `--index`).
    pub index: String,
    /// How long one write waits for another process's write before giving up; `None` (the
    /// default): as long as it takes, telling `on_wait` now and then.
    pub lock_wait: Option<Duration>,
    /// Told when a write has to wait for another process's (the CLI prints it).
    pub on_wait: Option<WaitHook>,
    /// While writing, the HNSW cache file is saved at most this often (also on refresh and drop).
    pub ann_save_interval: Duration,
    /// Searches over at most this many vectors (all, or those of the filtered label) are exact
    /// scans over the f32 vectors instead of HNSW searches.
    pub exact_scan_rows: usize,
    /// A search within a label of at most this many documents scans the label's int8 codes (read
    /// from the graph by key) for its candidates instead of walking the graph (which, for a small
    /// label, mostly walks documents of other labels). 0: no label is scanned so.
    pub filtered_scan_rows: usize,
    /// A label is scanned through 2-bit codes (a quarter of the size of the int8 codes), made on its
    /// first search, while all labels' 2-bit codes take at most this many bytes: a larger label
    /// makes room (the labels searched least recently let theirs go), a label small enough for
    /// the int8 scan only takes what is left; one larger than the budget is walked (at a million
    /// documents a walk of a label of half of them found 0.955 of the top ten at `ef` 1,024, the
    /// 2-bit scan 1.000). 0: never.
    pub filtered_code2_bytes: usize,
    /// How many candidates the 2-bit scan gives: they are re-scored with their int8 codes from the
    /// graph down to `num_candidates`, which the f32 rows re-rank. At most `num_candidates`: no
    /// int8 step, the scan's `num_candidates` best go straight to the f32 re-rank.
    pub filtered_code2_candidates: usize,
    /// The least `ef` of a label-filtered graph walk (most of what it walks is of other labels).
    pub filtered_min_ef: usize,
    /// The least HNSW `ef` (search breadth) of a query, whatever its `num_candidates`.
    pub min_ef_search: usize,
    /// A search that finds no usable graph (its cache file missing or torn, after a crash) over
    /// more documents than this answers with an exact scan and builds the graph on a thread of its
    /// own, instead of keeping the query waiting for the build (minutes at a million documents).
    /// Writes always build it first.
    pub background_build_rows: usize,
    /// A graph more than this many rows behind the database is loaded anew from the cache file
    /// when a writer has saved a newer one, instead of adding every row itself (a reader that
    /// slept through a large `copy` or ingest).
    pub catch_up_rows: usize,
    /// Rows written after the graph are moved into it by a thread of its own while searches scan
    /// them beside the graph (true, the default). False leaves them to a search that finds at most
    /// a few hundred, to `refresh` and to rebuilds: for tests and benchmarks that need to see the
    /// tail as it is.
    pub follow_in_background: bool,
    /// A graph of at least this many nodes that has grown by half since its nodes were last
    /// checked (built, or checked by an earlier write) has each node that a search for its own
    /// code misses linked afresh when a write's `refresh` has taken its tail in (`relink`).
    pub relink_from_rows: usize,
}

impl LocalConfig {
    /// A config with the defaults above.
    pub fn new(dir: impl Into<PathBuf>, index: impl Into<String>) -> Self {
        LocalConfig {
            dir: dir.into(),
            index: index.into(),
            lock_wait: None,
            on_wait: None,
            ann_save_interval: DEFAULT_ANN_SAVE_INTERVAL,
            exact_scan_rows: DEFAULT_EXACT_SCAN_ROWS,
            filtered_scan_rows: DEFAULT_FILTERED_SCAN_ROWS,
            filtered_code2_bytes: DEFAULT_FILTERED_CODE2_BYTES,
            filtered_code2_candidates: DEFAULT_FILTERED_CODE2_CANDIDATES,
            filtered_min_ef: DEFAULT_FILTERED_MIN_EF,
            min_ef_search: DEFAULT_MIN_EF_SEARCH,
            background_build_rows: DEFAULT_BACKGROUND_BUILD_ROWS,
            catch_up_rows: DEFAULT_CATCH_UP_ROWS,
            follow_in_background: true,
            relink_from_rows: DEFAULT_RELINK_FROM_ROWS,
        }
    }
}
