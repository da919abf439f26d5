//! `imgvec serve`: a search page and a JSON API over the index, until Ctrl-C.
//!
//! Steps: refuse a non-loopback address without `--public`; settle the access key (`--token-file`,
//! `IMGVEC_TOKEN`, or a random one with `--public`) and read the TLS files; open the store and check the index
//! against the model (a vector-size mismatch stops here; a missing index or an unreachable
//! Elasticsearch is reported and left for the page to show); load the vision tower once; bind and
//! print the URL (with the key, once, on stderr); with `--watch`, follow folders on a thread of their own as `imgvec watch` does
//! (new images show in the page at once); serve until Ctrl-C or SIGTERM, letting requests in
//! flight finish. The server itself is `crate::serve`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};

use super::{find_model, open_store, runtime};
use crate::cli::{ModelArgs, ServeArgs};
use crate::serve::auth::{check_token, generate_token, AuthConfig};
use crate::serve::guard::GuardConfig;
use crate::serve::state::{AppState, Model};
use crate::serve::thumbs::Thumbs;
use crate::serve::tls::{load_config, TlsListener};
use crate::store::{ModelRecord, VectorStore};

pub fn run(args: &ServeArgs) -> Result<ExitCode> {
    check_addr(args)?;
    let (token, generated) = match access_key(args)? {
        Some((t, generated)) => (Some(t), generated),
        None => (None, false),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(load_config(cert, key)?),
        _ => None,
    };
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&args.store)?;
        let model = load_model(&args.model)?;
        check_index(store.as_ref(), &args.store.index, model.record().as_ref()).await?;
        let backend = match args.store.elastic_url()? {
            Some(_) => "elasticsearch",
            None => "embedded",
        };
        let state = AppState::new(
            store,
            backend,
            args.store.index.clone(),
            model.with_queue(args.model_queue),
            Thumbs::new((args.thumb_cache_mib as usize) << 20),
            args.max_upload_mib << 20,
        )
        .with_uploads_per_client(args.uploads_per_client);
        let describe = state.store.describe();
        let watch_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = if args.watch.is_empty() {
            None
        } else {
            Some(super::watch::spawn_for_serve(
                args.watch.clone(),
                args.follow.clone(),
                args.store.clone(),
                args.model.clone(),
                state.model.image_encoder().await,
                Arc::clone(&watch_stop),
            )?)
        };
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr()?;
        let auth = match &token {
            Some(t) => AuthConfig::with_token(t, addr.port(), tls.is_some()),
            None => AuthConfig::open(),
        };
        let state = Arc::new(state);
        if let Some(keep_alive) = args.keep_alive.0 {
            tokio::spawn(release_idle_towers(
                Arc::clone(&state),
                keep_alive,
                !args.quiet,
            ));
        }
        let app = crate::serve::app_with_auth(
            state,
            GuardConfig {
                public: args.public,
                log: !args.quiet,
            },
            auth,
        );
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!("imgvec: serving {describe}");
        if let Some(t) = &token {
            if tls.is_none() && !addr.ip().is_loopback() {
                eprintln!(
                    "imgvec: warning: the access key travels in clear over plain HTTP on {addr}: \
anyone on the path can read it; use --tls-cert and --tls-key (or a TLS proxy in front)"
                );
            }
            if generated {
                eprintln!(
                    "imgvec: open this URL (it holds the access key): {scheme}://{addr}/?token={t}"
                );
            } else {
                eprintln!(
                    "imgvec: every request needs the access key: open {scheme}://{addr}/?token=KEY"
                );
            }
        }
        println!("imgvec serve: {scheme}://{addr}/ (Ctrl-C stops)");
        std::io::stdout().flush().ok();
        let served = match tls {
            Some(config) => {
                let listener = TlsListener::new(listener, config, !args.quiet)?;
                crate::serve::serve(listener, app, stop_signal()).await
            }
            None => crate::serve::serve(listener, app, stop_signal()).await,
        };
        watch_stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = watcher {
            // It stops within a tick, or after the batch of changes in hand.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        served.context("the server failed")?;
        eprintln!("imgvec: server stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Loopback only, unless `--public` (then a warning).
fn check_addr(args: &ServeArgs) -> Result<()> {
    let ip = args.addr.ip();
    if ip.is_loopback() {
        return Ok(());
    }
    if !args.public {
        bail!(
            "{ip} is not a loopback address: anyone who can reach it could search the index and see \
every indexed image. Add --public if that is what you want, or use --addr 127.0.0.1:PORT"
        );
    }
    eprintln!(
        "imgvec: warning: --public: serving on {}; whoever has the access key can search the index \
and see every indexed image",
        args.addr
    );
    Ok(())
}

/// The access key, if requests need one: from `--token-file`, else `IMGVEC_TOKEN`, else (with
/// `--public`) a random one (then `true`: only that one is printed). A key shorter than 16
/// characters is refused.
fn access_key(args: &ServeArgs) -> Result<Option<(String, bool)>> {
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the access key file {}", path.display()))?;
        let token = text.trim().to_string();
        check_token(&token, &format!("--token-file {}", path.display())).map_err(|e| anyhow!(e))?;
        return Ok(Some((token, false)));
    }
    match std::env::var("IMGVEC_TOKEN") {
        Ok(t) => {
            let token = t.trim().to_string();
            check_token(&token, "IMGVEC_TOKEN").map_err(|e| anyhow!(e))?;
            return Ok(Some((token, false)));
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("IMGVEC_TOKEN is not valid UTF-8: use only letters, digits and - . _ ~")
        }
        Err(std::env::VarError::NotPresent) => {}
    }
    if args.public {
        return generate_token()
            .map(|t| Some((t, true)))
            .map_err(|e| anyhow!(e));
    }
    Ok(None)
}

/// The checkpoint and its vision tower; without them the server still starts, says why on stderr and
/// on the page, and answers everything but queries that need the model.
fn load_model(args: &ModelArgs) -> Result<Model> {
    let (device, device_name, precision) = super::open_device(args)?;
    let apply_exif = !args.ignore_exif_orientation;
    let dir = match find_model(&args.location) {
        Ok(dir) => {
            let (dtype, linear) = crate::device::model_precision(precision, &device);
            dir.with_dtype(dtype).with_linear(linear)
        }
        Err(e) => {
            let why = format!("{e:#}");
            eprintln!("imgvec: warning: no model, so no search by text or image: {why}");
            return Ok(Model::new(Err(why), device, apply_exif));
        }
    };
    eprintln!(
        "imgvec: model {} ({}-d) on {device_name}, precision {}; each tower loads when first needed",
        dir.path().display(),
        dir.dims(),
        precision.name(),
    );
    Ok(Model::new(Ok(dir), device, apply_exif))
}

/// A vector-size mismatch, or an index that remembers another model, is an error; a missing index
/// or an unreachable store is only reported (the page says so, and the server answers once it is
/// fixed).
async fn check_index(
    store: &dyn VectorStore,
    index: &str,
    model: Option<&ModelRecord>,
) -> Result<()> {
    match store.index_dims().await {
        Ok(index_dims) => {
            if let Some(model) = model {
                super::check_model(store, index, model).await?;
            }
            if let Ok(n) = store.count().await {
                eprintln!("imgvec: index '{index}': {n} image(s), {index_dims}-d vectors");
            }
        }
        Err(e) => eprintln!("imgvec: warning: {e}"),
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    eprintln!("imgvec: stopping: finishing the requests in flight");
}

/// Lets go of the towers left idle for `keep_alive`, looking every half of it (at least every
/// second, at most every 30 s); says so on stderr if `log`.
async fn release_idle_towers(state: Arc<AppState>, keep_alive: std::time::Duration, log: bool) {
    let every = (keep_alive / 2).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30),
    );
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.model.release_idle(keep_alive).await && log {
            eprintln!("imgvec: serve: an idle model tower was let go (--keep-alive)");
        }
    }
}
