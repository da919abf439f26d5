//! Embedded (serverless) backend of [`VectorStore`]: keeps image vectors in a directory on this
//! machine, so imgvec works with no Elasticsearch at all.
//!
//! What it is for: one store directory (default: the platform data directory, see `crate::data_dir`)
//! holding any number of named indexes. The source of truth is one SQLite database,
//! `imgvec.sqlite3` (WAL mode, `synchronous=FULL`, one transaction per [`VectorStore::upsert`]
//! call): documents, their f32 vectors as BLOBs, each index's metadata (dims, similarity, HNSW
//! parameters, a generation counter bumped by every write) and the tombstones of deleted
//! documents. Search goes through an int8-quantized HNSW graph (the `usearch` library, squared-L2
//! metric) kept in memory and cached in `hnsw-<index id>.usearch`; its candidates are re-ranked
//! with the exact f32 vectors from SQLite, so scores are exact `1 / (1 + d²)` (Elasticsearch's
//! `l2_norm`).
//!
//! Many readers and writers at once, across processes, as SQLite's WAL mode promises: readers
//! never wait. Each search runs in one read transaction (a consistent snapshot: a document is
//! seen whole or not at all) and first brings its process's graph up to that snapshot — the rows
//! written since join the graph's tail, which the search scans beside the graph and a thread of
//! its own moves into it (`tail`, `follow`); the keys tombstoned since leave it — so a running
//! `serve` shows what an `ingest` in another process has just committed, and a write is done once
//! its rows are (it does not wait for the graph). Writes take
//! `imgvec.lock` (an OS lock, see `lock`) for the length of one batch, so two writers take turns
//! batch by batch; the graph's cache file is written atomically (temp file, fsync, rename) by a
//! writer, with the generation it holds in its header, and any process whose graph is older or
//! missing loads it and follows from there. A stale cache is loaded with the rows written since as
//! its tail; a missing or damaged one is rebuilt from all rows.
//!
//! This file holds [`LocalStore`] and its [`VectorStore`] impl, which only hand each call to a
//! blocking thread holding the store's state; the work is in the submodules, one job each: `config`
//! (names, defaults, [`LocalConfig`]), `db` (schema, opening, SQL rows), `records` (the operations'
//! transactions), `delete` (deleting documents, listing them by path), `graph` (the in-memory HNSW
//! graph, loaded, built or kept; `build`, from all rows), `tail` (the rows written after it,
//! scanned until it has them), `follow` (moving them in, on a thread of its own), `inserts` (adding
//! to the graph on every core), `relink` (the nodes a search for themselves misses, linked afresh),
//! `graph_file` (its cache file), `labels` (each label's keys, and 2-bit codes; `keymap`, each
//! key's label), `codes` / `codes2` (scans of int8 codes, a label's read from the graph, and of
//! 2-bit codes), `search` (kNN and re-ranking), `ahead` (the rows a search reads, read ahead),
//! `browse` (labels, documents by id), `lock` (the write lock), `fsutil` (store directory, atomic
//! writes).
//!
//! What it is not for: sharing a store between machines (SQLite's locks need one machine's file
//! system), serving queries to other programs, or knowing anything about models and files. It
//! never hand-rolls ANN or durable storage: SQLite and usearch do that.

mod ahead;
mod batch;
mod browse;
mod build;
mod codes;
mod codes2;
mod config;
mod db;
mod delete;
mod exact;
mod follow;
mod fsutil;
mod graph;
mod graph_file;
mod inserts;
mod keymap;
mod labels;
mod lock;
mod order;
mod paths;
mod quant;
mod records;
mod relink;
mod scan;
mod search;
mod tail;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use async_trait::async_trait;
use rusqlite::Connection;

use super::{
    DocFile, DocPath, DocScan, EnsureOutcome, Hit, ImageDoc, IndexSpec, KnnQuery, LabelCount,
    ModelRecord, PathsRemoved, StoreError, UpsertReport, VectorStore,
};
pub use config::{
    LocalConfig, DB_FILE, DEFAULT_ANN_SAVE_INTERVAL, DEFAULT_BACKGROUND_BUILD_ROWS,
    DEFAULT_CATCH_UP_ROWS, DEFAULT_EXACT_SCAN_ROWS, DEFAULT_FILTERED_CODE2_BYTES,
    DEFAULT_FILTERED_CODE2_CANDIDATES, DEFAULT_FILTERED_MIN_EF, DEFAULT_FILTERED_SCAN_ROWS,
    DEFAULT_HNSW_EF_CONSTRUCTION, DEFAULT_HNSW_M, DEFAULT_MIN_EF_SEARCH, DEFAULT_RELINK_FROM_ROWS,
    LOCK_FILE, MAX_NUM_CANDIDATES, SIMILARITY,
};
use db::{db_error, find_index_by_name, open_db, IndexRow};
use graph::Ann;
pub use graph::AnnStats;
use graph_file::ann_file;
pub use lock::{WaitHook, WaitNotice};
pub use order::sort_by_cell;
pub use quant::{Quantizer, FIT_ROWS};

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

