//! `imgvec fetch-model [REPO]`: download a CLIP checkpoint's files into the Hugging Face cache, where
//! the other commands find it (see `model_source`), with the `hf-hub` crate.
//!
//! hf-hub writes the cache layout `huggingface_hub` (Python) uses and reads — blobs, `snapshots/<rev>/`,
//! `refs/main` — so a checkpoint downloaded by either is used by both; it resumes an interrupted
//! download and sends `HF_TOKEN` for gated repositories. The hub is `--endpoint` / `HF_ENDPOINT` (a
//! mirror, say). A transfer that makes no progress for [`STALL`] (no connection, a silent server) is
//! abandoned with a message naming the endpoint, so without a network the command fails at once
//! rather than hanging.
//!
//! Not for: deciding which directory a command uses (that is `model_source`), nor checking weights
//! beyond `config.json` (that happens when a command loads them).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hf_hub::api::tokio::{ApiBuilder, ApiError, ApiRepo};
use indicatif::{ProgressBar, ProgressStyle};

use super::runtime;
use crate::cli::{FetchModelArgs, VERSION};
use crate::clip::ModelDir;
use crate::model_source::{self, check_repo_id, hub_cache};

/// The files imgvec reads, and whether each is required (the tokenizer only for text queries; CLIP's
/// preprocessing defaults apply without `preprocessor_config.json`; Chinese-CLIP's tokenizer is
/// `vocab.txt` with `tokenizer_config.json`'s `do_lower_case` where there is no `tokenizer.json`;
/// SigLIP (v1)'s is `spiece.model`).
pub const FILES: &[(&str, bool)] = &[
    ("config.json", true),
    ("preprocessor_config.json", false),
    ("tokenizer.json", false),
    ("tokenizer_config.json", false),
    ("vocab.txt", false),
    ("spiece.model", false),
    ("model.safetensors", true),
];

/// The weights in PyTorch's format, fetched where a repository has no `model.safetensors`.
pub const PYTORCH_WEIGHTS: &str = "pytorch_model.bin";

/// How long a download may go without receiving anything (connecting included) before it is given up.
pub const STALL: Duration = Duration::from_secs(30);

pub fn run(args: &FetchModelArgs) -> Result<ExitCode> {
    check_repo_id(&args.repo).map_err(|e| anyhow!(e))?;
    let env = model_source::Env::from_process();
    let cache = hub_cache(&env).context(
        "cannot tell where the Hugging Face cache is (no home directory): set HF_HOME or HF_HUB_CACHE",
    )?;
    let endpoint = args.endpoint.trim_end_matches('/').to_string();
    let mut builder = ApiBuilder::from_cache(hf_hub::Cache::new(cache.dir.clone()))
        .with_endpoint(endpoint.clone())
        .with_progress(false)
        .with_user_agent("imgvec", VERSION);
    let token = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|t| !t.trim().is_empty()));
    if token.is_some() {
        builder = builder.with_token(token);
    }
    let api = builder.build().context("cannot set up the HTTP client")?;
    let repo = api.model(args.repo.clone());
    let cached = hf_hub::Cache::new(cache.dir.clone()).model(args.repo.clone());
    eprintln!(
        "imgvec: {} from {endpoint} into {} (chosen by {})",
        args.repo,
        cache.dir.display(),
        cache.chosen_by
    );
    let rt = runtime()?;
    for (name, required) in FILES {
        if !args.force {
            let cached_name = [*name, PYTORCH_WEIGHTS]
                .into_iter()
                .take(if *name == "model.safetensors" { 2 } else { 1 })
                .find_map(|n| cached.get(n).map(|p| (n, p)));
            if let Some((n, path)) = cached_name {
                eprintln!("imgvec: {n}: in the cache already ({})", path.display());
                continue;
            }
        }
        match rt.block_on(fetch(&repo, name, !args.quiet)) {
            Ok(path) => eprintln!("imgvec: {name}: {}", path.display()),
            Err(Failure::Api(e)) if *name == "model.safetensors" && status(&e) == Some(404) => {
                // The OFA-Sys Chinese-CLIP repositories publish only PyTorch's format.
                eprintln!(
                    "imgvec: {} has no {name}; fetching {PYTORCH_WEIGHTS} instead",
                    args.repo
                );
                match rt.block_on(fetch(&repo, PYTORCH_WEIGHTS, !args.quiet)) {
                    Ok(path) => eprintln!("imgvec: {PYTORCH_WEIGHTS}: {}", path.display()),
                    Err(f) => bail!("{}", explain(&f, &endpoint, &args.repo, PYTORCH_WEIGHTS)),
                }
            }
            Err(Failure::Api(e)) if !required && status(&e) == Some(404) => {
                eprintln!("imgvec: {} has no {name} (optional), skipped", args.repo)
            }
            Err(f) => bail!("{}", explain(&f, &endpoint, &args.repo, name)),
        }
    }
    let found = model_source::resolve(None, &args.repo, &env)?;
    let model = ModelDir::open(&found.dir)?;
    println!(
        "{}: {} checkpoint ready in {} ({}-d embeddings)",
        args.repo,
        model.family(),
        found.dir.display(),
        model.dims()
    );
    Ok(ExitCode::SUCCESS)
}

