//! Elasticsearch backend of [`VectorStore`]: keeps image vectors in one Elasticsearch index and
//! answers kNN queries with Elasticsearch's documented REST API (8.12+ and 9.x).
//!
//! What it is for: creating and checking the index (mapping in `mappings/image-index.json`, vector
//! size from the model's [`IndexSpec`]), writing documents with `_bulk` (bounded in count and bytes,
//! transient failures retried with backoff, each item's outcome reported), asking which ids exist
//! (`_mget`), kNN search with an optional label filter, refresh and count. Every request is plain
//! JSON over [`Elasticsearch::send`], so the bodies read exactly like the REST API reference.
//!
//! What it is not for: reading credentials (the CLI takes them from the environment and passes them
//! in [`ElasticConfig`]), computing vectors, or knowing anything about files and models. Field names
//! (`name`, `path`, `IFV`) are those of the original Python pipeline, so indices stay interchangeable.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, StatusCode, Url};
use elasticsearch::Elasticsearch;
use serde_json::{json, Map, Value};

use super::{
    EnsureOutcome, Hit, ImageDoc, IndexSpec, KnnQuery, StoreError, UpsertReport, VectorStore,
};

/// The index mapping and settings, with `IFV.dims` left out: [`index_body`] fills it in.
pub const MAPPING_TEMPLATE: &str = include_str!("../../mappings/image-index.json");

/// The vector field, named as in the original Python pipeline.
pub const VECTOR_FIELD: &str = "IFV";
/// The label field (`keyword`, so the kNN `term` filter matches it exactly).
pub const LABEL_FIELD: &str = "name";
/// The file path field.
pub const PATH_FIELD: &str = "path";
/// The similarity the scores in [`Hit`] assume (`score = 1 / (1 + d²)`).
pub const SIMILARITY: &str = "l2_norm";
/// The vector index type, set explicitly: ES 9.1+ would otherwise pick `bbq_hnsw` for dims ≥ 384.
pub const VECTOR_INDEX_TYPE: &str = "int8_hnsw";

/// Ids asked per `_mget` request in [`VectorStore::existing_ids`].
pub const IDS_PER_REQUEST: usize = 1_000;
/// Elasticsearch's upper bound for `num_candidates`.
pub const MAX_NUM_CANDIDATES: usize = 10_000;

/// Defaults of [`ElasticConfig::new`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_RETRIES: u32 = 5;
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(500);
pub const DEFAULT_BULK_MAX_DOCS: usize = 500;
pub const DEFAULT_BULK_MAX_BYTES: usize = 5 * 1024 * 1024;
/// No wait between retries is longer than this.
pub const RETRY_CAP: Duration = Duration::from_secs(30);

/// Where the server is and how to talk to it.
#[derive(Clone)]
pub struct ElasticConfig {
    /// Base URL, e.g. `https://localhost:9200`.
    pub url: String,
    /// Index (or alias) name.
    pub index: String,
    /// Basic auth; both or neither. Ignored when `api_key` is set.
    pub username: Option<String>,
    pub password: Option<String>,
    /// API key: the base64 `encoded` value Elasticsearch returns, or `id:api_key`.
    pub api_key: Option<String>,
    /// PEM file of the CA that signed the server's certificate (ES 8 writes `certs/http_ca.crt`).
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate (takes precedence over `ca_cert`). For diagnosis only.
    pub insecure: bool,
    /// Limit for one HTTP request.
    pub request_timeout: Duration,
    /// How many times a transient failure (connection error, 429, 5xx) is retried; 0: never.
    pub max_retries: u32,
    /// First wait before a retry; doubles each time (with jitter), at most [`RETRY_CAP`].
    pub retry_base: Duration,
    /// Most documents in one `_bulk` request.
    pub bulk_max_docs: usize,
    /// Most NDJSON bytes in one `_bulk` request (a larger single document is sent alone).
    pub bulk_max_bytes: usize,
}

impl ElasticConfig {
    /// A config with no credentials, default TLS validation and the default limits above.
    pub fn new(url: impl Into<String>, index: impl Into<String>) -> Self {
        ElasticConfig {
            url: url.into(),
            index: index.into(),
            username: None,
            password: None,
            api_key: None,
            ca_cert: None,
            insecure: false,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_base: DEFAULT_RETRY_BASE,
            bulk_max_docs: DEFAULT_BULK_MAX_DOCS,
            bulk_max_bytes: DEFAULT_BULK_MAX_BYTES,
        }
    }
}

/// Secrets are never printed.
impl fmt::Debug for ElasticConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |o: &Option<String>| o.as_ref().map(|_| "<hidden>");
        f.debug_struct("ElasticConfig")
            .field("url", &redact_url(&self.url))
            .field("index", &self.index)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("api_key", &hidden(&self.api_key))
            .field("ca_cert", &self.ca_cert)
            .field("insecure", &self.insecure)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_base", &self.retry_base)
            .field("bulk_max_docs", &self.bulk_max_docs)
            .field("bulk_max_bytes", &self.bulk_max_bytes)
            .finish()
    }
}

/// An Elasticsearch index seen as a [`VectorStore`].
pub struct ElasticStore {
    client: Elasticsearch,
    /// The URL without user info, for messages.
    url: String,
    index: String,
    max_retries: u32,
    retry_base: Duration,
    bulk_max_docs: usize,
    bulk_max_bytes: usize,
}