/// What every call shares: where the store is, its config and its state.
struct Shared {
    /// Absolute store directory.
    dir: PathBuf,
    db_path: PathBuf,
    cfg: LocalConfig,
    state: Mutex<State>,
    /// Looks up the rows a search re-ranks ahead of it (`ahead`).
    read_ahead: ahead::ReadAhead,
    /// Signalled whenever the graph took in rows or the following thread ended (`follow`).
    changed: Condvar,
    /// A graph being built on a thread of its own for searches (see `graph`).
    building: Mutex<Option<graph::Building>>,
    /// The thread moving the graph's tail into it (`follow`), and whether it runs (changed only
    /// with `state` locked).
    follower: Mutex<Option<std::thread::JoinHandle<()>>>,
    following: AtomicBool,
    /// The store is closing: no following thread starts.
    stopping: AtomicBool,
    /// This, for starting the following thread.
    me: Weak<Shared>,
}

/// What one call at a time may change: the database connection and the in-memory graph.
struct State {
    conn: Connection,
    ann: Option<Ann>,
    last_save: Instant,
    stats: AnnStats,
    /// Why the last attempt to write the cache file failed, if it did.
    save_error: Option<String>,
    /// This process has written to the store (then it saves the graph's cache file when done).
    wrote: bool,
}

impl LocalStore {
    /// Opens (creating if needed) the store directory `dir` for index `index`, with the defaults
    /// of [`LocalConfig::new`]. The index itself is created by [`VectorStore::ensure_index`].
    pub fn open(dir: &Path, index: &str) -> Result<LocalStore, StoreError> {
        Self::open_with(LocalConfig::new(dir, index))
    }

