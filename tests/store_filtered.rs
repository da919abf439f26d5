//! Label-filtered search of the embedded store through the scan of each label's int8 codes, read
//! from the graph by key (`src/store/local/labels.rs`, `codes.rs`): right after every kind of
//! write — documents added, their vectors replaced, their label changed, deleted — and after the
//! store is opened again with its graph file there, stale, or gone (as after a crash).
//!
//! Every check asks for each document's own vector within its label: it must come first (its code
//! is the query's), and the hits must agree with the exact search ([`VectorStore::exact_knn`]) for
//! nearly all of the top ten. Labels searched through their 2-bit codes (the default), and walked:
//! checked too.

#[path = "common/docs.rs"]
mod docs;

use std::path::Path;
use std::time::Duration;

use docs::{agreeing_with_exact, crash_with_stale_graph_file, docs, spec, write, Rng};
use imgvec::store::local::{LocalConfig, LocalStore};
use imgvec::store::{ImageDoc, KnnQuery, VectorStore};

const DIMS: usize = 128;

/// Searches through the graph's structures (no exact scan for small sets). The corpus's labels
/// have about 500 documents each: with the defaults, each is scanned through its 2-bit codes (made
/// on its first search, re-scored by its int8 codes read from the graph).
fn config(dir: &Path) -> LocalConfig {
    let mut cfg = LocalConfig::new(dir, "imgvec");
    cfg.lock_wait = Some(Duration::from_millis(200));
    cfg.exact_scan_rows = 0;
    // Few enough re-scored that labels of 500 take 2-bit codes (at most twice as many: none).
    cfg.filtered_code2_candidates = 100;
    cfg
}

fn open(dir: &Path) -> LocalStore {
    LocalStore::open_with(config(dir)).expect("open")
}

/// As [`config`], without 2-bit codes: each label is scanned through its int8 codes, read from
/// the graph by key.
fn open_int8_scan(dir: &Path) -> LocalStore {
    let mut cfg = config(dir);
    cfg.filtered_code2_bytes = 0;
    LocalStore::open_with(cfg).expect("open")
}

/// As [`config`], with the 2-bit scan's candidates going straight to the f32 re-rank.
fn open_few_candidates(dir: &Path) -> LocalStore {
    let mut cfg = config(dir);
    cfg.filtered_code2_candidates = 10;
    LocalStore::open_with(cfg).expect("open")
}

/// As [`config`], but without 2-bit codes and with no label scanned by its int8 codes: every
/// label is walked.
fn open_walk_only(dir: &Path) -> LocalStore {
    let mut cfg = config(dir);
    cfg.filtered_scan_rows = 0;
    cfg.filtered_code2_bytes = 0;
    LocalStore::open_with(cfg).expect("open")
}

fn query(doc: &ImageDoc, label: &str) -> KnnQuery {
    KnnQuery {
        vector: doc.vector.clone(),
        k: 10,
        num_candidates: 20,
        label: Some(label.to_string()),
    }
}

/// Each of `docs` (every 7th, to keep it short) is found first within its label, the hits all of
/// that label and, over them all, at least `percent`% of the exact top ten.
async fn check_found_at(store: &LocalStore, docs: &[ImageDoc], percent: usize) {
    let (mut agree, mut total) = (0, 0);
    for doc in docs.iter().step_by(7) {
        let q = query(doc, &doc.label);
        let hits = store.knn(&q).await.expect("knn");
        assert_eq!(hits.len(), 10, "{}: {hits:?}", doc.id);
        assert_eq!(hits[0].id, doc.id, "{hits:?}");
        assert!(hits.iter().all(|h| h.label == doc.label), "{hits:?}");
        agree += agreeing_with_exact(store, &q, &hits).await;
        total += 10;
    }
    assert!(
        agree * 100 >= total * percent,
        "{agree} of {total} exact hits"
    );
}

/// [`check_found_at`] 97%.
async fn check_found(store: &LocalStore, docs: &[ImageDoc]) {
    check_found_at(store, docs, 97).await;
}

/// `doc`'s vector within `label` does not find it.
async fn check_absent(store: &LocalStore, doc: &ImageDoc, label: &str) {
    let hits = store.knn(&query(doc, label)).await.expect("knn");
    assert_eq!(hits.len(), 10, "{hits:?}");
    assert!(
        hits.iter().all(|h| h.id != doc.id && h.label == label),
        "{hits:?}"
    );
}

fn corpus() -> Vec<ImageDoc> {
    docs(&mut Rng(35), 1_500, DIMS, &["cat", "dog", "owl"], "f")
}

