//! `imgvec eval`: how good the index is, on the user's own data.
//!
//! Two measurements:
//! - accuracy (`imgvec eval DIR... --label-from-dir | --label L`, in [`run`]): every labelled test
//!   image is classified both ways — the kNN vote and CLIP's zero-shot classifier — and each gets
//!   accuracy, per-label precision/recall/F1 and a confusion matrix. A test image whose exact bytes
//!   are in the index is left out of its own neighbours (and counted);
//! - what the approximate index loses (`--recall`, in [`recall`]): recall@k of the HNSW search
//!   against an exact search over the stored float vectors, with latency, per `num_candidates`.
//!
//! Steps: check the flags → open the model and the store → read the index's labels → find, label and
//! embed the test images → classify → report (`report`). Not for: the arithmetic (`crate::eval`).

pub mod recall;
mod report;

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::classify::{
    embed_options, index_labels, num_candidates, KnnClassifier, ZeroShotClassifier,
};
use super::images::{self, QueryImage, TrueLabels};
use super::{check_store_model, exit, open_model, open_store, runtime, PARTIAL_FAILURE};
use crate::cli::EvalArgs;
use crate::progress::Progress;
use crate::store::LabelCount;
pub use report::Accuracy;

pub fn run(args: &EvalArgs) -> Result<ExitCode> {
    if args.recall {
        return recall::run(args);
    }
    let labels = match (&args.label, args.label_from_dir) {
        (Some(l), _) => TrueLabels::Fixed(l),
        (None, true) => TrueLabels::FromDir,
        (None, false) => bail!(
            "say where the test images' true labels come from: --label-from-dir (./test/cats/x.jpg → \
cats) or --label L"
        ),
    };
    let k = args.options.k as usize;
    let num_candidates = match args.num_candidates.as_slice() {
        [] => num_candidates(None, k)?,
        [n] => num_candidates(Some(*n), k)?,
        _ => {
            bail!("--num-candidates takes one value when measuring accuracy (a list with --recall)")
        }
    };
    let quiet = args.options.quiet || args.json;
    let (model, device) = open_model(&args.model, quiet)?;
    let rt = runtime()?;
    let store = rt.block_on(async { open_store(&args.store) })?;
    check_store_model(&rt, store.as_ref(), &args.store.index, &model)?;
    let index_labels = rt.block_on(index_labels(store.as_ref(), &args.store.index))?;

    let found = images::find(&args.paths, labels);
    check_test_labels(
        found.jobs.iter().map(|j| j.label.as_str()),
        &index_labels,
        &args.store.index,
    )?;
    // The prompts first: a bad template or a missing tokenizer fails before the long part.
    let names: Vec<String> = index_labels.iter().map(|l| l.label.clone()).collect();
    let zero_shot =
        ZeroShotClassifier::load(&model, &device, names.clone(), &args.options.template)?;
    let embedded = images::embed(
        found.jobs,
        &model,
        &device,
        &embed_options(&args.options, &args.model, quiet),
    )?;
    let mut failed = found.failed;
    failed.extend(embedded.failed);
    if embedded.images.is_empty() {
        images::report_failures(&failed);
        bail!("no test images could be embedded: nothing to evaluate");
    }

    let knn = KnnClassifier {
        store: store.as_ref(),
        k,
        num_candidates,
    };
    let mut result = Accuracy::new(&names);
    let mut progress = Progress::new(embedded.images.len() as u64, quiet, "classified");
    for image in &embedded.images {
        let ok = classify_one(&rt, &knn, &zero_shot, image, &mut result)?;
        progress.advance(u64::from(ok), u64::from(!ok));
        if !ok {
            failed.push((image.path.clone(), "no neighbours found".into()));
        }
    }
    progress.finish();
    result.print(args.json, k)?;
    images::report_failures(&failed);
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        exit(PARTIAL_FAILURE)
    })
}

/// Classifies one test image both ways and counts it; false when kNN found no neighbour.
fn classify_one(
    rt: &tokio::runtime::Runtime,
    knn: &KnnClassifier<'_>,
    zero_shot: &ZeroShotClassifier,
    image: &QueryImage,
    result: &mut Accuracy,
) -> Result<bool> {
    let (by_knn, excluded) = rt.block_on(knn.classify(&image.vector, Some(&image.sha256)))?;
    let Some(by_knn) = by_knn else {
        return Ok(false);
    };
    result.excluded_self += u64::from(excluded);
    result.knn.add(&image.label, &by_knn.label);
    if let Some(p) = zero_shot.classify(&image.vector) {
        result.zero_shot.add(&image.label, &p.label);
    }
    Ok(true)
}

/// Fails, naming them, when test images carry labels the index lacks: no classifier could ever
/// predict those, so the accuracy would be meaningless.
fn check_test_labels<'a>(
    test: impl Iterator<Item = &'a str>,
    index: &[LabelCount],
    index_name: &str,
) -> Result<()> {
    let mut missing: Vec<(&str, usize)> = Vec::new();
    for label in test {
        if index.iter().any(|l| l.label == label) {
            continue;
        }
        match missing.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => missing.push((label, 1)),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = missing
        .iter()
        .map(|(l, n)| format!("'{l}' ({n} image(s))"))
        .collect();
    let have: Vec<&str> = index.iter().map(|l| l.label.as_str()).collect();
    bail!(
        "the test images have label(s) that index '{index_name}' lacks: {}. The index has: {}. \
Ingest training images with those labels, or leave those test images out",
        list.join(", "),
        have.join(", ")
    )
}
