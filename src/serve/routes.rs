//! The HTTP routes: the JSON API, thumbnails and original images, and the page's embedded assets.
//!
//! What it is for: one short handler per route, each a few named steps over [`AppState`]: read and
//! check the request, embed (on the blocking pool), ask the store, answer JSON. Files are found by
//! document id only; the path read is the one the store holds.
//!
//! What it is not for: request parsing rules (`query`), error wording (`api`), thumbnails (`thumbs`),
//! headers every response gets (`guard`).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::api::{run_blocking, ApiError, DupesResponse, InfoResponse, SearchResponse};
use super::query::{
    check_k, clean_label, combine, cut_off, read_search, DupesParams, SearchRequest, SimilarParams,
    FORM_OVERHEAD,
};
use super::state::AppState;
use super::thumbs::{heif_as_jpeg, is_doc_id, mime, read_original};
use crate::dupes::{find, Options, DEFAULT_MAX_DISTANCE};
use crate::image::heif::sniff_heif;
use crate::store::MAX_NUM_CANDIDATES;
use crate::store::{within, ImageDoc, KnnQuery};

type Shared = State<Arc<AppState>>;

/// Thumbnails and originals are addressed by the SHA-256 of their content, which is checked when
/// they are read: they never change under the same URL.
const IMMUTABLE: &str = "private, max-age=31536000, immutable";

/// Every route of the server.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(page))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/favicon.svg", get(favicon))
        .route("/api/info", get(info))
        .route("/api/labels", get(labels))
        .route("/api/search", post(search))
        .route("/api/similar/{id}", get(similar))
        .route("/api/dupes", get(dupes))
        .route("/thumb/{id}", get(thumb))
        .route("/image/{id}", get(original))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn info(State(state): Shared) -> Json<InfoResponse> {
    let documents = match state.store.count().await {
        Ok(n) => Ok(n),
        Err(e) => Err(ApiError::from(e).message),
    };
    let model = &state.model;
    Json(InfoResponse {
        backend: state.backend,
        index: state.index.clone(),
        model: model.name(),
        dims: model.dims(),
        documents: documents.as_ref().ok().copied(),
        image_search: model.error().is_none(),
        text_search: model.has_text(),
        max_upload_bytes: state.max_upload,
        version: env!("CARGO_PKG_VERSION"),
        model_error: model.error().map(str::to_string),
        store_error: documents.err(),
    })
}

async fn labels(State(state): Shared) -> Result<Response, ApiError> {
    Ok(Json(state.store.labels().await?).into_response())
}

async fn search(State(state): Shared, req: Request) -> Result<Json<SearchResponse>, ApiError> {
    let started = Instant::now();
    // An upload (a body too big for text fields) takes one of its client's slots before its body
    // is read, and holds it to the end. A refused one's body is read and dropped as it comes (so
    // the client, still sending, gets the answer rather than a broken connection).
    let _slot = match (is_upload(&req), client_ip(&req)) {
        (true, Some(ip)) => match state.uploads.take(ip) {
            Ok(slot) => Some(slot),
            Err(refusal) => {
                discard(req.into_body(), state.max_upload + FORM_OVERHEAD).await;
                return Err(refusal);
            }
        },
        _ => None,
    };
    let request = read_search(req, state.max_upload).await?.check()?;
    state.check_dims().await?;
    let vector = query_vector(&state, &request).await?;
    let hits = state
        .store
        .knn(&KnnQuery {
            vector,
            k: request.k,
            num_candidates: request.num_candidates,
            label: request.label,
        })
        .await?;
    let hits = within(hits, request.max_distance);
    Ok(Json(SearchResponse::new(&hits, millis(started))))
}

/// A body of more than this many bytes (or of unknown size) is an upload: a search of text
/// fields is far smaller.
const UPLOAD_BYTES: u64 = 64 << 10;

fn is_upload(req: &Request) -> bool {
    req.headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_none_or(|n| n > UPLOAD_BYTES)
}

/// Reads up to `limit` bytes of `body` and drops them, a frame at a time.
async fn discard(mut body: axum::body::Body, limit: u64) {
    use axum::body::HttpBody;
    let mut seen = 0u64;
    while seen <= limit {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        match next {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => break,
        }
    }
}