#[tokio::test]
async fn filtered_search_follows_writes_replacements_relabels_and_deletes() {
    follows_every_write(open_int8_scan).await;
}

#[tokio::test]
async fn labels_searched_by_their_2bit_codes_follow_every_write_too() {
    follows_every_write(open).await;
}

#[tokio::test]
async fn labels_searched_by_their_2bit_codes_alone_follow_every_write_too() {
    // 2-bit codes alone rank coarsely (why their best 8,192 are re-scored by default): 85%.
    follows_every_write_at(open_few_candidates, 85).await;
}

#[tokio::test]
async fn labels_that_are_walked_follow_every_write_too() {
    follows_every_write(open_walk_only).await;
}

async fn follows_every_write(open: fn(&Path) -> LocalStore) {
    follows_every_write_at(open, 97).await;
}

async fn follows_every_write_at(open: fn(&Path) -> LocalStore, percent: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store.ensure_index(&spec(DIMS)).await.unwrap();
    let mut all = corpus();
    for chunk in all.chunks(300) {
        write(&store, chunk).await;
    }
    check_found_at(&store, &all, percent).await;

    // New vectors for some documents (same ids): found by the new one.
    let mut rng = Rng(7);
    for doc in all.iter_mut().step_by(11) {
        doc.vector = rng.unit_vector(DIMS);
    }
    let replaced: Vec<ImageDoc> = all.iter().step_by(11).cloned().collect();
    write(&store, &replaced).await;
    check_found_at(&store, &replaced, percent).await;

    // Relabelled: found in the new label, not in the old one.
    let mut moved = Vec::new();
    for doc in all.iter_mut().skip(3).step_by(13) {
        let old = doc.label.clone();
        doc.label = if old == "cat" { "dog" } else { "cat" }.to_string();
        moved.push((doc.clone(), old));
    }
    let docs_moved: Vec<ImageDoc> = moved.iter().map(|(d, _)| d.clone()).collect();
    write(&store, &docs_moved).await;
    check_found_at(&store, &docs_moved, percent).await;
    for (doc, old) in moved.iter().step_by(5) {
        check_absent(&store, doc, old).await;
    }

    // Deleted: no longer found in their label.
    let gone: Vec<ImageDoc> = all.iter().skip(5).step_by(17).cloned().collect();
    let ids: Vec<String> = gone.iter().map(|d| d.id.clone()).collect();
    assert_eq!(store.delete(&ids).await.unwrap(), ids.len() as u64);
    for doc in gone.iter().step_by(4) {
        check_absent(&store, doc, &doc.label).await;
    }
    let kept: Vec<ImageDoc> = all.into_iter().filter(|d| !ids.contains(&d.id)).collect();
    check_found_at(&store, &kept, percent).await;

    // The same from the graph file in a new process's view, and with the file gone.
    store.refresh().await.unwrap();
    drop(store);
    let again = open(tmp.path());
    check_found_at(&again, &kept, percent).await;
    assert_eq!(again.ann_stats().loaded_from_file, 1);
    let file = again.ann_path().unwrap().expect("a graph file");
    drop(again);
    std::fs::remove_file(&file).unwrap();
    let rebuilt = open(tmp.path());
    check_found_at(&rebuilt, &kept, percent).await;
    assert_eq!(rebuilt.ann_stats().rebuilt, 1);
}

#[tokio::test]
async fn a_graph_loaded_from_a_stale_file_catches_up_its_labels() {
    stale_file_caught_up(open_int8_scan).await;
}

#[tokio::test]
async fn a_graph_loaded_from_a_stale_file_catches_up_its_2bit_labels() {
    stale_file_caught_up(open).await;
}

async fn stale_file_caught_up(open: fn(&Path) -> LocalStore) {
    let tmp = tempfile::tempdir().unwrap();
    let (kept, relabelled) =
        crash_with_stale_graph_file(open(tmp.path()), corpus(), 1_200, (9, "owl"), (1, 19)).await;
    let reader = open(tmp.path());
    check_found(&reader, &kept).await;
    check_found(&reader, &relabelled).await;
    // The rows past the file are searched in the tail while the following thread takes them in;
    // `refresh` waits for it (under load it may not have started yet), so that the stats below
    // say what was done with the file, not how far the thread got.
    reader.refresh().await.unwrap();
    let stats = reader.ann_stats();
    assert_eq!((stats.loaded_from_file, stats.rebuilt), (1, 0), "{stats:?}");
    assert!(stats.caught_up_rows >= 300, "{stats:?}");
}
