//! Vector stores: where image embeddings are kept and how they are searched.
//!
//! One trait, [`VectorStore`], and its backends: `local` (embedded, the default) and `elastic`
//! (Elasticsearch, for scale). The commands talk to the
//! trait only, so every command behaves the same on every backend. This module knows nothing of models,
//! images or files: it stores [`ImageDoc`]s and answers k-nearest-neighbour queries.

pub mod elastic;
pub mod local;

use std::collections::HashSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One indexed image, as stored.
///
/// In Elasticsearch the fields are named as in the original Python pipeline: `name` (the label),
/// `path` and `IFV` (the vector), plus the extra fields below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageDoc {
    /// Lower-case hex SHA-256 of the file's bytes: the document id, so re-ingesting is idempotent.
    pub id: String,
    /// The label (`name` in Elasticsearch), e.g. `cat`.
    pub label: String,
    /// The file's absolute path: the first path this content was indexed from.
    pub path: String,
    /// The other paths the same content (the same bytes) was seen at, each once, `path` not among
    /// them. In Elasticsearch `path` then holds all of them, this one first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_paths: Vec<String>,
    /// The L2-normalized embedding (`IFV` in Elasticsearch).
    pub vector: Vec<f32>,
    /// File size in bytes.
    pub bytes: u64,
    /// Decoded image width and height in pixels (after EXIF orientation).
    pub width: u32,
    pub height: u32,
    /// Which model made the vector (the model directory's name, e.g. `clip-vit-large-patch14`).
    pub model: String,
    /// When it was indexed, milliseconds since the Unix epoch.
    pub indexed_at_ms: u64,
    /// The file's modification time when it was read, milliseconds since the Unix epoch; `None`
    /// when unknown (documents indexed before imgvec recorded it). Lets `prune` trust an unchanged
    /// size and time instead of hashing the file again.
    #[serde(default)]
    pub mtime_ms: Option<u64>,
}

/// One path of a document, for [`VectorStore::add_paths`] and [`VectorStore::remove_paths`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocPath {
    pub id: String,
    pub path: String,
    /// The file's modification time, when known (kept by the embedded store, so `prune` can
    /// trust an unchanged file without hashing it).
    pub mtime_ms: Option<u64>,
}

/// What [`VectorStore::remove_paths`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathsRemoved {
    /// Paths taken off their documents.
    pub paths: u64,
    /// Documents deleted because their last path went.
    pub documents: u64,
}

/// What `prune` needs to check one path of a document against its file: no vector. A document
/// seen at several paths is listed once per path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocFile {
    pub id: String,
    pub path: String,
    pub bytes: u64,
    pub mtime_ms: Option<u64>,
    pub indexed_at_ms: u64,
}

/// The model that fills an index, as the index remembers it (Elasticsearch: the mapping's `_meta`;
/// the embedded store: its own table), so that vectors of two models that share a dimension are
/// never mixed. Plain data made by the model side (`clip::ModelDir::record`); the store only keeps
/// it and hands it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The model's short name (the hub repository, else the directory's name).
    pub name: String,
    /// The architecture family: `clip`, `chinese_clip`, ...
    pub family: String,
    /// The embedding dimension.
    pub dims: usize,
    /// Hex SHA-256 over the weights file's header and samples of its bytes: tells two checkpoints
    /// apart whatever their directories are called. `None` when the weights were not at hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The precisions the index's vectors were made in (`f32`, `bf16`, `f16`, `int8`), in the order
    /// first written; more than one when runs of several precisions filled it, which is allowed
    /// (docs/performance.md says what it costs). Empty in an index filled before imgvec recorded
    /// them. Not part of [`Self::same_model`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub precisions: Vec<String>,
}

impl ModelRecord {
    /// Whether vectors of `other` may share an index with this model's: same family and size, and
    /// the same weights (by fingerprint where both have one, else by name).
    pub fn same_model(&self, other: &ModelRecord) -> bool {
        self.family == other.family
            && self.dims == other.dims
            && match (&self.fingerprint, &other.fingerprint) {
                (Some(a), Some(b)) => a == b,
                _ => self.name == other.name,
            }
    }

