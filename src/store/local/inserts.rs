//! Inserting into the HNSW graph on every core: room made, nodes added, each checked to be
//! reachable.
//!
//! What it is for: the one way rows enter a graph, whether it is built from all rows (`graph`),
//! takes in its tail here and now, or takes it in a chunk at a time beside searches (`follow`).
//!
//! What it is not for: which rows go in, or when (`graph`, `tail`, `follow`).

use rayon::prelude::*;
use usearch::Index;

use super::graph::ann_error;
use crate::store::StoreError;

/// Graph inserts a thread takes at least (one costs ~0.1–1 ms): fewer go on the calling thread.
const PARALLEL_ADDS_FROM: usize = 2;

/// The search width and result count of [`recheck`]'s check that a node inserted alongside others
/// can be found.
const CHECK_EF: usize = 64;
const CHECK_K: usize = 10;

/// Room for `capacity` vectors and as many concurrent callers as two pools of rayon's size, and
/// two more: the graph is built, caught up and batch-searched on every core, and searches (a
/// batch's on rayon's pool) may run beside the adding of a chunk of the tail on a pool of the
/// same size (`follow`).
pub(super) fn reserve(index: &Index, capacity: usize) -> Result<(), StoreError> {
    let threads = 2 * rayon::current_num_threads().max(1) + 2;
    index
        .reserve_capacity_and_threads(capacity.max(1), threads)
        .map_err(|e| ann_error("reserve", e))
}

/// A key with its label (or anything else that goes along) and its int8 code.
type Coded<L> = (u64, L, Vec<i8>);

/// Room for `more` vectors beside those in the graph (doubling, so a build's chunks reserve
/// seldom).
pub(super) fn make_room(index: &Index, more: usize) -> Result<(), StoreError> {
    if index.size() + more >= index.capacity() {
        let want = (index.capacity() * 2).max(index.size() + more + 1_024);
        reserve(index, want)?;
    }
    Ok(())
}

/// Adds each `(key, _, code)` of `coded` (keys not in the graph, distinct, room made) on every
/// core. Safe beside searches (usearch locks the nodes it links), not beside a removal or reserve.
pub(super) fn add_rows<L: Sync>(index: &Index, coded: &[Coded<L>]) -> Result<(), StoreError> {
    let add = |(key, _, code): &Coded<L>| index.add(*key, code).map_err(|e| ann_error("add", e));
    if coded.len() < 2 * PARALLEL_ADDS_FROM || rayon::current_num_threads() < 2 {
        return coded.iter().try_for_each(add);
    }
    coded
        .par_iter()
        .with_min_len(PARALLEL_ADDS_FROM)
        .try_for_each(add)
}

/// Checks that each node of `coded`, added alongside others, can be found, and links afresh
/// each that cannot ([`hidden`], then [`mend`]). The caller holds the store's state.
#[cfg(test)]
fn recheck<L: Sync>(index: &Index, coded: &[Coded<L>]) -> Result<(), StoreError> {
    let hidden = hidden(index, coded)?;
    mend(index, coded, Some(hidden))
}

/// The keys of `coded`'s nodes, added alongside others, that may have no way in: those with no
/// link in from the graph ([`linked_in`]) that a self-search at [`CHECK_EF`] does not find either
/// (one it finds is reachable). Searches at its own width (vendor/usearch patch 7) and reads
/// links only, so it may run beside other searches and needs no state: the thread that follows
/// the tail runs it outside the store's state, on its pool behind the searches, and [`mend`]s
/// under the state.
///
/// Inserts that run at once can hide a node from every search: upstream usearch 2.26.6 left about 1
/// in 250 of them so (usearch issue #735, fixed in vendor/usearch: see PATCHED.md), and even with
/// the fix two nodes inserted at once, each not yet seeing the other, can prune each other's only
/// way in (about 1 in 12,000 at 8 threads).
pub(super) fn hidden<L: Sync>(index: &Index, coded: &[Coded<L>]) -> Result<Vec<u64>, StoreError> {
    if coded.len() < 2 * PARALLEL_ADDS_FROM || rayon::current_num_threads() < 2 {
        return Ok(Vec::new());
    }
    let linked = linked_in(index, coded);
    coded
        .par_iter()
        .zip(linked)
        .with_min_len(PARALLEL_ADDS_FROM)
        .filter(|(_, linked)| !linked)
        .filter_map(
            |((key, _, code), _)| match index.search_i8_expanded(code, CHECK_K, CHECK_EF) {
                Ok(found) if found.keys.contains(key) => None,
                Ok(_) => Some(Ok(*key)),
                Err(e) => Some(Err(ann_error("search", e))),
            },
        )
        .collect()
}

