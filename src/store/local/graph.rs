//! The in-memory HNSW graph of an index (usearch, int8, squared L2): set up, built, caught up.
//!
//! What it is for: holding one index's graph with the label of each key (for filtered search), and
//! bringing it to a read snapshot of the database ([`Shared::snapshot`]) — loaded from the cache
//! file, followed by what was written since its generation (its `tail`: rows added or replaced,
//! keys tombstoned, moved in by `follow`), or rebuilt from all rows — in any process, reader or
//! writer alike.
//!
//! What it is not for: the cache file's format and bookkeeping (`graph_file`), running queries
//! (`search`), or being a source of truth: it is a cache of the database, and anything wrong with
//! it is answered by rebuilding it.

use std::sync::{Arc, PoisonError};
use std::time::Instant;

use rusqlite::{params, Connection, Transaction};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::build::build_graph;
use super::db::{db_error, find_index_by_name, open_db, IndexRow};
use super::follow::background_pool;
use super::inserts::{add_rows, mend, reserve, search_check, Checked};
use super::labels::Labels;
use super::quant::{Quantizer, SETTLED_ROWS};
use super::tail::{Chunk, Tail};
use super::{Shared, State};
use crate::store::StoreError;

/// A process that only read saves the cache file when it closes only if its graph differs from
/// the file by at least this many rows (it rebuilt the graph, or caught up a long ingest): saving a
/// large graph for a handful of rows would cost more than catching them up again.
const SAVE_ON_CLOSE_ROWS: u64 = 1_024;

/// Times a read tries to load the cache file that a writer may be replacing meanwhile, before it
/// builds the graph from the rows instead.
const LOAD_ATTEMPTS: usize = 3;

/// A graph being built from the rows on a thread of its own.
pub(super) struct Building {
    handle: std::thread::JoinHandle<Result<Ann, StoreError>>,
}

/// What happened to the in-memory HNSW graph since the store was opened (for tests and `--verbose`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnnStats {
    /// Times the graph was loaded from its cache file.
    pub loaded_from_file: u64,
    /// Times it was built from all rows (no usable cache file).
    pub rebuilt: u64,
    /// Rows added to the graph (or replaced in it) because they were written after its generation.
    pub caught_up_rows: u64,
    /// Keys taken out of the graph because their documents were deleted after its generation.
    pub caught_up_deletions: u64,
    /// Graphs built on a thread of their own and taken into use.
    pub built_in_background: u64,
    /// Searches answered by an exact scan because the graph was being built.
    pub exact_while_building: u64,
    /// Searches that scanned rows written after the graph's generation beside the graph (rows
    /// its following thread had not moved in yet, `tail`).
    pub tail_searches: u64,
    /// Searches whose rows to re-rank came slowly from the disk, and so were read ahead by the
    /// store's threads (`ahead`).
    pub read_ahead_searches: u64,
    /// Checks of every node after a write (each that a search for its own code misses linked
    /// afresh; a build checks its own, not counted here).
    pub relink_passes: u64,
    /// Nodes those checks linked afresh.
    pub relinked: u64,
    /// Times the cache file was written.
    pub saved: u64,
    /// Times writing it failed (searching goes on from memory; see
    /// [`LocalStore::ann_save_error`](super::LocalStore::ann_save_error)).
    pub save_failures: u64,
}

/// The in-memory HNSW graph of one index, with what filtering needs.
pub(super) struct Ann {
    pub(super) index_id: i64,
    /// Shared with the thread that adds the tail's rows while searches go on (`follow`).
    pub(super) index: Arc<Index>,
    /// The index generation whose rows the graph holds (see `tail` for what that means).
    pub(super) generation: i64,
    /// The rows written after `generation`, not yet in the graph.
    pub(super) tail: Tail,
    /// A chunk of the tail is being added on another thread: nothing but searches may touch the
    /// graph meanwhile (no removal, reserve or save).
    pub(super) adding: bool,
    /// The graph's size before that chunk (whose rows are counted in the tail until it is in).
    size_before: usize,
    pub(super) labels: Labels,
    /// How vectors become the graph's int8 codes (queries too).
    pub(super) quant: Quantizer,
    /// Rows added, replaced or removed since the graph matched its cache file (all, after a build).
    pub(super) unsaved: u64,
    /// The graph's slots when each node was last checked to be found by a search for its own code
    /// (`relink`): all of them when it was built or loaded (a saved graph was checked before a
    /// write's last save, though not before a periodic save in the middle of a write).
    pub(super) screened: usize,
}

