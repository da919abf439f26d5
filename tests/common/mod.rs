//! Shared by the integration tests: the tiny checkpoint, the reference numbers, the built binary.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn gunzip(path: &Path) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

/// The tiny CLIP checkpoint as a model directory (tokenizer unpacked), made once per test binary.
pub fn tiny_model_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let src = fixtures().join("clip-tiny");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("clip-tiny-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&src).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".gz") {
                std::fs::write(dir.join(stem), gunzip(&p)).unwrap();
            } else {
                std::fs::copy(&p, dir.join(&name)).unwrap();
            }
        }
        dir
    })
    .clone()
}

pub fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("expected-tiny-seed1.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// transformers' preprocessed pixels of a reference image.
pub fn reference_pixels(image: &str) -> Vec<f32> {
    let bytes = gunzip(&fixtures().join("pixels").join(format!("{image}.f32.gz")));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    imgvec::clip::cosine(a, b)
}

/// Runs the built `imgvec` with the tiny model and returns its output.
pub fn imgvec(args: &[&str]) -> Output {
    imgvec_env(args, &[])
}

pub fn imgvec_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgvec"));
    cmd.args(args)
        .env("IMGVEC_MODEL_DIR", tiny_model_dir())
        .env("IMGVEC_DEVICE", "cpu")
        .env_remove("IMGVEC_ES_URL")
        .env_remove("ELASTIC_PASSWORD")
        .env_remove("ELASTIC_API_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run imgvec")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
