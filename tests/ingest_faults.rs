//! Ingest under faults: killed mid-way (SIGKILL), interrupted (Ctrl-C), and the server going away and
//! coming back. After a rerun every image is indexed exactly once.
//!
//! Kill and Ctrl-C run on both backends (the embedded store and Elasticsearch). The server "goes
//! away" through a TCP proxy on 127.0.0.1 that the test owns, so that test runs against any
//! Elasticsearch without stopping it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn ingest_cmd(idx: &TestIndex, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = idx.command(&[
        "ingest",
        dir.to_str().unwrap(),
        "--label",
        "x",
        "--json",
        "--batch-size",
        "1",
    ]);
    cmd.args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Starts an ingest and returns once its model is loaded and embedding has been going for `after`.
/// Its stderr is collected in the background.
fn start_ingest(cmd: &mut Command, after: Duration) -> (Child, JoinHandle<String>) {
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("model loaded") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the ingest started embedding");
    std::thread::sleep(after);
    (child, reader)
}

fn summary(child: Child, reader: Option<JoinHandle<String>>) -> (Option<i32>, Value, String) {
    let out = child.wait_with_output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(s.trim()).unwrap_or(Value::Null);
    let err = match reader {
        Some(r) => r.join().unwrap(),
        None => String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (out.status.code(), v, err)
}

const N: usize = 300;

backend_test! {
    fn killed_mid_ingest_then_rerun_indexes_each_image_once(idx) {
        let (_tmp, dir) = distinct_images(N);
        idx.create();
        let (mut child, _) =
            start_ingest(&mut ingest_cmd(&idx, &dir, &[]), Duration::from_millis(300));
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        let after_kill = idx.count();
        assert!(
            after_kill < N as u64,
            "[{}] killed mid-way: {after_kill} of {N}",
            idx.kind()
        );
        let (code, s, err) = summary(ingest_cmd(&idx, &dir, &[]).spawn().unwrap(), None);
        assert_eq!(code, Some(0), "[{}] {err}", idx.kind());
        // A bulk request in flight at the kill may still land after the count: hence ≥.
        let (indexed, present) = (
            s["indexed"].as_u64().unwrap(),
            s["already_present"].as_u64().unwrap(),
        );
        assert!(present >= after_kill, "[{}] {s}", idx.kind());
        assert_eq!(
            indexed + present,
            N as u64,
            "[{}] each image exactly once: {s}",
            idx.kind()
        );
        assert_eq!(idx.count(), N as u64, "[{}]", idx.kind());
    }
}

backend_test! {
    #[cfg(unix)]
    fn ctrl_c_indexes_what_is_embedded_and_prints_the_summary(idx) {
        let (_tmp, dir) = distinct_images(N);
        idx.create();
        let (child, reader) =
            start_ingest(&mut ingest_cmd(&idx, &dir, &[]), Duration::from_millis(300));
        let st = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let (code, s, err) = summary(child, Some(reader));
        assert_eq!(
            code,
            Some(130),
            "[{}] exit status after Ctrl-C\n{err}",
            idx.kind()
        );
        assert_eq!(s["interrupted"], true, "{s}");
        let indexed = s["indexed"].as_u64().unwrap();
        assert!(indexed < N as u64, "{s}");
        assert_eq!(s["failed"], 0, "nothing embedded is lost: {s}");
        assert_eq!(
            idx.count(),
            indexed,
            "[{}] what the summary says was indexed is there",
            idx.kind()
        );
        let (code, s, err) = summary(ingest_cmd(&idx, &dir, &[]).spawn().unwrap(), None);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(
            s["indexed"].as_u64().unwrap() + s["already_present"].as_u64().unwrap(),
            N as u64
        );
        assert_eq!(idx.count(), N as u64);
    }
}

/// A TCP proxy in front of the server that the test can take down and bring back on the same port.
struct Proxy {
    port: u16,
    /// `http` or `https`: the proxy passes bytes through, so TLS goes end to end.
    scheme: String,
    upstream: String,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream_url: &str) -> Self {
        let (scheme, rest) = upstream_url.split_once("://").expect("URL with a scheme");
        let host_port = rest.trim_end_matches('/');
        let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, h)| h);
        let default_port = if scheme == "https" { 443 } else { 80 };
        let upstream = if host_port
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host_port.to_string()
        } else {
            format!("{host_port}:{default_port}")
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut p = Proxy {
            port,
            scheme: scheme.to_string(),
            upstream,
            up: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            acceptor: None,
        };
        p.bring_up();
        p
    }

    /// The proxy's URL: `localhost` with TLS (the name local clusters' certificates carry).
    fn url(&self) -> String {
        let host = if self.scheme == "https" {
            "localhost"
        } else {
            "127.0.0.1"
        };
        format!("{}://{host}:{}", self.scheme, self.port)
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
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn server_gone_mid_ingest_then_back() {
    let idx = TestIndex::elastic("server-gone");
    let url = idx.es_url().unwrap().to_string();
    idx.create();
    let (_tmp, dir) = distinct_images(N);
    let mut proxy = Proxy::start(&url);
    let proxy_url = proxy.url();
    let with_proxy = |extra: &[&str]| {
        let mut c = ingest_cmd(&idx, &dir, extra);
        c.env("IMGVEC_ES_URL", &proxy_url);
        c
    };
    let (child, reader) = start_ingest(
        &mut with_proxy(&["--max-retries", "2"]),
        Duration::from_millis(300),
    );
    proxy.take_down();
    let (code, s, err) = summary(child, Some(reader));
    assert_eq!(
        code,
        Some(1),
        "non-zero exit when the server stays away\n{err}"
    );
    assert!(
        err.contains("cannot reach") && err.contains(&proxy_url),
        "{err}"
    );
    assert!(err.contains("again to resume"), "{err}");
    let indexed_first = s["indexed"].as_u64().unwrap();
    assert!(indexed_first < N as u64, "{s}");
    proxy.bring_up();
    let (code, s, err) = summary(with_proxy(&[]).spawn().unwrap(), None);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        s["indexed"].as_u64().unwrap() + s["already_present"].as_u64().unwrap(),
        N as u64,
        "{s}"
    );
    assert_eq!(idx.count(), N as u64);
}
