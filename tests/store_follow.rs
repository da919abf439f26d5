//! The embedded store's graph following the rows (`src/store/local/tail.rs`, `follow.rs`): a write
//! is done once its rows are committed, a search finds them at once (scanned beside the graph
//! until the graph takes them in), and a graph file left far behind (as after a crash) is searched
//! with the rows after it at once, not after minutes of catching up.
//!
//! The background thread is turned off where a test must see the tail as it is
//! (`LocalConfig::follow_in_background`); with it on, the results must be the same.

#[path = "common/docs.rs"]
mod docs;

use std::path::Path;
use std::time::Duration;

use docs::{
    agreeing_with_exact, crash_with_stale_graph_file, docs, ids_every, relabel_every, spec,
    without, write, Rng,
};
use imgvec::store::local::{LocalConfig, LocalStore};
use imgvec::store::{ImageDoc, KnnQuery, VectorStore};

const DIMS: usize = 64;

fn config(dir: &Path, follow: bool) -> LocalConfig {
    let mut cfg = LocalConfig::new(dir, "imgvec");
    cfg.lock_wait = Some(Duration::from_millis(500));
    // Searches go through the graph and its tail, never an exact scan of a small index.
    cfg.exact_scan_rows = 0;
    cfg.follow_in_background = follow;
    cfg
}

fn open(dir: &Path, follow: bool) -> LocalStore {
    LocalStore::open_with(config(dir, follow)).expect("open")
}

fn query(doc: &ImageDoc, label: Option<&str>) -> KnnQuery {
    KnnQuery {
        vector: doc.vector.clone(),
        k: 10,
        num_candidates: 30,
        label: label.map(str::to_string),
    }
}

/// Each of `docs` (every 11th) is found first by its own vector, with and without its label, and
/// the top ten agree with the exact search for at least 95% of the hits.
async fn check_found(store: &LocalStore, docs: &[ImageDoc]) {
    let (mut agree, mut total) = (0, 0);
    for doc in docs.iter().step_by(11) {
        for label in [None, Some(doc.label.as_str())] {
            let q = query(doc, label);
            let hits = store.knn(&q).await.expect("knn");
            assert_eq!(hits.len(), 10, "{}: {hits:?}", doc.id);
            assert_eq!(hits[0].id, doc.id, "{label:?}: {hits:?}");
            if let Some(label) = label {
                assert!(hits.iter().all(|h| h.label == label), "{hits:?}");
            }
            agree += agreeing_with_exact(store, &q, &hits).await;
            total += 10;
        }
    }
    assert!(agree * 100 >= total * 95, "{agree} of {total} exact hits");
}

#[tokio::test]
async fn written_rows_are_found_at_once_before_the_graph_takes_them_in() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), false);
    store.ensure_index(&spec(DIMS)).await.unwrap();
    let mut all = docs(&mut Rng(5), 3_000, DIMS, &["cat", "dog", "owl"], "t");
    write(&store, &all[..1_500]).await;
    store.refresh().await.unwrap();
    let before = store.ann_stats();
    assert_eq!(before.tail_searches, 0, "{before:?}");
    // More than a search takes in itself: they wait in the tail (no thread here).
    write(&store, &all[1_500..]).await;
    // Some of the first rows relabelled and some deleted, after the graph had them.
    let relabelled = relabel_every(&mut all, 1_500, 13, "fox");
    write(&store, &relabelled).await;
    let gone = ids_every(&all, 2, 17);
    store.delete(&gone).await.unwrap();
    let kept = without(all, &gone);
    let relabelled = without(relabelled, &gone);
    check_found(&store, &kept).await;
    check_found(&store, &relabelled).await;
    let during = store.ann_stats();
    assert!(during.tail_searches > 0, "{during:?}");
    assert_eq!(during.caught_up_rows, before.caught_up_rows, "{during:?}");
    let gone_docs = docs(&mut Rng(5), 3_000, DIMS, &["cat", "dog", "owl"], "t")
        .into_iter()
        .filter(|d| gone.contains(&d.id));
    for doc in gone_docs.take(20) {
        let hits = store.knn(&query(&doc, None)).await.unwrap();
        assert!(hits.iter().all(|h| h.id != doc.id), "{hits:?}");
    }
    // Refreshing takes the tail in: searches find the same without it.
    store.refresh().await.unwrap();
    let after = store.ann_stats();
    assert!(
        after.caught_up_rows >= before.caught_up_rows + 1_500,
        "{after:?}"
    );
    assert!(after.caught_up_deletions > 0, "{after:?}");
    check_found(&store, &kept).await;
    assert_eq!(store.ann_stats().tail_searches, after.tail_searches);
}

