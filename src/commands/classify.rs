//! `imgvec classify`: a label for unlabelled images, by the vote of their nearest indexed images
//! (default) or by CLIP's zero-shot classifier over the labels in the index (`--zero-shot`).
//!
//! The steps, in [`run`]: open the model and the store (checking the index's vector size before any
//! weights load) → read the labels in the index → find and embed the images → classify each → print
//! path, label, confidence and runner-up (or one JSON object per image). The two classifiers,
//! [`KnnClassifier`] and [`ZeroShotClassifier`], are shared with `eval`; the arithmetic is in
//! `crate::eval`. Not for: measuring accuracy (`eval`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use serde_json::json;

use super::images::{self, EmbedOptions, TrueLabels};
use super::{check_store_model, exit, open_model, open_store, runtime, PARTIAL_FAILURE};
use crate::cli::{ClassifyArgs, ClassifyOptions, ModelArgs};
use crate::clip::{ModelDir, TextEncoder};
use crate::eval::{vote, zero_shot, Prediction};
use crate::store::{default_num_candidates, MAX_NUM_CANDIDATES};
use crate::store::{KnnQuery, LabelCount, StoreError, VectorStore};

pub fn run(args: &ClassifyArgs) -> Result<ExitCode> {
    let quiet = args.options.quiet || args.json;
    let k = args.options.k as usize;
    let num_candidates = num_candidates(args.num_candidates, k)?;
    let (model, device) = open_model(&args.model, quiet)?;
    let rt = runtime()?;
    let store = rt.block_on(async { open_store(&args.store) })?;
    check_store_model(&rt, store.as_ref(), &args.store.index, &model)?;
    let labels = rt.block_on(index_labels(store.as_ref(), &args.store.index))?;

    let zero_shot = if args.zero_shot {
        let names: Vec<String> = labels.iter().map(|l| l.label.clone()).collect();
        Some(ZeroShotClassifier::load(
            &model,
            &device,
            names,
            &args.options.template,
        )?)
    } else {
        None
    };
    let found = images::find(&args.paths, TrueLabels::None);
    let mut failed = found.failed;
    let embedded = images::embed(
        found.jobs,
        &model,
        &device,
        &embed_options(&args.options, &args.model, quiet),
    )?;
    failed.extend(embedded.failed);

    let knn = KnnClassifier {
        store: store.as_ref(),
        k,
        num_candidates,
    };
    let mut results = Vec::with_capacity(embedded.images.len());
    for image in &embedded.images {
        let prediction = match &zero_shot {
            Some(z) => z.classify(&image.vector),
            None => rt.block_on(knn.classify(&image.vector, None))?.0,
        };
        match prediction {
            Some(p) => results.push((image.path.display().to_string(), p)),
            None => failed.push((image.path.clone(), "no neighbours found".into())),
        }
    }
    print_predictions(&results, args.json)?;
    images::report_failures(&failed);
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        exit(PARTIAL_FAILURE)
    })
}

/// The kNN search's `num_candidates`: as given (checked) or max(100, 10·k).
pub fn num_candidates(given: Option<u32>, k: usize) -> Result<usize> {
    match given {
        Some(n) if (n as usize) < k => bail!("--num-candidates ({n}) must be at least -k ({k})"),
        Some(n) if n as usize > MAX_NUM_CANDIDATES => {
            bail!("--num-candidates ({n}) is above Elasticsearch's limit of {MAX_NUM_CANDIDATES}")
        }
        Some(n) => Ok(n as usize),
        None => Ok(default_num_candidates(k)),
    }
}

pub fn embed_options(opts: &ClassifyOptions, model: &ModelArgs, quiet: bool) -> EmbedOptions {
    EmbedOptions {
        batch_size: opts.batch_size,
        apply_exif: !model.ignore_exif_orientation,
        quiet,
    }
}

/// The labels in the index with their counts; an error a user can act on when there are none.
pub async fn index_labels(store: &dyn VectorStore, index: &str) -> Result<Vec<LabelCount>> {
    let labels = store.labels().await?;
    if labels.iter().all(|l| l.count == 0) {
        bail!(
            "index '{index}' holds no labelled images ({}): ingest some first, e.g. \
`imgvec ingest ./train --label-from-dir`",
            store.describe()
        );
    }
    Ok(labels)
}

