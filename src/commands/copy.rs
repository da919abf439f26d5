//! `imgvec copy`: move an index to another store — embedded → Elasticsearch, back, or between
//! clusters — with every document's vector, label, path and metadata, and no model at all.
//!
//! The steps, in [`copy_index`]: the source's vector size and count → the target index created
//! with that size (or an existing one checked: same size, same model) → the source read in id
//! order a page at a time ([`VectorStore::scan`]: Elasticsearch's point-in-time with
//! `search_after`) → of each page, what the target lacks written with `create` (so a rerun after an
//! interruption writes only what is missing, and nothing is ever overwritten) → refresh → the
//! final count check. [`run`] is the command around it: the two stores from the flags, progress,
//! the summary.
//!
//! Not for: re-embedding (vectors are copied as stored, bit for bit) or merging indices of
//! different models (refused).

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::{exit, open_store_as, runtime, PARTIAL_FAILURE};
use crate::cli::{CopyArgs, StoreArgs};
use crate::progress::Progress;
use crate::store::{EnsureOutcome, ImageDoc, IndexSpec, ModelRecord, StoreError, VectorStore};

/// How a copy runs.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Documents per page read and per write.
    pub batch: usize,
    /// Stop after writing this many documents (a rerun goes on from there).
    pub limit: Option<u64>,
}

/// What a copy did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CopyReport {
    /// Documents in the source when the copy began, and read from it.
    pub source_documents: u64,
    pub read: u64,
    /// Whether the target index was created by this copy.
    pub created_index: bool,
    pub target_before: u64,
    pub target_after: u64,
    /// Documents written, and those the target had already (an earlier, interrupted copy).
    pub written: u64,
    pub already_present: u64,
    /// (id, reason) of documents the target refused.
    pub failed: Vec<(String, String)>,
    /// Stopped by `--limit` before the end.
    pub stopped_at_limit: bool,
    /// The whole copy, and of it the final refresh: for the embedded store, the time its search
    /// graph took to take in the rows already written (they were searchable meanwhile).
    pub seconds: f64,
    pub refresh_seconds: f64,
    pub docs_per_second: f64,
}

impl CopyReport {
    /// Whether every source document is in the target, by the counts.
    pub fn complete(&self) -> bool {
        !self.stopped_at_limit
            && self.failed.is_empty()
            && self.written + self.already_present == self.read
            && self.target_after >= self.source_documents
    }
}

pub fn run(args: &CopyArgs) -> Result<ExitCode> {
    let target_args = target_store_args(args);
    refuse_same_index(&args.store, &target_args)?;
    let rt = runtime()?;
    let source = open_store_as(&args.store, "").context("source")?;
    let target = open_store_as(&target_args, target_env_prefix()).context("target")?;
    if !args.quiet {
        eprintln!(
            "imgvec: copying {} → {}",
            source.describe(),
            target.describe()
        );
    }
    let opts = CopyOptions {
        batch: args.batch_size as usize,
        limit: args.limit,
    };
    let total = rt.block_on(source.count()).context("source")?;
    let mut progress = Progress::new(total, args.quiet, "copied");
    let report = rt.block_on(copy_index(source.as_ref(), target.as_ref(), &opts, |n| {
        progress.advance(n, 0)
    }));
    progress.finish();
    let report = report?;
    print_report(&report, args.json);
    Ok(if report.complete() {
        ExitCode::SUCCESS
    } else {
        exit(PARTIAL_FAILURE)
    })
}

/// The target's store flags: `--to-*`, the index name defaulting to the source's.
fn target_store_args(args: &CopyArgs) -> StoreArgs {
    StoreArgs {
        store: args.to_store.clone(),
        es_url: args.to_es_url.clone(),
        cloud_id: None,
        index: args
            .to_index
            .clone()
            .unwrap_or_else(|| args.store.index.clone()),
        ca_cert: args.to_ca_cert.clone(),
        insecure: args.to_insecure,
        timeout: args.store.timeout,
        max_retries: args.store.max_retries,
    }
}

