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
    let walk = find_images(&args.paths);
    let mut failed = walk.problems.len();
    for (path, why) in &walk.problems {
        eprintln!("imgvec: {}: {why}", path.display());
    }
    let jobs: Vec<Job> = walk
        .images
        .into_iter()
        .enumerate()
        .map(|(seq, f)| Job {
            seq,
            path: f.path,
            label: String::new(),
        })
        .collect();
    let total = jobs.len();
    let batch_size = crate::device::batch_size(args.batch_size, &device);
    let rx = spawn_prepare(
        spawn_read(jobs, 2, batch_size, Arc::new(AtomicBool::new(false))),
        encoder.preprocess_config().clone(),
        args.model.decode_options(args.allow_truncated),
        default_workers(),
        2 * batch_size,
    );

    // Results come back in batches, not necessarily in input order: print them in order.
    let mut pending: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut warned = 0usize;
    let mut next = 0usize;
    let mut stdout = std::io::stdout().lock();
    let mut write_error = None;
    let t1 = Instant::now();
    run_model(rx, &encoder, batch_size, |batch| {
        for o in batch {
            pending.insert(o.seq(), o);
        }
        while let Some(o) = pending.remove(&next) {
            next += 1;
            let r = match o {
                Outcome::Embedded { facts, vector } => {
                    let path = facts.job.path.display().to_string();
                    if facts.truncated {
                        warned += 1;
                        eprintln!("imgvec: warning: {path}: truncated; embedded what it holds");
                    }
                    if args.json {
                        writeln!(stdout, "{}", json!({"path": path, "embedding": vector}))
                    } else {
                        writeln!(stdout, "{path}\t{}", preview(&vector))
                    }
                }
                Outcome::Failed { job, reason } => {
                    failed += 1;
                    eprintln!("imgvec: {}: {reason}", job.path.display());
                    Ok(())
                }
                // Not produced without a skip-known stage.
                Outcome::Known { .. } | Outcome::OtherShard { .. } => Ok(()),
            };
            if let Err(e) = r {
                write_error = Some(e);
                return false;
            }
        }
        true
    });
    if let Some(e) = write_error {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("writing to stdout");
        }
    }
    stdout.flush().ok();
    if !args.json {
        let n = total.saturating_sub(failed.min(total));
        let warnings = if warned > 0 {
            format!(", {warned} truncated (warnings above)")
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
