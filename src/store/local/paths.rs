//! The paths of the local store's documents: a content seen at several paths is one document, its
//! first path in `docs.path`, the others in `doc_paths` (each with its file's time, so `prune`
//! trusts an unchanged copy without hashing it).
//!
//! What it is for: [`VectorStore::add_paths`](crate::store::VectorStore::add_paths) and
//! [`VectorStore::remove_paths`](crate::store::VectorStore::remove_paths), one transaction each
//! under the write lock. Taking off a document's first path moves its next path (in path order)
//! up; taking off its last deletes it, as `delete` does (tombstone, generation). Adding or moving
//! a path changes no vector, so it needs no new generation: a search reads the paths of its hits
//! in its own snapshot.
//!
//! What it is not for: the paths written with a document (`records` does that in the upsert).

use std::collections::HashSet;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::db::db_error;
use super::delete::delete_in;
use super::records::{doc_key, insert_path};
use super::{Shared, State};
use crate::store::{DocPath, PathsRemoved, StoreError};

impl Shared {
    /// Each path added to its document; the ids not in the index. Most paths asked are already
    /// their document's (an unchanged folder ingested again): those are sorted out with a read,
    /// and the write lock is taken only when something is left to write.
    pub(super) fn add_paths(
        &self,
        state: &mut State,
        paths: &[DocPath],
    ) -> Result<Vec<String>, StoreError> {
        let db = |e| db_error(&self.db_path, e);
        let row = self.index_row(&state.conn)?;
        let mut missing = Vec::new();
        let mut new = Vec::new();
        for p in paths {
            match doc_key(&state.conn, row.id, &p.id).map_err(db)? {
                None => missing.push(p.id.clone()),
                Some((_, first)) if first == p.path => {}
                Some((key, _)) if has_path(&state.conn, row.id, key, &p.path).map_err(db)? => {}
                Some(_) => new.push(p),
            }
        }
        if new.is_empty() {
            return Ok(missing);
        }
        let _lock = self.lock_for_writing()?;
        let tx = state
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        for p in new {
            // Looked up again under the lock: the document may have gone meanwhile.
            match doc_key(&tx, row.id, &p.id).map_err(db)? {
                None => missing.push(p.id.clone()),
                Some((_, first)) if first == p.path => {}
                Some((key, _)) => {
                    let mtime = p.mtime_ms.and_then(|m| i64::try_from(m).ok());
                    insert_path(&tx, row.id, key, &p.path, mtime).map_err(db)?;
                }
            }
        }
        tx.commit().map_err(db)?;
        Ok(missing)
    }

    /// Each path taken off its document; documents left without one deleted.
    pub(super) fn remove_paths(
        &self,
        state: &mut State,
        paths: &[DocPath],
    ) -> Result<PathsRemoved, StoreError> {
        let db = |e| db_error(&self.db_path, e);
        let _lock = self.lock_for_writing()?;
        let row = self.index_row(&state.conn)?;
        let tx = state
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let mut removed = PathsRemoved::default();
        let mut last_path_gone = Vec::new();
        let mut asked = HashSet::new();
        for p in paths.iter().filter(|p| asked.insert((&p.id, &p.path))) {
            let Some((key, first)) = doc_key(&tx, row.id, &p.id).map_err(db)? else {
                continue;
            };
            if first != p.path {
                removed.paths += tx
                    .execute(
                        "DELETE FROM doc_paths WHERE index_id = ?1 AND key = ?2 AND path = ?3",
                        params![row.id, key, p.path],
                    )
                    .map_err(db)? as u64;
                continue;
            }
            removed.paths += 1;
            let next: Option<(String, Option<i64>)> = tx
                .query_row(
                    "SELECT path, mtime_ms FROM doc_paths WHERE index_id = ?1 AND key = ?2
                     ORDER BY path LIMIT 1",
                    params![row.id, key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db)?;
            match next {
                Some((path, mtime)) => {
                    tx.execute(
                        "DELETE FROM doc_paths WHERE index_id = ?1 AND key = ?2 AND path = ?3",
                        params![row.id, key, path],
                    )
                    .map_err(db)?;
                    tx.execute(
                        "UPDATE docs SET path = ?1, mtime_ms = ?2 WHERE key = ?3",
                        params![path, mtime, key],
                    )
                    .map_err(db)?;
                }
                None => last_path_gone.push(p.id.clone()),
            }
        }
        let keys = delete_in(&tx, &row, &last_path_gone).map_err(db)?;
        removed.documents = keys.len() as u64;
        tx.commit().map_err(db)?;
        if !keys.is_empty() {
            self.graph_after_write(state);
        }
        Ok(removed)
    }
}

/// Whether document `key` has `path` among its other paths.
fn has_path(
    conn: &rusqlite::Connection,
    index_id: i64,
    key: i64,
    path: &str,
) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM doc_paths WHERE index_id = ?1 AND key = ?2 AND path = ?3")?
        .exists(params![index_id, key, path])
}
