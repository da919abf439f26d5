//! Integration tests of the embedded local store, each in a temporary directory of its own.
//!
//! They check the same contract as `store_elastic.rs` (create semantics, `existing_ids`, kNN with
//! the label filter inside the search, `l2_norm` scores, `IndexMissing`, `Incompatible`) plus what
//! only a local store has: the HNSW cache file rebuilt when missing, stale or damaged; clear errors
//! for foreign or damaged files; readers and writers in several processes at once; and no loss of anything reported indexed when
//! the process is SIGKILLed. The crash and lock tests re-run this test binary as a child process
//! that runs only `child_process_helper`: an ignored test (so a normal run neither runs nor counts
//! it) that the parent selects with `--ignored --exact` and steers with `IMGVEC_LOCAL_TEST_CHILD`.

#[path = "common/contract.rs"]
mod contract;
#[path = "common/docs.rs"]
mod docs;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use docs::{docs, ids, sorted, spec, Rng};
use imgvec::store::local::{LocalConfig, LocalStore, DB_FILE, LOCK_FILE};
use imgvec::store::{
    EnsureOutcome, Hit, ImageDoc, IndexSpec, KnnQuery, StoreError, UpsertReport, VectorStore,
};

/// Selects the child-process mode of `child_process_helper`: `crash:<dir>:<round>:<save>`,
/// `stale:<dir>` or `hold:<dir>`.
const CHILD_ENV: &str = "IMGVEC_LOCAL_TEST_CHILD";

fn config(dir: &Path) -> LocalConfig {
    let mut cfg = LocalConfig::new(dir, "imgvec");
    cfg.lock_wait = Some(Duration::from_millis(200));
    cfg
}

/// A config whose searches always go through the HNSW graph (no exact scan for small sets).
fn hnsw_config(dir: &Path) -> LocalConfig {
    let mut cfg = config(dir);
    cfg.exact_scan_rows = 0;
    cfg
}

fn open(cfg: LocalConfig) -> LocalStore {
    match LocalStore::open_with(cfg) {
        Ok(store) => store,
        Err(e) => panic!("open: {e}"),
    }
}

fn open_err(cfg: LocalConfig) -> String {
    match LocalStore::open_with(cfg) {
        Ok(store) => panic!("opened {store:?}, expected an error"),
        Err(e) => e.to_string(),
    }
}

async fn upsert_all(store: &LocalStore, docs: &[ImageDoc]) {
    let report = store.upsert(docs, false).await.expect("upsert");
    assert!(report.failed.is_empty(), "failed: {:?}", report.failed);
    assert_eq!(report.indexed.len(), docs.len());
    store.refresh().await.expect("refresh");
}

fn query(vector: &[f32], k: usize, label: Option<&str>) -> KnnQuery {
    KnnQuery {
        vector: vector.to_vec(),
        k,
        num_candidates: 100,
        label: label.map(str::to_string),
    }
}

/// The exact `k` nearest ids by brute force.
fn exact_ids(all: &[ImageDoc], q: &[f32], k: usize, label: Option<&str>) -> Vec<String> {
    let mut scored: Vec<(f32, &str)> = all
        .iter()
        .filter(|d| label.is_none_or(|l| d.label == l))
        .map(|d| {
            let d2: f32 = d.vector.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
            (d2, d.id.as_str())
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(k)
        .map(|(_, id)| id.to_string())
        .collect()
}

fn assert_self_first(hits: &[Hit], doc: &ImageDoc, k: usize) {
    assert_eq!(hits.len(), k, "{hits:?}");
    assert_eq!(hits[0].id, doc.id, "{hits:?}");
    assert_eq!(hits[0].label, doc.label);
    assert_eq!(hits[0].path, doc.path);
    assert!((hits[0].score - 1.0).abs() < 1e-5, "{hits:?}");
    assert!(hits[0].distance() < 1e-2, "{hits:?}");
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "{hits:?}"
    );
    assert!(
        hits.iter().all(|h| h.score > 0.0 && h.score <= 1.0 + 1e-6),
        "{hits:?}"
    );
    let unique: HashSet<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(unique.len(), hits.len(), "duplicate hits: {hits:?}");
}

#[tokio::test]
async fn ensure_index_creates_once_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(config(tmp.path()));
    let s = IndexSpec {
        dims: 12,
        hnsw_m: Some(24),
        hnsw_ef_construction: Some(64),
        ..IndexSpec::for_dims(12)
    };
    assert_eq!(
        store.ensure_index(&s).await.unwrap(),
        EnsureOutcome::Created
    );
    assert_eq!(
        store.ensure_index(&s).await.unwrap(),
        EnsureOutcome::AlreadyExists
    );
    // Other HNSW parameters only tune recall: still compatible.
    assert_eq!(
        store.ensure_index(&spec(12)).await.unwrap(),
        EnsureOutcome::AlreadyExists
    );
    assert_eq!(store.index_dims().await.unwrap(), 12);
    assert_eq!(store.count().await.unwrap(), 0);
    assert!(tmp.path().join(DB_FILE).is_file());
    let abs = std::fs::canonicalize(tmp.path()).unwrap();
    assert_eq!(
        store.describe(),
        format!("local store {}, index imgvec", abs.display())
    );
    drop(store);

    // Durable: a new process (here, a new store) sees the same index.
    let store = open(config(tmp.path()));
    assert_eq!(store.index_dims().await.unwrap(), 12);
    assert_eq!(
        store.ensure_index(&s).await.unwrap(),
        EnsureOutcome::AlreadyExists
    );
}

#[tokio::test]
async fn incompatible_dims_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    contract::incompatible_dims_are_named(&open(config(tmp.path())), "imgvec").await;
}

