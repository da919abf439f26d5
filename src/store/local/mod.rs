//! Embedded (serverless) backend of [`VectorStore`]: keeps image vectors in a directory on this
//! machine, so imgvec works with no Elasticsearch at all.
//!
//! What it is for: one store directory (default `./imgvec-data`) holding any number of named
//! indexes. The source of truth is one SQLite database, `imgvec.sqlite3` (WAL mode,
//! `synchronous=FULL`, one transaction per [`VectorStore::upsert`] call): documents, their f32
//! vectors as BLOBs, and each index's metadata (dims, similarity, HNSW parameters, a generation
//! counter bumped by every write). Search goes through an int8-quantized HNSW graph (the `usearch`
//! library, squared-L2 metric) kept in memory and cached in `hnsw-<index id>.usearch`; its
//! candidates are re-ranked with the exact f32 vectors from SQLite, so scores are exact
//! `1 / (1 + d²)` (Elasticsearch's `l2_norm`). The cache file is written atomically (temp file,
//! fsync, rename) on [`VectorStore::refresh`], on drop and every few minutes while ingesting; an
//! `ann_cache` row records the generation, size and checksum it was written for. A missing, stale or
//! damaged cache is caught up from the rows written since, or rebuilt from all rows. One process at
//! a time: an OS lock on `imgvec.lock` (which also records the holder's pid) keeps a second imgvec
//! process out with a clear message instead of letting two writers meet.
//!
//! What it is not for: sharing a store between machines or processes at the same time, serving
//! queries to other programs, or knowing anything about models and files. It never hand-rolls ANN
//! or durable storage: SQLite and usearch do that.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::{
    EnsureOutcome, Hit, ImageDoc, IndexSpec, KnnQuery, StoreError, UpsertReport, VectorStore,
};

/// The store directory when none is given.
pub const DEFAULT_DIR: &str = "imgvec-data";
/// The SQLite database inside the store directory: the source of truth.
pub const DB_FILE: &str = "imgvec.sqlite3";
/// The lock file inside the store directory (holds the pid of the process using the store).
pub const LOCK_FILE: &str = "imgvec.lock";
/// The similarity every index uses; scores are `1 / (1 + d²)` as with Elasticsearch's `l2_norm`.
pub const SIMILARITY: &str = "l2_norm";
/// HNSW graph degree when the [`IndexSpec`] leaves it open.
pub const DEFAULT_HNSW_M: u32 = 16;
/// HNSW `ef_construction` when the [`IndexSpec`] leaves it open.
pub const DEFAULT_HNSW_EF_CONSTRUCTION: u32 = 128;
/// Most candidates one query examines (as Elasticsearch's `num_candidates` bound).
pub const MAX_NUM_CANDIDATES: usize = 10_000;
/// Defaults of [`LocalConfig::new`].
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(2);
pub const DEFAULT_ANN_SAVE_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_EXACT_SCAN_ROWS: usize = 4_096;
pub const DEFAULT_MIN_EF_SEARCH: usize = 128;

/// `PRAGMA application_id` of an imgvec store database ("imgv"): tells it from other SQLite files.
const APPLICATION_ID: i32 = 0x696d_6776;
/// `PRAGMA user_version` of the schema below.
const SCHEMA_VERSION: i32 = 1;
/// Written into `ann_cache.params`: a cache file written with other parameters is rebuilt.
const ANN_FORMAT: &str = "usearch-i8-l2sq-v1";
/// A label-filtered HNSW search uses this many times the `ef` of an unfiltered one.
const FILTERED_EF_FACTOR: usize = 2;
/// Rows read per step when (re)building the HNSW graph.
const BUILD_CHUNK: usize = 2_048;

const SCHEMA: &str = "
CREATE TABLE indexes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    dims INTEGER NOT NULL,
    similarity TEXT NOT NULL,
    hnsw_m INTEGER NOT NULL,
    hnsw_ef_construction INTEGER NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    doc_count INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE docs (
    key INTEGER PRIMARY KEY,
    index_id INTEGER NOT NULL REFERENCES indexes(id),
    id TEXT NOT NULL,
    label TEXT NOT NULL,
    path TEXT NOT NULL,
    vector BLOB NOT NULL,
    bytes INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    model TEXT NOT NULL,
    indexed_at_ms INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    UNIQUE (index_id, id)
);
CREATE INDEX docs_by_label ON docs(index_id, label);
CREATE INDEX docs_by_generation ON docs(index_id, generation);
CREATE TABLE ann_cache (
    index_id INTEGER PRIMARY KEY REFERENCES indexes(id),
    generation INTEGER NOT NULL,
    doc_count INTEGER NOT NULL,
    file_len INTEGER NOT NULL,
    checksum INTEGER NOT NULL,
    params TEXT NOT NULL
);
";

/// Where the store is and how it behaves.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The store directory (created if missing).
    pub dir: PathBuf,
    /// The index name (the CLI's `--index`).
    pub index: String,
    /// How long to wait for another process to release the store before giving up.
    pub lock_wait: Duration,
    /// While writing, the HNSW cache file is saved at most this often (also on refresh and drop).
    pub ann_save_interval: Duration,
    /// Searches over at most this many vectors (all, or those of the filtered label) are exact
    /// scans over the f32 vectors instead of HNSW searches.
    pub exact_scan_rows: usize,
    /// The least HNSW `ef` (search breadth) of a query, whatever its `num_candidates`.
    pub min_ef_search: usize,
}

impl LocalConfig {
    /// A config with the defaults above.
    pub fn new(dir: impl Into<PathBuf>, index: impl Into<String>) -> Self {
        LocalConfig {
            dir: dir.into(),
            index: index.into(),
            lock_wait: DEFAULT_LOCK_WAIT,
            ann_save_interval: DEFAULT_ANN_SAVE_INTERVAL,
            exact_scan_rows: DEFAULT_EXACT_SCAN_ROWS,
            min_ef_search: DEFAULT_MIN_EF_SEARCH,
        }
    }
}

