//! Nodes cut off from their own neighbourhood: found by a search for each node's own code, and
//! linked afresh where they lie.
//!
//! What it is for: the nodes of a graph that some walk reaches (so a walk over the links,
//! [`reconnect`], does not see them) but that no node near them links to. A search for one walks
//! into its neighbourhood and finds its neighbours, not it: a search from a stored document ("more like this", `eval
//! --recall`) then misses it whatever its width. Made by HNSW's own pruning, more as a graph grows
//! (about 1 node in 250 of the bench's data at a million documents: docs/performance.md, "Nodes
//! cut off from their own neighbourhood"). Each found is linked afresh (`Index::relink`, vendor
//! usearch patch 13): searched for as when it was added, its links replaced by the nearest found
//! and a link back from each, while it stays visible to searches.
//!
//! What it is not for: deciding when a graph is checked (`graph` after a build, `follow` after a
//! write has grown it by half). A chunk's nodes checked as the tail adds them did not help: the
//! nodes cut off at a million were as many (41 against 42 of 10,310 sampled), the pruning of later
//! inserts cuts them off.

use rayon::prelude::*;
use usearch::Index;

use super::graph::ann_error;
use super::inserts::reconnect;
use crate::store::StoreError;

/// Slots a task screens, in slot order: a build inserts its rows sorted by cell, so the searches of
/// one run read one part of the graph, twice as fast as the same searches in key order.
const SCREEN_SLOTS: usize = 4_096;

/// The width of the first search for each node's own code: cheap, and it finds most nodes (77% of
/// a million-document graph of the bench's tight clusters, 44 µs a node on 2 cores).
const SCREEN_EF: usize = 8;

/// The width of the second search, for the nodes the first did not find: what it does not find
/// either is linked afresh (7.1% of that graph; a search at 768 misses 0.4%, and after the
/// relinking none of a sample of 10,000).
const CONFIRM_EF: usize = 64;

/// Results each search asks for: the node must be among its own ten nearest.
const WANTED: usize = 10;

/// Checks every node of the graph: each that a search for its own code misses ([`relink_unfound`])
/// is linked afresh, then each that no walk from the entry point reaches ([`reconnect`]: a relink
/// replaces a node's links, so it can cut off a node whose only way in was one of them). Returns
/// how many it linked. On the calling pool; beside searches, not beside an add, removal or
/// reserve.
pub(super) fn relink_pass(index: &Index) -> Result<usize, StoreError> {
    Ok(relink_unfound(index, 0)? + reconnect(index, |_| true)?)
}

/// Finds the nodes among the graph's slots `from..` that a search for their own code does not
/// find, and links each afresh; returns how many it linked. Runs on the calling pool, beside
/// searches (and adds), not beside a removal or reserve.
pub(super) fn relink_unfound(index: &Index, from: usize) -> Result<usize, StoreError> {
    let unfound = unfound(index, from)?;
    unfound
        .par_iter()
        .try_for_each(|&key| index.relink(key).map_err(|e| ann_error("relink", e)))?;
    Ok(unfound.len())
}

/// The keys of the slots `from..` whose own code a search at [`SCREEN_EF`], then one at
/// [`CONFIRM_EF`] (for those the first missed, at once, while what it read is in the cache), does
/// not find; [`SCREEN_SLOTS`] a task, on every core.
fn unfound(index: &Index, from: usize) -> Result<Vec<u64>, StoreError> {
    let starts: Vec<usize> = (from..index.slots()).step_by(SCREEN_SLOTS).collect();
    let found: Vec<Vec<u64>> = starts
        .into_par_iter()
        .map(|start| {
            index
                .unfound_keys(start, start + SCREEN_SLOTS, WANTED, SCREEN_EF, CONFIRM_EF)
                .map_err(|e| ann_error("search", e))
        })
        .collect::<Result<_, _>>()?;
    Ok(found.concat())
}

#[cfg(test)]
mod tests;
