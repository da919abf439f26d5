//! The local store's reads for looking around an index: every label with its count, and documents
//! by id with their vectors (a "more like this" search starts from a stored vector; a thumbnail
//! needs a document's path).
//!
//! What it is for: [`VectorStore::labels`](crate::store::VectorStore::labels) and
//! [`VectorStore::get`](crate::store::VectorStore::get), each one read of the database.
//!
//! What it is not for: writes (`records`) or search (`search`).

use std::collections::HashSet;

use rusqlite::params;

use super::db::blob_to_vector;
use super::{Shared, State};
use crate::store::{ImageDoc, LabelCount, StoreError};

impl Shared {
    /// Every label of the index with its document count, most documents first, ties by label.
    pub(super) fn labels(&self, state: &mut State) -> Result<Vec<LabelCount>, StoreError> {
        let row = self.index_row(&state.conn)?;
        let mut stmt = state
            .conn
            .prepare_cached(
                "SELECT label, COUNT(*) AS n FROM docs WHERE index_id = ?1 \
                 GROUP BY label ORDER BY n DESC, label ASC",
            )
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map(params![row.id], |r| {
                Ok(LabelCount {
                    label: r.get(0)?,
                    count: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                })
            })
            .map_err(|e| self.db(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.db(e))
    }

    /// The documents with these ids, in the order asked, each once; unknown ids are left out.
    pub(super) fn get(
        &self,
        state: &mut State,
        ids: &[String],
    ) -> Result<Vec<ImageDoc>, StoreError> {
        let row = self.index_row(&state.conn)?;
        let mut stmt = state
            .conn
            .prepare_cached(
                "SELECT label, path, vector, bytes, width, height, model, indexed_at_ms, mtime_ms \
                 FROM docs WHERE index_id = ?1 AND id = ?2",
            )
            .map_err(|e| self.db(e))?;
        let mut seen = HashSet::new();
        let mut docs = Vec::new();
        for id in ids.iter().filter(|id| seen.insert(*id)) {
            let mut rows = stmt.query(params![row.id, id]).map_err(|e| self.db(e))?;
            let Some(r) = rows.next().map_err(|e| self.db(e))? else {
                continue;
            };
            let db = |e| self.db(e);
            let blob = r
                .get_ref(2)
                .map_err(db)?
                .as_blob()
                .map_err(|e| StoreError::Other(format!("document {id} has no vector: {e}")))?;
            let vector = blob_to_vector(blob, row.dims).ok_or_else(|| {
                StoreError::Other(format!(
                    "the vector of document {id} has {} bytes, expected {}",
                    blob.len(),
                    row.dims * 4
                ))
            })?;
            docs.push(ImageDoc {
                id: id.clone(),
                label: r.get(0).map_err(db)?,
                path: r.get(1).map_err(db)?,
                vector,
                bytes: u64::try_from(r.get::<_, i64>(3).map_err(db)?).unwrap_or(0),
                width: r.get(4).map_err(db)?,
                height: r.get(5).map_err(db)?,
                model: r.get(6).map_err(db)?,
                indexed_at_ms: u64::try_from(r.get::<_, i64>(7).map_err(db)?).unwrap_or(0),
                mtime_ms: r
                    .get::<_, Option<i64>>(8)
                    .map_err(db)?
                    .and_then(|m| u64::try_from(m).ok()),
            });
        }
        Ok(docs)
    }
}
