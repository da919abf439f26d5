//! The indexer: a tokio task that writes embedded images to the store while the model works on
//! the next batch, and accounts for every outcome it is handed.
//!
//! Documents from consecutive model batches fill one write up to the [`BulkPlan`]'s caps (documents
//! and estimated bytes), or until the oldest has waited `max_wait` (so a slow embedder still writes
//! every second or so, and a crash loses little); up to `concurrency` writes are in flight at once,
//! so a fast embedder (GPU) or a far server (cloud) does not wait for each round trip. The store
//! slows them down when the server is busy (429). A write that fails as a whole (server unreachable
//! after retries, credentials refused) stops the ingest: the stop flag is set, and every later
//! embedded image is reported as not indexed. Not for: embedding, or deciding which files to embed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::Receiver;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::summary::Summary;
use crate::pipeline::{FileFacts, Outcome};
use crate::store::elastic::{
    DEFAULT_BULK_CONCURRENCY, DEFAULT_BULK_MAX_BYTES, DEFAULT_BULK_MAX_DOCS,
};
use crate::store::{DocPath, ImageDoc, StoreError, UpsertReport, VectorStore};

/// How documents are grouped into writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkPlan {
    /// Most documents in one write (the store may split it further by its own caps).
    pub max_docs: usize,
    /// Most estimated request bytes in one write.
    pub max_bytes: usize,
    /// Writes in flight at once.
    pub concurrency: usize,
    /// Longest a document waits for its write to fill.
    pub max_wait: Duration,
}

impl Default for BulkPlan {
    fn default() -> Self {
        BulkPlan {
            max_docs: DEFAULT_BULK_MAX_DOCS,
            max_bytes: DEFAULT_BULK_MAX_BYTES,
            concurrency: DEFAULT_BULK_CONCURRENCY,
            max_wait: Duration::from_secs(1),
        }
    }
}

/// About how many bytes a document takes in a `_bulk` request: a float in JSON is ~11 characters.
pub fn estimated_bytes(doc: &ImageDoc) -> usize {
    doc.vector.len() * 11 + doc.path.len() + doc.label.len() + doc.model.len() + 300
}

/// Paths per `add_paths` call.
const PATHS_PER_CALL: usize = 1_000;

/// A write's documents' ids and paths, and what the store answered.
type Written = (Vec<(String, PathBuf)>, Result<UpsertReport, StoreError>);

/// What the indexer needs to know besides the outcomes.
pub struct Indexer {
    pub store: Arc<dyn VectorStore>,
    /// The model's name, stored with each vector.
    pub model: String,
    /// Overwrite documents that exist (`--force`).
    pub overwrite: bool,
    pub stop: Arc<AtomicBool>,
    pub plan: BulkPlan,
}

/// The indexer's account, and the error that stopped it, if any.
pub type IndexerResult = (Summary, Option<StoreError>);

impl Indexer {
    /// Starts the task; it ends when the sending side of `batches` is dropped and every write is
    /// done.
    pub fn spawn(
        self,
        rt: &tokio::runtime::Runtime,
        batches: Receiver<Vec<Outcome>>,
    ) -> JoinHandle<IndexerResult> {
        rt.spawn(Arc::new(self).run(batches))
    }

    async fn run(self: Arc<Self>, mut batches: Receiver<Vec<Outcome>>) -> IndexerResult {
        let mut run = Run::default();
        let mut deadline: Option<Instant> = None;
        loop {
            let next = match deadline {
                Some(d) => tokio::select! {
                    b = batches.recv() => Some(b),
                    _ = tokio::time::sleep_until(d) => None,
                },
                None => Some(batches.recv().await),
            };
            match next {
                Some(Some(batch)) => {
                    for doc in self.account(batch, &mut run) {
                        run.pending_bytes += estimated_bytes(&doc.0);
                        run.pending.push(doc);
                    }
                    let full = run.pending.len() >= self.plan.max_docs
                        || run.pending_bytes >= self.plan.max_bytes;
                    if full {
                        self.flush(&mut run).await;
                    } else if !run.pending.is_empty() && deadline.is_none() {
                        deadline = Some(Instant::now() + self.plan.max_wait);
                    }
                }
                Some(None) => break,
                None => self.flush(&mut run).await,
            }
            if run.pending.is_empty() {
                deadline = None;
            }
        }
        self.flush(&mut run).await;
        while let Some(done) = run.writes.join_next().await {
            run.finished(done, &self.stop);
        }
        self.record_seen_at(&mut run).await;
        (run.summary, run.fatal)
    }

