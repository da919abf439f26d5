//! Benchmark of `imgvec dupes`' search (`imgvec::dupes::find`): wall time, peak memory, and how
//! well it finds planted near duplicates among synthetic vectors.
//!
//! The index: `--n` documents of 768-d clustered unit vectors (1,000 Gaussian clusters, noise of
//! norm ≈ 0.6, so two documents of one cluster are ≈ 0.85 apart, as different photos of one kind
//! are with CLIP), of which 1% are planted near duplicates: copies of another document moved by
//! 0.02–0.15 (a re-encode or a resize), in groups of two and three. The planted groups are the
//! truth; recall and precision count pairs of documents put in one group.
//!
//! The search runs in a child process of its own, so the peak resident memory it prints
//! (`VmHWM`) is the search's, not the loading's.
//!
//! ```text
//! cargo bench --bench dupes                           # embedded store, 100,000 documents
//! cargo bench --bench dupes -- --n 10000 --elastic    # the server at IMGVEC_TEST_ES_URL
//! ```
//! Flags: `--n N` [100000], `--dir DIR` (keep and reuse the embedded store there),
//! `--max-distance D` [0.2], `--elastic`, `--one-by-one` (the queries one `knn` call each, as
//! the trait's default `knn_batch` does: what the backends' batches are measured against).

#[path = "../tests/common/docs.rs"]
mod docs;
use docs::{bench_doc, centres, normalize, Rng};

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imgvec::dupes::{find, id_sets, Options};
use imgvec::store::elastic::{ElasticConfig, ElasticStore};
use imgvec::store::local::{LocalConfig, LocalStore};
use imgvec::store::{
    DocScan, EnsureOutcome, Hit, ImageDoc, IndexSpec, KnnQuery, StoreError, UpsertReport,
    VectorStore,
};

/// A store whose `knn_batch` is the trait's default: one `knn` after another.
struct OneByOne(Arc<dyn VectorStore>);

#[async_trait::async_trait]
impl VectorStore for OneByOne {
    fn describe(&self) -> String {
        self.0.describe()
    }
    async fn ensure_index(&self, spec: &IndexSpec) -> Result<EnsureOutcome, StoreError> {
        self.0.ensure_index(spec).await
    }
    async fn recreate_index(&self, spec: &IndexSpec) -> Result<(), StoreError> {
        self.0.recreate_index(spec).await
    }
    async fn index_dims(&self) -> Result<usize, StoreError> {
        self.0.index_dims().await
    }
    async fn existing_ids(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        self.0.existing_ids(ids).await
    }
    async fn upsert(&self, docs: &[ImageDoc], overwrite: bool) -> Result<UpsertReport, StoreError> {
        self.0.upsert(docs, overwrite).await
    }
    async fn refresh(&self) -> Result<(), StoreError> {
        self.0.refresh().await
    }
    async fn knn(&self, query: &KnnQuery) -> Result<Vec<Hit>, StoreError> {
        self.0.knn(query).await
    }
    async fn count(&self) -> Result<u64, StoreError> {
        self.0.count().await
    }
    async fn scan(
        &self,
        page: usize,
        after: Option<String>,
    ) -> Result<Box<dyn DocScan>, StoreError> {
        self.0.scan(page, after).await
    }
    async fn get(&self, ids: &[String]) -> Result<Vec<ImageDoc>, StoreError> {
        self.0.get(ids).await
    }
}

const DIMS: usize = 768;
const CLUSTERS: usize = 1000;
const BATCH: usize = 500;

struct Args {
    n: usize,
    dir: Option<String>,
    max_distance: f32,
    elastic: bool,
    one_by_one: bool,
    child: bool,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    Args {
        n: value("--n").and_then(|v| v.parse().ok()).unwrap_or(100_000),
        dir: value("--dir"),
        max_distance: value("--max-distance")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.2),
        elastic: argv.iter().any(|a| a == "--elastic"),
        one_by_one: argv.iter().any(|a| a == "--one-by-one"),
        child: argv.iter().any(|a| a == "--child"),
    }
}

fn doc(i: usize, vector: Vec<f32>) -> ImageDoc {
    bench_doc(i, "bench".into(), vector)
}

