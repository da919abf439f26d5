//! `imgvec ingest`: embed every image under the given paths and index it, resumably.
//!
//! The steps, in [`run`]: open the model and the store (creating a missing index with the model's
//! vector size) → find the images and give each its label → read and hash each file once, skipping
//! what the index already has → decode and preprocess → embed in full batches → index each batch
//! while the next is embedded → refresh → summary. Re-running resumes: the document id is the hash of
//! the file's bytes and documents are written with `create`, so nothing is embedded twice and one
//! label never overwrites another (`--force` re-embeds and overwrites). Ctrl-C stops reading new
//! files, indexes what is already embedded and prints the summary; a second Ctrl-C exits at once.
//! Not for: how files are decoded (`image`), embedded (`clip`) or stored (`store`).

mod bulk_load;
mod disappeared;
pub mod indexer;
mod summary;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use candle_core::Device;

use super::{
    exit, model_record, on_ctrl_c, open_index, open_model, runtime, INTERRUPTED, PARTIAL_FAILURE,
};
use crate::cli::IngestArgs;
use crate::clip::{ImageEncoder, ModelDir};
use crate::pipeline::{
    default_workers, first_work, run_model, spawn_prepare, spawn_read, spawn_skip_known, Flow, Job,
    Outcome,
};
use crate::progress::Progress;
use crate::store::VectorStore;
use crate::walk::find_images;
use bulk_load::{BulkLoad, Slot};
use indexer::{BulkPlan, Indexer};
pub use summary::Summary;

/// Hashes asked about in one existence check.
const KNOWN_CHUNK: usize = 64;

pub fn run(args: &IngestArgs) -> Result<ExitCode> {
    let t0 = Instant::now();
    let (model, device) = open_model(&args.model, args.quiet)?;
    let rt = runtime()?;
    let store = open_index(
        &rt,
        &args.store,
        &model_record(&model)?,
        args.quiet,
        |cfg| cfg.bulk_concurrency = args.bulk_concurrency,
    )?;
    let slot = Slot::default();
    // The second Ctrl-C puts back the settings bulk-load mode changed (if any) before it exits.
    let (stop, interrupted) = on_ctrl_c(&rt, "interrupted: finishing what is embedded", {
        let slot = Arc::clone(&slot);
        async move { bulk_load::restore_before_exit(&slot).await }
    });

    let mut summary = Summary::default();
    let jobs = find_jobs(args, &mut summary);
    if !args.quiet {
        eprintln!("imgvec: {} image(s) found", summary.found);
    }
    let bulk_load = begin_bulk_load(args, &rt, &store, &slot, jobs.len());
    summary.disappeared = disappeared(&rt, store.as_ref(), args, &jobs, &summary);
    if !jobs.is_empty() {
        let engine = Engine {
            model: &model,
            device: &device,
            rt: &rt,
            store: &store,
            stop: &stop,
            encoder: &EncoderSlot::default(),
        };
        let work = Work {
            args,
            engine: &engine,
        };
        summary.add(work.embed_and_index(jobs)?);
    }
    if let Some(load) = bulk_load {
        load.finish();
    }
    if summary.indexed > 0 {
        if let Err(e) = rt.block_on(store.refresh()) {
            eprintln!("imgvec: warning: refresh failed ({e}): new images may take a moment to show in search");
        }
    }
    summary.interrupted = interrupted.load(Ordering::SeqCst);
    summary.seconds = t0.elapsed().as_secs_f64();
    summary.images_per_second = summary.indexed as f64 / summary.seconds.max(1e-9);
    summary.print(args.json);
    Ok(if summary.failed > 0 {
        exit(PARTIAL_FAILURE)
    } else if summary.interrupted {
        exit(INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    })
}

/// How many indexed files under the paths are gone (`None`, with a warning, if that cannot be told).
fn disappeared(
    rt: &tokio::runtime::Runtime,
    store: &dyn VectorStore,
    args: &IngestArgs,
    jobs: &[Job],
    summary: &Summary,
) -> Option<usize> {
    let seen: std::collections::HashSet<String> = jobs
        .iter()
        .map(|j| j.path.display().to_string())
        .chain(summary.failures.iter().map(|(p, _)| p.clone()))
        .collect();
    match rt.block_on(disappeared::count_disappeared(store, &args.paths, &seen)) {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("imgvec: warning: cannot tell which indexed files are gone: {e}");
            None
        }
    }
}

/// Bulk-load mode if asked (`--bulk-load`) or for a large first load, on a store that has it.
fn begin_bulk_load(
    args: &IngestArgs,
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn VectorStore>,
    slot: &Slot,
    images: usize,
) -> Option<BulkLoad> {
    if args.no_bulk_load || images == 0 {
        return None;
    }
    let count = || rt.block_on(store.count()).ok();
    let auto = !args.bulk_load && images >= bulk_load::AUTO_BULK_LOAD_IMAGES;
    if !bulk_load::wanted(args.bulk_load, images, if auto { count() } else { None }) {
        return None;
    }
    BulkLoad::begin(rt.handle(), store, slot, args.force_merge, args.quiet)
}

/// Walks the paths; every image found becomes a job with its path (absolute: the walk makes it so)
/// and its label.
fn find_jobs(args: &IngestArgs, summary: &mut Summary) -> Vec<Job> {
    jobs_of(find_images(&args.paths), args.label.as_deref(), summary)
}

