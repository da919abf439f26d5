//! Running `imgvec serve` in tests: a folder of labelled images ingested with the tiny model, the
//! server started on a free port (the URL read from its first line), and HTTP helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use serde_json::Value;

use crate::common::{fixtures, stderr, TestIndex};

/// The label whose folder name is markup: it must show as text, never run.
pub const XSS_LABEL: &str = "<img src=x onerror=alert(1)>";

/// Labelled images in a temp folder: `cats/chelsea.png`, `space/{astronaut.png,rocket.jpg}`,
/// `things/{coffee.png,camera.png,gone.png}`, `<img src=x onerror=alert(1)>/synth_exact.png`.
/// `gone.png` is deleted after ingest (see [`Corpus::remove_gone`]).
pub struct Corpus {
    pub dir: tempfile::TempDir,
}

impl Corpus {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let images = fixtures().join("images");
        for (label, file, from) in [
            ("cats", "chelsea.png", "chelsea.png"),
            ("space", "astronaut.png", "astronaut.png"),
            ("space", "rocket.jpg", "rocket.jpg"),
            ("things", "coffee.png", "coffee.png"),
            ("things", "camera.png", "camera.png"),
            ("things", "gone.png", "synth_tall.png"),
            (XSS_LABEL, "synth_exact.png", "synth_exact.png"),
        ] {
            let folder = dir.path().join(label);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::copy(images.join(from), folder.join(file)).unwrap();
        }
        Self { dir }
    }

    pub fn path(&self, label: &str, file: &str) -> PathBuf {
        self.dir.path().join(label).join(file)
    }

    pub fn id_of(&self, label: &str, file: &str) -> String {
        imgvec::pipeline::sha256_hex(&std::fs::read(self.path(label, file)).unwrap())
    }

    /// Ingests every image into `idx` with labels from folder names.
    pub fn ingest(&self, idx: &TestIndex) {
        let root = self.dir.path().to_str().unwrap();
        let out = idx.run(&["ingest", root, "--label-from-dir", "--quiet"]);
        assert!(
            out.status.success(),
            "[{}] ingest: {}",
            idx.kind(),
            stderr(&out)
        );
    }

    pub fn remove_gone(&self) {
        std::fs::remove_file(self.path("things", "gone.png")).unwrap();
    }
}

/// A running `imgvec serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
    pub http: Client,
}

impl Server {
    /// `imgvec serve --addr 127.0.0.1:0 ARGS` on `idx`'s backend with the tiny model.
    pub fn start(idx: &TestIndex, args: &[&str]) -> Server {
        let mut cmd = idx.command(&["serve", "--addr", "127.0.0.1:0"]);
        cmd.args(args);
        Self::spawn(cmd)
    }

    /// Starts a prepared `imgvec serve` command and waits for its URL.
    pub fn spawn(mut cmd: Command) -> Server {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("serve.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("start imgvec serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                    let _ = tx.send(url.trim_end_matches('/').to_string());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("imgvec serve printed no URL; its log:\n{}", read(&log));
            }
        };
        let http = Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        Server {
            child,
            url,
            log,
            _log_dir: log_dir,
            http,
        }
    }

    pub fn log(&self) -> String {
        read(&self.log)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits at most `timeout` for the server to exit; its exit status, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn get(&self, path: &str) -> Response {
        self.http.get(format!("{}{path}", self.url)).send().unwrap()
    }

    /// GET, the status and the body as JSON.
    pub fn get_json(&self, path: &str) -> (u16, Value) {
        json_of(self.get(path))
    }

    pub fn search_form(&self, form: &Form) -> (u16, Value) {
        json_of(
            self.http
                .post(format!("{}/api/search", self.url))
                .header("content-type", form.content_type())
                .body(form.body())
                .send()
                .unwrap(),
        )
    }

    pub fn search_json(&self, body: &Value) -> (u16, Value) {
        json_of(
            self.http
                .post(format!("{}/api/search", self.url))
                .json(body)
                .send()
                .unwrap(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn json_of(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text}"));
    (status, value)
}

/// A `multipart/form-data` body, as a browser's form sends it.
#[derive(Default)]
pub struct Form {
    parts: Vec<(String, Option<String>, Vec<u8>)>,
}

const BOUNDARY: &str = "imgvec-test-boundary-7MA4YWxkTrZu0gW";

impl Form {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.parts
            .push((name.into(), None, value.as_bytes().to_vec()));
        self
    }
    pub fn file(mut self, name: &str, file_name: &str, bytes: Vec<u8>) -> Self {
        self.parts
            .push((name.into(), Some(file_name.into()), bytes));
        self
    }
    /// The `image` field with the file at `path`.
    pub fn image(self, path: &Path) -> Self {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        self.file("image", &name, std::fs::read(path).unwrap())
    }
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={BOUNDARY}")
    }
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, file_name, bytes) in &self.parts {
            out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            let disposition = match file_name {
                Some(f) => format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                ),
                None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
            };
            out.extend_from_slice(disposition.as_bytes());
            out.extend_from_slice(bytes);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        out
    }
}

/// The ids of a search answer's hits, in order.
pub fn hit_ids(answer: &Value) -> Vec<String> {
    answer["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {answer}"))
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
