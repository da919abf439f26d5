//! The index itself: the body that creates it (`mappings/image-index.json` with the model's vector
//! size), checking an existing index against what the store writes ([`mapping_differences`],
//! [`vector_dims`]), and the index-level requests (exists, create, delete, get mapping).
//!
//! What it is not for: documents (see `bulk` for writing them, `query` for reading them) or how
//! requests are sent and retried (see `connection`).

use std::sync::atomic::Ordering;

use elasticsearch::http::Method;
use serde_json::{json, Map, Value};

use super::errors::{error_type, unexpected, Op};
use super::{ElasticStore, MTIME_MAPPED, MTIME_UNKNOWN, MTIME_UNMAPPED};
use crate::store::{IndexSpec, StoreError};

/// The index mapping and settings, with `IFV.dims` left out: [`index_body`] fills it in.
pub const MAPPING_TEMPLATE: &str = include_str!("../../../mappings/image-index.json");

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

impl ElasticStore {
    /// `HEAD /index`: whether the index (or alias) exists.
    pub async fn index_exists(&self) -> Result<bool, StoreError> {
        let reply = self.send(Method::Head, "", None, None).await?;
        match reply.status.as_u16() {
            200..=299 => {
                self.index_seen.store(true, Ordering::Relaxed);
                Ok(true)
            }
            404 => Ok(false),
            _ => Err(self.error_for(Op::Exists, &reply)),
        }
    }

    /// `DELETE /index`; `false` when there was none.
    pub async fn delete_index(&self) -> Result<bool, StoreError> {
        let reply = self.send(Method::Delete, "", None, None).await?;
        self.index_seen.store(false, Ordering::Relaxed);
        self.mtime_mapping.store(MTIME_UNKNOWN, Ordering::Relaxed);
        if reply.status.is_success() {
            return Ok(true);
        }
        match self.error_for(Op::DeleteIndex, &reply) {
            StoreError::IndexMissing { .. } => Ok(false),
            e => Err(e),
        }
    }

