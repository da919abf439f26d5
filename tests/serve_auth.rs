//! `imgvec serve`'s access key and HTTPS, through the binary: with `--public` (or `--token-file` /
//! `IMGVEC_TOKEN`) every route but the icon answers 401 without the key (JSON under `/api/`, a page
//! with a key field elsewhere, the security headers on both); the key works as a Bearer header, as
//! `?token=` (303 to the same URL without it, setting an HttpOnly SameSite=Strict cookie) and as that
//! cookie; a generated key is printed in the URL on stderr; short keys are refused. `--tls-cert` and
//! `--tls-key` serve HTTPS (a self-signed certificate made here), and plain HTTP to that port fails.

mod common;
#[path = "support/serve.rs"]
mod serve;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{stderr, TestIndex};
use reqwest::blocking::{Client, Response};
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::Value;
use serve::{Corpus, Form, Server};

const KEY: &str = "test-key_0123456789.abc~XYZ";

/// A client that shows redirects instead of following them.
fn client() -> Client {
    Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

fn start(idx: &TestIndex, args: &[&str], key: Option<&str>) -> Server {
    let mut cmd = idx.command(&["serve", "--addr", "127.0.0.1:0"]);
    cmd.args(args);
    if let Some(k) = key {
        cmd.env("IMGVEC_TOKEN", k);
    }
    Server::spawn(cmd)
}

fn assert_security_headers(r: &Response, what: &str) {
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"),
        "{what}"
    );
}

/// 401, with the security headers, and the body the route calls for.
fn assert_refused(r: Response, what: &str) {
    assert_eq!(r.status(), 401, "{what}");
    assert_security_headers(&r, what);
    let api = r.url().path().starts_with("/api/");
    let text = r.text().unwrap();
    assert!(!text.contains(KEY), "{what}: {text}");
    if api {
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        assert!(
            v["error"].as_str().unwrap().contains("access key"),
            "{what}: {v}"
        );
    } else {
        assert!(text.contains("name=\"token\""), "{what}: {text}");
        assert!(!text.contains("<script"), "{what}");
    }
}