/// The documents, and the planted groups (as sorted id lists).
fn corpus(n: usize) -> (Vec<ImageDoc>, Vec<Vec<String>>) {
    let mut rng = Rng(7);
    let centres = centres(&mut rng, CLUSTERS, DIMS);
    let sigma = 0.6 / (DIMS as f32).sqrt();
    let planted = n / 100;
    let mut docs: Vec<ImageDoc> = (0..n - planted)
        .map(|i| {
            let c = (rng.next_u64() % CLUSTERS as u64) as usize;
            let mut v: Vec<f32> = centres[c]
                .iter()
                .map(|x| x + sigma * rng.normal())
                .collect();
            normalize(&mut v);
            doc(i, v)
        })
        .collect();
    let mut groups = Vec::new();
    let mut base = 0;
    while docs.len() < n {
        // Groups of two and three: one original, one or two copies.
        let copies = 1 + (groups.len() % 2).min(n - docs.len() - 1);
        let original = docs[base].clone();
        let mut group = vec![original.id.clone()];
        for _ in 0..copies {
            let moved = 0.02 + 0.13 * rng.next_f32();
            let s = moved / (DIMS as f32).sqrt();
            let mut v: Vec<f32> = original
                .vector
                .iter()
                .map(|x| x + s * rng.normal())
                .collect();
            normalize(&mut v);
            let copy = doc(docs.len(), v);
            group.push(copy.id.clone());
            docs.push(copy);
        }
        group.sort();
        groups.push(group);
        base += 97; // originals spread over the index
    }
    groups.sort();
    (docs, groups)
}

/// Unordered pairs of ids put in one group.
fn pairs(groups: &[Vec<String>]) -> HashSet<(String, String)> {
    let mut out = HashSet::new();
    for g in groups {
        for (i, a) in g.iter().enumerate() {
            for b in &g[i + 1..] {
                out.insert((a.clone(), b.clone()));
            }
        }
    }
    out
}

fn store(a: &Args, dir: &str) -> Arc<dyn VectorStore> {
    if a.elastic {
        let url = std::env::var("IMGVEC_TEST_ES_URL")
            .expect("IMGVEC_TEST_ES_URL: start the test server with .ci/es-server.sh");
        let mut cfg = ElasticConfig::new(url, "imgvec-bench-dupes");
        cfg.request_timeout = Duration::from_secs(60);
        Arc::new(ElasticStore::connect(cfg).expect("connect"))
    } else {
        Arc::new(LocalStore::open_with(LocalConfig::new(dir, "dupes")).expect("open"))
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tmp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().expect("tempdir");
            tmp.path().display().to_string()
        }
    };
    let truth_file = std::path::Path::new(&dir).join(format!("truth-{}.json", a.n));
    if a.child {
        let truth: Vec<Vec<String>> = serde_json::from_str(
            &std::fs::read_to_string(&truth_file).expect("the parent wrote the truth"),
        )
        .expect("truth");
        let s = store(&a, &dir);
        let s: Arc<dyn VectorStore> = if a.one_by_one {
            Arc::new(OneByOne(s))
        } else {
            s
        };
        let opts = Options::new(a.max_distance);
        let t = Instant::now();
        let (groups, stats) = rt.block_on(find(s, &opts, |_| {})).expect("find");
        let wall = t.elapsed().as_secs_f64();
        let found = pairs(&id_sets(&groups));
        let planted = pairs(&truth);
        let hit = found.intersection(&planted).count();
        println!(
            "dupes: {} documents, {} queries, {} groups: {wall:.1} s wall, {:.0} queries/s, peak RSS {:.0} MiB",
            stats.documents,
            stats.queries,
            groups.len(),
            stats.queries as f64 / wall,
            peak_rss_mib()
        );
        println!(
            "planted pairs {}: recall {:.4}, precision {:.4} (found pairs {})",
            planted.len(),
            hit as f64 / planted.len().max(1) as f64,
            hit as f64 / found.len().max(1) as f64,
            found.len()
        );
        return;
    }
    std::fs::create_dir_all(&dir).expect("dir");
    let (docs, truth) = corpus(a.n);
    let s = store(&a, &dir);
    let have = rt.block_on(s.count()).unwrap_or(0);
    if have as usize != docs.len() || a.elastic {
        let t = Instant::now();
        rt.block_on(async {
            s.recreate_index(&IndexSpec::for_dims(DIMS)).await?;
            for chunk in docs.chunks(BATCH) {
                let r = s.upsert(chunk, false).await?;
                assert!(r.failed.is_empty(), "{:?}", r.failed.first());
            }
            s.refresh().await
        })
        .expect("load");
        println!(
            "loaded {} documents in {:.1} s",
            docs.len(),
            t.elapsed().as_secs_f64()
        );
    }
    std::fs::write(&truth_file, serde_json::to_string(&truth).expect("json")).expect("truth");
    drop(s);
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"));
    child.args(std::env::args().skip(1)).arg("--child");
    if a.dir.is_none() {
        child.args(["--dir", &dir]);
    }
    let status = child.status().expect("child");
    assert!(status.success(), "the search failed");
}