    /// Opens the store described by `cfg`: opens or creates the database and checks it is an
    /// imgvec store. Nothing is locked: other processes may read and write the store meanwhile.
    pub fn open_with(cfg: LocalConfig) -> Result<LocalStore, StoreError> {
        if cfg.index.trim().is_empty() {
            return Err(StoreError::Other("the index name is empty".into()));
        }
        let dir = fsutil::prepare_dir(&cfg.dir)?;
        let db_path = dir.join(DB_FILE);
        let conn = open_db(&db_path)?;
        Ok(LocalStore {
            shared: Arc::new_cyclic(|me| Shared {
                dir,
                read_ahead: ahead::ReadAhead::new(db_path.clone()),
                db_path,
                cfg,
                state: Mutex::new(State {
                    conn,
                    ann: None,
                    last_save: Instant::now(),
                    stats: AnnStats::default(),
                    save_error: None,
                    wrote: false,
                }),
                changed: Condvar::new(),
                building: Mutex::new(None),
                follower: Mutex::new(None),
                following: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                me: me.clone(),
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
        Ok(shared
            .find_index(&state.conn)?
            .map(|row| ann_file(&shared.dir, row.id)))
    }

    /// What the in-memory HNSW graph went through since the store was opened.
    pub fn ann_stats(&self) -> AnnStats {
        AnnStats {
            read_ahead_searches: self.shared.read_ahead.woken(),
            ..self.shared.lock_state().stats
        }
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
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| {
            // A panic in the middle of an operation: SQLite rolled back its transaction; the
            // in-memory graph may be half-updated, so it is reloaded.
            let mut state = poisoned.into_inner();
            state.ann = None;
            self.state.clear_poison();
            state
        })
    }

    /// Takes the store's write lock for one write (waiting for another process's as configured).
    fn lock_for_writing(&self) -> Result<lock::WriteLock, StoreError> {
        lock::lock_for_writing(&self.dir, self.cfg.lock_wait, self.cfg.on_wait.as_ref())
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

    /// This store's index row, if the index exists.
    fn find_index(&self, conn: &Connection) -> Result<Option<IndexRow>, StoreError> {
        find_index_by_name(conn, &self.db_path, &self.cfg.index)
    }

    /// This store's index row; [`StoreError::IndexMissing`] if there is none.
    fn index_row(&self, conn: &Connection) -> Result<IndexRow, StoreError> {
        self.find_index(conn)?.ok_or_else(|| self.missing())
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        // The graph's following thread holds the store too: stopped here, after its chunk, so
        // that closing saves the graph as far as it got.
        self.shared.stop_following();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Best effort: the cache file is not needed for correctness, only to open faster. Saved by
        // a process that wrote, or that built or caught up much of the graph itself, and only if
        // no other process is writing right now (its graph would be older than the database).
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State {
            conn,
            ann,
            stats,
            wrote,
            ..
        } = &mut *guard;
        if let Some(graph) = ann.as_mut().filter(|g| !g.adding) {
            if graph.worth_saving(*wrote) {
                if let Some(_lock) = lock::try_lock_for_writing(&self.dir) {
                    let _ = self.save_graph(conn, graph, stats);
                }
            }
        }
    }
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

    async fn index_model(&self) -> Result<Option<ModelRecord>, StoreError> {
        self.run(|shared, state| shared.index_model(state)).await
    }

    async fn adopt_model(&self, model: &ModelRecord) -> Result<ModelRecord, StoreError> {
        let model = model.clone();
        self.run(move |shared, state| shared.adopt_model(state, &model))
            .await
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
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let mut state = shared.lock_state();
            shared.sync_graph_only(&mut state)?;
            let state = shared.wait_for_tail(state);
            let mut state = shared.relink_if_due(state);
            shared.refresh(&mut state)
        })
        .await
        .map_err(|e| StoreError::Other(format!("local store task failed: {e}")))?
    }

    async fn knn(&self, query: &KnnQuery) -> Result<Vec<Hit>, StoreError> {
        if query.k == 0 {
            return Ok(Vec::new());
        }
        let query = query.clone();
        self.run(move |shared, state| shared.knn(state, &query))
            .await
    }

    async fn knn_batch(&self, queries: &[KnnQuery]) -> Result<Vec<Vec<Hit>>, StoreError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let queries = queries.to_vec();
        self.run(move |shared, state| shared.knn_batch(state, &queries))
            .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.run(|shared, state| shared.count(state)).await
    }

    async fn files_under(&self, prefixes: &[String]) -> Result<Vec<DocFile>, StoreError> {
        let prefixes = prefixes.to_vec();
        self.run(move |shared, state| shared.files_under(state, &prefixes))
            .await
    }

    async fn delete(&self, ids: &[String]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids = ids.to_vec();
        self.run(move |shared, state| shared.delete(state, &ids))
            .await
    }

    async fn add_paths(&self, paths: &[DocPath]) -> Result<Vec<String>, StoreError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let paths = paths.to_vec();
        self.run(move |shared, state| shared.add_paths(state, &paths))
            .await
    }

    async fn remove_paths(&self, paths: &[DocPath]) -> Result<PathsRemoved, StoreError> {
        if paths.is_empty() {
            return Ok(PathsRemoved::default());
        }
        let paths = paths.to_vec();
        self.run(move |shared, state| shared.remove_paths(state, &paths))
            .await
    }

    async fn labels(&self) -> Result<Vec<LabelCount>, StoreError> {
        self.run(|shared, state| shared.labels(state)).await
    }

    async fn scan(
        &self,
        page_size: usize,
        after: Option<String>,
    ) -> Result<Box<dyn DocScan>, StoreError> {
        // Fails now, not at the first page, when the index is missing.
        self.run(|shared, state| shared.index_row(&state.conn).map(drop))
            .await?;
        Ok(Box::new(scan::LocalScan {
            shared: Arc::clone(&self.shared),
            page_size: page_size.max(1),
            after,
            done: false,
        }))
    }

    async fn exact_knn(&self, query: &KnnQuery) -> Result<Vec<Hit>, StoreError> {
        let query = query.clone();
        self.run(move |shared, state| shared.exact_knn(state, &query))
            .await
    }

    async fn get(&self, ids: &[String]) -> Result<Vec<ImageDoc>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.run(move |shared, state| shared.get(state, &ids)).await
    }
}

/// Deterministic int8 codes for tests: `dims` components spread over the whole range, from `seed`.
#[cfg(test)]
fn test_code(seed: u64, dims: usize) -> Vec<i8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..dims)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as u8) as i8
        })
        .collect()
}
