//! The indexer: a tokio task that writes each batch of embedded images to the store while the model
//! works on the next, and accounts for every outcome it is handed.
//!
//! A write that fails as a whole (server unreachable after retries, credentials refused) stops the
//! ingest: the stop flag is set, and every later embedded image is reported as not indexed. Not for:
//! embedding, or deciding which files to embed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::Receiver;
use tokio::task::JoinHandle;

use super::summary::Summary;
use crate::pipeline::{FileFacts, Outcome};
use crate::store::{ImageDoc, StoreError, VectorStore};

/// What the indexer needs to know besides the outcomes.
pub struct Indexer {
    pub store: Arc<dyn VectorStore>,
    /// The model's name, stored with each vector.
    pub model: String,
    /// Overwrite documents that exist (`--force`).
    pub overwrite: bool,
    pub stop: Arc<AtomicBool>,
}

/// The indexer's account, and the error that stopped it, if any.
pub type IndexerResult = (Summary, Option<StoreError>);

impl Indexer {
    /// Starts the task; it ends when the sending side of `batches` is dropped.
    pub fn spawn(
        self,
        rt: &tokio::runtime::Runtime,
        mut batches: Receiver<Vec<Outcome>>,
    ) -> JoinHandle<IndexerResult> {
        rt.spawn(async move {
            let mut s = Summary::default();
            let mut fatal: Option<StoreError> = None;
            while let Some(batch) = batches.recv().await {
                let docs = self.account(batch, &mut s);
                if docs.is_empty() {
                    continue;
                }
                if fatal.is_some() {
                    for (_, path) in docs {
                        s.fail(&path, "not indexed: the store was unreachable");
                    }
                    continue;
                }
                if let Err(e) = self.write(docs, &mut s).await {
                    self.stop.store(true, Ordering::SeqCst);
                    fatal = Some(e);
                }
            }
            (s, fatal)
        })
    }

    /// Counts what needs no writing; returns the documents to write, each with its file's path.
    fn account(&self, batch: Vec<Outcome>, s: &mut Summary) -> Vec<(ImageDoc, PathBuf)> {
        let mut docs = Vec::new();
        for o in batch {
            match o {
                Outcome::Failed { job, reason } => s.fail(&job.path, reason),
                Outcome::Known { .. } => s.already_present += 1,
                Outcome::OtherShard { .. } => s.other_shards += 1,
                Outcome::Embedded { facts, vector } => {
                    let path = facts.job.path.clone();
                    if facts.truncated {
                        s.warn(&path, "truncated: indexed what its data holds");
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
            vector,
            bytes: facts.bytes,
            width: facts.width,
            height: facts.height,
            model: self.model.clone(),
            indexed_at_ms: now_ms(),
        }
    }

    /// Writes one batch; per-item failures are counted, a failure of the whole call is returned.
    async fn write(
        &self,
        docs: Vec<(ImageDoc, PathBuf)>,
        s: &mut Summary,
    ) -> Result<(), StoreError> {
        let (docs, paths): (Vec<ImageDoc>, Vec<PathBuf>) = docs.into_iter().unzip();
        match self.store.upsert(&docs, self.overwrite).await {
            Ok(report) => {
                s.indexed += report.indexed.len();
                s.already_present += report.already_present.len();
                let path_of: HashMap<&str, &PathBuf> =
                    docs.iter().map(|d| d.id.as_str()).zip(&paths).collect();
                for (id, reason) in report.failed {
                    let path = path_of
                        .get(id.as_str())
                        .map(|p| p.to_path_buf())
                        .unwrap_or_else(|| PathBuf::from(&id));
                    s.fail(&path, reason);
                }
                Ok(())
            }
            Err(e) => {
                for path in &paths {
                    s.fail(path, format!("not indexed: {e}"));
                }
                Err(e)
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
