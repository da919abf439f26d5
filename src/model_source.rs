//! Where the CLIP checkpoint is: the file-location policy that turns `--model-dir` / `--model` and
//! the environment into one checkpoint directory.
//!
//! The order, first found wins:
//! 1. `--model-dir` / `IMGVEC_MODEL_DIR`: that directory, and nothing else (a wrong one is an error,
//!    never silently replaced by another model);
//! 2. the hub repository (`--model` / `IMGVEC_MODEL`, default [`DEFAULT_REPO`]) in the Hugging Face
//!    cache, in the layout `huggingface_hub` and `hf-hub` write: `<cache>/models--org--name/refs/main`
//!    names a revision whose files are in `snapshots/<rev>/` (without `refs/main`, the one snapshot
//!    present). The cache is `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else
//!    `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`, as in Python;
//! 3. `./models/<name>` in the current directory, for source checkouts.
//!
//! When nothing is found the error lists every place looked at and how to get the model.
//!
//! Not for: reading or checking the checkpoint's files (that is `clip::ModelDir`), nor downloading
//! (that is `commands::fetch_model`).

use std::fmt;
use std::path::{Path, PathBuf};

/// The model used when none is named.
pub const DEFAULT_REPO: &str = "openai/clip-vit-large-patch14";

/// What the resolver reads from the process environment, gathered once so tests can supply their own.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub hf_hub_cache: Option<PathBuf>,
    pub huggingface_hub_cache: Option<PathBuf>,
    pub hf_home: Option<PathBuf>,
    pub xdg_cache_home: Option<PathBuf>,
    pub home: Option<PathBuf>,
    /// The current directory (for `./models/<name>`).
    pub cwd: PathBuf,
}

impl Env {
    /// The real environment. Empty variables count as unset; a leading `~/` is the home directory.
    pub fn from_process() -> Self {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf()));
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(|v| expand_home(Path::new(&v), home.as_deref()))
        };
        Self {
            hf_hub_cache: var("HF_HUB_CACHE"),
            huggingface_hub_cache: var("HUGGINGFACE_HUB_CACHE"),
            hf_home: var("HF_HOME"),
            xdg_cache_home: var("XDG_CACHE_HOME"),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            home,
        }
    }
}

fn expand_home(p: &Path, home: Option<&Path>) -> PathBuf {
    match (p.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => p.to_path_buf(),
    }
}

/// The Hugging Face hub cache directory and the setting that chose it, e.g. `HF_HOME=/x` → `/x/hub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubCache {
    pub dir: PathBuf,
    /// Which setting chose it, for messages: `HF_HUB_CACHE`, `HF_HOME`…, or `the default location`.
    pub chosen_by: String,
}

/// The hub cache the environment describes, or `None` when not even a home directory is known.
pub fn hub_cache(env: &Env) -> Option<HubCache> {
    let pick = |dir: PathBuf, by: &str| {
        Some(HubCache {
            dir,
            chosen_by: by.to_string(),
        })
    };
    if let Some(d) = &env.hf_hub_cache {
        return pick(d.clone(), "HF_HUB_CACHE");
    }
    if let Some(d) = &env.huggingface_hub_cache {
        return pick(d.clone(), "HUGGINGFACE_HUB_CACHE");
    }
    if let Some(d) = &env.hf_home {
        return pick(d.join("hub"), "HF_HOME");
    }
    if let Some(d) = &env.xdg_cache_home {
        return pick(d.join("huggingface/hub"), "XDG_CACHE_HOME");
    }
    let home = env.home.as_ref()?;
    pick(home.join(".cache/huggingface/hub"), "the default location")
}

/// Where the chosen checkpoint came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--model-dir` or `IMGVEC_MODEL_DIR`.
    ExplicitDir,
    /// A snapshot of `repo` in the Hugging Face cache.
    HubCache {
        repo: String,
        revision: String,
        cache: HubCache,
    },
    /// `./models/<name>` in the current directory.
    Checkout { repo: String },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::ExplicitDir => write!(f, "--model-dir / IMGVEC_MODEL_DIR"),
            Source::HubCache {
                repo,
                revision,
                cache,
            } => write!(
                f,
                "{repo} (revision {revision}) in the Hugging Face cache {} (chosen by {})",
                cache.dir.display(),
                cache.chosen_by
            ),
            Source::Checkout { repo } => write!(f, "{repo} as a checkout in ./models"),
        }
    }
}

impl Source {
    /// A one-word kind for JSON output: `model-dir`, `hf-cache` or `checkout`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::ExplicitDir => "model-dir",
            Source::HubCache { .. } => "hf-cache",
            Source::Checkout { .. } => "checkout",
        }
    }
}

/// The checkpoint directory found, how, and the short name stored with each vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub dir: PathBuf,
    pub source: Source,
    /// `clip-vit-large-patch14` for the repo `openai/clip-vit-large-patch14`; the directory's name
    /// for an explicit directory.
    pub name: String,
}