/// For each node of `coded` (added alongside others), whether one of the nodes it links to on
/// level 0 links back to it and is either a node from before the chunk (reachable, as its own
/// check found) or one of the chunk found so itself: then it has a way in. Reads a few link
/// lists a node where a self-search reads hundreds of vectors; a self-search at [`CHECK_EF`]
/// missed 6.3% of the nodes of chunks added to a graph of 2,000,000 (each then added again under
/// the state), though nearly all of them had such a link. A link in from a node it does not
/// link to is not looked for: such a node goes on to the self-search.
fn linked_in<L: Sync>(index: &Index, coded: &[Coded<L>]) -> Vec<bool> {
    use std::collections::HashMap;
    let position: HashMap<u64, usize> = coded.iter().enumerate().map(|(i, c)| (c.0, i)).collect();
    let forward: Vec<Vec<u64>> = coded
        .par_iter()
        .map(|c| index.neighbors(c.0, 0).collect())
        .collect();
    let mut linked: Vec<bool> = coded
        .par_iter()
        .zip(&forward)
        .map(|(c, out)| {
            out.iter()
                .any(|&y| !position.contains_key(&y) && index.neighbors(y, 0).any(|k| k == c.0))
        })
        .collect();
    // Through the chunk's own nodes, as far as links reach (each round marks at least one); their
    // lists were read above (nothing else changes the graph during the check).
    loop {
        let more: Vec<usize> = (0..coded.len())
            .into_par_iter()
            .filter(|&i| {
                !linked[i]
                    && forward[i].iter().any(|y| {
                        position
                            .get(y)
                            .is_some_and(|&j| linked[j] && forward[j].contains(&coded[i].0))
                    })
            })
            .collect();
        if more.is_empty() {
            return linked;
        }
        for i in more {
            linked[i] = true;
        }
    }
}

/// How a chunk added alongside searches was checked: by its links and self-searches (`Some`: the
/// keys [`hidden`] found without a way in) or not yet (`None`: the graph is small beside the
/// chunk, and a walk over all its links, under the state, is cheaper: see
/// [`WALK_NODES_PER_SEARCH`]).
pub(super) type Checked = Option<Vec<u64>>;

/// The part of a chunk's check that needs no state ([`hidden`]) where it is the cheaper check,
/// else nothing; [`mend`] finishes the check under the state.
pub(super) fn search_check<L: Sync>(
    index: &Index,
    coded: &[Coded<L>],
) -> Result<Checked, StoreError> {
    if index.size() > WALK_NODES_PER_SEARCH.saturating_mul(coded.len()) {
        hidden(index, coded).map(Some)
    } else {
        Ok(None)
    }
}

/// Links afresh the nodes of `coded` that its check found hidden, or walks the links for them
/// (`checked` None). The caller holds the store's state (nothing adds, removes or searches
/// meanwhile).
pub(super) fn mend<L>(
    index: &Index,
    coded: &[Coded<L>],
    checked: Checked,
) -> Result<(), StoreError> {
    let Some(hidden) = checked else {
        let keys: std::collections::HashSet<u64> = coded.iter().map(|c| c.0).collect();
        return reconnect(index, |key| keys.contains(&key)).map(|_| ());
    };
    relink_each(index, &hidden)
}

/// Rounds of [`reconnect`] at most: a node linked afresh alone is nearly always reached at once;
/// the bound keeps a node that its neighbours' pruning leaves without a way in on level 0 (HNSW's
/// own behaviour, rare) from being linked again and again.
const RECONNECT_ROUNDS: usize = 3;

/// Graph nodes one walk over the links costs about as much as one self-search of [`recheck`]
/// (measured at 200,000 documents, 2 cores: ~0.5 µs a node walked, ~107 µs a row searched; half
/// that, for margin): a chunk is checked by a walk ([`search_check`]) while the graph holds at
/// most this many nodes per row of the chunk.
const WALK_NODES_PER_SEARCH: usize = 100;

/// Checks that each node of `coded`, added alongside others ([`add_rows`]), can be reached, and
/// links afresh any that cannot: by a walk over the links ([`reconnect`]) where the graph is
/// small beside the chunk, else by a self-search a node ([`recheck`]). The caller holds the
/// store's state (nothing adds, removes or searches meanwhile). What `take_in_tail` and the
/// thread that follows the tail do in two steps ([`search_check`], then [`mend`]).
#[cfg(test)]
pub(super) fn check_chunk<L: Sync>(index: &Index, coded: &[Coded<L>]) -> Result<(), StoreError> {
    let checked = search_check(index, coded)?;
    mend(index, coded, checked)
}

/// Finds the nodes (of keys `within` takes) that no walk along the graph's links from its entry
/// point reaches, in one pass over the links (`Index::unreachable_keys`, vendor/usearch), and links
/// each afresh ([`relink_each`]); returns how many it linked. For a graph built whole on every
/// core ([`add_rows`] chunk after chunk), `within` taking every key: a self-search a node
/// ([`recheck`]) was 29% of such a build (200,000 documents, 2 cores), the pass and the re-adds
/// 0.24 s. Searches may run meanwhile; nothing else may add or remove.
pub(super) fn reconnect(index: &Index, within: impl Fn(u64) -> bool) -> Result<usize, StoreError> {
    let mut fixed = 0;
    for _ in 0..RECONNECT_ROUNDS {
        let lost: Vec<u64> = index
            .unreachable_keys()
            .into_iter()
            .filter(|&k| within(k))
            .collect();
        if lost.is_empty() {
            break;
        }
        relink_each(index, &lost)?;
        fixed += lost.len();
    }
    Ok(fixed)
}

/// Links each of `keys` (in the graph) afresh where it lies, one after another (`Index::relink`,
/// vendor/usearch patch 13: what removing it and adding it again alone did, the node visible to
/// searches throughout): how every check mends a node not reached. Beside searches; nothing else
/// may add or remove meanwhile.
pub(super) fn relink_each(index: &Index, keys: &[u64]) -> Result<(), StoreError> {
    keys.iter()
        .try_for_each(|&key| index.relink(key).map_err(|e| ann_error("relink", e)))
}

#[cfg(test)]
mod reach_tests;