#[tokio::test]
async fn upsert_count_and_again_is_already_present() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(config(tmp.path()));
    store.ensure_index(&spec(8)).await.unwrap();
    let mut rng = Rng(1);
    let batch = docs(&mut rng, 30, 8, &["cat", "dog"], "a");

    let first = store.upsert(&batch, false).await.unwrap();
    assert_eq!(sorted(first.indexed.clone()), sorted(ids(&batch)));
    assert!(
        first.already_present.is_empty() && first.failed.is_empty(),
        "{first:?}"
    );
    store.refresh().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 30);

    // The same ids with another label: nothing is overwritten.
    let relabeled: Vec<ImageDoc> = batch
        .iter()
        .map(|d| ImageDoc {
            label: "lion".into(),
            ..d.clone()
        })
        .collect();
    let again = store.upsert(&relabeled, false).await.unwrap();
    assert_eq!(
        again,
        UpsertReport {
            indexed: vec![],
            already_present: ids(&batch),
            failed: vec![],
        }
    );
    store.refresh().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 30);
    let hits = store.knn(&query(&batch[1].vector, 1, None)).await.unwrap();
    assert_eq!(hits[0].id, batch[1].id);
    assert_eq!(hits[0].label, "dog", "{hits:?}");
    let lions = store
        .knn(&query(&batch[1].vector, 5, Some("lion")))
        .await
        .unwrap();
    assert!(lions.is_empty(), "{lions:?}");

    // A duplicate inside one call is created once, like `_bulk` create.
    let mut rng = Rng(11);
    let one = docs(&mut rng, 1, 8, &["cat"], "dup");
    let twice = vec![one[0].clone(), one[0].clone()];
    let report = store.upsert(&twice, false).await.unwrap();
    assert_eq!(report.indexed, ids(&one));
    assert_eq!(report.already_present, ids(&one));
    assert_eq!(store.count().await.unwrap(), 31);
}

#[tokio::test]
async fn overwrite_replaces_documents() {
    let tmp = tempfile::tempdir().unwrap();
    // Through the HNSW graph, so replaced vectors must be replaced there too.
    let store = open(hnsw_config(tmp.path()));
    store.ensure_index(&spec(8)).await.unwrap();
    let mut rng = Rng(2);
    let batch = docs(&mut rng, 10, 8, &["cat"], "b");
    upsert_all(&store, &batch).await;

    let mut rng = Rng(22);
    let replaced: Vec<ImageDoc> = batch
        .iter()
        .map(|d| ImageDoc {
            label: "lion".into(),
            vector: rng.unit_vector(8),
            ..d.clone()
        })
        .collect();
    let report = store.upsert(&replaced, true).await.unwrap();
    assert_eq!(sorted(report.indexed), sorted(ids(&batch)));
    assert!(report.already_present.is_empty() && report.failed.is_empty());
    store.refresh().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 10);
    let hits = store
        .knn(&query(&replaced[0].vector, 10, Some("lion")))
        .await
        .unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.label == "lion"), "{hits:?}");
    assert_self_first(&hits, &replaced[0], 10);
    let cats = store
        .knn(&query(&batch[0].vector, 10, Some("cat")))
        .await
        .unwrap();
    assert!(cats.is_empty(), "{cats:?}");
    drop(store);

    // The replaced vectors are what a reopened store (its cache file) searches too.
    let store = open(hnsw_config(tmp.path()));
    let hits = store
        .knn(&query(&replaced[3].vector, 3, None))
        .await
        .unwrap();
    assert_eq!(hits[0].id, replaced[3].id);
    assert_eq!(hits[0].label, "lion");
    assert!((hits[0].score - 1.0).abs() < 1e-5, "{hits:?}");
    assert_eq!(store.ann_stats().loaded_from_file, 1);
    assert_eq!(store.ann_stats().rebuilt, 0);
}

#[tokio::test]
async fn existing_ids_over_several_batches() {
    let tmp = tempfile::tempdir().unwrap();
    contract::existing_ids_over_several_batches(&open(config(tmp.path()))).await;
}

