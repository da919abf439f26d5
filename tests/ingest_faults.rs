//! Ingest under faults: killed mid-way (SIGKILL), interrupted (Ctrl-C), and the server going away and
//! coming back. After a rerun every image is indexed exactly once.
//!
//! The server "goes away" through a TCP proxy on 127.0.0.1 that the test owns, so the same test runs
//! against any Elasticsearch without stopping it.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn es_url() -> Option<String> {
    match std::env::var("IMGVEC_TEST_ES_URL") {
        Ok(u) if !u.is_empty() => Some(u.trim_end_matches('/').to_string()),
        _ if std::env::var("IMGVEC_SKIP_ES_TESTS").as_deref() == Ok("1") => None,
        _ => panic!(
            "IMGVEC_TEST_ES_URL is not set: run `bash tests/run.sh`, or set IMGVEC_SKIP_ES_TESTS=1"
        ),
    }
}

/// `n` distinct small PNGs (different bytes, so different ids) in a fresh folder.
fn distinct_images(n: usize) -> (tempfile::TempDir, PathBuf) {
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

struct Index {
    url: String,
    name: String,
    http: reqwest::blocking::Client,
}

impl Index {
    fn new(test: &str) -> Option<Self> {
        let url = es_url()?;
        let idx = Self {
            url,
            name: format!("imgvec-faults-{test}-{}", std::process::id()),
            http: reqwest::blocking::Client::new(),
        };
        let _ = idx.http.delete(format!("{}/{}", idx.url, idx.name)).send();
        let out = imgvec_env(
            &["create-index", "--index", &idx.name],
            &[("IMGVEC_ES_URL", &idx.url)],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        Some(idx)
    }

    fn count(&self) -> u64 {
        self.http
            .post(format!("{}/{}/_refresh", self.url, self.name))
            .send()
            .unwrap();
        let v: Value = self
            .http
            .get(format!("{}/{}/_count", self.url, self.name))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["count"].as_u64().unwrap()
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/{}", self.url, self.name))
            .send();
    }
}

fn ingest_cmd(url: &str, index: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgvec"));
    cmd.args([
        "ingest",
        dir.to_str().unwrap(),
        "--label",
        "x",
        "--json",
        "--batch-size",
        "1",
        "--index",
        index,
    ])
    .args(extra)
    .env("IMGVEC_MODEL_DIR", tiny_model_dir())
    .env("IMGVEC_DEVICE", "cpu")
    .env("IMGVEC_ES_URL", url)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

fn summary(child: Child) -> (Option<i32>, Value, String) {
    let out = child.wait_with_output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(s.trim()).unwrap_or(Value::Null);
    (
        out.status.code(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until the index holds at least `n` documents (or a time limit passes).
fn wait_for_docs(idx: &Index, n: u64, limit: Duration) -> u64 {
    let t = Instant::now();
    loop {
        let c = idx.count();
        if c >= n || t.elapsed() > limit {
            return c;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const N: usize = 300;

#[test]
fn killed_mid_ingest_then_rerun_indexes_each_image_once() {
    let Some(idx) = Index::new("sigkill") else {
        return;
    };
    let (_tmp, dir) = distinct_images(N);
    let mut child = ingest_cmd(&idx.url, &idx.name, &dir, &[]).spawn().unwrap();
    let before = wait_for_docs(&idx, 20, Duration::from_secs(60));
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let after_kill = idx.count();
    assert!(
        before >= 1 && after_kill < N as u64,
        "killed mid-way: {after_kill} of {N} indexed"
    );
    let (code, s, err) = summary(ingest_cmd(&idx.url, &idx.name, &dir, &[]).spawn().unwrap());
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s["already_present"].as_u64().unwrap(), after_kill, "{s}");
    assert_eq!(s["indexed"].as_u64().unwrap(), N as u64 - after_kill, "{s}");
    assert_eq!(idx.count(), N as u64);
}

#[cfg(unix)]
#[test]
fn ctrl_c_indexes_what_is_embedded_and_prints_the_summary() {
    let Some(idx) = Index::new("sigint") else {
        return;
    };
    let (_tmp, dir) = distinct_images(N);
    let child = ingest_cmd(&idx.url, &idx.name, &dir, &[]).spawn().unwrap();
    wait_for_docs(&idx, 20, Duration::from_secs(60));
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let (code, s, err) = summary(child);
    assert_eq!(code, Some(130), "exit status after Ctrl-C\n{err}");
    assert_eq!(s["interrupted"], true, "{s}");
    let indexed = s["indexed"].as_u64().unwrap();
    assert!(indexed < N as u64, "{s}");
    assert_eq!(s["failed"], 0, "nothing embedded is lost: {s}");
    assert_eq!(
        idx.count(),
        indexed,
        "what the summary says was indexed is in the index"
    );
    let (code, s, err) = summary(ingest_cmd(&idx.url, &idx.name, &dir, &[]).spawn().unwrap());
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        s["indexed"].as_u64().unwrap() + s["already_present"].as_u64().unwrap(),
        N as u64
    );
    assert_eq!(idx.count(), N as u64);
}

/// A TCP proxy in front of the server that the test can take down and bring back on the same port.
struct Proxy {
    port: u16,
    upstream: String,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream_url: &str) -> Self {
        let upstream = upstream_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut p = Proxy {
            port,
            upstream,
            up: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            acceptor: None,
        };
        p.bring_up();
        p
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn bring_up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.up.store(true, Ordering::SeqCst);
        let (up, conns, upstream) = (
            Arc::clone(&self.up),
            Arc::clone(&self.conns),
            self.upstream.clone(),
        );
        self.acceptor = Some(std::thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(&upstream) else {
                            continue;
                        };
                        let mut c = conns.lock().unwrap();
                        c.push(client.try_clone().unwrap());
                        c.push(server.try_clone().unwrap());
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
    }

    /// Closes the listening port and every open connection.
    fn take_down(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            h.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.take_down();
    }
}

#[test]
fn server_gone_mid_ingest_then_back() {
    let Some(idx) = Index::new("server-gone") else {
        return;
    };
    if !idx.url.starts_with("http://") {
        eprintln!("skipped: the proxy speaks plain http only");
        return;
    }
    let (_tmp, dir) = distinct_images(N);
    let mut proxy = Proxy::start(&idx.url);
    let child = ingest_cmd(&proxy.url(), &idx.name, &dir, &["--max-retries", "2"])
        .spawn()
        .unwrap();
    wait_for_docs(&idx, 20, Duration::from_secs(60));
    proxy.take_down();
    let (code, s, err) = summary(child);
    assert_eq!(
        code,
        Some(1),
        "non-zero exit when the server stays away\n{err}"
    );
    assert!(
        err.contains("cannot reach") && err.contains(&proxy.url()),
        "{err}"
    );
    assert!(err.contains("again to resume"), "{err}");
    let indexed_first = s["indexed"].as_u64().unwrap();
    assert!(indexed_first >= 1 && indexed_first < N as u64, "{s}");
    proxy.bring_up();
    let (code, s, err) = summary(
        ingest_cmd(&proxy.url(), &idx.name, &dir, &[])
            .spawn()
            .unwrap(),
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        s["indexed"].as_u64().unwrap() + s["already_present"].as_u64().unwrap(),
        N as u64,
        "{s}"
    );
    assert_eq!(idx.count(), N as u64);
}
