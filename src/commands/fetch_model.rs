//! `imgvec fetch-model`: download a CLIP checkpoint's four files from the Hugging Face hub.
//!
//! Each file goes to `NAME.part` and is renamed into place only when complete, so an interrupted
//! download never leaves a truncated `model.safetensors` behind. Connecting is bounded (15 s) and a
//! stalled transfer times out (60 s without data), so without a network the command fails at once
//! with a message saying how to get the files by hand, rather than hanging.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::runtime;
use crate::cli::FetchModelArgs;
use crate::clip::ModelDir;

/// The files imgvec reads, and whether each is required.
pub const FILES: &[(&str, bool)] = &[
    ("config.json", true),
    ("preprocessor_config.json", false),
    ("tokenizer.json", false),
    ("model.safetensors", true),
];

pub fn run(args: &FetchModelArgs) -> Result<ExitCode> {
    let dir = &args.model_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("imgvec/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up the HTTP client")?;
    let rt = runtime()?;
    for (name, required) in FILES {
        let dest = dir.join(name);
        if dest.is_file() && !args.force {
            eprintln!("imgvec: {} is there already", dest.display());
            continue;
        }
        let url = format!(
            "{}/{}/resolve/main/{name}",
            args.endpoint.trim_end_matches('/'),
            args.repo
        );
        match rt.block_on(download(&client, &url, &dest)) {
            Ok(bytes) => eprintln!("imgvec: {} ({bytes} bytes)", dest.display()),
            Err(e) if !required => eprintln!("imgvec: skipped optional {name}: {e:#}"),
            Err(e) => bail!(
                "{e:#}\nCannot download {url}. Without access to the hub, copy the files by hand \
                 (see models/README.md) into {}",
                dir.display()
            ),
        }
    }
    let model = ModelDir::open(dir)?;
    println!(
        "{}: CLIP checkpoint ready ({}-d embeddings)",
        dir.display(),
        model.dims()
    );
    Ok(ExitCode::SUCCESS)
}

async fn download(client: &reqwest::Client, url: &str, dest: &Path) -> Result<u64> {
    let mut resp = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !resp.status().is_success() {
        bail!("{url}: HTTP {}", resp.status());
    }
    let part = dest.with_extension("part");
    let mut file =
        std::fs::File::create(&part).with_context(|| format!("cannot write {}", part.display()))?;
    let bar = match resp.content_length() {
        Some(n) if std::io::stderr().is_terminal() => {
            let b = ProgressBar::new(n);
            if let Ok(style) =
                ProgressStyle::with_template("{bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
            {
                b.set_style(style);
            }
            Some(b)
        }
        _ => None,
    };
    let mut written = 0u64;
    while let Some(chunk) = resp
        .chunk()
        .await
        .with_context(|| format!("download of {url} broke off"))?
    {
        file.write_all(&chunk)
            .with_context(|| format!("cannot write {}", part.display()))?;
        written += chunk.len() as u64;
        if let Some(b) = &bar {
            b.set_position(written);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    file.sync_all()
        .with_context(|| format!("cannot write {}", part.display()))?;
    std::fs::rename(&part, dest)
        .with_context(|| format!("cannot move {} into place", part.display()))?;
    Ok(written)
}