/// Nothing found: every place looked at, with why it was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    pub repo: String,
    /// (place, why not) in the order tried.
    pub looked: Vec<(String, String)>,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "no CLIP model found for {}. Looked in:", self.repo)?;
        for (place, why) in &self.looked {
            writeln!(f, "  - {place}: {why}")?;
        }
        write!(
            f,
            "Get it with `imgvec fetch-model {}` (downloads into the Hugging Face cache; set \
HF_ENDPOINT for a mirror), copy the files by hand (see models/README.md), or point --model-dir / \
IMGVEC_MODEL_DIR at a CLIP checkpoint directory.",
            self.repo
        )
    }
}

impl std::error::Error for NotFound {}

/// The last part of a repo id: `openai/clip-vit-large-patch14` → `clip-vit-large-patch14`.
pub fn repo_name(repo: &str) -> &str {
    repo.rsplit('/').next().unwrap_or(repo)
}

/// The cache folder of a model repo: `models--openai--clip-vit-large-patch14`.
pub fn repo_folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// Checks a hub repo id (`name` or `org/name`, no `..`, no empty parts), for a clear early error.
pub fn check_repo_id(repo: &str) -> Result<(), String> {
    let parts: Vec<&str> = repo.split('/').collect();
    let ok_part = |p: &&str| {
        !p.is_empty()
            && *p != "."
            && *p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if parts.len() <= 2 && parts.iter().all(ok_part) {
        Ok(())
    } else {
        Err(format!(
            "'{repo}' is not a Hugging Face repository id such as {DEFAULT_REPO}"
        ))
    }
}

/// Resolves the checkpoint directory (see the module documentation for the order).
pub fn resolve(explicit_dir: Option<&Path>, repo: &str, env: &Env) -> Result<Resolved, NotFound> {
    if let Some(dir) = explicit_dir {
        let dir = absolute(dir, &env.cwd);
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "clip".to_string());
        // Taken as given: `clip::ModelDir::open` says what is wrong with it, if anything.
        return Ok(Resolved {
            dir,
            source: Source::ExplicitDir,
            name,
        });
    }
    let mut looked = vec![(
        "--model-dir / IMGVEC_MODEL_DIR".to_string(),
        "not set".to_string(),
    )];
    if let Err(why) = check_repo_id(repo) {
        looked.push(("the Hugging Face cache".to_string(), why));
    } else {
        match hub_cache(env) {
            Some(cache) => match in_hub_cache(&cache, repo) {
                Ok(found) => return Ok(found),
                Err((place, why)) => looked.push((place, why)),
            },
            None => looked.push((
                "the Hugging Face cache".to_string(),
                "no HF_HUB_CACHE, HF_HOME or home directory to find it by".to_string(),
            )),
        }
    }
    let checkout = env.cwd.join("models").join(repo_name(repo));
    match has_config(&checkout) {
        Ok(()) => {
            return Ok(Resolved {
                dir: checkout,
                source: Source::Checkout {
                    repo: repo.to_string(),
                },
                name: repo_name(repo).to_string(),
            })
        }
        Err(why) => looked.push((format!("{} (a checkout)", checkout.display()), why)),
    }
    Err(NotFound {
        repo: repo.to_string(),
        looked,
    })
}

fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

fn has_config(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err("not there".to_string());
    }
    if !dir.join("config.json").is_file() {
        return Err("no config.json in it".to_string());
    }
    Ok(())
}

/// The repo's snapshot in the cache, or (the place looked at, why it was not used).
fn in_hub_cache(cache: &HubCache, repo: &str) -> Result<Resolved, (String, String)> {
    let repo_dir = cache.dir.join(repo_folder(repo));
    let place = format!(
        "{} (the Hugging Face cache, chosen by {})",
        repo_dir.display(),
        cache.chosen_by
    );
    if !repo_dir.is_dir() {
        return Err((place, "not there".to_string()));
    }
    let revision = chosen_revision(&repo_dir).map_err(|why| (place.clone(), why))?;
    let dir = repo_dir.join("snapshots").join(&revision);
    match has_config(&dir) {
        Ok(()) => Ok(Resolved {
            dir,
            source: Source::HubCache {
                repo: repo.to_string(),
                revision,
                cache: cache.clone(),
            },
            name: repo_name(repo).to_string(),
        }),
        Err(why) => Err((
            format!("{} (the Hugging Face cache)", dir.display()),
            format!("{why}: an incomplete download? Run `imgvec fetch-model {repo}`"),
        )),
    }
}

/// The revision `refs/main` names, else the only snapshot present.
fn chosen_revision(repo_dir: &Path) -> Result<String, String> {
    let main_ref = repo_dir.join("refs").join("main");
    match std::fs::read_to_string(&main_ref) {
        Ok(text) => {
            let rev = text.trim();
            return if rev.is_empty() || rev.contains(['/', '\\']) || rev == ".." {
                Err(format!("{} does not name a revision", main_ref.display()))
            } else {
                Ok(rev.to_string())
            };
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", main_ref.display())),
    }
    let snapshots = repo_dir.join("snapshots");
    let entries = std::fs::read_dir(&snapshots)
        .map_err(|e| format!("no refs/main, and cannot list {}: {e}", snapshots.display()))?;
    let mut revs: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    revs.sort();
    match revs.len() {
        1 => Ok(revs.remove(0)),
        0 => Err("no snapshot in it".to_string()),
        n => Err(format!(
            "no refs/main, and {n} snapshots ({}): point --model-dir at the one to use",
            revs.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests;