#[tokio::test]
async fn knn_finds_a_stored_vector_first() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(5);
    let batch = docs(&mut rng, 60, 16, &["cat", "dog", "fox"], "e");
    {
        let store = open(config(tmp.path()));
        store.ensure_index(&spec(16)).await.unwrap();
        upsert_all(&store, &batch).await;
        // Exact scan (a small store).
        for d in batch.iter().step_by(7) {
            let hits = store.knn(&query(&d.vector, 5, None)).await.unwrap();
            assert_self_first(&hits, d, 5);
            assert_eq!(
                hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
                exact_ids(&batch, &d.vector, 5, None)
            );
        }
    }
    // Through the HNSW graph.
    let store = open(hnsw_config(tmp.path()));
    for d in batch.iter().step_by(7) {
        let hits = store.knn(&query(&d.vector, 5, None)).await.unwrap();
        assert_self_first(&hits, d, 5);
        // The score is l2_norm's 1 / (1 + d²) of the exact distance.
        let second = batch.iter().find(|x| x.id == hits[1].id).unwrap();
        let d2: f32 = second
            .vector
            .iter()
            .zip(&d.vector)
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        assert!((hits[1].score - 1.0 / (1.0 + d2)).abs() < 1e-5, "{hits:?}");
    }
    // More than there are: all of them.
    let all = store
        .knn(&query(&batch[0].vector, 100, None))
        .await
        .unwrap();
    assert_eq!(all.len(), 60);
    assert!(store
        .knn(&query(&batch[0].vector, 0, None))
        .await
        .unwrap()
        .is_empty());
    // A query of the wrong size is refused, not answered.
    match store.knn(&query(&[1.0; 8], 3, None)).await {
        Err(StoreError::DimsMismatch {
            index_dims: 16,
            model_dims: 8,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn label_filter_only_returns_that_label() {
    for exact_scan_rows in [0, 100_000] {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(tmp.path());
        cfg.exact_scan_rows = exact_scan_rows;
        let store = open(cfg);
        store.ensure_index(&spec(16)).await.unwrap();
        let mut rng = Rng(6);
        let batch = docs(&mut rng, 40, 16, &["cat", "dog"], "f");
        upsert_all(&store, &batch).await;

        let dog = batch.iter().find(|d| d.label == "dog").unwrap();
        let hits = store
            .knn(&query(&dog.vector, 10, Some("cat")))
            .await
            .unwrap();
        assert_eq!(hits.len(), 10, "{hits:?}");
        assert!(hits.iter().all(|h| h.label == "cat"), "{hits:?}");
        assert!(hits.iter().all(|h| h.id != dog.id));
        assert_eq!(
            hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
            exact_ids(&batch, &dog.vector, 10, Some("cat"))
        );
        let none = store
            .knn(&query(&dog.vector, 10, Some("zebra")))
            .await
            .unwrap();
        assert!(none.is_empty(), "{none:?}");
    }
}

#[tokio::test]
async fn a_rare_label_still_gets_k_hits_by_graph_walk_and_by_code_scans() {
    // (scan rows, 2-bit bytes): the filtered graph walk; the scan of the label's int8 codes; of
    // its 2-bit codes (the default for a label of more than twice the candidates they give, so
    // here they give 10).
    let max = usize::MAX;
    for (scan_rows, code2_bytes) in [(0, 0), (max, 0), (max, max)] {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = hnsw_config(tmp.path());
        cfg.filtered_scan_rows = scan_rows;
        cfg.filtered_code2_bytes = code2_bytes;
        cfg.filtered_code2_candidates = 10;
        let recall = rare_label_recall(open(cfg)).await;
        assert!(
            recall >= 0.9,
            "filtered recall@10 {recall} ({scan_rows}, {code2_bytes})"
        );
    }
}

/// recall@10 of 20 queries filtered to a label of 40 documents in 2,000.
async fn rare_label_recall(store: LocalStore) -> f64 {
    store.ensure_index(&spec(24)).await.unwrap();
    let mut rng = Rng(12);
    // 1 document in 50 is a "rare" one: 40 of 2,000.
    let mut labels = vec!["common"; 49];
    labels.push("rare");
    let batch = docs(&mut rng, 2_000, 24, &labels, "r");
    for chunk in batch.chunks(500) {
        store.upsert(chunk, false).await.unwrap();
    }
    store.refresh().await.unwrap();
    let mut recall_sum = 0.0;
    let queries = 20;
    for _ in 0..queries {
        let q = rng.unit_vector(24);
        let hits = store
            .knn(&KnnQuery {
                vector: q.clone(),
                k: 10,
                num_candidates: 20,
                label: Some("rare".into()),
            })
            .await
            .unwrap();
        assert_eq!(hits.len(), 10, "{hits:?}");
        assert!(hits.iter().all(|h| h.label == "rare"), "{hits:?}");
        let truth: HashSet<String> = exact_ids(&batch, &q, 10, Some("rare"))
            .into_iter()
            .collect();
        recall_sum += hits.iter().filter(|h| truth.contains(&h.id)).count() as f64 / 10.0;
    }
    recall_sum / queries as f64
}

/// recall@10 of searches for 30 of the documents' own vectors.
async fn recall_of_own_vectors(store: &LocalStore, all: &[ImageDoc]) -> f64 {
    let mut sum = 0.0;
    for d in all.iter().step_by(all.len() / 30) {
        let hits = store.knn(&query(&d.vector, 10, None)).await.unwrap();
        let truth: HashSet<String> = exact_ids(all, &d.vector, 10, None).into_iter().collect();
        sum += hits.iter().filter(|h| truth.contains(&h.id)).count() as f64 / 10.0;
    }
    sum / all.len().div_ceil(all.len() / 30) as f64
}

#[tokio::test]
async fn a_graph_started_empty_is_calibrated_once_it_has_rows_and_keeps_that_on_reopen() {
    // Vectors sharing a large common component, as CLIP embeddings do: codes calibrated on the
    // guess for unit vectors would spend their range on it.
    let dims = 32;
    let mut rng = Rng(21);
    let mut batch = docs(&mut rng, 1_500, dims, &["a"], "cal");
    for d in &mut batch {
        d.vector[0] += 3.0;
        let norm = d.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        d.vector.iter_mut().for_each(|x| *x /= norm);
    }
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = open(hnsw_config(tmp.path()));
        store.ensure_index(&spec(dims)).await.unwrap();
        for chunk in batch.chunks(100) {
            store.upsert(chunk, false).await.unwrap();
        }
        store.refresh().await.unwrap();
        // Built empty when the index was made, rebuilt (calibrated) once past 1,024 rows.
        assert_eq!(store.ann_stats().rebuilt, 2, "{:?}", store.ann_stats());
        let r = recall_of_own_vectors(&store, &batch).await;
        assert!(r >= 0.95, "recall@10 {r}");
    }
    let store = open(hnsw_config(tmp.path()));
    let r = recall_of_own_vectors(&store, &batch).await;
    let stats = store.ann_stats();
    assert_eq!((stats.loaded_from_file, stats.rebuilt), (1, 0), "{stats:?}");
    assert!(r >= 0.95, "recall@10 after reopening {r}");
}

#[tokio::test]
async fn graph_search_recall_is_high() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(hnsw_config(tmp.path()));
    store.ensure_index(&spec(32)).await.unwrap();
    let mut rng = Rng(13);
    let batch = docs(&mut rng, 3_000, 32, &["a", "b", "c"], "g");
    for chunk in batch.chunks(300) {
        store.upsert(chunk, false).await.unwrap();
    }
    store.refresh().await.unwrap();
    let mut recall_sum = 0.0;
    let queries = 50;
    for _ in 0..queries {
        let q = rng.unit_vector(32);
        let hits = store.knn(&query(&q, 10, None)).await.unwrap();
        assert_eq!(hits.len(), 10);
        let truth: HashSet<String> = exact_ids(&batch, &q, 10, None).into_iter().collect();
        recall_sum += hits.iter().filter(|h| truth.contains(&h.id)).count() as f64 / 10.0;
    }
    let recall = recall_sum / queries as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
}

#[tokio::test]
async fn bad_documents_are_reported_per_item() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(config(tmp.path()));
    store.ensure_index(&spec(8)).await.unwrap();
    let mut rng = Rng(7);
    let mut batch = docs(&mut rng, 5, 8, &["cat"], "h");
    batch[2].vector = rng.unit_vector(7);
    batch[4].vector[0] = f32::NAN;
    let report = store.upsert(&batch, false).await.unwrap();
    assert_eq!(report.failed.len(), 2, "{report:?}");
    assert_eq!(report.failed[0].0, batch[2].id);
    assert!(report.failed[0].1.contains("7 dimensions"), "{report:?}");
    assert_eq!(report.failed[1].0, batch[4].id);
    assert_eq!(report.indexed.len(), 3);
    assert_eq!(store.count().await.unwrap(), 3);
}

