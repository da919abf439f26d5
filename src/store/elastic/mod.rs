//! Elasticsearch backend of [`VectorStore`]: keeps image vectors in one Elasticsearch index and
//! answers kNN queries with Elasticsearch's documented REST API (8.12+ and 9.x).
//!
//! What it is for: [`ElasticStore`] and its [`VectorStore`] methods, each a few lines that hand the
//! work to the module doing that job — `connection` (settings, client, TLS, sending with retries),
//! `errors` (what a refusal means for the user), `mapping` (creating and checking the index),
//! `bulk` (writing documents), `query` (kNN search, which ids exist), `exact` (exact kNN by
//! `script_score`), `scan` (every document back, vectors included), `browse` (labels, documents by id
//! with their vectors), `delete` (deleting documents, listing them by path). Every request is plain
//! JSON over [`Elasticsearch::send`], so the bodies read exactly like the REST API reference.
//!
//! What it is not for: reading credentials (the CLI takes them from the environment and passes them
//! in [`ElasticConfig`]), computing vectors, or knowing anything about files and models. Field names
//! (`name`, `path`, `IFV`) are those of the original Python pipeline, so indices stay interchangeable.

mod browse;
mod bulk;
mod compat;
mod connection;
mod delete;
mod errors;
mod exact;
mod fields;
mod load;
mod mapping;
mod paths;
mod query;
mod scan;
mod server;
#[cfg(test)]
mod test_support;
mod throttle;
mod transport_errors;

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8};

use async_trait::async_trait;
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::Value;

use super::{
    DocFile, DocPath, DocScan, EnsureOutcome, Hit, ImageDoc, IndexCheck, IndexSpec, KnnQuery,
    LabelCount, ModelRecord, PathsRemoved, SavedSettings, StoreError, UpsertReport, VectorStore,
};
pub use browse::parse_doc;
pub use bulk::{bulk_lines, classify_bulk_item, doc_source, BulkItemOutcome};
pub use compat::{check_mapping, mapping_differences, MappingCheck};
pub use connection::{
    backoff_delay, cloud_id_url, sends_credentials_in_clear, ElasticConfig,
    DEFAULT_BULK_CONCURRENCY, DEFAULT_BULK_MAX_BYTES, DEFAULT_BULK_MAX_DOCS, DEFAULT_MAX_RETRIES,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_BASE, RETRY_CAP,
};
use connection::{check_index_name, Connection, Reply};
use errors::{error_for, unexpected, Op};
pub use exact::{exact_knn_body, labels_body, parse_labels, EXACT_L2_NORM_SCRIPT, MAX_LABELS};
pub use load::LOAD_SETTINGS;
pub use mapping::{
    index_body, vector_dims, LABEL_FIELD, MAPPING_TEMPLATE, MTIME_FIELD, PATH_FIELD, SIMILARITY,
    VECTOR_FIELD, VECTOR_INDEX_TYPE,
};
pub use query::{
    knn_body, parse_hits, ExactScores, IDS_PER_REQUEST, L2_SCORE_SCRIPT, MAX_NUM_CANDIDATES,
    OVERSAMPLE,
};
pub use scan::source_excludes_vectors;
pub use server::ServerInfo;

/// An Elasticsearch index seen as a [`VectorStore`].
pub struct ElasticStore {
    conn: Connection,
    index: String,
    bulk_max_docs: usize,
    bulk_max_bytes: usize,
    /// Whether the index was seen to exist (and not deleted since): `upsert` then skips asking.
    index_seen: AtomicBool,
    /// What `GET /` said, asked once (see `server`).
    server: tokio::sync::OnceCell<ServerInfo>,
    /// The gate of every `_bulk` request (see `throttle`).
    throttle: throttle::Throttle,
    /// Whether the index's mapping takes the `mtime` field (indices made before it existed, with
    /// `dynamic: strict`, do not): [`MTIME_UNKNOWN`], [`MTIME_MAPPED`] or [`MTIME_UNMAPPED`].
    mtime_mapping: AtomicU8,
}

const MTIME_UNKNOWN: u8 = 0;
const MTIME_MAPPED: u8 = 1;
const MTIME_UNMAPPED: u8 = 2;

