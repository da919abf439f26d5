//! Reading the whole index of the local store: every document a page at a time in id order
//! ([`crate::store::VectorStore::scan`], what `copy` reads). Labels and documents by id are
//! `browse`'s.
//!
//! A scan is keyset-paginated (`id > last id ORDER BY id LIMIT n`, on the `(index_id, id)` unique
//! index), so each page is one short read that holds the store only while it runs, and a scan can
//! resume after any id. What it is not for: search (`search`, `exact`) or writing.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::params;

use super::db::{db_error, doc_row, DOC_COLUMNS};
use super::{Shared, State};
use crate::store::{DocScan, ImageDoc, StoreError};

/// A scan in progress: where it is, and the store it reads.
pub(super) struct LocalScan {
    pub(super) shared: Arc<Shared>,
    pub(super) page_size: usize,
    /// The last id returned (the next page starts after it); `None` before the first.
    pub(super) after: Option<String>,
    pub(super) done: bool,
}

#[async_trait]
impl DocScan for LocalScan {
    async fn next_page(&mut self) -> Result<Vec<ImageDoc>, StoreError> {
        if self.done {
            return Ok(Vec::new());
        }
        let shared = Arc::clone(&self.shared);
        let (after, size) = (self.after.clone(), self.page_size.max(1));
        let page = tokio::task::spawn_blocking(move || {
            let mut state = shared.lock_state();
            shared.scan_page(&mut state, after.as_deref(), size)
        })
        .await
        .map_err(|e| StoreError::Other(format!("local store task failed: {e}")))??;
        match page.last() {
            Some(last) => self.after = Some(last.id.clone()),
            None => self.done = true,
        }
        if page.len() < self.page_size.max(1) {
            self.done = true;
        }
        Ok(page)
    }

    async fn close(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Shared {
    /// Up to `size` documents with ids after `after`, in id order.
    fn scan_page(
        &self,
        state: &mut State,
        after: Option<&str>,
        size: usize,
    ) -> Result<Vec<ImageDoc>, StoreError> {
        let row = self.index_row(&state.conn)?;
        let db = |e| db_error(&self.db_path, e);
        let mut stmt = state
            .conn
            .prepare_cached(&format!(
                "SELECT {DOC_COLUMNS} FROM docs WHERE index_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ))
            .map_err(db)?;
        let limit = i64::try_from(size).unwrap_or(i64::MAX);
        let mut rows = stmt
            .query(params![row.id, after.unwrap_or(""), limit])
            .map_err(db)?;
        let mut page = Vec::with_capacity(size.min(4096));
        while let Some(r) = rows.next().map_err(db)? {
            page.push(doc_row(&self.db_path, r, row.dims)?);
        }
        Ok(page)
    }
}
