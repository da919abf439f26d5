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