impl fmt::Debug for ElasticStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticStore")
            .field("url", &self.url)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl ElasticStore {
    /// Builds the client; sends nothing yet (the first call shows whether the server answers).
    pub fn connect(cfg: ElasticConfig) -> Result<ElasticStore, StoreError> {
        check_index_name(&cfg.index)?;
        let mut url = Url::parse(cfg.url.trim()).map_err(|e| {
            StoreError::Other(format!(
                "invalid Elasticsearch URL '{}': {e}",
                redact_url(&cfg.url)
            ))
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(StoreError::Other(format!(
                "invalid Elasticsearch URL '{}': the scheme must be http or https",
                redact_url(&cfg.url)
            )));
        }
        // Request paths are joined onto the URL: without a trailing slash the last segment of a
        // path prefix (proxy setups) would be replaced.
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let shown_url = redact_url(url.as_str());

        let mut builder =
            TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(cfg.request_timeout);
        if let Some(credentials) = credentials(&cfg)? {
            builder = builder.auth(credentials);
        }
        if cfg.insecure {
            builder = builder.cert_validation(CertificateValidation::None);
        } else if let Some(path) = &cfg.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                StoreError::Tls(format!(
                    "cannot read CA certificate {}: {e}",
                    path.display()
                ))
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                StoreError::Tls(format!(
                    "{} is not a PEM CA certificate: {e}",
                    path.display()
                ))
            })?;
            builder = builder.cert_validation(CertificateValidation::Full(cert));
        }
        let transport = builder.build().map_err(|e| match &cfg.ca_cert {
            Some(path) if !cfg.insecure => {
                StoreError::Tls(format!("cannot use CA certificate {}: {e}", path.display()))
            }
            _ => StoreError::Other(format!("cannot set up the HTTP client: {e}")),
        })?;

        Ok(ElasticStore {
            client: Elasticsearch::new(transport),
            url: shown_url,
            index: cfg.index,
            max_retries: cfg.max_retries,
            retry_base: cfg.retry_base,
            bulk_max_docs: cfg.bulk_max_docs.max(1),
            bulk_max_bytes: cfg.bulk_max_bytes.max(1),
        })
    }

    /// The underlying client, for requests this module does not make.
    pub fn client(&self) -> &Elasticsearch {
        &self.client
    }

    /// The index (or alias) name.
    pub fn index(&self) -> &str {
        &self.index
    }

    /// The server URL, without user info.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `HEAD /index`: whether the index (or alias) exists.
    pub async fn index_exists(&self) -> Result<bool, StoreError> {
        let reply = self
            .request(Method::Head, &self.index_path(""), None, None)
            .await?;
        match reply.status.as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.error_from(&reply)),
        }
    }

    /// `DELETE /index`; `false` when there was none.
    pub async fn delete_index(&self) -> Result<bool, StoreError> {
        let reply = self
            .request(Method::Delete, &self.index_path(""), None, None)
            .await?;
        if reply.status.is_success() {
            return Ok(true);
        }
        match self.error_from(&reply) {
            StoreError::IndexMissing { .. } => Ok(false),
            e => Err(e),
        }
    }

    /// `GET /index/_mapping`: the `mappings` object of each concrete index behind the name.
    pub async fn mappings(&self) -> Result<Vec<(String, Value)>, StoreError> {
        let reply = self
            .request(Method::Get, &self.index_path("_mapping"), None, None)
            .await?;
        if !reply.status.is_success() {
            return Err(self.error_from(&reply));
        }
        let Some(indices) = reply.body.as_object() else {
            return Err(self.unexpected("GET _mapping", &reply.body));
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
            return Err(StoreError::IndexMissing {
                index: self.index.clone(),
            });
        }
        Ok(found)
    }

    /// `PUT /index` with [`index_body`]; `Ok(false)` if it already existed.
    async fn create_index(&self, spec: &IndexSpec) -> Result<bool, StoreError> {
        let body = index_body(spec).to_string();
        let reply = self
            .request(Method::Put, &self.index_path(""), None, Some(&body))
            .await?;
        if reply.status.is_success() {
            return Ok(true);
        }
        if error_type(&reply.body) == Some("resource_already_exists_exception") {
            return Ok(false);
        }
        Err(self.error_from(&reply))
    }

    /// Compares every concrete index behind the name with `spec`.
    async fn check_compatible(&self, spec: &IndexSpec) -> Result<(), StoreError> {
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
            Err(StoreError::Incompatible {
                index: self.index.clone(),
                differences,
            })
        }
    }

    /// Sends one `_bulk` request for `docs[range]`'s serialized lines and retries the items that
    /// failed transiently; records every item's outcome in `report`.
    async fn bulk_chunk(
        &self,
        docs: &[ImageDoc],
        lines: &[String],
        overwrite: bool,
        report: &mut UpsertReport,
    ) -> Result<(), StoreError> {
        // Positions (into `docs`/`lines`) still to send.
        let mut todo: Vec<usize> = (0..docs.len()).collect();
        let mut attempt = 0u32;
        loop {
            let mut body = String::with_capacity(todo.iter().map(|&i| lines[i].len()).sum());
            for &i in &todo {
                body.push_str(&lines[i]);
            }
            let reply = self
                .request(Method::Post, &self.index_path("_bulk"), None, Some(&body))
                .await?;
            if !reply.status.is_success() {
                return Err(self.error_from(&reply));
            }
            let items = match reply.body.get("items").and_then(Value::as_array) {
                Some(items) if items.len() == todo.len() => items,
                _ => return Err(self.unexpected("_bulk", &reply.body)),
            };
            let mut again = Vec::new();
            for (&i, item) in todo.iter().zip(items) {
                let id = docs[i].id.clone();
                match classify_bulk_item(item, overwrite) {
                    BulkItemOutcome::Indexed => report.indexed.push(id),
                    BulkItemOutcome::AlreadyPresent => report.already_present.push(id),
                    BulkItemOutcome::Failed(reason) => {
                        if reason.starts_with("index_not_found_exception") {
                            return Err(StoreError::IndexMissing {
                                index: self.index.clone(),
                            });
                        }
                        report.failed.push((id, reason))
                    }
                    BulkItemOutcome::Transient(reason) => again.push((i, reason)),
                }
            }
            if again.is_empty() {
                return Ok(());
            }
            attempt += 1;
            if attempt > self.max_retries {
                for (i, reason) in again {
                    report.failed.push((
                        docs[i].id.clone(),
                        format!(
                            "{reason} (still failing after {} retries)",
                            self.max_retries
                        ),
                    ));
                }
                return Ok(());
            }
            tokio::time::sleep(backoff_delay(self.retry_base, attempt, jitter_unit())).await;
            todo = again.into_iter().map(|(i, _)| i).collect();
        }
    }

    fn index_path(&self, endpoint: &str) -> String {
        if endpoint.is_empty() {
            format!("/{}", self.index)
        } else {
            format!("/{}/{}", self.index, endpoint)
        }
    }

    /// Sends one request, retrying connection errors, timeouts, 429 and 5xx with backoff.
    /// Any other status is returned for the caller to interpret; a server still answering 429/5xx
    /// after the retries is returned as it answered; no answer at all is [`StoreError::Unreachable`].
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: Option<&[(&str, &str)]>,
        body: Option<&str>,
    ) -> Result<Reply, StoreError> {
        let mut headers = HeaderMap::new();
        if path.ends_with("/_bulk") {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
        }
        let mut attempt = 0u32;
        loop {
            let outcome = match self
                .client
                .send(method, path, headers.clone(), query, body, None)
                .await
            {
                Ok(response) => {
                    let status = response.status_code();
                    match response.bytes().await {
                        Ok(bytes) => Ok(Reply {
                            status,
                            body: parse_body(&bytes),
                        }),
                        Err(e) => Err(error_chain(&e)),
                    }
                }
                Err(e) => Err(error_chain(&e)),
            };
            let transient = match &outcome {
                Ok(reply) => is_transient_status(reply.status.as_u16()),
                Err(_) => true,
            };
            if !transient || attempt >= self.max_retries {
                return outcome.map_err(|detail| StoreError::Unreachable {
                    url: self.url.clone(),
                    detail: if attempt > 0 {
                        format!("{detail} (after {attempt} retries)")
                    } else {
                        detail
                    },
                });
            }
            attempt += 1;
            tokio::time::sleep(backoff_delay(self.retry_base, attempt, jitter_unit())).await;
        }
    }

    /// The error for a reply whose status is not a success.
    fn error_from(&self, reply: &Reply) -> StoreError {
        let status = reply.status.as_u16();
        match status {
            401 | 403 => StoreError::Auth {
                url: self.url.clone(),
                detail: if reply.body.is_null() {
                    format!("HTTP {status}")
                } else {
                    error_summary(&reply.body)
                },
            },
            404 if reply.body.is_null()
                || error_type(&reply.body) == Some("index_not_found_exception") =>
            {
                StoreError::IndexMissing {
                    index: self.index.clone(),
                }
            }
            _ => StoreError::Server {
                status,
                body: error_summary(&reply.body),
            },
        }
    }

    fn unexpected(&self, what: &str, body: &Value) -> StoreError {
        StoreError::Other(format!(
            "unexpected answer to {what} from {}: {}",
            self.url,
            truncate(&body.to_string(), 500)
        ))
    }
}

