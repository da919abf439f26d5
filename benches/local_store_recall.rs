//! Benchmark of the embedded local store: how good and how fast its int8 HNSW index is.
//!
//! On synthetic clustered unit vectors (CLIP-like: 768-d, 1,000 Gaussian clusters, a deterministic
//! PRNG) it measures
//! - the raw usearch index (no store around it) for each quantization (i8, f16, f32): build time,
//!   recall@10 against exact search at several `ef`, with and without the exact f32 re-ranking the
//!   store does, and query latency;
//! - the store itself: ingest through `upsert` in batches of `IMGVEC_BENCH_BATCH` [8] (docs/s
//!   committed, per-call latency; the graph takes the rows in on a thread of its own meanwhile),
//!   the time until the graph holds every row, the refresh that writes the HNSW cache file, recall@10 and latency of `knn` (plain and with a label
//!   filter), reopening (cache file loaded) and rebuilding from the SQLite rows (cache file deleted).
//!
//! One line per figure. Sizes come from the environment (defaults in brackets):
//! `IMGVEC_BENCH_N` [100000], `IMGVEC_BENCH_DIMS` [768], `IMGVEC_BENCH_CLUSTERS` [1000],
//! `IMGVEC_BENCH_QUERIES` [1000], `IMGVEC_BENCH_M` [store default], `IMGVEC_BENCH_EFC` [store
//! default], `IMGVEC_BENCH_RAW` [i8q,i8,f16,f32] (raw quantizations to compare, i8q the store's own codes; empty: none),
//! `IMGVEC_BENCH_ORDER` [0] (the raw i8q build takes its vectors in chunks of that many, each
//! sorted by cell as a store's rebuild sorts them, `sort_by_cell`; 0: in order),
//! `IMGVEC_BENCH_STORE` [1] (0 skips the store part), `IMGVEC_BENCH_DIR` [a temp dir],
//! `IMGVEC_BENCH_KEEP` [0] (1 keeps the store, index `bench`, for `imgvec eval --recall` and the
//! like; its folder is printed), `IMGVEC_BENCH_REUSE` [unset] (a kept store's folder: searches
//! only, at the ef floors of `IMGVEC_BENCH_EF_FLOORS` [128,256,512], then the label filters),
//! `IMGVEC_BENCH_REBUILD` [0] (1, with REUSE: the kept store's graph file deleted and rebuilt from
//! its rows, timed, and nothing else), `IMGVEC_BENCH_KEEP_GRAPH` [unset] (a path: the graph file as the ingest left it moved there
//! before the rebuild, not deleted), `IMGVEC_BENCH_APPEND` [unset] (with REUSE: that many documents written into the kept store,
//! see `append_only`, and nothing else), `IMGVEC_BENCH_WAYS` [a full run: scan,2bit,1024; with REUSE: scan,2bit] (each filter
//! way forced on every label: `scan` the label's int8 codes (read from the graph), `2bit` its 2-bit
//! codes (`2bit:N`: their best N re-scored by the int8 codes), a number the graph walk at that
//! `ef`; empty: none).
//!
//! ```text
//! cargo bench --bench local_store_recall
//! ```

#[path = "../tests/common/docs.rs"]
mod docs;
use docs::Rng;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use imgvec::store::local::{
    LocalConfig, LocalStore, Quantizer, DEFAULT_HNSW_EF_CONSTRUCTION, DEFAULT_HNSW_M,
    DEFAULT_MIN_EF_SEARCH,
};
use imgvec::store::{ImageDoc, IndexSpec, KnnQuery, VectorStore};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

const K: usize = 10;
/// Label filters measured: a label of that share of the documents. Labels follow clusters (a
/// label is a set of whole clusters, as "cat" is a set of kinds of cat photo), the rest of the
/// documents are labelled `rest`, and the filtered queries are the plain ones, most of them from
/// clusters outside the label: the nearest documents of the label are far from the query.
const LABEL_SHARES: [(&str, f64); 4] = [
    ("half", 0.5),
    ("tenth", 0.1),
    ("hundredth", 0.01),
    ("thousandth", 0.001),
];

/// The label of the documents of `cluster` (of `clusters`).
fn label_of(cluster: usize, clusters: usize) -> &'static str {
    let at = (cluster as f64 + 0.5) / clusters.max(1) as f64;
    let mut end = 0.0;
    for (name, share) in LABEL_SHARES {
        end += share;
        if at < end {
            return name;
        }
    }
    "rest"
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