#[tokio::test]
async fn missing_index_is_reported_as_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(config(tmp.path()));
    let missing = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::IndexMissing { index }) => assert_eq!(index, "imgvec"),
        other => panic!("{what}: expected IndexMissing, got {other:?}"),
    };
    missing(store.index_dims().await.map(drop), "index_dims");
    missing(store.count().await.map(drop), "count");
    missing(store.refresh().await, "refresh");
    missing(store.knn(&query(&[1.0; 8], 3, None)).await.map(drop), "knn");
    missing(
        store.existing_ids(&["x".to_string()]).await.map(drop),
        "existing_ids",
    );
    let mut rng = Rng(8);
    missing(
        store
            .upsert(&docs(&mut rng, 1, 8, &["cat"], "h"), false)
            .await
            .map(drop),
        "upsert",
    );
    // upsert did not create the index.
    missing(store.count().await.map(drop), "count after upsert");
    assert!(!store.delete_index().await.unwrap());
}

#[tokio::test]
async fn recreate_index_starts_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(hnsw_config(tmp.path()));
    store.ensure_index(&spec(8)).await.unwrap();
    let mut rng = Rng(9);
    upsert_all(&store, &docs(&mut rng, 5, 8, &["cat"], "i")).await;
    let old_file = store.ann_path().unwrap().unwrap();
    assert!(old_file.is_file());
    store.recreate_index(&spec(24)).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 0);
    assert_eq!(store.index_dims().await.unwrap(), 24);
    assert!(!old_file.exists(), "the old index's HNSW file is removed");
    assert!(store
        .knn(&query(&[0.2; 24], 3, None))
        .await
        .unwrap()
        .is_empty());
    let batch = docs(&mut rng, 5, 24, &["cat"], "j");
    upsert_all(&store, &batch).await;
    let hits = store.knn(&query(&batch[2].vector, 3, None)).await.unwrap();
    assert_eq!(hits[0].id, batch[2].id);
}

#[tokio::test]
async fn several_indexes_share_one_store_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(14);
    let cats = docs(&mut rng, 7, 8, &["cat"], "k");
    {
        let store = open(config(tmp.path()));
        store.ensure_index(&spec(8)).await.unwrap();
        upsert_all(&store, &cats).await;
    }
    let mut cfg = config(tmp.path());
    cfg.index = "other".into();
    let other = open(cfg);
    assert!(matches!(
        other.count().await,
        Err(StoreError::IndexMissing { .. })
    ));
    other.ensure_index(&spec(16)).await.unwrap();
    // The same ids in another index are new there.
    let dogs: Vec<ImageDoc> = docs(&mut rng, 7, 16, &["dog"], "k");
    upsert_all(&other, &dogs).await;
    assert_eq!(other.count().await.unwrap(), 7);
    assert_eq!(other.index_dims().await.unwrap(), 16);
    assert_eq!(
        other.index_names().unwrap(),
        vec!["imgvec".to_string(), "other".to_string()]
    );
    other.delete_index().await.unwrap();
    drop(other);
    let store = open(config(tmp.path()));
    assert_eq!(store.count().await.unwrap(), 7);
    assert_eq!(store.index_dims().await.unwrap(), 8);
    assert_eq!(store.index_names().unwrap(), vec!["imgvec".to_string()]);
}

/// Stores 300 documents through the graph and returns them; the cache file is written.
async fn stored_through_graph(dir: &Path) -> Vec<ImageDoc> {
    let store = open(hnsw_config(dir));
    store.ensure_index(&spec(16)).await.unwrap();
    let mut rng = Rng(10);
    let batch = docs(&mut rng, 300, 16, &["cat", "dog", "fox"], "l");
    for chunk in batch.chunks(64) {
        store.upsert(chunk, false).await.unwrap();
    }
    store.refresh().await.unwrap();
    assert!(store.ann_path().unwrap().unwrap().is_file());
    batch
}

async fn searches_right(store: &LocalStore, batch: &[ImageDoc]) {
    assert_eq!(store.count().await.unwrap(), batch.len() as u64);
    for d in batch.iter().step_by(29) {
        let hits = store.knn(&query(&d.vector, 5, None)).await.unwrap();
        assert_self_first(&hits, d, 5);
        let hits = store
            .knn(&query(&d.vector, 5, Some(&d.label)))
            .await
            .unwrap();
        assert_self_first(&hits, d, 5);
        assert!(hits.iter().all(|h| h.label == d.label));
    }
}

#[tokio::test]
async fn the_hnsw_file_is_loaded_and_rebuilt_when_missing_or_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let batch = stored_through_graph(tmp.path()).await;

    // Intact: loaded, not rebuilt.
    let store = open(hnsw_config(tmp.path()));
    searches_right(&store, &batch).await;
    let stats = store.ann_stats();
    assert_eq!((stats.loaded_from_file, stats.rebuilt), (1, 0), "{stats:?}");
    let file = store.ann_path().unwrap().unwrap();
    drop(store);
    let good = std::fs::read(&file).unwrap();

    type Damage<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let damages: Vec<Damage> = vec![
        ("deleted", Box::new(|| std::fs::remove_file(&file).unwrap())),
        (
            "garbage",
            Box::new(|| std::fs::write(&file, b"this is not an HNSW index").unwrap()),
        ),
        (
            "same length, bytes flipped",
            Box::new(|| {
                let mut bad = good.clone();
                let mid = bad.len() / 2;
                for b in &mut bad[mid..mid + 64] {
                    *b ^= 0x5a;
                }
                std::fs::write(&file, bad).unwrap()
            }),
        ),
        (
            "truncated",
            Box::new(|| std::fs::write(&file, &good[..good.len() / 3]).unwrap()),
        ),
        (
            "a directory",
            Box::new(|| {
                std::fs::remove_file(&file).unwrap();
                std::fs::create_dir(&file).unwrap();
            }),
        ),
    ];
    for (what, damage) in damages {
        damage();
        let store = open(hnsw_config(tmp.path()));
        searches_right(&store, &batch).await;
        let stats = store.ann_stats();
        assert_eq!(
            (stats.loaded_from_file, stats.rebuilt),
            (0, 1),
            "{what}: {stats:?}"
        );
        if file.is_dir() {
            // A directory in the way: searching still works from the rebuilt graph; the cache
            // cannot be written, which is no error of refresh but is told, naming the file.
            store.refresh().await.unwrap();
            assert_eq!(store.ann_stats().save_failures, 1);
            let err = store.ann_save_error().unwrap();
            assert!(err.contains(&file.display().to_string()), "{err}");
            drop(store);
            std::fs::remove_dir(&file).unwrap();
        } else {
            store.refresh().await.unwrap();
            drop(store);
            // Rewritten: the next open loads it again.
            let store = open(hnsw_config(tmp.path()));
            searches_right(&store, &batch).await;
            assert_eq!(store.ann_stats().loaded_from_file, 1, "{what}");
        }
    }

    // Stale: an older, intact file put back in place of the newer one.
    let store = open(hnsw_config(tmp.path()));
    store.refresh().await.unwrap();
    let old = std::fs::read(&file).unwrap();
    let mut rng = Rng(15);
    let more = docs(&mut rng, 50, 16, &["owl"], "m");
    upsert_all(&store, &more).await;
    drop(store);
    std::fs::write(&file, old).unwrap();
    let store = open(hnsw_config(tmp.path()));
    let all: Vec<ImageDoc> = batch.iter().chain(&more).cloned().collect();
    searches_right(&store, &all).await;
    // Its header says which generation it holds: loaded, and the rows written since added.
    let stats = store.ann_stats();
    assert_eq!(
        (stats.loaded_from_file, stats.rebuilt, stats.caught_up_rows),
        (1, 0, 50),
        "{stats:?}"
    );
}

