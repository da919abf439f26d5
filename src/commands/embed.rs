//! `imgvec embed`: print the CLIP embedding of each image (or of a text), one per line.
//!
//! Unreadable or undecodable files are reported on stderr, one line each naming the file and why;
//! every other file is still embedded, and the exit status is non-zero. Output is in input order.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

use super::{exit, open_model, preview, secs, PARTIAL_FAILURE};
use crate::cli::EmbedArgs;
use crate::clip::{ImageEncoder, TextEncoder};
use crate::pipeline::{default_workers, run_model, spawn_prepare, spawn_read, Job, Outcome};
use crate::walk::find_images;

pub fn run(args: &EmbedArgs) -> Result<ExitCode> {
    let (model, device) = open_model(&args.model, args.json)?;
    if let Some(text) = &args.text {
        return embed_text(&model, &device, text, args.json);
    }
    let t0 = Instant::now();
    let encoder = ImageEncoder::load(&model, &device)?;
    if !args.json {
        eprintln!("imgvec: model loaded in {:.2} s", secs(t0));
    }
    let (jobs, problems) = find_jobs(args);
    let total = jobs.len();
    let batch_size = crate::device::batch_size(args.batch_size, &device);
    let rx = spawn_prepare(
        spawn_read(jobs, 2, batch_size, Arc::new(AtomicBool::new(false))),
        encoder.preprocess_config().clone(),
        args.model.decode_options(args.allow_truncated),
        default_workers(),
        2 * batch_size,
    );
    let t1 = Instant::now();
    let mut printer = InOrder::new(args.json);
    run_model(rx, &encoder, batch_size, |batch| printer.take(batch));
    printer.finish()?;
    let failed = problems + printer.failed;
    if !args.json {
        let n = total.saturating_sub(printer.failed.min(total));
        let warnings = if printer.warned > 0 {
            format!(", {} truncated (warnings above)", printer.warned)
        } else {
            String::new()
        };
        eprintln!(
            "imgvec: embedded {n} image(s) in {:.2} s, {failed} failed{warnings}",
            secs(t1)
        );
    }
    Ok(if failed > 0 {
        exit(PARTIAL_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

/// The images under the paths as jobs in input order, and how many paths failed (each named on
/// stderr).
fn find_jobs(args: &EmbedArgs) -> (Vec<Job>, usize) {
    let walk = find_images(&args.paths);
    for (path, why) in &walk.problems {
        eprintln!("imgvec: {}: {why}", path.display());
    }
    let jobs = walk
        .images
        .into_iter()
        .enumerate()
        .map(|(seq, f)| Job {
            seq,
            path: f.path,
            label: String::new(),
        })
        .collect();
    (jobs, walk.problems.len())
}

/// Prints the model's results in input order (they come back in batches, not in order): one line
/// per image on stdout, failures and warnings on stderr.
struct InOrder {
    json: bool,
    pending: BTreeMap<usize, Outcome>,
    next: usize,
    failed: usize,
    warned: usize,
    stdout: std::io::StdoutLock<'static>,
    write_error: Option<std::io::Error>,
}

impl InOrder {
    fn new(json: bool) -> Self {
        Self {
            json,
            pending: BTreeMap::new(),
            next: 0,
            failed: 0,
            warned: 0,
            stdout: std::io::stdout().lock(),
            write_error: None,
        }
    }

    /// Takes a batch and prints what is next in order; `false` stops the model (stdout is gone).
    fn take(&mut self, batch: Vec<Outcome>) -> bool {
        for o in batch {
            self.pending.insert(o.seq(), o);
        }
        while let Some(o) = self.pending.remove(&self.next) {
            self.next += 1;
            if let Err(e) = self.print(o) {
                self.write_error = Some(e);
                return false;
            }
        }
        true
    }

    fn print(&mut self, o: Outcome) -> std::io::Result<()> {
        match o {
            Outcome::Embedded { facts, vector } => {
                let path = facts.job.path.display().to_string();
                if facts.truncated {
                    self.warned += 1;
                    eprintln!("imgvec: warning: {path}: truncated; embedded what it holds");
                }
                if self.json {
                    writeln!(
                        self.stdout,
                        "{}",
                        json!({"path": path, "embedding": vector})
                    )
                } else {
                    writeln!(self.stdout, "{path}\t{}", preview(&vector))
                }
            }
            Outcome::Failed { job, reason } => {
                self.failed += 1;
                eprintln!("imgvec: {}: {reason}", job.path.display());
                Ok(())
            }
            // Not produced without a skip-known stage.
            Outcome::Known { .. } | Outcome::OtherShard { .. } => Ok(()),
        }
    }

    /// Flushes stdout; a write error other than a closed pipe (`| head`) is an error.
    fn finish(&mut self) -> Result<()> {
        if let Some(e) = self.write_error.take() {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(e).context("writing to stdout");
            }
        }
        self.stdout.flush().ok();
        Ok(())
    }
}

/// `embed --text`: one text's embedding.
fn embed_text(
    model: &crate::clip::ModelDir,
    device: &candle_core::Device,
    text: &str,
    json: bool,
) -> Result<ExitCode> {
    let encoder = TextEncoder::load(model, device)?;
    let emb = encoder.embed(text)?;
    if emb.truncated {
        eprintln!(
            "imgvec: warning: the text is longer than {} tokens and was truncated",
            encoder.tokenizer().max_len()
        );
    }
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", json!({"text": text, "embedding": emb.vector}))?;
    } else {
        writeln!(out, "{text:?}\t{}", preview(&emb.vector))?;
    }
    Ok(ExitCode::SUCCESS)
}
