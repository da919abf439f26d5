//! `imgvec serve` speed, end to end over HTTP on loopback: the server built from the library exactly
//! as `imgvec serve` builds it, on an embedded store of synthetic vectors (10,000 by default) plus one
//! real 12-megapixel JPEG for the thumbnail figures.
//!
//! ```text
//! cargo bench --bench serve -- --model models/clip-vit-large-patch14 [--docs 10000] [--queries 40] [--clients 8]
//! ```
//! Prints, warm (after one query of each kind): text query p50/p99, image-upload query p50/p99 (a
//! 640×480 JPEG), thumbnail of a 12 MP JPEG (first, cached), queries per second with N concurrent
//! clients (text queries; and "more like this", which needs no model), and the page's weight.
//! Every query is distinct, so the server's embedding cache never answers one. Figures, not a test.
//!
//! `--load SECONDS` then runs the load test: 50 clients (`--load-clients`) for that long, each in
//! turn a distinct text query, a "more like this" and a thumbnail; then the same with 8 clients
//! (`--uploaders`, each from an address of its own) uploading 5 MB JPEGs without pause. Per kind:
//! requests/s, p50/p99, errors (the uploads' 503s, the image queue being full, and 429s, a client's
//! uploads limit, counted apart), and the process's largest resident memory during the phase
//! (server and clients are one process here).

use std::sync::Arc;
use std::time::{Duration, Instant};

use imgvec::clip::ModelDir;
use imgvec::serve::guard::GuardConfig;
use imgvec::serve::state::{AppState, Model};
use imgvec::serve::thumbs::Thumbs;
use imgvec::store::local::LocalStore;
use imgvec::store::{ImageDoc, IndexSpec, VectorStore};
use reqwest::blocking::Client;
use serde_json::{json, Value};

struct Args {
    model: String,
    docs: usize,
    queries: usize,
    clients: usize,
    load: Option<u64>,
    load_clients: usize,
    uploaders: usize,
}