#[tokio::test]
async fn without_its_graph_file_a_large_store_answers_at_once_and_builds_the_graph_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(41);
    let all = docs(&mut rng, 3_000, 16, &["cat", "dog", "owl"], "g");
    let file = {
        let store = open(hnsw_config(tmp.path()));
        store.ensure_index(&spec(16)).await.unwrap();
        upsert_all(&store, &all).await;
        store.ann_path().unwrap().unwrap()
    };
    // A crash tore the graph file.
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let mut cfg = hnsw_config(tmp.path());
    cfg.background_build_rows = 1_000;
    let store = open(cfg);
    // The first searches are exact scans: right, and without waiting for the build.
    let d = &all[7];
    let hits = store.knn(&query(&d.vector, 5, None)).await.unwrap();
    assert_eq!(
        hits,
        store.exact_knn(&query(&d.vector, 5, None)).await.unwrap()
    );
    let hits = store
        .knn(&query(&d.vector, 5, Some(&d.label)))
        .await
        .unwrap();
    assert!(hits.iter().all(|h| h.label == d.label) && hits[0].id == d.id);
    let stats = store.ann_stats();
    assert!(stats.exact_while_building >= 2, "{stats:?}");
    assert_eq!(stats.rebuilt, 0, "{stats:?}");
    // Written meanwhile: caught up once the graph is in.
    let more = docs(&mut rng, 20, 16, &["fox"], "m");
    let writer = open(hnsw_config(tmp.path()));
    upsert_all(&writer, &more).await;
    // The graph comes from the build aside, or from the file the writer saved meanwhile (it
    // rebuilt the graph before its write, as writes do), whichever is first.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let had_graph =
        |s: imgvec::store::local::AnnStats| s.built_in_background + s.loaded_from_file > 0;
    while !had_graph(store.ann_stats()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the graph was never built"
        );
        store.knn(&query(&d.vector, 5, None)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let scans = store.ann_stats().exact_while_building;
    let all: Vec<ImageDoc> = all.iter().chain(&more).cloned().collect();
    searches_right(&store, &all).await;
    let stats = store.ann_stats();
    assert_eq!(stats.exact_while_building, scans, "{stats:?}");
    assert_eq!(stats.rebuilt, 0, "{stats:?}");
}