impl Ann {
    /// Differs from the cache file.
    pub(super) fn dirty(&self) -> bool {
        self.unsaved > 0
    }

    /// Whether closing the store should save it: always if this process wrote, else only if the
    /// graph differs from the file by many rows.
    pub(super) fn worth_saving(&self, wrote: bool) -> bool {
        self.dirty() && (wrote || self.unsaved >= SAVE_ON_CLOSE_ROWS)
    }

    /// The graph's candidates for `query` (`count` of them, searched with the current `ef`), and
    /// only keys `keep` accepts if given.
    pub(super) fn candidates(
        &self,
        query: &[f32],
        count: usize,
        keep: Option<&dyn Fn(u64) -> bool>,
    ) -> Result<Vec<u64>, StoreError> {
        let code = self.quant.code(query);
        let found = match keep {
            None => self.index.search(&code, count),
            Some(keep) => self.index.filtered_search(&code, count, keep),
        };
        found.map(|m| m.keys).map_err(|e| ann_error("search", e))
    }

    /// A graph of `index` holding every row up to `generation`, with nothing after it yet. What
    /// loading or building it freed (the labels' rows read, the tables grown, the build's sorted
    /// chunks) goes back to the system: the allocator keeps freed blocks (`tune_allocator`).
    pub(super) fn new(
        index_id: i64,
        index: Index,
        generation: i64,
        labels: Labels,
        quant: Quantizer,
        unsaved: u64,
    ) -> Ann {
        crate::release_freed_memory();
        let index_slots = index.slots();
        Ann {
            index_id,
            tail: Tail::new(index.dimensions(), generation),
            index: Arc::new(index),
            generation,
            adding: false,
            size_before: 0,
            labels,
            quant,
            unsaved,
            screened: index_slots,
        }
    }

    /// Whether its nodes are due to be checked again (`relink::relink_pass`): at least
    /// `from_rows` of them, half as many again as when they were last checked, nothing in the
    /// tail or being added.
    pub(super) fn relink_due(&self, from_rows: usize) -> bool {
        let slots = self.index.slots();
        !self.adding
            && self.tail.is_empty()
            && slots >= from_rows.max(1)
            && slots >= self.screened + self.screened / 2
    }

    /// Every row: those in the graph and those in its tail.
    pub(super) fn rows(&self) -> usize {
        let held = if self.adding {
            self.size_before
        } else {
            self.index.size()
        };
        held + self.tail.rows()
    }

    /// Marks the graph as being added to elsewhere (by `follow`, after [`Ann::prepare_chunk`])
    /// or not any more.
    pub(super) fn set_adding(&mut self, adding: bool) {
        self.size_before = self.index.size();
        self.adding = adding;
    }

    /// What must happen before `chunk`'s rows are added, and not beside a search's walk of the
    /// same nodes: the keys deleted in its generations, and the older rows of the keys it
    /// replaces, taken out; room made for it.
    pub(super) fn prepare_chunk(
        &mut self,
        chunk: &Chunk,
        stats: &mut AnnStats,
    ) -> Result<(), StoreError> {
        for &key in &chunk.removed {
            if self.index.contains(key) {
                self.index.remove(key).map_err(|e| ann_error("remove", e))?;
                self.labels.remove(key);
                stats.caught_up_deletions += 1;
            }
        }
        for (key, _, _) in &chunk.rows {
            if self.index.contains(*key) {
                self.index
                    .remove(*key)
                    .map_err(|e| ann_error("remove", e))?;
            }
        }
        self.unsaved += chunk.removed.len() as u64;
        let wanted = self.index.size() + chunk.rows.len();
        if wanted >= self.index.capacity() {
            reserve(&self.index, (self.index.capacity() * 2).max(wanted + 1_024))?;
        }
        Ok(())
    }

