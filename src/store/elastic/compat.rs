//! Whether an existing index can hold what the store writes and answer what it asks: reading an
//! index's `mappings` object (as under `<index>.mappings` in `GET _mapping`) into errors (the store
//! cannot work with it), warnings (it works, but differs from what `create-index` makes) and the
//! vector index type in effect.
//!
//! What it is not for: fetching the mapping or creating the index (see `mapping`). Pure functions,
//! unit-tested in `mapping_tests.rs`.

use serde_json::{Map, Value};

use super::fields::{
    written_fields, LABEL_FIELD, PATH_FIELD, SIMILARITY, VECTOR_FIELD, VECTOR_INDEX_TYPE,
};
use crate::store::IndexSpec;

/// What [`check_mapping`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingCheck {
    /// What keeps the store from working with the index, one line each.
    pub errors: Vec<String>,
    /// What works but is worth knowing (a vector index type other than `int8_hnsw`, `path` not a
    /// keyword...), one line each.
    pub warnings: Vec<String>,
    /// The vector index type as the mapping states it (`int8_hnsw`, `hnsw`, `bbq_hnsw`, ...), or
    /// `None` when it states none (the server's default applies).
    pub vector_index: Option<String>,
}

/// What in an existing index's mapping keeps it from holding what `spec` makes, one readable line
/// per difference; empty if usable. The errors of [`check_mapping`].
pub fn mapping_differences(existing: &Value, spec: &IndexSpec) -> Vec<String> {
    check_mapping(existing, spec).errors
}

/// Checks an existing index's mapping against what the store writes and searches.
///
/// Errors: `IFV` not an indexed float `dense_vector` with the model's dims and `l2_norm`
/// similarity; `name` (the label, matched by a `term` filter) not a `keyword` — or not mapped, so
/// the first document would map it dynamically as `text` and the label filter would miss silently;
/// a field the store writes missing from a `dynamic: strict` mapping. Any HNSW or flat variant of
/// the vector index is usable (search re-ranks with the float vectors): a type other than
/// `int8_hnsw`, none stated, or `path` not a keyword is a warning. HNSW `m`/`ef_construction` only
/// tune recall and are not compared.
pub fn check_mapping(existing: &Value, spec: &IndexSpec) -> MappingCheck {
    let mut out = MappingCheck::default();
    let empty = Map::new();
    let props = existing
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    match props.get(VECTOR_FIELD) {
        None => out.errors.push(format!(
            "{VECTOR_FIELD}: index has no such field, model makes {}-d vectors",
            spec.dims
        )),
        Some(field) => vector_field(field, spec, &mut out),
    }
    keyword_fields(existing, props, &mut out);
    if existing.get("dynamic").and_then(Value::as_str) == Some("strict") {
        for field in written_fields() {
            if field != VECTOR_FIELD && field != LABEL_FIELD && !props.contains_key(field) {
                out.errors.push(format!(
                    "{field}: index has no such field and its mapping is dynamic: strict"
                ));
            }
        }
    }
    out
}

/// Why the label field cannot serve the label filter (a `term` query), if it cannot: it is not a
/// `keyword`, or not mapped (the first document would map it dynamically as `text`).
pub(super) fn label_field_error(existing: &Value) -> Option<String> {
    let field = existing.get("properties").and_then(|p| p.get(LABEL_FIELD));
    match field.map(field_type) {
        Some(ty) if ty == "keyword" => None,
        Some(ty) => Some(format!(
            "{LABEL_FIELD} type: index has {ty}, expected keyword (the label filter matches it exactly)"
        )),
        None => Some(format!(
            "{LABEL_FIELD}: index has no such field; the first document would map it dynamically as text, \
and the label filter (an exact keyword match) would silently find nothing. Add it as keyword or use another index"
        )),
    }
}

/// `name` must be a keyword (error otherwise); `path` should be (warning otherwise).
fn keyword_fields(existing: &Value, props: &Map<String, Value>, out: &mut MappingCheck) {
    out.errors.extend(label_field_error(existing));
    match props.get(PATH_FIELD).map(field_type) {
        Some(ty) if ty == "keyword" => {}
        Some(ty) => out.warnings.push(format!(
            "{PATH_FIELD} is {ty}, not keyword: paths are stored and shown, but not matched exactly"
        )),
        None => out.warnings.push(format!(
            "{PATH_FIELD} is not mapped: the first document maps it dynamically (as text)"
        )),
    }
}

fn field_type(field: &Value) -> String {
    str_at(field, "type").unwrap_or_else(|| "object".into())
}

/// [`check_mapping`] for the vector field's own mapping.
fn vector_field(field: &Value, spec: &IndexSpec, out: &mut MappingCheck) {
    let ty = field_type(field);
    if ty != "dense_vector" {
        out.errors.push(format!(
            "{VECTOR_FIELD} type: index has {ty}, expected dense_vector"
        ));
        return;
    }
    match field.get("dims").and_then(Value::as_u64) {
        Some(d) if d == spec.dims as u64 => {}
        Some(d) => out.errors.push(format!(
            "{VECTOR_FIELD} dims: index has {d}, model makes {}",
            spec.dims
        )),
        None => out.errors.push(format!(
            "{VECTOR_FIELD} dims: index has none set, model makes {}",
            spec.dims
        )),
    }
    if let Some(et) = str_at(field, "element_type").filter(|et| et != "float") {
        out.errors.push(format!(
            "{VECTOR_FIELD} element_type: index has {et}, expected float"
        ));
    }
    if field.get("index").and_then(Value::as_bool) == Some(false) {
        out.errors.push(format!(
            "{VECTOR_FIELD} index: index has false (no kNN search), expected true"
        ));
    }
    match str_at(field, "similarity") {
        Some(s) if s == SIMILARITY => {}
        Some(s) => out.errors.push(format!(
            "{VECTOR_FIELD} similarity: index has {s}, expected {SIMILARITY}"
        )),
        None => out.errors.push(format!(
            "{VECTOR_FIELD} similarity: index has none set (server default, cosine), expected {SIMILARITY}"
        )),
    }
    vector_index_type(field, spec, out);
}

/// The vector index type: any known HNSW/flat variant is usable; say which where it differs.
fn vector_index_type(field: &Value, spec: &IndexSpec, out: &mut MappingCheck) {
    let Some(options) = field.get("index_options") else {
        out.warnings.push(format!(
            "{VECTOR_FIELD} states no index_options, so the server's default applies: float hnsw on \
8.12–8.13, int8_hnsw on 8.14–9.0, and on 9.1+ bbq_hnsw for {} dims (≥ 384) or int8_hnsw below; \
search re-ranks with the float vectors either way",
            spec.dims
        ));
        return;
    };
    let t = str_at(options, "type").unwrap_or_else(|| "none".into());
    out.vector_index = Some(t.clone());
    let why = match t.as_str() {
        VECTOR_INDEX_TYPE => return,
        "hnsw" => "float vectors in the graph: exact, about 4× the memory of int8_hnsw",
        "flat" | "int8_flat" | "int4_flat" | "bbq_flat" => {
            "no graph: every search compares every vector (exact, but slow on a large index)"
        }
        "int4_hnsw" | "bbq_hnsw" | "bbq_disk" => {
            "more compressed than int8_hnsw: fewer true neighbours among the candidates; raise \
--num-candidates if results look off (the scores shown are exact either way)"
        }
        _ => "a type imgvec does not know: used as it is",
    };
    out.warnings.push(format!(
        "{VECTOR_FIELD} index_options.type is {t}, not {VECTOR_INDEX_TYPE} as create-index makes ({why})"
    ));
}

fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}