    /// `other`'s precisions that this record lacks (what a writer of `other` adds to the index).
    pub fn new_precisions<'a>(&self, other: &'a ModelRecord) -> Vec<&'a str> {
        other
            .precisions
            .iter()
            .filter(|p| !self.precisions.contains(p))
            .map(String::as_str)
            .collect()
    }

    /// This record with `other`'s missing precisions appended.
    pub fn with_precisions_of(&self, other: &ModelRecord) -> ModelRecord {
        let mut merged = self.clone();
        merged
            .precisions
            .extend(self.new_precisions(other).into_iter().map(str::to_string));
        merged
    }

    /// For people: the precisions joined by `+` (`f32+int8`), or "not recorded".
    pub fn describe_precisions(&self) -> String {
        if self.precisions.is_empty() {
            "not recorded".to_string()
        } else {
            self.precisions.join("+")
        }
    }

    /// For people: `name (family, N-d, weights 0123456789ab)`.
    pub fn describe(&self) -> String {
        let weights = self
            .fingerprint
            .as_deref()
            // From the index (a server's `_meta` may hold anything): by characters, never a panic.
            .map(|f| format!(", weights {}", f.chars().take(12).collect::<String>()))
            .unwrap_or_default();
        format!("{} ({}, {}-d{weights})", self.name, self.family, self.dims)
    }
}

/// What the index must look like: the vector size comes from the model's config, never from a constant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// Embedding dimension (the checkpoint's `projection_dim`).
    pub dims: usize,
    /// The model recorded in a new index (`None`: none recorded, as before imgvec kept one).
    pub model: Option<ModelRecord>,
    /// HNSW graph degree (`m`); `None` leaves the server's default.
    pub hnsw_m: Option<u32>,
    /// HNSW `ef_construction`; `None` leaves the server's default.
    pub hnsw_ef_construction: Option<u32>,
    /// Elasticsearch primary shards (`index.number_of_shards`); `None` sends no setting, so the
    /// server's default applies (Serverless refuses the setting).
    pub shards: Option<u32>,
    /// Elasticsearch replicas (`index.number_of_replicas`); `None` sends no setting.
    pub replicas: Option<u32>,
}

impl IndexSpec {
    /// The index for vectors of `dims` with the backend's default graph parameters.
    pub fn for_dims(dims: usize) -> Self {
        Self {
            dims,
            model: None,
            hnsw_m: None,
            hnsw_ef_construction: None,
            shards: None,
            replicas: None,
        }
    }

    /// The index for `model`'s vectors, the model recorded in it.
    pub fn for_model(model: &ModelRecord) -> Self {
        Self {
            model: Some(model.clone()),
            ..Self::for_dims(model.dims)
        }
    }
}

/// What `ensure_index` found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnsureOutcome {
    Created,
    /// The index was there already, with a compatible mapping.
    AlreadyExists,
}

/// What [`VectorStore::check_index`] found about an existing, usable index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexCheck {
    /// How the vectors are indexed, for people: `int8_hnsw`, `bbq_hnsw`, "the server's default"...
    pub vector_index: String,
    /// What works but differs from what `create-index` makes, one line each.
    pub warnings: Vec<String>,
}

/// Index settings saved by [`VectorStore::begin_bulk_load`], for [`VectorStore::end_bulk_load`]
/// to put back (for Elasticsearch: each concrete index's previous values, `null` for unset).
#[derive(Debug, Clone, PartialEq)]
pub struct SavedSettings(pub serde_json::Value);

/// The most candidates one kNN query examines: Elasticsearch's limit on `num_candidates`, which
/// the embedded store keeps too.
pub const MAX_NUM_CANDIDATES: usize = 10_000;

/// `num_candidates` when not given: max(100, 10·k), within [k, 10 000].
pub fn default_num_candidates(k: usize) -> usize {
    (10 * k).clamp(100, MAX_NUM_CANDIDATES).max(k)
}

