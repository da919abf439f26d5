//! Query images for the commands that classify them (`classify`, `eval`): find the files, give each
//! its true label where there is one, and embed them with the vision tower, in input order.
//!
//! Each file is read and hashed once (the hash is the id it would have in the index, so `eval` can
//! leave a test image out of its own neighbours). A progress bar runs while embedding. Not for:
//! writing to the index (that is `ingest`) or classifying (`classify`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Result;
use candle_core::Device;

use crate::clip::{ImageEncoder, ModelDir};
use crate::pipeline::{default_workers, run_model, spawn_prepare, spawn_read, Job, Outcome};
use crate::progress::Progress;
use crate::walk::find_images;

/// Where the true label of each image comes from.
#[derive(Debug, Clone, Copy)]
pub enum TrueLabels<'a> {
    /// Unlabelled images (`classify`).
    None,
    /// The same label for every image (`--label`).
    Fixed(&'a str),
    /// The name of each image's folder (`--label-from-dir`).
    FromDir,
}

/// One embedded image.
#[derive(Debug, Clone)]
pub struct QueryImage {
    pub path: PathBuf,
    /// The true label (empty for unlabelled images).
    pub label: String,
    /// SHA-256 of the file's bytes: its id if it is in the index.
    pub sha256: String,
    pub vector: Vec<f32>,
}

/// The images found under some paths, before embedding.
#[derive(Debug, Default)]
pub struct Found {
    pub jobs: Vec<Job>,
    /// Files that could not be walked, read or labelled, with why.
    pub failed: Vec<(PathBuf, String)>,
}

/// What embedding found.
#[derive(Debug, Default)]
pub struct Embedded {
    /// In input order.
    pub images: Vec<QueryImage>,
    pub failed: Vec<(PathBuf, String)>,
}

/// Walks `paths` and labels each image.
pub fn find(paths: &[PathBuf], labels: TrueLabels<'_>) -> Found {
    let walk = find_images(paths);
    let mut found = Found {
        jobs: Vec::with_capacity(walk.images.len()),
        failed: walk.problems,
    };
    for f in walk.images {
        let path = f.path;
        let label = match (labels, f.parent_name) {
            (TrueLabels::None, _) => String::new(),
            (TrueLabels::Fixed(l), _) => l.to_string(),
            (TrueLabels::FromDir, Some(p)) => p,
            (TrueLabels::FromDir, None) => {
                found
                    .failed
                    .push((path, "no parent folder to take a label from".into()));
                continue;
            }
        };
        found.jobs.push(Job {
            seq: found.jobs.len(),
            path,
            label,
        });
    }
    found
}

/// How to embed.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// `--batch-size`; `None`: the device's default.
    pub batch_size: Option<u32>,
    pub apply_exif: bool,
    pub quiet: bool,
}

/// Embeds `jobs` (the model loads only when there is at least one), with a progress bar.
pub fn embed(
    jobs: Vec<Job>,
    model: &ModelDir,
    device: &Device,
    opts: &EmbedOptions,
) -> Result<Embedded> {
    let mut out = Embedded::default();
    if jobs.is_empty() {
        return Ok(out);
    }
    let encoder = ImageEncoder::load(model, device)?;
    let batch_size = crate::device::batch_size(opts.batch_size, device);
    let mut progress = Progress::new(jobs.len() as u64, opts.quiet, "embedded");
    let rx = spawn_prepare(
        spawn_read(jobs, 2, batch_size, Arc::new(AtomicBool::new(false))),
        encoder.preprocess_config().clone(),
        crate::image::DecodeOptions {
            apply_exif_orientation: opts.apply_exif,
            allow_truncated: false,
        },
        default_workers(),
        2 * batch_size,
    );
    let mut by_seq: BTreeMap<usize, Outcome> = BTreeMap::new();
    run_model(rx, &encoder, batch_size, |batch| {
        let failed = batch
            .iter()
            .filter(|o| matches!(o, Outcome::Failed { .. }))
            .count() as u64;
        progress.advance(batch.len() as u64 - failed, failed);
        by_seq.extend(batch.into_iter().map(|o| (o.seq(), o)));
        true
    });
    progress.finish();
    for outcome in by_seq.into_values() {
        match outcome {
            Outcome::Embedded { facts, vector } => out.images.push(QueryImage {
                path: facts.job.path,
                label: facts.job.label,
                sha256: facts.sha256,
                vector,
            }),
            Outcome::Failed { job, reason } => out.failed.push((job.path, reason)),
            // Not produced without the skip-known and shard stages, which this path does not run.
            other => out.failed.push((
                other.job().path.clone(),
                "internal error: skipped by a stage this command does not run".into(),
            )),
        }
    }
    Ok(out)
}

/// Prints one line per failed file on stderr.
pub fn report_failures(failed: &[(PathBuf, String)]) {
    for (path, why) in failed {
        eprintln!("imgvec: {}: {why}", path.display());
    }
}