/// Target credentials: `IMGVEC_TO_ELASTIC_*` when any is set (two clusters), else the usual ones.
fn target_env_prefix() -> &'static str {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
    if set("IMGVEC_TO_ELASTIC_PASSWORD") || set("IMGVEC_TO_ELASTIC_API_KEY") {
        "IMGVEC_TO_"
    } else {
        ""
    }
}

/// Copying an index onto itself is refused (and one embedded store directory cannot be opened
/// twice: it is locked by the first).
fn refuse_same_index(source: &StoreArgs, target: &StoreArgs) -> Result<()> {
    match (source.elastic_url()?, target.elastic_url()?) {
        (Some(a), Some(b))
            if a.trim_end_matches('/') == b.trim_end_matches('/')
                && source.index == target.index =>
        {
            bail!(
                "source and target are the same index ('{}' at {a}): give another --to-index",
                source.index
            )
        }
        (None, None) => {
            let dir = |a: &StoreArgs| crate::data_dir::store_dir(a.store.as_deref());
            let (a, b) = (dir(source)?, dir(target)?);
            if same_dir(&a, &b) {
                bail!(
                    "source and target are the same store directory {}: copy to another --to-store \
(one directory is opened by one imgvec at a time)",
                    a.display()
                );
            }
        }
        _ => {}
    }
    Ok(())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => crate::walk::absolute(a) == crate::walk::absolute(b),
    }
}

/// Copies every document of `source` into `target` (see the module doc); `done(n)` is told of each
/// page's `n` documents.
pub async fn copy_index(
    source: &dyn VectorStore,
    target: &dyn VectorStore,
    opts: &CopyOptions,
    mut done: impl FnMut(u64),
) -> Result<CopyReport> {
    let t0 = Instant::now();
    let dims = source.index_dims().await.context("source")?;
    let mut report = CopyReport {
        source_documents: source.count().await.context("source")?,
        ..CopyReport::default()
    };
    let model = source.index_model().await.context("source")?;
    report.created_index = prepare_target(target, dims, model.as_ref()).await?;
    report.target_before = target.count().await.context("target")?;
    let target_model = first_model(target).await.context("target")?;
    let mut scan = source
        .scan(opts.batch.max(1), None)
        .await
        .context("source")?;
    let copied = copy_pages(
        scan.as_mut(),
        target,
        opts,
        target_model,
        &mut report,
        &mut done,
    )
    .await;
    // The point-in-time is released whatever happened.
    let closed = scan.close().await;
    copied?;
    closed.context("source: closing the scan")?;
    let refreshing = Instant::now();
    target.refresh().await.context("target")?;
    report.refresh_seconds = refreshing.elapsed().as_secs_f64();
    report.target_after = target.count().await.context("target")?;
    report.seconds = t0.elapsed().as_secs_f64();
    report.docs_per_second = report.written as f64 / report.seconds.max(1e-9);
    Ok(report)
}

/// Creates the target index for `dims`-d vectors (recording the source's model, if it has one),
/// or checks the existing one, which must not remember another model; whether it was made.
async fn prepare_target(
    target: &dyn VectorStore,
    dims: usize,
    model: Option<&ModelRecord>,
) -> Result<bool> {
    let spec = IndexSpec {
        model: model.cloned(),
        ..IndexSpec::for_dims(dims)
    };
    let created = match target.index_dims().await {
        Ok(d) if d != dims => bail!(
            "target {} holds {d}-d vectors and the source {dims}-d ones: copy to another index",
            target.describe()
        ),
        Ok(_) => {
            target.ensure_index(&spec).await?;
            false
        }
        Err(StoreError::IndexMissing { .. }) => {
            matches!(target.ensure_index(&spec).await?, EnsureOutcome::Created)
        }
        Err(e) => return Err(anyhow::Error::new(e).context("target")),
    };
    if let Some(model) = model {
        // A target without a record takes the source's; the same model's record gains the
        // source's precisions.
        let recorded = match target.index_model().await.context("target")? {
            Some(r) if !r.same_model(model) || r.new_precisions(model).is_empty() => r,
            _ => target.adopt_model(model).await.context("target")?,
        };
        if !recorded.same_model(model) {
            bail!(
                "target {} was filled by model {} and the source by model {}: their vectors are not comparable; copy to another index",
                target.describe(),
                recorded.describe(),
                model.describe()
            );
        }
    }
    Ok(created)
}

