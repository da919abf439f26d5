//! The JSON the HTTP API speaks: response bodies and the error type every handler returns.
//!
//! What it is for: the shapes documented in docs/serve.md (`{"hits": [...], "took_ms": N}`, a hit with the
//! keys of `search --json`, `{"error": "..."}` with a fitting status) and the one place that decides
//! which status and which words a failure gets. Store and model errors are told to the user in words
//! they can act on; details that could show the server's insides (database paths, server replies)
//! go to the server's log only.
//!
//! What it is not for: parsing requests (see `query`) or deciding what to search.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use crate::store::{Hit, LabelCount, StoreError};

/// One search result, with the same keys as `imgvec search --json`.
#[derive(Debug, Clone, Serialize)]
pub struct HitJson {
    pub rank: usize,
    pub score: f32,
    pub distance: f32,
    pub id: String,
    pub label: String,
    pub path: String,
    /// The same bytes at other paths.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_paths: Vec<String>,
}

/// The body of `GET /api/dupes`: the groups (see [`crate::dupes::Group`]), keeper first.
#[derive(Debug, Clone, Serialize)]
pub struct DupesResponse {
    pub groups: Vec<crate::dupes::Group>,
    pub max_distance: f32,
    pub default_max_distance: f32,
    /// Documents looked at.
    pub documents: usize,
    pub took_ms: u64,
}

/// The body of `POST /api/search` and `GET /api/similar/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResponse {
    pub hits: Vec<HitJson>,
    /// Time spent answering (embedding plus search), milliseconds.
    pub took_ms: u64,
}

impl SearchResponse {
    pub fn new(hits: &[Hit], took_ms: u64) -> Self {
        let hits = hits
            .iter()
            .enumerate()
            .map(|(i, h)| HitJson {
                rank: i + 1,
                score: h.score,
                distance: h.distance(),
                id: h.id.clone(),
                label: h.label.clone(),
                path: h.path.clone(),
                other_paths: h.other_paths.clone(),
            })
            .collect();
        Self { hits, took_ms }
    }
}

/// The body of `GET /api/labels`.
pub type LabelsResponse = Vec<LabelCount>;

/// The body of `GET /api/info`: what the page shows about the index, and what is wrong, if anything.
#[derive(Debug, Clone, Serialize)]
pub struct InfoResponse {
    /// `embedded` or `elasticsearch`.
    pub backend: &'static str,
    pub index: String,
    /// The model directory's name.
    pub model: Option<String>,
    /// The model's vector size.
    pub dims: Option<usize>,
    /// Images in the index; `None` when the store could not say.
    pub documents: Option<u64>,
    /// Whether queries by image work (the vision tower is loaded).
    pub image_search: bool,
    /// Whether queries by text can work (the checkpoint has a tokenizer).
    pub text_search: bool,
    pub max_upload_bytes: u64,
    pub version: &'static str,
    /// Why no model is loaded, if none is.
    pub model_error: Option<String>,
    /// Why the store could not answer, if it could not.
    pub store_error: Option<String>,
}

/// A failed request: a status and a message for the person using the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (the model queue is full).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 503 with `Retry-After: secs`: too much work is queued already.
    pub fn busy(message: impl Into<String>, secs: u64) -> Self {
        Self {
            retry_after: Some(secs),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
    /// 429 with `Retry-After: secs`: this client has as much in flight as it may.
    pub fn too_many(message: impl Into<String>, secs: u64) -> Self {
        Self {
            retry_after: Some(secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn too_large(limit_bytes: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the upload is larger than the server's limit of {} (imgvec serve --max-upload-mib)",
                human_bytes(limit_bytes)
            ),
        )
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
    /// A failure whose details belong in the server's log, not in the reply: logs them and answers
    /// with `public` only.
    pub fn internal(public: &str, detail: impl std::fmt::Display) -> Self {
        eprintln!("imgvec: serve: {public}: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{public} (details in the server's log)"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let log = |e: &StoreError| eprintln!("imgvec: serve: store: {e}");
        match &e {
            StoreError::Unreachable { .. }
            | StoreError::Tls(_)
            | StoreError::Certificate { .. } => {
                log(&e);
                ApiError::unavailable(
                    "the store is unreachable: is Elasticsearch running? (details in the server's log)",
                )
            }
            StoreError::Auth { .. } | StoreError::Forbidden { .. } => {
                log(&e);
                ApiError::unavailable(
                    "Elasticsearch refused imgvec's credentials or their privileges (details in the server's log)",
                )
            }
            StoreError::IndexMissing { .. }
            | StoreError::DimsMismatch { .. }
            | StoreError::ModelMismatch { .. }
            | StoreError::Incompatible { .. } => ApiError::unavailable(e.to_string()),
            StoreError::Server { status, .. } => {
                log(&e);
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("Elasticsearch answered {status} (details in the server's log)"),
                )
            }
            StoreError::Other(_) | StoreError::AfterSettingsRestored { .. } => {
                ApiError::internal("the store failed", &e)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// `20 MiB`, `512 KiB`, `300 bytes`.
pub fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
    } else if n >= 1 << 10 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// Runs `f` on tokio's blocking pool; a panic in it becomes a 500.
pub async fn run_blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("a worker failed", e))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_get_fitting_statuses_and_no_insides() {
        let e = ApiError::from(StoreError::Unreachable {
            url: "http://10.0.0.5:9200".into(),
            detail: "connection refused".into(),
        });
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!e.message.contains("10.0.0.5"), "{}", e.message);
        let e = ApiError::from(StoreError::IndexMissing {
            index: "photos".into(),
        });
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.message.contains("photos"));
        let e = ApiError::from(StoreError::Other(
            "store database /home/me/imgvec-data/imgvec.sqlite3: disk I/O error".into(),
        ));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message.contains("/home"), "{}", e.message);
        let e = ApiError::from(StoreError::Server {
            status: 500,
            body: "{\"error\": {\"root_cause\": ...}}".into(),
        });
        assert_eq!(e.status, StatusCode::BAD_GATEWAY);
        assert!(!e.message.contains("root_cause"));
    }

    #[test]
    fn hits_are_ranked_from_one_with_distances() {
        let hits = vec![Hit {
            id: "a".into(),
            score: 0.5,
            label: "cat".into(),
            path: "/x/a.jpg".into(),
            other_paths: vec!["/y/a.jpg".into()],
        }];
        let r = SearchResponse::new(&hits, 7);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["took_ms"], 7);
        assert_eq!(v["hits"][0]["other_paths"][0], "/y/a.jpg");
        assert_eq!(v["hits"][0]["rank"], 1);
        assert!((v["hits"][0]["distance"].as_f64().unwrap() - 1.0).abs() < 1e-6);
        let keys: Vec<_> = v["hits"][0].as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "distance",
                "id",
                "label",
                "other_paths",
                "path",
                "rank",
                "score"
            ]
            .map(String::from)
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(20 << 20), "20 MiB");
        assert_eq!(human_bytes(1536 << 10), "1.5 MiB");
        assert_eq!(human_bytes(2048), "2 KiB");
        assert_eq!(human_bytes(12), "12 bytes");
    }
}
