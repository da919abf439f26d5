//! Building an index's HNSW graph from all its rows, on every core.
//!
//! What it is for: the graph of a store whose cache file is missing, damaged or foreign, or whose
//! codes need calibrating anew (`graph` decides when, and whether on a thread of its own): rows
//! read in chunks, coded, sorted by cell, inserted on every core, and every node checked at the
//! end (`relink`).
//!
//! What it is not for: loading the cache file (`graph_file`) or catching a graph up with the rows
//! written after it (`tail`, `follow`).

use std::path::Path;

use rayon::prelude::*;
use rusqlite::{params, Connection};
use usearch::Index;

use super::db::{db_error, vector_row, IndexRow};
use super::graph::{ann_error, ann_options, Ann};
use super::inserts::{add_rows, make_room, reserve};
use super::labels::Labels;
use super::order::{sort_by_cell, ORDER_CHUNK};
use super::quant::{Quantizer, FIT_ROWS};
use super::relink::relink_pass;
use super::LocalConfig;
use crate::store::StoreError;

/// Rows read per step when (re)building the HNSW graph.
const BUILD_CHUNK: usize = 2_048;

/// Builds the graph from all rows of the index, its codes calibrated on the first [`FIT_ROWS`]
/// (the rows come in key order, which is the content hash: a fair sample), the inserts on every
/// core ([`add_rows`]) [`ORDER_CHUNK`] rows at a time, each chunk sorted by cell
/// ([`sort_by_cell`]) so that a run of inserts reads one part of the graph; at the end, each node
/// that a search for its own code misses, or that no walk reaches, linked afresh
/// ([`relink_pass`]).
pub(super) fn build_graph(
    conn: &Connection,
    db_path: &Path,
    cfg: &LocalConfig,
    row: &IndexRow,
) -> Result<Ann, StoreError> {
    let db = |e| db_error(db_path, e);
    let index =
        Index::new(&ann_options(row, cfg.min_ef_search)).map_err(|e| ann_error("create", e))?;
    let total = usize::try_from(row.doc_count).unwrap_or(0);
    reserve(&index, total + 1)?;
    let mut labels = Labels::new(row.dims, cfg.filtered_code2_bytes);
    let mut stmt = conn
        .prepare("SELECT key, label, vector FROM docs WHERE index_id = ?1")
        .map_err(db)?;
    let mut rows = stmt.query(params![row.id]).map_err(db)?;
    let mut read: Vec<(u64, String, Vec<f32>)> = Vec::with_capacity(FIT_ROWS);
    let mut pending: Vec<(u64, String, Vec<i8>)> = Vec::new();
    let mut quant: Option<Quantizer> = None;
    let mut done = false;
    while !done {
        let want = if quant.is_none() {
            FIT_ROWS
        } else {
            BUILD_CHUNK
        };
        while read.len() < want {
            let Some(r) = rows.next().map_err(db)? else {
                done = true;
                break;
            };
            read.push(vector_row(db_path, r, row.dims)?);
        }
        let quant = &*quant
            .get_or_insert_with(|| Quantizer::fit(row.dims, read.iter().map(|(_, _, v)| &v[..])));
        pending.par_extend(
            read.par_drain(..)
                .map(|(key, label, vector)| (key, label, quant.code(&vector))),
        );
        if pending.len() < ORDER_CHUNK && !done {
            continue;
        }
        // Each chunk on every core; whether every node can be reached is checked once, at the end.
        sort_by_cell(row.dims, &mut pending, |c| &c.2);
        make_room(&index, pending.len())?;
        add_rows(&index, &pending)?;
        for (key, label, code) in pending.drain(..) {
            labels.set(key, label, &code);
        }
    }
    relink_pass(&index)?;
    let unsaved = index.size().max(1) as u64;
    Ok(Ann::new(
        row.id,
        index,
        row.generation,
        labels,
        quant.unwrap_or_else(|| Quantizer::unit(row.dims)),
        unsaved,
    ))
}
