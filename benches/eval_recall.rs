//! Benchmark of `imgvec eval --recall`'s core and of classification throughput.
//!
//! On synthetic clustered unit vectors (CLIP-like: 768-d, Gaussian clusters around random centres,
//! the deterministic PRNG of `tests/common/docs.rs`, 10 labels) it measures, per backend:
//! - loading the index (upsert in batches, refresh);
//! - `eval --recall`'s core, [`imgvec::commands::eval::recall::measure`]: recall@10 of the int8 HNSW
//!   search against the exact search over the stored float vectors, and latency p50/p99, for
//!   num_candidates 10..500, with queries sampled from the index by
//!   [`imgvec::commands::eval::recall::sample_queries`] (a full scan);
//! - kNN classification (one kNN search + the weighted vote, k = 10) per second; on the embedded
//!   store also the zero-shot classifier's arithmetic per second (10 labels). Embedding the images
//!   costs far more than either: see `benches/encoder.rs` (about 1 image/s for ViT-L/14 on 2 cores).
//!
//! The embedded store gets `IMGVEC_BENCH_N` [100000] documents; the Elasticsearch part runs when
//! `IMGVEC_TEST_ES_URL` is set, on `IMGVEC_BENCH_ES_N` [10000] documents. Also `IMGVEC_BENCH_DIMS`
//! [768], `IMGVEC_BENCH_CLUSTERS` [1000], `IMGVEC_BENCH_QUERIES` [100], `IMGVEC_BENCH_ES_QUERIES`
//! [50], `IMGVEC_BENCH_DIR` [a temp dir].
//!
//! ```text
//! eval "$(bash .ci/es-server.sh start target/es-test)"
//! cargo bench --bench eval_recall
//! ```

#[path = "../tests/common/docs.rs"]
mod docs;
use docs::{bench_doc, centres, normalize, Rng};

use std::time::Instant;

use imgvec::commands::classify::KnnClassifier;
use imgvec::commands::eval::recall::{measure, sample_queries, RecallQuery, DEFAULT_SETTINGS};
use imgvec::eval::{recall::DEFAULT_SEED, zero_shot};
use imgvec::store::elastic::{ElasticConfig, ElasticStore};
use imgvec::store::local::LocalStore;
use imgvec::store::{ImageDoc, IndexSpec, VectorStore};

const K: usize = 10;
const LABELS: usize = 10;
const BATCH: usize = 500;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// `n` documents: a random cluster centre plus Gaussian noise of norm ≈ 0.6, normalized.
fn clustered_docs(n: usize, dims: usize, clusters: usize, seed: u64) -> Vec<ImageDoc> {
    let mut rng = Rng(seed);
    let centres = centres(&mut rng, clusters, dims);
    let sigma = 0.6 / (dims as f32).sqrt();
    (0..n)
        .map(|i| {
            let c = (rng.next_u64() % clusters as u64) as usize;
            let mut v: Vec<f32> = centres[c]
                .iter()
                .map(|x| x + sigma * rng.normal())
                .collect();
            normalize(&mut v);
            bench_doc(i, format!("label{}", c % LABELS), v)
        })
        .collect()
}

async fn load(store: &dyn VectorStore, docs: &[ImageDoc], dims: usize) -> Result<(), String> {
    let t = Instant::now();
    store
        .recreate_index(&IndexSpec::for_dims(dims))
        .await
        .map_err(|e| e.to_string())?;
    for chunk in docs.chunks(BATCH) {
        let report = store
            .upsert(chunk, false)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(f) = report.failed.first() {
            return Err(format!("upsert failed: {f:?}"));
        }
    }
    let upserted = t.elapsed().as_secs_f64();
    store.refresh().await.map_err(|e| e.to_string())?;
    println!(
        "  load: {} docs upserted in batches of {BATCH} in {upserted:.1} s ({:.0} docs/s), refresh {:.1} s",
        docs.len(),
        docs.len() as f64 / upserted.max(1e-9),
        t.elapsed().as_secs_f64() - upserted
    );
    Ok(())
}

async fn recall(
    store: &dyn VectorStore,
    total: usize,
    n: usize,
) -> Result<Vec<RecallQuery>, String> {
    let t = Instant::now();
    let queries = sample_queries(store, total as u64, n, DEFAULT_SEED)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "  sample {} queries (scan of all {total} docs, vectors included): {:.1} s",
        queries.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let report = measure(store, &queries, K, &DEFAULT_SETTINGS, None, |_| {})
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "  eval --recall core: {:.1} s for {} queries x (1 exact + {} ANN searches)",
        t.elapsed().as_secs_f64(),
        report.queries,
        report.settings.len()
    );
    println!(
        "  {:>14}  {:>9}  {:>8}  {:>8}",
        "num_candidates", "recall@10", "p50 ms", "p99 ms"
    );
    for s in &report.settings {
        println!(
            "  {:>14}  {:>9.4}  {:>8.2}  {:>8.2}",
            s.num_candidates, s.recall, s.p50_ms, s.p99_ms
        );
    }
    Ok(queries)
}

