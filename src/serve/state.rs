//! What every request shares: the store, the model (vision tower loaded at start, text tower on the
//! first text query), the caches, and the limits.
//!
//! What it is for: running model work off the async threads (`spawn_blocking`, a few at a time, so
//! many clients share the model and none blocks the server; past [`MODEL_QUEUE`] waiting, 503 with
//! `Retry-After`, so a flood cannot pile up requests without bound), remembering recent query embeddings,
//! and checking once that the index's vector size is the model's.
//!
//! What it is not for: HTTP (see `routes`), or parsing requests (see `query`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use candle_core::Device;
use tokio::sync::{OnceCell, Semaphore};

use super::api::{run_blocking, ApiError};
use super::lru::Lru;
use super::thumbs::Thumbs;
use crate::clip::{ImageEncoder, ModelDir, TextEncoder};
use crate::pipeline::{prepare_bytes, sha256_hex};
use crate::store::{StoreError, VectorStore};

/// Model calls running at once; more wait their turn (each one already uses every core).
const MODEL_PERMITS: usize = 4;
/// Model calls waiting for a permit; one more is answered 503 with `Retry-After`.
pub const MODEL_QUEUE: usize = 64;
/// The `Retry-After` of that 503, seconds.
const RETRY_AFTER_SECS: u64 = 5;
/// Memory for remembered query embeddings.
const EMBED_CACHE_BYTES: usize = 8 << 20;

/// The state behind every handler.
pub struct AppState {
    pub store: std::sync::Arc<dyn VectorStore>,
    /// `embedded` or `elasticsearch`.
    pub backend: &'static str,
    pub index: String,
    pub model: Model,
    pub thumbs: Thumbs,
    /// Largest accepted upload, bytes.
    pub max_upload: u64,
    /// Set once the index's vector size was found equal to the model's.
    dims_ok: OnceCell<()>,
}

impl AppState {
    pub fn new(
        store: Box<dyn VectorStore>,
        backend: &'static str,
        index: String,
        model: Model,
        thumbs: Thumbs,
        max_upload: u64,
    ) -> Self {
        Self {
            store: std::sync::Arc::from(store),
            backend,
            index,
            model,
            thumbs,
            max_upload,
            dims_ok: OnceCell::new(),
        }
    }

    /// Fails unless the index exists and holds vectors of the model's size (asked of the store
    /// until the answer is yes once).
    pub async fn check_dims(&self) -> Result<(), ApiError> {
        let Some(dims) = self.model.dims() else {
            return Err(self.model.missing());
        };
        self.dims_ok
            .get_or_try_init(|| async {
                let index_dims = self.store.index_dims().await?;
                if index_dims == dims {
                    Ok(())
                } else {
                    Err(ApiError::from(StoreError::DimsMismatch {
                        index: self.index.clone(),
                        index_dims,
                        model_dims: dims,
                    }))
                }
            })
            .await
            .copied()
    }
}

/// The CLIP model as the server holds it.
pub struct Model {
    /// The checkpoint, or why it could not be opened.
    dir: Result<ModelDir, String>,
    device: Device,
    image: Result<Arc<ImageEncoder>, String>,
    text: OnceCell<Arc<TextEncoder>>,
    apply_exif: bool,
    permits: Semaphore,
    /// Calls waiting for a permit now, and how many may.
    waiting: AtomicUsize,
    queue_limit: usize,
    cache: Mutex<Lru<String, Arc<Vec<f32>>>>,
}

impl Model {
    /// The model from a checkpoint and its loaded vision tower, or the reason there is none (the
    /// server then answers everything but queries that need the model).
    pub fn new(
        dir: Result<ModelDir, String>,
        device: Device,
        image: Result<ImageEncoder, String>,
        apply_exif: bool,
    ) -> Self {
        Self {
            dir,
            device,
            image: image.map(Arc::new),
            text: OnceCell::new(),
            apply_exif,
            permits: Semaphore::new(MODEL_PERMITS),
            waiting: AtomicUsize::new(0),
            queue_limit: MODEL_QUEUE,
            cache: Mutex::new(Lru::new(EMBED_CACHE_BYTES)),
        }
    }

    pub fn name(&self) -> Option<String> {
        self.dir.as_ref().ok().map(ModelDir::name)
    }

    pub fn dims(&self) -> Option<usize> {
        self.dir.as_ref().ok().map(ModelDir::dims)
    }

    /// The loaded vision tower, to share (`serve --watch` embeds new images with it).
    pub fn image_encoder(&self) -> Option<Arc<ImageEncoder>> {
        self.image.as_ref().ok().map(Arc::clone)
    }

    /// Why image queries cannot run, if they cannot.
    pub fn error(&self) -> Option<&str> {
        self.image.as_ref().err().map(String::as_str)
    }

    /// Whether text queries can run: the checkpoint has a tokenizer.
    pub fn has_text(&self) -> bool {
        self.dir
            .as_ref()
            .is_ok_and(|d| d.path().join("tokenizer.json").is_file())
    }