/// What happened to the in-memory HNSW graph since the store was opened (for tests and `--verbose`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnnStats {
    /// Times the graph was loaded from its cache file.
    pub loaded_from_file: u64,
    /// Times it was built from all rows (no usable cache file).
    pub rebuilt: u64,
    /// Rows added to a loaded graph because they were written after its cache file.
    pub caught_up_rows: u64,
    /// Times the cache file was written.
    pub saved: u64,
    /// Times writing it failed (searching goes on from memory; see [`LocalStore::ann_save_error`]).
    pub save_failures: u64,
}

/// An index in a local store directory, seen as a [`VectorStore`].
pub struct LocalStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("dir", &self.shared.dir)
            .field("index", &self.shared.cfg.index)
            .finish_non_exhaustive()
    }
}

struct Shared {
    /// Absolute store directory.
    dir: PathBuf,
    db_path: PathBuf,
    cfg: LocalConfig,
    state: Mutex<State>,
    /// Held (locked) for the store's lifetime; closed last, after the database.
    _lock: File,
}

struct State {
    conn: Connection,
    ann: Option<Ann>,
    last_save: Instant,
    stats: AnnStats,
    /// Why the last attempt to write the cache file failed, if it did.
    save_error: Option<String>,
}

/// The in-memory HNSW graph of one index, with what filtering needs.
struct Ann {
    index_id: i64,
    index: Index,
    /// The index generation whose rows the graph holds.
    generation: i64,
    labels: Labels,
    /// Differs from the cache file.
    dirty: bool,
}

/// The label of each key, as small numbers the filter predicate compares, and each label's count.
#[derive(Default)]
struct Labels {
    of_key: HashMap<u64, u32>,
    /// Number and document count of each label.
    by_name: HashMap<String, (u32, usize)>,
}

impl Labels {
    /// Records that `key` has `label` (it may have had another before).
    fn set(&mut self, key: u64, label: String) {
        let next = self.by_name.len() as u32;
        let entry = self.by_name.entry(label).or_insert((next, 0));
        entry.1 += 1;
        let number = entry.0;
        if let Some(old) = self.of_key.insert(key, number) {
            if let Some(entry) = self.by_name.values_mut().find(|e| e.0 == old) {
                entry.1 = entry.1.saturating_sub(1);
            }
        }
    }

    fn len(&self) -> usize {
        self.of_key.len()
    }

    /// The number and document count of `label`.
    fn get(&self, label: &str) -> Option<(u32, usize)> {
        self.by_name.get(label).copied()
    }

    fn has(&self, key: u64, number: u32) -> bool {
        self.of_key.get(&key) == Some(&number)
    }
}

/// One row of `indexes`.
#[derive(Debug, Clone)]
struct IndexRow {
    id: i64,
    dims: usize,
    similarity: String,
    hnsw_m: u32,
    hnsw_ef_construction: u32,
    generation: i64,
    doc_count: i64,
}

impl LocalStore {
    /// Opens (creating if needed) the store directory `dir` for index `index`, with the defaults
    /// of [`LocalConfig::new`]. The index itself is created by [`VectorStore::ensure_index`].
    pub fn open(dir: &Path, index: &str) -> Result<LocalStore, StoreError> {
        Self::open_with(LocalConfig::new(dir, index))
    }

    /// Opens the store described by `cfg`: takes the directory's lock (waiting at most
    /// `cfg.lock_wait` for another process), opens or creates the database and checks it is an
    /// imgvec store.
    pub fn open_with(cfg: LocalConfig) -> Result<LocalStore, StoreError> {
        if cfg.index.trim().is_empty() {
            return Err(StoreError::Other("the index name is empty".into()));
        }
        let dir = prepare_dir(&cfg.dir)?;
        let lock = acquire_lock(&dir, cfg.lock_wait)?;
        let db_path = dir.join(DB_FILE);
        let conn = open_db(&db_path)?;
        Ok(LocalStore {
            shared: Arc::new(Shared {
                dir,
                db_path,
                cfg,
                state: Mutex::new(State {
                    conn,
                    ann: None,
                    last_save: Instant::now(),
                    stats: AnnStats::default(),
                    save_error: None,
                }),
                _lock: lock,
            }),
        })
    }

    /// The absolute store directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The index name.
    pub fn index(&self) -> &str {
        &self.shared.cfg.index
    }

    /// The SQLite database file.
    pub fn db_path(&self) -> &Path {
        &self.shared.db_path
    }

    /// The HNSW cache file of this index (which may not exist yet); `None` if there is no index.
    pub fn ann_path(&self) -> Result<Option<PathBuf>, StoreError> {
        let shared = &self.shared;
        let state = shared.lock_state();
        Ok(find_index(&state.conn, shared)?.map(|row| ann_file(&shared.dir, row.id)))
    }

    /// What the in-memory HNSW graph went through since the store was opened.
    pub fn ann_stats(&self) -> AnnStats {
        self.shared.lock_state().stats
    }

    /// Why the HNSW cache file could not be written the last time that was tried, if it could not.
    /// Not an error of any call: the graph in memory serves searches, and the database holds
    /// everything; the next open rebuilds what the missing cache file would have held.
    pub fn ann_save_error(&self) -> Option<String> {
        self.shared.lock_state().save_error.clone()
    }

