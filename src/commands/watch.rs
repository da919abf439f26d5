//! `imgvec watch PATH...`: index what is new under the folders, then follow them.
//!
//! The steps, in [`run`]: the roots (each must exist) and the label rule → open the model and the
//! store (creating a missing index) → start following the folders (before the first sync, so
//! nothing that lands during it is missed) → the first sync: `prune`'s check of every document
//! under the roots (gone or changed files removed) and `ingest` of the roots (only what the index
//! lacks is embedded) → then, until Ctrl-C, each batch of settled changes (see `crate::watch`):
//! the documents under each changed path checked as `prune` checks them, and the paths that exist
//! ingested, one line per change. The model loads at the first image to embed and stays loaded.
//! [`Follow`] is also what `serve --watch` runs, on a thread of its own.
//!
//! Not for: noticing changes (`crate::watch`), embedding or storing (`ingest`'s steps do).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::json;

use super::ingest::{jobs_of, EncoderSlot, Engine, Summary, Work};
use super::prune::check::{roots, Root};
use super::prune::{check_all, docs_under, remove_paths};
use super::{exit, model_record, on_ctrl_c, open_index, open_model, runtime, INTERRUPTED};
use crate::cli::{FollowOptions, IngestArgs, ModelArgs, StoreArgs, WatchArgs};
use crate::store::DocPath;
use crate::walk::{find_changed_images, find_images};
use crate::watch::{Change, Follower, Notice};

/// How long one wait for file-system events lasts (also how soon Ctrl-C is noticed).
const TICK: Duration = Duration::from_millis(200);
/// The pause before changes whose indexing failed for the whole batch (the store away) are
/// tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// The embedded store needs no refresh to show new documents; its graph file is saved this often
/// while following (and on exit), not after every change.
const LOCAL_REFRESH_EVERY: Duration = Duration::from_secs(300);

