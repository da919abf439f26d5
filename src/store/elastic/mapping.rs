//! The index itself: the body that creates it (`mappings/image-index.json` with the model's vector
//! size), the index-level requests (exists, create, delete, get mapping), and checking an existing
//! index with what `compat` says of its mapping ([`vector_dims`] here).
//!
//! What it is not for: documents (see `bulk` for writing them, `query` for reading them) or how
//! requests are sent and retried (see `connection`).

use std::sync::atomic::Ordering;

use elasticsearch::http::Method;
use serde_json::{json, Map, Value};

use super::compat::{check_mapping, label_field_error};
#[cfg(test)]
use super::fields::written_fields;

use super::errors::{error_type, unexpected, Op};
use super::{ElasticStore, MTIME_MAPPED, MTIME_UNKNOWN, MTIME_UNMAPPED};
use crate::store::{IndexSpec, ModelRecord, StoreError};

/// Where in the mapping's `_meta` the model is recorded: `_meta.imgvec.model`.
const META_KEY: &str = "imgvec";

/// The index mapping and settings, with `IFV.dims` left out: [`index_body`] fills it in.
pub const MAPPING_TEMPLATE: &str = include_str!("../../../mappings/image-index.json");

pub use super::fields::{
    LABEL_FIELD, MTIME_FIELD, PATH_FIELD, SIMILARITY, VECTOR_FIELD, VECTOR_INDEX_TYPE,
};

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

    /// Compares every concrete index behind the name with `spec`: an error naming each
    /// difference that keeps the store from working, else the warnings and the vector index type.
    pub(super) async fn check_compatible(
        &self,
        spec: &IndexSpec,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let mappings = self.mappings().await?;
        let several = mappings.len() > 1;
        let (mut errors, mut warnings, mut vector_index) = (Vec::new(), Vec::new(), None);
        for (name, mapping) in &mappings {
            let check = check_mapping(mapping, spec);
            let named = |d: String| if several { format!("{name}: {d}") } else { d };
            errors.extend(check.errors.into_iter().map(named));
            warnings.extend(check.warnings.into_iter().map(named));
            vector_index = vector_index.or(check.vector_index);
        }
        if errors.is_empty() {
            Ok((warnings, vector_index))
        } else {
            Err(self.incompatible(errors))
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
            // Writing or searching by label in such an index would silently miss.
            if let Some(e) = label_field_error(mapping) {
                return Err(self.incompatible(vec![if mappings.len() > 1 {
                    format!("{name}: {e}")
                } else {
                    e
                }]));
            }
        }
        dims.ok_or_else(|| self.index_missing())
    }

    /// The model recorded in the `_meta` of the concrete indices behind the name; an error when
    /// they record different models.
    pub(super) async fn recorded_model(&self) -> Result<Option<ModelRecord>, StoreError> {
        let mappings = self.mappings().await?;
        let mut found: Option<(String, ModelRecord)> = None;
        for (name, mapping) in &mappings {
            let Some(record) = model_record(mapping)
                .map_err(|e| self.incompatible(vec![format!("{name}: {e}")]))?
            else {
                continue;
            };
            match &found {
                Some((first, prev)) if *prev != record => {
                    return Err(self.incompatible(vec![format!(
                        "{first} was filled by model {} and {name} by model {}",
                        prev.describe(),
                        record.describe()
                    )]))
                }
                Some(_) => {}
                None => found = Some((name.clone(), record)),
            }
        }
        Ok(found.map(|(_, r)| r))
    }

    /// Records `model` in the mapping's `_meta` (kept otherwise) unless a model is recorded
    /// already, or adds its precisions to the same model's record; the record in force after.
    /// `PUT /index/_mapping` replaces `_meta` whole, so the first concrete index's other `_meta`
    /// keys are sent along. Two writers adding precisions at one moment may keep only one of
    /// them: the record is for people, and no check depends on it.
    pub(super) async fn record_model(
        &self,
        model: &ModelRecord,
    ) -> Result<ModelRecord, StoreError> {
        let model = match self.recorded_model().await? {
            Some(recorded)
                if recorded.same_model(model) && !recorded.new_precisions(model).is_empty() =>
            {
                recorded.with_precisions_of(model)
            }
            Some(recorded) => return Ok(recorded),
            None => model.clone(),
        };
        let model = &model;
        let mappings = self.mappings().await?;
        let mut meta = mappings
            .first()
            .and_then(|(_, m)| m.get("_meta"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        meta.insert(META_KEY.into(), meta_value(model));
        let body = json!({ "_meta": meta }).to_string();
        let reply = self
            .send(Method::Put, "_mapping", None, Some(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(self.error_for(Op::PutMeta, &reply));
        }
        Ok(model.clone())
    }

    fn incompatible(&self, differences: Vec<String>) -> StoreError {
        StoreError::Incompatible {
            index: self.index.clone(),
            differences,
        }
    }
}

/// The request body that creates the index: `mappings/image-index.json` with the vector size and
/// HNSW parameters of `spec` filled in, and `settings` only for the shards and replicas `spec`
/// asks for (none by default: Serverless refuses them, and the server's defaults are right for
/// most indices).
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
    if let (Some(model), Some(mappings)) = (&spec.model, body.get_mut("mappings")) {
        mappings["_meta"] = json!({ META_KEY: meta_value(model) });
    }
    let mut settings = Map::new();
    if let Some(shards) = spec.shards {
        settings.insert("number_of_shards".into(), json!(shards));
    }
    if let Some(replicas) = spec.replicas {
        settings.insert("number_of_replicas".into(), json!(replicas));
    }
    if !settings.is_empty() {
        body["settings"] = json!({ "index": settings });
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

/// `_meta.imgvec`'s value for `model`.
fn meta_value(model: &ModelRecord) -> Value {
    json!({ "model": model })
}

/// The model recorded in an index's `mappings` object (`_meta.imgvec.model`); `Ok(None)` when
/// there is none, an error when it is there but unreadable.
pub fn model_record(mappings: &Value) -> Result<Option<ModelRecord>, String> {
    let Some(value) = mappings.pointer(&format!("/_meta/{META_KEY}/model")) else {
        return Ok(None);
    };
    serde_json::from_value(value.clone())
        .map(Some)
        .map_err(|e| format!("the model recorded in _meta.{META_KEY}.model is unreadable ({e})"))
}

/// Whether a document may carry `field`: it is mapped, or the mapping is not `dynamic: strict`.
fn takes_field(mappings: &Value, field: &str) -> bool {
    mappings.pointer(&format!("/properties/{field}")).is_some()
        || mappings.get("dynamic").and_then(Value::as_str) != Some("strict")
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
