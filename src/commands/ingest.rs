//! `imgvec ingest`: embed every image under the given paths and index it, resumably.
//!
//! Steps: check the index exists with the model's vector size; walk; hash every file (parallel) and
//! ask the store which hashes it already has, so a rerun embeds only what is missing (`--force`
//! re-embeds everything); run the pipeline (prepare workers → model in full batches) while a tokio
//! task indexes each finished batch; refresh; print a summary. Ctrl-C stops reading new files, indexes
//! what is already embedded and prints the summary (a second Ctrl-C exits at once). Because the
//! document id is the hash of the file's bytes and documents are written with `create`, re-running is
//! idempotent and one label never overwrites another.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::{check_dims, exit, open_model, open_store, runtime, INTERRUPTED, PARTIAL_FAILURE};
use crate::cli::IngestArgs;
use crate::clip::ImageEncoder;
use crate::pipeline::{default_workers, hash_files, run_model, spawn_prepare, Outcome};
use crate::store::{ImageDoc, StoreError, VectorStore};
use crate::walk::{absolute, find_images, ImageFile};

/// The final account of an ingest.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub found: usize,
    pub indexed: usize,
    pub already_present: usize,
    pub failed: usize,
    pub skipped_not_images: usize,
    pub interrupted: bool,
    pub seconds: f64,
    pub images_per_second: f64,
    /// (path, reason) for each failure.
    pub failures: Vec<(String, String)>,
}

impl Summary {
    fn fail(&mut self, path: &std::path::Path, reason: impl Into<String>) {
        self.failed += 1;
        self.failures
            .push((path.display().to_string(), reason.into()));
    }
}

/// How progress is shown: a bar on a terminal, a line now and then otherwise, or nothing.
enum Progress {
    Bar {
        bar: ProgressBar,
        failed: u64,
    },
    Lines {
        last: Instant,
        total: u64,
        done: u64,
        failed: u64,
        start: Instant,
    },
    Quiet,
}

impl Progress {
    fn new(total: u64, quiet: bool) -> Self {
        if quiet {
            return Progress::Quiet;
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            Progress::Bar { bar, failed: 0 }
        } else {
            let now = Instant::now();
            Progress::Lines {
                last: now,
                total,
                done: 0,
                failed: 0,
                start: now,
            }
        }
    }

    fn advance(&mut self, done: u64, failed: u64) {
        match self {
            Progress::Bar {
                bar,
                failed: total_failed,
            } => {
                bar.inc(done + failed);
                if failed > 0 {
                    *total_failed += failed;
                    bar.set_message(format!("{total_failed} failed"));
                }
            }
            Progress::Lines {
                last,
                total,
                done: d,
                failed: f,
                start,
            } => {
                *d += done;
                *f += failed;
                if last.elapsed() >= Duration::from_secs(10) || *d + *f == *total {
                    *last = Instant::now();
                    let rate = *d as f64 / start.elapsed().as_secs_f64().max(1e-9);
                    eprintln!(
                        "imgvec: {}/{} embedded, {} failed, {rate:.2} img/s",
                        *d, *total, *f
                    );
                }
            }
            Progress::Quiet => {}
        }
    }