pub fn run(args: &WatchArgs) -> Result<ExitCode> {
    check_label_rule(&args.follow)?;
    let roots: Vec<PathBuf> = roots(&args.paths)?.into_iter().map(|r| r.path).collect();
    for root in &roots {
        if !root.is_dir() {
            bail!(
                "{}: not a folder (watch follows folders; `imgvec ingest` takes files)",
                root.display()
            );
        }
    }
    let (model, device) = open_model(&args.model, args.quiet)?;
    let rt = runtime()?;
    let store = open_index(&rt, &args.store, &model_record(&model)?, args.quiet, |_| {})?;
    // The first Ctrl-C stops following once the batch in hand is indexed.
    let (stop, interrupted) = on_ctrl_c(&rt, "stopping: finishing the changes in hand", async {});

    let follower = Follower::start(&roots, Duration::from_millis(args.follow.debounce_ms));
    let follow = Follow {
        opts: &args.follow,
        batch_size: args.batch_size,
        store_args: &args.store,
        model_args: &args.model,
        engine: Engine {
            model: &model,
            device: &device,
            rt: &rt,
            store: &store,
            stop: &stop,
            encoder: &EncoderSlot::default(),
        },
        out: Printer {
            json: args.json,
            to_stderr: false,
        },
    };
    let first = follow.sync_whole(&roots, args.quiet)?;
    if !args.json {
        first.print(false);
    }
    eprintln!(
        "imgvec: watching {} folder(s) for new, changed and removed images (Ctrl-C stops)",
        roots.len()
    );
    let failed = follow.follow(follower)?;
    Ok(if interrupted.load(Ordering::SeqCst) {
        exit(INTERRUPTED)
    } else if failed {
        exit(super::PARTIAL_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

/// Refuses a watch without a label rule (the store needs a label for every image).
pub fn check_label_rule(opts: &FollowOptions) -> Result<()> {
    if opts.label.is_none() && !opts.label_from_dir {
        bail!("give --label LABEL or --label-from-dir: every image indexed needs a label");
    }
    Ok(())
}

/// Prints one line (or JSON object) per change, to stdout (`watch`) or stderr (`serve --watch`).
pub struct Printer {
    pub json: bool,
    pub to_stderr: bool,
}

impl Printer {
    fn change(&self, what: &str, path: &str, detail: Option<&str>) {
        let line = if self.json {
            let mut v = json!({"change": what, "path": path});
            if let Some(d) = detail {
                v["detail"] = json!(d);
            }
            v.to_string()
        } else {
            match detail {
                Some(d) => format!("{what:<9}{path} ({d})"),
                None => format!("{what:<9}{path}"),
            }
        };
        if self.to_stderr {
            eprintln!("imgvec: watch: {line}");
        } else {
            println!("{line}");
        }
    }

    fn notice(&self, n: &Notice) {
        match n {
            Notice::RootGone(root) => eprintln!(
                "imgvec: warning: the watched folder {} is gone; its images stay indexed, and it is synced again when it is back",
                root.display()
            ),
            Notice::Polling { root, why } => eprintln!(
                "imgvec: warning: cannot watch every folder under {} through the OS: {why}. Polling it every 30 s instead",
                root.display()
            ),
            Notice::Error(e) => eprintln!("imgvec: warning: watching: {e}"),
        }
    }
}

/// A folder watch's open model and store, and how it indexes.
pub struct Follow<'a> {
    pub opts: &'a FollowOptions,
    pub batch_size: Option<u32>,
    pub store_args: &'a StoreArgs,
    pub model_args: &'a ModelArgs,
    pub engine: Engine<'a>,
    pub out: Printer,
}

impl Follow<'_> {
    /// Follows until `stop`; whether any change failed.
    pub fn follow(&self, mut follower: Follower) -> Result<bool> {
        let mut failed = false;
        let mut last_refresh = Instant::now();
        let local = self.is_local();
        while !self.engine.stop.load(Ordering::SeqCst) {
            let changes = follower.poll(TICK);
            for n in follower.notices() {
                self.out.notice(&n);
            }
            if changes.is_empty() {
                continue;
            }
            match self.apply(&changes) {
                Ok(f) => failed |= f,
                Err(e) => {
                    // The store may be away for a moment (a restarting cluster): the changes are
                    // taken up again after a pause, so none is lost.
                    eprintln!(
                        "imgvec: error: {e:#}; trying these {} change(s) again in {} s",
                        changes.len(),
                        RETRY_AFTER.as_secs()
                    );
                    follower.retry(&changes);
                    let until = Instant::now() + RETRY_AFTER;
                    while Instant::now() < until && !self.engine.stop.load(Ordering::SeqCst) {
                        std::thread::sleep(TICK);
                    }
                }
            }
            if local && last_refresh.elapsed() >= LOCAL_REFRESH_EVERY {
                self.refresh();
                last_refresh = Instant::now();
            }
        }
        self.refresh();
        Ok(failed)
    }

    fn is_local(&self) -> bool {
        matches!(self.store_args.elastic_url(), Ok(None))
    }

    /// Makes what was just written visible to search: Elasticsearch needs a refresh; the embedded
    /// store shows every committed write at once (its refresh only saves the graph file).
    fn make_visible(&self) {
        if !self.is_local() {
            self.refresh();
        }
    }

    /// Takes `going` out of the index and makes that visible, then says "removed" for each of
    /// `said`: a search after the line no longer finds them (said before it, one could still, as
    /// CI saw once).
    fn remove<'a>(
        &self,
        going: &[DocPath],
        said: impl IntoIterator<Item = &'a String>,
    ) -> Result<()> {
        if !going.is_empty() {
            self.engine
                .rt
                .block_on(remove_paths(self.engine.store.as_ref(), going))?;
            self.make_visible();
        }
        for path in said {
            self.out.change("removed", path, None);
        }
        Ok(())
    }

    fn refresh(&self) {
        if let Err(e) = self.engine.rt.block_on(self.engine.store.refresh()) {
            eprintln!("imgvec: warning: refresh failed ({e}): new images may take a moment to show in search");
        }
    }

    /// The first sync, or a root back after it was gone: prune under the roots, then ingest them.
    pub fn sync_whole(&self, roots: &[PathBuf], quiet: bool) -> Result<Summary> {
        let root_list: Vec<Root> = roots
            .iter()
            .map(|r| super::prune::check::root_of(r.clone(), true))
            .collect();
        let docs = self
            .engine
            .rt
            .block_on(docs_under(self.engine.store.as_ref(), &root_list))?;
        let (pruned, going) = check_all(&docs, quiet);
        self.remove(&going, pruned.gone.iter().chain(&pruned.changed))?;
        let mut summary = Summary::default();
        let jobs = jobs_of(find_images(roots), self.opts.label.as_deref(), &mut summary);
        summary.found = jobs.len() + summary.failed;
        let args = self.ingest_args(roots, quiet);
        if !jobs.is_empty() {
            summary.add(self.work(&args).embed_and_index(jobs)?);
        }
        self.refresh();
        Ok(summary)
    }

    /// One batch of settled changes; whether any failed.
    fn apply(&self, changes: &[Change]) -> Result<bool> {
        let mut present = Vec::new();
        let mut roots_back = Vec::new();
        let mut checked: Vec<Root> = Vec::new();
        for change in changes {
            match change {
                Change::Absent(p) => checked.push(loose_root(p)),
                Change::Present(p) => {
                    checked.push(loose_root(p));
                    present.push(p.clone());
                }
                Change::RootBack(p) => roots_back.push(p.clone()),
            }
        }
        let mut failed = false;
        for root in &roots_back {
            eprintln!("imgvec: {} is back: syncing it", root.display());
            failed |= self.sync_whole(std::slice::from_ref(root), true)?.failed > 0;
        }
        // Documents under the changed paths whose file is gone or has other content now.
        let docs = self
            .engine
            .rt
            .block_on(docs_under(self.engine.store.as_ref(), &checked))?;
        let (pruned, going) = check_all(&docs, true);
        let changed: HashSet<&String> = pruned.changed.iter().collect();
        self.remove(&going, &pruned.gone)?;
        for (path, why) in &pruned.unchecked {
            self.out.change("unchecked", path, Some(why));
        }
        failed |= self.index(&present, &changed)?;
        Ok(failed)
    }

    /// Ingests what exists of `paths`, one line per image.
    fn index(&self, paths: &[PathBuf], changed: &HashSet<&String>) -> Result<bool> {
        if paths.is_empty() {
            return Ok(false);
        }
        let mut summary = Summary::default();
        let jobs = jobs_of(
            find_changed_images(paths),
            self.opts.label.as_deref(),
            &mut summary,
        );
        let labels: Vec<(String, String)> = jobs
            .iter()
            .map(|j| (j.path.display().to_string(), j.label.clone()))
            .collect();
        let prefixes: Vec<String> = labels.iter().map(|(p, _)| p.clone()).collect();
        let stored_paths = || -> Result<HashSet<String>> {
            Ok(self
                .engine
                .rt
                .block_on(self.engine.store.files_under(&prefixes))?
                .into_iter()
                .map(|d| d.path)
                .collect())
        };
        // Images whose document is there already (a folder event lists every image in it).
        let before = stored_paths()?;
        if !jobs.is_empty() {
            let args = self.ingest_args(paths, true);
            summary.add(self.work(&args).embed_and_index(jobs)?);
            self.make_visible();
        }
        let failed: HashSet<&String> = summary.failures.iter().map(|(p, _)| p).collect();
        for (path, why) in &summary.failures {
            self.out.change("failed", path, Some(why));
        }
        // Which of the images now have a document at their path (an image whose content is
        // already indexed at another path keeps that document).
        let stored = stored_paths()?;
        for (path, label) in &labels {
            if failed.contains(path) || before.contains(path) {
                continue;
            }
            let what = if changed.contains(path) {
                "changed"
            } else {
                "indexed"
            };
            if stored.contains(path) {
                self.out.change(what, path, Some(label));
            } else {
                self.out.change(
                    "known",
                    path,
                    Some("same content already indexed at another path"),
                );
            }
        }
        Ok(!summary.failures.is_empty())
    }

    fn work<'w>(&'w self, args: &'w IngestArgs) -> Work<'w> {
        Work {
            args,
            engine: &self.engine,
        }
    }

    /// The ingest that indexes `paths` as this watch does.
    fn ingest_args(&self, paths: &[PathBuf], quiet: bool) -> IngestArgs {
        IngestArgs {
            paths: paths.to_vec(),
            label: self.opts.label.clone(),
            label_from_dir: self.opts.label_from_dir,
            batch_size: self.batch_size,
            force: false,
            allow_truncated: self.opts.allow_truncated,
            shard: None,
            bulk_concurrency: crate::store::elastic::DEFAULT_BULK_CONCURRENCY,
            bulk_load: false,
            no_bulk_load: true,
            force_merge: false,
            quiet,
            json: false,
            store: self.store_args.clone(),
            model: self.model_args.clone(),
        }
    }
}

/// The root for a changed path, file or folder or gone: lists what the store has at it or under it.
fn loose_root(path: &Path) -> Root {
    Root {
        path: path.to_path_buf(),
        prefix: path.display().to_string(),
    }
}

/// `serve --watch`: follows `paths` on a thread of its own (own runtime, own store handle, the
/// server's vision tower shared) until `stop`; errors are printed, never fatal to the server.
pub fn spawn_for_serve(
    paths: Vec<PathBuf>,
    opts: FollowOptions,
    store_args: StoreArgs,
    model_args: ModelArgs,
    encoder: Option<Arc<crate::clip::ImageEncoder>>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    check_label_rule(&opts)?;
    let roots: Vec<PathBuf> = roots(&paths)?.into_iter().map(|r| r.path).collect();
    let follower = Follower::start(&roots, Duration::from_millis(opts.debounce_ms));
    let thread = std::thread::Builder::new()
        .name("imgvec-watch".into())
        .spawn(move || {
            let run = || -> Result<()> {
                let (model, device) = open_model(&model_args, true)?;
                let rt = runtime()?;
                let store = open_index(&rt, &store_args, &model_record(&model)?, true, |_| {})?;
                let slot = encoder.map(EncoderSlot::with).unwrap_or_default();
                let follow = Follow {
                    opts: &opts,
                    batch_size: None,
                    store_args: &store_args,
                    model_args: &model_args,
                    engine: Engine {
                        model: &model,
                        device: &device,
                        rt: &rt,
                        store: &store,
                        stop: &stop,
                        encoder: &slot,
                    },
                    out: Printer {
                        json: false,
                        to_stderr: true,
                    },
                };
                let first = follow.sync_whole(&roots, true)?;
                eprintln!(
                    "imgvec: watch: {} image(s) indexed, {} already there; following {} folder(s)",
                    first.indexed,
                    first.already_present,
                    roots.len()
                );
                follow.follow(follower)?;
                Ok(())
            };
            if let Err(e) = run() {
                eprintln!("imgvec: error: the folder watch stopped: {e:#}");
            }
        })?;
    Ok(thread)
}