/// The k nearest indexed images vote (see `crate::eval::vote`).
pub struct KnnClassifier<'a> {
    pub store: &'a dyn VectorStore,
    pub k: usize,
    pub num_candidates: usize,
}

impl KnnClassifier<'_> {
    /// The label the neighbours of `vector` vote for; `exclude` (an image's own id) is left out of
    /// its neighbours, and the flag says whether it was there. `None` when no neighbour was found.
    pub async fn classify(
        &self,
        vector: &[f32],
        exclude: Option<&str>,
    ) -> Result<(Option<Prediction>, bool), StoreError> {
        let extra = usize::from(exclude.is_some());
        let k = self.k + extra;
        let hits = self
            .store
            .knn(&KnnQuery {
                vector: vector.to_vec(),
                k,
                num_candidates: self.num_candidates.max(k),
                label: None,
            })
            .await?;
        let excluded = hits.iter().any(|h| Some(h.id.as_str()) == exclude);
        let hits: Vec<_> = hits
            .into_iter()
            .filter(|h| Some(h.id.as_str()) != exclude)
            .take(self.k)
            .collect();
        let prediction = vote::knn_vote(hits.iter().map(|h| (h.label.as_str(), h.score)));
        Ok((prediction, excluded))
    }
}

/// The model's zero-shot classifier over a fixed set of labels (see `crate::eval::zero_shot`).
pub struct ZeroShotClassifier {
    labels: Vec<String>,
    texts: Vec<Vec<f32>>,
    scoring: zero_shot::Scoring,
}

impl ZeroShotClassifier {
    /// Embeds one prompt per label with the text tower; `logit_scale` (and SigLIP's `logit_bias`)
    /// come from the checkpoint.
    pub fn load(
        model: &ModelDir,
        device: &Device,
        labels: Vec<String>,
        template: &str,
    ) -> Result<Self> {
        let prompts = labels
            .iter()
            .map(|l| zero_shot::prompt(template, l))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        let scoring = zero_shot::Scoring {
            logit_scale: model.logit_scale()?,
            logit_bias: model.logit_bias()?,
        };
        let encoder = TextEncoder::load(model, device)?;
        let mut texts = Vec::with_capacity(prompts.len());
        for p in &prompts {
            let e = encoder
                .embed(p)
                .with_context(|| format!("embedding the prompt {p:?}"))?;
            if e.truncated {
                eprintln!("imgvec: warning: the prompt {p:?} was truncated to the model's context");
            }
            texts.push(e.vector);
        }
        Ok(Self {
            labels,
            texts,
            scoring,
        })
    }

    pub fn classify(&self, vector: &[f32]) -> Option<Prediction> {
        zero_shot::classify(vector, &self.labels, &self.texts, self.scoring)
    }
}

fn print_predictions(results: &[(String, Prediction)], as_json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let written = if as_json {
        results.iter().try_for_each(|(path, p)| {
            let scores: serde_json::Map<String, serde_json::Value> = p
                .scores
                .iter()
                .map(|(l, w)| (l.clone(), json!(w)))
                .collect();
            let line = json!({"path": path, "label": p.label, "confidence": p.confidence,
                              "scores": scores});
            writeln!(out, "{line}")
        })
    } else {
        print_table(&mut out, results)
    };
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

fn print_table(out: &mut impl Write, results: &[(String, Prediction)]) -> std::io::Result<()> {
    if results.is_empty() {
        return Ok(());
    }
    let runner = |p: &Prediction| match p.runner_up() {
        Some((l, share)) => format!("{l} ({share:.4})"),
        None => "-".to_string(),
    };
    let lw = results
        .iter()
        .map(|(_, p)| p.label.len())
        .max()
        .unwrap_or(0);
    let lw = lw.max("label".len());
    let rw = results
        .iter()
        .map(|(_, p)| runner(p).len())
        .max()
        .unwrap_or(0);
    let rw = rw.max("runner-up".len());
    writeln!(
        out,
        "{:<lw$}  {:>10}  {:<rw$}  path",
        "label", "confidence", "runner-up"
    )?;
    for (path, p) in results {
        writeln!(
            out,
            "{:<lw$}  {:>10.4}  {:<rw$}  {path}",
            p.label,
            p.confidence,
            runner(p)
        )?;
    }
    Ok(())
}
