//! Exact kNN of the local store: every stored f32 vector of the index (or of one label) compared
//! with the query, no HNSW graph involved.
//!
//! What it is for: [`crate::store::VectorStore::exact_knn`], the reference that `eval --recall`
//! measures the graph search against; scores are the same `1 / (1 + d²)` as `knn`'s.
//!
//! What it is not for: everyday search (`search` uses the graph, and scans only small sets).

use super::{Shared, State};
use crate::store::{Hit, KnnQuery, StoreError};

impl Shared {
    pub(super) fn exact_knn(
        &self,
        state: &mut State,
        query: &KnnQuery,
    ) -> Result<Vec<Hit>, StoreError> {
        let row = self.index_row(&state.conn)?;
        self.check_query(&row, query)?;
        if query.k == 0 {
            return Ok(Vec::new());
        }
        self.exact_scan(
            &state.conn,
            row.id,
            &query.vector,
            query.label.as_deref(),
            query.k,
        )
    }
}
