//! Removing documents from the local store, and listing documents by path for `prune`.
//!
//! What it is for: [`VectorStore::delete`](crate::store::VectorStore::delete) — one transaction
//! under the write lock that deletes the rows, records a tombstone for each key and bumps the
//! index's generation, then the graph's tail read (the tombstoned keys leave searches at once,
//! the graph with their generation) — and
//! [`VectorStore::files_under`](crate::store::VectorStore::files_under), the path, size and times of
//! the documents under some folders, without their vectors.
//!
//! Why tombstones: every process's graph, and the cache file, may still hold the deleted keys; a
//! graph of an older generation replays the tombstones written since (see `graph`), so a reader
//! in another process stops finding a deleted document at its next search, and a crash before the
//! graph is saved anew never brings a deleted document back.
//!
//! What it is not for: deciding what to delete (the `prune` command does) or writing documents.

use std::collections::HashSet;

use rusqlite::{params, Transaction, TransactionBehavior};

use super::db::{db_error, IndexRow};
use super::{Shared, State};
use crate::store::{DocFile, StoreError};

impl Shared {
    /// Deletes the documents with `ids`; how many there were.
    pub(super) fn delete(&self, state: &mut State, ids: &[String]) -> Result<u64, StoreError> {
        let _lock = self.lock_for_writing()?;
        let row = self.index_row(&state.conn)?;
        let keys = self.delete_rows(state, &row, ids)?;
        if !keys.is_empty() {
            self.graph_after_write(state);
        }
        Ok(keys.len() as u64)
    }

    /// The transaction: the rows of `ids` deleted, a tombstone for each, the generation bumped.
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
        let keys = delete_in(&tx, row, ids).map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(keys)
    }

    /// Each path that starts with one of `prefixes`, with its document, each pair once.
    pub(super) fn files_under(
        &self,
        state: &mut State,
        prefixes: &[String],
    ) -> Result<Vec<DocFile>, StoreError> {
        let row = self.index_row(&state.conn)?;
        let db = |e| db_error(&self.db_path, e);
        // `substr` and `length` both count characters, so this is an exact string prefix test.
        // Each document's first path, then its others (with their own times).
        let mut stmt = state
            .conn
            .prepare_cached(
                "SELECT id, path, bytes, mtime_ms, indexed_at_ms FROM docs
                 WHERE index_id = ?1 AND substr(path, 1, length(?2)) = ?2
                 UNION ALL
                 SELECT d.id, p.path, d.bytes, p.mtime_ms, d.indexed_at_ms
                 FROM doc_paths p JOIN docs d ON d.key = p.key
                 WHERE p.index_id = ?1 AND substr(p.path, 1, length(?2)) = ?2",
            )
            .map_err(db)?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for prefix in prefixes {
            let mut rows = stmt.query(params![row.id, prefix]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                let id: String = r.get(0).map_err(db)?;
                let path: String = r.get(1).map_err(db)?;
                if !seen.insert((id.clone(), path.clone())) {
                    continue;
                }
                out.push(DocFile {
                    id,
                    path,
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

/// In `tx`: the documents `ids` deleted with their other paths, a tombstone for each, and (if
/// any was there) the index's generation bumped and count lowered. The keys deleted.
pub(super) fn delete_in(
    tx: &Transaction<'_>,
    row: &IndexRow,
    ids: &[String],
) -> rusqlite::Result<Vec<u64>> {
    let mut keys = Vec::new();
    {
        let mut stmt =
            tx.prepare_cached("DELETE FROM docs WHERE index_id = ?1 AND id = ?2 RETURNING key")?;
        let mut paths =
            tx.prepare_cached("DELETE FROM doc_paths WHERE index_id = ?1 AND key = ?2")?;
        let mut asked = HashSet::new();
        for id in ids.iter().filter(|id| asked.insert(id.as_str())) {
            let mut rows = stmt.query(params![row.id, id])?;
            while let Some(r) = rows.next()? {
                let key: i64 = r.get(0)?;
                paths.execute(params![row.id, key])?;
                keys.push(key as u64);
            }
        }
    }
    if keys.is_empty() {
        return Ok(keys);
    }
    let generation = row.generation + 1;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO tombstones (index_id, generation, key) VALUES (?1, ?2, ?3)",
        )?;
        for &key in &keys {
            stmt.execute(params![row.id, generation, key as i64])?;
        }
    }
    tx.execute(
        "UPDATE indexes SET generation = ?1, doc_count = doc_count - ?2 WHERE id = ?3",
        params![generation, keys.len() as i64, row.id],
    )?;
    Ok(keys)
}