#[test]
fn public_needs_the_key() {
    let idx = TestIndex::local("auth");
    let corpus = Corpus::new();
    corpus.ingest(&idx);
    let id = corpus.id_of("cats", "chelsea.png");
    let server = start(&idx, &["--public"], Some(KEY));
    let http = client();
    let url = |p: &str| format!("{}{p}", server.url);
    let gets = [
        "/".to_string(),
        "/api/info".to_string(),
        "/api/labels".to_string(),
        format!("/api/similar/{id}"),
        format!("/thumb/{id}"),
        format!("/image/{id}"),
        "/assets/app.js".to_string(),
        "/assets/app.css".to_string(),
        "/no/such/page".to_string(),
    ];
    let form = Form::new().text("q", "a cat");
    let search = |key: Option<&str>| {
        let mut r = http
            .post(url("/api/search"))
            .header("content-type", form.content_type())
            .body(form.body());
        if let Some(k) = key {
            r = r.header(AUTHORIZATION, format!("Bearer {k}"));
        }
        r.send().unwrap()
    };

    // No key, and wrong keys in each place.
    for p in &gets {
        assert_refused(http.get(url(p)).send().unwrap(), &format!("no key: {p}"));
        let wrong = http
            .get(url(p))
            .header(AUTHORIZATION, "Bearer test-key_0123456789.abc~XYz")
            .send()
            .unwrap();
        assert_refused(wrong, &format!("wrong Bearer: {p}"));
        let port = server.url.rsplit(':').next().unwrap();
        let wrong = http
            .get(url(p))
            .header(COOKIE, format!("imgvec_key_{port}=nope-nope-nope-nope"))
            .send()
            .unwrap();
        assert_refused(wrong, &format!("wrong cookie: {p}"));
        let sep = if p.contains('?') { '&' } else { '?' };
        let wrong = http
            .get(url(&format!("{p}{sep}token=nope-nope-nope-nope")))
            .send()
            .unwrap();
        assert_refused(wrong, &format!("wrong ?token=: {p}"));
    }
    assert_refused(search(None), "no key: POST /api/search");
    assert_refused(search(Some("x")), "bad key: POST /api/search");
    // Only the icon is open.
    assert_eq!(http.get(url("/favicon.svg")).send().unwrap().status(), 200);

    // The key as a Bearer header.
    for p in &gets[..gets.len() - 1] {
        let r = http
            .get(url(p))
            .header(AUTHORIZATION, format!("Bearer {KEY}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "Bearer: {p}");
        assert_security_headers(&r, p);
    }
    let r = search(Some(KEY));
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().unwrap();
    assert!(!answer["hits"].as_array().unwrap().is_empty(), "{answer}");

    // The key in the URL: 303 to the same URL without it, with the cookie; then the cookie works.
    let r = http
        .get(url(&format!("/?q=a+cat&token={KEY}&k=5")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_security_headers(&r, "303");
    assert_eq!(r.headers()[LOCATION], "/?q=a+cat&k=5");
    let set_cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert!(cookie.ends_with(&format!("={KEY}")), "{cookie}");
    for p in &gets[..gets.len() - 1] {
        let r = http
            .get(url(p))
            .header(COOKIE, format!("other=1; {cookie}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "cookie: {p}");
    }
    // The form on the 401 page sends the key as ?token= to `/`.
    let r = http.get(url(&format!("/?token={KEY}"))).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/");

    // Each refusal is one line with method, path and client address; the key is never logged.
    let log = server.log();
    assert!(
        log.contains("refused GET /api/info from 127.0.0.1"),
        "{log}"
    );
    assert!(
        log.contains("refused POST /api/search from 127.0.0.1"),
        "{log}"
    );
    assert!(!log.contains(KEY), "{log}");
    assert!(!log.contains("nope-nope"), "{log}");
}

/// `--public` without a key: a random one, printed once in the URL on stderr.
#[test]
fn a_generated_key_is_printed() {
    let idx = TestIndex::local("auth-gen");
    let server = start(&idx, &["--public"], None);
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("?token="))
        .unwrap_or_else(|| panic!("no URL with the key: {log}"));
    let printed = line.split_whitespace().last().unwrap();
    assert!(
        printed.starts_with(&format!("{}/?token=", server.url)),
        "{line}"
    );
    let key = printed.split("?token=").nth(1).unwrap();
    assert_eq!(key.len(), 64, "{key}");
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
    assert_eq!(log.matches(key).count(), 1, "printed once: {log}");
    let http = client();
    let info = format!("{}/api/info", server.url);
    assert_refused(http.get(&info).send().unwrap(), "no key");
    let r = http.get(&info).bearer_auth(key).send().unwrap();
    assert_eq!(r.status(), 200);
    // The printed URL works as it is.
    let r = http.get(printed).send().unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers().contains_key(SET_COOKIE));
    // Another server's key does not open this one.
    let r = http.get(&info).bearer_auth(KEY).send().unwrap();
    assert_eq!(r.status(), 401);
}

/// On loopback without `--public`, a key from `--token-file` is required too; without one, nothing
/// changes (tests/serve_api.rs).
#[test]
fn a_key_file_on_loopback() {
    let idx = TestIndex::local("auth-file");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, format!("  {KEY}\n")).unwrap();
    let server = start(&idx, &["--token-file", file.to_str().unwrap()], None);
    let http = client();
    let info = format!("{}/api/info", server.url);
    assert_refused(http.get(&info).send().unwrap(), "no key");
    assert_eq!(
        http.get(&info).bearer_auth(KEY).send().unwrap().status(),
        200
    );
    let log = server.log();
    assert!(!log.contains(KEY), "a given key is not printed: {log}");
    assert!(log.contains("?token=KEY"), "{log}");
    let open = Server::start(&idx, &[]);
    assert_eq!(open.get("/api/info").status(), 200);
}

#[test]
fn short_or_odd_keys_are_refused() {
    let idx = TestIndex::local("auth-short");
    let mut cmd = idx.command(&["serve", "--addr", "127.0.0.1:0", "--public"]);
    let out = cmd.env("IMGVEC_TOKEN", "too-short").output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("IMGVEC_TOKEN") && err.contains("at least 16"),
        "{err}"
    );
    assert!(!err.contains("too-short"), "the key is not echoed: {err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, "0123456789abcdef;0123").unwrap();
    let out = idx
        .command(&["serve", "--addr", "127.0.0.1:0"])
        .args(["--token-file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("--token-file") && err.contains("';'"), "{err}");

    let missing = dir.path().join("missing");
    let out = idx
        .command(&["serve", "--addr", "127.0.0.1:0"])
        .args(["--token-file", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(missing.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
}

/// `imgvec serve` with HTTPS, killed when dropped; its `https://` URL from stdout.
struct TlsServer {
    child: Child,
    url: String,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tls(idx: &TestIndex, args: &[&str]) -> TlsServer {
    let mut child = idx
        .command(&["serve", "--addr", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(u) = line.split_whitespace().find(|w| w.starts_with("https://")) {
                let _ = tx.send(u.trim_end_matches('/').to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("imgvec serve printed no https:// URL");
    TlsServer { child, url }
}

#[test]
fn https_with_a_certificate() {
    let idx = TestIndex::local("auth-tls");
    let dir = tempfile::tempdir().unwrap();
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = start_tls(&idx, &["--tls-cert", cert_s, "--tls-key", key_s]);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let https = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let r = https
        .get(format!("{}/api/info", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_security_headers(&r, "https");
    let page = https.get(format!("{}/", server.url)).send().unwrap();
    assert_eq!(page.status(), 200);
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = server.url.replace("https://", "http://");
    let r = client().get(format!("{plain}/api/info")).send();
    assert!(
        r.is_err() || !r.as_ref().unwrap().status().is_success(),
        "{r:?}"
    );
    // The server still answers afterwards.
    let r = https
        .get(format!("{}/api/info", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(server);

    // With a key over HTTPS the cookie is marked Secure.
    let server = start_tls(
        &idx,
        &["--tls-cert", cert_s, "--tls-key", key_s, "--public"],
    );
    let https_no_redirect = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap())
        .redirect(Policy::none())
        .build()
        .unwrap();
    let r = https_no_redirect
        .get(format!("{}/api/info", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    drop(server);

    // Unreadable or wrong files: errors naming the file.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let junk_s = junk.to_str().unwrap();
    for (args, named) in [
        (vec!["--tls-cert", junk_s, "--tls-key", key_s], junk_s),
        (vec!["--tls-cert", cert_s, "--tls-key", junk_s], junk_s),
        (vec!["--tls-cert", key_s, "--tls-key", key_s], key_s),
        (
            vec!["--tls-cert", "/nonexistent/cert.pem", "--tls-key", key_s],
            "/nonexistent/cert.pem",
        ),
    ] {
        let out = idx
            .command(&["serve", "--addr", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(named), "{args:?}: {}", stderr(&out));
    }
    // One without the other is a usage error.
    let out = idx
        .command(&["serve", "--addr", "127.0.0.1:0", "--tls-cert", cert_s])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--tls-key"), "{}", stderr(&out));
}

/// Plain HTTP beyond loopback with a key: a warning (checked on 0.0.0.0, only at start).
#[test]
fn a_key_over_plain_http_beyond_loopback_warns() {
    let idx = TestIndex::local("auth-warn");
    let mut cmd = idx.command(&["serve", "--addr", "0.0.0.0:0", "--public"]);
    cmd.env("IMGVEC_TOKEN", KEY);
    let server = Server::spawn(cmd);
    let log = server.log();
    assert!(log.contains("plain HTTP"), "{log}");
    assert!(!log.contains(KEY), "a given key is not printed: {log}");
}

/// A JPEG of `side`² noise pixels, different for each `seed` (so no two share a cached embedding).
fn noise_jpeg(side: u32, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let img = image::RgbImage::from_fn(side, side, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// Sends every image as a search upload at the same moment; each answer's status and
/// `Retry-After`.
fn upload_all_at_once(server: &Server, images: &[Vec<u8>]) -> Vec<(u16, Option<String>)> {
    let barrier = std::sync::Barrier::new(images.len());
    std::thread::scope(|s| {
        let sent: Vec<_> = images
            .iter()
            .map(|bytes| {
                let barrier = &barrier;
                s.spawn(move || {
                    let form = Form::new().file("image", "noise.jpg", bytes.clone());
                    barrier.wait();
                    let r = server
                        .http
                        .post(format!("{}/api/search", server.url))
                        .header("content-type", form.content_type())
                        .body(form.body())
                        .send()
                        .unwrap();
                    let retry = r
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    (r.status().as_u16(), retry)
                })
            })
            .collect();
        sent.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Uploads past a client's limit are answered 429 and uploads past the image queue 503, both
/// with `Retry-After`; the others are answered, and the server takes uploads again afterwards.
#[test]
fn uploads_past_the_client_limit_or_the_queue_are_refused_with_retry_after() {
    let idx = TestIndex::local("limits");
    let corpus = Corpus::new();
    corpus.ingest(&idx);
    let images: Vec<Vec<u8>> = (0..8).map(|seed| noise_jpeg(2_000, seed)).collect();
    for (args, refusal) in [
        (&["--uploads-per-client", "1"][..], 429),
        (
            &["--model-queue", "0", "--uploads-per-client", "100"][..],
            503,
        ),
    ] {
        let server = start(&idx, args, None);
        let answers = upload_all_at_once(&server, &images);
        let served = answers.iter().filter(|a| a.0 == 200).count();
        let refused: Vec<_> = answers.iter().filter(|a| a.0 == refusal).collect();
        assert!(served >= 1 && !refused.is_empty(), "{args:?}: {answers:?}");
        assert_eq!(
            served + refused.len(),
            images.len(),
            "{args:?}: {answers:?}"
        );
        assert!(
            refused.iter().all(|a| a.1.as_deref() == Some("5")),
            "{args:?}: {answers:?}"
        );
        // Alone, an upload is served again.
        let (status, _) =
            server.search_form(&Form::new().file("image", "n.jpg", images[0].clone()));
        assert_eq!(status, 200, "{args:?}");
        let log = server.log();
        let said = if refusal == 429 {
            "uploads in flight"
        } else {
            "queue is full"
        };
        assert!(log.contains(said), "{args:?}: {log}");
    }
}