#[tokio::test]
async fn a_reader_far_behind_loads_the_writers_newer_graph_file_instead_of_adding_every_row() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(43);
    let first = docs(&mut rng, 300, 16, &["cat", "dog"], "a");
    let writer = open(hnsw_config(tmp.path()));
    writer.ensure_index(&spec(16)).await.unwrap();
    upsert_all(&writer, &first).await;
    let mut cfg = hnsw_config(tmp.path());
    cfg.catch_up_rows = 100;
    let reader = open(cfg);
    searches_right(&reader, &first).await;
    assert_eq!(reader.ann_stats().loaded_from_file, 1);
    // Few rows behind: caught up.
    let few = docs(&mut rng, 50, 16, &["owl"], "b");
    for batch in few.chunks(10) {
        writer.upsert(batch, false).await.unwrap();
    }
    let mut all: Vec<ImageDoc> = first.iter().chain(&few).cloned().collect();
    searches_right(&reader, &all).await;
    let stats = reader.ann_stats();
    assert_eq!(
        (stats.loaded_from_file, stats.caught_up_rows),
        (1, 50),
        "{stats:?}"
    );
    // Many rows behind, and the writer saved its graph: the file is loaded, the rows not added.
    let many = docs(&mut rng, 400, 16, &["fox"], "c");
    for batch in many.chunks(50) {
        writer.upsert(batch, false).await.unwrap();
    }
    writer.refresh().await.unwrap();
    all.extend(many);
    searches_right(&reader, &all).await;
    let stats = reader.ann_stats();
    assert_eq!(
        (stats.loaded_from_file, stats.caught_up_rows),
        (2, 50),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_store_of_schema_1_is_upgraded_in_place() {
    // (Schema 2 → 3 adds `doc_paths` alone: the same path, tested with the paths below.)
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(31);
    let batch = docs(&mut rng, 60, 8, &["cat", "dog"], "v");
    {
        let store = open(hnsw_config(tmp.path()));
        store.ensure_index(&spec(8)).await.unwrap();
        upsert_all(&store, &batch).await;
    }
    // Back to what imgvec wrote before tombstones existed.
    let conn = rusqlite::Connection::open(tmp.path().join(DB_FILE)).unwrap();
    conn.execute_batch(
        "DROP TABLE tombstones; DROP TABLE doc_paths;
         ALTER TABLE indexes DROP COLUMN tombstones_after; PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let store = open(hnsw_config(tmp.path()));
    searches_right(&store, &batch).await;
    let gone = vec![batch[0].id.clone()];
    assert_eq!(store.delete(&gone).await.unwrap(), 1);
    searches_right(&store, &batch[1..]).await;
    let conn = rusqlite::Connection::open(tmp.path().join(DB_FILE)).unwrap();
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);
    let tombstones: i64 = conn
        .query_row("SELECT count(*) FROM tombstones", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tombstones, 1);
}

#[tokio::test]
async fn foreign_or_damaged_files_are_clear_errors() {
    // A text file where the database should be.
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join(DB_FILE);
    std::fs::write(&db, "hello, I am not a database\n".repeat(100)).unwrap();
    let err = open_err(config(tmp.path()));
    assert!(err.contains(DB_FILE), "{err}");
    assert!(err.contains("not an SQLite database"), "{err}");

    // A directory where the database should be.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join(DB_FILE)).unwrap();
    let err = open_err(config(tmp.path()));
    assert!(err.contains(DB_FILE) && err.contains("not a file"), "{err}");

    // Another program's SQLite database.
    let tmp = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(tmp.path().join(DB_FILE)).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let err = open_err(config(tmp.path()));
    assert!(
        err.contains(DB_FILE) && err.contains("another program"),
        "{err}"
    );

    // A file where the store directory should be.
    let tmp = tempfile::tempdir().unwrap();
    let not_dir = tmp.path().join("imgvec-data");
    std::fs::write(&not_dir, "x").unwrap();
    let err = open_err(config(&not_dir));
    assert!(
        err.contains(&not_dir.display().to_string()) && err.contains("not a directory"),
        "{err}"
    );
    // ... or in its path.
    let err = open_err(config(&not_dir.join("sub")));
    assert!(err.contains("imgvec-data"), "{err}");

    // A database damaged inside: an error naming it (now or at the first query), never a panic.
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = open(config(tmp.path()));
        store.ensure_index(&spec(8)).await.unwrap();
        let mut rng = Rng(16);
        upsert_all(&store, &docs(&mut rng, 200, 8, &["cat"], "n")).await;
    }
    let db = tmp.path().join(DB_FILE);
    let mut bytes = std::fs::read(&db).unwrap();
    let len = bytes.len();
    for b in &mut bytes[4096..len.min(4096 * 4)] {
        *b = 0xee;
    }
    std::fs::write(&db, bytes).unwrap();
    match LocalStore::open_with(config(tmp.path())) {
        Err(e) => {
            eprintln!("damaged database, at open: {e}");
            assert!(e.to_string().contains(DB_FILE), "{e}")
        }
        Ok(store) => {
            let results = [
                store.count().await.map(drop),
                store.knn(&query(&[0.5; 8], 3, None)).await.map(drop),
                store.refresh().await,
            ];
            assert!(
                results.iter().any(|r| r.is_err()),
                "a damaged database went unnoticed"
            );
            for r in results {
                if let Err(e) = r {
                    eprintln!("damaged database, at a query: {e}");
                    assert!(e.to_string().contains(DB_FILE), "{e}");
                }
            }
        }
    }
}

#[tokio::test]
async fn two_stores_on_one_directory_read_and_write_alongside() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(hnsw_config(tmp.path()));
    let b = open(hnsw_config(tmp.path()));
    a.ensure_index(&spec(16)).await.unwrap();
    let mut rng = Rng(17);
    let first = docs(&mut rng, 300, 16, &["cat", "dog"], "a");
    upsert_all(&a, &first).await;
    // A's graph holds all its 300 rows before B writes (`refresh` waits for its following
    // thread), so that what A catches up below is B's 40 alone: under load the thread had not
    // always taken in A's own last rows by then, and they were counted too.
    searches_right(&a, &first).await;
    a.refresh().await.unwrap();
    let before = a.ann_stats();
    // B opened before A wrote: it sees all of it at once, through its own graph.
    assert_eq!(b.count().await.unwrap(), 300);
    searches_right(&b, &first).await;
    // B writes; A sees that at its next search, caught up, not rebuilt.
    let second = docs(&mut rng, 40, 16, &["owl"], "b");
    upsert_all(&b, &second).await;
    let all: Vec<ImageDoc> = first.iter().chain(&second).cloned().collect();
    assert_eq!(a.count().await.unwrap(), 340);
    searches_right(&a, &all).await;
    let stats = a.ann_stats();
    assert_eq!(
        stats.caught_up_rows - before.caught_up_rows,
        40,
        "{before:?} {stats:?}"
    );
    assert_eq!(stats.rebuilt, 1, "{stats:?}");
    // A deletes some of B's; B no longer finds them (their keys leave its graph).
    let gone: Vec<String> = second[..10].iter().map(|d| d.id.clone()).collect();
    assert_eq!(a.delete(&gone).await.unwrap(), 10);
    assert_eq!(b.count().await.unwrap(), 330);
    for d in &second[..10] {
        let hits = b.knn(&query(&d.vector, 5, None)).await.unwrap();
        assert!(hits.iter().all(|h| h.id != d.id), "{} still found", d.id);
        let hits = b.knn(&query(&d.vector, 5, Some("owl"))).await.unwrap();
        assert!(hits.iter().all(|h| h.id != d.id), "{} still found", d.id);
        assert_eq!(hits.len(), 5);
    }
    let left: Vec<ImageDoc> = first.iter().chain(&second[10..]).cloned().collect();
    searches_right(&b, &left).await;
    assert!(
        b.ann_stats().caught_up_deletions >= 10,
        "{:?}",
        b.ann_stats()
    );
    // Both write the same documents at once: each written once, no error.
    let third = docs(&mut rng, 200, 16, &["fox"], "c");
    let (ra, rb) = tokio::join!(a.upsert(&third, false), b.upsert(&third, false));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.indexed.len() + rb.indexed.len(), 200);
    assert_eq!(ra.already_present.len() + rb.already_present.len(), 200);
    assert_eq!(a.count().await.unwrap(), 530);
    assert_eq!(b.count().await.unwrap(), 530);
}