impl fmt::Debug for ElasticStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticStore")
            .field("url", &self.conn.url())
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl ElasticStore {
    /// Builds the client; sends nothing yet (the first call shows whether the server answers).
    pub fn connect(cfg: ElasticConfig) -> Result<ElasticStore, StoreError> {
        check_index_name(&cfg.index)?;
        Ok(ElasticStore {
            conn: Connection::open(&cfg)?,
            index: cfg.index,
            bulk_max_docs: cfg.bulk_max_docs.max(1),
            bulk_max_bytes: cfg.bulk_max_bytes.max(1),
            index_seen: AtomicBool::new(false),
            server: tokio::sync::OnceCell::new(),
            throttle: throttle::Throttle::new(cfg.bulk_concurrency),
            mtime_mapping: AtomicU8::new(MTIME_UNKNOWN),
        })
    }

    /// The underlying client, for requests this module does not make.
    pub fn client(&self) -> &Elasticsearch {
        self.conn.client()
    }

    /// The index (or alias) name.
    pub fn index(&self) -> &str {
        &self.index
    }

    /// The server URL, without user info.
    pub fn url(&self) -> &str {
        self.conn.url()
    }

    /// Sends `method /index/endpoint` (`/index` when `endpoint` is empty), with retries.
    async fn send(
        &self,
        method: Method,
        endpoint: &str,
        query: Option<&[(&str, &str)]>,
        body: Option<&str>,
    ) -> Result<Reply, StoreError> {
        let path = if endpoint.is_empty() {
            format!("/{}", self.index)
        } else {
            format!("/{}/{}", self.index, endpoint)
        };
        self.conn.request(method, &path, query, body).await
    }

    /// The error for a reply to `op` whose status is not a success.
    fn error_for(&self, op: Op, reply: &Reply) -> StoreError {
        error_for(&self.conn, &self.index, op, reply)
    }

    fn index_missing(&self) -> StoreError {
        StoreError::IndexMissing {
            index: self.index.clone(),
        }
    }

    /// A request whose answer has no body worth reading: success or the error for `op`.
    async fn send_expecting_success(
        &self,
        op: Op,
        method: Method,
        endpoint: &str,
    ) -> Result<Value, StoreError> {
        let reply = self.send(method, endpoint, None, None).await?;
        if reply.status.is_success() {
            Ok(reply.body)
        } else {
            Err(self.error_for(op, &reply))
        }
    }
}

#[async_trait]
impl VectorStore for ElasticStore {
    fn describe(&self) -> String {
        format!("Elasticsearch at {}, index '{}'", self.url(), self.index)
    }

    async fn ensure_index(&self, spec: &IndexSpec) -> Result<EnsureOutcome, StoreError> {
        if !self.index_exists().await? && self.create_index(spec).await? {
            return Ok(EnsureOutcome::Created);
        }
        // There already, or created by someone else between our HEAD and PUT.
        self.check_compatible(spec).await?;
        Ok(EnsureOutcome::AlreadyExists)
    }

    async fn begin_bulk_load(&self) -> Result<Option<SavedSettings>, StoreError> {
        self.begin_load().await.map(Some)
    }

    async fn end_bulk_load(
        &self,
        saved: &SavedSettings,
        force_merge: bool,
    ) -> Result<(), StoreError> {
        self.end_load(saved, force_merge).await
    }

    async fn check_index(&self, spec: &IndexSpec) -> Result<IndexCheck, StoreError> {
        let (warnings, vector_index) = self.check_compatible(spec).await?;
        Ok(IndexCheck {
            vector_index: vector_index.unwrap_or_else(|| "the server's default".into()),
            warnings,
        })
    }

    async fn recreate_index(&self, spec: &IndexSpec) -> Result<(), StoreError> {
        self.delete_index().await?;
        if self.create_index(spec).await? {
            Ok(())
        } else {
            Err(StoreError::Other(format!(
                "index '{}' was created again by someone else right after it was deleted",
                self.index
            )))
        }
    }

    async fn index_dims(&self) -> Result<usize, StoreError> {
        self.shared_vector_dims().await
    }

    async fn index_model(&self) -> Result<Option<ModelRecord>, StoreError> {
        self.recorded_model().await
    }

    async fn adopt_model(&self, model: &ModelRecord) -> Result<ModelRecord, StoreError> {
        self.record_model(model).await
    }

    async fn existing_ids(&self, ids: &[String]) -> Result<HashSet<String>, StoreError> {
        self.found_ids(ids).await
    }

    async fn upsert(&self, docs: &[ImageDoc], overwrite: bool) -> Result<UpsertReport, StoreError> {
        self.bulk_write(docs, overwrite).await
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        self.send_expecting_success(Op::Refresh, Method::Post, "_refresh")
            .await
            .map(drop)
    }

    async fn knn(&self, query: &KnnQuery) -> Result<Vec<Hit>, StoreError> {
        self.search(query).await
    }

    async fn knn_batch(&self, queries: &[KnnQuery]) -> Result<Vec<Vec<Hit>>, StoreError> {
        self.msearch(queries).await
    }

    async fn add_paths(&self, paths: &[DocPath]) -> Result<Vec<String>, StoreError> {
        self.add_doc_paths(paths).await
    }

    async fn remove_paths(&self, paths: &[DocPath]) -> Result<PathsRemoved, StoreError> {
        self.remove_doc_paths(paths).await
    }

    async fn files_under(&self, prefixes: &[String]) -> Result<Vec<DocFile>, StoreError> {
        self.list_files(prefixes).await
    }

    async fn delete(&self, ids: &[String]) -> Result<u64, StoreError> {
        self.delete_ids(ids).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let body = self
            .send_expecting_success(Op::Count, Method::Get, "_count")
            .await?;
        body.get("count")
            .and_then(Value::as_u64)
            .ok_or_else(|| unexpected(self.url(), "_count", &body))
    }
    async fn labels(&self) -> Result<Vec<LabelCount>, StoreError> {
        self.label_counts().await
    }

    async fn scan(
        &self,
        page_size: usize,
        after: Option<String>,
    ) -> Result<Box<dyn DocScan>, StoreError> {
        Ok(Box::new(self.open_scan(page_size, after).await?))
    }

    async fn exact_knn(&self, query: &KnnQuery) -> Result<Vec<Hit>, StoreError> {
        self.exact_search(query).await
    }

    async fn get(&self, ids: &[String]) -> Result<Vec<ImageDoc>, StoreError> {
        self.docs_by_id(ids).await
    }
}
