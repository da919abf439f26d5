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

use super::db::{doc_row, DOC_COLUMNS};
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
            .prepare_cached(&format!(
                "SELECT {DOC_COLUMNS} FROM docs WHERE index_id = ?1 AND id = ?2"
            ))
            .map_err(|e| self.db(e))?;
        let mut seen = HashSet::new();
        let mut docs = Vec::new();
        for id in ids.iter().filter(|id| seen.insert(*id)) {
            let mut rows = stmt.query(params![row.id, id]).map_err(|e| self.db(e))?;
            let Some(r) = rows.next().map_err(|e| self.db(e))? else {
                continue;
            };
            docs.push(doc_row(&self.db_path, r, row.dims)?);
        }
        Ok(docs)
    }
}