#[tokio::test]
async fn a_writer_waits_for_another_process_and_names_it_while_readers_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap().to_string();
    let store = open(hnsw_config(tmp.path()));
    store.ensure_index(&spec(8)).await.unwrap();
    let mut rng = Rng(23);
    let before = docs(&mut rng, 20, 8, &["cat"], "o");
    upsert_all(&store, &before).await;

    let mut holder = child(&format!("hold:{dir}"));
    let mut out = BufReader::new(holder.stdout.take().unwrap());
    let locked = read_until(&mut out, "locked ", |_| true);
    assert_eq!(locked.len(), 1, "the child did not take the write lock");

    // Readers never wait for the writer.
    let t = std::time::Instant::now();
    assert_eq!(store.count().await.unwrap(), 20);
    let hits = store.knn(&query(&before[3].vector, 3, None)).await.unwrap();
    assert_eq!(hits[0].id, before[3].id);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    // A write with a bounded wait gives up, naming the other process.
    let more = docs(&mut rng, 5, 8, &["cat"], "m");
    let err = store.upsert(&more, false).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "is being written by another imgvec process (pid {}, `test holder`)",
            holder.id()
        )),
        "{err}"
    );
    assert_eq!(store.count().await.unwrap(), 20);

    // Unbounded: it waits its turn, says so with the holder's pid, and writes once the holder is gone.
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&notices);
    let mut cfg = hnsw_config(tmp.path());
    cfg.lock_wait = None;
    cfg.on_wait = Some(imgvec::store::local::WaitHook(std::sync::Arc::new(
        move |n: &imgvec::store::local::WaitNotice| {
            seen.lock()
                .unwrap()
                .push((n.holder_pid, n.holder_command.clone()));
        },
    )));
    let waiting = open(cfg);
    let pid = holder.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2_600));
        holder.kill().unwrap();
        holder.wait().unwrap();
    });
    let report = waiting.upsert(&more, false).await.unwrap();
    killer.join().unwrap();
    assert_eq!(report.indexed.len(), 5);
    let notices = notices.lock().unwrap().clone();
    assert!(!notices.is_empty(), "the wait was not told");
    assert_eq!(notices[0], (Some(pid), "test holder".to_string()));
    assert_eq!(store.count().await.unwrap(), 25);
}

fn child(mode: &str) -> Child {
    let exe = std::env::current_exe().expect("test binary path");
    Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "child_process_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the test binary as a child")
}

/// Reads the child's stdout lines with `prefix` until `stop(lines so far)` says so.
fn read_until(
    reader: &mut impl BufRead,
    prefix: &str,
    mut stop: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return out,
            Ok(_) => {}
        }
        // The test harness may have printed "test child_process_helper ... " on the same line.
        if let Some(at) = line.find(prefix) {
            out.push(line[at + prefix.len()..].trim_end().to_string());
            if stop(&out) {
                return out;
            }
        }
    }
}

const CRASH_DOCS: usize = 4_000;
const CRASH_DIMS: usize = 16;

fn crash_docs(round: u64) -> Vec<ImageDoc> {
    let mut rng = Rng(1_000 + round);
    docs(
        &mut rng,
        CRASH_DOCS,
        CRASH_DIMS,
        &["cat", "dog", "fox", "owl"],
        &format!("crash{round}-"),
    )
}

#[test]
fn sigkill_never_loses_what_was_reported_indexed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut printed_all: Vec<String> = Vec::new();
    let mut by_id: HashMap<String, ImageDoc> = HashMap::new();
    // Round 1 saves the HNSW file after every batch, so kills also land in the middle of saves.
    for (round, kill_after, save_always) in [(0u64, 40usize, false), (1, 90, true), (2, 170, false)]
    {
        for d in crash_docs(round) {
            by_id.insert(d.id.clone(), d);
        }
        let mut writer = child(&format!("crash:{dir}:{round}:{save_always}"));
        // A reader in this process searches all along, and across the kill: it never waits, never
        // fails, and its count never goes back.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (stop, path, probe) = (
                std::sync::Arc::clone(&stop),
                tmp.path().to_path_buf(),
                crash_docs(round)[0].vector.clone(),
            );
            std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                let store = open(hnsw_config(&path));
                let (mut reads, mut last) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    rt.block_on(async {
                        match store.count().await {
                            Ok(n) => {
                                assert!(n >= last, "the count went back from {last} to {n}");
                                last = n;
                                store.knn(&query(&probe, 3, None)).await.unwrap();
                                reads += 1;
                            }
                            // Before the child's first write of a new store there is no index.
                            Err(StoreError::IndexMissing { .. }) => {}
                            Err(e) => panic!("reader: {e}"),
                        }
                    });
                    std::thread::sleep(Duration::from_millis(5));
                }
                reads
            })
        };
        let mut out = BufReader::new(writer.stdout.take().unwrap());
        let mut printed = read_until(&mut out, "indexed ", |seen| seen.len() >= kill_after);
        writer.kill().unwrap(); // SIGKILL
        writer.wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let reads = reader.join().expect("the reader failed");
        assert!(reads > 0, "round {round}: the reader never read");
        // Lines written before the kill are still in the pipe.
        printed.extend(read_until(&mut out, "indexed ", |_| false));
        assert!(
            printed.len() >= kill_after,
            "round {round}: {}",
            printed.len()
        );
        eprintln!(
            "round {round}: killed after {} ids reported indexed",
            printed.len()
        );
        printed_all.extend(printed);

        rt.block_on(async {
            let store = open(hnsw_config(tmp.path()));
            let found = store.existing_ids(&printed_all).await.unwrap();
            let missing: Vec<&String> = printed_all
                .iter()
                .filter(|id| !found.contains(*id))
                .collect();
            assert!(missing.is_empty(), "round {round}: lost {missing:?}");
            let count = store.count().await.unwrap();
            assert!(count >= printed_all.len() as u64, "round {round}: {count}");
            // Every stored document (printed or committed just before the kill) is searchable.
            for id in printed_all.iter().step_by(13) {
                let d = &by_id[id];
                let hits = store.knn(&query(&d.vector, 3, None)).await.unwrap();
                assert_self_first(&hits, d, 3);
                let hits = store
                    .knn(&query(&d.vector, 3, Some(&d.label)))
                    .await
                    .unwrap();
                assert_eq!(hits[0].id, d.id);
            }
            store.refresh().await.unwrap();
        });
    }
}

