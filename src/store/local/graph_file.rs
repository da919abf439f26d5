//! The HNSW graph's cache file (`hnsw-<index id>.usearch`) and its `ann_cache` row.
//!
//! What it is for: writing the graph atomically and recording the generation, size, checksum and
//! parameters it was written for; loading it back only when all of those still match, so that a
//! missing, stale, damaged or foreign file reads as "rebuild" and never as a wrong graph.
//!
//! What it is not for: building or catching up the graph (`graph`), or correctness of the store:
//! the file only makes opening faster, so failing to write it is recorded, not an error.

use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use usearch::Index;

use super::db::{db_error, find_index_by_name, IndexRow};
use super::fsutil::write_atomically;
use super::graph::{ann_error, ann_options, reserve, Ann, AnnStats};
use super::Shared;
use crate::store::StoreError;

/// Written into `ann_cache.params`: a cache file written with other parameters is rebuilt.
const ANN_FORMAT: &str = "usearch-i8-l2sq-v1";

pub(super) fn ann_file(dir: &Path, index_id: i64) -> PathBuf {
    dir.join(format!("hnsw-{index_id}.usearch"))
}

pub(super) fn remove_ann_file(dir: &Path, index_id: i64) {
    let _ = fs::remove_file(ann_file(dir, index_id));
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

impl Shared {
    /// The graph from the cache file, if the file is there, intact and written for this index;
    /// `None` means "rebuild".
    pub(super) fn load_ann(&self, conn: &Connection, row: &IndexRow) -> Option<Ann> {
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

    /// Writes the cache file; a failure is recorded, not returned (the file is only a cache).
    pub(super) fn save_ann(
        &self,
        conn: &Connection,
        graph: &mut Ann,
        stats: &mut AnnStats,
        save_error: &mut Option<String>,
    ) {
        match self.save_graph(conn, graph, stats) {
            Ok(()) => *save_error = None,
            Err(e) => {
                stats.save_failures += 1;
                *save_error = Some(e.to_string());
            }
        }
    }

    /// Writes `graph` to its cache file atomically, then records in `ann_cache` what it holds.
    /// Does nothing if the database moved on (the graph is not that of the index's current
    /// generation).
    pub(super) fn save_graph(
        &self,
        conn: &Connection,
        graph: &mut Ann,
        stats: &mut AnnStats,
    ) -> Result<(), StoreError> {
        let Some(row) = find_index_by_name(conn, &self.db_path, &self.cfg.index)? else {
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
        write_atomically(&ann_file(&self.dir, row.id), &bytes)?;
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
        .map_err(|e| db_error(&self.db_path, e))?;
        graph.dirty = false;
        stats.saved += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_sees_one_changed_or_missing_byte() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1_003).collect();
        let sum = checksum64(&bytes);
        assert_eq!(sum, checksum64(&bytes.clone()));
        let mut flipped = bytes.clone();
        flipped[1_001] ^= 1;
        assert_ne!(sum, checksum64(&flipped));
        assert_ne!(sum, checksum64(&bytes[..1_002]));
        let zeros = [0u8; 16];
        assert_ne!(checksum64(&zeros[..8]), checksum64(&zeros));
    }
}
