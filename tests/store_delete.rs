//! What `prune` needs from a store, on both backends: deleting documents (`delete`), listing the
//! documents under some folders with their file facts (`files_under`), and the file modification
//! time (`mtime_ms`) kept as written — also in stores and indices made before imgvec recorded it.

mod common;
#[path = "common/docs.rs"]
mod docs;

use std::collections::HashSet;

use common::*;
use docs::{docs, spec, Rng};
use imgvec::store::elastic::MAPPING_TEMPLATE;
use imgvec::store::local::LocalStore;
use imgvec::store::{ImageDoc, KnnQuery, VectorStore};

const DIMS: usize = 16;

async fn write(store: &dyn VectorStore, all: &[ImageDoc]) {
    for chunk in all.chunks(100) {
        let report = store.upsert(chunk, false).await.unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
    }
    store.refresh().await.unwrap();
}

fn knn(vector: &[f32], k: usize, label: Option<&str>) -> KnnQuery {
    KnnQuery {
        vector: vector.to_vec(),
        k,
        num_candidates: 100,
        label: label.map(str::to_string),
    }
}

backend_test! {
    fn deleted_documents_are_gone_from_count_search_and_existence(idx) {
        let rt = runtime();
        let store = idx.store();
        let all = docs(&mut Rng(5), 60, DIMS, &["a", "b"], "d");
        rt.block_on(async {
            store.ensure_index(&spec(DIMS)).await.unwrap();
            write(store.as_ref(), &all).await;
            // Search once so the local graph is in memory: delete must take the keys out of it.
            store.knn(&knn(&all[0].vector, 5, None)).await.unwrap();
            let gone: Vec<String> = all.iter().step_by(3).map(|d| d.id.clone()).collect();
            let mut asked = gone.clone();
            asked.push("no-such-id".into());
            asked.push(gone[0].clone());
            assert_eq!(store.delete(&asked).await.unwrap(), gone.len() as u64, "[{}]", idx.kind());
            assert_eq!(store.delete(&gone).await.unwrap(), 0, "deleting again finds nothing");
            store.refresh().await.unwrap();
            assert_eq!(store.count().await.unwrap(), (all.len() - gone.len()) as u64);
            assert!(store.existing_ids(&gone).await.unwrap().is_empty());
            let gone: HashSet<String> = gone.into_iter().collect();
            for d in all.iter().take(12) {
                for label in [None, Some("a")] {
                    let hits = store.knn(&knn(&d.vector, 10, label)).await.unwrap();
                    assert_eq!(hits.len(), 10, "[{}] k hits remain", idx.kind());
                    assert!(hits.iter().all(|h| !gone.contains(&h.id)), "[{}] a deleted id came back", idx.kind());
                    if !gone.contains(&d.id) && label.is_none() {
                        assert_eq!(hits[0].id, d.id, "[{}] its own vector is the nearest", idx.kind());
                    }
                }
            }
        });
        // Opened again (the local graph from its cache file or rebuilt), the same holds.
        drop(store);
        let store = idx.store();
        rt.block_on(async {
            assert_eq!(store.count().await.unwrap(), 40);
            let hits = store.knn(&knn(&all[0].vector, 40, None)).await.unwrap();
            let ids: HashSet<&str> = hits.iter().map(|h| h.id.as_str()).collect();
            let kept: HashSet<&str> =
                all.iter().enumerate().filter(|(i, _)| i % 3 != 0).map(|(_, d)| d.id.as_str()).collect();
            assert_eq!(ids, kept, "[{}] after reopening", idx.kind());
        });
    }
}

backend_test! {
    fn files_under_lists_what_is_under_the_prefixes_with_its_file_facts(idx) {
        let rt = runtime();
        let store = idx.store();
        let all = docs(&mut Rng(6), 30, DIMS, &["cats", "dogs", "cats2"], "f");
        rt.block_on(async {
            store.ensure_index(&spec(DIMS)).await.unwrap();
            write(store.as_ref(), &all).await;
            let prefixes = ["/images/cats/".to_string(), "/images/dogs/4.jpg".to_string(),
                "/images/dogs/".to_string()];
            let mut listed = store.files_under(&prefixes).await.unwrap();
            listed.sort_by(|a, b| a.id.cmp(&b.id));
            let expected: Vec<&ImageDoc> =
                all.iter().filter(|d| !d.path.starts_with("/images/cats2/")).collect();
            assert_eq!(listed.len(), expected.len(), "[{}] each once, cats2 not under cats/", idx.kind());
            for (f, d) in listed.iter().zip(expected) {
                assert_eq!((&f.id, &f.path, f.bytes, f.mtime_ms, f.indexed_at_ms),
                    (&d.id, &d.path, d.bytes, d.mtime_ms, d.indexed_at_ms), "[{}]", idx.kind());
            }
            assert!(listed.iter().any(|f| f.mtime_ms.is_none()) && listed.iter().any(|f| f.mtime_ms.is_some()));
            assert!(store.files_under(&["/elsewhere/".into()]).await.unwrap().is_empty());
        });
    }
}