    /// Records the paths of the files whose bytes the index had (or an earlier file of this run
    /// had) on their documents: done last, once every write of the run is in.
    async fn record_seen_at(&self, run: &mut Run) {
        let seen_at = std::mem::take(&mut run.seen_at);
        for chunk in seen_at.chunks(PATHS_PER_CALL) {
            let paths: Vec<DocPath> = chunk.iter().map(|(p, _)| p.clone()).collect();
            let failed = |s: &mut Summary, path: &PathBuf, why: String| {
                s.already_present -= 1;
                s.fail(path, why);
            };
            if let Some(e) = &run.fatal {
                for (_, path) in chunk {
                    failed(&mut run.summary, path, format!("path not recorded: {e}"));
                }
                continue;
            }
            match self.store.add_paths(&paths).await {
                Ok(missing) => {
                    for (p, path) in chunk.iter().filter(|(p, _)| missing.contains(&p.id)) {
                        let why = format!(
                            "not indexed: the same bytes (sha256 {}) were in a file that failed",
                            p.id
                        );
                        failed(&mut run.summary, path, why);
                    }
                }
                Err(e) => {
                    for (_, path) in chunk {
                        failed(&mut run.summary, path, format!("path not recorded: {e}"));
                    }
                    self.stop.store(true, Ordering::SeqCst);
                    run.fatal.get_or_insert(e);
                }
            }
        }
    }

    /// Starts a write of everything pending, after waiting for a free place if all are taken.
    async fn flush(self: &Arc<Self>, run: &mut Run) {
        let docs = std::mem::take(&mut run.pending);
        run.pending_bytes = 0;
        if docs.is_empty() {
            return;
        }
        while run.writes.len() >= self.plan.concurrency.max(1) {
            match run.writes.join_next().await {
                Some(done) => run.finished(done, &self.stop),
                None => break,
            }
        }
        if run.fatal.is_some() {
            for (_, path) in docs {
                run.summary
                    .fail(&path, "not indexed: the store was unreachable");
            }
            return;
        }
        let me = Arc::clone(self);
        run.writes.spawn(async move {
            let (docs, paths): (Vec<ImageDoc>, Vec<PathBuf>) = docs.into_iter().unzip();
            let result = me.store.upsert(&docs, me.overwrite).await;
            let ids = docs.into_iter().map(|d| d.id).zip(paths).collect();
            (ids, result)
        });
    }

    /// Counts what needs no writing, and keeps where known bytes were seen; returns the
    /// documents to write, each with its file's path.
    fn account(&self, batch: Vec<Outcome>, run: &mut Run) -> Vec<(ImageDoc, PathBuf)> {
        let mut docs = Vec::new();
        let s = &mut run.summary;
        for o in batch {
            match o {
                Outcome::Failed { job, reason } => s.fail(&job.path, reason),
                Outcome::Known {
                    job,
                    sha256,
                    mtime_ms,
                } => {
                    s.already_present += 1;
                    let seen = DocPath {
                        id: sha256,
                        path: job.path.display().to_string(),
                        mtime_ms,
                    };
                    run.seen_at.push((seen, job.path));
                }
                Outcome::OtherShard { .. } => s.other_shards += 1,
                Outcome::Embedded { facts, vector } => {
                    let path = facts.job.path.clone();
                    if facts.truncated {
                        s.warn(&path, "truncated: indexed what its data holds");
                    }
                    if let Some(note) = &facts.note {
                        s.warn(&path, note.clone());
                    }
                    docs.push((self.doc(facts, vector), path));
                }
            }
        }
        docs
    }

    fn doc(&self, facts: FileFacts, vector: Vec<f32>) -> ImageDoc {
        ImageDoc {
            id: facts.sha256,
            label: facts.job.label,
            path: facts.job.path.display().to_string(),
            other_paths: Vec::new(),
            vector,
            bytes: facts.bytes,
            width: facts.width,
            height: facts.height,
            model: self.model.clone(),
            indexed_at_ms: now_ms(),
            mtime_ms: facts.mtime_ms,
        }
    }
}

/// The indexer's state while it runs.
#[derive(Default)]
struct Run {
    summary: Summary,
    fatal: Option<StoreError>,
    pending: Vec<(ImageDoc, PathBuf)>,
    pending_bytes: usize,
    writes: JoinSet<Written>,
    /// Files whose bytes are known: their paths, recorded at the end.
    seen_at: Vec<(DocPath, PathBuf)>,
}