async fn classify_throughput(
    store: &dyn VectorStore,
    queries: &[RecallQuery],
) -> Result<(), String> {
    let knn = KnnClassifier {
        store,
        k: K,
        num_candidates: 100,
    };
    let t = Instant::now();
    for q in queries {
        knn.classify(&q.vector, q.id.as_deref())
            .await
            .map_err(|e| e.to_string())?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "  kNN classify (k={K}, num_candidates=100, vote included): {:.0} images/s ({:.2} ms each, {} images)",
        queries.len() as f64 / secs.max(1e-9),
        secs * 1e3 / queries.len().max(1) as f64,
        queries.len()
    );
    Ok(())
}

fn zero_shot_throughput(queries: &[RecallQuery], dims: usize) {
    let mut rng = Rng(7);
    let labels: Vec<String> = (0..LABELS).map(|i| format!("label{i}")).collect();
    let texts: Vec<Vec<f32>> = (0..LABELS).map(|_| rng.unit_vector(dims)).collect();
    let rounds = (20_000 / queries.len().max(1)).max(1);
    let t = Instant::now();
    let mut n = 0usize;
    for _ in 0..rounds {
        for q in queries {
            if zero_shot::classify(
                &q.vector,
                &labels,
                &texts,
                zero_shot::Scoring::softmax(100f32.ln()),
            )
            .is_some()
            {
                n += 1;
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "  zero-shot classify arithmetic ({LABELS} labels, {dims}-d, image already embedded): {:.0} images/s",
        n as f64 / secs.max(1e-9)
    );
}

fn main() {
    let n = env_usize("IMGVEC_BENCH_N", 100_000);
    let es_n = env_usize("IMGVEC_BENCH_ES_N", 10_000);
    let dims = env_usize("IMGVEC_BENCH_DIMS", 768);
    let clusters = env_usize("IMGVEC_BENCH_CLUSTERS", 1_000);
    let queries = env_usize("IMGVEC_BENCH_QUERIES", 100);
    let es_queries = env_usize("IMGVEC_BENCH_ES_QUERIES", 50);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return println!("no tokio runtime: {e}"),
    };
    println!("config: {dims}-d, {clusters} clusters, {LABELS} labels, k={K}, settings {DEFAULT_SETTINGS:?}");

    let tmp = match std::env::var("IMGVEC_BENCH_DIR") {
        Ok(d) => std::fs::create_dir_all(&d).and_then(|_| tempfile::tempdir_in(d)),
        Err(_) => tempfile::tempdir(),
    };
    let tmp = match tmp {
        Ok(t) => t,
        Err(e) => return println!("cannot make a temp dir: {e}"),
    };
    let t = Instant::now();
    let docs = clustered_docs(n.max(es_n), dims, clusters, 42);
    println!("data generated: {:.1} s", t.elapsed().as_secs_f64());

    println!("embedded store: {n} docs, {queries} queries");
    let outcome = rt.block_on(async {
        let store = LocalStore::open(tmp.path(), "bench").map_err(|e| e.to_string())?;
        load(&store, &docs[..n], dims).await?;
        let q = recall(&store, n, queries).await?;
        classify_throughput(&store, &q).await?;
        zero_shot_throughput(&q, dims);
        Ok::<(), String>(())
    });
    if let Err(e) = outcome {
        println!("  embedded store: failed: {e}");
    }

    let Some(url) = std::env::var("IMGVEC_TEST_ES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!("Elasticsearch: skipped (IMGVEC_TEST_ES_URL not set)");
        return;
    };
    println!("Elasticsearch at {url}: {es_n} docs, {es_queries} queries");
    let outcome = rt.block_on(async {
        let name = format!("imgvec-bench-eval-{}", std::process::id());
        let store =
            ElasticStore::connect(ElasticConfig::new(url, name)).map_err(|e| e.to_string())?;
        let result = async {
            load(&store, &docs[..es_n], dims).await?;
            let q = recall(&store, es_n, es_queries).await?;
            classify_throughput(&store, &q).await
        }
        .await;
        let _ = store.delete_index().await;
        result
    });
    if let Err(e) = outcome {
        println!("  Elasticsearch: failed: {e}");
    }
}
