//! One module per subcommand, plus what they share: opening the model and the store, printing.
//!
//! Commands return `anyhow::Result<ExitCode>`: `Err` for a failure that stops the command (printed by
//! `main` with its context), `Ok(FAILURE)` when the command ran but some inputs failed.

pub mod classify;
pub mod completions;
pub mod copy;
pub mod create_index;
pub mod dupes;
pub mod embed;
pub mod eval;
pub mod fetch_model;
pub mod images;
pub mod info;
pub mod ingest;
pub mod man;
pub mod prune;
pub mod search;
pub mod serve;
pub mod watch;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use candle_core::Device;

use crate::cli::{ModelArgs, ModelLocation, StoreArgs};
use crate::clip::ModelDir;
use crate::model_source::{self, Resolved};
use crate::store::elastic::{sends_credentials_in_clear, ElasticConfig, ElasticStore};
use crate::store::local::{LocalConfig, LocalStore, WaitHook, WaitNotice};
use crate::store::{IndexSpec, ModelRecord, StoreError, VectorStore};

/// Exit status when the command ran but some inputs failed.
pub const PARTIAL_FAILURE: u8 = 1;
/// Exit status for a usage error (clap's own).
pub const USAGE: u8 = 2;
/// Exit status after Ctrl-C.
pub const INTERRUPTED: u8 = 130;

pub fn exit(code: u8) -> ExitCode {
    ExitCode::from(code)
}

/// Ctrl-C, twice. The first prints `message` and sets the two flags returned (`stop`: take no
/// more work; `interrupted`: say so at the end), and the command finishes what it has in hand; the
/// second runs `before_exit` (what must be put back, if anything) and exits with [`INTERRUPTED`].
pub fn on_ctrl_c<F>(
    rt: &tokio::runtime::Runtime,
    message: &'static str,
    before_exit: F,
) -> (Arc<AtomicBool>, Arc<AtomicBool>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    let (s, i) = (Arc::clone(&stop), Arc::clone(&interrupted));
    rt.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nimgvec: {message} (Ctrl-C again to quit now)");
            i.store(true, Ordering::SeqCst);
            s.store(true, Ordering::SeqCst);
            if tokio::signal::ctrl_c().await.is_ok() {
                before_exit.await;
                std::process::exit(i32::from(INTERRUPTED));
            }
        }
    });
    (stop, interrupted)
}

/// Where the model is, by the flags and the environment (see `model_source`); nothing is read yet.
pub fn locate_model(args: &ModelLocation) -> Result<Resolved> {
    let env = model_source::Env::from_process();
    Ok(model_source::resolve(
        args.model_dir.as_deref(),
        &args.repo,
        &env,
    )?)
}

/// The model directory, found and opened (its config read and checked).
pub fn find_model(args: &ModelLocation) -> Result<ModelDir> {
    let found = locate_model(args)?;
    Ok(ModelDir::open(&found.dir)?.with_name(found.name))
}

/// The model directory (config read and checked, its dtype set by `--precision`) and the device,
/// announced on stderr unless quiet.
pub fn open_model(args: &ModelArgs, quiet: bool) -> Result<(ModelDir, Device)> {
    let model = find_model(&args.location)?;
    let (device, name, precision) = open_device(args)?;
    if !quiet {
        eprintln!(
            "imgvec: model {} ({}-d), device {name}, precision {}",
            model.path().display(),
            model.dims(),
            precision.name()
        );
    }
    let (dtype, linear) = crate::device::model_precision(precision, &device);
    Ok((model.with_dtype(dtype).with_linear(linear), device))
}

/// The device `--device` asks for, its name, and the precision to run in there (`--precision`, or
/// the device's default); f16/bf16 on the CPU is an error naming the flag.
pub fn open_device(args: &ModelArgs) -> Result<(Device, String, crate::device::Precision)> {
    let (device, name) = crate::device::open(args.device).map_err(anyhow::Error::msg)?;
    let precision =
        crate::device::precision(args.precision, &device).map_err(anyhow::Error::msg)?;
    Ok((device, name, precision))
}

/// Tells the user that a write waits for another imgvec process's (the embedded store's hook).
fn say_waiting(n: &WaitNotice) {
    let who = match (n.holder_pid, n.holder_command.as_str()) {
        (Some(pid), "") => format!("pid {pid}"),
        (Some(pid), cmd) => format!("pid {pid}, `{cmd}`"),
        (None, _) => "another process".to_string(),
    };
    eprintln!(
        "imgvec: waiting {:.0} s for another imgvec process writing to {} ({who}); this write follows it",
        n.waited.as_secs_f64(),
        n.dir.display()
    );
}