    /// The names of all indexes in this store directory.
    pub fn index_names(&self) -> Result<Vec<String>, StoreError> {
        let shared = &self.shared;
        let state = shared.lock_state();
        let db = |e| db_error(&shared.db_path, e);
        let mut stmt = state
            .conn
            .prepare("SELECT name FROM indexes ORDER BY name")
            .map_err(db)?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)?;
        Ok(names)
    }

    /// Deletes the index and its documents; `false` when there was none.
    pub async fn delete_index(&self) -> Result<bool, StoreError> {
        self.run(|shared, state| shared.delete_index(state)).await
    }

    /// Runs `f` on the store's state on a blocking thread (SQLite and HNSW calls block).
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Shared, &mut State) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let mut state = shared.lock_state();
            f(&shared, &mut state)
        })
        .await
        .map_err(|e| StoreError::Other(format!("local store task failed: {e}")))?
    }
}

impl Shared {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| {
            // A panic in the middle of an operation: SQLite rolled back its transaction; the
            // in-memory graph may be half-updated, so it is reloaded.
            let mut state = poisoned.into_inner();
            state.ann = None;
            self.state.clear_poison();
            state
        })
    }

    fn index_name(&self) -> &str {
        &self.cfg.index
    }

    fn missing(&self) -> StoreError {
        StoreError::IndexMissing {
            index: self.cfg.index.clone(),
        }
    }

    fn db(&self, e: rusqlite::Error) -> StoreError {
        db_error(&self.db_path, e)
    }

    fn index_row(&self, conn: &Connection) -> Result<IndexRow, StoreError> {
        find_index(conn, self)?.ok_or_else(|| self.missing())
    }

    fn ensure_index(
        &self,
        state: &mut State,
        spec: &IndexSpec,
    ) -> Result<EnsureOutcome, StoreError> {
        if spec.dims == 0 {
            return Err(StoreError::Other(
                "an index needs vectors of at least 1 dimension".into(),
            ));
        }
        let tx = state
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        if let Some(row) = find_index(&tx, self)? {
            let differences = spec_differences(&row, spec);
            if !differences.is_empty() {
                return Err(StoreError::Incompatible {
                    index: self.index_name().to_string(),
                    differences,
                });
            }
            return Ok(EnsureOutcome::AlreadyExists);
        }
        insert_index(&tx, self.index_name(), spec).map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        Ok(EnsureOutcome::Created)
    }

    fn delete_index(&self, state: &mut State) -> Result<bool, StoreError> {
        let tx = state
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        let Some(row) = find_index(&tx, self)? else {
            return Ok(false);
        };
        delete_index_rows(&tx, row.id).map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        state.ann = None;
        remove_ann_file(&self.dir, row.id);
        Ok(true)
    }

    fn recreate_index(&self, state: &mut State, spec: &IndexSpec) -> Result<(), StoreError> {
        if spec.dims == 0 {
            return Err(StoreError::Other(
                "an index needs vectors of at least 1 dimension".into(),
            ));
        }
        let tx = state
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        let old = find_index(&tx, self)?;
        if let Some(row) = &old {
            delete_index_rows(&tx, row.id).map_err(|e| self.db(e))?;
        }
        insert_index(&tx, self.index_name(), spec).map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        state.ann = None;
        if let Some(row) = old {
            remove_ann_file(&self.dir, row.id);
        }
        Ok(())
    }

    fn existing_ids(
        &self,
        state: &mut State,
        ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let row = self.index_row(&state.conn)?;
        let mut stmt = state
            .conn
            .prepare_cached("SELECT 1 FROM docs WHERE index_id = ?1 AND id = ?2")
            .map_err(|e| self.db(e))?;
        let mut found = HashSet::new();
        for id in ids {
            if found.contains(id) {
                continue;
            }
            if stmt.exists(params![row.id, id]).map_err(|e| self.db(e))? {
                found.insert(id.clone());
            }
        }
        Ok(found)
    }

    fn upsert(
        &self,
        state: &mut State,
        docs: &[ImageDoc],
        overwrite: bool,
    ) -> Result<UpsertReport, StoreError> {
        let mut report = UpsertReport::default();
        let row = self.index_row(&state.conn)?;
        let generation = row.generation + 1;
        let tx = state
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        let mut added = 0i64;
        {
            let db = |e| db_error(&self.db_path, e);
            let mut exists = tx
                .prepare_cached("SELECT 1 FROM docs WHERE index_id = ?1 AND id = ?2")
                .map_err(db)?;
            let sql = if overwrite {
                "INSERT INTO docs (index_id, id, label, path, vector, bytes, width, height, model,
                     indexed_at_ms, generation)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (index_id, id) DO UPDATE SET label = excluded.label,
                     path = excluded.path, vector = excluded.vector, bytes = excluded.bytes,
                     width = excluded.width, height = excluded.height, model = excluded.model,
                     indexed_at_ms = excluded.indexed_at_ms, generation = excluded.generation"
            } else {
                "INSERT INTO docs (index_id, id, label, path, vector, bytes, width, height, model,
                     indexed_at_ms, generation)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (index_id, id) DO NOTHING"
            };
            let mut write = tx.prepare_cached(sql).map_err(db)?;
            for doc in docs {
                if let Some(reason) = doc_problem(doc, row.dims) {
                    report.failed.push((doc.id.clone(), reason));
                    continue;
                }
                let (Ok(bytes), Ok(indexed_at)) =
                    (i64::try_from(doc.bytes), i64::try_from(doc.indexed_at_ms))
                else {
                    report
                        .failed
                        .push((doc.id.clone(), "bytes or indexed_at_ms out of range".into()));
                    continue;
                };
                let existed = exists.exists(params![row.id, doc.id]).map_err(db)?;
                if existed && !overwrite {
                    report.already_present.push(doc.id.clone());
                    continue;
                }
                write
                    .execute(params![
                        row.id,
                        doc.id,
                        doc.label,
                        doc.path,
                        vector_to_blob(&doc.vector),
                        bytes,
                        doc.width,
                        doc.height,
                        doc.model,
                        indexed_at,
                        generation
                    ])
                    .map_err(db)?;
                if !existed {
                    added += 1;
                }
                report.indexed.push(doc.id.clone());
            }
        }
        if report.indexed.is_empty() {
            // Nothing written: no new generation.
            return Ok(report);
        }
        tx.execute(
            "UPDATE indexes SET generation = ?1, doc_count = doc_count + ?2 WHERE id = ?3",
            params![generation, added, row.id],
        )
        .map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;

        // Durable from here on. The HNSW graph is a cache: if bringing it up to date fails, it is
        // dropped and rebuilt when next needed, and the call still succeeded.
        let row = IndexRow {
            generation,
            doc_count: row.doc_count + added,
            ..row
        };
        let State {
            conn,
            ann,
            last_save,
            stats,
            save_error,
        } = state;
        match self.ensure_ann(conn, ann, stats, &row) {
            Ok(graph) => {
                if graph.dirty && last_save.elapsed() >= self.cfg.ann_save_interval {
                    self.save_ann(conn, graph, stats, save_error);
                    *last_save = Instant::now();
                }
            }
            Err(_) => *ann = None,
        }
        Ok(report)
    }

    fn refresh(&self, state: &mut State) -> Result<(), StoreError> {
        let row = self.index_row(&state.conn)?;
        let State {
            conn,
            ann,
            last_save,
            stats,
            save_error,
        } = state;
        let graph = self.ensure_ann(conn, ann, stats, &row)?;
        if graph.dirty {
            self.save_ann(conn, graph, stats, save_error);
            *last_save = Instant::now();
        }
        Ok(())
    }

    fn count(&self, state: &mut State) -> Result<u64, StoreError> {
        let row = self.index_row(&state.conn)?;
        Ok(u64::try_from(row.doc_count).unwrap_or(0))
    }

    fn index_dims(&self, state: &mut State) -> Result<usize, StoreError> {
        Ok(self.index_row(&state.conn)?.dims)
    }

    fn knn(&self, state: &mut State, query: &KnnQuery) -> Result<Vec<Hit>, StoreError> {
        let row = self.index_row(&state.conn)?;
        if query.vector.len() != row.dims {
            return Err(StoreError::DimsMismatch {
                index: self.index_name().to_string(),
                index_dims: row.dims,
                model_dims: query.vector.len(),
            });
        }
        if query.vector.iter().any(|x| !x.is_finite()) {
            return Err(StoreError::Other(
                "the query vector has a NaN or infinite value".into(),
            ));
        }
        let k = query.k;
        let candidates = query.num_candidates.clamp(k, MAX_NUM_CANDIDATES.max(k));
        let State {
            conn, ann, stats, ..
        } = state;
        let graph = self.ensure_ann(conn, ann, stats, &row)?;
        let total = graph.index.size();
        if total == 0 {
            return Ok(Vec::new());
        }
        let ef = candidates.max(self.cfg.min_ef_search);
        graph.index.change_expansion_search(ef);
        let label = query.label.as_deref();
        let hits = match label {
            None => {
                if total <= self.cfg.exact_scan_rows {
                    return self.exact_scan(conn, row.id, &query.vector, None, k);
                }
                let found = graph
                    .index
                    .search(&query.vector, candidates)
                    .map_err(|e| ann_error("search", e))?;
                let hits = self.rerank(conn, row.id, &query.vector, &found.keys, k)?;
                if hits.len() < k.min(total) {
                    return self.exact_scan(conn, row.id, &query.vector, None, k);
                }
                hits
            }
            Some(label) => {
                let Some((number, count)) = graph.labels.get(label) else {
                    return Ok(Vec::new());
                };
                if count <= self.cfg.exact_scan_rows || count <= candidates {
                    return self.exact_scan(conn, row.id, &query.vector, Some(label), k);
                }
                let labels = &graph.labels;
                // Most of the graph walked is of other labels: search wider (measured: recall@10
                // 0.98 → 0.995 at 10% selectivity on 50k 768-d vectors).
                graph
                    .index
                    .change_expansion_search(ef.saturating_mul(FILTERED_EF_FACTOR));
                let found = graph
                    .index
                    .filtered_search(&query.vector, candidates, |key| labels.has(key, number))
                    .map_err(|e| ann_error("filtered search", e))?;
                let hits = self.rerank(conn, row.id, &query.vector, &found.keys, k)?;
                if hits.len() < k.min(count) || hits.iter().any(|h| h.label != label) {
                    // The graph search ran out of neighbours of that label: scan them all.
                    return self.exact_scan(conn, row.id, &query.vector, Some(label), k);
                }
                hits
            }
        };
        Ok(hits)
    }

    /// Scores `keys` with their exact f32 vectors; the best `k`, best first.
    fn rerank(
        &self,
        conn: &Connection,
        index_id: i64,
        query: &[f32],
        keys: &[u64],
        k: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, label, path, vector FROM docs WHERE key = ?1 AND index_id = ?2",
            )
            .map_err(|e| self.db(e))?;
        let mut scored = Vec::with_capacity(keys.len());
        let mut seen = HashSet::with_capacity(keys.len());
        for &key in keys {
            let Ok(key_i64) = i64::try_from(key) else {
                continue;
            };
            if !seen.insert(key) {
                continue;
            }
            let found = stmt
                .query_row(params![key_i64, index_id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                    ))
                })
                .optional()
                .map_err(|e| self.db(e))?;
            if let Some((id, label, path, blob)) = found {
                let d2 = self.squared_distance(query, &blob, &id)?;
                scored.push((
                    d2,
                    Hit {
                        id,
                        score: 0.0,
                        label,
                        path,
                    },
                ));
            }
        }
        Ok(best_k(scored, k))
    }

    /// Exact search over every vector of the index (or of one label).
    fn exact_scan(
        &self,
        conn: &Connection,
        index_id: i64,
        query: &[f32],
        label: Option<&str>,
        k: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        let db = |e| db_error(&self.db_path, e);
        let mut stmt = match label {
            Some(_) => conn.prepare_cached(
                "SELECT id, label, path, vector FROM docs WHERE index_id = ?1 AND label = ?2",
            ),
            None => conn.prepare_cached(
                "SELECT id, label, path, vector FROM docs WHERE index_id = ?1 AND ?2 IS NULL",
            ),
        }
        .map_err(db)?;
        let mut rows = stmt.query(params![index_id, label]).map_err(db)?;
        // A bounded max-heap on distance keeps the best k.
        let mut heap: std::collections::BinaryHeap<Scored> = std::collections::BinaryHeap::new();
        while let Some(r) = rows.next().map_err(db)? {
            let id: String = r.get(0).map_err(db)?;
            let blob = r.get_ref(3).map_err(db)?.as_blob().map_err(|e| {
                StoreError::Other(format!(
                    "local store database {}: document {id} has no vector: {e}",
                    self.db_path.display()
                ))
            })?;
            let d2 = self.squared_distance(query, blob, &id)?;
            if heap.len() == k && heap.peek().is_some_and(|worst| d2 >= worst.0) {
                continue;
            }
            let hit = Hit {
                id,
                score: 0.0,
                label: r.get(1).map_err(db)?,
                path: r.get(2).map_err(db)?,
            };
            heap.push(Scored(d2, hit));
            if heap.len() > k {
                heap.pop();
            }
        }
        Ok(best_k(heap.into_iter().map(|s| (s.0, s.1)).collect(), k))
    }

    fn squared_distance(&self, query: &[f32], blob: &[u8], id: &str) -> Result<f32, StoreError> {
        if blob.len() != query.len() * 4 {
            return Err(StoreError::Other(format!(
                "local store database {}: the vector of document {id} has {} bytes, expected {}",
                self.db_path.display(),
                blob.len(),
                query.len() * 4
            )));
        }
        Ok(blob
            .chunks_exact(4)
            .zip(query)
            .map(|(b, q)| {
                let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]) - q;
                d * d
            })
            .sum())
    }

    /// The HNSW graph of `row`'s index, loaded, caught up or rebuilt as needed.
    fn ensure_ann<'a>(
        &self,
        conn: &Connection,
        slot: &'a mut Option<Ann>,
        stats: &mut AnnStats,
        row: &IndexRow,
    ) -> Result<&'a mut Ann, StoreError> {
        let usable =
            matches!(slot, Some(a) if a.index_id == row.id && a.generation <= row.generation);
        if !usable {
            *slot = None;
            let loaded = match self.load_ann(conn, row) {
                Some(graph) => {
                    stats.loaded_from_file += 1;
                    graph
                }
                None => {
                    stats.rebuilt += 1;
                    self.build_ann(conn, row)?
                }
            };
            *slot = Some(loaded);
        }
        let mut failed = None;
        if let Some(graph) = slot.as_mut() {
            if graph.generation < row.generation {
                match self.catch_up(conn, graph, row) {
                    Ok(n) => stats.caught_up_rows += n,
                    Err(e) => failed = Some(e),
                }
            }
        }
        if let Some(e) = failed {
            *slot = None;
            return Err(e);
        }
        let consistent = slot
            .as_ref()
            .is_some_and(|g| i64::try_from(g.index.size()).ok() == Some(row.doc_count));
        if !consistent {
            // The cache disagrees with the database (it should not): rebuild from the rows.
            *slot = None;
            stats.rebuilt += 1;
            *slot = Some(self.build_ann(conn, row)?);
        }
        slot.as_mut()
            .ok_or_else(|| StoreError::Other("the HNSW graph could not be set up".into()))
    }

    /// The graph from the cache file, if the file is there, intact and written for this index;
    /// `None` means "rebuild".
    fn load_ann(&self, conn: &Connection, row: &IndexRow) -> Option<Ann> {
        let (generation, doc_count, file_len, checksum, params): (i64, i64, i64, i64, String) =
            conn.query_row(
                "SELECT generation, doc_count, file_len, checksum, params FROM ann_cache
                 WHERE index_id = ?1",
                params![row.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .ok()??;
        if params != ann_params(row) || generation > row.generation {
            return None;
        }
        let bytes = fs::read(ann_file(&self.dir, row.id)).ok()?;
        if i64::try_from(bytes.len()).ok() != Some(file_len)
            || checksum64(&bytes) as i64 != checksum
        {
            return None;
        }
        let index = Index::new(&ann_options(row, self.cfg.min_ef_search)).ok()?;
        index.load_from_buffer(&bytes).ok()?;
        if index.dimensions() != row.dims || i64::try_from(index.size()).ok() != Some(doc_count) {
            return None;
        }
        let labels = self.read_labels(conn, row.id).ok()?;
        if labels.len() as i64 != row.doc_count {
            return None;
        }
        let graph = Ann {
            index_id: row.id,
            index,
            generation,
            labels,
            dirty: false,
        };
        reserve(&graph.index, graph.index.size() + 1, 1).ok()?;
        Some(graph)
    }

    fn read_labels(&self, conn: &Connection, index_id: i64) -> Result<Labels, StoreError> {
        let db = |e| db_error(&self.db_path, e);
        let mut stmt = conn
            .prepare("SELECT key, label FROM docs WHERE index_id = ?1")
            .map_err(db)?;
        let mut rows = stmt.query(params![index_id]).map_err(db)?;
        let mut labels = Labels::default();
        while let Some(r) = rows.next().map_err(db)? {
            let key: i64 = r.get(0).map_err(db)?;
            labels.set(key as u64, r.get(1).map_err(db)?);
        }
        Ok(labels)
    }

    /// Builds the graph from all rows of the index, on this one thread: usearch 2.26 can leave
    /// nodes unreachable by search when `add` runs on several threads at once (usearch issue #735;
    /// measured here: 1 to 3 per build of 3,000 vectors on 2 threads, none on 1).
    fn build_ann(&self, conn: &Connection, row: &IndexRow) -> Result<Ann, StoreError> {
        let db = |e| db_error(&self.db_path, e);
        let index = Index::new(&ann_options(row, self.cfg.min_ef_search))
            .map_err(|e| ann_error("create", e))?;
        let total = usize::try_from(row.doc_count).unwrap_or(0);
        reserve(&index, total + 1, 1)?;
        let mut labels = Labels::default();
        let mut stmt = conn
            .prepare("SELECT key, label, vector FROM docs WHERE index_id = ?1")
            .map_err(db)?;
        let mut rows = stmt.query(params![row.id]).map_err(db)?;
        let mut chunk: Vec<(u64, Vec<f32>)> = Vec::with_capacity(BUILD_CHUNK);
        let mut done = false;
        while !done {
            chunk.clear();
            while chunk.len() < BUILD_CHUNK {
                let Some(r) = rows.next().map_err(db)? else {
                    done = true;
                    break;
                };
                let (key, label, vector) = self.vector_row(r, row.dims)?;
                labels.set(key, label);
                chunk.push((key, vector));
            }
            if index.size() + chunk.len() >= index.capacity() {
                reserve(&index, (index.size() + chunk.len()) * 2, 1)?;
            }
            for (key, vector) in &chunk {
                index.add(*key, vector).map_err(|e| ann_error("add", e))?;
            }
        }
        Ok(Ann {
            index_id: row.id,
            index,
            generation: row.generation,
            labels,
            dirty: true,
        })
    }

    /// One `(key, label, vector)` row of a `SELECT key, label, vector` query, checked.
    fn vector_row(
        &self,
        r: &rusqlite::Row<'_>,
        dims: usize,
    ) -> Result<(u64, String, Vec<f32>), StoreError> {
        let db = |e| db_error(&self.db_path, e);
        let key: i64 = r.get(0).map_err(db)?;
        let label: String = r.get(1).map_err(db)?;
        let blob = r.get_ref(2).map_err(db)?.as_blob().map_err(|e| {
            StoreError::Other(format!(
                "local store database {}: row {key} has no vector: {e}",
                self.db_path.display()
            ))
        })?;
        let vector = blob_to_vector(blob, dims).ok_or_else(|| {
            StoreError::Other(format!(
                "local store database {}: the vector of row {key} has {} bytes, expected {}",
                self.db_path.display(),
                blob.len(),
                dims * 4
            ))
        })?;
        Ok((key as u64, label, vector))
    }

    /// Adds (or replaces) the rows written after the graph's generation; how many.
    fn catch_up(
        &self,
        conn: &Connection,
        graph: &mut Ann,
        row: &IndexRow,
    ) -> Result<u64, StoreError> {
        let db = |e| db_error(&self.db_path, e);
        let mut stmt = conn
            .prepare_cached(
                "SELECT key, label, vector FROM docs WHERE index_id = ?1 AND generation > ?2",
            )
            .map_err(db)?;
        let mut rows = stmt.query(params![row.id, graph.generation]).map_err(db)?;
        let mut n = 0u64;
        while let Some(r) = rows.next().map_err(db)? {
            let (key, label, vector) = self.vector_row(r, row.dims)?;
            if graph.index.contains(key) {
                graph
                    .index
                    .remove(key)
                    .map_err(|e| ann_error("remove", e))?;
            }
            if graph.index.size() + 1 >= graph.index.capacity() {
                let want = (graph.index.capacity() * 2).max(graph.index.size() + 1_024);
                reserve(&graph.index, want, 1)?;
            }
            graph
                .index
                .add(key, &vector)
                .map_err(|e| ann_error("add", e))?;
            graph.labels.set(key, label);
            n += 1;
        }
        graph.generation = row.generation;
        graph.dirty = true;
        Ok(n)
    }

    /// Writes the cache file; a failure is recorded, not returned (the file is only a cache).
    fn save_ann(
        &self,
        conn: &Connection,
        graph: &mut Ann,
        stats: &mut AnnStats,
        save_error: &mut Option<String>,
    ) {
        match save_graph(
            &self.dir,
            &self.db_path,
            &self.cfg.index,
            conn,
            graph,
            stats,
        ) {
            Ok(()) => *save_error = None,
            Err(e) => {
                stats.save_failures += 1;
                *save_error = Some(e.to_string());
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Best effort: the cache file is not needed for correctness, only to open faster.
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let State {
            conn, ann, stats, ..
        } = state;
        if let Some(graph) = ann.as_mut() {
            if graph.dirty {
                let _ = save_graph(
                    &self.dir,
                    &self.db_path,
                    &self.cfg.index,
                    conn,
                    graph,
                    stats,
                );
            }
        }
    }
}

/// Writes `graph` to its cache file atomically, then records in `ann_cache` what it holds. Does
/// nothing if the database moved on (the graph is not that of the index's current generation).
fn save_graph(
    dir: &Path,
    db_path: &Path,
    index_name: &str,
    conn: &Connection,
    graph: &mut Ann,
    stats: &mut AnnStats,
) -> Result<(), StoreError> {
    let Some(row) = find_index_by_name(conn, db_path, index_name)? else {
        return Ok(());
    };
    if row.id != graph.index_id || row.generation != graph.generation {
        return Ok(());
    }
    let mut bytes = vec![0u8; graph.index.serialized_length()];
    graph
        .index
        .save_to_buffer(&mut bytes)
        .map_err(|e| ann_error("serialize", e))?;
    write_atomically(&ann_file(dir, row.id), &bytes)?;
    conn.execute(
        "INSERT INTO ann_cache (index_id, generation, doc_count, file_len, checksum, params)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (index_id) DO UPDATE SET generation = excluded.generation,
             doc_count = excluded.doc_count, file_len = excluded.file_len,
             checksum = excluded.checksum, params = excluded.params",
        params![
            row.id,
            graph.generation,
            graph.index.size() as i64,
            bytes.len() as i64,
            checksum64(&bytes) as i64,
            ann_params(&row)
        ],
    )
    .map_err(|e| db_error(db_path, e))?;
    graph.dirty = false;
    stats.saved += 1;
    Ok(())
}

#[async_trait]
impl VectorStore for LocalStore {
    fn describe(&self) -> String {
        format!(
            "local store {}, index {}",
            self.shared.dir.display(),
            self.shared.cfg.index
        )
    }

    async fn ensure_index(&self, spec: &IndexSpec) -> Result<EnsureOutcome, StoreError> {
        let spec = spec.clone();
        self.run(move |shared, state| shared.ensure_index(state, &spec))
            .await
    }

    async fn recreate_index(&self, spec: &IndexSpec) -> Result<(), StoreError> {
        let spec = spec.clone();
        self.run(move |shared, state| shared.recreate_index(state, &spec))
            .await
    }

    async fn index_dims(&self) -> Result<usize, StoreError> {
        self.run(|shared, state| shared.index_dims(state)).await
    }

    async fn existing_ids(&self, ids: &[String]) -> Result<HashSet<String>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let ids = ids.to_vec();
        self.run(move |shared, state| shared.existing_ids(state, &ids))
            .await
    }

    async fn upsert(&self, docs: &[ImageDoc], overwrite: bool) -> Result<UpsertReport, StoreError> {
        if docs.is_empty() {
            return Ok(UpsertReport::default());
        }
        let docs = docs.to_vec();
        self.run(move |shared, state| shared.upsert(state, &docs, overwrite))
            .await
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        self.run(|shared, state| shared.refresh(state)).await
    }

    async fn knn(&self, query: &KnnQuery) -> Result<Vec<Hit>, StoreError> {
        if query.k == 0 {
            return Ok(Vec::new());
        }
        let query = query.clone();
        self.run(move |shared, state| shared.knn(state, &query))
            .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.run(|shared, state| shared.count(state)).await
    }
}

/// A hit with its squared distance, ordered by distance (for the bounded heap of exact scans).
struct Scored(f32, Hit);

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| self.1.id.cmp(&other.1.id))
    }
}

