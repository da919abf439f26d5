//! Benchmark of ingest's indexer alone against an Elasticsearch: how fast embedded images reach the
//! index when the embedder is not the bottleneck (a GPU, or a far cluster). No model: synthetic
//! 768-d unit vectors are handed to the indexer in model batches of 8, as fast as it takes them.
//!
//! Compared, each on a fresh index, variants `DOCSxCONCURRENCY` (`IMGVEC_BENCH_VARIANTS`, default
//! `8x1,500x2,500x4`): `8x1` is the indexer before bulks were filled across model batches (one
//! `_bulk` per batch of 8, one at a time); `500x2` the defaults (bulks filled up to 500 documents /
//! 5 MiB, 2 in flight); `500x4` with `--bulk-concurrency 4`.
//!
//! Prints docs/s and bytes/doc (the `_bulk` NDJSON bytes per document) per variant. Sizes from the
//! environment: `IMGVEC_BENCH_N` [4000], `IMGVEC_BENCH_DIMS` [768]; the server from
//! `IMGVEC_TEST_ES_URL` (see `.ci/es-server.sh`). `IMGVEC_BENCH_RTT_MS` [0] puts a proxy in front
//! of the server that holds each request (the first bytes after an answer) that many milliseconds, as a network round trip to a far
//! cluster would (loopback has none, so there the server's own indexing speed is all one sees).
//!
//! ```text
//! eval "$(bash .ci/es-server.sh start target/es-test)"
//! cargo bench --bench es_bulk
//! ```

#[path = "../tests/common/docs.rs"]
mod docs;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use docs::Rng;
use imgvec::commands::ingest::indexer::{BulkPlan, Indexer};
use imgvec::pipeline::{FileFacts, Job, Outcome};
use imgvec::store::elastic::{bulk_lines, ElasticConfig, ElasticStore};
use imgvec::store::{IndexSpec, VectorStore};

const BATCH: usize = 8;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Model batches of synthetic embedded images.
fn batches(n: usize, dims: usize, seed: u64) -> Vec<Vec<Outcome>> {
    let mut rng = Rng(seed);
    let outcomes: Vec<Outcome> = (0..n)
        .map(|i| Outcome::Embedded {
            facts: FileFacts {
                job: Job {
                    seq: i,
                    path: PathBuf::from(format!("/photos/bench/{seed}/img{i:06}.jpg")),
                    label: ["cat", "dog"][i % 2].to_string(),
                },
                sha256: format!("{seed:04x}{i:060x}"),
                bytes: 250_000,
                mtime_ms: Some(1_700_000_000_000),
                width: 1600,
                height: 1200,
                truncated: false,
                note: None,
            },
            vector: rng.unit_vector(dims),
        })
        .collect();
    let mut out = Vec::new();
    let mut it = outcomes.into_iter().peekable();
    while it.peek().is_some() {
        out.push(it.by_ref().take(BATCH).collect());
    }
    out
}