    /// After `chunk`'s rows were added ([`add_rows`]): each checked to be reachable, their labels
    /// and codes recorded, and the graph's generation moved to the chunk's.
    pub(super) fn finish_chunk(
        &mut self,
        chunk: Chunk,
        checked: Checked,
        stats: &mut AnnStats,
    ) -> Result<(), StoreError> {
        mend(&self.index, &chunk.rows, checked)?;
        let added = chunk.rows.len() as u64;
        for (key, label, code) in chunk.rows {
            self.labels.set(key, label, &code);
        }
        self.unsaved += added;
        stats.caught_up_rows += added;
        self.tail.done_through(chunk.through);
        self.generation = chunk.through;
        self.settle();
        Ok(())
    }

    /// Adds the whole tail here and now (the caller holds the store's state; nothing is adding).
    pub(super) fn take_in_tail(&mut self, stats: &mut AnnStats) -> Result<(), StoreError> {
        while let Some(chunk) = self.tail.chunk(usize::MAX) {
            self.prepare_chunk(&chunk, stats)?;
            add_rows(&self.index, &chunk.rows)?;
            let checked = search_check(&self.index, &chunk.rows)?;
            self.finish_chunk(chunk, checked, stats)?;
        }
        self.settle();
        Ok(())
    }

    /// With nothing left in the tail (and nothing being added), the graph holds every row up to
    /// the tail's generation.
    pub(super) fn settle(&mut self) {
        if self.tail.is_empty() && !self.adding {
            self.generation = self.tail.generation;
        }
    }

    /// Whether its codes were calibrated on a guess or a handful of rows while it now holds many:
    /// then it is rebuilt, and calibrated on them.
    fn needs_calibration(&self) -> bool {
        self.quant.rows() < SETTLED_ROWS && self.rows() as u64 >= SETTLED_ROWS
    }

    /// Whether it can be brought to `row` by catching up.
    fn can_catch_up_to(&self, row: &IndexRow) -> bool {
        self.index_id == row.id
            && self.tail.generation <= row.generation
            && self.tail.generation >= row.tombstones_after
    }
}

pub(super) fn ann_options(row: &IndexRow, ef_search: usize) -> IndexOptions {
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

pub(super) fn ann_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("HNSW {what} failed: {e}"))
}

impl Shared {
    /// After a committed write (the write lock still held): brings the graph up to date and saves
    /// its cache file if that is due. The graph is a cache: if updating it fails, it is dropped and
    /// rebuilt when next needed, and the write still succeeded.
    pub(super) fn graph_after_write(&self, state: &mut State) {
        state.wrote = true;
        if self.sync_graph(state, false).is_err() {
            state.ann = None;
        }
    }

    /// Brings the graph up to date and writes its cache file if it differs from it (taking the
    /// write lock for that, so the file is never older than the database it is written for).
    pub(super) fn refresh(&self, state: &mut State) -> Result<(), StoreError> {
        self.sync_graph_only(state)?;
        if state.ann.as_ref().is_some_and(Ann::dirty) {
            let _lock = self.lock_for_writing()?;
            self.sync_graph(state, true)?;
        }
        Ok(())
    }

    /// Brings the graph to the database's latest generation.
    pub(super) fn sync_graph_only(&self, state: &mut State) -> Result<(), StoreError> {
        let State {
            conn, ann, stats, ..
        } = state;
        let (tx, _row, _ready) = self.snapshot(conn, ann, stats, false)?;
        drop(tx);
        Ok(())
    }