#[tokio::test]
async fn the_background_thread_takes_the_rows_in_while_searches_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), true);
    store.ensure_index(&spec(DIMS)).await.unwrap();
    let all = docs(&mut Rng(6), 4_000, DIMS, &["cat", "dog"], "b");
    for (i, chunk) in all.chunks(500).enumerate() {
        write(&store, chunk).await;
        // Every write is found at once, whatever the thread has done meanwhile.
        check_found(&store, &all[..(i + 1) * 500]).await;
    }
    let stats = store.ann_stats();
    assert!(stats.caught_up_rows > 0, "{stats:?}");
    // The thread finishes on its own, no refresh asked for: then a search scans no tail.
    let probe = query(&all[0], None);
    let mut waited = 0;
    loop {
        let before = store.ann_stats().tail_searches;
        store.knn(&probe).await.unwrap();
        if store.ann_stats().tail_searches == before || waited == 600 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    let stats = store.ann_stats();
    let before = stats.tail_searches;
    check_found(&store, &all).await;
    assert_eq!(store.ann_stats().tail_searches, before, "{stats:?}");
}

#[tokio::test]
async fn a_graph_file_far_behind_is_searched_with_the_rows_after_it_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let all = docs(&mut Rng(7), 3_000, DIMS, &["cat", "dog", "owl"], "r");
    // Over 1,024 rows in the file: its codes are calibrated for good, so it stays in use.
    let (kept, relabelled) =
        crash_with_stale_graph_file(open(tmp.path(), true), all, 1_200, (7, "fox"), (3, 19)).await;
    let reader = open(tmp.path(), false);
    check_found(&reader, &kept).await;
    check_found(&reader, &relabelled).await;
    let stats = reader.ann_stats();
    assert_eq!((stats.loaded_from_file, stats.rebuilt), (1, 0), "{stats:?}");
    assert_eq!(
        stats.caught_up_rows, 0,
        "searched beside the graph: {stats:?}"
    );
    assert!(stats.tail_searches > 0, "{stats:?}");
}

/// A write's `refresh` checks every node of a graph that has grown by half since its nodes were
/// last checked (each that a search for its own code misses linked afresh), and only then; the
/// graph is saved after it, and every document is still found.
#[tokio::test]
async fn a_graph_grown_by_half_has_its_nodes_checked_when_a_write_is_done() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), true);
    cfg.relink_from_rows = 1_000;
    let store = LocalStore::open_with(cfg.clone()).expect("open");
    store.ensure_index(&spec(DIMS)).await.unwrap();
    let all = docs(&mut Rng(9), 1_700, DIMS, &["cat", "dog"], "r");
    // Built (past 1,024 rows on codes fitted to them): a build checks its nodes itself.
    write(&store, &all[..1_100]).await;
    store.refresh().await.unwrap();
    let built = store.ann_stats();
    assert!(built.rebuilt >= 1 && built.relink_passes == 0, "{built:?}");
    // Grown by less than half since: no check.
    write(&store, &all[1_100..1_500]).await;
    store.refresh().await.unwrap();
    assert_eq!(
        store.ann_stats().relink_passes,
        0,
        "{:?}",
        store.ann_stats()
    );
    // By half: checked, and the file saved after it.
    write(&store, &all[1_500..]).await;
    store.refresh().await.unwrap();
    let checked = store.ann_stats();
    assert_eq!(
        (checked.rebuilt, checked.relink_passes),
        (built.rebuilt, 1),
        "{checked:?}"
    );
    assert!(checked.saved > built.saved, "{checked:?}");
    check_found(&store, &all).await;
    drop(store);
    // A graph loaded from its file counts as checked: another process's write of a few rows
    // does not check it again.
    let store = LocalStore::open_with(cfg).expect("open");
    write(&store, &all[..10]).await;
    store.refresh().await.unwrap();
    let reopened = store.ann_stats();
    assert_eq!(
        (reopened.loaded_from_file, reopened.relink_passes),
        (1, 0),
        "{reopened:?}"
    );
}
