//! Reads for looking around an index: every label with its count (a `terms` aggregation on `name`)
//! and documents by id with their vectors (`_mget`).
//!
//! Vectors: Elasticsearch 9.2+ leaves `dense_vector` fields out of `_source` by default
//! (`index.mapping.exclude_source_vectors`). `_mget` therefore names `IFV` explicitly in
//! `_source_includes` and, when the server is 9.2 or newer (asked once with `GET /`), also sends
//! `_source_exclude_vectors=false`, the documented switch — which older servers would refuse as an
//! unknown parameter, and do not need: before 9.2 `_source` always holds the vector.
//!
//! What it is not for: kNN search or which ids exist (`query`), writing (`bulk`).

use serde_json::Value;

use super::fields::source_paths;
use super::mapping::{LABEL_FIELD, MTIME_FIELD, VECTOR_FIELD};
use super::ElasticStore;
use crate::store::{ImageDoc, StoreError};

/// The `_source` fields `get` reads.
const DOC_FIELDS: &str = "name,path,IFV,sha256,bytes,width,height,model,indexed_at,mtime";

impl ElasticStore {
    /// [`crate::store::VectorStore::get`]: `_mget` in batches, vectors included.
    pub(super) async fn docs_by_id(&self, ids: &[String]) -> Result<Vec<ImageDoc>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = vec![("_source_includes", DOC_FIELDS)];
        if self.server_info().await?.excludes_vectors() {
            query.push(("_source_exclude_vectors", "false"));
        }
        let mut docs = Vec::new();
        for doc in self.mget(ids, &query).await? {
            if let Some(d) = parse_doc(&doc).map_err(|e| {
                StoreError::Other(format!("unexpected document from {}: {e}", self.url()))
            })? {
                docs.push(d);
            }
        }
        Ok(docs)
    }
}

/// One `_mget` answer: `None` when not found, an error when found without a usable vector.
pub fn parse_doc(doc: &Value) -> Result<Option<ImageDoc>, String> {
    if doc.get("found").and_then(Value::as_bool) != Some(true) {
        return Ok(None);
    }
    doc_from_hit(doc).map(Some)
}

/// A document (an `_mget` doc or a search hit: `_id` and `_source`) with its vector; an error when
/// the vector is not there (vectors left out of `_source`) or is not numbers.
pub fn doc_from_hit(doc: &Value) -> Result<ImageDoc, String> {
    let id = doc
        .get("_id")
        .and_then(Value::as_str)
        .ok_or("a document without _id")?;
    let source = doc
        .get("_source")
        .ok_or_else(|| format!("{id}: no _source"))?;
    let text = |name: &str| {
        source
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let number = |name: &str| source.get(name).and_then(Value::as_u64).unwrap_or(0);
    let vector = source
        .get(VECTOR_FIELD)
        .and_then(Value::as_array)
        .ok_or_else(|| {
            format!(
                "{id}: no {VECTOR_FIELD} in _source (an index with _source disabled, or vectors \
excluded from it: set index.mapping.exclude_source_vectors to false)"
            )
        })?
        .iter()
        .map(|x| x.as_f64().map(|x| x as f32))
        .collect::<Option<Vec<f32>>>()
        .ok_or_else(|| format!("{id}: {VECTOR_FIELD} is not an array of numbers"))?;
    let mut paths = source_paths(source);
    let path = if paths.is_empty() {
        String::new()
    } else {
        paths.remove(0)
    };
    Ok(ImageDoc {
        id: id.to_string(),
        label: text(LABEL_FIELD),
        path,
        other_paths: paths,
        vector,
        bytes: number("bytes"),
        width: u32::try_from(number("width")).unwrap_or(0),
        height: u32::try_from(number("height")).unwrap_or(0),
        model: text("model"),
        indexed_at_ms: number("indexed_at"),
        mtime_ms: source.get(MTIME_FIELD).and_then(Value::as_u64),
    })
}

#[cfg(test)]
#[path = "browse_tests.rs"]
mod tests;
