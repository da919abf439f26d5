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

/// Checks that each node of `coded`, added alongside others, has a way in on level 0, and adds any
/// that has none again alone. A node counts as reached when a node outside the chunk (in the graph
/// before it, and so reached) links to it, or a node of the chunk already counted does. The nodes
/// that may link to it are looked for among its own neighbours (HNSW links both ways unless
/// pruning drops one): a way in from elsewhere goes unseen, and that node is added again for
/// nothing, which costs no more than one add. The caller holds the store's state (nothing adds,
/// removes or searches meanwhile).
///
/// Inserts that run at once can leave a node without a way in: upstream usearch 2.26.6 left about
/// 1 in 250 of them so (usearch issue #735, fixed in vendor/usearch: see PATCHED.md), and even with
/// the fix two nodes inserted at once, each not yet seeing the other, can prune each other's only
/// way in (about 1 in 12,000 at 8 threads). Returns how many it added again. The check reads ~33
/// neighbour lists a node (a few µs); a narrow self-search a node, the check before, cost ~107 µs
/// at 200,000 documents.
fn check_links<L: Sync>(index: &Index, coded: &[Coded<L>]) -> Result<usize, StoreError> {
    if coded.len() < 2 * PARALLEL_ADDS_FROM || rayon::current_num_threads() < 2 {
        return Ok(0);
    }
    let chunk: std::collections::HashSet<u64> = coded.iter().map(|c| c.0).collect();
    // For each node: whether a node outside the chunk links to it, and the chunk's nodes that do.
    let links_in = |key: u64| {
        let (mut outside, mut inside) = (false, Vec::new());
        for from in index.neighbors(key, 0) {
            if from == key || !index.neighbors(from, 0).any(|to| to == key) {
                continue;
            }
            if chunk.contains(&from) {
                inside.push(from);
            } else {
                outside = true;
                break;
            }
        }
        (key, outside, inside)
    };
    let found: Vec<(u64, bool, Vec<u64>)> = coded
        .par_iter()
        .with_min_len(PARALLEL_ADDS_FROM)
        .map(|c| links_in(c.0))
        .collect();
    let mut reached: std::collections::HashSet<u64> =
        found.iter().filter(|f| f.1).map(|f| f.0).collect();
    // Ways in through the chunk's own nodes, until no more are found.
    loop {
        let more: Vec<u64> = found
            .iter()
            .filter(|(key, _, inside)| {
                !reached.contains(key) && inside.iter().any(|from| reached.contains(from))
            })
            .map(|f| f.0)
            .collect();
        if more.is_empty() {
            break;
        }
        reached.extend(more);
    }
    let mut again = 0;
    for (key, _, code) in coded {
        if !reached.contains(key) {
            add_again(index, *key, code)?;
            again += 1;
        }
    }
    Ok(again)
}

/// Removes `key`'s node and adds it again alone, linked afresh: how both checks mend a node not
/// reached.
fn add_again(index: &Index, key: u64, code: &[i8]) -> Result<(), StoreError> {
    index.remove(key).map_err(|e| ann_error("remove", e))?;
    index.add(key, code).map_err(|e| ann_error("add", e))
}

/// Rounds of [`reconnect`] at most: a node added alone is nearly always reached at once; the bound
/// keeps a node that its neighbours' pruning leaves without a way in on level 0 (HNSW's own
/// behaviour, rare) from being added again and again.
const RECONNECT_ROUNDS: usize = 3;

/// Graph nodes per row of a chunk up to which [`check_chunk`] walks the whole graph: the walk is
/// exact, ~0.5 µs a node (200,000 documents, 2 cores); the link check, a few µs a row, beyond.
const WALK_NODES_PER_ROW: usize = 10;

/// Checks that each node of `coded`, added alongside others ([`add_rows`]), can be reached, and
/// adds any that cannot again alone: by a walk over the links ([`reconnect`]) where the graph is
/// small beside the chunk, else by each node's links ([`check_links`]). The caller holds the
/// store's state (nothing adds, removes or searches meanwhile).
pub(super) fn check_chunk<L: Sync>(index: &Index, coded: &[Coded<L>]) -> Result<(), StoreError> {
    if index.size() <= WALK_NODES_PER_ROW.saturating_mul(coded.len()) {
        let keys: std::collections::HashSet<u64> = coded.iter().map(|c| c.0).collect();
        reconnect(index, |key| keys.contains(&key)).map(|_| ())
    } else {
        check_links(index, coded).map(|_| ())
    }
}

/// Finds the nodes (of keys `within` takes) that no walk along the graph's links from its entry
/// point reaches, in one pass over the links (`Index::unreachable_keys`, vendor/usearch), and adds
/// each again alone; returns how many it added. For a graph built whole on every core
/// ([`add_rows`] chunk after chunk), `within` taking every key: a self-search a node (the check
/// before) was 29% of such a build (200,000 documents, 2 cores), the pass and the re-adds 0.24 s.
/// Nothing else may add, remove or search meanwhile (the caller owns the graph).
pub(super) fn reconnect(index: &Index, within: impl Fn(u64) -> bool) -> Result<usize, StoreError> {
    let mut code = vec![0i8; index.dimensions()];
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
        for &key in &lost {
            index.get(key, &mut code).map_err(|e| ann_error("get", e))?;
            add_again(index, key, &code)?;
        }
        fixed += lost.len();
    }
    Ok(fixed)
}

#[cfg(test)]
mod reach_tests;
