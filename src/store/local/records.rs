//! The local store's writes and reads of indexes and documents: one SQLite transaction each.
//!
//! What it is for: the [`VectorStore`](crate::store::VectorStore) operations that are plain
//! database work — create, recreate and delete an index, which ids exist, upsert a batch (one
//! transaction, one new generation), count and dims — and the checks of what may be stored.
//!
//! What it is not for: SQL plumbing shared by several jobs (`db`), the HNSW graph (`graph`; an
//! upsert only hands it the new generation once committed) or search (`search`).

use std::collections::HashSet;

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::db::{
    db_error, delete_index_rows, find_model, insert_index, insert_model, replace_model,
    vector_to_blob, IndexRow,
};
use super::graph_file::remove_ann_file;
use super::{Shared, State, SIMILARITY};
use crate::store::{EnsureOutcome, ImageDoc, IndexSpec, ModelRecord, StoreError, UpsertReport};

impl Shared {
    pub(super) fn ensure_index(
        &self,
        state: &mut State,
        spec: &IndexSpec,
    ) -> Result<EnsureOutcome, StoreError> {
        check_spec(spec)?;
        // Most calls find the index: a read, no lock.
        if let Some(row) = self.find_index(&state.conn)? {
            return self.compatible(&row, spec);
        }
        let _lock = self.lock_for_writing()?;
        let tx = state
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        if let Some(row) = self.find_index(&tx)? {
            return self.compatible(&row, spec);
        }
        insert_index(&tx, self.index_name(), spec).map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        state.wrote = true;
        Ok(EnsureOutcome::Created)
    }

    /// `AlreadyExists` if the index in `row` can hold what `spec` makes, else why not.
    fn compatible(&self, row: &IndexRow, spec: &IndexSpec) -> Result<EnsureOutcome, StoreError> {
        let differences = spec_differences(row, spec);
        if !differences.is_empty() {
            return Err(StoreError::Incompatible {
                index: self.index_name().to_string(),
                differences,
            });
        }
        Ok(EnsureOutcome::AlreadyExists)
    }

    pub(super) fn delete_index(&self, state: &mut State) -> Result<bool, StoreError> {
        let _lock = self.lock_for_writing()?;
        let tx = state
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        let Some(row) = self.find_index(&tx)? else {
            return Ok(false);
        };
        delete_index_rows(&tx, row.id).map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        state.ann = None;
        remove_ann_file(&self.dir, row.id);
        Ok(true)
    }

    pub(super) fn recreate_index(
        &self,
        state: &mut State,
        spec: &IndexSpec,
    ) -> Result<(), StoreError> {
        check_spec(spec)?;
        let _lock = self.lock_for_writing()?;
        let tx = state
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        let old = self.find_index(&tx)?;
        if let Some(row) = &old {
            delete_index_rows(&tx, row.id).map_err(|e| self.db(e))?;
        }
        insert_index(&tx, self.index_name(), spec).map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        state.ann = None;
        if let Some(row) = old {
            remove_ann_file(&self.dir, row.id);
        }
        Ok(())
    }

    pub(super) fn existing_ids(
        &self,
        state: &mut State,
        ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let row = self.index_row(&state.conn)?;
        let mut stmt = state
            .conn
            .prepare_cached("SELECT 1 FROM docs WHERE index_id = ?1 AND id = ?2")
            .map_err(|e| self.db(e))?;
        let mut found = HashSet::new();
        for id in ids {
            if found.contains(id) {
                continue;
            }
            if stmt.exists(params![row.id, id]).map_err(|e| self.db(e))? {
                found.insert(id.clone());
            }
        }
        Ok(found)
    }

