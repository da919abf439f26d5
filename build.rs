//! Build script: puts the git revision and the enabled features into `imgvec --version`, and marks
//! the Elasticsearch tests ignored when built with `IMGVEC_SKIP_ES_TESTS=1` (so the test totals show
//! them as skipped rather than passed).
//!
//! `IMGVEC_GIT_REV` is `git rev-parse --short HEAD`, or `unknown` when git is missing or this is not a
//! git checkout (a crates.io or release tarball): that never fails the build. `IMGVEC_FEATURES` lists
//! the enabled device features (`cuda`, `metal`), `cpu` when none, and `heif` when built with it.

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

/// Marks what this machine's CPU can run, for the kernel tests that need it: `cpu_avx2` (AVX2+FMA:
/// the packed f32 kernels), `cpu_avx512_bf16` (AVX-512 with AVX512_BF16: the bf16 layers), `cpu_avx512_vnni` (the int8 ones), `cpu_int8_avx2` (int8's 256-bit tiles: AVX-VNNI or AVX-512 VNNI and VL) and `cpu_amx` (AMX-TILE and AMX-BF16, and `IMGVEC_SIMD` unset so imgvec
/// would use them). A test for a path the CPU lacks is then marked ignored — counted as skipped —
/// instead of passing without checking anything. The tests are built and run on one machine (as
/// `tests/run.sh` and CI do).
fn cpu_cfgs() {
    println!("cargo::rustc-check-cfg=cfg(cpu_avx2)");
    println!("cargo::rustc-check-cfg=cfg(cpu_amx)");
    println!("cargo::rustc-check-cfg=cfg(cpu_avx512_bf16)");
    println!("cargo::rustc-check-cfg=cfg(cpu_avx512_vnni)");
    println!("cargo::rustc-check-cfg=cfg(cpu_int8_avx2)");
    println!("cargo::rerun-if-env-changed=IMGVEC_SIMD");
    let simd = std::env::var("IMGVEC_SIMD")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86_64") {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
        if avx2 && simd != "none" {
            println!("cargo::rustc-cfg=cpu_avx2");
        }
        let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let has = |f: &str| {
            flags
                .lines()
                .find(|l| l.starts_with("flags"))
                .is_some_and(|l| l.split_whitespace().any(|w| w == f))
        };
        if avx2 && has("avx512f") && has("avx512_bf16") && (simd.is_empty() || simd == "avx512") {
            println!("cargo::rustc-cfg=cpu_avx512_bf16");
        }
        let avx512 = avx2 && has("avx512f") && has("avx512bw");
        if avx512 && has("avx512_vnni") && (simd.is_empty() || simd == "avx512") {
            println!("cargo::rustc-cfg=cpu_avx512_vnni");
        }
        // int8's 256-bit tiles: AVX-VNNI, or its EVEX twin (AVX-512 VNNI and VL).
        if avx2
            && simd != "none"
            && (has("avx_vnni") || (avx512 && has("avx512_vnni") && has("avx512vl")))
        {
            println!("cargo::rustc-cfg=cpu_int8_avx2");
        }
        if avx2 && has("amx_tile") && has("amx_bf16") && simd.is_empty() {
            println!("cargo::rustc-cfg=cpu_amx");
        }
    }
}

/// Feature `heif`: links the system's libheif (≥ 1.15, the version Debian 12 ships), or fails the
/// build saying what to install.
#[cfg(feature = "heif")]
fn link_libheif() {
    if let Err(e) = pkg_config::Config::new()
        .atleast_version("1.15")
        .probe("libheif")
    {
        panic!(
            "the `heif` feature needs libheif 1.15 or newer with its development files \
             (Debian/Ubuntu: `sudo apt install libheif-dev`; Fedora: `dnf install libheif-devel`; \
             macOS: `brew install libheif`), found by pkg-config: {e}"
        );
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "heif")]
    link_libheif();
    cpu_cfgs();
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
    if std::env::var_os("CARGO_FEATURE_HEIF").is_some() {
        features.push("heif");
    }
    println!("cargo:rustc-env=IMGVEC_FEATURES={}", features.join(", "));
}