/// The jobs of what a walk found, each with its label (`label`, else its folder's name).
pub fn jobs_of(
    walk: crate::walk::WalkResult,
    label: Option<&str>,
    summary: &mut Summary,
) -> Vec<Job> {
    summary.skipped_not_images = walk.skipped;
    summary.found = walk.images.len();
    for (path, why) in &walk.problems {
        summary.fail(path, why.clone());
    }
    let mut jobs = Vec::with_capacity(walk.images.len());
    for f in walk.images {
        let path = f.path;
        let label = match (label, f.parent_name) {
            (Some(l), _) => l.to_string(),
            (None, Some(p)) => p,
            (None, None) => {
                summary.fail(&path, "no parent folder to take a label from");
                continue;
            }
        };
        jobs.push(Job {
            seq: jobs.len(),
            path,
            label,
        });
    }
    jobs
}

/// The vision tower once loaded: an ingest loads it only when something needs embedding, and a
/// `watch` keeps it (or shares `serve`'s) from one batch of changes to the next.
#[derive(Default)]
pub struct EncoderSlot(std::sync::Mutex<Option<Arc<ImageEncoder>>>);

impl EncoderSlot {
    /// A slot holding an encoder loaded elsewhere.
    pub fn with(encoder: Arc<ImageEncoder>) -> Self {
        Self(std::sync::Mutex::new(Some(encoder)))
    }
}

/// What stays open from one ingest to the next: the model, the store, the stop flag, the encoder
/// once loaded (`watch` runs many ingests over one engine).
pub struct Engine<'a> {
    pub model: &'a ModelDir,
    pub device: &'a Device,
    pub rt: &'a tokio::runtime::Runtime,
    pub store: &'a Arc<dyn VectorStore>,
    pub stop: &'a Arc<AtomicBool>,
    pub encoder: &'a EncoderSlot,
}

/// One ingest: what to ingest and how, on an engine.
pub struct Work<'a> {
    pub args: &'a IngestArgs,
    pub engine: &'a Engine<'a>,
}

impl Work<'_> {
    /// Reads, skips what is known, prepares, embeds and indexes `jobs`; returns their account.
    pub fn embed_and_index(&self, jobs: Vec<Job>) -> Result<Summary> {
        let batch_size = crate::device::batch_size(self.args.batch_size, self.engine.device);
        let mut progress = Progress::new(jobs.len() as u64, self.args.quiet, "done");
        let prepared = spawn_prepare(
            self.skip_known(spawn_read(
                jobs,
                2,
                batch_size,
                Arc::clone(self.engine.stop),
            )),
            self.engine.model.preprocess_config()?,
            self.args.model.decode_options(self.args.allow_truncated),
            default_workers(),
            2 * batch_size,
        );
        let (tx, batches) = tokio::sync::mpsc::channel::<Vec<Outcome>>(2);
        let indexer = Indexer {
            store: Arc::clone(self.engine.store),
            model: self.engine.model.name(),
            overwrite: self.args.force,
            stop: Arc::clone(self.engine.stop),
            plan: BulkPlan {
                concurrency: self.args.bulk_concurrency,
                ..BulkPlan::default()
            },
        }
        .spawn(self.engine.rt, batches);
        let mut send = |batch: Vec<Outcome>| {
            let failed = batch
                .iter()
                .filter(|o| matches!(o, Outcome::Failed { .. }))
                .count() as u64;
            progress.advance(batch.len() as u64 - failed, failed);
            tx.blocking_send(batch).is_ok()
        };
        // The model loads only when there is something to embed (a rerun over an indexed folder
        // reads and hashes, and loads no weights).
        if let Some(first) = first_work(&prepared, |o| send(vec![o])) {
            let encoder = self.load_encoder()?;
            let input = std::iter::once(Flow::Next(first)).chain(prepared.iter());
            run_model(input, &encoder, batch_size, &mut send);
        }
        drop(tx);
        progress.finish();
        let (summary, fatal) = self.engine.rt.block_on(indexer)?;
        if let Some(e) = fatal {
            eprintln!(
                "imgvec: error: {e}. Run the same command again to resume: what was indexed stays."
            );
        }
        Ok(summary)
    }

    /// The skip-known stage, asking the store (nothing is skipped with `--force`).
    fn skip_known(
        &self,
        read: std::sync::mpsc::Receiver<Flow<crate::pipeline::ReadFile>>,
    ) -> std::sync::mpsc::Receiver<Flow<crate::pipeline::ReadFile>> {
        let store = Arc::clone(self.engine.store);
        let handle = self.engine.rt.handle().clone();
        let force = self.args.force;
        let shard = self.args.shard;
        spawn_skip_known(
            read,
            KNOWN_CHUNK,
            shard,
            Arc::clone(self.engine.stop),
            move |ids| {
                if force {
                    return Ok(Default::default());
                }
                handle
                    .block_on(store.existing_ids(ids))
                    .map_err(|e| e.to_string())
            },
        )
    }

    /// The encoder in the slot, loaded into it first if it is empty.
    fn load_encoder(&self) -> Result<Arc<ImageEncoder>> {
        let mut slot = self
            .engine
            .encoder
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(encoder) = slot.as_ref() {
            return Ok(Arc::clone(encoder));
        }
        let t = Instant::now();
        let encoder = Arc::new(ImageEncoder::load(self.engine.model, self.engine.device)?);
        if !self.args.quiet {
            eprintln!("imgvec: model loaded in {:.2} s", t.elapsed().as_secs_f64());
        }
        *slot = Some(Arc::clone(&encoder));
        Ok(encoder)
    }
}