    /// Writes `docs` in one transaction that bumps the index's generation (none if nothing was
    /// written), then brings the HNSW graph up to date; all under the write lock, taken for this
    /// one batch.
    pub(super) fn upsert(
        &self,
        state: &mut State,
        docs: &[ImageDoc],
        overwrite: bool,
    ) -> Result<UpsertReport, StoreError> {
        let _lock = self.lock_for_writing()?;
        let row = self.index_row(&state.conn)?;
        let generation = row.generation + 1;
        let tx = state
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        let (report, added) = self.write_docs(&tx, &row, docs, overwrite, generation)?;
        if report.indexed.is_empty() {
            // No document written, no new generation: what changed is paths, which the graph
            // does not hold.
            tx.commit().map_err(|e| self.db(e))?;
            return Ok(report);
        }
        tx.execute(
            "UPDATE indexes SET generation = ?1, doc_count = doc_count + ?2 WHERE id = ?3",
            params![generation, added, row.id],
        )
        .map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        // Durable from here on.
        self.graph_after_write(state);
        Ok(report)
    }

    /// Inserts (or, with `overwrite`, replaces) each valid document of `docs` as of `generation`;
    /// the report and how many documents are new.
    fn write_docs(
        &self,
        tx: &Transaction<'_>,
        row: &IndexRow,
        docs: &[ImageDoc],
        overwrite: bool,
        generation: i64,
    ) -> Result<(UpsertReport, i64), StoreError> {
        let db = |e| db_error(&self.db_path, e);
        let mut report = UpsertReport::default();
        let mut added = 0i64;
        let mut exists = tx
            .prepare_cached("SELECT 1 FROM docs WHERE index_id = ?1 AND id = ?2")
            .map_err(db)?;
        let mut write = tx.prepare_cached(write_sql(overwrite)).map_err(db)?;
        for doc in docs {
            if let Some(reason) = doc_problem(doc, row.dims) {
                report.failed.push((doc.id.clone(), reason));
                continue;
            }
            let (Ok(bytes), Ok(indexed_at), Ok(mtime)) = (
                i64::try_from(doc.bytes),
                i64::try_from(doc.indexed_at_ms),
                doc.mtime_ms.map(i64::try_from).transpose(),
            ) else {
                report.failed.push((
                    doc.id.clone(),
                    "bytes, indexed_at_ms or mtime_ms out of range".into(),
                ));
                continue;
            };
            let existed = exists.exists(params![row.id, doc.id]).map_err(db)?;
            if existed && !overwrite {
                // Its vector and label stay; where these bytes were seen is recorded.
                add_doc_paths(tx, row.id, doc, mtime).map_err(db)?;
                report.already_present.push(doc.id.clone());
                continue;
            }
            write
                .execute(params![
                    row.id,
                    doc.id,
                    doc.label,
                    doc.path,
                    vector_to_blob(&doc.vector),
                    bytes,
                    doc.width,
                    doc.height,
                    doc.model,
                    indexed_at,
                    generation,
                    mtime
                ])
                .map_err(db)?;
            // A new document's path is its first: only copies named with it need a row.
            if existed || !doc.other_paths.is_empty() {
                add_doc_paths(tx, row.id, doc, mtime).map_err(db)?;
            }
            if !existed {
                added += 1;
            }
            report.indexed.push(doc.id.clone());
        }
        Ok((report, added))
    }

    pub(super) fn count(&self, state: &mut State) -> Result<u64, StoreError> {
        let row = self.index_row(&state.conn)?;
        Ok(u64::try_from(row.doc_count).unwrap_or(0))
    }

    pub(super) fn index_dims(&self, state: &mut State) -> Result<usize, StoreError> {
        Ok(self.index_row(&state.conn)?.dims)
    }

    pub(super) fn index_model(&self, state: &mut State) -> Result<Option<ModelRecord>, StoreError> {
        let row = self.index_row(&state.conn)?;
        find_model(&state.conn, &self.db_path, row.id)
    }

    /// Records `model` unless the index has a model already, or adds its precisions to the same
    /// model's record; the record in force after.
    pub(super) fn adopt_model(
        &self,
        state: &mut State,
        model: &ModelRecord,
    ) -> Result<ModelRecord, StoreError> {
        let _lock = self.lock_for_writing()?;
        let tx = state
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        let row = self.index_row(&tx)?;
        let recorded = match find_model(&tx, &self.db_path, row.id)? {
            Some(r) if r.same_model(model) && !r.new_precisions(model).is_empty() => {
                let merged = r.with_precisions_of(model);
                replace_model(&tx, row.id, &merged).map_err(|e| self.db(e))?;
                merged
            }
            Some(r) => r,
            None => {
                insert_model(&tx, row.id, model).map_err(|e| self.db(e))?;
                model.clone()
            }
        };
        tx.commit().map_err(|e| self.db(e))?;
        Ok(recorded)
    }
}