fn args() -> Args {
    let mut a = Args {
        model: "models/clip-vit-large-patch14".into(),
        docs: 10_000,
        queries: 40,
        clients: 8,
        load: None,
        load_clients: 50,
        uploaders: 8,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("a value after the flag");
        match flag.as_str() {
            "--model" => a.model = value(),
            "--docs" => a.docs = value().parse().expect("--docs N"),
            "--queries" => a.queries = value().parse().expect("--queries N"),
            "--clients" => a.clients = value().parse().expect("--clients N"),
            "--load" => a.load = Some(value().parse().expect("--load SECONDS")),
            "--load-clients" => a.load_clients = value().parse().expect("--load-clients N"),
            "--uploaders" => a.uploaders = value().parse().expect("--uploaders N"),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// A noisy gradient, so JPEG has real work to do: `w`×`h`, varied by `seed`.
fn jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state & 31) as u8;
        image::Rgb([
            (x * 255 / w) as u8 ^ n,
            (y * 255 / h) as u8,
            (seed as u8).wrapping_add(n),
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

fn unit_vector(dims: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    imgvec::clip::l2_normalize(&mut v);
    v
}

fn doc(id: String, path: String, vector: Vec<f32>, label: &str) -> ImageDoc {
    ImageDoc {
        id,
        label: label.into(),
        path,
        other_paths: Vec::new(),
        vector,
        bytes: 0,
        width: 0,
        height: 0,
        model: "bench".into(),
        indexed_at_ms: 0,
        mtime_ms: None,
    }
}

/// The store: `n` synthetic documents and the big JPEG; returns the big JPEG's id.
async fn fill(store: &LocalStore, dims: usize, n: usize, big: &std::path::Path) -> String {
    store
        .ensure_index(&IndexSpec::for_dims(dims))
        .await
        .unwrap();
    let labels = ["cats", "dogs", "birds", "cars", "trees"];
    for start in (0..n).step_by(1000) {
        let batch: Vec<ImageDoc> = (start..(start + 1000).min(n))
            .map(|i| {
                doc(
                    format!("{i:064x}"),
                    format!("/nowhere/{i}.jpg"),
                    unit_vector(dims, i as u64),
                    labels[i % 5],
                )
            })
            .collect();
        store.upsert(&batch, false).await.unwrap();
    }
    let bytes = std::fs::read(big).unwrap();
    let id = imgvec::pipeline::sha256_hex(&bytes);
    let d = doc(
        id.clone(),
        big.display().to_string(),
        unit_vector(dims, 1 << 40),
        "photos",
    );
    store.upsert(&[d], false).await.unwrap();
    store.refresh().await.unwrap();
    id
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{what:<34} p50 {:>8.1} ms   p99 {:>8.1} ms   (n={})",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.len()
    );
}

fn timed(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

fn search_text(http: &Client, url: &str, text: &str) {
    let r = http
        .post(format!("{url}/api/search"))
        .json(&json!({"q": text, "k": 24}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
}

fn search_image(http: &Client, url: &str, bytes: &[u8]) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let r = http
        .post(format!("{url}/api/search"))
        .json(&json!({"image": b64, "k": 24}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
}

/// Queries per second with `clients` threads each running `per_client` calls of `call`.
fn qps(clients: usize, per_client: usize, call: impl Fn(&Client, usize) + Sync) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            let call = &call;
            s.spawn(move || {
                let http = Client::builder()
                    .timeout(Duration::from_secs(600))
                    .build()
                    .unwrap();
                for i in 0..per_client {
                    call(&http, c * per_client + i);
                }
            });
        }
    });
    (clients * per_client) as f64 / start.elapsed().as_secs_f64()
}

fn page_weight(http: &Client, url: &str) {
    let (mut raw, mut gz) = (0usize, 0usize);
    for path in ["/", "/assets/app.js", "/assets/app.css", "/favicon.svg"] {
        let body = http
            .get(format!("{url}{path}"))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &body).unwrap();
        raw += body.len();
        gz += enc.finish().unwrap().len();
    }
    println!("page weight (HTML+JS+CSS+icon)     {:.1} KB, {:.1} KB gzipped (as served), plus thumbnails", raw as f64 / 1024.0, gz as f64 / 1024.0);
}

fn main() {
    let a = args();
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("12mp.jpg");
    std::fs::write(&big, jpeg(4000, 3000, 7)).unwrap();
    let model_dir =
        ModelDir::open(std::path::Path::new(&a.model)).expect("--model DIR: a CLIP checkpoint");
    let rt = imgvec::commands::runtime().unwrap();
    let store = LocalStore::open(&tmp.path().join("store"), "bench").unwrap();
    let t = Instant::now();
    let big_id = rt.block_on(fill(&store, model_dir.dims(), a.docs, &big));
    println!(
        "model {} ({}-d); store of {} documents filled in {:.1} s",
        a.model,
        model_dir.dims(),
        a.docs + 1,
        t.elapsed().as_secs_f64()
    );

    let model = Model::new(Ok(model_dir), candle_core::Device::Cpu, true);
    // Loaded before the timings, as a server that has answered an image query has it.
    rt.block_on(model.image_encoder())
        .expect("the checkpoint's vision tower");
    let state = AppState::new(
        Box::new(store),
        "embedded",
        "bench".into(),
        model,
        Thumbs::new(64 << 20),
        20 << 20,
    );
    let app = imgvec::serve::app(
        Arc::new(state),
        GuardConfig {
            public: false,
            log: false,
        },
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(imgvec::serve::serve(listener, app, std::future::pending()));
    let http = Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();

    // Warm: the text tower loads on the first text query.
    let first_text = timed(|| search_text(&http, &url, "warming up"));
    let upload = |i: u32| jpeg(640, 480, 1000 + i);
    search_image(&http, &url, &upload(0));
    println!("first text query (loads the text tower) {first_text:.0} ms");

    let texts: Vec<f64> = (0..a.queries)
        .map(|i| timed(|| search_text(&http, &url, &format!("a photo of thing {i}"))))
        .collect();
    report("text query", texts);
    let images: Vec<Vec<u8>> = (1..=a.queries as u32).map(upload).collect();
    let uploads: Vec<f64> = images
        .iter()
        .map(|b| timed(|| search_image(&http, &url, b)))
        .collect();
    report("image-upload query (640×480 JPEG)", uploads);

    let thumb = |http: &Client| {
        let r = http.get(format!("{url}/thumb/{big_id}")).send().unwrap();
        assert!(r.status().is_success());
        r.bytes().unwrap().len()
    };
    let mut size = 0;
    let first = timed(|| size = thumb(&http));
    let cached: Vec<f64> = (0..20)
        .map(|_| {
            timed(|| {
                thumb(&http);
            })
        })
        .collect();
    println!(
        "thumbnail of a 12 MP JPEG            first {first:.0} ms, cached p50 {:.2} ms ({} KB)",
        {
            let mut c = cached;
            c.sort_by(f64::total_cmp);
            percentile(&c, 0.5)
        },
        size / 1024
    );

    let per = (a.queries / a.clients).max(2);
    let q = qps(a.clients, per, |http, i| {
        search_text(http, &url, &format!("concurrent query {i}"))
    });
    println!("text queries/s, {} clients            {q:.2}", a.clients);
    let similar = |http: &Client, i: usize| {
        let r = http
            .get(format!("{url}/api/similar/{:064x}?k=24", i % a.docs))
            .send()
            .unwrap();
        assert!(r.status().is_success());
        let _: Value = r.json().unwrap();
    };
    let q = qps(a.clients, 50, similar);
    println!("more-like-this queries/s, {} clients  {q:.1}", a.clients);
    page_weight(&http, &url);
    if let Some(secs) = a.load {
        let secs = Duration::from_secs(secs);
        load(&url, &big_id, a.docs, a.load_clients, 0, secs);
        load(&url, &big_id, a.docs, a.load_clients, a.uploaders, secs);
    }
}

/// The largest resident set of this process, sampled every 50 ms while `running`.
fn rss_sampler(running: &std::sync::atomic::AtomicBool) -> f64 {
    let mut most = 0f64;
    while running.load(std::sync::atomic::Ordering::Relaxed) {
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        most = most.max(rss / 1024.0);
        std::thread::sleep(Duration::from_millis(50));
    }
    most
}

/// One phase of the load test: `clients` mixed clients and `uploaders` uploading clients for `secs`.
fn load(url: &str, big_id: &str, docs: usize, clients: usize, uploaders: usize, secs: Duration) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    let deadline = Instant::now() + secs;
    let running = AtomicBool::new(true);
    // (kind, ms, status)
    let seen: Mutex<Vec<(&'static str, f64, u16)>> = Mutex::new(Vec::new());
    // About 5 MB: a noisy 2,600 × 2,000 JPEG at quality 90, made distinct per request by a
    // comment segment (so the server's embedding cache never answers: each is decoded and embedded).
    let big_upload = jpeg(2600, 2000, 99);
    let distinct = |n: usize| {
        use base64::Engine;
        let note = format!("upload {n}");
        let mut bytes = big_upload[..2].to_vec();
        bytes.extend_from_slice(&[0xFF, 0xFE]);
        bytes.extend_from_slice(&((note.len() + 2) as u16).to_be_bytes());
        bytes.extend_from_slice(note.as_bytes());
        bytes.extend_from_slice(&big_upload[2..]);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let most_rss = std::thread::scope(|s| {
        let sampler = s.spawn(|| rss_sampler(&running));
        let mut workers = Vec::new();
        for c in 0..clients + uploaders {
            let (seen, distinct) = (&seen, &distinct);
            workers.push(s.spawn(move || {
                // Each uploader from an address of its own (all of 127/8 is loopback), as
                // separate people are: the server lets one address have only a few uploads in
                // flight.
                let own = std::net::IpAddr::from([127, 0, 1, (c % 250) as u8 + 1]);
                let http = Client::builder()
                    .timeout(Duration::from_secs(600))
                    .local_address((c >= clients).then_some(own))
                    .build()
                    .unwrap();
                let mut mine = Vec::new();
                let mut i = 0usize;
                while Instant::now() < deadline {
                    let (kind, req) = if c >= clients {
                        (
                            "upload 5 MB",
                            http.post(format!("{url}/api/search"))
                                .header("content-type", "application/json")
                                .body(format!(
                                    "{{\"image\": \"{}\", \"k\": 10}}",
                                    distinct(c * 1_000_000 + i)
                                )),
                        )
                    } else {
                        match i % 3 {
                            0 => (
                                "text",
                                http.post(format!("{url}/api/search"))
                                    .json(&json!({"q": format!("load {c} {i}"), "k": 24})),
                            ),
                            1 => (
                                "more like this",
                                http.get(format!(
                                    "{url}/api/similar/{:064x}?k=24",
                                    (c * 7919 + i) % docs
                                )),
                            ),
                            _ => ("thumbnail", http.get(format!("{url}/thumb/{big_id}"))),
                        }
                    };
                    let t = Instant::now();
                    let status = match req.send() {
                        Ok(r) => {
                            let st = r.status().as_u16();
                            let _ = r.bytes();
                            st
                        }
                        Err(_) => 0,
                    };
                    mine.push((kind, t.elapsed().as_secs_f64() * 1e3, status));
                    i += 1;
                }
                seen.lock().unwrap().extend(mine);
            }));
        }
        for w in workers {
            w.join().unwrap();
        }
        running.store(false, Ordering::Relaxed);
        sampler.join().unwrap()
    });
    let seen = seen.into_inner().unwrap();
    println!(
        "load: {clients} clients{}, {:.0} s; peak RSS {most_rss:.0} MiB",
        if uploaders > 0 {
            format!(" + {uploaders} uploading 5 MB JPEGs")
        } else {
            String::new()
        },
        secs.as_secs_f64()
    );
    for kind in ["text", "more like this", "thumbnail", "upload 5 MB"] {
        let mut ms: Vec<f64> = seen
            .iter()
            .filter(|s| s.0 == kind && s.2 == 200)
            .map(|s| s.1)
            .collect();
        let busy = seen.iter().filter(|s| s.0 == kind && s.2 == 503).count();
        let limited = seen.iter().filter(|s| s.0 == kind && s.2 == 429).count();
        let errors = seen
            .iter()
            .filter(|s| s.0 == kind && ![200, 429, 503].contains(&s.2))
            .count();
        if ms.is_empty() && busy == 0 && limited == 0 && errors == 0 {
            continue;
        }
        ms.sort_by(f64::total_cmp);
        let (p50, p99) = if ms.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            (percentile(&ms, 0.5), percentile(&ms, 0.99))
        };
        println!(
            "  {kind:<15} {:>8.1} req/s  p50 {p50:>8.1} ms  p99 {p99:>8.1} ms  503 {busy}  429 {limited}  errors {errors}",
            ms.len() as f64 / secs.as_secs_f64()
        );
    }
}