/// A k-nearest-neighbour query.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnQuery {
    /// L2-normalized query vector.
    pub vector: Vec<f32>,
    pub k: usize,
    /// Candidates examined per shard (Elasticsearch's `num_candidates`), ≥ k.
    pub num_candidates: usize,
    /// Only documents with this label; applied inside the kNN search, not after it.
    pub label: Option<String>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub id: String,
    /// Elasticsearch's `l2_norm` score: 1 / (1 + d²).
    pub score: f32,
    pub label: String,
    pub path: String,
    /// The document's other paths (the same bytes seen elsewhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_paths: Vec<String>,
}

impl Hit {
    /// The L2 distance between query and hit, from the `l2_norm` score (score = 1 / (1 + d²)).
    pub fn distance(&self) -> f32 {
        score_to_distance(self.score)
    }
}

/// The hits at most `max_distance` from the query (all with `None`), in their order: the
/// search cut-off ("only results that are really similar"). Compared as scores, so a hit exactly
/// at the cut-off stays whichever way it was given.
pub fn within(mut hits: Vec<Hit>, max_distance: Option<f32>) -> Vec<Hit> {
    if let Some(d) = max_distance {
        let min_score = distance_to_score(d);
        hits.retain(|h| h.score >= min_score * (1.0 - 1e-6));
    }
    hits
}

/// Inverse of Elasticsearch's `l2_norm` similarity score, `score = 1 / (1 + d²)`.
pub fn score_to_distance(score: f32) -> f32 {
    if score <= 0.0 {
        return f32::INFINITY;
    }
    (1.0 / score - 1.0).max(0.0).sqrt()
}

/// Elasticsearch's `l2_norm` similarity score for an L2 distance.
pub fn distance_to_score(distance: f32) -> f32 {
    1.0 / (1.0 + distance * distance)
}

/// Outcome of one `upsert` call, item by item.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpsertReport {
    /// Ids newly written.
    pub indexed: Vec<String>,
    /// Ids that were already present (nothing written: one label never overwrites another).
    pub already_present: Vec<String>,
    /// Ids that failed for good (after retries), with the server's reason.
    pub failed: Vec<(String, String)>,
}

/// What a 401 says, depending on whether credentials were sent.
fn auth_problem(sent_credentials: &bool) -> &'static str {
    if *sent_credentials {
        "refused the credentials"
    } else {
        "needs credentials and none were given"
    }
}

/// Errors a user can act on; each says what to do or what was refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach {url}: {detail}. Is the server running and the URL right?")]
    Unreachable { url: String, detail: String },
    /// 401: credentials missing, wrong or expired.
    #[error("{url} {} ({detail}). Set ELASTIC_USERNAME (default elastic) and ELASTIC_PASSWORD, or ELASTIC_API_KEY", auth_problem(.sent_credentials))]
    Auth {
        url: String,
        detail: String,
        /// Whether the request carried credentials (else the fix is to give some).
        sent_credentials: bool,
    },
    /// 403: the credentials are good but lack a privilege for this operation.
    #[error("{url} accepted the credentials but they may not {action} on index '{index}' ({detail}). Grant the index privilege `{privilege}` on '{index}' (imgvec needs view_index_metadata, create_index, create_doc, read and maintenance; index with --force, delete_index with --recreate, delete for prune)")]
    Forbidden {
        url: String,
        index: String,
        /// What was refused, e.g. "write documents".
        action: String,
        /// The index privilege that allows it, e.g. `create_doc`.
        privilege: String,
        detail: String,
    },
    /// The server's TLS certificate does not verify; retrying cannot help.
    #[error("the TLS certificate of {url} does not verify ({detail}). Pass the CA that signed it with --ca-cert FILE (or IMGVEC_CA_CERT; Elasticsearch 8 writes its CA to config/certs/http_ca.crt), or use the host name the certificate names; --insecure skips the check, as a last resort")]
    Certificate { url: String, detail: String },
    #[error("index '{index}' does not exist: run `imgvec create-index` first")]
    IndexMissing { index: String },
    #[error("index '{index}' exists with an incompatible mapping: {}", differences.join("; "))]
    Incompatible {
        index: String,
        differences: Vec<String>,
    },
    #[error("index '{index}' holds {index_dims}-d vectors but the model makes {model_dims}-d ones: use the model the index was built with, or another --index")]
    DimsMismatch {
        index: String,
        index_dims: usize,
        model_dims: usize,
    },
    /// The index remembers another model than the one this command uses.
    #[error("index '{index}' was filled by model {recorded} but this command uses model {model}: their vectors are not comparable. Use the model the index was built with (--model-dir / --repo), or another --index")]
    ModelMismatch {
        index: String,
        /// The recorded model, described ([`ModelRecord::describe`]).
        recorded: String,
        /// The command's model, described.
        model: String,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("server error {status}: {body}")]
    Server { status: u16, body: String },
    /// A step after bulk-load mode had already put the index's settings back failed (a refresh
    /// without the `maintenance` privilege, a force-merge Serverless does not offer): nothing is
    /// left to set back by hand.
    #[error("the index's settings were put back, but {step} failed: {error}")]
    AfterSettingsRestored {
        step: &'static str,
        error: Box<StoreError>,
    },
    #[error("{0}")]
    Other(String),
}

