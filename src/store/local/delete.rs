//! Removing documents from the local store, and listing documents by path for `prune`.
//!
//! What it is for: [`VectorStore::delete`](crate::store::VectorStore::delete) — one transaction
//! that deletes the rows, bumps the index's generation and forgets the graph's cache-file record,
//! then the same keys taken out of the in-memory HNSW graph — and
//! [`VectorStore::files_under`](crate::store::VectorStore::files_under), the path, size and times of
//! the documents under some folders, without their vectors.
//!
//! Why the cache record goes: the graph's cache file would still hold the deleted keys; without
//! its `ann_cache` row it is never loaded again, so a crash before the graph is saved anew means a
//! rebuild from the rows, never a graph with documents that are gone.
//!
//! What it is not for: deciding what to delete (the `prune` command does) or writing documents.

use std::collections::HashSet;

use rusqlite::{params, TransactionBehavior};

use super::db::{db_error, IndexRow};
use super::graph::{ann_error, Ann};
use super::{Shared, State};
use crate::store::{DocFile, StoreError};

impl Shared {
    /// Deletes the documents with `ids`; how many there were.
    pub(super) fn delete(&self, state: &mut State, ids: &[String]) -> Result<u64, StoreError> {
        let row = self.index_row(&state.conn)?;
        // The graph as of now, so the deleted keys can be taken out of it instead of rebuilding it.
        // It is only a cache: if it cannot be had, it is rebuilt when next needed.
        {
            let State {
                conn, ann, stats, ..
            } = &mut *state;
            if self.ensure_ann(conn, ann, stats, &row).is_err() {
                *ann = None;
            }
        }
        let keys = self.delete_rows(state, &row, ids)?;
        if keys.is_empty() {
            return Ok(0);
        }
        let current =
            matches!(&state.ann, Some(g) if g.index_id == row.id && g.generation == row.generation);
        let updated = current
            && state
                .ann
                .as_mut()
                .is_some_and(|graph| remove_keys(graph, &keys, row.generation + 1).is_ok());
        if !updated {
            state.ann = None;
        }
        Ok(keys.len() as u64)
    }

    /// The transaction: the rows of `ids` deleted, the generation bumped, the cache record gone.
    /// Returns the keys of the rows deleted.
    fn delete_rows(
        &self,
        state: &mut State,
        row: &IndexRow,
        ids: &[String],
    ) -> Result<Vec<u64>, StoreError> {
        let db = |e| db_error(&self.db_path, e);
        let tx = state
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let mut keys = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM docs WHERE index_id = ?1 AND id = ?2 RETURNING key")
                .map_err(db)?;
            let mut asked = HashSet::new();
            for id in ids.iter().filter(|id| asked.insert(id.as_str())) {
                let mut rows = stmt.query(params![row.id, id]).map_err(db)?;
                while let Some(r) = rows.next().map_err(db)? {
                    keys.push(r.get::<_, i64>(0).map_err(db)? as u64);
                }
            }
        }
        if keys.is_empty() {
            return Ok(keys);
        }
        tx.execute(
            "UPDATE indexes SET generation = generation + 1, doc_count = doc_count - ?1
             WHERE id = ?2",
            params![keys.len() as i64, row.id],
        )
        .map_err(db)?;
        tx.execute("DELETE FROM ann_cache WHERE index_id = ?1", params![row.id])
            .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(keys)
    }

    /// The documents whose path starts with one of `prefixes`, each once.
    pub(super) fn files_under(
        &self,
        state: &mut State,
        prefixes: &[String],
    ) -> Result<Vec<DocFile>, StoreError> {
        let row = self.index_row(&state.conn)?;
        let db = |e| db_error(&self.db_path, e);
        // `substr` and `length` both count characters, so this is an exact string prefix test.
        let mut stmt = state
            .conn
            .prepare_cached(
                "SELECT id, path, bytes, mtime_ms, indexed_at_ms FROM docs
                 WHERE index_id = ?1 AND substr(path, 1, length(?2)) = ?2",
            )
            .map_err(db)?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for prefix in prefixes {
            let mut rows = stmt.query(params![row.id, prefix]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                let id: String = r.get(0).map_err(db)?;
                if !seen.insert(id.clone()) {
                    continue;
                }
                out.push(DocFile {
                    id,
                    path: r.get(1).map_err(db)?,
                    bytes: u64::try_from(r.get::<_, i64>(2).map_err(db)?).unwrap_or(0),
                    mtime_ms: r
                        .get::<_, Option<i64>>(3)
                        .map_err(db)?
                        .and_then(|m| u64::try_from(m).ok()),
                    indexed_at_ms: u64::try_from(r.get::<_, i64>(4).map_err(db)?).unwrap_or(0),
                });
            }
        }
        Ok(out)
    }
}

/// Takes `keys` out of the graph, which then stands for `generation`.
fn remove_keys(graph: &mut Ann, keys: &[u64], generation: i64) -> Result<(), StoreError> {
    for &key in keys {
        graph
            .index
            .remove(key)
            .map_err(|e| ann_error("remove", e))?;
        graph.labels.remove(key);
    }
    graph.generation = generation;
    graph.dirty = true;
    Ok(())
}