/// A store made before `docs.mtime_ms` existed is given the column when opened, and keeps working.
#[test]
fn a_local_store_without_the_mtime_column_gets_it() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let all = docs(&mut Rng(7), 4, DIMS, &["a"], "m");
    {
        let store = LocalStore::open(tmp.path(), "old").unwrap();
        rt.block_on(store.ensure_index(&spec(DIMS))).unwrap();
        rt.block_on(write(&store, &all[..2]));
        let conn = rusqlite::Connection::open(store.db_path()).unwrap();
        conn.execute_batch("ALTER TABLE docs DROP COLUMN mtime_ms")
            .unwrap();
    }
    let store = LocalStore::open(tmp.path(), "old").unwrap();
    rt.block_on(write(&store, &all[2..]));
    let mut listed = rt.block_on(store.files_under(&["/".into()])).unwrap();
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    let mtimes: Vec<Option<u64>> = listed.iter().map(|f| f.mtime_ms).collect();
    assert_eq!(mtimes, [None, None, all[2].mtime_ms, all[3].mtime_ms]);
}

/// An index made before imgvec wrote `mtime` (strict mapping without it) takes documents that have
/// one: the time is left out instead of the document being refused.
#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn an_index_without_the_mtime_field_still_takes_documents() {
    let idx = TestIndex::elastic("no_mtime_field");
    let url = idx.es_url().unwrap().to_string();
    let mut body: serde_json::Value = serde_json::from_str(MAPPING_TEMPLATE).unwrap();
    let props = body["mappings"]["properties"].as_object_mut().unwrap();
    props.remove("mtime");
    props["IFV"]["dims"] = DIMS.into();
    let put = idx
        .http()
        .put(format!("{url}/{}", idx.name))
        .json(&body)
        .send()
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text());
    let store = idx.store();
    let rt = runtime();
    let all = docs(&mut Rng(8), 6, DIMS, &["a"], "o");
    assert!(all.iter().any(|d| d.mtime_ms.is_some()));
    rt.block_on(write(store.as_ref(), &all));
    assert_eq!(rt.block_on(store.count()).unwrap(), 6);
    let listed = rt
        .block_on(store.files_under(&["/images/".into()]))
        .unwrap();
    assert!(listed.iter().all(|f| f.mtime_ms.is_none()), "{listed:?}");
}

/// The local graph is edited, not rebuilt, by a delete, and its cache file is saved anew.
#[test]
fn a_local_delete_edits_the_graph_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let all = docs(&mut Rng(9), 50, DIMS, &["a"], "g");
    {
        let store = LocalStore::open(tmp.path(), "g").unwrap();
        rt.block_on(store.ensure_index(&spec(DIMS))).unwrap();
        rt.block_on(write(&store, &all));
        let gone = [all[0].id.clone(), all[1].id.clone()];
        assert_eq!(rt.block_on(store.delete(&gone)).unwrap(), 2);
        let hits = rt
            .block_on(store.knn(&knn(&all[0].vector, 48, None)))
            .unwrap();
        assert_eq!(hits.len(), 48);
        assert_eq!(store.ann_stats().rebuilt, 1, "{:?}", store.ann_stats());
        rt.block_on(store.refresh()).unwrap();
    }
    let store = LocalStore::open(tmp.path(), "g").unwrap();
    let hits = rt
        .block_on(store.knn(&knn(&all[0].vector, 50, None)))
        .unwrap();
    assert_eq!(hits.len(), 48);
    let stats = store.ann_stats();
    assert_eq!((stats.loaded_from_file, stats.rebuilt), (1, 0), "{stats:?}");
}