    /// Brings the graph up to date, then writes its cache file if it differs from it and either
    /// `save_now` or the save interval has passed since the last save. The caller holds the write
    /// lock.
    fn sync_graph(&self, state: &mut State, save_now: bool) -> Result<(), StoreError> {
        self.sync_graph_only(state)?;
        let State {
            conn,
            ann,
            last_save,
            stats,
            save_error,
            ..
        } = state;
        if let Some(graph) = ann.as_mut().filter(|g| !g.adding) {
            if graph.dirty() && (save_now || last_save.elapsed() >= self.cfg.ann_save_interval) {
                self.save_ann(conn, graph, stats, save_error);
                *last_save = Instant::now();
            }
        }
        Ok(())
    }

    /// Opens a read transaction (a consistent snapshot of the database) and brings the graph in
    /// `slot` to it: kept, its tail read up to the snapshot, if it can be (`follow`), else loaded
    /// from the cache file (outside the snapshot, then followed inside a new one: the file is
    /// never newer than what a snapshot
    /// opened after reading it sees), else built from the snapshot's rows — or, for a search
    /// (`search_only`) over more than `background_build_rows` documents, built on a thread of its
    /// own while the search scans exactly. Returns the snapshot, the index's row in it and whether
    /// the graph is ready; [`StoreError::IndexMissing`] if there is no index.
    pub(super) fn snapshot<'c>(
        &self,
        conn: &'c Connection,
        slot: &mut Option<Ann>,
        stats: &mut AnnStats,
        search_only: bool,
    ) -> Result<(Transaction<'c>, IndexRow, bool), StoreError> {
        let mut loads = 0;
        loop {
            // A finished background build: taken into use, or let go if a graph was had meanwhile
            // (a writer saved one, and it was loaded).
            if let Some(graph) = self.take_built() {
                if slot.is_none() {
                    stats.built_in_background += 1;
                    *slot = Some(graph);
                }
            }
            let tx = conn.unchecked_transaction().map_err(|e| self.db(e))?;
            let row = self.index_row(&tx)?;
            let far_behind = match slot.as_ref() {
                Some(g) if loads < LOAD_ATTEMPTS && g.can_catch_up_to(&row) => {
                    self.far_behind_a_newer_file(&tx, g, &row)?
                }
                _ => false,
            };
            if far_behind {
                loads += 1;
                drop(tx);
                if let Some(newer) = self.load_ann(conn, &row) {
                    stats.loaded_from_file += 1;
                    *slot = Some(newer);
                }
                continue;
            }
            if slot.as_ref().is_some_and(|g| g.can_catch_up_to(&row)) {
                if let Some(graph) = slot.as_mut() {
                    match self.follow_to(&tx, graph, &row, stats, search_only) {
                        Ok(()) if graph.needs_calibration() => {
                            *slot = Some(self.rebuild(&tx, &row, stats)?);
                            return Ok((tx, row, true));
                        }
                        Ok(()) if graph_matches(graph, &row) => return Ok((tx, row, true)),
                        // The graph disagrees with the database (it should not): rebuild it.
                        Ok(()) => *slot = None,
                        Err(e) => {
                            *slot = None;
                            return Err(e);
                        }
                    }
                }
            } else if loads < LOAD_ATTEMPTS {
                loads += 1;
                drop(tx);
                *slot = self.load_ann(conn, &row);
                if slot.is_some() {
                    stats.loaded_from_file += 1;
                    continue;
                }
                if self.load_may_succeed_later(&row) {
                    continue;
                }
                loads = LOAD_ATTEMPTS;
                continue;
            }
            if search_only && row.doc_count > self.cfg.background_build_rows as i64 {
                self.start_build();
                stats.exact_while_building += 1;
                return Ok((tx, row, false));
            }
            *slot = Some(self.rebuild(&tx, &row, stats)?);
            return Ok((tx, row, true));
        }
    }

    /// The graph built from all rows of `row`'s index in this snapshot, counted.
    fn rebuild(
        &self,
        tx: &Transaction<'_>,
        row: &IndexRow,
        stats: &mut AnnStats,
    ) -> Result<Ann, StoreError> {
        stats.rebuilt += 1;
        build_graph(tx, &self.db_path, &self.cfg, row)
    }

    /// Whether `graph` is more than `catch_up_rows` rows behind `row` while the cache file holds
    /// a later generation than the graph: loading the file then costs less than adding the rows.
    fn far_behind_a_newer_file(
        &self,
        conn: &Connection,
        graph: &Ann,
        row: &IndexRow,
    ) -> Result<bool, StoreError> {
        if graph.generation == row.generation {
            return Ok(false);
        }
        let newer = self
            .file_generation(row.id)
            .is_some_and(|g| g > graph.generation && g <= row.generation);
        if !newer {
            return Ok(false);
        }
        let behind: i64 = conn
            .prepare_cached("SELECT count(*) FROM docs WHERE index_id = ?1 AND generation > ?2")
            .and_then(|mut s| s.query_row(params![row.id, graph.generation], |r| r.get(0)))
            .map_err(|e| self.db(e))?;
        Ok(behind > self.cfg.catch_up_rows as i64)
    }

    /// Starts building the graph from the rows on a thread of its own (one connection of its own,
    /// one read snapshot), unless a build is under way.
    fn start_build(&self) {
        let mut building = self.building.lock().unwrap_or_else(PoisonError::into_inner);
        if building.is_some() {
            return;
        }
        let (db_path, cfg) = (self.db_path.clone(), self.cfg.clone());
        let thread = std::thread::Builder::new()
            .name("imgvec-hnsw-build".into())
            .spawn(move || {
                // Behind the searches, which scan exactly meanwhile and come first.
                let pool = background_pool("imgvec-hnsw-build");
                let build = move || {
                    let conn = open_db(&db_path)?;
                    let tx = conn
                        .unchecked_transaction()
                        .map_err(|e| db_error(&db_path, e))?;
                    let index = cfg.index.clone();
                    let row = find_index_by_name(&tx, &db_path, &index)?
                        .ok_or(StoreError::IndexMissing { index })?;
                    build_graph(&tx, &db_path, &cfg, &row)
                };
                match &pool {
                    Some(pool) => pool.install(build),
                    None => build(),
                }
            });
        // Could not start a thread: the next search tries again (and scans meanwhile).
        if let Ok(handle) = thread {
            *building = Some(Building { handle });
        }
    }

    /// The graph a finished background build made, if one has finished (a failed build is
    /// forgotten: the next search starts another).
    fn take_built(&self) -> Option<Ann> {
        let mut building = self.building.lock().unwrap_or_else(PoisonError::into_inner);
        if !building.as_ref().is_some_and(|b| b.handle.is_finished()) {
            return None;
        }
        let done = building.take()?;
        done.handle.join().ok()?.ok()
    }

    /// The label of every document of the index that `index` holds. A document written after the
    /// graph is left to the graph's tail.
    pub(super) fn read_labels(
        &self,
        conn: &Connection,
        index_id: i64,
        index: &Index,
    ) -> Result<Labels, StoreError> {
        let db = |e| db_error(&self.db_path, e);
        let mut stmt = conn
            .prepare("SELECT key, label FROM docs WHERE index_id = ?1")
            .map_err(db)?;
        let mut rows = stmt.query(params![index_id]).map_err(db)?;
        let mut labels = Labels::new(index.dimensions(), self.cfg.filtered_code2_bytes);
        while let Some(r) = rows.next().map_err(db)? {
            let key = r.get::<_, i64>(0).map_err(db)? as u64;
            let label: String = r.get(1).map_err(db)?;
            if index.contains(key) {
                // No label has 2-bit codes yet: no code needed.
                labels.set(key, label, &[]);
            }
        }
        Ok(labels)
    }
}

/// Whether the graph holds exactly the index's documents (as many keys, each with its label).
/// Not knowable while rows wait in its tail or are being added: then true.
fn graph_matches(graph: &Ann, row: &IndexRow) -> bool {
    if !graph.tail.is_empty() || graph.adding {
        return true;
    }
    i64::try_from(graph.index.size()).ok() == Some(row.doc_count)
        && graph.labels.len() as i64 == row.doc_count
}
