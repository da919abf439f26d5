//! Benchmark of `imgvec copy`: documents per second moved between stores, vectors included.
//!
//! Builds a synthetic embedded store (random 768-d unit vectors through the store API, as ingest
//! would write them), then times [`copy_index`] — the function the command runs — embedded →
//! embedded and, when `IMGVEC_TEST_ES_URL` names a server, embedded → Elasticsearch and
//! Elasticsearch → embedded. One line per figure. Sizes from the environment (defaults in
//! brackets): `IMGVEC_BENCH_N` [20000], `IMGVEC_BENCH_DIMS` [768], `IMGVEC_BENCH_BATCH` [500].
//!
//! ```text
//! cargo bench --bench copy
//! eval "$(bash .ci/es-server.sh start target/es-test)"; cargo bench --bench copy
//! ```

#[path = "../tests/common/docs.rs"]
mod docs;

use std::time::{Duration, Instant};

use docs::{docs, spec, Rng};
use imgvec::commands::copy::{copy_index, CopyOptions, CopyReport};
use imgvec::store::elastic::{ElasticConfig, ElasticStore};
use imgvec::store::local::LocalStore;
use imgvec::store::VectorStore;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn line(what: &str, r: &CopyReport) {
    println!(
        "{what}: {} docs in {:.2} s = {:.0} docs/s (complete: {})",
        r.written,
        r.seconds,
        r.docs_per_second,
        r.complete()
    );
}

async fn copy(
    from: &dyn VectorStore,
    to: &dyn VectorStore,
    batch: usize,
) -> Result<CopyReport, anyhow::Error> {
    let opts = CopyOptions { batch, limit: None };
    copy_index(from, to, &opts, |_| {}).await
}

fn main() -> Result<(), anyhow::Error> {
    let n = env_usize("IMGVEC_BENCH_N", 20_000);
    let dims = env_usize("IMGVEC_BENCH_DIMS", 768);
    let batch = env_usize("IMGVEC_BENCH_BATCH", 500);
    let tmp = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let source = LocalStore::open(&tmp.path().join("source"), "bench")?;
        source.ensure_index(&spec(dims)).await?;
        let t = Instant::now();
        let mut rng = Rng(42);
        for start in (0..n).step_by(1_000) {
            let mut chunk = docs(&mut rng, (n - start).min(1_000), dims, &["a", "b", "c"], "");
            for (i, d) in chunk.iter_mut().enumerate() {
                d.id = format!("{:064x}", (start + i) as u128 * 0x9E37_79B9_7F4A_7C15);
            }
            source.upsert(&chunk, false).await?;
        }
        source.refresh().await?;
        println!(
            "source: {n} docs of {dims}-d written in {:.2} s",
            t.elapsed().as_secs_f64()
        );

        let target = LocalStore::open(&tmp.path().join("target"), "bench")?;
        line(
            "embedded -> embedded",
            &copy(&source, &target, batch).await?,
        );

        let Some(url) = std::env::var("IMGVEC_TEST_ES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            println!("(IMGVEC_TEST_ES_URL unset: no Elasticsearch figures)");
            return Ok(());
        };
        let index = format!("imgvec-bench-copy-{}", std::process::id());
        let mut cfg = ElasticConfig::new(url, index);
        cfg.request_timeout = Duration::from_secs(120);
        let es = ElasticStore::connect(cfg)?;
        es.delete_index().await?;
        line(
            "embedded -> Elasticsearch",
            &copy(&source, &es, batch).await?,
        );
        let back = LocalStore::open(&tmp.path().join("back"), "bench")?;
        line("Elasticsearch -> embedded", &copy(&es, &back, batch).await?);
        es.delete_index().await?;
        Ok(())
    })
}