    /// `GET /index/_mapping`: the `mappings` object of each concrete index behind the name.
    pub async fn mappings(&self) -> Result<Vec<(String, Value)>, StoreError> {
        let reply = self.send(Method::Get, "_mapping", None, None).await?;
        if !reply.status.is_success() {
            return Err(self.error_for(Op::Mapping, &reply));
        }
        let Some(indices) = reply.body.as_object() else {
            return Err(unexpected(self.url(), "GET _mapping", &reply.body));
        };
        let found: Vec<(String, Value)> = indices
            .iter()
            .map(|(name, v)| {
                (
                    name.clone(),
                    v.get("mappings").cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        if found.is_empty() {
            return Err(self.index_missing());
        }
        self.index_seen.store(true, Ordering::Relaxed);
        let takes_mtime = found.iter().all(|(_, m)| takes_field(m, MTIME_FIELD));
        self.mtime_mapping.store(
            if takes_mtime {
                MTIME_MAPPED
            } else {
                MTIME_UNMAPPED
            },
            Ordering::Relaxed,
        );
        Ok(found)
    }

    /// `PUT /index` with [`index_body`]; `Ok(false)` if it already existed.
    pub(super) async fn create_index(&self, spec: &IndexSpec) -> Result<bool, StoreError> {
        let body = index_body(spec).to_string();
        let reply = self.send(Method::Put, "", None, Some(&body)).await?;
        if reply.status.is_success() {
            self.index_seen.store(true, Ordering::Relaxed);
            self.mtime_mapping.store(MTIME_MAPPED, Ordering::Relaxed);
            return Ok(true);
        }
        if error_type(&reply.body) == Some("resource_already_exists_exception") {
            self.index_seen.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        Err(self.error_for(Op::CreateIndex, &reply))
    }

    /// Compares every concrete index behind the name with `spec`.
    pub(super) async fn check_compatible(&self, spec: &IndexSpec) -> Result<(), StoreError> {
        let mappings = self.mappings().await?;
        let several = mappings.len() > 1;
        let mut differences = Vec::new();
        for (name, mapping) in &mappings {
            for d in mapping_differences(mapping, spec) {
                differences.push(if several { format!("{name}: {d}") } else { d });
            }
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(self.incompatible(differences))
        }
    }

    /// The vector dims shared by every concrete index behind the name.
    pub(super) async fn shared_vector_dims(&self) -> Result<usize, StoreError> {
        let mappings = self.mappings().await?;
        let mut dims = None;
        for (name, mapping) in &mappings {
            match (vector_dims(mapping), dims) {
                (None, _) => {
                    return Err(self.incompatible(vec![format!(
                        "{name}: no dense_vector field '{VECTOR_FIELD}' with dims"
                    )]))
                }
                (Some(d), Some(prev)) if d != prev => {
                    return Err(self.incompatible(vec![format!(
                        "the indices behind '{}' hold {prev}-d and {d}-d vectors",
                        self.index
                    )]))
                }
                (Some(d), _) => dims = Some(d),
            }
        }
        dims.ok_or_else(|| self.index_missing())
    }

    fn incompatible(&self, differences: Vec<String>) -> StoreError {
        StoreError::Incompatible {
            index: self.index.clone(),
            differences,
        }
    }
}

/// The request body that creates the index: `mappings/image-index.json` with the vector size and
/// HNSW parameters of `spec` filled in.
pub fn index_body(spec: &IndexSpec) -> Value {
    // The template is a compile-time constant; `index_body_is_the_template_plus_spec` checks it.
    let mut body: Value =
        serde_json::from_str(MAPPING_TEMPLATE).expect("mappings/image-index.json is valid JSON");
    if let Some(field) = body
        .pointer_mut("/mappings/properties/IFV")
        .and_then(Value::as_object_mut)
    {
        field.insert("dims".into(), json!(spec.dims));
        let options = field
            .entry("index_options")
            .or_insert_with(|| json!({ "type": VECTOR_INDEX_TYPE }));
        if let Some(options) = options.as_object_mut() {
            if let Some(m) = spec.hnsw_m {
                options.insert("m".into(), json!(m));
            }
            if let Some(ef) = spec.hnsw_ef_construction {
                options.insert("ef_construction".into(), json!(ef));
            }
        }
    }
    body
}

/// The vector dims in an index's `mappings` object (as under `<index>.mappings` in `GET _mapping`).
pub fn vector_dims(mappings: &Value) -> Option<usize> {
    let field = mappings.get("properties")?.get(VECTOR_FIELD)?;
    if field.get("type").and_then(Value::as_str) != Some("dense_vector") {
        return None;
    }
    field
        .get("dims")
        .and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok())
}

/// What in an existing index's `mappings` object (as under `<index>.mappings` in `GET _mapping`)
/// keeps it from holding what `spec` makes, one readable line per difference; empty if compatible.
///
/// Checked: `IFV` is an indexed float `dense_vector` with the model's dims, `l2_norm` similarity and
/// `int8_hnsw` index type (an absent `index_options` means the server's default and is accepted:
/// ES 8.12–8.13 do not show it); `name` is a `keyword` (the label filter is a `term` query); no field
/// this store writes is missing from a `dynamic: strict` mapping. HNSW `m`/`ef_construction` only
/// tune recall and are not compared.
pub fn mapping_differences(existing: &Value, spec: &IndexSpec) -> Vec<String> {
    let mut out = Vec::new();
    let empty = Map::new();
    let props = existing
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);

    match props.get(VECTOR_FIELD) {
        None => out.push(format!(
            "{VECTOR_FIELD}: index has no such field, model makes {}-d vectors",
            spec.dims
        )),
        Some(field) => vector_field_differences(field, spec, &mut out),
    }

    if let Some(name) = props.get(LABEL_FIELD) {
        let ty = str_at(name, "type").unwrap_or_else(|| "object".into());
        if ty != "keyword" {
            out.push(format!(
                "{LABEL_FIELD} type: index has {ty}, expected keyword (the label filter matches it exactly)"
            ));
        }
    }

    let strict = match existing.get("dynamic") {
        Some(Value::String(s)) => s == "strict",
        _ => false,
    };
    if strict {
        for field in written_fields() {
            if field != VECTOR_FIELD && !props.contains_key(field) {
                out.push(format!(
                    "{field}: index has no such field and its mapping is dynamic: strict"
                ));
            }
        }
    }
    out
}

/// [`mapping_differences`] for the vector field's own mapping.
fn vector_field_differences(field: &Value, spec: &IndexSpec, out: &mut Vec<String>) {
    let ty = str_at(field, "type").unwrap_or_else(|| "object".into());
    if ty != "dense_vector" {
        out.push(format!(
            "{VECTOR_FIELD} type: index has {ty}, expected dense_vector"
        ));
        return;
    }
    match field.get("dims").and_then(Value::as_u64) {
        Some(d) if d == spec.dims as u64 => {}
        Some(d) => out.push(format!(
            "{VECTOR_FIELD} dims: index has {d}, model makes {}",
            spec.dims
        )),
        None => out.push(format!(
            "{VECTOR_FIELD} dims: index has none set, model makes {}",
            spec.dims
        )),
    }
    if let Some(et) = str_at(field, "element_type") {
        if et != "float" {
            out.push(format!(
                "{VECTOR_FIELD} element_type: index has {et}, expected float"
            ));
        }
    }
    if field.get("index").and_then(Value::as_bool) == Some(false) {
        out.push(format!(
            "{VECTOR_FIELD} index: index has false (no kNN search), expected true"
        ));
    }
    match str_at(field, "similarity") {
        Some(s) if s == SIMILARITY => {}
        Some(s) => out.push(format!(
            "{VECTOR_FIELD} similarity: index has {s}, expected {SIMILARITY}"
        )),
        None => out.push(format!(
            "{VECTOR_FIELD} similarity: index has none set (server default, cosine), expected {SIMILARITY}"
        )),
    }
    if let Some(options) = field.get("index_options") {
        let t = str_at(options, "type").unwrap_or_else(|| "none".into());
        if t != VECTOR_INDEX_TYPE {
            out.push(format!(
                "{VECTOR_FIELD} index_options.type: index has {t}, expected {VECTOR_INDEX_TYPE}"
            ));
        }
    }
}

/// Whether a document may carry `field`: it is mapped, or the mapping is not `dynamic: strict`.
fn takes_field(mappings: &Value, field: &str) -> bool {
    mappings.pointer(&format!("/properties/{field}")).is_some()
        || mappings.get("dynamic").and_then(Value::as_str) != Some("strict")
}

fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The fields [`ElasticStore`]'s `upsert` writes (see `bulk::doc_source`).
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

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
