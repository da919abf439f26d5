//! README's quick start, run verbatim as a new user would: a fresh `HOME`, the model already in the
//! Hugging Face cache (the tiny checkpoint, in the cache's real layout), a working directory outside
//! the checkout, and no `--model-dir`, `--store` or `IMGVEC_*` setting anywhere.
//!
//! The commands are read from README's "Quick start" block and run by `sh` (so `~` expands as in a
//! user's shell) with the built `imgvec` first on `PATH`.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// A revision name as the hub writes them (40 hex digits).
const REV: &str = "32bd64288804d66eefd0ccbe215aa642df71cc41";

/// README's quick-start lines that run imgvec on photos (installing and downloading need the network).
fn quick_start_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let section = readme
        .split("\n## Quick start\n")
        .nth(1)
        .expect("README has a '## Quick start' section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the quick start has a ```sh block");
    let lines: Vec<String> = block
        .lines()
        .filter(|l| l.starts_with("imgvec ingest") || l.starts_with("imgvec search"))
        .map(str::to_string)
        .collect();
    assert!(
        lines.len() >= 2,
        "quick start without ingest and search: {block}"
    );
    lines
}

/// The tiny checkpoint as `huggingface_hub` lays it out: blobs, a snapshot of links, refs/main.
fn fill_hf_cache(hub: &Path) {
    let repo = hub.join("models--openai--clip-vit-large-patch14");
    let snap = repo.join("snapshots").join(REV);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), REV).unwrap();
    for entry in std::fs::read_dir(tiny_model_dir()).unwrap() {
        let src = entry.unwrap().path();
        let name = src.file_name().unwrap().to_string_lossy().into_owned();
        let blob = format!("blob-{name}");
        std::fs::copy(&src, repo.join("blobs").join(&blob)).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snap.join(&name)).unwrap();
    }
}

/// ~/Pictures/pets/{cats,dogs}/ with reference images (recognised by content, so PNGs named .jpg are
/// fine). Every image file named in the quick start is among them.
fn pets(home: &Path, lines: &[String]) -> Vec<PathBuf> {
    let pets = home.join("Pictures/pets");
    let files = [
        ("cats/tom.jpg", "chelsea.png"),
        ("cats/felix.jpg", "coffee.png"),
        ("dogs/rex.jpg", "astronaut.png"),
        ("dogs/fido.jpg", "rocket.jpg"),
    ];
    let mut out = Vec::new();
    for (dest, src) in files {
        let dest = pets.join(dest);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(fixtures().join("images").join(src), &dest).unwrap();
        out.push(dest);
    }
    for word in lines.iter().flat_map(|l| l.split_whitespace()) {
        if let Some(rest) = word.strip_prefix("~/Pictures/pets/") {
            assert!(pets.join(rest).exists(), "README names {word}: add it here");
        }
    }
    out
}

struct User {
    home: PathBuf,
    work: PathBuf,
    _tmp: tempfile::TempDir,
}

impl User {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let work = tmp.path().join("somewhere-else");
        std::fs::create_dir_all(&work).unwrap();
        fill_hf_cache(&home.join(".cache/hf/hub"));
        Self {
            home,
            work,
            _tmp: tmp,
        }
    }

    /// `line` run by `sh` in the working directory, in this user's clean environment.
    fn sh(&self, line: &str) -> Output {
        let bin = Path::new(env!("CARGO_BIN_EXE_imgvec")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(line).current_dir(&self.work);
        clean_env(&mut cmd);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("XDG_") {
                cmd.env_remove(&*k);
            }
        }
        cmd.env("HOME", &self.home)
            .env("HF_HOME", self.home.join(".cache/hf"))
            .env("PATH", path)
            .output()
            .expect("run sh")
    }

    /// Where `directories` puts imgvec's data for this HOME.
    fn data_dir(&self) -> PathBuf {
        if cfg!(target_os = "macos") {
            self.home.join("Library/Application Support/imgvec")
        } else {
            self.home.join(".local/share/imgvec")
        }
    }
}

fn ok(line: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "`{line}` failed ({:?}):\n{}{}",
        out.status,
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

#[test]
fn readme_quick_start_works_from_anywhere_with_the_model_in_the_hf_cache() {
    let lines = quick_start_lines();
    let user = User::new();
    let images = pets(&user.home, &lines);
    for line in &lines {
        let out = user.sh(line);
        let text = ok(line, &out);
        if line.starts_with("imgvec search") {
            // The tiny model's weights are random: which image comes first means nothing, but every
            // hit is one of the ingested files, named by its absolute path.
            let hits: Vec<&str> = text.lines().skip(1).collect();
            assert!(!hits.is_empty(), "`{line}` found nothing:\n{text}");
            for hit in &hits {
                assert!(
                    images
                        .iter()
                        .any(|i| hit.ends_with(&i.display().to_string())),
                    "`{line}`: {hit}"
                );
            }
            assert_eq!(hits.len(), images.len(), "{text}");
        }
    }
    let store = user.data_dir();
    assert!(
        store.join("imgvec.sqlite3").is_file(),
        "no store in {}",
        store.display()
    );
    assert!(
        !user.work.join("imgvec-data").exists(),
        "a store in the working directory"
    );
    // `info` says where both are.
    let info = ok("imgvec info", &user.sh("imgvec info"));
    assert!(
        info.contains(&store.display().to_string()) && info.contains("4 image"),
        "{info}"
    );
    assert!(info.contains(REV) && info.contains("HF_HOME"), "{info}");
}

#[test]
fn without_a_model_the_error_lists_where_it_looked() {
    let user = User::new();
    std::fs::remove_dir_all(user.home.join(".cache/hf")).unwrap();
    let out = user.sh("imgvec search --text cat");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for want in [
        "--model-dir / IMGVEC_MODEL_DIR",
        "models--openai--clip-vit-large-patch14",
        "HF_HOME",
        "models/clip-vit-large-patch14",
        "imgvec fetch-model",
    ] {
        assert!(err.contains(want), "missing {want:?}: {err}");
    }
    // `info` reports it without failing.
    let info = ok("imgvec info", &user.sh("imgvec info"));
    assert!(info.contains("no CLIP model found"), "{info}");
}

#[test]
fn version_completions_and_man_page() {
    let user = User::new();
    let v = ok("imgvec --version", &user.sh("imgvec --version"));
    assert!(
        v.starts_with(&format!("imgvec {} (rev ", env!("CARGO_PKG_VERSION")))
            && v.contains("features: "),
        "{v}"
    );
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let line = format!("imgvec completions {shell}");
        let script = ok(&line, &user.sh(&line));
        assert!(script.contains("fetch-model"), "{shell}: {script}");
    }
    let man = ok("imgvec man", &user.sh("imgvec man"));
    assert!(
        man.contains(".TH imgvec") && man.contains("fetch\\-model"),
        "{man}"
    );
    ok("imgvec man --out man1", &user.sh("imgvec man --out man1"));
    for page in ["imgvec.1", "imgvec-search.1", "imgvec-fetch-model.1"] {
        assert!(user.work.join("man1").join(page).is_file(), "{page}");
    }
    let out = user.sh("imgvec search --no-such-flag");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = user.sh("NO_COLOR=1 imgvec search --no-such-flag");
    assert!(!stderr(&out).contains('\u{1b}'), "{}", stderr(&out));
}