#[test]
fn a_graph_older_than_the_database_is_caught_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap().to_string();
    let mut writer = child(&format!("stale:{dir}"));
    let mut out = BufReader::new(writer.stdout.take().unwrap());
    let done = read_until(&mut out, "done", |_| true);
    assert_eq!(done.len(), 1, "the child did not finish its writes");
    writer.kill().unwrap(); // SIGKILL: no save on drop
    writer.wait().unwrap();
    let all = crash_docs(7);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = open(hnsw_config(tmp.path()));
        let stored = &all[..300];
        searches_right(&store, stored).await;
        let stats = store.ann_stats();
        assert_eq!(stats.loaded_from_file, 1, "{stats:?}");
        assert_eq!(stats.rebuilt, 0, "{stats:?}");
        assert_eq!(stats.caught_up_rows, 100, "{stats:?}");
    });
}

/// Not a test on its own: the child-process side of the crash and lock tests, which run it with
/// `--ignored --exact child_process_helper` and [`CHILD_ENV`] set. Run any other way it fails, so
/// that it is never reported as a passing test.
#[tokio::test]
#[ignore = "helper run as a child process by the crash and lock tests"]
async fn child_process_helper() {
    let mode = std::env::var(CHILD_ENV).unwrap_or_else(|_| {
        panic!("child_process_helper is not a test: the crash and lock tests run it with {CHILD_ENV} set")
    });
    let parts: Vec<&str> = mode.split(':').collect();
    let mut stdout = std::io::stdout();
    match parts.as_slice() {
        ["hold", dir] => {
            // Holds the write lock as an imgvec writer does: an OS lock on the file, which
            // records the pid and the command line.
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(Path::new(dir).join(LOCK_FILE))
                .unwrap();
            fs4::FileExt::lock(&file).unwrap();
            file.set_len(0).unwrap();
            writeln!(file, "{}\ntest holder", std::process::id()).unwrap();
            writeln!(stdout, "locked {}", std::process::id()).unwrap();
            stdout.flush().unwrap();
            // Until the parent kills us (bounded, should it not).
            std::thread::sleep(Duration::from_secs(60));
        }
        ["crash", dir, round, save_always] => {
            let round: u64 = round.parse().unwrap();
            let mut cfg = hnsw_config(Path::new(dir));
            cfg.lock_wait = Some(Duration::from_secs(10));
            if *save_always == "true" {
                cfg.ann_save_interval = Duration::ZERO;
            }
            let store = open(cfg);
            store.ensure_index(&spec(CRASH_DIMS)).await.unwrap();
            for batch in crash_docs(round).chunks(4) {
                let report = store.upsert(batch, false).await.unwrap();
                for id in report.indexed {
                    writeln!(stdout, "indexed {id}").unwrap();
                }
                stdout.flush().unwrap();
            }
            writeln!(stdout, "finished").unwrap();
        }
        ["stale", dir] => {
            let mut cfg = hnsw_config(Path::new(dir));
            cfg.ann_save_interval = Duration::from_secs(3_600);
            let store = open(cfg);
            store.ensure_index(&spec(CRASH_DIMS)).await.unwrap();
            let all = crash_docs(7);
            store.upsert(&all[..200], false).await.unwrap();
            store.refresh().await.unwrap();
            for batch in all[200..300].chunks(10) {
                store.upsert(batch, false).await.unwrap();
            }
            writeln!(stdout, "done").unwrap();
            stdout.flush().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown child mode {other:?}"),
    }
}

fn record(name: &str, fingerprint: &str) -> imgvec::store::ModelRecord {
    imgvec::store::ModelRecord {
        name: name.into(),
        family: "clip".into(),
        dims: 12,
        fingerprint: Some(fingerprint.into()),
        precisions: vec!["f32".into()],
    }
}

#[tokio::test]
async fn the_index_remembers_its_model() {
    let tmp = tempfile::tempdir().unwrap();
    let a = record("model-a", "aa");
    {
        let store = open(config(tmp.path()));
        assert!(matches!(
            store.index_model().await,
            Err(StoreError::IndexMissing { .. })
        ));
        store.ensure_index(&IndexSpec::for_model(&a)).await.unwrap();
        assert_eq!(store.index_model().await.unwrap(), Some(a.clone()));
        // Another model cannot take its place: the record in force is returned.
        assert_eq!(
            store.adopt_model(&record("model-b", "bb")).await.unwrap(),
            a
        );
    }
    // Kept in the database: another process sees it.
    let store = open(config(tmp.path()));
    assert_eq!(store.index_model().await.unwrap(), Some(a.clone()));
    // An index made without a record (as before imgvec kept one) adopts the first model offered.
    store.recreate_index(&spec(12)).await.unwrap();
    assert_eq!(store.index_model().await.unwrap(), None);
    let b = record("model-b", "bb");
    assert_eq!(store.adopt_model(&b).await.unwrap(), b);
    assert_eq!(store.index_model().await.unwrap(), Some(b.clone()));
    // The same model in another precision is added to the record (mixing is allowed), once.
    let b_int8 = imgvec::store::ModelRecord {
        precisions: vec!["int8".into()],
        ..b.clone()
    };
    let mixed = store.adopt_model(&b_int8).await.unwrap();
    assert_eq!(mixed.precisions, ["f32", "int8"]);
    assert_eq!(store.adopt_model(&b_int8).await.unwrap(), mixed);
    assert_eq!(store.adopt_model(&b).await.unwrap(), mixed);
    let store = open(config(tmp.path()));
    assert_eq!(store.index_model().await.unwrap(), Some(mixed));
    // Another model's precisions are not.
    let other = imgvec::store::ModelRecord {
        precisions: vec!["bf16".into()],
        ..a
    };
    assert_eq!(
        store.adopt_model(&other).await.unwrap().precisions,
        ["f32", "int8"]
    );
}

/// A store opened while another opener is creating it is never taken for another program's
/// database: the opener reads what the database holds in one snapshot, so it sees either no
/// schema (and creates it, or waits for the other) or all of it.
#[test]
fn a_store_being_created_is_opened_as_an_imgvec_store() {
    for _ in 0..500 {
        let tmp = tempfile::tempdir().unwrap();
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let dir = tmp.path().to_path_buf();
                std::thread::spawn(move || LocalStore::open_with(config(&dir)).map(drop))
            })
            .collect();
        for opener in openers {
            if let Err(e) = opener.join().expect("opener") {
                let e = e.to_string();
                assert!(!e.contains("another program"), "{e}");
            }
        }
    }
}
