//! What every request shares: the store, the model (each tower loaded at the first query that
//! needs it, and let go after `serve --keep-alive` without use), the caches, and the limits.
//!
//! What it is for: running model work off the async threads (`spawn_blocking`, a few at a time, so
//! many clients share the model and none blocks the server), in two lanes — image uploads and
//! texts — so a queue of uploads never holds up a text query; past [`MODEL_QUEUE`] waiting in a
//! lane, 503 with `Retry-After`, so a flood cannot pile up requests without bound. Also: at most
//! [`UPLOADS_PER_CLIENT`] uploads in flight per client address (429 past it, before the body is
//! read), remembering recent query embeddings, and checking once that the index's vector size is
//! the model's.
//!
//! What it is not for: HTTP (see `routes`), or parsing requests (see `query`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use candle_core::Device;
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};

use super::api::{run_blocking, ApiError};
use super::lru::Lru;
use super::thumbs::Thumbs;
use crate::clip::{ImageEncoder, ModelDir, TextEncoder};
use crate::pipeline::{prepare_bytes, sha256_hex};
use crate::store::{ModelRecord, StoreError, VectorStore};

/// Model calls of one lane running at once; more wait their turn (each one already uses every core).
const LANE_PERMITS: usize = 2;
/// Model calls of one lane waiting for a permit; one more is answered 503 with `Retry-After`.
pub const MODEL_QUEUE: usize = 64;
/// Uploads one client address may have in flight; one more is answered 429.
pub const UPLOADS_PER_CLIENT: usize = 2;
/// The `Retry-After` of that 503 or 429, seconds.
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
    /// Uploads in flight per client.
    pub uploads: UploadSlots,
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
            uploads: UploadSlots::new(UPLOADS_PER_CLIENT),
            dims_ok: OnceCell::new(),
        }
    }

    /// At most `n` uploads in flight per client address (`serve --uploads-per-client`).
    pub fn with_uploads_per_client(mut self, n: usize) -> Self {
        self.uploads = UploadSlots::new(n);
        self
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
                if index_dims != dims {
                    return Err(ApiError::from(StoreError::DimsMismatch {
                        index: self.index.clone(),
                        index_dims,
                        model_dims: dims,
                    }));
                }
                if let Some(model) = self.model.record() {
                    let recorded = self.store.index_model().await?;
                    crate::commands::refuse_other_model(&self.index, recorded.as_ref(), &model)?;
                }
                Ok(())
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
    /// The vision tower, loaded at the first call that needs it (about 1.2 GB for ViT-L/14 in
    /// f32: a server used for text, browsing and more-like-this never holds it).
    image: Tower<ImageEncoder>,
    /// Why the vision tower could not be loaded, once a call found out (not tried again).
    image_error: OnceLock<String>,
    text: Tower<TextEncoder>,
    apply_exif: bool,
    images: Lane,
    texts: Lane,
    cache: Mutex<Lru<String, Arc<Vec<f32>>>>,
}

/// A tower, loaded by the first call that needs it (the calls meanwhile wait for it), let go by
/// [`Tower::take_if_idle`].
struct Tower<T> {
    slot: tokio::sync::Mutex<Option<Arc<T>>>,
    /// When a call last asked for it.
    used: Mutex<Instant>,
}

impl<T> Default for Tower<T> {
    fn default() -> Self {
        Self {
            slot: tokio::sync::Mutex::new(None),
            used: Mutex::new(Instant::now()),
        }
    }
}

impl<T> Tower<T> {
    /// The tower, loaded by `load` if it is not.
    async fn get_or_load<E, F, Fut>(&self, load: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut slot = self.slot.lock().await;
        *self.used.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        if let Some(tower) = slot.as_ref() {
            return Ok(Arc::clone(tower));
        }
        let tower = Arc::new(load().await?);
        *slot = Some(Arc::clone(&tower));
        Ok(tower)
    }

    /// Takes the tower out, for the caller to drop, if no call asked for it for `keep_alive`,
    /// none holds it (a query embedding, `serve --watch`'s indexing) and none is loading it.
    fn take_if_idle(&self, keep_alive: Duration) -> Option<Arc<T>> {
        let mut slot = self.slot.try_lock().ok()?;
        let idle = self
            .used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
            >= keep_alive;
        if idle && slot.as_ref().is_some_and(|t| Arc::strong_count(t) == 1) {
            return slot.take();
        }
        None
    }

