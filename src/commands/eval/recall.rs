//! `imgvec eval --recall`: what the approximate (int8 HNSW) index loses, so a user can pick
//! `num_candidates` with numbers.
//!
//! For each query vector — indexed documents sampled with a fixed seed, or the embeddings of images
//! the user names — the exact top-k over the stored float vectors ([`VectorStore::exact_knn`]) is
//! compared with the approximate top-k ([`VectorStore::knn`]) at every `num_candidates`, giving
//! recall@k and latency p50/p99 per setting. With `--label`, both searches are filtered to that
//! label (the queries still come from the whole index: most ask for neighbours far from
//! themselves, the hard case for a filtered search). A query that is itself in the index is left
//! out of both its result lists (it would otherwise always find itself). [`measure`] is the core, also used
//! by the benchmark. Not for: accuracy (`eval` without `--recall`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::super::classify::embed_options;
use super::super::images::{self, TrueLabels};
use super::super::{check_store_model, exit, open_model, open_store, runtime, PARTIAL_FAILURE};
use crate::cli::EvalArgs;
use crate::eval::recall::{sample_positions, RecallSetting, RecallTally};
use crate::progress::Progress;
use crate::store::MAX_NUM_CANDIDATES;
use crate::store::{KnnQuery, StoreError, VectorStore};

/// The default `num_candidates` settings compared.
pub const DEFAULT_SETTINGS: [usize; 6] = [10, 20, 50, 100, 200, 500];

/// Documents read per page while sampling queries from the index.
const SCAN_PAGE: usize = 500;

/// One query: a vector, and its id when it is an indexed document (left out of its own results).
#[derive(Debug, Clone)]
pub struct RecallQuery {
    pub id: Option<String>,
    pub vector: Vec<f32>,
}

/// What `eval --recall` reports.
#[derive(Debug, Clone, Serialize)]
pub struct RecallReport {
    pub k: usize,
    pub queries: usize,
    /// The label both searches were filtered to, if any.
    pub label: Option<String>,
    pub settings: Vec<RecallSetting>,
}

pub fn run(args: &EvalArgs) -> Result<ExitCode> {
    let k = args.options.k as usize;
    let settings = settings(&args.num_candidates, k)?;
    let quiet = args.options.quiet || args.json;
    let rt = runtime()?;
    let store = rt.block_on(async { open_store(&args.store) })?;
    let total = rt.block_on(store.count())?;
    if total == 0 {
        bail!(
            "index '{}' is empty ({}): ingest images first",
            args.store.index,
            store.describe()
        );
    }
    let mut failed = Vec::new();
    let (queries, source) = if args.paths.is_empty() {
        let n = args.queries as usize;
        let q = rt.block_on(sample_queries(store.as_ref(), total, n, args.seed))?;
        let what = format!("sampled from {total} indexed documents, seed {}", args.seed);
        (q, what)
    } else {
        let (model, device) = open_model(&args.model, quiet)?;
        check_store_model(&rt, store.as_ref(), &args.store.index, &model)?;
        let found = images::find(&args.paths, TrueLabels::None);
        let opts = embed_options(&args.options, &args.model, quiet);
        let embedded = images::embed(found.jobs, &model, &device, &opts)?;
        failed.extend(found.failed);
        failed.extend(embedded.failed);
        let q = embedded
            .images
            .into_iter()
            .map(|i| RecallQuery {
                id: Some(i.sha256),
                vector: i.vector,
            })
            .collect();
        (q, "the given images".to_string())
    };
    if queries.is_empty() {
        images::report_failures(&failed);
        bail!("no query vectors: nothing to measure");
    }
    let label = args.label.as_deref();
    if let Some(label) = label {
        let labels = rt.block_on(store.labels())?;
        if !labels.iter().any(|l| l.label == label) {
            bail!(
                "--label {label:?}: no document of index '{}' has that label ({})",
                args.store.index,
                store.describe()
            );
        }
    }
    let mut progress = Progress::new(queries.len() as u64, quiet, "queries");
    let report = rt.block_on(measure(
        store.as_ref(),
        &queries,
        k,
        &settings,
        label,
        |n| progress.advance(n, 0),
    ))?;
    progress.finish();
    print_report(&report, &source, total, args.json)?;
    images::report_failures(&failed);
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        exit(PARTIAL_FAILURE)
    })
}

