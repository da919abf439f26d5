//! Helpers shared by this module's unit tests: sample specs and documents, and a scripted HTTP
//! server for what no Elasticsearch can be made to do on demand (429s, 503s, 401s, 403s).
//!
//! Not for the integration tests against a real server: those live in `tests/store_elastic.rs`.

use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ElasticConfig, ElasticStore};
use crate::store::{ImageDoc, IndexSpec};

pub(super) fn spec(dims: usize) -> IndexSpec {
    IndexSpec::for_dims(dims)
}

pub(super) fn doc(id: &str, dims: usize) -> ImageDoc {
    ImageDoc {
        id: id.into(),
        label: "cat".into(),
        path: "/data/cat \"1\".jpg".into(),
        other_paths: Vec::new(),
        vector: vec![0.5; dims],
        bytes: 1234,
        width: 640,
        height: 480,
        model: "clip-vit-large-patch14".into(),
        indexed_at_ms: 1_700_000_000_000,
        mtime_ms: None,
    }
}

/// What the fake server saw: one "METHOD PATH\nBODY" per request.
pub(super) type Seen = Arc<Mutex<Vec<String>>>;

/// The request lines ("METHOD PATH") of what the fake server saw, in order.
pub(super) fn request_lines(seen: &Seen) -> Vec<String> {
    let seen = seen.lock().unwrap();
    seen.iter()
        .map(|r| r.lines().next().unwrap_or("").to_string())
        .collect()
}

/// A scripted HTTP server on loopback: answers the i-th connection with `replies[i]` and records
/// each request as "METHOD PATH\nBODY".
pub(super) fn fake_server(replies: Vec<(u16, &'static str)>) -> (String, Seen) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (status, body) in replies {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let request = read_request(&mut reader);
            log.lock().unwrap().push(request);
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let mut stream = reader.into_inner();
            let _ = stream.write_all(reply.as_bytes());
            let _ = stream.flush();
        }
    });
    (url, seen)
}

/// Reads one HTTP/1.1 request: "METHOD PATH\nBODY".
fn read_request(reader: &mut impl BufRead) -> String {
    let mut request_line = String::new();
    let _ = reader.read_line(&mut request_line);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut req_body = vec![0u8; length];
    let _ = reader.read_exact(&mut req_body);
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    format!("{method} {path}\n{}", String::from_utf8_lossy(&req_body))
}

/// A store on `url`, index `idx`, with short waits between retries.
pub(super) fn fast_store(url: &str, max_retries: u32) -> ElasticStore {
    let mut cfg = ElasticConfig::new(url, "idx");
    cfg.max_retries = max_retries;
    cfg.retry_base = Duration::from_millis(2);
    cfg.request_timeout = Duration::from_secs(5);
    ElasticStore::connect(cfg).unwrap()
}
