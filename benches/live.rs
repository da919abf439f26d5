//! A living library, measured through the binary on the embedded store: what readers and a writer
//! cost each other, and how soon a new photo is found.
//!
//! ```text
//! cargo bench --bench live -- --model DIR [--images 600] [--queries 200] [--reader-qps 20]
//! ```
//! Prints (the model: a CLIP checkpoint directory, the tiny test one by default, whose fast encoder
//! makes the store's share of an ingest as large as it gets):
//! 1. `serve` text-query latency p50/p99 on an idle store, then while `imgvec ingest` writes at full
//!    speed into the same store from another process;
//! 2. `ingest` images/s alone, then with a reader querying the same store at `--reader-qps` from
//!    another process (a page in use), then with one querying back to back (saturated; on 2 cores
//!    that reader takes a core of the two);
//! 3. time from a file landing in a folder that `imgvec watch` follows (`--debounce-ms 200` and the
//!    default 1000) until `serve` (another process, same store) finds it by image.
//!
//! Figures, not a test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{json, Value};

const EXE: &str = env!("CARGO_BIN_EXE_imgvec");

struct Args {
    model: PathBuf,
    images: usize,
    queries: usize,
    reader_qps: f64,
}

fn args() -> Args {
    let mut a = Args {
        model: PathBuf::from("target/bench-tiny"),
        images: 600,
        queries: 200,
        reader_qps: 20.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("a value after the flag");
        match flag.as_str() {
            "--model" => a.model = value().into(),
            "--images" => a.images = value().parse().expect("--images N"),
            "--queries" => a.queries = value().parse().expect("--queries N"),
            "--reader-qps" => a.reader_qps = value().parse().expect("--reader-qps X"),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// The tiny test checkpoint unpacked into `dir` (its tokenizer is gzipped in the repository).
fn tiny_model(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tiny");
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".gz") {
            let mut out = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap()),
                &mut out,
            )
            .unwrap();
            std::fs::write(dir.join(stem), out).unwrap();
        } else {
            std::fs::copy(&p, dir.join(&name)).unwrap();
        }
    }
}

/// `n` distinct 224×224 PNGs in `dir`, named with `prefix`.
fn images(dir: &Path, prefix: &str, n: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in 0..n {
        let img = image::RgbImage::from_fn(224, 224, |x, y| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            image::Rgb([(state >> 56) as u8, (x + i as u32) as u8, (y * 3) as u8])
        });
        img.save(dir.join(format!("{prefix}{i:05}.png"))).unwrap();
    }
}

fn imgvec(store: &Path, model: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(EXE);
    cmd.args(args)
        .env("IMGVEC_STORE", store)
        .env("IMGVEC_MODEL_DIR", model)
        .env_remove("IMGVEC_ES_URL");
    cmd
}

