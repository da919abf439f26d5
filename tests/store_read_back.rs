//! What `eval` reads from a store besides the kNN search, on both backends: the exact kNN
//! (`exact_knn`), every document back with its vector (`scan`), and the labels (`labels`).
//!
//! The exact search is checked against a brute-force search done here over the same documents, so
//! its ids and scores are known; nothing about the approximate search is asserted.

mod common;
#[path = "common/docs.rs"]
mod docs;

use common::*;
use docs::{docs, spec, Rng};
use imgvec::store::{ImageDoc, KnnQuery, StoreError, VectorStore};

const DIMS: usize = 16;

/// `n` documents (labels a, b, c in turn) written and refreshed.
async fn filled(store: &dyn VectorStore, n: usize, seed: u64) -> Vec<ImageDoc> {
    let all = docs(&mut Rng(seed), n, DIMS, &["a", "b", "c"], "d");
    store.ensure_index(&spec(DIMS)).await.unwrap();
    for chunk in all.chunks(100) {
        let report = store.upsert(chunk, false).await.unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
    }
    store.refresh().await.unwrap();
    all
}

/// The exact top-k of `docs` for `q` (optionally of one label): ids and squared distances.
fn brute_force(docs: &[ImageDoc], q: &[f32], k: usize, label: Option<&str>) -> Vec<(String, f32)> {
    let mut scored: Vec<(String, f32)> = docs
        .iter()
        .filter(|d| label.is_none_or(|l| d.label == l))
        .map(|d| {
            let d2 = d.vector.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
            (d.id.clone(), d2)
        })
        .collect();
    scored.sort_by(|a, b| a.1.total_cmp(&b.1));
    scored.truncate(k);
    scored
}

backend_test! {
    fn exact_knn_is_the_brute_force_answer(idx) {
        let rt = runtime();
        let store = idx.store();
        let all = rt.block_on(filled(store.as_ref(), 300, 11));
        let mut rng = Rng(99);
        for (i, label) in [None, None, None, Some("b"), Some("c")].into_iter().enumerate() {
            let q = rng.unit_vector(DIMS);
            let query = KnnQuery {
                vector: q.clone(),
                k: 10,
                num_candidates: 10,
                label: label.map(str::to_string),
            };
            let hits = rt.block_on(store.exact_knn(&query)).unwrap();
            let want = brute_force(&all, &q, 10, label);
            let got: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
            let expected: Vec<&str> = want.iter().map(|(id, _)| id.as_str()).collect();
            assert_eq!(got, expected, "[{}] query {i}", idx.kind());
            for (h, (_, d2)) in hits.iter().zip(&want) {
                let score = 1.0 / (1.0 + d2);
                assert!((h.score - score).abs() < 1e-4, "[{}] {} vs {score}", idx.kind(), h.score);
                assert!(label.is_none_or(|l| h.label == l));
                assert!(h.path.starts_with("/images/"));
            }
        }
    }
}

backend_test! {
    fn scan_reads_every_document_in_id_order(idx) {
        let rt = runtime();
        let store = idx.store();
        let mut all = rt.block_on(filled(store.as_ref(), 250, 5));
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let read = |after: Option<String>| {
            rt.block_on(async {
                let mut scan = store.scan(40, after).await.unwrap();
                let mut out = Vec::new();
                let mut pages = 0;
                loop {
                    let page = scan.next_page().await.unwrap();
                    if page.is_empty() {
                        break;
                    }
                    assert!(page.len() <= 40);
                    pages += 1;
                    out.extend(page);
                }
                scan.close().await.unwrap();
                (out, pages)
            })
        };
        let (docs, pages) = read(None);
        assert!(pages >= 7, "[{}] {pages} pages", idx.kind());
        assert_eq!(docs.len(), all.len(), "[{}]", idx.kind());
        // Everything comes back as written, vectors included.
        assert_eq!(docs, all, "[{}]", idx.kind());
        // Resuming after an id.
        let (rest, _) = read(Some(all[99].id.clone()));
        assert_eq!(rest, all[100..].to_vec(), "[{}]", idx.kind());
    }
}

backend_test! {
    fn labels_are_counted(idx) {
        let rt = runtime();
        let store = idx.store();
        rt.block_on(filled(store.as_ref(), 250, 3));
        let labels = rt.block_on(store.labels()).unwrap();
        let got: Vec<(&str, u64)> = labels.iter().map(|l| (l.label.as_str(), l.count)).collect();
        assert_eq!(got, [("a", 84), ("b", 83), ("c", 83)], "[{}]", idx.kind());
    }
}

backend_test! {
    fn a_missing_index_is_named(idx) {
        let rt = runtime();
        let store = idx.store();
        let missing = |r: Result<(), StoreError>| match r {
            Err(StoreError::IndexMissing { index }) => assert_eq!(index, idx.name),
            other => panic!("[{}] expected IndexMissing, got {other:?}", idx.kind()),
        };
        missing(rt.block_on(store.labels()).map(drop));
        missing(rt.block_on(store.scan(10, None)).map(drop));
        let q = KnnQuery { vector: vec![0.0; DIMS], k: 3, num_candidates: 3, label: None };
        missing(rt.block_on(store.exact_knn(&q)).map(drop));
    }
}