/// Why a file did not arrive.
enum Failure {
    Api(ApiError),
    Stalled,
}

/// Downloads one file with a progress bar (on a terminal), giving up after [`STALL`] without data.
async fn fetch(repo: &ApiRepo, name: &str, show: bool) -> Result<PathBuf, Failure> {
    let progress = Progress::new(show);
    let watch = progress.clone();
    let result = tokio::select! {
        r = repo.download_with_progress(name, progress.clone()) => r.map_err(Failure::Api),
        _ = watch.stalled() => Err(Failure::Stalled),
    };
    progress.clear();
    result
}

/// The HTTP status of a failed request, if it got that far.
fn status(e: &ApiError) -> Option<u16> {
    match e {
        ApiError::RequestError(r) => r.status().map(|s| s.as_u16()),
        ApiError::TooManyRetries(inner) => status(inner),
        _ => None,
    }
}

/// An error and all its sources on one line (reqwest's "error sending request" alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}

/// What went wrong, where, and what to do about it.
fn explain(f: &Failure, endpoint: &str, repo: &str, name: &str) -> String {
    let by_hand =
        "Without access to a hub, copy the files by hand from a machine that has them (see \
models/README.md) and point --model-dir / IMGVEC_MODEL_DIR at that directory.";
    let e = match f {
        Failure::Stalled => {
            return format!(
                "cannot reach the Hugging Face hub at {endpoint}: nothing received for {} s while \
fetching {repo}/{name}. Check the network, or set HF_ENDPOINT (or --endpoint) to a mirror. {by_hand}",
                STALL.as_secs()
            )
        }
        Failure::Api(e) => e,
    };
    match status(e) {
        Some(code @ (401 | 403)) => format!(
            "{endpoint} refused {repo}/{name} (HTTP {code}): a gated or private repository needs a \
token: set HF_TOKEN (or log in with `huggingface-cli login`)"
        ),
        Some(404) => format!(
            "{endpoint} has no {repo}/{name} (HTTP 404): is '{repo}' a CLIP repository on that hub?"
        ),
        Some(code) => format!(
            "{endpoint} answered HTTP {code} for {repo}/{name}: {}. Try again later (the download \
resumes), or set HF_ENDPOINT to a mirror. {by_hand}",
            chain(e)
        ),
        None if matches!(e, ApiError::RequestError(_)) => format!(
            "cannot reach the Hugging Face hub at {endpoint} ({}). Check the network, or set \
HF_ENDPOINT (or --endpoint) to a mirror. {by_hand}",
            chain(e)
        ),
        None => format!(
            "downloading {repo}/{name} from {endpoint} failed: {}",
            chain(e)
        ),
    }
}

/// hf-hub's progress callback: a byte bar on a terminal, and the time of the last data received.
#[derive(Clone)]
struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
    /// Milliseconds after `start` when data last arrived (or the download started).
    last: Arc<AtomicU64>,
}

impl Progress {
    fn new(show: bool) -> Self {
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            ) {
                b.set_style(style);
            }
            b
        });
        Self {
            bar,
            start: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    /// Resolves once nothing has arrived for [`STALL`].
    async fn stalled(&self) {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let idle = (self.start.elapsed().as_millis() as u64)
                .saturating_sub(self.last.load(Ordering::Relaxed));
            if idle >= STALL.as_millis() as u64 {
                return;
            }
        }
    }

    fn clear(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl hf_hub::api::tokio::Progress for Progress {
    async fn init(&mut self, size: usize, filename: &str) {
        self.touch();
        if let Some(b) = &self.bar {
            b.set_length(size as u64);
            b.set_message(filename.to_string());
        }
    }

    async fn update(&mut self, size: usize) {
        self.touch();
        if let Some(b) = &self.bar {
            b.inc(size as u64);
        }
    }

    async fn finish(&mut self) {
        self.touch();
    }
}