    fn missing(&self) -> ApiError {
        ApiError::unavailable(format!(
            "no model is loaded, so nothing can be embedded: {}",
            self.error().unwrap_or("unknown reason")
        ))
    }

    /// The embedding of an uploaded image, decoded under ingest's limits.
    pub async fn embed_image(&self, bytes: Bytes) -> Result<Arc<Vec<f32>>, ApiError> {
        let encoder = self.image.clone().map_err(|_| self.missing())?;
        let key = format!("image:{}", sha256_hex(&bytes));
        let apply_exif = self.apply_exif;
        self.cached(key, move || {
            let (pixels, _, _) = prepare_bytes(&bytes, encoder.preprocess_config(), apply_exif)
                .map_err(|why| {
                    ApiError::bad_request(format!("the uploaded file cannot be used: {why}"))
                })?;
            let vectors = encoder
                .embed_pixels(&[&pixels])
                .map_err(|e| ApiError::internal("the model failed", e))?;
            vectors
                .into_iter()
                .next()
                .ok_or_else(|| ApiError::internal("the model failed", "no vector came back"))
        })
        .await
    }

    /// The embedding of a text; the text tower is loaded on the first call.
    pub async fn embed_text(&self, text: &str) -> Result<Arc<Vec<f32>>, ApiError> {
        let encoder = self.text_encoder().await?;
        let owned = text.to_string();
        self.cached(format!("text:{text}"), move || {
            let e = encoder
                .embed(&owned)
                .map_err(|e| ApiError::internal("the text model failed", e))?;
            if e.truncated {
                eprintln!(
                    "imgvec: serve: {owned:?} is longer than {} tokens and was truncated",
                    encoder.tokenizer().max_len()
                );
            }
            Ok(e.vector)
        })
        .await
    }

    async fn text_encoder(&self) -> Result<Arc<TextEncoder>, ApiError> {
        let dir = self.dir.as_ref().map_err(|_| self.missing())?;
        self.text
            .get_or_try_init(|| async {
                let (dir, device) = (dir.clone(), self.device.clone());
                let loaded = run_blocking(move || {
                    TextEncoder::load(&dir, &device).map_err(|e| {
                        eprintln!("imgvec: serve: cannot load the text model: {e}");
                        ApiError::unavailable(format!("text search is unavailable: {e}"))
                    })
                })
                .await?;
                Ok(Arc::new(loaded))
            })
            .await
            .cloned()
    }

    /// Looks `key` up in the embedding cache, else runs `work` on a blocking thread (waiting for a
    /// permit) and remembers its result.
    async fn cached<F>(&self, key: String, work: F) -> Result<Arc<Vec<f32>>, ApiError>
    where
        F: FnOnce() -> Result<Vec<f32>, ApiError> + Send + 'static,
    {
        let lock = || self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = lock().get(&key) {
            return Ok(v);
        }
        let _permit = self.permit().await?;
        let v = Arc::new(run_blocking(work).await?);
        let cost = v.len() * 4 + key.len() + 64;
        lock().put(key, Arc::clone(&v), cost);
        Ok(v)
    }

    /// A permit for model work: at once if one is free, else after waiting in a queue of at most
    /// `queue_limit` (past it: 503 with `Retry-After`).
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        if let Ok(p) = self.permits.try_acquire() {
            return Ok(p);
        }
        /// Leaves the queue when the wait ends, or when the request is dropped while waiting.
        struct InQueue<'a>(&'a AtomicUsize);
        impl Drop for InQueue<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let ahead = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _in_queue = InQueue(&self.waiting);
        if ahead >= self.queue_limit {
            eprintln!(
                "imgvec: serve: the model queue is full ({} waiting): answered 503",
                self.queue_limit
            );
            return Err(ApiError::busy(
                "the server is busy with other searches: try again in a few seconds",
                RETRY_AFTER_SECS,
            ));
        }
        self.permits
            .acquire()
            .await
            .map_err(|e| ApiError::internal("the model queue is closed", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With every permit taken and the queue full, one more call is 503 with `Retry-After`; the
    /// queued ones still run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_answers_busy() {
        let mut model = Model::new(Err("none".into()), Device::Cpu, Err("none".into()), false);
        model.queue_limit = 2;
        let model = Arc::new(model);
        let mut running = Vec::new();
        for i in 0..MODEL_PERMITS + 2 {
            let m = Arc::clone(&model);
            running.push(tokio::spawn(async move {
                m.cached(format!("k{i}"), || {
                    std::thread::sleep(std::time::Duration::from_millis(400));
                    Ok(vec![1.0])
                })
                .await
            }));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let err = model
            .cached("one more".into(), || Ok(vec![2.0]))
            .await
            .unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.retry_after, Some(RETRY_AFTER_SECS));
        let response = axum::response::IntoResponse::into_response(err);
        assert_eq!(response.headers()["retry-after"], "5");
        for r in running {
            assert_eq!(*r.await.unwrap().unwrap(), vec![1.0]);
        }
        assert_eq!(model.waiting.load(Ordering::SeqCst), 0);
        // Once the queue drains, calls run again.
        assert!(model.cached("later".into(), || Ok(vec![3.0])).await.is_ok());
    }
}