/// The client's address, where the server knows it.
fn client_ip(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The image's and each text's unit vector, added (or subtracted, for `minus`), normalized.
async fn query_vector(state: &AppState, request: &SearchRequest) -> Result<Vec<f32>, ApiError> {
    let dims = state.model.dims().unwrap_or(0);
    let mut parts = Vec::new();
    if let Some(image) = &request.image {
        parts.push((state.model.embed_image(image.clone()).await?, 1.0f32));
    }
    for (texts, sign) in [(&request.text, 1.0f32), (&request.minus, -1.0)] {
        for t in texts {
            parts.push((state.model.embed_text(t).await?, sign));
        }
    }
    let parts: Vec<(Vec<f32>, f32)> = parts.into_iter().map(|(v, s)| (v.to_vec(), s)).collect();
    combine(dims, &parts).ok_or_else(|| {
        ApiError::bad_request("the query terms cancel out: nothing left to search for")
    })
}

/// "More like this": a kNN search with the document's stored vector; the document itself is left out.
async fn similar(
    State(state): Shared,
    Path(id): Path<String>,
    params: Result<Query<SimilarParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SearchResponse>, ApiError> {
    let started = Instant::now();
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (k, num_candidates) = check_k(params.k, params.num_candidates)?;
    let max_distance = cut_off(params.max_distance, params.min_score)?;
    let doc = find_doc(&state, &id).await?;
    // One more than asked, as the document itself is among them (within Elasticsearch's bounds).
    let wanted = (k + 1).min(MAX_NUM_CANDIDATES);
    let mut hits = state
        .store
        .knn(&KnnQuery {
            vector: doc.vector,
            k: wanted,
            num_candidates: num_candidates.clamp(wanted, MAX_NUM_CANDIDATES),
            label: clean_label(params.label),
        })
        .await?;
    hits.retain(|h| h.id != doc.id);
    hits.truncate(k);
    let hits = within(hits, max_distance);
    Ok(Json(SearchResponse::new(&hits, millis(started))))
}

/// The groups of exact copies and near duplicates (see `crate::dupes`): read-only, as the page
/// never deletes.
async fn dupes(
    State(state): Shared,
    params: Result<Query<DupesParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DupesResponse>, ApiError> {
    let started = Instant::now();
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let max_distance = cut_off(params.max_distance, None)?.unwrap_or(DEFAULT_MAX_DISTANCE);
    let mut opts = Options::new(max_distance);
    opts.label = clean_label(params.label);
    let (groups, stats) = find(Arc::clone(&state.store), &opts, |_| {}).await?;
    Ok(Json(DupesResponse {
        groups,
        max_distance,
        default_max_distance: DEFAULT_MAX_DISTANCE,
        documents: stats.documents,
        took_ms: millis(started),
    }))
}

async fn thumb(State(state): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    // A thumbnail made before needs no store round trip: it was checked against the id then.
    let jpeg = match state.thumbs.cached(&id) {
        Some(jpeg) => jpeg,
        None => {
            let doc = find_doc(&state, &id).await?;
            state.thumbs.thumbnail(&doc.id, &doc.path).await?
        }
    };
    Ok((
        [(CONTENT_TYPE, "image/jpeg"), (CACHE_CONTROL, IMMUTABLE)],
        jpeg,
    )
        .into_response())
}

async fn original(State(state): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let doc = find_doc(&state, &id).await?;
    let file = read_original(&doc.id, &doc.path).await?;
    // HEIC/AVIF, which most browsers cannot show: a JPEG of the image.
    if sniff_heif(&file.bytes).is_some() {
        let path = doc.path.clone();
        let jpeg = run_blocking(move || {
            heif_as_jpeg(&file.bytes).map_err(|why| {
                ApiError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{path}: cannot show it: {why}"),
                )
            })
        })
        .await?;
        return Ok((
            [(CONTENT_TYPE, "image/jpeg"), (CACHE_CONTROL, IMMUTABLE)],
            jpeg,
        )
            .into_response());
    }
    Ok((
        [
            (CONTENT_TYPE, mime(file.format)),
            (CACHE_CONTROL, IMMUTABLE),
        ],
        file.bytes,
    )
        .into_response())
}

/// The stored document with this id, or 404.
async fn find_doc(state: &AppState, id: &str) -> Result<ImageDoc, ApiError> {
    if !is_doc_id(id) {
        return Err(ApiError::not_found(
            "no such image: an id is the 64 hex digits the API returned",
        ));
    }
    let docs = state.store.get(&[id.to_string()]).await?;
    docs.into_iter().find(|d| d.id == id).ok_or_else(|| {
        ApiError::not_found(format!("no image with id {id} in index '{}'", state.index))
    })
}

async fn not_found(uri: Uri) -> ApiError {
    let path: String = uri.path().chars().take(200).collect();
    ApiError::not_found(format!("nothing here: {path}"))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

fn millis(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

// The page: three files embedded in the binary, no build step.

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const FAVICON: &str = include_str!("assets/favicon.svg");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}
async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}
async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}
async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON)
}