/// Clustered unit vectors: `centers[c] + noise`, normalized, noise norm ≈ `spread`.
struct Data {
    dims: usize,
    centers: Vec<Vec<f32>>,
    spread: f32,
}

impl Data {
    fn new(dims: usize, clusters: usize, rng: &mut Rng) -> Data {
        let centers = (0..clusters)
            .map(|_| {
                let mut c: Vec<f32> = (0..dims).map(|_| rng.normal()).collect();
                normalize(&mut c);
                c
            })
            .collect();
        Data {
            dims,
            centers,
            spread: 0.6,
        }
    }

    /// A point of a random cluster; the cluster.
    fn sample(&self, rng: &mut Rng) -> (Vec<f32>, usize) {
        let c = (rng.next_u64() % self.centers.len() as u64) as usize;
        let sigma = self.spread / (self.dims as f32).sqrt();
        let mut v: Vec<f32> = self.centers[c]
            .iter()
            .map(|x| x + sigma * rng.normal())
            .collect();
        normalize(&mut v);
        (v, c)
    }
}

fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    // Eight lanes, so the compiler vectorizes it.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += (x - y) * (x - y);
    }
    s
}

/// Exact top-k ids (row numbers) of each query, on `threads` threads.
fn ground_truth(
    flat: &[f32],
    dims: usize,
    queries: &[Vec<f32>],
    allowed: impl Fn(usize, usize) -> bool + Sync,
    threads: usize,
) -> Vec<Vec<u64>> {
    let per = queries.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = queries
            .chunks(per)
            .enumerate()
            .map(|(part, qs)| {
                let allowed = &allowed;
                s.spawn(move || {
                    qs.iter()
                        .enumerate()
                        .map(|(j, q)| {
                            let qi = part * per + j;
                            let mut best: Vec<(f32, u64)> = Vec::with_capacity(K + 1);
                            for (i, v) in flat.chunks_exact(dims).enumerate() {
                                if !allowed(qi, i) {
                                    continue;
                                }
                                let d = l2sq(q, v);
                                if best.len() < K || d < best[best.len() - 1].0 {
                                    let at = best.partition_point(|b| b.0 <= d);
                                    best.insert(at, (d, i as u64));
                                    best.truncate(K);
                                }
                            }
                            best.into_iter().map(|(_, i)| i).collect::<Vec<u64>>()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().unwrap_or_default())
            .collect()
    })
}

fn recall(found: &[Vec<u64>], truth: &[Vec<u64>]) -> f64 {
    let mut hit = 0usize;
    let mut all = 0usize;
    for (f, t) in found.iter().zip(truth) {
        let t: HashSet<u64> = t.iter().copied().collect();
        hit += f.iter().take(K).filter(|x| t.contains(x)).count();
        all += t.len();
    }
    hit as f64 / all.max(1) as f64
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let i = ((sorted_ms.len() as f64 - 1.0) * p).round() as usize;
    sorted_ms[i.min(sorted_ms.len() - 1)]
}

fn latencies(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The k-nearest query for `vector` with no filter, `num_candidates` 100.
fn plain_query(vector: &[f32]) -> KnnQuery {
    KnnQuery {
        vector: vector.to_vec(),
        k: K,
        num_candidates: 100,
        label: None,
    }
}

/// Adds `v` under `key`: as f32 (usearch casts it to the index's kind) or as `quant`'s i8 code.
fn raw_add(index: &Index, quant: Option<&Quantizer>, key: u64, v: &[f32]) {
    let _ = match quant {
        Some(q) => index.add(key, &q.code(v)),
        None => index.add(key, v),
    };
}

/// The `count` nearest keys to `v` (coded by `quant` if given).
fn raw_search(index: &Index, quant: Option<&Quantizer>, v: &[f32], count: usize) -> Vec<u64> {
    let found = match quant {
        Some(q) => index.search(&q.code(v), count),
        None => index.search(v, count),
    };
    found.map(|m| m.keys).unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn raw_bench(
    name: &str,
    quantization: ScalarKind,
    quant: Option<&Quantizer>,
    flat: &[f32],
    dims: usize,
    queries: &[Vec<f32>],
    truth: &[Vec<u64>],
    m: usize,
    efc: usize,
    threads: usize,
) {
    let n = flat.len() / dims;
    let options = IndexOptions {
        dimensions: dims,
        metric: MetricKind::L2sq,
        quantization,
        connectivity: m,
        expansion_add: efc,
        expansion_search: 64,
        multi: false,
    };
    let index = match Index::new(&options) {
        Ok(i) => i,
        Err(e) => {
            println!("raw {name}: cannot create the index: {e}");
            return;
        }
    };
    if let Err(e) = index.reserve_capacity_and_threads(n, threads) {
        println!("raw {name}: cannot reserve: {e}");
        return;
    }
    let chunk = env_usize("IMGVEC_BENCH_ORDER", 0);
    let mut perm: Vec<usize> = (0..n).collect();
    let chunk = if chunk == 0 { n } else { chunk };
    if let (true, Some(q)) = (chunk < n, quant) {
        let t = Instant::now();
        let codes: Vec<Vec<i8>> = flat.chunks_exact(dims).map(|v| q.code(v)).collect();
        for part in perm.chunks_mut(chunk) {
            let mut items: Vec<(usize, &[i8])> = part.iter().map(|&i| (i, &codes[i][..])).collect();
            imgvec::store::local::sort_by_cell(dims, &mut items, |t| t.1);
            for (p, (i, _)) in part.iter_mut().zip(items) {
                *p = i;
            }
        }
        println!(
            "raw {name} order: chunks of {chunk} sorted by cell in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let started = Instant::now();
    for part in perm.chunks(chunk) {
        let per = part.len().div_ceil(threads);
        std::thread::scope(|s| {
            for t in 0..threads {
                let index = &index;
                let mine = &part[(t * per).min(part.len())..((t + 1) * per).min(part.len())];
                s.spawn(move || {
                    for &i in mine {
                        raw_add(index, quant, i as u64, &flat[i * dims..(i + 1) * dims]);
                    }
                });
            }
        });
    }
    let build = started.elapsed();
    println!(
        "raw {name} build: {:.1} s for {n} vectors ({threads} thread(s), M={m}, ef_construction={efc}), {:.0} vectors/s, {:.0} MiB in memory",
        build.as_secs_f64(),
        n as f64 / build.as_secs_f64(),
        index.memory_usage() as f64 / (1 << 20) as f64
    );
    for ef in [64usize, 128, 256] {
        index.change_expansion_search(ef);
        let mut found = Vec::with_capacity(queries.len());
        let mut times = Vec::with_capacity(queries.len());
        for q in queries {
            let t = Instant::now();
            let r = raw_search(&index, quant, q, K);
            times.push(ms(t.elapsed()));
            found.push(r);
        }
        let (p50, p99) = latencies(times);
        println!(
            "raw {name} ef={ef} recall@{K}: {:.4} (no re-ranking), latency p50 {p50:.3} ms p99 {p99:.3} ms",
            recall(&found, truth)
        );
    }
    for (ef, candidates) in [
        (128usize, 100usize),
        (256, 100),
        (512, 100),
        (1024, 100),
        (128, 40),
    ] {
        index.change_expansion_search(ef);
        let mut found = Vec::with_capacity(queries.len());
        let mut times = Vec::with_capacity(queries.len());
        for q in queries {
            let t = Instant::now();
            let keys = raw_search(&index, quant, q, candidates);
            let mut scored: Vec<(f32, u64)> = keys
                .iter()
                .map(|&k| {
                    let i = k as usize;
                    (l2sq(q, &flat[i * dims..(i + 1) * dims]), k)
                })
                .collect();
            scored.sort_by(|a, b| a.0.total_cmp(&b.0));
            times.push(ms(t.elapsed()));
            found.push(scored.into_iter().take(K).map(|(_, k)| k).collect());
        }
        let (p50, p99) = latencies(times);
        println!(
            "raw {name} ef={ef} candidates={candidates} recall@{K}: {:.4} (re-ranked with exact f32), latency p50 {p50:.3} ms p99 {p99:.3} ms",
            recall(&found, truth)
        );
    }
}

fn doc(i: usize, v: &[f32], label: &str) -> ImageDoc {
    docs::bench_doc(i, label.to_string(), v.to_vec())
}

/// recall@10 and latency of the store's knn over `queries` (optionally label-filtered).
async fn store_knn(
    store: &LocalStore,
    what: &str,
    queries: &[Vec<f32>],
    label: Option<&str>,
    truth: &[Vec<u64>],
    num_candidates: usize,
) {
    let mut found = Vec::with_capacity(queries.len());
    let mut times = Vec::with_capacity(queries.len());
    for q in queries {
        let query = KnnQuery {
            vector: q.clone(),
            k: K,
            num_candidates,
            label: label.map(str::to_string),
        };
        let t = Instant::now();
        let hits = match store.knn(&query).await {
            Ok(h) => h,
            Err(e) => {
                println!("store knn {what}: failed: {e}");
                return;
            }
        };
        times.push(ms(t.elapsed()));
        found.push(
            hits.iter()
                .map(|h| u64::from_str_radix(&h.id, 16).unwrap_or(u64::MAX))
                .collect(),
        );
    }
    // The first search of a store loads its graph.
    let first = times.first().copied().unwrap_or(0.0);
    let (p50, p99) = latencies(times);
    println!(
        "store knn {what} num_candidates={num_candidates} recall@{K}: {:.4}, latency p50 {p50:.3} ms p99 {p99:.3} ms, first {first:.1} ms ({} queries)",
        recall(&found, truth),
        queries.len()
    );
}

/// Searches only, on a store a run with `IMGVEC_BENCH_KEEP=1` left in `dir` (the same data:
/// the same N, dims, clusters and queries): plain knn at each ef floor of `IMGVEC_BENCH_EF_FLOORS`
/// [128,256,512], then every label filter with the store's defaults.
async fn searches_only(
    dir: &Path,
    n: usize,
    queries: &[Vec<f32>],
    truth: &[Vec<u64>],
    label_truth: &[(&str, usize, Vec<Vec<u64>>)],
) -> Result<(), String> {
    // A graph file of another format (or none) is rebuilt here, on this thread, and saved.
    let t = Instant::now();
    let store = LocalStore::open_with(LocalConfig::new(dir, "bench")).map_err(|e| e.to_string())?;
    store.refresh().await.map_err(|e| e.to_string())?;
    println!(
        "store refresh (graph loaded, or rebuilt and saved): {:.1} s (rebuilt: {})",
        t.elapsed().as_secs_f64(),
        store.ann_stats().rebuilt
    );
    drop(store);
    let floors = std::env::var("IMGVEC_BENCH_EF_FLOORS").unwrap_or_else(|_| "128,256,512".into());
    for floor in floors
        .split(',')
        .filter_map(|f| f.trim().parse::<usize>().ok())
    {
        let cfg = LocalConfig {
            min_ef_search: floor,
            ..LocalConfig::new(dir, "bench")
        };
        let store = LocalStore::open_with(cfg).map_err(|e| e.to_string())?;
        let what = format!("plain, ef floor {floor}");
        store_knn(&store, &what, &queries[..1], None, &truth[..1], 100).await;
        let before = store.ann_stats().read_ahead_searches;
        store_knn(&store, &what, queries, None, truth, 100).await;
        println!(
            "  of which {} read their rows ahead (they came slowly: not in the page cache)",
            store.ann_stats().read_ahead_searches - before
        );
    }
    let store = LocalStore::open_with(LocalConfig::new(dir, "bench")).map_err(|e| e.to_string())?;
    label_knn(&store, ", defaults", n, queries, label_truth).await;
    drop(store);
    filter_ways(dir, n, queries, label_truth, "scan,2bit").await
}

/// Writes at the size of a kept store (`IMGVEC_BENCH_APPEND` documents more, new ids from
/// `IMGVEC_BENCH_APPEND_FROM` [2000000], drawn from the same clusters) through `upsert` in batches
/// of `IMGVEC_BENCH_BATCH` [8]: docs/s committed, the latency of a search right after, and the
/// time until the graph holds every row and its file is written (`refresh`). For comparing
/// versions on one store: each run adds its documents.
async fn append_only(dir: &Path, data: &Data, count: usize) -> Result<(), String> {
    let from = env_usize("IMGVEC_BENCH_APPEND_FROM", 2_000_000);
    let per_call = env_usize("IMGVEC_BENCH_BATCH", 8).max(1);
    let mut rng = Rng(from as u64);
    let docs: Vec<ImageDoc> = (0..count)
        .map(|i| {
            let (v, c) = data.sample(&mut rng);
            doc(from + i, &v, label_of(c, 1_000))
        })
        .collect();
    let store = LocalStore::open_with(LocalConfig::new(dir, "bench")).map_err(|e| e.to_string())?;
    let t = Instant::now();
    store.refresh().await.map_err(|e| e.to_string())?;
    let before = store.count().await.map_err(|e| e.to_string())?;
    println!(
        "store opened at {before} docs: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    for batch in docs.chunks(per_call) {
        let report = store
            .upsert(batch, false)
            .await
            .map_err(|e| e.to_string())?;
        if !report.failed.is_empty() {
            return Err(format!("upsert failed: {:?}", report.failed.first()));
        }
    }
    let ingest = started.elapsed();
    println!(
        "store append: {count} docs to {before} through upsert in batches of {per_call} in {:.1} s: {:.0} docs/s committed and searchable",
        ingest.as_secs_f64(),
        count as f64 / ingest.as_secs_f64()
    );
    let mut times = Vec::new();
    for d in docs.iter().step_by((count / 20).max(1)).take(20) {
        let q = plain_query(&d.vector);
        let t = Instant::now();
        let hits = store.knn(&q).await.map_err(|e| e.to_string())?;
        times.push(ms(t.elapsed()));
        if hits.first().map(|h| h.id.as_str()) != Some(d.id.as_str()) {
            println!("store append: a document just written was not found first by its own vector");
        }
    }
    let (p50, p99) = latencies(times);
    println!("store knn right after the append (a new document's own vector; found first): p50 {p50:.1} ms p99 {p99:.1} ms");
    store.refresh().await.map_err(|e| e.to_string())?;
    println!(
        "store graph whole and its file written {:.1} s after the append: {:.0} docs/s from the first write",
        started.elapsed().as_secs_f64() - ingest.as_secs_f64(),
        count as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Every label filter answered by each forced way of `IMGVEC_BENCH_WAYS` [`default`]: `scan`
/// the label's int8 codes (read from the graph), `2bit` its 2-bit codes (made on its first search,
/// no budget; `2bit:N` re-scores their best N), a number the graph walk at that `ef` (no 2-bit codes: before 2026-12-06 a forced
/// walk of a label that fitted their budget was in fact a 4-bit scan, as the codes were then).
async fn filter_ways(
    dir: &Path,
    n: usize,
    queries: &[Vec<f32>],
    label_truth: &[(&str, usize, Vec<Vec<u64>>)],
    default: &str,
) -> Result<(), String> {
    let ways = std::env::var("IMGVEC_BENCH_WAYS").unwrap_or_else(|_| default.into());
    for way in ways.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let base = LocalConfig::new(dir, "bench");
        let (cfg, how) = match way.parse::<usize>() {
            Ok(ef) => (
                LocalConfig {
                    filtered_scan_rows: 0,
                    filtered_code2_bytes: 0,
                    filtered_min_ef: ef,
                    ..base
                },
                format!(", graph walk, ef {ef} forced"),
            ),
            Err(_) if way.starts_with("2bit") => {
                // `2bit:N`: the scan's best N re-scored by their int8 codes.
                let wide = way
                    .strip_prefix("2bit:")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(base.filtered_code2_candidates);
                (
                    LocalConfig {
                        filtered_scan_rows: 0,
                        filtered_code2_bytes: usize::MAX,
                        filtered_code2_candidates: wide,
                        ..base
                    },
                    format!(", 2-bit code scan forced, {wide} re-scored"),
                )
            }
            Err(_) => (
                LocalConfig {
                    filtered_scan_rows: usize::MAX,
                    filtered_code2_bytes: 0,
                    ..base
                },
                ", int8 code scan forced".to_string(),
            ),
        };
        let store = LocalStore::open_with(cfg).map_err(|e| e.to_string())?;
        label_knn(&store, &how, n, queries, label_truth).await;
    }
    Ok(())
}

/// recall@10 and latency of the store's knn with each label filter of `label_truth`.
async fn label_knn(
    store: &LocalStore,
    how: &str,
    n: usize,
    queries: &[Vec<f32>],
    label_truth: &[(&str, usize, Vec<Vec<u64>>)],
) {
    for (label, count, truth) in label_truth {
        let what = format!(
            "label filter '{label}' ({count} docs, 1 in {:.0}{how})",
            n as f64 / *count as f64
        );
        store_knn(
            store,
            &what,
            &queries[..truth.len()],
            Some(label),
            truth,
            100,
        )
        .await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn store_bench(
    dir: &Path,
    flat: &[f32],
    labels: &[&str],
    dims: usize,
    queries: &[Vec<f32>],
    truth: &[Vec<u64>],
    label_truth: &[(&str, usize, Vec<Vec<u64>>)],
    m: usize,
    efc: usize,
) -> Result<(), String> {
    let n = flat.len() / dims;
    let spec = IndexSpec {
        dims,
        hnsw_m: Some(m as u32),
        hnsw_ef_construction: Some(efc as u32),
        ..IndexSpec::for_dims(dims)
    };
    let cfg = LocalConfig::new(dir, "bench");
    let store = LocalStore::open_with(cfg.clone()).map_err(|e| e.to_string())?;
    store
        .recreate_index(&spec)
        .await
        .map_err(|e| e.to_string())?;

    let per_call = env_usize("IMGVEC_BENCH_BATCH", 8).max(1);
    let started = Instant::now();
    let mut call_ms = Vec::with_capacity(n / per_call + 1);
    let mut batch = Vec::with_capacity(per_call);
    for start in (0..n).step_by(per_call) {
        batch.clear();
        for i in start..(start + per_call).min(n) {
            batch.push(doc(i, &flat[i * dims..(i + 1) * dims], labels[i]));
        }
        let t = Instant::now();
        let report = store
            .upsert(&batch, false)
            .await
            .map_err(|e| e.to_string())?;
        call_ms.push(ms(t.elapsed()));
        if !report.failed.is_empty() {
            return Err(format!("upsert failed: {:?}", report.failed.first()));
        }
    }
    let ingest = started.elapsed();
    let (p50, p99) = latencies(call_ms);
    let stats = store.ann_stats();
    println!(
        "store ingest: {n} docs through upsert in batches of {per_call} in {:.1} s: {:.0} docs/s (upsert call p50 {p50:.2} ms p99 {p99:.2} ms; committed with synchronous=FULL and searchable; {} rows in the graph so far, the rest scanned beside it)",
        ingest.as_secs_f64(),
        n as f64 / ingest.as_secs_f64(),
        stats.caught_up_rows,
    );
    // A search while the graph is still taking the rows in: the tail scanned beside it.
    store_knn(
        &store,
        "plain, right after the ingest",
        &queries[..queries.len().min(20)],
        None,
        &truth[..truth.len().min(20)],
        100,
    )
    .await;
    let t = Instant::now();
    store.refresh().await.map_err(|e| e.to_string())?;
    println!(
        "store graph whole and its file written {:.1} s after the ingest: {:.0} docs/s from the first write to a whole, saved graph",
        started.elapsed().as_secs_f64() - ingest.as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64()
    );
    let ann_file = store.ann_path().map_err(|e| e.to_string())?;
    let file_mib = ann_file
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.len() as f64 / (1 << 20) as f64)
        .unwrap_or(0.0);
    let db_mib = std::fs::metadata(store.db_path())
        .map(|m| m.len() as f64 / (1 << 20) as f64)
        .unwrap_or(0.0);
    let stats = store.ann_stats();
    println!(
        "store refresh (tail taken in, HNSW cache file written): {:.2} s; cache file {file_mib:.0} MiB, database {db_mib:.0} MiB (+ WAL); nodes checked by a search for their own code {} time(s), {} linked afresh",
        t.elapsed().as_secs_f64(),
        stats.relink_passes,
        stats.relinked
    );
    store_knn(&store, "plain", queries, None, truth, 100).await;
    store_knn(&store, "plain", queries, None, truth, 40).await;
    label_knn(&store, "", n, queries, label_truth).await;
    drop(store);
    // The curve of the plain search's ef floor.
    for min_ef in [64, 256] {
        let cfg = LocalConfig {
            min_ef_search: min_ef,
            ..cfg.clone()
        };
        let store = LocalStore::open_with(cfg).map_err(|e| e.to_string())?;
        store_knn(
            &store,
            &format!("plain, ef floor {min_ef}"),
            queries,
            None,
            truth,
            100,
        )
        .await;
    }
    // Each way of answering a filter on every label, to choose where one gives way to the other:
    // the graph walk at several widths, the scan of the label's codes in memory (all kept).
    filter_ways(dir, n, queries, label_truth, "scan,2bit,1024").await?;

    let t = Instant::now();
    let store = LocalStore::open_with(cfg.clone()).map_err(|e| e.to_string())?;
    let first = plain_query(&queries[0]);
    store.knn(&first).await.map_err(|e| e.to_string())?;
    println!(
        "store reopen + first knn (cache file loaded: {}): {:.2} s",
        store.ann_stats().loaded_from_file,
        t.elapsed().as_secs_f64()
    );
    drop(store);

    rebuild(cfg, queries, truth).await
}

/// Deletes the store's graph file, opens it again and times the rebuild from the rows: the first
/// search (answered at once, exactly), then the background build on every core until a search
/// takes the finished graph (polled every second), then recall after it.
async fn rebuild(cfg: LocalConfig, queries: &[Vec<f32>], truth: &[Vec<u64>]) -> Result<(), String> {
    let store = LocalStore::open_with(cfg.clone()).map_err(|e| e.to_string())?;
    let ann_file = store.ann_path().map_err(|e| e.to_string())?;
    drop(store);
    if let Some(file) = &ann_file {
        // IMGVEC_BENCH_KEEP_GRAPH=<path>: the graph as the ingest left it, kept there to study.
        match std::env::var_os("IMGVEC_BENCH_KEEP_GRAPH") {
            Some(keep) => std::fs::rename(file, &keep).map_err(|e| e.to_string())?,
            None => {
                let _ = std::fs::remove_file(file);
            }
        }
    }
    let first = plain_query(&queries[0]);
    let t = Instant::now();
    let store = LocalStore::open_with(cfg).map_err(|e| e.to_string())?;
    store.knn(&first).await.map_err(|e| e.to_string())?;
    println!(
        "store rebuild from SQLite rows (cache file deleted) + first knn: {:.1} s (rebuilt: {}; the graph is built aside, on every core)",
        t.elapsed().as_secs_f64(),
        store.ann_stats().rebuilt,
    );
    // Three more plain searches while the graph is built: each an exact scan of every row, beside
    // the build (which runs behind the searches, at a lower priority).
    let mut while_building = Vec::new();
    for q in queries.iter().skip(1).take(3) {
        let t = Instant::now();
        store
            .knn(&plain_query(q))
            .await
            .map_err(|e| e.to_string())?;
        while_building.push(format!("{:.1} s", t.elapsed().as_secs_f64()));
    }
    println!(
        "store plain knn while the graph is built (exact scans): {} (exact while building: {})",
        while_building.join(", "),
        store.ann_stats().exact_while_building
    );
    // Polled by a search within the smallest label (an exact scan of its ~0.1% of the rows), which
    // takes a finished graph into use like any search: a plain one would scan every row exactly
    // and take a core from the build.
    let poll = KnnQuery {
        label: Some(LABEL_SHARES[LABEL_SHARES.len() - 1].0.to_string()),
        ..first.clone()
    };
    while store.ann_stats().built_in_background == 0 && t.elapsed() < Duration::from_secs(7_200) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        store.knn(&poll).await.map_err(|e| e.to_string())?;
    }
    let n = store.count().await.map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "store graph rebuilt from the rows in the background: ready {secs:.0} s after opening (±1 s; \
         searches meanwhile exact), {:.0} docs/s",
        n as f64 / secs
    );
    store_knn(&store, "plain after rebuild", queries, None, truth, 100).await;
    Ok(())
}

fn main() {
    let n = env_usize("IMGVEC_BENCH_N", 100_000);
    let dims = env_usize("IMGVEC_BENCH_DIMS", 768);
    let n_clusters = env_usize("IMGVEC_BENCH_CLUSTERS", 1_000);
    let n_queries = env_usize("IMGVEC_BENCH_QUERIES", 1_000);
    let m = env_usize("IMGVEC_BENCH_M", DEFAULT_HNSW_M as usize);
    let efc = env_usize("IMGVEC_BENCH_EFC", DEFAULT_HNSW_EF_CONSTRUCTION as usize);
    let raw = std::env::var("IMGVEC_BENCH_RAW").unwrap_or_else(|_| "i8q,i8,f16,f32".into());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "config: {n} vectors, {dims}-d, {n_clusters} clusters, {n_queries} queries, k={K}, M={m}, ef_construction={efc}, store min ef_search={DEFAULT_MIN_EF_SEARCH}, {threads} threads, usearch {}",
        usearch::version()
    );

    let t = Instant::now();
    let mut rng = Rng(42);
    let data = Data::new(dims, n_clusters, &mut rng);
    if let (Ok(dir), Some(count)) = (
        std::env::var("IMGVEC_BENCH_REUSE"),
        std::env::var("IMGVEC_BENCH_APPEND")
            .ok()
            .and_then(|v| v.parse::<usize>().ok()),
    ) {
        let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
        if let Err(e) = rt.block_on(append_only(Path::new(&dir), &data, count)) {
            println!("store: failed: {e}");
        }
        return;
    }
    let mut flat = Vec::with_capacity(n * dims);
    let mut clusters = Vec::with_capacity(n);
    for _ in 0..n {
        let (v, c) = data.sample(&mut rng);
        flat.extend_from_slice(&v);
        clusters.push(c);
    }
    // Drawn as the documents are (the same PRNG stream as before, so the data is unchanged).
    let queries: Vec<Vec<f32>> = (0..n_queries).map(|_| data.sample(&mut rng).0).collect();
    println!("data generated: {:.1} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let truth = ground_truth(&flat, dims, &queries, |_, _| true, threads);
    let labels: Vec<&str> = clusters.iter().map(|&c| label_of(c, n_clusters)).collect();
    let n_label = n_queries.min(200);
    let label_truth: Vec<(&str, usize, Vec<Vec<u64>>)> = LABEL_SHARES
        .iter()
        .filter_map(|&(name, _)| {
            let count = labels.iter().filter(|&&l| l == name).count();
            (count > 0).then(|| {
                let truth = ground_truth(
                    &flat,
                    dims,
                    &queries[..n_label],
                    |_, i| labels[i] == name,
                    threads,
                );
                (name, count, truth)
            })
        })
        .collect();
    println!(
        "exact ground truth: {:.1} s ({n_queries} queries + {n_label} per label filter)",
        t.elapsed().as_secs_f64()
    );

    for name in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // i8q: the store's codes (centred, scaled, rounded); i8: usearch's own cast.
        let quant = (name == "i8q").then(|| {
            Quantizer::fit(
                dims,
                flat.chunks_exact(dims).take(imgvec::store::local::FIT_ROWS),
            )
        });
        let kind = match name {
            "i8" | "i8q" => ScalarKind::I8,
            "f16" => ScalarKind::F16,
            "bf16" => ScalarKind::BF16,
            "f32" => ScalarKind::F32,
            other => {
                println!("raw {other}: unknown quantization (i8q, i8, f16, bf16, f32)");
                continue;
            }
        };
        // Built on every core, as the store builds (vendor/usearch/PATCHED.md).
        let quant = quant.as_ref();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        raw_bench(
            name, kind, quant, &flat, dims, &queries, &truth, m, efc, cores,
        );
    }

    if env_usize("IMGVEC_BENCH_STORE", 1) == 0 {
        return;
    }
    if let Ok(dir) = std::env::var("IMGVEC_BENCH_REUSE") {
        let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
        let run = async {
            if env_usize("IMGVEC_BENCH_REBUILD", 0) == 1 {
                rebuild(LocalConfig::new(Path::new(&dir), "bench"), &queries, &truth).await
            } else {
                searches_only(Path::new(&dir), n, &queries, &truth, &label_truth).await
            }
        };
        if let Err(e) = rt.block_on(run) {
            println!("store: failed: {e}");
        }
        return;
    }
    let tmp = match std::env::var("IMGVEC_BENCH_DIR") {
        Ok(d) => {
            let _ = std::fs::create_dir_all(&d);
            tempfile::tempdir_in(d)
        }
        Err(_) => tempfile::tempdir(),
    };
    let tmp = match tmp {
        Ok(t) => t,
        Err(e) => {
            println!("store: cannot make a temp dir: {e}");
            return;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("store: no tokio runtime: {e}");
            return;
        }
    };
    if let Err(e) = rt.block_on(store_bench(
        tmp.path(),
        &flat,
        &labels,
        dims,
        &queries,
        &truth,
        &label_truth,
        m,
        efc,
    )) {
        println!("store: failed: {e}");
    }
    if env_usize("IMGVEC_BENCH_KEEP", 0) == 1 {
        println!("store kept in {} (index bench)", tmp.keep().display());
    }
}