/// Opens the store the flags and environment describe: Elasticsearch with a URL, else the embedded one.
pub fn open_store(args: &StoreArgs) -> Result<Box<dyn VectorStore>> {
    open_store_with(args, "", |_| {})
}

/// [`open_store`] with the credentials from `{env_prefix}ELASTIC_PASSWORD` and the like (`copy`'s
/// target reads `IMGVEC_TO_ELASTIC_*`).
pub fn open_store_as(args: &StoreArgs, env_prefix: &str) -> Result<Box<dyn VectorStore>> {
    open_store_with(args, env_prefix, |_| {})
}

/// [`open_store`] for a process that answers one query and exits (`search`): an embedded store
/// scans a label's int8 codes where the graph holds them, whatever its size, instead of first
/// making the 2-bit codes a long-lived process keeps for the next queries (for one query that is
/// the same read of every code and more memory: at a million documents, a label of half of them
/// is scanned in about 60 ms on 2 cores where its 2-bit codes take 0.5–2 s and
/// 100 MB to make).
pub fn open_store_for_one_query(args: &StoreArgs) -> Result<Box<dyn VectorStore>> {
    let one_query = |cfg: &mut LocalConfig| {
        cfg.filtered_scan_rows = usize::MAX;
        cfg.filtered_code2_bytes = 0;
    };
    open_store_tuned(args, "", one_query, |_| {})
}

/// [`open_store_as`], with `tune` adjusting the Elasticsearch settings (bulk concurrency...) first.
pub fn open_store_with(
    args: &StoreArgs,
    env_prefix: &str,
    tune: impl FnOnce(&mut ElasticConfig),
) -> Result<Box<dyn VectorStore>> {
    open_store_tuned(args, env_prefix, |_| {}, tune)
}

/// [`open_store_with`], `tune_local` adjusting an embedded store's settings first.
fn open_store_tuned(
    args: &StoreArgs,
    env_prefix: &str,
    tune_local: impl FnOnce(&mut LocalConfig),
    tune: impl FnOnce(&mut ElasticConfig),
) -> Result<Box<dyn VectorStore>> {
    let Some(url) = args.elastic_url()? else {
        let dir = crate::data_dir::store_dir(args.store.as_deref())?;
        if args.insecure || args.ca_cert.is_some() {
            eprintln!("imgvec: warning: --insecure/--ca-cert apply to Elasticsearch only; using the embedded store in {}", dir.display());
        }
        let mut cfg = LocalConfig::new(&dir, &args.index);
        cfg.on_wait = Some(WaitHook(std::sync::Arc::new(say_waiting)));
        if let Some(rows) = std::env::var("IMGVEC_EXACT_SCAN_ROWS")
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            cfg.exact_scan_rows = rows.trim().parse().with_context(|| {
                format!("IMGVEC_EXACT_SCAN_ROWS={rows}: expected a number of documents")
            })?;
        }
        tune_local(&mut cfg);
        return Ok(Box::new(LocalStore::open_with(cfg)?));
    };
    if args.insecure {
        eprintln!(
            "imgvec: warning: --insecure: the server's TLS certificate is NOT verified; \
anyone on the path can read and change what is sent"
        );
    }
    let env = |k: &str| {
        std::env::var(format!("{env_prefix}{k}"))
            .ok()
            .filter(|v| !v.is_empty())
    };
    let api_key = env("ELASTIC_API_KEY");
    let password = env("ELASTIC_PASSWORD");
    let username = password
        .as_ref()
        .map(|_| env("ELASTIC_USERNAME").unwrap_or_else(|| "elastic".to_string()));
    let mut cfg = ElasticConfig::new(url, args.index.clone());
    cfg.username = username;
    cfg.password = password;
    cfg.api_key = api_key;
    cfg.ca_cert = args.ca_cert.clone();
    cfg.insecure = args.insecure;
    cfg.request_timeout = Duration::from_secs(args.timeout.max(1));
    cfg.max_retries = args.max_retries;
    tune(&mut cfg);
    if sends_credentials_in_clear(&cfg) {
        eprintln!(
            "imgvec: warning: {} is plain http: the credentials go over the network unencrypted; \
use https (Elasticsearch 8 turns TLS on by default)",
            cfg.url_for_messages()
        );
    }
    Ok(Box::new(ElasticStore::connect(cfg)?))
}

/// What an index records of `model` (see [`ModelRecord`]): its name, family, size, the
/// fingerprint of its weights (≈64 KiB read) and the precision this run makes vectors in.
pub fn model_record(model: &ModelDir) -> Result<ModelRecord> {
    Ok(ModelRecord {
        name: model.name(),
        family: model.family().to_string(),
        dims: model.dims(),
        fingerprint: model.fingerprint()?,
        precisions: vec![model.precision_name().to_string()],
    })
}

