//! `imgvec serve`'s JSON API on both backends, as the page (or a script) uses it: text, upload and
//! combined searches, "more like this", labels, filters, thumbnails and originals by id — and every
//! kind of refusal: bad input (400), unknown ids and traversal attempts (404), too large (413), a
//! foreign Host (403), an unreachable store (503), no model (503).

mod common;
#[path = "support/serve.rs"]
mod serve;

use std::time::Duration;

use base64::Engine;
use common::{imgvec_env, stderr, stdout, TestIndex};
use serde_json::{json, Value};
use serve::{hit_ids, json_of, Corpus, Form, Server, XSS_LABEL};

const HIT_KEYS: [&str; 6] = ["distance", "id", "label", "path", "rank", "score"];

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// `imgvec search ... --json` on the same index: the ids, in order.
fn cli_search(idx: &TestIndex, args: &[&str]) -> Vec<String> {
    let mut all = vec!["search", "--json"];
    all.extend_from_slice(args);
    let out = idx.run(&all);
    assert!(out.status.success(), "search: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

backend_test! {
    fn search_similar_labels_and_files(idx) {
        let corpus = Corpus::new();
        corpus.ingest(&idx);
        // The CLI's answers, to compare with the server's.
        let cli_text = cli_search(&idx, &["--text", "a photo", "--minus", "dark", "-k", "3"]);
        let cli_space = cli_search(&idx, &["--text", "a photo", "--label", "space", "-k", "5"]);
        corpus.remove_gone();
        let server = Server::start(&idx, &[]);
        info_and_labels(&server, &idx);
        text_searches(&server, idx.kind(), &cli_text, &cli_space);
        image_searches(&server, &corpus, idx.kind());
        more_like_this(&server, &corpus.id_of("cats", "chelsea.png"), idx.kind());
        files_by_id(&server, &corpus, idx.kind());
        many_clients_at_once(&server, &corpus.id_of("cats", "chelsea.png"));
    }
}

/// A client that stalls half way through an upload blocks nobody; eight at once all get answers.
fn many_clients_at_once(server: &Server, id: &str) {
    use std::io::Write;
    let addr = server.url.trim_start_matches("http://");
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    write!(
        slow,
        "POST /api/search HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; \
         boundary=x\r\nContent-Length: 100000\r\n\r\n--x\r\n"
    )
    .unwrap();
    std::thread::scope(|s| {
        for i in 0..8 {
            s.spawn(move || {
                let form = Form::new().text("q", &format!("photo number {i}"));
                let (status, answer) = server.search_form(&form);
                assert_eq!(status, 200, "{answer}");
                let (status, similar) = server.get_json(&format!("/api/similar/{id}?k=2"));
                assert_eq!(status, 200, "{similar}");
            });
        }
    });
    drop(slow);
}

fn info_and_labels(server: &Server, idx: &TestIndex) {
    let kind = idx.kind();
    let (status, info) = server.get_json("/api/info");
    assert_eq!(status, 200, "[{kind}] {info}");
    assert_eq!(info["documents"], 7, "[{kind}] {info}");
    let backend = if kind == "local" {
        "embedded"
    } else {
        "elasticsearch"
    };
    assert_eq!(info["backend"], backend);
    assert_eq!(info["index"], idx.name.as_str());
    assert_eq!(info["image_search"], true);
    assert_eq!(info["text_search"], true);
    assert!(info["dims"].as_u64().unwrap() > 0);
    let (status, labels) = server.get_json("/api/labels");
    assert_eq!(status, 200);
    let want = json!([{"label": "things", "count": 3}, {"label": "space", "count": 2},
                      {"label": XSS_LABEL, "count": 1}, {"label": "cats", "count": 1}]);
    assert_eq!(labels, want, "[{kind}]");
}

/// Text with a subtracted word, as a form and as JSON: the CLI's hits with the CLI's keys; the
/// label filter inside the search.
fn text_searches(server: &Server, kind: &str, cli_text: &[String], cli_space: &[String]) {
    let form = Form::new().text("q", "a photo -dark").text("k", "3");
    let (status, answer) = server.search_form(&form);
    assert_eq!(status, 200, "[{kind}] {answer}");
    assert_eq!(hit_ids(&answer), cli_text, "[{kind}]");
    let first = &answer["hits"][0];
    assert_eq!(keys(first), HIT_KEYS);
    assert_eq!(first["rank"], 1);
    assert!(answer["took_ms"].is_u64());
    let body = json!({"text": "a photo", "minus": ["dark"], "k": 3});
    let (_, as_json) = server.search_json(&body);
    assert_eq!(hit_ids(&as_json), cli_text, "[{kind}] JSON body");
    let form = Form::new()
        .text("q", "a photo")
        .text("k", "5")
        .text("label", "space");
    let (_, space) = server.search_form(&form);
    assert_eq!(hit_ids(&space), cli_space, "[{kind}]");
    assert!(space["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["label"] == "space"));
}

/// An uploaded image finds itself first, at distance 0 (also as base64 JSON, and with a text).
fn image_searches(server: &Server, corpus: &Corpus, kind: &str) {
    let chelsea = corpus.id_of("cats", "chelsea.png");
    let path = corpus.path("cats", "chelsea.png");
    let (status, by_image) = server.search_form(&Form::new().image(&path));
    assert_eq!(status, 200, "[{kind}] {by_image}");
    assert_eq!(by_image["hits"][0]["id"], chelsea.as_str());
    assert!(by_image["hits"][0]["distance"].as_f64().unwrap() < 1e-3);
    assert_eq!(by_image["hits"][0]["path"], path.to_str().unwrap());
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&path).unwrap());
    let (_, by_json) = server.search_json(&json!({"image": b64, "k": 2}));
    assert_eq!(by_json["hits"][0]["id"], chelsea.as_str());
    let (status, combined) = server.search_form(&Form::new().image(&path).text("q", "a cat"));
    assert_eq!(status, 200, "[{kind}] {combined}");
}

/// The stored vector, the document itself left out; the label filter applies.
fn more_like_this(server: &Server, id: &str, kind: &str) {
    let (status, similar) = server.get_json(&format!("/api/similar/{id}?k=3"));
    assert_eq!(status, 200, "[{kind}] {similar}");
    let ids = hit_ids(&similar);
    assert_eq!(ids.len(), 3);
    assert!(!ids.iter().any(|i| i == id));
    let (_, four) = server.get_json(&format!("/api/similar/{id}?k=4"));
    assert_eq!(ids, hit_ids(&four)[..3], "[{kind}] k=3 is the head of k=4");
    let (_, space) = server.get_json(&format!("/api/similar/{id}?k=5&label=space"));
    let labels: Vec<&Value> = space["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["label"])
        .collect();
    assert_eq!(labels, [&json!("space"), &json!("space")], "[{kind}]");
}

/// Thumbnails are bounded JPEGs, the same bytes again from the cache; originals are the file's
/// bytes; a file deleted since it was indexed is a 404 saying so.
fn files_by_id(server: &Server, corpus: &Corpus, kind: &str) {
    let rocket = corpus.id_of("space", "rocket.jpg");
    let thumb = server.get(&format!("/thumb/{rocket}"));
    assert_eq!(thumb.status().as_u16(), 200);
    assert_eq!(thumb.headers()["content-type"], "image/jpeg");
    let bytes = thumb.bytes().unwrap();
    let img = image::load_from_memory(&bytes).unwrap();
    assert!(
        img.width().max(img.height()) <= 360,
        "{}x{}",
        img.width(),
        img.height()
    );
    assert_eq!(
        server.get(&format!("/thumb/{rocket}")).bytes().unwrap(),
        bytes
    );
    let original = server.get(&format!("/image/{rocket}"));
    assert_eq!(original.headers()["content-type"], "image/jpeg");
    let file = std::fs::read(corpus.path("space", "rocket.jpg")).unwrap();
    assert_eq!(original.bytes().unwrap(), file);
    let gone = corpus.id_of_removed();
    let (status, err) = json_of(server.get(&format!("/thumb/{gone}")));
    assert_eq!(status, 404, "[{kind}] {err}");
    assert!(err["error"].as_str().unwrap().contains("gone"), "{err}");
    let (status, _) = json_of(server.get(&format!("/image/{gone}")));
    assert_eq!(status, 404);
}

backend_test! {
    fn bad_requests_are_refused_with_reasons(idx) {
        refusals(&idx);
    }
}

/// Each kind of bad request gets its status and a reason, with no internal path.
fn refusals(idx: &TestIndex) {
    let corpus = Corpus::new();
    corpus.ingest(idx);
    let server = Server::start(idx, &["--max-upload-mib", "1"]);
    let kind = idx.kind();
    let error = |(status, body): (u16, Value), want: u16, words: &str| {
        assert_eq!(status, want, "[{kind}] {body}");
        let message = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {body}"));
        assert!(
            message.contains(words),
            "[{kind}] {message:?} should say {words:?}"
        );
        assert!(
            !message.contains("/tmp/"),
            "[{kind}] an internal path in {message:?}"
        );
    };
    error(
        server.search_form(&Form::new()),
        400,
        "nothing to search for",
    );
    error(
        server.search_form(&Form::new().text("q", "-dog")),
        400,
        "only subtracts",
    );
    error(
        server.search_form(&Form::new().text("q", "cat").text("k", "0")),
        400,
        "k must be",
    );
    error(
        server.search_form(&Form::new().text("q", "cat").text("k", "ten")),
        400,
        "whole number",
    );
    error(
        server.search_form(&Form::new().text("q", "cat").text("colour", "red")),
        400,
        "unknown form field",
    );
    error(
        server.search_json(&json!({"q": "cat", "num_candidates": 1, "k": 5})),
        400,
        "num_candidates",
    );
    error(
        server.search_json(&json!({"txt": "cat"})),
        400,
        "not a search",
    );
    let not_image = Form::new().file("image", "notes.txt", b"just some text, not pixels".to_vec());
    error(server.search_form(&not_image), 400, "cannot be used");
    let big = Form::new().file("image", "big.jpg", vec![0xFF; (1 << 20) + 10]);
    error(server.search_form(&big), 413, "larger than");
    let plain = server
        .http
        .post(format!("{}/api/search", server.url))
        .body("q=cat")
        .send()
        .unwrap();
    error(
        json_of(plain),
        400,
        "multipart/form-data or application/json",
    );

    let unknown = "0".repeat(64);
    error(
        server.get_json(&format!("/api/similar/{unknown}")),
        404,
        "no image with id",
    );
    error(
        server.get_json(&format!("/thumb/{unknown}")),
        404,
        "no image with id",
    );
    error(server.get_json("/api/similar/abc?k=-1"), 400, "");
    for attempt in [
        "/thumb/..%2F..%2F..%2Fetc%2Fpasswd",
        "/image/..%2F..%2Fetc%2Fpasswd",
        "/image/%2e%2e",
        "/image/%2e%2e%2fetc%2fpasswd",
        "/thumb/../../etc/passwd",
        "/image/../../../../etc/passwd",
        "/thumb/a.jpg",
        "/image/etc/passwd",
    ] {
        let (status, body) = raw_get(&server.url, attempt);
        assert_eq!(status, 404, "[{kind}] {attempt}: {body}");
        assert!(!body.contains("root:"), "{attempt} served a file: {body}");
    }
    error(server.get_json("/api/nothing"), 404, "nothing here");
    let put = server
        .http
        .put(format!("{}/api/search", server.url))
        .send()
        .unwrap();
    error(json_of(put), 405, "not allowed");

    // DNS rebinding: a page on another name must not read the API.
    let foreign = server
        .http
        .get(format!("{}/api/labels", server.url))
        .header("host", "evil.example:8080")
        .send()
        .unwrap();
    error(json_of(foreign), 403, "localhost");
    // Every answer carries the page's protections.
    let page = server.get("/");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert!(page.text().unwrap().contains("<title>imgvec</title>"));
    let (_, js) = raw_get_with(&server.url, "/assets/app.js", "Accept-Encoding: gzip\r\n");
    assert!(
        js.to_ascii_lowercase().contains("content-encoding: gzip"),
        "[{kind}] text is compressed: {js:.300}"
    );
}

/// A GET sent byte for byte (an HTTP client would normalize `..` and `%2e%2e` away first).
fn raw_get(url: &str, path: &str) -> (u16, String) {
    raw_get_with(url, path, "")
}

/// [`raw_get`] with extra header lines (each ending in CRLF); the answer's body as lossy text.
fn raw_get_with(url: &str, path: &str, headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    let answer = String::from_utf8_lossy(&bytes).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

trait RemovedId {
    fn id_of_removed(&self) -> String;
}

impl RemovedId for Corpus {
    /// The id `things/gone.png` had: the SHA-256 of the fixture it was copied from.
    fn id_of_removed(&self) -> String {
        let bytes = std::fs::read(common::fixtures().join("images/synth_tall.png")).unwrap();
        imgvec::pipeline::sha256_hex(&bytes)
    }
}

#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn an_unreachable_elasticsearch_is_503_and_the_page_is_still_served() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let idx = TestIndex::local("es-down");
    let mut cmd = idx.command(&["serve", "--addr", "127.0.0.1:0", "--timeout", "5"]);
    cmd.env("IMGVEC_ES_URL", format!("http://127.0.0.1:{port}"))
        .env("IMGVEC_ES_MAX_RETRIES", "0");
    let server = Server::spawn(cmd);
    assert_eq!(server.get("/").status().as_u16(), 200);
    let (status, info) = server.get_json("/api/info");
    assert_eq!(status, 200);
    assert!(
        info["store_error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{info}"
    );
    let (status, labels) = server.get_json("/api/labels");
    assert_eq!(status, 503, "{labels}");
    assert!(
        !labels["error"]
            .as_str()
            .unwrap()
            .contains(&port.to_string()),
        "{labels}"
    );
    let (status, search) = server.search_form(&Form::new().text("q", "cat"));
    assert_eq!(status, 503, "{search}");
    assert!(
        server.log().contains("cannot reach"),
        "the log has the details: {}",
        server.log()
    );
}

#[test]
fn without_a_model_the_server_starts_and_says_why() {
    let idx = TestIndex::local("no-model");
    idx.create();
    let mut cmd = idx.command(&["serve", "--addr", "127.0.0.1:0"]);
    cmd.env("IMGVEC_MODEL_DIR", "/nonexistent/clip-model");
    let server = Server::spawn(cmd);
    let (_, info) = server.get_json("/api/info");
    assert_eq!(info["documents"], 0);
    assert_eq!(info["image_search"], false);
    assert!(
        info["model_error"].as_str().unwrap().contains("not found"),
        "{info}"
    );
    let (status, search) = server.search_form(&Form::new().text("q", "cat"));
    assert_eq!(status, 503, "{search}");
    assert!(
        search["error"].as_str().unwrap().contains("no model"),
        "{search}"
    );
}

#[test]
fn a_missing_index_is_a_503_with_what_to_do() {
    let idx = TestIndex::local("no-index");
    let server = Server::start(&idx, &[]);
    let (status, search) = server.search_form(&Form::new().text("q", "cat"));
    assert_eq!(status, 503, "{search}");
    assert!(
        search["error"].as_str().unwrap().contains("does not exist"),
        "{search}"
    );
    let (_, info) = server.get_json("/api/info");
    assert!(
        info["store_error"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{info}"
    );
}

#[test]
fn a_public_address_needs_public() {
    let out = imgvec_env(
        &["serve", "--addr", "0.0.0.0:0"],
        &[("IMGVEC_STORE", "/nonexistent")],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--public"), "{}", stderr(&out));
}

#[test]
fn ctrl_c_stops_the_server_cleanly() {
    let idx = TestIndex::local("ctrl-c");
    idx.create();
    let mut server = Server::start(&idx, &[]);
    assert_eq!(server.get("/api/info").status().as_u16(), 200);
    // SAFETY: sending a signal to the child process this test started.
    unsafe {
        libc::kill(server.pid() as libc::pid_t, libc::SIGINT);
    }
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("the server did not stop");
    assert!(status.success(), "{status:?}: {}", server.log());
    assert!(server.log().contains("stopped"), "{}", server.log());
}
