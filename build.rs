//! Build script: puts the git revision and the enabled features into `imgvec --version`, and marks
//! the Elasticsearch tests ignored when built with `IMGVEC_SKIP_ES_TESTS=1` (so the test totals show
//! them as skipped rather than passed).
//!
//! `IMGVEC_GIT_REV` is `git rev-parse --short HEAD`, or `unknown` when git is missing or this is not a
//! git checkout (a crates.io or release tarball): that never fails the build. `IMGVEC_FEATURES` lists
//! the enabled device features (`cuda`, `metal`), `cpu` when none.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Whether the package is the top of a git work tree (not a tarball unpacked inside another repo).
fn is_own_checkout() -> bool {
    let top =
        git(&["rev-parse", "--show-toplevel"]).and_then(|t| Path::new(&t).canonicalize().ok());
    top.is_some() && top == Path::new(env!("CARGO_MANIFEST_DIR")).canonicalize().ok()
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(skip_es)");
    println!("cargo::rerun-if-env-changed=IMGVEC_SKIP_ES_TESTS");
    if std::env::var("IMGVEC_SKIP_ES_TESTS").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=skip_es");
    }
    let own = is_own_checkout();
    let rev = own
        .then(|| git(&["rev-parse", "--short", "HEAD"]))
        .flatten()
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=IMGVEC_GIT_REV={rev}");
    // Rebuild when HEAD moves: HEAD itself, the branch it points at, and packed refs.
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watch.extend(own.then(|| git(&["symbolic-ref", "-q", "HEAD"])).flatten());
    for name in watch.into_iter().filter(|_| own) {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }

    let mut features: Vec<&str> = Vec::new();
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        features.push("cuda");
    }
    if std::env::var_os("CARGO_FEATURE_METAL").is_some() {
        features.push("metal");
    }
    if features.is_empty() {
        features.push("cpu");
    }
    println!("cargo:rustc-env=IMGVEC_FEATURES={}", features.join(", "));
}
