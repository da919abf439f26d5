//! `imgvec search`: the images nearest to a query image, a text, or both combined.
//!
//! A combined query is the sum of the unit vectors of the image and each `--text`, minus each
//! `--minus`, L2-normalized again. The label filter runs inside the kNN search. Checks the index's
//! vector size against the model's before loading any weights.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{check_store_model, open_model, open_store_for_one_query, runtime};
use crate::cli::SearchArgs;
use crate::clip::{combine, ImageEncoder, TextEncoder};
use crate::pipeline::prepare_bytes;
use crate::store::{default_num_candidates, within, Hit, KnnQuery, MAX_NUM_CANDIDATES};
use crate::walk::absolute;

pub fn run(args: &SearchArgs) -> Result<ExitCode> {
    let (model, device) = open_model(&args.model, args.json)?;
    let k = args.k as usize;
    let num_candidates = match args.num_candidates {
        Some(n) if (n as usize) < k => bail!("--num-candidates ({n}) must be at least -k ({k})"),
        Some(n) if n as usize > MAX_NUM_CANDIDATES => {
            bail!("--num-candidates ({n}) is above Elasticsearch's limit of {MAX_NUM_CANDIDATES}")
        }
        Some(n) => n as usize,
        None => default_num_candidates(k),
    };
    let rt = runtime()?;
    let store = rt.block_on(async { open_store_for_one_query(&args.store) })?;
    check_store_model(&rt, store.as_ref(), &args.store.index, &model)?;

    let mut parts: Vec<(Vec<f32>, f32)> = Vec::new();
    if let Some(image) = &args.image {
        let encoder = ImageEncoder::load(&model, &device)?;
        let path = absolute(image);
        let bytes =
            std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let (pixels, _, _) = prepare_bytes(
            &bytes,
            encoder.preprocess_config(),
            !args.model.ignore_exif_orientation,
        )
        .map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?;
        let v = encoder.embed_pixels(&[&pixels])?;
        let v = v
            .into_iter()
            .next()
            .context("the model returned no vector")?;
        parts.push((v, 1.0));
    }
    if !args.text.is_empty() || !args.minus.is_empty() {
        let encoder = TextEncoder::load(&model, &device)?;
        for (texts, sign) in [(&args.text, 1.0f32), (&args.minus, -1.0)] {
            for t in texts {
                let e = encoder.embed(t)?;
                if e.truncated {
                    eprintln!(
                        "imgvec: warning: {t:?} is longer than {} tokens and was truncated",
                        encoder.tokenizer().max_len()
                    );
                }
                parts.push((e.vector, sign));
            }
        }
    }
    // The towers are dropped by now, their memory handed back (`ReleaseOnDrop`): the peak is the
    // larger of a tower and the graph, not their sum.
    let Some(query) = combine(model.dims(), &parts) else {
        bail!("the query terms cancel out: nothing left to search for");
    };

    let found = rt.block_on(store.knn(&KnnQuery {
        vector: query,
        k,
        num_candidates,
        label: args.label.clone(),
    }))?;
    let cut_off = args
        .max_distance
        .or(args.min_score.map(crate::store::score_to_distance));
    let any = !found.is_empty();
    let hits = within(found, cut_off);
    print_hits(&hits, args.json)?;
    if hits.is_empty() && !args.json {
        let scope = match &args.label {
            Some(l) => format!(" with label '{l}'"),
            None => String::new(),
        };
        match cut_off {
            Some(d) if any => eprintln!(
                "imgvec: no images{scope} within distance {d} (score {:.4}) of the query",
                crate::store::distance_to_score(d)
            ),
            _ => eprintln!("imgvec: no images{scope} in index '{}'", args.store.index),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_hits(hits: &[Hit], as_json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if as_json {
        for (i, h) in hits.iter().enumerate() {
            let line = json!({"rank": i + 1, "score": h.score, "distance": h.distance(),
                              "id": h.id, "label": h.label, "path": h.path,
                              "other_paths": h.other_paths});
            writeln!(out, "{line}")?;
        }
    } else if !hits.is_empty() {
        let w = hits.iter().map(|h| h.label.len()).max().unwrap_or(5).max(5);
        writeln!(
            out,
            "{:>4}  {:>7}  {:>8}  {:<w$}  path",
            "rank", "score", "distance", "label"
        )?;
        for (i, h) in hits.iter().enumerate() {
            writeln!(
                out,
                "{:>4}  {:>7.4}  {:>8.4}  {:<w$}  {}",
                i + 1,
                h.score,
                h.distance(),
                h.label,
                h.path
            )?;
            // The same bytes at other paths.
            for p in &h.other_paths {
                writeln!(out, "{:>4}  {:>7}  {:>8}  {:<w$}  {p}", "", "", "", "=")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn num_candidates_default() {
        assert_eq!(default_num_candidates(1), 100);
        assert_eq!(default_num_candidates(10), 100);
        assert_eq!(default_num_candidates(50), 500);
        assert_eq!(default_num_candidates(5000), 10_000);
        assert_eq!(default_num_candidates(10_000), 10_000);
    }
}