/// The statement writing one document: an upsert with `overwrite`, else an insert that keeps what
/// is there.
fn write_sql(overwrite: bool) -> &'static str {
    if overwrite {
        "INSERT INTO docs (index_id, id, label, path, vector, bytes, width, height, model,
             indexed_at_ms, generation, mtime_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (index_id, id) DO UPDATE SET label = excluded.label,
             vector = excluded.vector, bytes = excluded.bytes,
             width = excluded.width, height = excluded.height, model = excluded.model,
             indexed_at_ms = excluded.indexed_at_ms, generation = excluded.generation,
             mtime_ms = excluded.mtime_ms"
    } else {
        "INSERT INTO docs (index_id, id, label, path, vector, bytes, width, height, model,
             indexed_at_ms, generation, mtime_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (index_id, id) DO NOTHING"
    }
}

/// Records `doc.path` (with `mtime`) and `doc.other_paths` as paths of the stored document with
/// `doc.id`, but for the one it has first (`docs.path`) and those it has already.
fn add_doc_paths(
    tx: &Transaction<'_>,
    index_id: i64,
    doc: &ImageDoc,
    mtime: Option<i64>,
) -> rusqlite::Result<()> {
    let Some((key, first)) = doc_key(tx, index_id, &doc.id)? else {
        return Ok(());
    };
    let paths = std::iter::once((doc.path.as_str(), mtime))
        .chain(doc.other_paths.iter().map(|p| (p.as_str(), None)));
    for (path, mtime) in paths.filter(|(p, _)| *p != first) {
        insert_path(tx, index_id, key, path, mtime)?;
    }
    Ok(())
}

/// The key and first path of the document `id`, if stored.
pub(super) fn doc_key(
    tx: &rusqlite::Connection,
    index_id: i64,
    id: &str,
) -> rusqlite::Result<Option<(i64, String)>> {
    tx.prepare_cached("SELECT key, path FROM docs WHERE index_id = ?1 AND id = ?2")?
        .query_row(params![index_id, id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// Adds `path` to the other paths of document `key` (a path it has already keeps its time).
pub(super) fn insert_path(
    tx: &Transaction<'_>,
    index_id: i64,
    key: i64,
    path: &str,
    mtime: Option<i64>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO doc_paths (index_id, key, path, mtime_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![index_id, key, path, mtime])?;
    Ok(())
}

/// Refuses a spec no index can be made of.
fn check_spec(spec: &IndexSpec) -> Result<(), StoreError> {
    if spec.dims == 0 {
        return Err(StoreError::Other(
            "an index needs vectors of at least 1 dimension".into(),
        ));
    }
    Ok(())
}

/// Why `doc` cannot be stored in an index of `dims`-d vectors, if it cannot.
fn doc_problem(doc: &ImageDoc, dims: usize) -> Option<String> {
    if doc.id.is_empty() {
        return Some("the document id is empty".into());
    }
    if doc.vector.len() != dims {
        return Some(format!(
            "the vector has {} dimensions, the index holds {dims}-d vectors",
            doc.vector.len()
        ));
    }
    if doc.vector.iter().any(|x| !x.is_finite()) {
        return Some("the vector has a NaN or infinite value".into());
    }
    None
}

/// What keeps an existing index from holding what `spec` makes (worded as the Elasticsearch
/// backend words it); HNSW `m`/`ef_construction` only tune recall and are not compared.
fn spec_differences(row: &IndexRow, spec: &IndexSpec) -> Vec<String> {
    let mut out = Vec::new();
    if row.dims != spec.dims {
        out.push(format!(
            "IFV dims: index has {}, model makes {}",
            row.dims, spec.dims
        ));
    }
    if row.similarity != SIMILARITY {
        out.push(format!(
            "IFV similarity: index has {}, expected {SIMILARITY}",
            row.similarity
        ));
    }
    out
}