#[async_trait]
impl VectorStore for ElasticStore {
    fn describe(&self) -> String {
        format!("Elasticsearch at {}, index '{}'", self.url, self.index)
    }

    async fn ensure_index(&self, spec: &IndexSpec) -> Result<EnsureOutcome, StoreError> {
        if !self.index_exists().await? && self.create_index(spec).await? {
            return Ok(EnsureOutcome::Created);
        }
        // There already, or created by someone else between our HEAD and PUT.
        self.check_compatible(spec).await?;
        Ok(EnsureOutcome::AlreadyExists)
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
        let mappings = self.mappings().await?;
        let mut dims = None;
        for (name, mapping) in &mappings {
            match (vector_dims(mapping), dims) {
                (None, _) => {
                    return Err(StoreError::Incompatible {
                        index: self.index.clone(),
                        differences: vec![format!(
                            "{name}: no dense_vector field '{VECTOR_FIELD}' with dims"
                        )],
                    })
                }
                (Some(d), Some(prev)) if d != prev => {
                    return Err(StoreError::Incompatible {
                        index: self.index.clone(),
                        differences: vec![format!(
                            "the indices behind '{}' hold {prev}-d and {d}-d vectors",
                            self.index
                        )],
                    })
                }
                (Some(d), _) => dims = Some(d),
            }
        }
        dims.ok_or_else(|| StoreError::IndexMissing {
            index: self.index.clone(),
        })
    }

    /// Uses `_mget` with `_source=false`: it is real-time (sees documents written but not yet
    /// refreshed, so a re-run right after a crash skips them), returns exactly one answer per id
    /// with `found`, and is not bounded by `index.max_result_window` as a search would be.
    async fn existing_ids(&self, ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut found = HashSet::new();
        let mut asked = HashSet::new();
        let unique: Vec<&String> = ids.iter().filter(|id| asked.insert(*id)).collect();
        for batch in unique.chunks(IDS_PER_REQUEST) {
            let body = json!({ "ids": batch }).to_string();
            let reply = self
                .request(
                    Method::Post,
                    &self.index_path("_mget"),
                    Some(&[("_source", "false")]),
                    Some(&body),
                )
                .await?;
            if !reply.status.is_success() {
                return Err(self.error_from(&reply));
            }
            let Some(docs) = reply.body.get("docs").and_then(Value::as_array) else {
                return Err(self.unexpected("_mget", &reply.body));
            };
            for doc in docs {
                if let Some(error) = doc.get("error") {
                    if error.get("type").and_then(Value::as_str)
                        == Some("index_not_found_exception")
                    {
                        return Err(StoreError::IndexMissing {
                            index: self.index.clone(),
                        });
                    }
                    return Err(StoreError::Server {
                        status: 200,
                        body: format!("_mget: {}", error_summary(&json!({ "error": error }))),
                    });
                }
                if doc.get("found").and_then(Value::as_bool) == Some(true) {
                    if let Some(id) = doc.get("_id").and_then(Value::as_str) {
                        found.insert(id.to_string());
                    }
                }
            }
        }
        Ok(found)
    }