/// The `k` smallest squared distances, best first, with their `l2_norm` scores filled in.
fn best_k(mut scored: Vec<(f32, Hit)>, k: usize) -> Vec<Hit> {
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    scored.truncate(k);
    scored
        .into_iter()
        .map(|(d2, mut hit)| {
            hit.score = 1.0 / (1.0 + d2.max(0.0));
            hit
        })
        .collect()
}

/// Why `doc` cannot be stored in an index of `dims`-d vectors, if it cannot.
fn doc_problem(doc: &ImageDoc, dims: usize) -> Option<String> {
    if doc.id.is_empty() {
        return Some("the document id is empty".into());
    }
    if doc.vector.len() != dims {
        return Some(format!(
            "the vector has {} dimensions, the index holds {dims}-d vectors",
            doc.vector.len()
        ));
    }
    if doc.vector.iter().any(|x| !x.is_finite()) {
        return Some("the vector has a NaN or infinite value".into());
    }
    None
}

/// What keeps an existing index from holding what `spec` makes (worded as the Elasticsearch
/// backend words it); HNSW `m`/`ef_construction` only tune recall and are not compared.
fn spec_differences(row: &IndexRow, spec: &IndexSpec) -> Vec<String> {
    let mut out = Vec::new();
    if row.dims != spec.dims {
        out.push(format!(
            "IFV dims: index has {}, model makes {}",
            row.dims, spec.dims
        ));
    }
    if row.similarity != SIMILARITY {
        out.push(format!(
            "IFV similarity: index has {}, expected {SIMILARITY}",
            row.similarity
        ));
    }
    out
}