fn run_variant(
    rt: &tokio::runtime::Runtime,
    url: &str,
    name: &str,
    plan: BulkPlan,
    n: usize,
    dims: usize,
    seed: u64,
) -> Result<(), String> {
    let index = format!("imgvec-bench-bulk-{name}-{}", std::process::id());
    let mut cfg = ElasticConfig::new(url, &index);
    cfg.bulk_concurrency = plan.concurrency;
    let store = Arc::new(ElasticStore::connect(cfg).map_err(|e| e.to_string())?);
    rt.block_on(store.delete_index())
        .map_err(|e| e.to_string())?;
    rt.block_on(store.ensure_index(&IndexSpec::for_dims(dims)))
        .map_err(|e| e.to_string())?;
    let input = batches(n, dims, seed);
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Outcome>>(2);
    let t = Instant::now();
    let indexer = Indexer {
        store: Arc::clone(&store) as Arc<dyn VectorStore>,
        model: "clip-bench".into(),
        overwrite: false,
        stop: Arc::new(AtomicBool::new(false)),
        plan,
    }
    .spawn(rt, rx);
    for batch in input {
        tx.blocking_send(batch).map_err(|e| e.to_string())?;
    }
    drop(tx);
    let (summary, fatal) = rt.block_on(indexer).map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    if let Some(e) = fatal {
        return Err(e.to_string());
    }
    rt.block_on(store.refresh()).map_err(|e| e.to_string())?;
    let count = rt.block_on(store.count()).map_err(|e| e.to_string())?;
    // Bytes per document as sent: the NDJSON of a few sample documents.
    let sample = imgvec::store::ImageDoc {
        id: format!("{seed:04x}{:060x}", 0),
        label: "cat".into(),
        path: format!("/photos/bench/{seed}/img000000.jpg"),
        other_paths: Vec::new(),
        vector: Rng(seed).unit_vector(dims),
        bytes: 250_000,
        mtime_ms: Some(1_700_000_000_000),
        width: 1600,
        height: 1200,
        model: "clip-bench".into(),
        indexed_at_ms: 1_700_000_000_000,
    };
    let bytes_per_doc = bulk_lines(&sample, false).len();
    println!(
        "{name:>9}: {n} docs ({dims}-d) in {secs:.2} s = {:.0} docs/s, {bytes_per_doc} bytes/doc, \
{:.1} MB/s; indexed {} failed {} (index holds {count})",
        n as f64 / secs,
        (n * bytes_per_doc) as f64 / secs / 1e6,
        summary.indexed,
        summary.failed
    );
    rt.block_on(store.delete_index())
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// A proxy to `upstream` that holds each request (the first bytes after a pause) `rtt` before
/// forwarding it; answers pass straight through. Returns its URL.
fn delaying_proxy(rt: &tokio::runtime::Runtime, upstream: &str, rtt: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = upstream
        .trim_end_matches('/')
        .trim_start_matches("http://")
        .to_string();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind the proxy");
    let url = format!("http://{}", listener.local_addr().expect("proxy address"));
    rt.spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                continue;
            };
            // No Nagle delays of the proxy's own on top of the one it adds.
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            // A new request starts with the first bytes after an answer (HTTP/1.1 keep-alive).
            let answered = Arc::new(AtomicBool::new(true));
            let seen = Arc::clone(&answered);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if seen.swap(false, Ordering::SeqCst) {
                        tokio::time::sleep(rtt).await;
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    answered.store(true, Ordering::SeqCst);
                }
            });
        }
    });
    url
}

fn main() {
    let Ok(url) = std::env::var("IMGVEC_TEST_ES_URL") else {
        eprintln!(
            "IMGVEC_TEST_ES_URL is not set: eval \"$(bash .ci/es-server.sh start target/es-test)\""
        );
        std::process::exit(2);
    };
    let n = env_usize("IMGVEC_BENCH_N", 4000);
    let dims = env_usize("IMGVEC_BENCH_DIMS", 768);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    let rtt = env_usize("IMGVEC_BENCH_RTT_MS", 0);
    let url = if rtt > 0 {
        println!("through a proxy adding {rtt} ms per request");
        delaying_proxy(&rt, &url, Duration::from_millis(rtt as u64))
    } else {
        url
    };
    let variants =
        std::env::var("IMGVEC_BENCH_VARIANTS").unwrap_or_else(|_| "8x1,500x2,500x4".into());
    for (i, variant) in variants.split(',').enumerate() {
        let Some((docs, concurrency)) = variant
            .split_once('x')
            .and_then(|(d, c)| Some((d.trim().parse().ok()?, c.trim().parse().ok()?)))
        else {
            eprintln!("IMGVEC_BENCH_VARIANTS: '{variant}' is not DOCSxCONCURRENCY");
            std::process::exit(2);
        };
        let plan = BulkPlan {
            max_docs: docs,
            concurrency,
            // The old indexer wrote each model batch at once.
            max_wait: if docs <= BATCH {
                Duration::ZERO
            } else {
                BulkPlan::default().max_wait
            },
            ..BulkPlan::default()
        };
        let name = variant.trim();
        if let Err(e) = run_variant(&rt, &url, name, plan, n, dims, i as u64 + 1) {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
    }
}