    fn finish(&self) {
        if let Progress::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn run(args: &IngestArgs) -> Result<ExitCode> {
    let t0 = Instant::now();
    let (model, device) = open_model(&args.model, args.quiet)?;
    let rt = runtime()?;
    let store: Arc<dyn VectorStore> = Arc::from(rt.block_on(async { open_store(&args.store) })?);
    rt.block_on(check_dims(store.as_ref(), &args.store.index, model.dims()))?;

    // Ctrl-C: first stops the reading, second exits at once.
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let (stop, interrupted) = (Arc::clone(&stop), Arc::clone(&interrupted));
        rt.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\nimgvec: interrupted: finishing what is embedded (Ctrl-C again to quit now)"
                );
                interrupted.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(i32::from(INTERRUPTED));
                }
            }
        });
    }

    let mut summary = Summary::default();
    let walk = find_images(&args.paths);
    summary.skipped_not_images = walk.skipped;
    summary.found = walk.images.len();
    for (path, why) in &walk.problems {
        summary.fail(path, why.clone());
    }

    // Label of each file.
    let mut labelled: Vec<(ImageFile, String)> = Vec::with_capacity(walk.images.len());
    for f in walk.images {
        let label = match (&args.label, &f.parent_name) {
            (Some(l), _) => l.clone(),
            (None, Some(p)) => p.clone(),
            (None, None) => {
                summary.fail(&f.path, "no parent folder to take a label from");
                continue;
            }
        };
        labelled.push((
            ImageFile {
                path: absolute(&f.path),
                parent_name: f.parent_name,
            },
            label,
        ));
    }

    // Hash everything first, so that what the index already has is never embedded again.
    let files: Vec<ImageFile> = labelled.iter().map(|(f, _)| f.clone()).collect();
    let hashes = hash_files(&files, default_workers(), Arc::clone(&stop));
    let mut first_of: HashMap<String, PathBuf> = HashMap::new();
    let mut candidates: Vec<(ImageFile, String, String)> = Vec::new(); // file, label, sha
    for ((file, label), h) in labelled.into_iter().zip(hashes) {
        match h {
            Ok((sha, _)) => {
                if first_of.contains_key(&sha) {
                    summary.already_present += 1; // the same bytes twice in this run
                } else {
                    first_of.insert(sha.clone(), file.path.clone());
                    candidates.push((file, label, sha));
                }
            }
            Err(_) if stop.load(Ordering::SeqCst) => {} // not read: interrupted
            Err(why) => summary.fail(&file.path, why),
        }
    }
    let present: HashSet<String> = if args.force || candidates.is_empty() {
        HashSet::new()
    } else {
        let ids: Vec<String> = candidates.iter().map(|c| c.2.clone()).collect();
        rt.block_on(store.existing_ids(&ids))?
    };
    let mut labels: HashMap<PathBuf, String> = HashMap::new();
    let mut todo: Vec<(usize, ImageFile)> = Vec::new();
    for (file, label, sha) in candidates {
        if present.contains(&sha) {
            summary.already_present += 1;
        } else {
            labels.insert(file.path.clone(), label);
            todo.push((todo.len(), file));
        }
    }
    if !args.quiet {
        eprintln!(
            "imgvec: {} image(s) found, {} already indexed, {} to embed",
            summary.found,
            summary.already_present,
            todo.len()
        );
    }

    if !todo.is_empty() && !stop.load(Ordering::SeqCst) {
        let t_load = Instant::now();
        let encoder = ImageEncoder::load(&model, &device)?;
        if !args.quiet {
            eprintln!(
                "imgvec: model loaded in {:.2} s",
                t_load.elapsed().as_secs_f64()
            );
        }
        let batch_size = args.batch_size as usize;
        let rx = spawn_prepare(
            todo.clone(),
            encoder.preprocess_config().clone(),
            !args.model.ignore_exif_orientation,
            default_workers(),
            2 * batch_size,
            Arc::clone(&stop),
        );
        let mut progress = Progress::new(todo.len() as u64, args.quiet);

        // The indexer: a tokio task that writes each finished batch while the model does the next.
        let (tx, mut batches) = tokio::sync::mpsc::channel::<Vec<Outcome>>(2);
        let model_name = model.name();
        let force = args.force;
        let indexer_store = Arc::clone(&store);
        let indexer_stop = Arc::clone(&stop);
        let indexer = rt.spawn(async move {
            let mut s = Summary::default();
            let mut fatal: Option<StoreError> = None;
            while let Some(batch) = batches.recv().await {
                let mut docs = Vec::new();
                let mut paths: HashMap<String, PathBuf> = HashMap::new();
                for o in batch {
                    match o {
                        Outcome::Failed(f) => s.fail(&f.path, f.reason),
                        Outcome::Embedded { facts, vector } => {
                            let label = labels.get(&facts.file.path).cloned().unwrap_or_default();
                            paths.insert(facts.sha256.clone(), facts.file.path.clone());
                            docs.push(ImageDoc {
                                id: facts.sha256,
                                label,
                                path: facts.file.path.display().to_string(),
                                vector,
                                bytes: facts.bytes,
                                width: facts.width,
                                height: facts.height,
                                model: model_name.clone(),
                                indexed_at_ms: now_ms(),
                            });
                        }
                    }
                }
                if docs.is_empty() {
                    continue;
                }
                if fatal.is_some() {
                    for d in &docs {
                        s.fail(
                            std::path::Path::new(&d.path),
                            "not indexed: the server was unreachable",
                        );
                    }
                    continue;
                }
                match indexer_store.upsert(&docs, force).await {
                    Ok(report) => {
                        s.indexed += report.indexed.len();
                        s.already_present += report.already_present.len();
                        for (id, reason) in report.failed {
                            let path = paths
                                .get(&id)
                                .cloned()
                                .unwrap_or_else(|| PathBuf::from(&id));
                            s.fail(&path, reason);
                        }
                    }
                    Err(e) => {
                        for d in &docs {
                            s.fail(std::path::Path::new(&d.path), format!("not indexed: {e}"));
                        }
                        indexer_stop.store(true, Ordering::SeqCst);
                        fatal = Some(e);
                    }
                }
            }
            (s, fatal)
        });

        run_model(rx, &encoder, batch_size, |batch| {
            let failed = batch
                .iter()
                .filter(|o| matches!(o, Outcome::Failed(_)))
                .count() as u64;
            progress.advance(batch.len() as u64 - failed, failed);
            tx.blocking_send(batch).is_ok()
        });
        drop(tx);
        progress.finish();
        let (s, fatal) = rt.block_on(indexer)?;
        summary.indexed += s.indexed;
        summary.already_present += s.already_present;
        summary.failed += s.failed;
        summary.failures.extend(s.failures);
        if let Some(e) = fatal {
            eprintln!(
                "imgvec: error: {e}. Run the same command again to resume: what was indexed stays."
            );
        }
    }

    if summary.indexed > 0 {
        if let Err(e) = rt.block_on(store.refresh()) {
            eprintln!("imgvec: warning: refresh failed ({e}): new images may take a moment to show in search");
        }
    }
    summary.interrupted = interrupted.load(Ordering::SeqCst);
    summary.seconds = t0.elapsed().as_secs_f64();
    summary.images_per_second = summary.indexed as f64 / summary.seconds.max(1e-9);
    print_summary(&summary, args.json);
    Ok(if summary.failed > 0 {
        exit(PARTIAL_FAILURE)
    } else if summary.interrupted {
        exit(INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_summary(s: &Summary, as_json: bool) {
    if as_json {
        match serde_json::to_string(s) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("imgvec: cannot print the summary: {e}"),
        }
        return;
    }
    for (path, why) in &s.failures {
        eprintln!("imgvec: failed: {path}: {why}");
    }
    let interrupted = if s.interrupted {
        " (interrupted: run again to resume)"
    } else {
        ""
    };
    println!(
        "indexed {}, already present {}, failed {}, not images {}; {:.1} s, {:.2} img/s{interrupted}",
        s.indexed, s.already_present, s.failed, s.skipped_not_images, s.seconds, s.images_per_second
    );
}
