//! The graph following the rows: a process brings its graph's tail to each snapshot, and a thread
//! of its own moves the tail into the graph a chunk at a time, on every core, while searches go on.
//!
//! What it is for: writes that are done when their rows are committed (thousands a second at a
//! million documents, where inserting into the graph allows about 1,500), and a graph file left
//! far behind by a crash that is searchable at once. A chunk's removals and the room it needs are
//! made under the store's state, its inserts outside it (usearch links nodes under its own locks,
//! so searches walk the graph meanwhile and find the chunk's rows in the tail), and its reachability
//! check and bookkeeping under the state again. A search that finds a small tail and nothing being
//! added takes the tail in itself, so a quiet store's graph is whole.
//!
//! What it is not for: the tail's contents (`tail`) or building a graph from all rows (`graph`).

use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::Connection;
use usearch::Index;

use super::db::IndexRow;
use super::graph::{Ann, AnnStats};
use super::inserts::{add_rows, relink_each, search_check, Checked};
use super::relink::relink_pass;
use super::{Shared, State};
use crate::store::StoreError;

/// Rows a chunk moves into the graph (about a second of inserts on 2 cores at a million).
const CHUNK_ROWS: usize = 2_048;

/// A search takes in a tail of at most this many rows itself, before it searches.
const SEARCH_TAKES_IN: usize = 256;

/// How long the thread waits for more rows before it ends (a later write starts another).
const IDLE: Duration = Duration::from_secs(2);

impl Shared {
    /// Brings `graph`'s tail to `row` (read in `conn`'s snapshot), then either takes the tail in
    /// at once — a search's small tail, or a graph small enough to be scanned exactly — or leaves
    /// it to the following thread, started if need be.
    pub(super) fn follow_to(
        &self,
        conn: &Connection,
        graph: &mut Ann,
        row: &IndexRow,
        stats: &mut AnnStats,
        search_only: bool,
    ) -> Result<(), StoreError> {
        graph.tail.extend(conn, &self.db_path, row, &graph.quant)?;
        graph.settle();
        if graph.tail.is_empty() {
            return Ok(());
        }
        let small = graph.rows() <= self.cfg.exact_scan_rows;
        if !graph.adding && (small || search_only && graph.tail.rows() <= SEARCH_TAKES_IN) {
            return graph.take_in_tail(stats);
        }
        self.start_following();
        Ok(())
    }

    /// Wakes the following thread, or starts it. Called with the state locked (as the thread
    /// decides to end with it locked, the two cannot miss each other).
    fn start_following(&self) {
        if self.stopping.load(Acquire) || !self.cfg.follow_in_background {
            return;
        }
        if self.following.swap(true, AcqRel) {
            self.changed.notify_all();
            return;
        }
        let Some(shared) = self.me.upgrade() else {
            self.following.store(false, Release);
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("imgvec-hnsw-follow".into())
            .spawn(move || follow(shared));
        match spawned {
            Ok(handle) => {
                let mut slot = self.follower.lock().unwrap_or_else(PoisonError::into_inner);
                *slot = Some(handle);
            }
            // No thread: the tail is searched as it is, and the next write or search tries again.
            Err(_) => self.following.store(false, Release),
        }
    }

    /// Stops the following thread after the chunk it is adding (the graph is then whole enough to
    /// save: what it holds up to its generation) and waits for it.
    pub(super) fn stop_following(&self) {
        self.stopping.store(true, Release);
        self.changed.notify_all();
        let handle = self
            .follower
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }

    /// Waits (letting other calls in) until the graph has taken in its whole tail, then returns
    /// the state again: for a writer that is done, before it saves the graph file.
    pub(super) fn wait_for_tail<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
    ) -> MutexGuard<'a, State> {
        loop {
            let pending = state
                .ann
                .as_ref()
                .is_some_and(|g| !g.tail.is_empty() || g.adding);
            if !pending {
                return state;
            }
            if !self.following.load(Acquire) {
                // No thread (it could not start, or is stopping): take it in here.
                let State { ann, stats, .. } = &mut *state;
                if let Some(graph) = ann.as_mut().filter(|g| !g.adding) {
                    if graph.take_in_tail(stats).is_err() {
                        *ann = None;
                    }
                    continue;
                }
            }
            state = self
                .changed
                .wait_timeout(state, IDLE)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// After a write, its tail taken in: when the graph has grown by half since its nodes were
    /// last checked ([`Ann::relink_due`]), each that a search for its own code misses is linked
    /// afresh ([`relink_pass`]: about a minute at a million nodes on 2 cores), aside: the state
    /// let go, searches going on, on a pool behind them; then the graph is saved with the write.
    pub(super) fn relink_if_due<'a>(
        &'a self,
        state: MutexGuard<'a, State>,
    ) -> MutexGuard<'a, State> {
        let from_rows = self.cfg.relink_from_rows;
        if !state.ann.as_ref().is_some_and(|g| g.relink_due(from_rows)) {
            return state;
        }
        aside(
            self,
            state,
            |index| match background_threads("imgvec-hnsw-relink") {
                Some(pool) => pool.install(|| relink_pass(index)),
                None => relink_pass(index),
            },
            |graph, stats, relinked| {
                graph.screened = graph.index.slots();
                graph.unsaved += relinked as u64;
                stats.relink_passes += 1;
                stats.relinked += relinked as u64;
                Ok(())
            },
        )
    }
}

/// The following thread: moves the tail into the graph a chunk at a time until there has been
/// nothing to move for [`IDLE`], or the store is closing.
fn follow(shared: Arc<Shared>) {
    let followed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| follow_tail(&shared)));
    if followed.is_err() {
        // A bug, not a state to keep: the next write or search starts another thread.
        shared.following.store(false, Release);
        shared.changed.notify_all();
    }
}

