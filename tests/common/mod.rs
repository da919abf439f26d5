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
    DIR.get_or_init(|| unpack_model("clip-tiny")).clone()
}

/// The fixture checkpoint `tests/fixtures/NAME` as a model directory in cargo's target tmp dir,
/// its `.gz` files unpacked.
pub fn unpack_model(name: &str) -> PathBuf {
    let src = fixtures().join(name);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
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
}

pub fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("expected-tiny-seed1.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `field` of every entry of the reference list `list` (e.g. `images`/`file`, `texts`/`text`).
pub fn expected_strings(list: &str, field: &str) -> Vec<String> {
    expected()[list]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e[field].as_str().expect("a string").to_string())
        .collect()
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

/// Removes the caller's imgvec, Elasticsearch and Hugging Face settings (`IMGVEC_*`, `ELASTIC_*`,
/// `HF_*`, `HUGGINGFACE_*`) from `cmd`'s environment: the child sees only what the test sets.
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if ["IMGVEC_", "ELASTIC_", "HF_", "HUGGINGFACE_"]
            .iter()
            .any(|prefix| k.starts_with(prefix))
        {
            cmd.env_remove(&*k);
        }
    }
    cmd
}

/// The built `imgvec` with `args`, a clean environment, the tiny model and the CPU.
pub fn imgvec_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgvec"));
    clean_env(&mut cmd)
        .args(args)
        .env("IMGVEC_MODEL_DIR", tiny_model_dir())
        .env("IMGVEC_DEVICE", "cpu");
    cmd
}

pub fn imgvec_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = imgvec_command(args);
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

/// Where a test's index lives: the embedded store in a temp dir, or the Elasticsearch at
/// IMGVEC_TEST_ES_URL (tests/run.sh starts one; any real ES 8.12+/9.x works the same).
pub enum Backend {
    Local(tempfile::TempDir),
    Elastic(String),
}

/// One test's index on one backend; an Elasticsearch index is deleted when dropped.
pub struct TestIndex {
    pub backend: Backend,
    pub name: String,
    http: reqwest::blocking::Client,
}

/// The Elasticsearch URL for tests; panics with instructions when unset. (Tests that need it are
/// marked ignored when built with IMGVEC_SKIP_ES_TESTS=1, so they never get here then.)
pub fn es_url() -> String {
    match std::env::var("IMGVEC_TEST_ES_URL") {
        Ok(u) if !u.is_empty() => u.trim_end_matches('/').to_string(),
        _ => panic!(
            "IMGVEC_TEST_ES_URL is not set: run the tests with `bash tests/run.sh` (it starts a test \
server), point IMGVEC_TEST_ES_URL at an Elasticsearch, or set IMGVEC_SKIP_ES_TESTS=1"
        ),
    }
}

impl TestIndex {
    pub fn local(test: &str) -> Self {
        Self {
            backend: Backend::Local(tempfile::tempdir().unwrap()),
            name: format!("t-{test}"),
            http: reqwest::blocking::Client::new(),
        }
    }

    pub fn elastic(test: &str) -> Self {
        let url = es_url();
        let idx = Self {
            backend: Backend::Elastic(url),
            name: format!("imgvec-test-{test}-{}", std::process::id()),
            http: reqwest::blocking::Client::new(),
        };
        idx.delete_es_index();
        idx
    }

    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Local(_) => "local",
            Backend::Elastic(_) => "elastic",
        }
    }

    pub fn es_url(&self) -> Option<&str> {
        match &self.backend {
            Backend::Elastic(u) => Some(u),
            Backend::Local(_) => None,
        }
    }

    fn delete_es_index(&self) {
        if let Some(url) = self.es_url() {
            let _ = self.http.delete(format!("{url}/{}", self.name)).send();
        }
    }

    /// The environment that points imgvec at this backend.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match &self.backend {
            Backend::Local(dir) => vec![("IMGVEC_STORE", dir.path().display().to_string())],
            Backend::Elastic(url) => vec![("IMGVEC_ES_URL", url.clone())],
        }
    }

    /// A `Command` for `imgvec ARGS --index NAME` on this backend with the tiny model.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = imgvec_command(args);
        cmd.args(["--index", &self.name]);
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run imgvec")
    }

    /// Documents in the index, everything written so far included.
    pub fn count(&self) -> u64 {
        match self.es_url() {
            Some(url) => {
                self.http
                    .post(format!("{url}/{}/_refresh", self.name))
                    .send()
                    .unwrap();
                let v: serde_json::Value = self
                    .http
                    .get(format!("{url}/{}/_count", self.name))
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                v["count"].as_u64().unwrap()
            }
            None => {
                let out = self.run(&["info", "--json"]);
                assert!(out.status.success(), "info: {}", stderr(&out));
                let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
                v["documents"].as_u64().unwrap()
            }
        }
    }

    pub fn create(&self) {
        let out = self.run(&["create-index"]);
        assert!(
            out.status.success(),
            "[{}] create-index: {}",
            self.kind(),
            stderr(&out)
        );
    }

    /// The store API on this backend and index, as the commands open it.
    pub fn store(&self) -> Box<dyn imgvec::store::VectorStore> {
        use imgvec::store::elastic::{ElasticConfig, ElasticStore};
        match &self.backend {
            Backend::Local(dir) => {
                Box::new(imgvec::store::local::LocalStore::open(dir.path(), &self.name).unwrap())
            }
            Backend::Elastic(url) => Box::new(
                ElasticStore::connect(ElasticConfig::new(url.clone(), self.name.clone())).unwrap(),
            ),
        }
    }

    pub fn http(&self) -> &reqwest::blocking::Client {
        &self.http
    }
}

impl Drop for TestIndex {
    fn drop(&mut self) {
        self.delete_es_index();
    }
}

/// `n` distinct small PNGs (different bytes, so different ids) in a fresh folder.
pub fn distinct_images(n: usize) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("photos");
    std::fs::create_dir_all(&dir).unwrap();
    let mut state = 0x9E3779B97F4A7C15u64;
    for i in 0..n {
        let img = image::RgbImage::from_fn(48, 40, |x, y| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (state >> 56) as u8;
            image::Rgb([r, (x * 5 + i as u32) as u8, (y * 6) as u8])
        });
        img.save(dir.join(format!("img{i:04}.png"))).unwrap();
    }
    (tmp, dir)
}

/// A runtime for the tests that call the store API directly.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The command's stdout, after asserting it succeeded (the failure names the backend).
pub fn ok(idx: &TestIndex, out: &Output) -> String {
    assert!(
        out.status.success(),
        "[{}] exit {:?}\nstdout: {}\nstderr: {}",
        idx.kind(),
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// One JSON value per line.
pub fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A test that runs on each backend, as two tests: `NAME::local` (the embedded store) and
/// `NAME::elastic` (the Elasticsearch at IMGVEC_TEST_ES_URL), the latter marked ignored — counted as
/// skipped, not passed — when built with IMGVEC_SKIP_ES_TESTS=1.
///
/// ```ignore
/// backend_test! {
///     fn ingest_then_search(idx) { idx.create(); /* ... */ }
/// }
/// ```
#[macro_export]
macro_rules! backend_test {
    ($(#[$m:meta])* fn $name:ident($idx:ident) $body:block) => {
        $(#[$m])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($idx: TestIndex) $body

            #[test]
            fn local() {
                body(TestIndex::local(stringify!($name)))
            }

            #[test]
            #[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
            fn elastic() {
                body(TestIndex::elastic(stringify!($name)))
            }
        }
    };
}