fn find_index(conn: &Connection, shared: &Shared) -> Result<Option<IndexRow>, StoreError> {
    find_index_by_name(conn, &shared.db_path, &shared.cfg.index)
}

fn find_index_by_name(
    conn: &Connection,
    db_path: &Path,
    name: &str,
) -> Result<Option<IndexRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, dims, similarity, hnsw_m, hnsw_ef_construction, generation, doc_count
             FROM indexes WHERE name = ?1",
        )
        .map_err(|e| db_error(db_path, e))?;
    stmt.query_row(params![name], |r| {
        Ok(IndexRow {
            id: r.get(0)?,
            dims: r.get::<_, i64>(1)?.max(0) as usize,
            similarity: r.get(2)?,
            hnsw_m: r.get::<_, i64>(3)?.clamp(2, 1_024) as u32,
            hnsw_ef_construction: r.get::<_, i64>(4)?.clamp(1, 100_000) as u32,
            generation: r.get(5)?,
            doc_count: r.get(6)?,
        })
    })
    .optional()
    .map_err(|e| db_error(db_path, e))
}

fn insert_index(conn: &Connection, name: &str, spec: &IndexSpec) -> rusqlite::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    conn.execute(
        "INSERT INTO indexes (name, dims, similarity, hnsw_m, hnsw_ef_construction, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            name,
            spec.dims as i64,
            SIMILARITY,
            spec.hnsw_m.unwrap_or(DEFAULT_HNSW_M).max(2),
            spec.hnsw_ef_construction
                .unwrap_or(DEFAULT_HNSW_EF_CONSTRUCTION)
                .max(1),
            now
        ],
    )?;
    Ok(())
}