    async fn upsert(&self, docs: &[ImageDoc], overwrite: bool) -> Result<UpsertReport, StoreError> {
        let mut report = UpsertReport::default();
        if docs.is_empty() {
            return Ok(report);
        }
        // `_bulk` would auto-create a missing index with a dynamic mapping: refuse instead.
        if !self.index_exists().await? {
            return Err(StoreError::IndexMissing {
                index: self.index.clone(),
            });
        }
        let mut start = 0;
        while start < docs.len() {
            // Serialize lazily, one request's worth at a time.
            let mut lines = Vec::new();
            let mut bytes = 0usize;
            let mut end = start;
            while end < docs.len() && lines.len() < self.bulk_max_docs {
                let line = bulk_lines(&docs[end], overwrite);
                if !lines.is_empty() && bytes + line.len() > self.bulk_max_bytes {
                    break;
                }
                bytes += line.len();
                lines.push(line);
                end += 1;
            }
            self.bulk_chunk(&docs[start..end], &lines, overwrite, &mut report)
                .await?;
            start = end;
        }
        Ok(report)
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        let reply = self
            .request(Method::Post, &self.index_path("_refresh"), None, None)
            .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(self.error_from(&reply))
        }
    }

    async fn knn(&self, query: &KnnQuery) -> Result<Vec<Hit>, StoreError> {
        if query.k == 0 {
            return Ok(Vec::new());
        }
        let body = knn_body(query).to_string();
        let reply = self
            .request(Method::Post, &self.index_path("_search"), None, Some(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(self.error_from(&reply));
        }
        parse_hits(&reply.body).map_err(|e| {
            StoreError::Other(format!("unexpected search answer from {}: {e}", self.url))
        })
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let reply = self
            .request(Method::Get, &self.index_path("_count"), None, None)
            .await?;
        if !reply.status.is_success() {
            return Err(self.error_from(&reply));
        }
        reply
            .body
            .get("count")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.unexpected("_count", &reply.body))
    }
}

/// One answered request: the status and the body as JSON (`Null` when empty, a string when not JSON).
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Value,
}

fn parse_body(bytes: &[u8]) -> Value {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
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
    let str_at = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);

    match props.get(VECTOR_FIELD) {
        None => out.push(format!(
            "{VECTOR_FIELD}: index has no such field, model makes {}-d vectors",
            spec.dims
        )),
        Some(field) => {
            let ty = str_at(field, "type").unwrap_or_else(|| "object".into());
            if ty != "dense_vector" {
                out.push(format!(
                    "{VECTOR_FIELD} type: index has {ty}, expected dense_vector"
                ));
            } else {
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
        }
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

/// The fields [`ElasticStore::upsert`] writes.
fn written_fields() -> [&'static str; 9] {
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

/// The `_source` stored for a document.
pub fn doc_source(doc: &ImageDoc) -> Value {
    json!({
        LABEL_FIELD: doc.label,
        PATH_FIELD: doc.path,
        VECTOR_FIELD: doc.vector,
        "sha256": doc.id,
        "bytes": doc.bytes,
        "width": doc.width,
        "height": doc.height,
        "model": doc.model,
        "indexed_at": doc.indexed_at_ms,
    })
}

/// A document's two `_bulk` lines (action, source), each ending in a newline. `create` leaves an
/// existing document untouched (409); `index` overwrites it.
pub fn bulk_lines(doc: &ImageDoc, overwrite: bool) -> String {
    let op = if overwrite { "index" } else { "create" };
    let mut out = json!({ op: { "_id": doc.id } }).to_string();
    out.push('\n');
    out.push_str(&doc_source(doc).to_string());
    out.push('\n');
    out
}

/// What one `_bulk` response item means for the document it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkItemOutcome {
    Indexed,
    AlreadyPresent,
    /// 429 or 5xx: worth sending again.
    Transient(String),
    /// Refused for good, with the server's reason.
    Failed(String),
}

/// Reads one item of a `_bulk` response (`{"create": {"_id", "status", "error"?, ...}}`).
pub fn classify_bulk_item(item: &Value, overwrite: bool) -> BulkItemOutcome {
    let inner = item
        .as_object()
        .and_then(|o| o.values().next())
        .unwrap_or(&Value::Null);
    let Some(status) = inner.get("status").and_then(Value::as_u64) else {
        return BulkItemOutcome::Failed(format!(
            "no status in bulk item: {}",
            truncate(&item.to_string(), 300)
        ));
    };
    let reason = || match inner.get("error") {
        Some(error) => error_summary(&json!({ "error": error })),
        None => format!("HTTP {status}"),
    };
    match status {
        200..=299 => BulkItemOutcome::Indexed,
        409 if !overwrite => BulkItemOutcome::AlreadyPresent,
        s if is_transient_status(s as u16) => BulkItemOutcome::Transient(reason()),
        _ => BulkItemOutcome::Failed(reason()),
    }
}

/// The search body for `query`: Elasticsearch's top-level `knn` option, the label filter inside it
/// (so it selects before the nearest are picked, not after).
pub fn knn_body(query: &KnnQuery) -> Value {
    let k = query.k.max(1);
    let num_candidates = query.num_candidates.clamp(k, MAX_NUM_CANDIDATES.max(k));
    let mut knn = json!({
        "field": VECTOR_FIELD,
        "query_vector": query.vector,
        "k": k,
        "num_candidates": num_candidates,
    });
    if let Some(label) = &query.label {
        knn["filter"] = json!({ "term": { LABEL_FIELD: label } });
    }
    json!({
        "knn": knn,
        "size": k,
        "_source": [LABEL_FIELD, PATH_FIELD],
    })
}

/// Reads `hits.hits` of a search response into [`Hit`]s, in the server's order (best first).
pub fn parse_hits(body: &Value) -> Result<Vec<Hit>, String> {
    let hits = body
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("no hits.hits in {}", truncate(&body.to_string(), 300)))?;
    hits.iter()
        .map(|h| {
            let id = h
                .get("_id")
                .and_then(Value::as_str)
                .ok_or_else(|| "a hit without _id".to_string())?;
            let score = h
                .get("_score")
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("hit {id} has no _score"))?;
            let field = |name: &str| {
                h.get("_source")
                    .and_then(|s| s.get(name))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            Ok(Hit {
                id: id.to_string(),
                score: score as f32,
                label: field(LABEL_FIELD),
                path: field(PATH_FIELD),
            })
        })
        .collect()
}

/// Wait before retry number `attempt` (1-based): `base · 2^(attempt-1)`, at most [`RETRY_CAP`],
/// of which the upper half is scaled by `unit` ∈ [0, 1] ("equal jitter").
pub fn backoff_delay(base: Duration, attempt: u32, unit: f64) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    let full = base.saturating_mul(factor).min(RETRY_CAP);
    let half = full / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

/// A number in [0, 1] that differs between calls and processes (no RNG crate needed for jitter).
fn jitter_unit() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    hasher.finish() as f64 / u64::MAX as f64
}