/// A place where image vectors are stored and searched.
#[async_trait]
pub trait VectorStore: Send + Sync {
    /// One line for the user: which backend, where, which index.
    fn describe(&self) -> String;

    /// Creates the index if missing; if present, checks that its mapping is compatible with `spec`
    /// (vector field type, dims, similarity, index type) and fails with [`StoreError::Incompatible`]
    /// naming each difference.
    async fn ensure_index(&self, spec: &IndexSpec) -> Result<EnsureOutcome, StoreError>;

    /// Deletes the index if present, then creates it.
    async fn recreate_index(&self, spec: &IndexSpec) -> Result<(), StoreError>;

    /// Vector dims of the existing index; `Err(IndexMissing)` if there is none.
    async fn index_dims(&self) -> Result<usize, StoreError>;

    /// The model the index remembers (see [`ModelRecord`]); `None` for an index made before
    /// imgvec recorded one. `Err(IndexMissing)` if there is no index.
    async fn index_model(&self) -> Result<Option<ModelRecord>, StoreError> {
        self.index_dims().await.map(|_| None)
    }

    /// Records `model` in an existing index that has none yet, or, where the index records the
    /// same model, adds `model`'s precisions the record lacks; returns the record in force
    /// afterwards (another model's, if someone recorded one first).
    async fn adopt_model(&self, model: &ModelRecord) -> Result<ModelRecord, StoreError> {
        let _ = model;
        Err(StoreError::Other(format!(
            "{}: recording the model is not supported",
            self.describe()
        )))
    }

    /// Which of `ids` are already stored (asked in batches, whatever the number of ids).
    async fn existing_ids(&self, ids: &[String]) -> Result<HashSet<String>, StoreError>;

    /// Writes documents that are not there yet (an existing id keeps its vector and label, gains
    /// the document's paths, and is reported as already present), or overwrites them when
    /// `overwrite` is true (keeping the paths the document had, plus the new ones). Transient failures are
    /// retried inside; what still fails is reported per item, not as an `Err`. `Err` means the whole
    /// call could not be carried out (server unreachable after retries, auth refused, ...).
    async fn upsert(&self, docs: &[ImageDoc], overwrite: bool) -> Result<UpsertReport, StoreError>;

    /// Makes everything written so far visible to search.
    async fn refresh(&self) -> Result<(), StoreError>;

    /// The `k` nearest documents, best first.
    async fn knn(&self, query: &KnnQuery) -> Result<Vec<Hit>, StoreError>;

    /// [`VectorStore::knn`] for each query, answers in order: one after another here; the
    /// backends run them together (the embedded store on every core, Elasticsearch in one
    /// `_msearch` request per chunk).
    async fn knn_batch(&self, queries: &[KnnQuery]) -> Result<Vec<Vec<Hit>>, StoreError> {
        let mut out = Vec::with_capacity(queries.len());
        for q in queries {
            out.push(self.knn(q).await?);
        }
        Ok(out)
    }

    /// Number of documents in the index.
    async fn count(&self) -> Result<u64, StoreError>;

    /// Prepares the index for a large load (Elasticsearch: no replicas, no periodic refresh) and
    /// returns what to put back; `None` where there is nothing to change (the embedded store).
    async fn begin_bulk_load(&self) -> Result<Option<SavedSettings>, StoreError> {
        Ok(None)
    }

