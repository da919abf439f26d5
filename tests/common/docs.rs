//! Deterministic test documents for the store tests and benches: no `rand` needed.
#![allow(dead_code)]

use imgvec::store::{ImageDoc, IndexSpec};

pub fn spec(dims: usize) -> IndexSpec {
    IndexSpec::for_dims(dims)
}

/// splitmix64: a small deterministic PRNG.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Uniform in (0, 1].
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    /// A random L2-normalized vector.
    pub fn unit_vector(&mut self, dims: usize) -> Vec<f32> {
        loop {
            let v: Vec<f32> = (0..dims).map(|_| self.next_f32()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 1e-3 {
                return v.into_iter().map(|x| x / norm).collect();
            }
        }
    }
}

/// `n` documents with random unit vectors, labels from `labels` in turn, ids `<prefix><i in hex>`.
pub fn docs(rng: &mut Rng, n: usize, dims: usize, labels: &[&str], prefix: &str) -> Vec<ImageDoc> {
    (0..n)
        .map(|i| ImageDoc {
            id: format!("{prefix}{i:060x}"),
            label: labels[i % labels.len()].to_string(),
            path: format!("/images/{}/{i}.jpg", labels[i % labels.len()]),
            other_paths: Vec::new(),
            vector: rng.unit_vector(dims),
            bytes: 1000 + i as u64,
            width: 640,
            height: 480,
            model: "clip-test".into(),
            indexed_at_ms: 1_700_000_000_000 + i as u64,
            mtime_ms: (i % 3 != 0).then_some(1_600_000_000_000 + i as u64),
        })
        .collect()
}

pub fn ids(docs: &[ImageDoc]) -> Vec<String> {
    docs.iter().map(|d| d.id.clone()).collect()
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// `v` scaled to unit length.
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

/// `clusters` random unit vectors of `dims`: the centres of CLIP-like clustered data.
pub fn centres(rng: &mut Rng, clusters: usize, dims: usize) -> Vec<Vec<f32>> {
    (0..clusters)
        .map(|_| {
            let mut c: Vec<f32> = (0..dims).map(|_| rng.normal()).collect();
            normalize(&mut c);
            c
        })
        .collect()
}

/// A benchmark document `i` (id: `i` in hex, path `/bench/{i}.jpg`) with this label and vector.
pub fn bench_doc(i: usize, label: String, vector: Vec<f32>) -> ImageDoc {
    ImageDoc {
        id: format!("{i:064x}"),
        label,
        path: format!("/bench/{i}.jpg"),
        other_paths: Vec::new(),
        vector,
        bytes: 100_000,
        width: 640,
        height: 480,
        model: "bench".into(),
        indexed_at_ms: 1_700_000_000_000,
        mtime_ms: None,
    }
}

/// How many of `hits` are among the exact answer to `query` (`VectorStore::exact_knn`): the
/// agreement of an approximate search with the truth, for the store tests.
pub async fn agreeing_with_exact(
    store: &dyn imgvec::store::VectorStore,
    query: &imgvec::store::KnnQuery,
    hits: &[imgvec::store::Hit],
) -> usize {
    let exact: std::collections::HashSet<String> = store
        .exact_knn(query)
        .await
        .expect("exact")
        .into_iter()
        .map(|h| h.id)
        .collect();
    hits.iter().filter(|h| exact.contains(&h.id)).count()
}

/// Gives every `every`th of the first `first` of `all` the label `label`; those documents, as
/// written again to relabel them.
pub fn relabel_every(
    all: &mut [ImageDoc],
    first: usize,
    every: usize,
    label: &str,
) -> Vec<ImageDoc> {
    for doc in all.iter_mut().take(first).step_by(every) {
        doc.label = label.into();
    }
    all.iter().take(first).step_by(every).cloned().collect()
}

/// The ids of every `every`th of `all` after the first `skip`: documents to delete.
pub fn ids_every(all: &[ImageDoc], skip: usize, every: usize) -> Vec<String> {
    all.iter()
        .skip(skip)
        .step_by(every)
        .map(|d| d.id.clone())
        .collect()
}

/// `docs` but those whose id is in `gone`.
pub fn without(docs: Vec<ImageDoc>, gone: &[String]) -> Vec<ImageDoc> {
    docs.into_iter().filter(|d| !gone.contains(&d.id)).collect()
}

/// Leaves a store as after a crash before its graph was saved again, for the stale-file tests:
/// `writer` writes `all[..first]` and saves its graph file, then writes the rest, relabels every
/// `relabel.0`th of the first `first` to `relabel.1` and deletes every `gone.1`th after the first
/// `gone.0`; it is dropped and the older graph file put back. Returns the documents left and the
/// relabelled ones left, as the store should now find them.
pub async fn crash_with_stale_graph_file(
    writer: imgvec::store::local::LocalStore,
    mut all: Vec<ImageDoc>,
    first: usize,
    relabel: (usize, &str),
    gone: (usize, usize),
) -> (Vec<ImageDoc>, Vec<ImageDoc>) {
    use imgvec::store::VectorStore;
    let dims = all.first().map_or(0, |d| d.vector.len());
    writer.ensure_index(&spec(dims)).await.expect("index");
    write(&writer, &all[..first]).await;
    writer.refresh().await.expect("refresh");
    let file = writer.ann_path().expect("path").expect("a graph file");
    let saved = std::fs::read(&file).expect("read the graph file");
    write(&writer, &all[first..]).await;
    let relabelled = relabel_every(&mut all, first, relabel.0, relabel.1);
    write(&writer, &relabelled).await;
    let gone = ids_every(&all, gone.0, gone.1);
    writer.delete(&gone).await.expect("delete");
    drop(writer);
    std::fs::write(&file, saved).expect("put the older file back");
    (without(all, &gone), without(relabelled, &gone))
}

/// Writes `docs` into `store` (waiting for the commit), none failing: the store tests' write.
pub async fn write(store: &dyn imgvec::store::VectorStore, docs: &[ImageDoc]) {
    let report = store.upsert(docs, true).await.expect("upsert");
    assert!(report.failed.is_empty(), "failed: {:?}", report.failed);
}