/// 429 (too many requests) and 5xx other than 501 are worth retrying.
fn is_transient_status(status: u16) -> bool {
    status == 429 || (status >= 500 && status != 501)
}

/// `error.type` of an Elasticsearch error body.
fn error_type(body: &Value) -> Option<&str> {
    body.get("error")?.get("type")?.as_str()
}

/// A short line for an Elasticsearch error body: `type: reason`, plus the root cause when it says
/// more (e.g. under `search_phase_execution_exception: all shards failed`).
fn error_summary(body: &Value) -> String {
    let Some(error) = body.get("error") else {
        return truncate(
            &match body {
                Value::String(s) => s.clone(),
                Value::Null => "no body".into(),
                other => other.to_string(),
            },
            1000,
        );
    };
    if let Some(s) = error.as_str() {
        return truncate(s, 1000);
    }
    let ty = error.get("type").and_then(Value::as_str).unwrap_or("error");
    let reason = error.get("reason").and_then(Value::as_str).unwrap_or("");
    let mut out = format!("{ty}: {reason}");
    let deeper = error
        .pointer("/root_cause/0")
        .or_else(|| error.get("caused_by"));
    if let Some(cause) = deeper {
        let creason = cause.get("reason").and_then(Value::as_str).unwrap_or("");
        if !creason.is_empty() && !reason.contains(creason) {
            let ctype = cause.get("type").and_then(Value::as_str).unwrap_or("error");
            out.push_str(&format!(" ({ctype}: {creason})"));
        }
    }
    truncate(&out, 1000)
}

/// An error and all its sources on one line (reqwest's "error sending request" alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The URL with any `user:password@` removed, for messages.
fn redact_url(url: &str) -> String {
    match Url::parse(url.trim()) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                // Both only fail for URLs that cannot have user info, which these have.
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

/// Elasticsearch's rules for index names, checked before the name goes into a URL path.
fn check_index_name(index: &str) -> Result<(), StoreError> {
    let bad = |why: &str| {
        Err(StoreError::Other(format!(
            "invalid index name '{index}': {why}"
        )))
    };
    if index.is_empty() {
        return bad("it is empty");
    }
    if index.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    if index == "." || index == ".." {
        return bad("it cannot be . or ..");
    }
    if index.starts_with(['-', '_', '+']) {
        return bad("it cannot start with -, _ or +");
    }
    if index.chars().any(|c| c.is_uppercase()) {
        return bad("it must be lower case");
    }
    if let Some(c) = index.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':' | '%'
        ) || c.is_control()
    }) {
        return bad(&format!("it cannot contain '{c}'"));
    }
    Ok(())
}