fn follow_tail(shared: &Shared) {
    let pool = background_pool("imgvec-hnsw-add");
    let mut state = shared.lock_state();
    // Chunks added since the graph was last walked whole (see below).
    let mut unwalked = false;
    loop {
        if shared.stopping.load(Acquire) {
            break;
        }
        let State { ann, stats, .. } = &mut *state;
        let chunk = ann
            .as_ref()
            .filter(|g| !g.adding)
            .and_then(|g| g.tail.chunk(CHUNK_ROWS));
        // The tail taken in: one walk over the whole graph's links finds any node that no longer
        // has a way in on level 0: a chunk's check looks at the chunk's nodes, but inserting them
        // prunes older nodes' links too and can cut one off. The walk runs outside the state, as
        // the adding does (nothing else changes the graph while it is marked as being added to);
        // the re-adds under it, a few at a time, so searches and writes wait little.
        if chunk.is_none()
            && ann.as_ref().is_some_and(|g| !g.adding)
            && std::mem::take(&mut unwalked)
        {
            state = aside(
                shared,
                state,
                |index| mend_walked(shared, index),
                |_, _, ()| Ok(()),
            );
            continue;
        }
        let Some(chunk) = chunk else {
            let (next, waited) = shared
                .changed
                .wait_timeout(state, IDLE)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            let idle = state
                .ann
                .as_ref()
                .is_none_or(|g| g.adding || g.tail.is_empty());
            if waited.timed_out() && idle {
                break;
            }
            continue;
        };
        let Some(graph) = ann.as_mut() else { continue };
        if graph.prepare_chunk(&chunk, stats).is_err() {
            // The graph is a cache: dropped, it is loaded or rebuilt when next needed.
            *ann = None;
            continue;
        }
        // The inserts and the part of their check that needs no state, outside it, behind the
        // searches; the mending of what the check finds, under the state (finish_chunk).
        state = aside(
            shared,
            state,
            |index| {
                let add_and_check = || -> Result<Checked, StoreError> {
                    add_rows(index, &chunk.rows)?;
                    search_check(index, &chunk.rows)
                };
                let checked = match &pool {
                    Some(pool) => pool.install(add_and_check),
                    None => add_and_check(),
                }?;
                Ok((chunk, checked))
            },
            |graph, stats, (chunk, checked)| {
                unwalked = true;
                graph.finish_chunk(chunk, checked, stats)
            },
        );
    }
    shared.following.store(false, Release);
    shared.changed.notify_all();
    drop(state);
}

/// Runs `work` on the graph with the state let go, the graph marked as being added to (so nothing
/// else changes it; searches go on), a panic taken as an error; then, the state taken again and
/// still holding that graph, unmarks it and hands `done` the result. An error from either drops
/// the graph: it is a cache, loaded or rebuilt when next needed.
fn aside<'a, T>(
    shared: &'a Shared,
    mut state: MutexGuard<'a, State>,
    work: impl FnOnce(&Arc<Index>) -> Result<T, StoreError>,
    done: impl FnOnce(&mut Ann, &mut AnnStats, T) -> Result<(), StoreError>,
) -> MutexGuard<'a, State> {
    let Some(graph) = state.ann.as_mut() else {
        return state;
    };
    graph.set_adding(true);
    let index = Arc::clone(&graph.index);
    drop(state);
    let worked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&index)))
        .unwrap_or_else(|_| Err(StoreError::Other("changing the HNSW graph panicked".into())));
    let mut state = shared.lock_state();
    let State { ann, stats, .. } = &mut *state;
    if let Some(graph) = ann.as_mut().filter(|g| Arc::ptr_eq(&g.index, &index)) {
        graph.set_adding(false);
        if worked.and_then(|t| done(graph, stats, t)).is_err() {
            *ann = None;
        }
    }
    shared.changed.notify_all();
    state
}

/// Re-adds a few at a time.
const READD_BATCH: usize = 16;

/// Walks `index` (marked as being added to, the state not held) for the nodes no walk from its
/// entry point reaches and links each afresh, [`READD_BATCH`] under the state at a time.
fn mend_walked(shared: &Shared, index: &Arc<Index>) -> Result<(), StoreError> {
    for keys in index.unreachable_keys().chunks(READD_BATCH) {
        let state = shared.lock_state();
        if !state
            .ann
            .as_ref()
            .is_some_and(|g| Arc::ptr_eq(&g.index, index))
        {
            break;
        }
        relink_each(index, keys)?;
    }
    Ok(())
}

/// For graph work behind the searches (following the tail, building a graph aside): lowers the
/// calling thread's priority ([`background_priority`]) and returns a pool of its own, as many
/// threads as rayon's, at that priority too (None if none could be started: then rayon's). On
/// rayon's pool a search's scan would queue behind a whole chunk of inserts (a pool thread
/// finishes its own tasks first); here the two share the cores the way the OS shares them, and
/// the searches (and writes) come first.
pub(super) fn background_pool(name: &'static str) -> Option<rayon::ThreadPool> {
    background_priority();
    background_threads(name)
}

/// A pool of as many threads as rayon's, each at the priority of [`background_priority`], the
/// calling thread's left as it is.
fn background_threads(name: &'static str) -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads().max(1))
        .thread_name(move |i| format!("{name}-{i}"))
        .start_handler(|_| background_priority())
        .build()
        .ok()
}

/// Lowers the calling thread's CPU priority to nice 10 (Linux; elsewhere nothing): the graph's
/// inserts then take the cores a writer's commits and the searches leave. Measured at a million
/// documents: see docs/performance.md.
fn background_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes a scheduling attribute. With `who` 0 it is the calling
    // thread's (a Linux thread is a task with its own nice value).
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}