/// The model of the first document of `store`, if it has any.
async fn first_model(store: &dyn VectorStore) -> Result<Option<String>, StoreError> {
    let mut scan = store.scan(1, None).await?;
    let page = scan.next_page().await;
    scan.close().await?;
    Ok(page?.first().map(|d| d.model.clone()))
}

/// The page loop: reads, skips what the target has, writes the rest, until the end or the limit.
async fn copy_pages(
    scan: &mut dyn crate::store::DocScan,
    target: &dyn VectorStore,
    opts: &CopyOptions,
    target_model: Option<String>,
    report: &mut CopyReport,
    done: &mut impl FnMut(u64),
) -> Result<()> {
    loop {
        let page = scan.next_page().await.context("source")?;
        if page.is_empty() {
            return Ok(());
        }
        if let Some(model) = &target_model {
            if let Some(d) = page.iter().find(|d| &d.model != model) {
                bail!(
                    "the target's vectors are from model '{model}' and the source's from '{}' \
(document {}): vectors of different models cannot be searched together; copy to another index",
                    d.model,
                    d.id
                );
            }
        }
        let page_len = page.len() as u64;
        report.read += page_len;
        let mut todo = missing_from(target, page).await?;
        report.already_present += page_len - todo.len() as u64;
        if let Some(limit) = opts.limit {
            let room = limit.saturating_sub(report.written) as usize;
            if todo.len() >= room {
                todo.truncate(room);
                report.stopped_at_limit = true;
            }
        }
        let written = target.upsert(&todo, false).await.context("target")?;
        report.written += written.indexed.len() as u64;
        report.already_present += written.already_present.len() as u64;
        report.failed.extend(written.failed);
        done(page_len);
        if report.stopped_at_limit {
            return Ok(());
        }
    }
}

/// The documents of `page` the target does not have yet (so a rerun reads again but writes only
/// what is missing; `create` still guards against a writer in between).
async fn missing_from(target: &dyn VectorStore, page: Vec<ImageDoc>) -> Result<Vec<ImageDoc>> {
    let ids: Vec<String> = page.iter().map(|d| d.id.clone()).collect();
    let present = target.existing_ids(&ids).await.context("target")?;
    Ok(page
        .into_iter()
        .filter(|d| !present.contains(&d.id))
        .collect())
}

fn print_report(r: &CopyReport, as_json: bool) {
    if as_json {
        match serde_json::to_string(r) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("imgvec: cannot print the summary: {e}"),
        }
        return;
    }
    for (id, why) in &r.failed {
        eprintln!("imgvec: failed: {id}: {why}");
    }
    println!(
        "copied {} ({} already there, {} failed) of {} read; source {} document(s), target {} → {}; {:.1} s, {:.0} docs/s",
        r.written,
        r.already_present,
        r.failed.len(),
        r.read,
        r.source_documents,
        r.target_before,
        r.target_after,
        r.seconds,
        r.docs_per_second
    );
    if r.refresh_seconds >= 1.0 {
        println!(
            "of which {:.1} s bringing the target's search graph up to date (written documents are searchable before)",
            r.refresh_seconds
        );
    }
    if r.stopped_at_limit {
        println!("stopped at --limit: run the same command again to go on");
    } else if !r.complete() {
        println!("the target holds fewer documents than the source: run the same command again");
    }
}