    #[cfg(test)]
    fn is_loaded(&self) -> bool {
        self.slot.try_lock().is_ok_and(|slot| slot.is_some())
    }
}

impl Model {
    /// The model from a checkpoint, or the reason there is none (the server then answers
    /// everything but queries that need the model). Its towers are loaded when first needed.
    pub fn new(dir: Result<ModelDir, String>, device: Device, apply_exif: bool) -> Self {
        Self {
            dir,
            device,
            image: Tower::default(),
            image_error: OnceLock::new(),
            text: Tower::default(),
            apply_exif,
            images: Lane::new("image", MODEL_QUEUE),
            texts: Lane::new("text", MODEL_QUEUE),
            cache: Mutex::new(Lru::new(EMBED_CACHE_BYTES)),
        }
    }

    /// At most `n` model calls of each lane waiting (`serve --model-queue`); 503 past it.
    pub fn with_queue(mut self, n: usize) -> Self {
        self.images = Lane::new("image", n);
        self.texts = Lane::new("text", n);
        self
    }

    pub fn name(&self) -> Option<String> {
        self.dir.as_ref().ok().map(ModelDir::name)
    }

    pub fn dims(&self) -> Option<usize> {
        self.dir.as_ref().ok().map(ModelDir::dims)
    }

    /// What an index records of this model; a weights file that cannot be read for the
    /// fingerprint leaves it out (the name is compared then).
    pub fn record(&self) -> Option<ModelRecord> {
        let dir = self.dir.as_ref().ok()?;
        Some(ModelRecord {
            name: dir.name(),
            family: dir.family().to_string(),
            dims: dir.dims(),
            fingerprint: dir.fingerprint().ok().flatten(),
            precisions: vec![dir.precision_name().to_string()],
        })
    }

    /// The vision tower, loaded now if it was not (`serve --watch` embeds new images with it);
    /// `None` if there is no checkpoint or it cannot be loaded ([`Self::error`] says why).
    pub async fn image_encoder(&self) -> Option<Arc<ImageEncoder>> {
        self.load_image().await.ok()
    }

    /// Why image queries cannot run, if they cannot: no checkpoint, or its vision tower failed
    /// to load (known once a call needed it).
    pub fn error(&self) -> Option<&str> {
        match &self.dir {
            Err(why) => Some(why),
            Ok(_) => self.image_error.get().map(String::as_str),
        }
    }