/// `imgvec ingest DIR --label L` into `store`: its images/s (from the summary).
fn ingest(store: &Path, model: &Path, dir: &Path) -> f64 {
    let out = imgvec(
        store,
        model,
        &[
            "ingest",
            dir.to_str().unwrap(),
            "--label",
            "b",
            "--quiet",
            "--json",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["images_per_second"].as_f64().unwrap()
}

/// A running `imgvec serve` on `store`; killed when dropped.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    fn start(store: &Path, model: &Path) -> Serve {
        let mut child = imgvec(store, model, &["serve", "--addr", "127.0.0.1:0", "--quiet"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("serve printed its URL")
            .trim_end_matches('/')
            .to_string();
        Serve { child, url }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One distinct text query (no cache hit); its latency.
fn text_query(http: &Client, url: &str, i: usize) -> Duration {
    let t = Instant::now();
    let r = http
        .post(format!("{url}/api/search"))
        .json(&json!({"q": format!("a photo of thing number {i}"), "k": 10}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
    t.elapsed()
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99))
}

fn main() {
    let a = args();
    let tmp = tempfile::tempdir().unwrap();
    let model = if a.model == Path::new("target/bench-tiny") {
        let dir = tmp.path().join("tiny");
        tiny_model(&dir);
        dir
    } else {
        a.model.clone()
    };
    let http = Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    println!(
        "live: model {}, {} images a run, {} queries",
        model.display(),
        a.images,
        a.queries
    );
    let seed_dir = tmp.path().join("seed");
    images(&seed_dir, "s", 200, 1);

    // 1. serve latency, idle and while an ingest writes.
    let store = tmp.path().join("store1");
    ingest(&store, &model, &seed_dir);
    let serve = Serve::start(&store, &model);
    for i in 0..5 {
        text_query(&http, &serve.url, 1_000_000 + i);
    }
    let idle: Vec<Duration> = (0..a.queries)
        .map(|i| text_query(&http, &serve.url, i))
        .collect();
    let busy_dir = tmp.path().join("busy");
    images(&busy_dir, "b", a.images, 2);
    let writer = {
        let (store, model, dir) = (store.clone(), model.clone(), busy_dir.clone());
        std::thread::spawn(move || ingest(&store, &model, &dir))
    };
    let mut during = Vec::new();
    let mut i = a.queries;
    while !writer.is_finished() {
        during.push(text_query(&http, &serve.url, i));
        i += 1;
    }
    let writer_rate = writer.join().unwrap();
    drop(serve);
    let (p50, p99) = percentiles(idle);
    println!("serve text query, idle:                 p50 {p50:.1} ms, p99 {p99:.1} ms");
    let n = during.len();
    let (p50, p99) = percentiles(during);
    println!(
        "serve text query, ingest writing:       p50 {p50:.1} ms, p99 {p99:.1} ms ({n} queries; the ingest ran at {writer_rate:.1} img/s)"
    );

    // 2. ingest alone, with a paced reader, with a saturated reader; each into a fresh store.
    let run_dir = tmp.path().join("run");
    images(&run_dir, "r", a.images, 3);
    let with_reader = |pace: Option<Duration>, name: &str| -> (f64, usize) {
        let store = tmp.path().join(name);
        ingest(&store, &model, &seed_dir);
        let serve = Serve::start(&store, &model);
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (stop, url, http) = (Arc::clone(&stop), serve.url.clone(), http.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    text_query(&http, &url, 10_000_000 + n);
                    n += 1;
                    if let Some(p) = pace {
                        std::thread::sleep(p.saturating_sub(t.elapsed()));
                    }
                }
                n
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let rate = ingest(&store, &model, &run_dir);
        stop.store(true, Ordering::SeqCst);
        let queries = reader.join().unwrap();
        (rate, queries)
    };
    let alone_store = tmp.path().join("alone");
    ingest(&alone_store, &model, &seed_dir);
    let alone = ingest(&alone_store, &model, &run_dir);
    let pace = Duration::from_secs_f64(1.0 / a.reader_qps);
    let (paced, paced_q) = with_reader(Some(pace), "paced");
    let (saturated, sat_q) = with_reader(None, "saturated");
    let alone_again = {
        let store = tmp.path().join("alone2");
        ingest(&store, &model, &seed_dir);
        ingest(&store, &model, &run_dir)
    };
    let alone = (alone + alone_again) / 2.0;
    println!("ingest alone:                           {alone:.1} img/s (two runs, mean)");
    println!(
        "ingest, a reader at {:.0} queries/s:       {paced:.1} img/s ({:.1}% of alone; {paced_q} queries)",
        a.reader_qps,
        100.0 * paced / alone
    );
    println!(
        "ingest, a reader back to back:          {saturated:.1} img/s ({:.1}% of alone; {sat_q} queries)",
        100.0 * saturated / alone
    );

    // 3. landed in a watched folder → found by serve.
    for debounce in ["200", "1000"] {
        let store = tmp.path().join(format!("watch{debounce}"));
        let root = tmp.path().join(format!("watched{debounce}"));
        std::fs::create_dir_all(&root).unwrap();
        let mut watch = imgvec(
            &store,
            &model,
            &[
                "watch",
                root.to_str().unwrap(),
                "--label",
                "w",
                "--debounce-ms",
                debounce,
                "--json",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let mut err = BufReader::new(watch.stderr.take().unwrap());
        let mut line = String::new();
        while err.read_line(&mut line).unwrap() > 0 && !line.contains("imgvec: watching") {
            line.clear();
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let serve = Serve::start(&store, &model);
        let drops = tmp.path().join(format!("drops{debounce}"));
        images(&drops, "d", 10, 4 + debounce.len() as u64);
        let mut waits = Vec::new();
        for entry in std::fs::read_dir(&drops).unwrap() {
            let src = entry.unwrap().path();
            let bytes = std::fs::read(&src).unwrap();
            let id = imgvec::pipeline::sha256_hex(&bytes);
            let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bytes);
            let t = Instant::now();
            std::fs::write(root.join(src.file_name().unwrap()), &bytes).unwrap();
            loop {
                let r: Value = http
                    .post(format!("{}/api/search", serve.url))
                    .json(&json!({"image": b64, "k": 1}))
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                if r["hits"][0]["id"] == id.as_str() {
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(60), "never found");
                std::thread::sleep(Duration::from_millis(20));
            }
            waits.push(t.elapsed());
        }
        let _ = watch.kill();
        let _ = watch.wait();
        let (p50, p99) = percentiles(waits.clone());
        let max = waits.iter().max().unwrap().as_secs_f64() * 1e3;
        println!(
            "watch --debounce-ms {debounce:>4}: landed → found by serve: median {p50:.0} ms, max {max:.0} ms ({} files, p99 {p99:.0})",
            waits.len()
        );
    }
}