fn delete_index_rows(conn: &Connection, index_id: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM docs WHERE index_id = ?1", params![index_id])?;
    conn.execute(
        "DELETE FROM ann_cache WHERE index_id = ?1",
        params![index_id],
    )?;
    conn.execute("DELETE FROM indexes WHERE id = ?1", params![index_id])?;
    Ok(())
}

fn ann_file(dir: &Path, index_id: i64) -> PathBuf {
    dir.join(format!("hnsw-{index_id}.usearch"))
}

fn remove_ann_file(dir: &Path, index_id: i64) {
    let _ = fs::remove_file(ann_file(dir, index_id));
}

fn ann_options(row: &IndexRow, ef_search: usize) -> IndexOptions {
    IndexOptions {
        dimensions: row.dims,
        metric: MetricKind::L2sq,
        quantization: ScalarKind::I8,
        connectivity: row.hnsw_m as usize,
        expansion_add: row.hnsw_ef_construction as usize,
        expansion_search: ef_search.max(1),
        multi: false,
    }
}

/// What a cache file must have been written with to be used.
fn ann_params(row: &IndexRow) -> String {
    format!(
        "{ANN_FORMAT} usearch={} dims={} m={} ef_construction={}",
        usearch::version(),
        row.dims,
        row.hnsw_m,
        row.hnsw_ef_construction
    )
}