impl Run {
    /// Accounts for a finished write; per-item failures are counted, a failure of the whole call
    /// stops the ingest.
    fn finished(&mut self, done: Result<Written, tokio::task::JoinError>, stop: &AtomicBool) {
        let (docs, result) = match done {
            Ok(written) => written,
            Err(e) => {
                self.fatal
                    .get_or_insert(StoreError::Other(format!("the indexer failed: {e}")));
                stop.store(true, Ordering::SeqCst);
                return;
            }
        };
        let s = &mut self.summary;
        match result {
            Ok(report) => {
                s.indexed += report.indexed.len();
                s.already_present += report.already_present.len();
                let path_of: HashMap<&str, &PathBuf> =
                    docs.iter().map(|(id, p)| (id.as_str(), p)).collect();
                for (id, reason) in report.failed {
                    let path = path_of
                        .get(id.as_str())
                        .map(|p| p.to_path_buf())
                        .unwrap_or_else(|| PathBuf::from(&id));
                    s.fail(&path, reason);
                }
            }
            Err(e) => {
                for (_, path) in &docs {
                    s.fail(path, format!("not indexed: {e}"));
                }
                stop.store(true, Ordering::SeqCst);
                self.fatal.get_or_insert(e);
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::pipeline::Job;
    use crate::store::{EnsureOutcome, Hit, IndexSpec, KnnQuery};

    /// Records each upsert's size and the most upserts seen at once.
    #[derive(Default)]
    struct Recorder {
        sizes: Mutex<Vec<usize>>,
        now: AtomicUsize,
        most: AtomicUsize,
    }

    #[async_trait]
    impl VectorStore for Recorder {
        fn describe(&self) -> String {
            "recorder".into()
        }
        async fn ensure_index(&self, _: &IndexSpec) -> Result<EnsureOutcome, StoreError> {
            Ok(EnsureOutcome::AlreadyExists)
        }
        async fn recreate_index(&self, _: &IndexSpec) -> Result<(), StoreError> {
            Ok(())
        }
        async fn index_dims(&self) -> Result<usize, StoreError> {
            Ok(2)
        }
        async fn existing_ids(&self, _: &[String]) -> Result<HashSet<String>, StoreError> {
            Ok(HashSet::new())
        }
        async fn upsert(&self, docs: &[ImageDoc], _: bool) -> Result<UpsertReport, StoreError> {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            self.sizes.lock().unwrap().push(docs.len());
            self.now.fetch_sub(1, Ordering::SeqCst);
            Ok(UpsertReport {
                indexed: docs.iter().map(|d| d.id.clone()).collect(),
                ..UpsertReport::default()
            })
        }
        async fn refresh(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn knn(&self, _: &KnnQuery) -> Result<Vec<Hit>, StoreError> {
            Ok(Vec::new())
        }
        async fn count(&self) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    fn batch(start: usize, n: usize) -> Vec<Outcome> {
        (start..start + n)
            .map(|i| Outcome::Embedded {
                facts: FileFacts {
                    job: Job {
                        seq: i,
                        path: PathBuf::from(format!("/p/{i}.jpg")),
                        label: "x".into(),
                    },
                    sha256: format!("{i:064x}"),
                    bytes: 1,
                    mtime_ms: None,
                    width: 1,
                    height: 1,
                    truncated: false,
                    note: None,
                },
                vector: vec![0.5, 0.5],
            })
            .collect()
    }

    #[test]
    fn fills_writes_across_batches_with_bounded_concurrency() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = Arc::new(Recorder::default());
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let handle = Indexer {
            store: Arc::clone(&store) as Arc<dyn VectorStore>,
            model: "m".into(),
            overwrite: false,
            stop: Arc::new(AtomicBool::new(false)),
            plan: BulkPlan {
                max_docs: 32,
                concurrency: 2,
                ..BulkPlan::default()
            },
        }
        .spawn(&rt, rx);
        for b in 0..40 {
            tx.blocking_send(batch(b * 8, 8)).unwrap();
        }
        drop(tx);
        let (summary, fatal) = rt.block_on(handle).unwrap();
        assert!(fatal.is_none());
        assert_eq!(summary.indexed, 320);
        let sizes = store.sizes.lock().unwrap().clone();
        assert!(sizes.iter().all(|&n| n == 32), "{sizes:?}");
        assert_eq!(
            store.most.load(Ordering::SeqCst),
            2,
            "two writes at once, not more"
        );
    }

    #[test]
    fn a_slow_trickle_is_written_after_max_wait() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = Arc::new(Recorder::default());
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let handle = Indexer {
            store: Arc::clone(&store) as Arc<dyn VectorStore>,
            model: "m".into(),
            overwrite: false,
            stop: Arc::new(AtomicBool::new(false)),
            plan: BulkPlan {
                max_wait: Duration::from_millis(20),
                ..BulkPlan::default()
            },
        }
        .spawn(&rt, rx);
        tx.blocking_send(batch(0, 3)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            *store.sizes.lock().unwrap(),
            vec![3],
            "written without waiting to fill"
        );
        drop(tx);
        let (summary, _) = rt.block_on(handle).unwrap();
        assert_eq!(summary.indexed, 3);
    }
}