    /// Puts back what [`VectorStore::begin_bulk_load`] changed, makes everything visible, and
    /// with `force_merge` starts merging the index into one segment per shard.
    async fn end_bulk_load(
        &self,
        saved: &SavedSettings,
        force_merge: bool,
    ) -> Result<(), StoreError> {
        let _ = (saved, force_merge);
        Ok(())
    }

    /// Checks the existing index as [`VectorStore::ensure_index`] does (an error for what keeps it
    /// from working) and says how its vectors are indexed, with warnings for what differs from what
    /// `create-index` makes. The default: an index this store made itself (int8 HNSW graph).
    async fn check_index(&self, spec: &IndexSpec) -> Result<IndexCheck, StoreError> {
        let _ = spec;
        Ok(IndexCheck {
            vector_index: "int8_hnsw".into(),
            warnings: Vec::new(),
        })
    }

    /// Every label in the index with its number of documents, most documents first (ties by label).
    async fn labels(&self) -> Result<Vec<LabelCount>, StoreError> {
        Err(StoreError::Other(format!(
            "{}: labels are not supported yet",
            self.describe()
        )))
    }

    /// The documents with these ids, vectors included, in the order asked; ids not in the index are
    /// left out.
    async fn get(&self, ids: &[String]) -> Result<Vec<ImageDoc>, StoreError> {
        let _ = ids;
        Err(StoreError::Other(format!(
            "{}: get is not supported yet",
            self.describe()
        )))
    }

    /// Reads every document, vectors included, in id order, `page_size` at a time, starting after the
    /// id `after` (for resuming). Elasticsearch: a point-in-time with `search_after`.
    async fn scan(
        &self,
        page_size: usize,
        after: Option<String>,
    ) -> Result<Box<dyn DocScan>, StoreError> {
        let _ = (page_size, after);
        Err(StoreError::Other(format!(
            "{}: scan is not supported yet",
            self.describe()
        )))
    }

    /// The exact `k` nearest documents by the stored float vectors (brute force, no ANN graph):
    /// the reference that `knn`'s recall is measured against. Same scores as `knn`.
    async fn exact_knn(&self, query: &KnnQuery) -> Result<Vec<Hit>, StoreError> {
        let _ = query;
        Err(StoreError::Other(format!(
            "{}: exact search is not supported yet",
            self.describe()
        )))
    }

    /// Every document whose `path` starts with one of `prefixes` (plain string prefixes: the caller
    /// decides what is really under a folder), without vectors, each once, in no particular order.
    async fn files_under(&self, prefixes: &[String]) -> Result<Vec<DocFile>, StoreError> {
        let _ = prefixes;
        Err(StoreError::Other(format!(
            "{}: listing files is not supported yet",
            self.describe()
        )))
    }

    /// Deletes the documents with these ids; returns how many were there.
    async fn delete(&self, ids: &[String]) -> Result<u64, StoreError> {
        let _ = ids;
        Err(StoreError::Other(format!(
            "{}: delete is not supported yet",
            self.describe()
        )))
    }

    /// Records that each document's content was also seen at this path (a path it has already is
    /// left as it is). Returns the ids that are not in the index (nothing recorded for them).
    async fn add_paths(&self, paths: &[DocPath]) -> Result<Vec<String>, StoreError> {
        let _ = paths;
        Err(StoreError::Other(format!(
            "{}: adding paths is not supported yet",
            self.describe()
        )))
    }

    /// Takes each path off its document, and deletes a document whose last path went.
    async fn remove_paths(&self, paths: &[DocPath]) -> Result<PathsRemoved, StoreError> {
        let _ = paths;
        Err(StoreError::Other(format!(
            "{}: removing paths is not supported yet",
            self.describe()
        )))
    }
}

/// A label and how many documents carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelCount {
    pub label: String,
    pub count: u64,
}