/// Room for `capacity` vectors and `threads` concurrent callers (always 1 here: the store's mutex
/// serializes every call into the graph).
fn reserve(index: &Index, capacity: usize, threads: usize) -> Result<(), StoreError> {
    index
        .reserve_capacity_and_threads(capacity.max(1), threads.max(1))
        .map_err(|e| ann_error("reserve", e))
}

fn ann_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("HNSW {what} failed: {e}"))
}

fn vector_to_blob(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn blob_to_vector(blob: &[u8], dims: usize) -> Option<Vec<f32>> {
    if blob.len() != dims * 4 {
        return None;
    }
    Some(
        blob.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

/// FNV-1a over 8-byte words: tells an intact cache file from a damaged or foreign one.
fn checksum64(bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(a)).wrapping_mul(PRIME);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    h
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one: a temp
/// file in the same directory, fsync, rename over `path`, fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |what: &str, p: &Path, e: std::io::Error| {
        StoreError::Other(format!("cannot {what} {}: {e}", p.display()))
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut file = File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        file.write_all(bytes).map_err(|e| io("write", &tmp, e))?;
        file.sync_all().map_err(|e| io("sync", &tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| io("rename onto", path, e))?;
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Creates the store directory if needed; its absolute path.
fn prepare_dir(dir: &Path) -> Result<PathBuf, StoreError> {
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

/// Takes the exclusive lock on `dir/imgvec.lock`, waiting at most `wait`; records our pid in it.
fn acquire_lock(dir: &Path, wait: Duration) -> Result<File, StoreError> {
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
                    let pid = fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok())
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "unknown".into());
                    return Err(StoreError::Other(format!(
                        "store {} is in use by another imgvec process (pid {pid}): wait for it to finish, or use another --store",
                        dir.display()
                    )));
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
    // The pid is only for the message above: failing to write it is not an error.
    let _ = file.set_len(0);
    let _ = writeln!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(file)
}

/// Opens the database, creating the schema in a new one and refusing anything not an imgvec store.
fn open_db(path: &Path) -> Result<Connection, StoreError> {
    if let Ok(m) = fs::metadata(path) {
        if !m.is_file() {
            return Err(StoreError::Other(format!(
                "{} should be the store's database but is not a file: move it away or use another --store",
                path.display()
            )));
        }
    }
    let db = |e| db_error(path, e);
    let conn = Connection::open(path).map_err(db)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Other(format!(
            "{}: cannot switch the database to WAL mode (it stays in {mode} mode)",
            path.display()
        )));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(db)?;
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(db)?;
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db)?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(db)?;
    match (app, version) {
        (0, 0) if objects == 0 => {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA application_id = {APPLICATION_ID};
                 PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(db)?;
        }
        (APPLICATION_ID, SCHEMA_VERSION) => {}
        (APPLICATION_ID, v) if v > SCHEMA_VERSION => {
            return Err(StoreError::Other(format!(
                "{} was written by a newer imgvec (schema {v}, this one reads {SCHEMA_VERSION}): upgrade imgvec",
                path.display()
            )))
        }
        (APPLICATION_ID, v) => {
            return Err(StoreError::Other(format!(
                "{} has an unknown imgvec schema version {v}",
                path.display()
            )))
        }
        _ => {
            return Err(StoreError::Other(format!(
                "{} is an SQLite database of another program, not an imgvec store: move it away or use another --store",
                path.display()
            )))
        }
    }
    Ok(conn)
}

/// A database error, naming the file and saying what to do where that is clear.
fn db_error(path: &Path, e: rusqlite::Error) -> StoreError {
    let hint = match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            " (the file is not an SQLite database: move it away or use another --store)"
        }
        Some(ErrorCode::DatabaseCorrupt) => {
            " (the database is damaged: restore it from a backup, or re-ingest into another --store)"
        }
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            " (another program is using the database)"
        }
        Some(ErrorCode::DiskFull) => " (the disk is full)",
        Some(ErrorCode::ReadOnly) | Some(ErrorCode::PermissionDenied) => {
            " (no permission to write there)"
        }
        Some(ErrorCode::CannotOpen) => " (cannot open the file: check the path and permissions)",
        _ => "",
    };
    StoreError::Other(format!("store database {}: {e}{hint}", path.display()))
}