/// The credentials to send, from the config (an API key wins over username/password).
fn credentials(cfg: &ElasticConfig) -> Result<Option<Credentials>, StoreError> {
    if let Some(key) = cfg.api_key.as_deref().map(str::trim) {
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(StoreError::Other(
                "the API key is empty or holds characters an HTTP header cannot carry".into(),
            ));
        }
        return Ok(Some(match key.split_once(':') {
            Some((id, secret)) => Credentials::ApiKey(id.to_string(), secret.to_string()),
            None => Credentials::EncodedApiKey(key.to_string()),
        }));
    }
    match (&cfg.username, &cfg.password) {
        (Some(user), Some(password)) => {
            Ok(Some(Credentials::Basic(user.clone(), password.clone())))
        }
        (None, None) => Ok(None),
        (Some(_), None) => Err(StoreError::Other(
            "a username was given without a password".into(),
        )),
        (None, Some(_)) => Err(StoreError::Other(
            "a password was given without a username".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dims: usize) -> IndexSpec {
        IndexSpec {
            dims,
            hnsw_m: None,
            hnsw_ef_construction: None,
        }
    }

    fn doc(id: &str, dims: usize) -> ImageDoc {
        ImageDoc {
            id: id.into(),
            label: "cat".into(),
            path: "/data/cat \"1\".jpg".into(),
            vector: vec![0.5; dims],
            bytes: 1234,
            width: 640,
            height: 480,
            model: "clip-vit-large-patch14".into(),
            indexed_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn index_body_is_the_template_plus_spec() {
        let body = index_body(&spec(768));
        let ifv = &body["mappings"]["properties"]["IFV"];
        assert_eq!(ifv["type"], "dense_vector");
        assert_eq!(ifv["dims"], 768);
        assert_eq!(ifv["index"], true);
        assert_eq!(ifv["similarity"], "l2_norm");
        assert_eq!(ifv["index_options"], json!({ "type": "int8_hnsw" }));
        let props = &body["mappings"]["properties"];
        for (field, ty) in [
            ("name", "keyword"),
            ("path", "keyword"),
            ("sha256", "keyword"),
            ("bytes", "long"),
            ("width", "integer"),
            ("height", "integer"),
            ("model", "keyword"),
            ("indexed_at", "date"),
        ] {
            assert_eq!(props[field]["type"], ty, "{field}");
        }
        assert_eq!(props["indexed_at"]["format"], "epoch_millis");
        assert_eq!(body["settings"]["index"]["number_of_shards"], 1);
        // What the store writes is exactly what the mapping declares.
        let mut declared: Vec<&str> = props
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        declared.sort_unstable();
        let mut written = written_fields().to_vec();
        written.sort_unstable();
        assert_eq!(declared, written);
        // A freshly made mapping is compatible with its own spec.
        assert!(mapping_differences(&body["mappings"], &spec(768)).is_empty());
    }

    #[test]
    fn index_body_sets_hnsw_parameters_when_given() {
        let body = index_body(&IndexSpec {
            dims: 512,
            hnsw_m: Some(32),
            hnsw_ef_construction: Some(200),
        });
        assert_eq!(
            body["mappings"]["properties"]["IFV"]["index_options"],
            json!({ "type": "int8_hnsw", "m": 32, "ef_construction": 200 })
        );
    }

    #[test]
    fn differences_name_each_mismatch() {
        let existing = json!({
            "properties": {
                "IFV": {
                    "type": "dense_vector", "dims": 512, "index": true,
                    "similarity": "cosine", "index_options": { "type": "bbq_hnsw" }
                },
                "name": { "type": "text", "fields": { "keyword": { "type": "keyword" } } }
            }
        });
        let d = mapping_differences(&existing, &spec(768));
        assert_eq!(
            d,
            vec![
                "IFV dims: index has 512, model makes 768".to_string(),
                "IFV similarity: index has cosine, expected l2_norm".to_string(),
                "IFV index_options.type: index has bbq_hnsw, expected int8_hnsw".to_string(),
                "name type: index has text, expected keyword (the label filter matches it exactly)"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn differences_for_missing_or_wrong_vector_field() {
        let d = mapping_differences(&json!({ "properties": {} }), &spec(8));
        assert_eq!(d.len(), 1);
        assert!(d[0].starts_with("IFV: index has no such field"), "{d:?}");

        let d = mapping_differences(
            &json!({ "properties": { "IFV": { "type": "float" } } }),
            &spec(8),
        );
        assert_eq!(d, vec!["IFV type: index has float, expected dense_vector"]);

        let d = mapping_differences(
            &json!({ "properties": { "IFV": {
                "type": "dense_vector", "dims": 8, "element_type": "byte", "index": false } } }),
            &spec(8),
        );
        assert!(
            d.iter().any(|s| s.contains("element_type: index has byte")),
            "{d:?}"
        );
        assert!(
            d.iter().any(|s| s.contains("IFV index: index has false")),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|s| s.contains("similarity: index has none set")),
            "{d:?}"
        );
    }

    #[test]
    fn differences_accept_python_pipeline_index_without_index_options() {
        // A 3-field index as the original pipeline made it, dynamic mapping left on.
        let existing = json!({
            "properties": {
                "IFV": { "type": "dense_vector", "dims": 768, "index": true, "similarity": "l2_norm" },
                "name": { "type": "keyword" },
                "path": { "type": "keyword" }
            }
        });
        assert!(mapping_differences(&existing, &spec(768)).is_empty());
        // The same with dynamic: strict cannot take the extra fields.
        let mut strict = existing.clone();
        strict["dynamic"] = json!("strict");
        let d = mapping_differences(&strict, &spec(768));
        assert_eq!(d.len(), 6, "{d:?}");
        assert!(d[0].starts_with("sha256: index has no such field"));
    }

    #[test]
    fn vector_dims_reads_the_mapping() {
        assert_eq!(vector_dims(&index_body(&spec(16))["mappings"]), Some(16));
        assert_eq!(vector_dims(&json!({ "properties": {} })), None);
        assert_eq!(vector_dims(&Value::Null), None);
    }

    #[test]
    fn bulk_lines_are_two_json_lines() {
        let text = bulk_lines(&doc("abc", 4), false);
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines.len(), 2);
        let action: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(action, json!({ "create": { "_id": "abc" } }));
        let source: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(source["name"], "cat");
        assert_eq!(source["path"], "/data/cat \"1\".jpg");
        assert_eq!(source["IFV"], json!([0.5, 0.5, 0.5, 0.5]));
        assert_eq!(source["sha256"], "abc");
        assert_eq!(source["indexed_at"], 1_700_000_000_000u64);
        let over = bulk_lines(&doc("abc", 4), true);
        assert!(over.starts_with(r#"{"index":{"_id":"abc"}}"#));
    }

    #[test]
    fn bulk_items_are_classified() {
        let created = json!({ "create": { "_id": "a", "status": 201, "result": "created" } });
        assert_eq!(
            classify_bulk_item(&created, false),
            BulkItemOutcome::Indexed
        );
        let updated = json!({ "index": { "_id": "a", "status": 200, "result": "updated" } });
        assert_eq!(classify_bulk_item(&updated, true), BulkItemOutcome::Indexed);
        let conflict = json!({ "create": { "_id": "a", "status": 409, "error": {
            "type": "version_conflict_engine_exception",
            "reason": "[a]: version conflict, document already exists (current version [1])" } } });
        assert_eq!(
            classify_bulk_item(&conflict, false),
            BulkItemOutcome::AlreadyPresent
        );
        assert!(matches!(
            classify_bulk_item(&conflict, true),
            BulkItemOutcome::Failed(_)
        ));
        let busy = json!({ "create": { "_id": "a", "status": 429, "error": {
            "type": "es_rejected_execution_exception", "reason": "rejected execution" } } });
        assert_eq!(
            classify_bulk_item(&busy, false),
            BulkItemOutcome::Transient(
                "es_rejected_execution_exception: rejected execution".into()
            )
        );
        let unavailable = json!({ "create": { "_id": "a", "status": 503, "error": {
            "type": "unavailable_shards_exception", "reason": "primary shard is not active" } } });
        assert!(matches!(
            classify_bulk_item(&unavailable, false),
            BulkItemOutcome::Transient(_)
        ));
        let bad = json!({ "create": { "_id": "a", "status": 400, "error": {
            "type": "document_parsing_exception",
            "reason": "[1:1] failed to parse: different number of dimensions [3] than defined in the mapping [4]",
            "caused_by": { "type": "illegal_argument_exception",
                "reason": "different number of dimensions [3] than defined in the mapping [4]" } } } });
        match classify_bulk_item(&bad, false) {
            BulkItemOutcome::Failed(r) => {
                assert!(r.starts_with("document_parsing_exception: "), "{r}");
                assert!(r.contains("dimensions [3]"), "{r}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify_bulk_item(&json!({}), false),
            BulkItemOutcome::Failed(_)
        ));
    }

    #[test]
    fn knn_body_follows_the_documented_shape() {
        let q = KnnQuery {
            vector: vec![0.0, 1.0],
            k: 5,
            num_candidates: 50,
            label: Some("cat".into()),
        };
        assert_eq!(
            knn_body(&q),
            json!({
                "knn": {
                    "field": "IFV", "query_vector": [0.0, 1.0], "k": 5, "num_candidates": 50,
                    "filter": { "term": { "name": "cat" } }
                },
                "size": 5,
                "_source": ["name", "path"]
            })
        );
        let q = KnnQuery {
            vector: vec![1.0],
            k: 20,
            num_candidates: 3,
            label: None,
        };
        let body = knn_body(&q);
        assert_eq!(body["knn"]["num_candidates"], 20, "raised to k");
        assert!(body["knn"].get("filter").is_none());
        let q = KnnQuery {
            vector: vec![1.0],
            k: 10,
            num_candidates: 1_000_000,
            label: None,
        };
        assert_eq!(knn_body(&q)["knn"]["num_candidates"], 10_000);
    }

    #[test]
    fn hits_are_parsed_in_order() {
        let body = json!({ "hits": { "hits": [
            { "_id": "a", "_score": 0.9, "_source": { "name": "cat", "path": "/a.jpg" } },
            { "_id": "b", "_score": 0.5, "_source": { "name": "dog" } }
        ] } });
        let hits = parse_hits(&body).unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].id, "a");
        assert_eq!(hits[0].label, "cat");
        assert_eq!(hits[0].path, "/a.jpg");
        assert!((hits[0].score - 0.9).abs() < 1e-6);
        assert_eq!(hits[1].path, "");
        assert!(parse_hits(&json!({ "took": 1 })).is_err());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(500);
        assert_eq!(backoff_delay(base, 1, 0.0), Duration::from_millis(250));
        assert_eq!(backoff_delay(base, 1, 1.0), Duration::from_millis(500));
        assert_eq!(backoff_delay(base, 2, 1.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(base, 4, 1.0), Duration::from_secs(4));
        assert_eq!(backoff_delay(base, 30, 1.0), RETRY_CAP);
        assert_eq!(backoff_delay(base, 30, 0.0), RETRY_CAP / 2);
        for _ in 0..100 {
            let u = jitter_unit();
            assert!((0.0..=1.0).contains(&u));
        }
    }

    #[test]
    fn error_summaries_are_short_and_specific() {
        let body = json!({ "error": {
            "root_cause": [{ "type": "query_shard_exception",
                "reason": "failed to create query: The query vector has a different number of dimensions [3] than the document vectors [4]." }],
            "type": "search_phase_execution_exception", "reason": "all shards failed" }, "status": 400 });
        let s = error_summary(&body);
        assert!(s.starts_with("search_phase_execution_exception: all shards failed (query_shard_exception: failed to create query"), "{s}");
        assert_eq!(error_summary(&Value::Null), "no body");
        assert_eq!(error_summary(&json!("Unauthorized")), "Unauthorized");
        assert_eq!(truncate("ééé", 3), "é…");
    }

    #[test]
    fn connect_checks_its_inputs() {
        let err = |cfg: ElasticConfig| match ElasticStore::connect(cfg) {
            Ok(_) => panic!("connect accepted a bad config"),
            Err(e) => e.to_string(),
        };
        let ok = ElasticConfig::new("http://127.0.0.1:9200", "images");
        assert!(ElasticStore::connect(ok.clone()).is_ok());

        let e = err(ElasticConfig::new("http://127.0.0.1:9200", "Images"));
        assert!(e.contains("lower case"), "{e}");
        let e = err(ElasticConfig::new("http://127.0.0.1:9200", "a/b"));
        assert!(e.contains("'/'"), "{e}");
        let e = err(ElasticConfig::new("localhost:9200", "images"));
        assert!(e.contains("http or https"), "{e}");
        let e = err(ElasticConfig::new("not a url", "images"));
        assert!(e.contains("invalid Elasticsearch URL"), "{e}");

        let mut cfg = ok.clone();
        cfg.ca_cert = Some(PathBuf::from("/nonexistent/http_ca.crt"));
        match ElasticStore::connect(cfg) {
            Err(StoreError::Tls(m)) => assert!(m.contains("/nonexistent/http_ca.crt"), "{m}"),
            other => panic!("{other:?}"),
        }
        let dir = std::env::temp_dir().join(format!("imgvec-elastic-unit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let not_pem = dir.join("not-a-cert.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let mut cfg = ok.clone();
        cfg.ca_cert = Some(not_pem.clone());
        match ElasticStore::connect(cfg) {
            Err(StoreError::Tls(m)) => assert!(m.contains("not-a-cert.pem"), "{m}"),
            other => panic!("{other:?}"),
        }
        // insecure wins over a CA file (which is then not read).
        let mut cfg = ok.clone();
        cfg.ca_cert = Some(not_pem);
        cfg.insecure = true;
        assert!(ElasticStore::connect(cfg).is_ok());
        let _ = std::fs::remove_dir_all(&dir);

        let mut cfg = ok.clone();
        cfg.username = Some("elastic".into());
        assert!(err(cfg).contains("without a password"));
        let mut cfg = ok.clone();
        cfg.api_key = Some("bad\nkey".into());
        assert!(err(cfg).contains("API key"));
    }

    #[test]
    fn urls_are_shown_without_secrets() {
        let mut cfg = ElasticConfig::new("https://elastic:s3cret@es.example:9200/prefix", "images");
        cfg.password = Some("pw".into());
        cfg.api_key = Some("key".into());
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("\"pw\"") && !shown.contains("\"key\""),
            "{shown}"
        );
        let store = ElasticStore::connect(ElasticConfig::new(
            "https://elastic:s3cret@es.example:9200/prefix",
            "images",
        ))
        .unwrap();
        assert_eq!(store.url(), "https://es.example:9200/prefix/");
        assert_eq!(
            store.describe(),
            "Elasticsearch at https://es.example:9200/prefix/, index 'images'"
        );
    }

    /// A scripted HTTP server on loopback: answers the i-th connection with `replies[i]` and
    /// records each request as "METHOD PATH\nBODY". For what no Elasticsearch can be made to do
    /// on demand: 429s, 503s, 401s.
    fn fake_server(
        replies: Vec<(u16, &'static str)>,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for (status, body) in replies {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut req_body = vec![0u8; length];
                let _ = reader.read_exact(&mut req_body);
                let mut parts = request_line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                log.lock().unwrap().push(format!(
                    "{method} {path}\n{}",
                    String::from_utf8_lossy(&req_body)
                ));
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let mut stream = reader.into_inner();
                let _ = stream.write_all(reply.as_bytes());
                let _ = stream.flush();
            }
        });
        (url, seen)
    }

    fn fast_store(url: &str, max_retries: u32) -> ElasticStore {
        let mut cfg = ElasticConfig::new(url, "idx");
        cfg.max_retries = max_retries;
        cfg.retry_base = Duration::from_millis(2);
        cfg.request_timeout = Duration::from_secs(5);
        ElasticStore::connect(cfg).unwrap()
    }

    #[tokio::test]
    async fn upsert_retries_the_request_and_only_transient_items() {
        let (url, seen) = fake_server(vec![
            (200, ""), // HEAD /idx
            (
                503,
                r#"{"error":{"type":"unavailable","reason":"busy"},"status":503}"#,
            ),
            (
                200,
                r#"{"errors":true,"items":[
                {"create":{"_id":"d0","status":201,"result":"created"}},
                {"create":{"_id":"d1","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
                {"create":{"_id":"d2","status":400,"error":{"type":"document_parsing_exception","reason":"bad vector"}}},
                {"create":{"_id":"d3","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}}]}"#,
            ),
            (
                200,
                r#"{"errors":false,"items":[{"create":{"_id":"d1","status":201,"result":"created"}}]}"#,
            ),
        ]);
        let store = fast_store(&url, 3);
        let docs: Vec<ImageDoc> = (0..4).map(|i| doc(&format!("d{i}"), 2)).collect();
        let report = store.upsert(&docs, false).await.unwrap();
        assert_eq!(report.indexed, vec!["d0".to_string(), "d1".to_string()]);
        assert_eq!(report.already_present, vec!["d3".to_string()]);
        assert_eq!(
            report.failed,
            vec![(
                "d2".to_string(),
                "document_parsing_exception: bad vector".to_string()
            )]
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(seen[0].starts_with("HEAD /idx\n"), "{seen:?}");
        assert!(seen[1].starts_with("POST /idx/_bulk\n"), "{seen:?}");
        assert_eq!(
            seen[1], seen[2],
            "the whole request is sent again after a 503"
        );
        // Only the 429'd document is sent again.
        let last = seen[3].strip_prefix("POST /idx/_bulk\n").unwrap();
        assert_eq!(last, bulk_lines(&docs[1], false));
    }

    #[tokio::test]
    async fn items_still_failing_after_the_retries_are_reported() {
        let busy = r#"{"errors":true,"items":[{"create":{"_id":"d0","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}]}"#;
        let (url, seen) = fake_server(vec![(200, ""), (200, busy), (200, busy)]);
        let store = fast_store(&url, 1);
        let report = store.upsert(&[doc("d0", 2)], false).await.unwrap();
        assert!(report.indexed.is_empty());
        assert_eq!(report.failed.len(), 1);
        assert_eq!(
            report.failed[0].1,
            "es_rejected_execution_exception: queue full (still failing after 1 retries)"
        );
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn refused_credentials_are_auth_errors() {
        let (url, _) = fake_server(vec![
            (
                401,
                r#"{"error":{"type":"security_exception","reason":"missing authentication credentials for REST request [/idx/_count]"},"status":401}"#,
            ),
            (403, ""),
        ]);
        let store = fast_store(&url, 3);
        match store.count().await {
            Err(StoreError::Auth { url: u, detail }) => {
                assert!(u.starts_with(&url), "{u}");
                assert!(
                    detail.starts_with("security_exception: missing authentication"),
                    "{detail}"
                );
            }
            other => panic!("{other:?}"),
        }
        match store.index_exists().await {
            Err(StoreError::Auth { detail, .. }) => assert_eq!(detail, "HTTP 403"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_server_that_stays_busy_is_a_server_error() {
        let busy = r#"{"error":{"type":"circuit_breaking_exception","reason":"data too large"},"status":429}"#;
        let (url, seen) = fake_server(vec![(429, busy), (429, busy), (429, busy)]);
        let store = fast_store(&url, 2);
        match store.count().await {
            Err(StoreError::Server { status, body }) => {
                assert_eq!(status, 429);
                assert!(body.starts_with("circuit_breaking_exception"), "{body}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(seen.lock().unwrap().len(), 3);
    }
}