/// A read of every document, a page at a time (see [`VectorStore::scan`]).
#[async_trait]
pub trait DocScan: Send {
    /// The next page, in id order; empty when done.
    async fn next_page(&mut self) -> Result<Vec<ImageDoc>, StoreError>;
    /// Releases what the scan holds on the server (Elasticsearch's point-in-time).
    async fn close(self: Box<Self>) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_and_distance_are_inverse() {
        for d in [0.0f32, 0.1, 0.5, 1.0, 1.414, 2.0] {
            let s = distance_to_score(d);
            assert!((score_to_distance(s) - d).abs() < 1e-5, "d={d} s={s}");
        }
        assert_eq!(distance_to_score(0.0), 1.0);
        assert!((distance_to_score(1.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn the_cut_off_keeps_hits_up_to_the_distance() {
        let hit = |id: &str, d: f32| Hit {
            id: id.into(),
            score: distance_to_score(d),
            label: String::new(),
            path: String::new(),
            other_paths: Vec::new(),
        };
        let hits = vec![
            hit("a", 0.0),
            hit("b", 0.2),
            hit("c", 0.2001),
            hit("d", 1.0),
        ];
        let ids = |h: Vec<Hit>| h.into_iter().map(|h| h.id).collect::<Vec<_>>();
        assert_eq!(ids(within(hits.clone(), Some(0.2))), ["a", "b"]);
        assert_eq!(ids(within(hits.clone(), None)).len(), 4);
        assert!(within(hits, Some(0.0)).len() == 1);
    }

    #[test]
    fn a_model_is_the_same_by_its_weights_else_by_its_name() {
        let a = ModelRecord {
            name: "clip-vit-large-patch14".into(),
            family: "clip".into(),
            dims: 768,
            fingerprint: Some("0123456789abcdef".into()),
            precisions: vec!["f32".into()],
        };
        let moved = ModelRecord {
            name: "my-copy".into(),
            ..a.clone()
        };
        assert!(a.same_model(&moved), "same weights elsewhere");
        let retrained = ModelRecord {
            fingerprint: Some("ffff".into()),
            ..a.clone()
        };
        assert!(!a.same_model(&retrained), "same name, other weights");
        let unknown = ModelRecord {
            fingerprint: None,
            ..a.clone()
        };
        assert!(a.same_model(&unknown) && !moved.same_model(&unknown));
        let chinese = ModelRecord {
            family: "chinese_clip".into(),
            ..a.clone()
        };
        assert!(!a.same_model(&chinese));
        let int8 = ModelRecord {
            precisions: vec!["int8".into()],
            ..a.clone()
        };
        assert!(a.same_model(&int8), "another precision is the same model");
        assert_eq!(a.describe(), int8.describe());
        assert_eq!(
            a.describe(),
            "clip-vit-large-patch14 (clip, 768-d, weights 0123456789ab)"
        );
        let odd = ModelRecord {
            fingerprint: Some("é".repeat(20)),
            ..a.clone()
        };
        assert!(odd
            .describe()
            .ends_with(&format!("weights {})", "é".repeat(12))));
    }

    #[test]
    fn precisions_are_merged_in_the_order_first_written() {
        let record = |p: &[&str]| ModelRecord {
            name: "m".into(),
            family: "clip".into(),
            dims: 4,
            fingerprint: None,
            precisions: p.iter().map(|s| s.to_string()).collect(),
        };
        let f32 = record(&["f32"]);
        assert_eq!(f32.new_precisions(&record(&["f32"])), Vec::<&str>::new());
        assert_eq!(f32.new_precisions(&record(&["int8"])), ["int8"]);
        let mixed = f32.with_precisions_of(&record(&["int8"]));
        assert_eq!(mixed.precisions, ["f32", "int8"]);
        assert_eq!(mixed.with_precisions_of(&record(&["f32"])), mixed);
        assert_eq!(mixed.describe_precisions(), "f32+int8");
        assert_eq!(record(&[]).describe_precisions(), "not recorded");
        // An index filled before precisions were recorded: its JSON has none, and says so.
        let old: ModelRecord =
            serde_json::from_str(r#"{"name":"m","family":"clip","dims":4}"#).unwrap();
        assert!(old.precisions.is_empty());
        assert!(!serde_json::to_string(&old).unwrap().contains("precisions"));
    }
}