/// Fails unless the index exists, holds vectors of the model's size and, where it remembers the
/// model that filled it, was filled by this one (checked before any weights load). Returns the
/// recorded model (`None` for an index made before imgvec recorded one).
pub async fn check_model(
    store: &dyn VectorStore,
    index: &str,
    model: &ModelRecord,
) -> Result<Option<ModelRecord>> {
    let index_dims = store.index_dims().await?;
    if index_dims != model.dims {
        return Err(StoreError::DimsMismatch {
            index: index.to_string(),
            index_dims,
            model_dims: model.dims,
        }
        .into());
    }
    let recorded = store.index_model().await?;
    refuse_other_model(index, recorded.as_ref(), model)?;
    Ok(recorded)
}

/// [`check_model`] for a command's synchronous part: that the index of `store` can be searched
/// with `model`'s vectors.
pub fn check_store_model(
    rt: &tokio::runtime::Runtime,
    store: &dyn VectorStore,
    index: &str,
    model: &ModelDir,
) -> Result<()> {
    rt.block_on(check_model(store, index, &model_record(model)?))?;
    Ok(())
}

/// [`StoreError::ModelMismatch`] unless `recorded` is absent or the same model as `model`.
pub fn refuse_other_model(
    index: &str,
    recorded: Option<&ModelRecord>,
    model: &ModelRecord,
) -> Result<(), StoreError> {
    match recorded {
        Some(r) if !r.same_model(model) => Err(StoreError::ModelMismatch {
            index: index.to_string(),
            recorded: r.describe(),
            model: model.describe(),
        }),
        _ => Ok(()),
    }
}

/// Makes sure the index exists for the model: creates a missing one with exactly the mapping
/// `create-index` would, the model recorded in it (saying so in one line unless quiet), else
/// checks it as [`check_model`] does, records the model in an index made before imgvec
/// recorded one, and adds this run's precision to the record when the index holds vectors of
/// other precisions only (saying so unless quiet: mixing is allowed). A store that refuses a
/// record is only warned about.
pub async fn ensure_index(
    store: &dyn VectorStore,
    index: &str,
    model: &ModelRecord,
    quiet: bool,
) -> Result<()> {
    match check_model(store, index, model).await {
        Err(e) if matches!(e.downcast_ref(), Some(StoreError::IndexMissing { .. })) => {
            store.ensure_index(&IndexSpec::for_model(model)).await?;
            // Created by another process meanwhile, perhaps for another model.
            let recorded = store.index_model().await?;
            refuse_other_model(index, recorded.as_ref(), model)?;
            if !quiet {
                eprintln!(
                    "imgvec: created index '{index}' for {} ({})",
                    model.describe(),
                    store.describe()
                );
            }
            Ok(())
        }
        Ok(None) => {
            match store.adopt_model(model).await {
                Ok(recorded) => refuse_other_model(index, Some(&recorded), model)?,
                Err(e) => eprintln!(
                    "imgvec: warning: index '{index}' records no model (made by an older imgvec) and recording {} failed: {e}",
                    model.describe()
                ),
            }
            Ok(())
        }
        Ok(Some(recorded)) if !recorded.new_precisions(model).is_empty() => {
            if !quiet && !recorded.precisions.is_empty() {
                eprintln!(
                    "imgvec: note: index '{index}' holds {} vectors; this run adds {} ones (allowed: \
searches see both, ranked within the small difference docs/performance.md measures)",
                    recorded.describe_precisions(),
                    recorded.new_precisions(model).join("+")
                );
            }
            if let Err(e) = store.adopt_model(model).await {
                eprintln!(
                    "imgvec: warning: index '{index}': recording precision {} failed: {e}",
                    model.describe_precisions()
                );
            }
            Ok(())
        }
        Ok(Some(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What every command that writes does first: opens the store (`tune` adjusting the Elasticsearch
/// settings) and makes sure its index exists for `model`'s vectors.
pub fn open_index(
    rt: &tokio::runtime::Runtime,
    args: &StoreArgs,
    model: &ModelRecord,
    quiet: bool,
    tune: impl FnOnce(&mut ElasticConfig),
) -> Result<std::sync::Arc<dyn VectorStore>> {
    let store: std::sync::Arc<dyn VectorStore> =
        std::sync::Arc::from(rt.block_on(async { open_store_with(args, "", tune) })?);
    rt.block_on(ensure_index(store.as_ref(), &args.index, model, quiet))?;
    Ok(store)
}

/// A multi-thread tokio runtime for the commands that talk to a store.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Formats a vector for people: its size and first few values.
pub fn preview(v: &[f32]) -> String {
    let head: Vec<String> = v.iter().take(4).map(|x| format!("{x:+.4}")).collect();
    format!("[{}, … {} values]", head.join(", "), v.len())
}

/// Seconds since `t`, for messages.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}
