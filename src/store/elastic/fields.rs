//! The index's field names and what the store writes, named once for the mapping, its check and
//! the queries. The original pipeline's names stay: `name` (the label), `path`, `IFV` (the vector).

/// The vector field, named as in the original Python pipeline.
pub const VECTOR_FIELD: &str = "IFV";
/// The label field (`keyword`, so the kNN `term` filter matches it exactly).
pub const LABEL_FIELD: &str = "name";
/// The file path field.
pub const PATH_FIELD: &str = "path";
/// The file's modification time when it was read (epoch ms); indices made before imgvec wrote it
/// lack it, and then it is not written.
pub const MTIME_FIELD: &str = "mtime";
/// The similarity the scores in [`crate::store::Hit`] assume (`score = 1 / (1 + d²)`).
pub const SIMILARITY: &str = "l2_norm";
/// The vector index type, set explicitly: ES 9.1+ would otherwise pick `bbq_hnsw` for dims ≥ 384.
pub const VECTOR_INDEX_TYPE: &str = "int8_hnsw";

/// The fields the store's `upsert` writes (see `bulk::doc_source`).
pub(super) fn written_fields() -> [&'static str; 9] {
    [
        LABEL_FIELD,
        PATH_FIELD,
        VECTOR_FIELD,
        "sha256",
        "bytes",
        "width",
        "height",
        "model",
        "indexed_at",
    ]
}

/// A document's paths from its `_source`: `path` is one string, or, for a content seen at
/// several paths, an array (Elasticsearch's multi-valued keyword), the first path first.
pub fn source_paths(source: &serde_json::Value) -> Vec<String> {
    match source.get(PATH_FIELD) {
        Some(serde_json::Value::String(p)) => vec![p.clone()],
        Some(serde_json::Value::Array(ps)) => ps
            .iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The `path` value written for `first` and `others`: a plain string for one path (what the
/// original pipeline wrote, and what most documents keep), an array for several.
pub fn path_value(first: &str, others: &[String]) -> serde_json::Value {
    if others.is_empty() {
        serde_json::Value::from(first)
    } else {
        let all: Vec<&str> = std::iter::once(first)
            .chain(others.iter().map(String::as_str))
            .collect();
        serde_json::Value::from(all)
    }
}