/// The `num_candidates` settings: as given (each checked against k and Elasticsearch's limit), or
/// the defaults that are at least k (and k itself when none is).
pub fn settings(given: &[u32], k: usize) -> Result<Vec<usize>> {
    let mut out: Vec<usize> = if given.is_empty() {
        DEFAULT_SETTINGS
            .iter()
            .copied()
            .filter(|&n| n >= k)
            .collect()
    } else {
        for &n in given {
            if (n as usize) < k {
                bail!("--num-candidates {n} is below -k ({k}): each setting must be at least k");
            }
            if n as usize > MAX_NUM_CANDIDATES {
                bail!(
                    "--num-candidates {n} is above Elasticsearch's limit of {MAX_NUM_CANDIDATES}"
                );
            }
        }
        given.iter().map(|&n| n as usize).collect()
    };
    if out.is_empty() {
        out.push(k.min(MAX_NUM_CANDIDATES));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// `n` indexed documents chosen with `seed` among the `total` (by position in id order), read with
/// a scan of the whole index.
pub async fn sample_queries(
    store: &dyn VectorStore,
    total: u64,
    n: usize,
    seed: u64,
) -> Result<Vec<RecallQuery>, StoreError> {
    let wanted = sample_positions(total, n, seed);
    let mut out = Vec::with_capacity(wanted.len());
    let mut scan = store.scan(SCAN_PAGE, None).await?;
    let mut position = 0u64;
    let mut next = wanted.iter().peekable();
    let result = loop {
        if next.peek().is_none() {
            break Ok(());
        }
        let page = match scan.next_page().await {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        if page.is_empty() {
            break Ok(());
        }
        for doc in page {
            if next.peek() == Some(&&position) {
                next.next();
                out.push(RecallQuery {
                    id: Some(doc.id),
                    vector: doc.vector,
                });
            }
            position += 1;
        }
    };
    let closed = scan.close().await;
    result?;
    closed?;
    Ok(out)
}

/// The core: for every query, the exact top-k and the approximate top-k at each setting (both of
/// `label` only, if given); recall@k and latency per setting. `progress` is told of each query done.
pub async fn measure(
    store: &dyn VectorStore,
    queries: &[RecallQuery],
    k: usize,
    settings: &[usize],
    label: Option<&str>,
    mut progress: impl FnMut(u64),
) -> Result<RecallReport, StoreError> {
    let mut tallies = vec![RecallTally::default(); settings.len()];
    let label = label.map(str::to_string);
    if let Some(first) = queries.first() {
        // Warm-up, not timed: loads what the first search loads (the embedded store's graph).
        store
            .knn(&query(&first.vector, k, k, label.clone()))
            .await?;
    }
    for q in queries {
        let extra = usize::from(q.id.is_some());
        let own = q.id.as_deref();
        let exact = store
            .exact_knn(&query(&q.vector, k + extra, k + extra, label.clone()))
            .await?;
        let exact = top_ids(exact.into_iter().map(|h| h.id), own, k);
        for (tally, &nc) in tallies.iter_mut().zip(settings) {
            let t = Instant::now();
            let found = store
                .knn(&query(
                    &q.vector,
                    k + extra,
                    nc.max(k + extra),
                    label.clone(),
                ))
                .await?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            tally.add(
                &top_ids(found.into_iter().map(|h| h.id), own, k),
                &exact,
                ms,
            );
        }
        progress(1);
    }
    Ok(RecallReport {
        k,
        queries: queries.len(),
        label,
        settings: tallies
            .iter()
            .zip(settings)
            .map(|(t, &nc)| t.finish(nc))
            .collect(),
    })
}

fn query(vector: &[f32], k: usize, num_candidates: usize, label: Option<String>) -> KnnQuery {
    KnnQuery {
        vector: vector.to_vec(),
        k,
        num_candidates,
        label,
    }
}

/// The first `k` ids other than `own`.
fn top_ids(ids: impl Iterator<Item = String>, own: Option<&str>, k: usize) -> Vec<String> {
    ids.filter(|id| Some(id.as_str()) != own).take(k).collect()
}

fn print_report(report: &RecallReport, source: &str, total: u64, as_json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let written = if as_json {
        let v = serde_json::to_value(report).context("report to JSON")?;
        writeln!(out, "{v}")
    } else {
        write_table(&mut out, report, source, total)
    };
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

fn write_table(
    out: &mut impl Write,
    r: &RecallReport,
    source: &str,
    total: u64,
) -> std::io::Result<()> {
    let within = match &r.label {
        Some(label) => format!(", both filtered to label {label:?}"),
        None => String::new(),
    };
    writeln!(
        out,
        "recall@{} of the approximate kNN search against an exact search over the {total} stored \
vectors{within}; {} queries ({source})",
        r.k, r.queries
    )?;
    let head = format!("recall@{}", r.k);
    let w = head.len().max(6);
    writeln!(
        out,
        "{:>14}  {head:>w$}  {:>8}  {:>8}",
        "num_candidates", "p50 ms", "p99 ms"
    )?;
    for s in &r.settings {
        writeln!(
            out,
            "{:>14}  {:>w$.4}  {:>8.2}  {:>8.2}",
            s.num_candidates, s.recall, s.p50_ms, s.p99_ms
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_those_at_least_k() {
        assert_eq!(settings(&[], 10).unwrap(), DEFAULT_SETTINGS.to_vec());
        assert_eq!(settings(&[], 60).unwrap(), vec![100, 200, 500]);
        assert_eq!(settings(&[], 1000).unwrap(), vec![1000]);
        assert_eq!(settings(&[50, 20, 50], 10).unwrap(), vec![20, 50]);
        assert!(settings(&[5], 10).is_err());
        assert!(settings(&[20_000], 10).is_err());
    }

    #[test]
    fn own_id_is_left_out() {
        let ids = ["q", "a", "b", "c"].map(String::from);
        assert_eq!(top_ids(ids.clone().into_iter(), Some("q"), 2), ["a", "b"]);
        assert_eq!(top_ids(ids.into_iter(), None, 2), ["q", "a"]);
    }
}