    /// The vision tower, loaded on the first call (the calls meanwhile wait for it); the
    /// reason, once, on stderr if it cannot be.
    async fn load_image(&self) -> Result<Arc<ImageEncoder>, String> {
        let dir = self.dir.as_ref()?;
        self.image
            .get_or_load(|| async {
                // Known not to load (found by this call's predecessor, perhaps while it waited).
                if let Some(why) = self.image_error.get() {
                    return Err(why.clone());
                }
                let (dir, device) = (dir.clone(), self.device.clone());
                let started = Instant::now();
                let loaded = tokio::task::spawn_blocking(move || {
                    ImageEncoder::load(&dir, &device).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(format!("loading it failed: {e}")));
                match &loaded {
                    Ok(_) => eprintln!(
                        "imgvec: serve: vision tower loaded in {:.1} s",
                        started.elapsed().as_secs_f64()
                    ),
                    Err(why) => {
                        eprintln!(
                            "imgvec: serve: cannot load the vision model, so no search by image: {why}"
                        );
                        let _ = self.image_error.set(why.clone());
                    }
                }
                loaded
            })
            .await
    }

    /// Lets go of each tower unused for `keep_alive` and not in use (the next query that needs it
    /// loads it again); whether any was let go. They are dropped, and their memory handed back, on
    /// a blocking thread.
    pub async fn release_idle(&self, keep_alive: Duration) -> bool {
        let image = self.image.take_if_idle(keep_alive);
        let text = self.text.take_if_idle(keep_alive);
        let released = image.is_some() || text.is_some();
        if released {
            let _ = tokio::task::spawn_blocking(move || drop((image, text))).await;
        }
        released
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
        let encoder = self.load_image().await.map_err(|_| self.missing())?;
        let key = format!("image:{}", sha256_hex(&bytes));
        let apply_exif = self.apply_exif;
        self.cached(key, &self.images, move || {
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
        self.cached(format!("text:{text}"), &self.texts, move || {
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
            .get_or_load(|| async {
                let (dir, device) = (dir.clone(), self.device.clone());
                let loaded = run_blocking(move || {
                    TextEncoder::load(&dir, &device).map_err(|e| {
                        eprintln!("imgvec: serve: cannot load the text model: {e}");
                        ApiError::unavailable(format!("text search is unavailable: {e}"))
                    })
                })
                .await?;
                Ok(loaded)
            })
            .await
    }

    /// Looks `key` up in the embedding cache, else runs `work` on a blocking thread (waiting for a
    /// permit of `lane`) and remembers its result.
    async fn cached<F>(&self, key: String, lane: &Lane, work: F) -> Result<Arc<Vec<f32>>, ApiError>
    where
        F: FnOnce() -> Result<Vec<f32>, ApiError> + Send + 'static,
    {
        let lock = || self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = lock().get(&key) {
            return Ok(v);
        }
        let _permit = lane.permit().await?;
        let v = Arc::new(run_blocking(work).await?);
        let cost = v.len() * 4 + key.len() + 64;
        lock().put(key, Arc::clone(&v), cost);
        Ok(v)
    }
}

/// One kind of model work: a few calls at once, a bounded queue behind them.
struct Lane {
    what: &'static str,
    permits: Semaphore,
    /// Calls waiting for a permit now, and how many may.
    waiting: AtomicUsize,
    queue_limit: usize,
}

impl Lane {
    fn new(what: &'static str, queue_limit: usize) -> Self {
        Lane {
            what,
            permits: Semaphore::new(LANE_PERMITS),
            waiting: AtomicUsize::new(0),
            queue_limit,
        }
    }

    /// A permit: at once if one is free, else after waiting in a queue of at most `queue_limit`
    /// (past it: 503 with `Retry-After`).
    async fn permit(&self) -> Result<SemaphorePermit<'_>, ApiError> {
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
                "imgvec: serve: the {} model queue is full ({} waiting): answered 503",
                self.what, self.queue_limit
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

/// Uploads in flight per client address.
pub struct UploadSlots {
    limit: usize,
    in_flight: Mutex<HashMap<IpAddr, usize>>,
}

/// One upload's place, given back when dropped.
pub struct UploadSlot<'a> {
    slots: &'a UploadSlots,
    client: IpAddr,
}

impl UploadSlots {
    pub fn new(limit: usize) -> Self {
        UploadSlots {
            limit,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more upload of `client`, or 429 with `Retry-After` if it has as many in
    /// flight as it may.
    pub fn take(&self, client: IpAddr) -> Result<UploadSlot<'_>, ApiError> {
        let mut in_flight = self.lock();
        let n = in_flight.entry(client).or_insert(0);
        if *n >= self.limit {
            eprintln!(
                "imgvec: serve: {client} has {} uploads in flight already: answered 429",
                self.limit
            );
            return Err(ApiError::too_many(
                format!(
                    "you have {} searches by image running already: wait for them, then try again",
                    self.limit
                ),
                RETRY_AFTER_SECS,
            ));
        }
        *n += 1;
        Ok(UploadSlot {
            slots: self,
            client,
        })
    }
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.slots.lock();
        if let Some(n) = in_flight.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                in_flight.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With every image permit taken and the image queue full, one more image call is 503 with
    /// `Retry-After`, while a text call runs at once; the queued ones still run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_answers_busy_and_texts_do_not_wait_behind_images() {
        let model = Model::new(Err("none".into()), Device::Cpu, false);
        let model = Arc::new(model.with_queue(2));
        let mut running = Vec::new();
        for i in 0..LANE_PERMITS + 2 {
            let m = Arc::clone(&model);
            running.push(tokio::spawn(async move {
                m.cached(format!("k{i}"), &m.images, || {
                    std::thread::sleep(std::time::Duration::from_millis(400));
                    Ok(vec![1.0])
                })
                .await
            }));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let err = model
            .cached("one more".into(), &model.images, || Ok(vec![2.0]))
            .await
            .unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.retry_after, Some(RETRY_AFTER_SECS));
        let response = axum::response::IntoResponse::into_response(err);
        assert_eq!(response.headers()["retry-after"], "5");
        let started = std::time::Instant::now();
        let text = model.cached("a text".into(), &model.texts, || Ok(vec![4.0]));
        assert_eq!(*text.await.unwrap(), vec![4.0]);
        assert!(started.elapsed() < std::time::Duration::from_millis(300));
        for r in running {
            assert_eq!(*r.await.unwrap().unwrap(), vec![1.0]);
        }
        assert_eq!(model.images.waiting.load(Ordering::SeqCst), 0);
        // Once the queue drains, calls run again.
        let later = model.cached("later".into(), &model.images, || Ok(vec![3.0]));
        assert!(later.await.is_ok());
    }

    #[test]
    fn a_client_gets_its_upload_slots_and_no_more() {
        let slots = UploadSlots::new(2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = slots.take(a).unwrap();
        let _second = slots.take(a).unwrap();
        let err = slots.take(a).err().unwrap();
        assert_eq!(err.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.retry_after, Some(RETRY_AFTER_SECS));
        assert!(slots.take(b).is_ok(), "another client is not held up");
        drop(first);
        assert!(slots.take(a).is_ok(), "a slot given back is free again");
    }

    fn fixture(path: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(path)
    }

    /// A server holds no vision tower until an image needs it: then it is loaded once and used.
    #[tokio::test]
    async fn the_vision_tower_loads_at_the_first_image_and_not_before() {
        let dir = ModelDir::open(&fixture("clip-tiny")).expect("the tiny checkpoint");
        let model = Model::new(Ok(dir), Device::Cpu, false);
        assert!(!model.image.is_loaded());
        assert_eq!(model.error(), None);
        let png = std::fs::read(fixture("images/chelsea.png")).expect("a fixture image");
        let vector = model.embed_image(Bytes::from(png)).await.expect("embedded");
        assert_eq!(Some(vector.len()), model.dims());
        assert!(model.image.is_loaded());
        let same = model.image_encoder().await.expect("the loaded tower");
        assert!(Arc::ptr_eq(
            &same,
            &model.image_encoder().await.expect("again")
        ));
    }

    /// A tower unused for the keep-alive is let go (not while a call holds it, nor before the
    /// time), and the next query that needs it loads it again and gets the same vectors. (The
    /// vision tower: the text tower is held the same way, and this checkpoint has no tokenizer.)
    #[tokio::test]
    async fn idle_towers_are_let_go_and_loaded_again_when_needed() {
        let dir = ModelDir::open(&fixture("clip-tiny")).expect("the tiny checkpoint");
        let model = Model::new(Ok(dir), Device::Cpu, false);
        let png = Bytes::from(std::fs::read(fixture("images/chelsea.png")).expect("an image"));
        let vector = model.embed_image(png.clone()).await.expect("embedded");
        assert!(model.image.is_loaded());
        assert!(
            !model.release_idle(Duration::from_secs(3600)).await,
            "used just now"
        );
        let held = model.image_encoder().await.expect("the tower");
        assert!(
            model.image.take_if_idle(Duration::ZERO).is_none(),
            "held by a call"
        );
        assert!(model.image.is_loaded());
        drop(held);
        assert!(model.release_idle(Duration::ZERO).await);
        assert!(!model.image.is_loaded());
        assert!(
            !model.release_idle(Duration::ZERO).await,
            "nothing left to let go"
        );
        // Another image (the cache would answer the same bytes) loads the tower again.
        let mut other = png.to_vec();
        other.extend_from_slice(b"trailing bytes");
        let again = model
            .embed_image(Bytes::from(other))
            .await
            .expect("embedded again");
        assert!(model.image.is_loaded());
        assert_eq!(again, vector, "the same image, the same vector");
    }

    /// A checkpoint whose weights cannot be read: the server starts, and the first image says
    /// why (503), as does `error` from then on (the page shows it).
    #[tokio::test]
    async fn a_vision_tower_that_cannot_load_is_reported_at_the_first_image() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::copy(
            fixture("clip-tiny/config.json"),
            tmp.path().join("config.json"),
        )
        .expect("config");
        std::fs::write(
            tmp.path().join("model.safetensors"),
            b"not a safetensors file",
        )
        .expect("weights");
        let dir = ModelDir::open(tmp.path()).expect("a directory with a config");
        let model = Model::new(Ok(dir), Device::Cpu, false);
        assert_eq!(model.error(), None);
        let png = std::fs::read(fixture("images/chelsea.png")).expect("a fixture image");
        let err = model.embed_image(Bytes::from(png)).await.unwrap_err();
        assert_eq!(
            err.status,
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "{err:?}"
        );
        let why = model.error().expect("the reason, once known");
        assert!(why.contains("model.safetensors"), "{why}");
        assert!(model.image_encoder().await.is_none());
    }
}
