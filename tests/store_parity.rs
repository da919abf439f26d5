//! The same documents and queries on both backends give the same hits with the same scores (to
//! 1e-6): the embedded store re-ranks its graph's candidates with the float vectors, and the
//! Elasticsearch store has the server re-rank its kNN candidates with them (`knn.rescore_vector`
//! on 8.18+, else a `rescore` with a `script_score` on `l2norm`), so neither shows the quantized
//! `int8_hnsw` scores.
//!
//! Needs the Elasticsearch at `IMGVEC_TEST_ES_URL` (see `.ci/es-server.sh`); marked ignored when
//! built with `IMGVEC_SKIP_ES_TESTS=1`.

#[path = "common/docs.rs"]
mod docs;

use std::time::Duration;

use docs::{docs, spec, Rng};
use imgvec::store::elastic::{ElasticConfig, ElasticStore};
use imgvec::store::local::{LocalConfig, LocalStore};
use imgvec::store::{DocPath, Hit, KnnQuery, VectorStore};

const DIMS: usize = 64;

fn elastic(index: &str) -> ElasticStore {
    let url = std::env::var("IMGVEC_TEST_ES_URL")
        .expect("IMGVEC_TEST_ES_URL: start the test server with .ci/es-server.sh");
    let mut cfg = ElasticConfig::new(url, index);
    cfg.request_timeout = Duration::from_secs(30);
    cfg.username = std::env::var("IMGVEC_TEST_ES_USERNAME").ok();
    cfg.password = std::env::var("IMGVEC_TEST_ES_PASSWORD").ok();
    cfg.ca_cert = std::env::var_os("IMGVEC_TEST_ES_CA_CERT").map(Into::into);
    ElasticStore::connect(cfg).expect("connect")
}

fn assert_same(what: &str, local: &[Hit], es: &[Hit]) {
    let ids = |h: &[Hit]| h.iter().map(|h| h.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(local), ids(es), "{what}: same hits in the same order");
    for (l, e) in local.iter().zip(es) {
        assert!(
            (l.score - e.score).abs() < 1e-6,
            "{what}: {} scores {} locally, {} in Elasticsearch",
            l.id,
            l.score,
            e.score
        );
        assert_eq!((&l.label, &l.path), (&e.label, &e.path));
    }
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn same_query_same_hits_and_scores_on_both_backends() {
    let index = format!("imgvec-test-parity-{}", std::process::id());
    let es = elastic(&index);
    es.delete_index().await.expect("delete a leftover index");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = LocalConfig::new(tmp.path(), "parity");
    cfg.exact_scan_rows = 0; // through the graph and its re-rank, as on a big store
    let local = LocalStore::open_with(cfg).expect("open local store");

    let mut rng = Rng(15);
    let all = docs(&mut rng, 400, DIMS, &["cat", "dog", "bird"], "p");
    for store in [&es as &dyn VectorStore, &local] {
        store.ensure_index(&spec(DIMS)).await.expect("ensure_index");
        let report = store.upsert(&all, false).await.expect("upsert");
        assert_eq!(report.indexed.len(), all.len());
        store.refresh().await.expect("refresh");
    }

    for (i, label) in [None, Some("dog"), None, Some("bird")]
        .into_iter()
        .enumerate()
    {
        let query = KnnQuery {
            vector: rng.unit_vector(DIMS),
            k: 10,
            num_candidates: 100,
            label: label.map(str::to_string),
        };
        let l = local.knn(&query).await.expect("local knn");
        let e = es.knn(&query).await.expect("elastic knn");
        assert_eq!(l.len(), 10);
        assert_same(&format!("query {i} (label {label:?})"), &l, &e);
        // And the score is 1 / (1 + d²) of the float vectors, computed here.
        let best = all.iter().find(|d| d.id == e[0].id).expect("a stored doc");
        let d2: f64 = best
            .vector
            .iter()
            .zip(&query.vector)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum();
        assert!((f64::from(e[0].score) - 1.0 / (1.0 + d2)).abs() < 1e-6);
    }
    es.delete_index().await.expect("delete the test index");
}

/// What a store says of one document: its first path, its other paths (sorted), and every
/// (id, path) pair `files_under("/")` lists for it.
async fn paths_of(store: &dyn VectorStore, id: &str) -> Option<(String, Vec<String>, Vec<String>)> {
    let doc = store.get(&[id.to_string()]).await.expect("get").pop()?;
    let mut others = doc.other_paths.clone();
    others.sort();
    let mut listed: Vec<String> = store
        .files_under(&["/".to_string()])
        .await
        .expect("files_under")
        .into_iter()
        .filter(|f| f.id == id)
        .map(|f| f.path)
        .collect();
    listed.sort();
    Some((doc.path, others, listed))
}

/// The same bytes seen at several paths: one document, every path kept, listed, shown in hits,
/// and removed one at a time; the document goes with its last path. Same on both backends.
#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn every_path_of_a_content_is_kept_and_removed_one_at_a_time() {
    let index = format!("imgvec-test-paths-{}", std::process::id());
    let es = elastic(&index);
    es.delete_index().await.expect("delete a leftover index");
    let tmp = tempfile::tempdir().expect("tempdir");
    let local = LocalStore::open_with(LocalConfig::new(tmp.path(), "paths")).expect("open");
    let mut rng = Rng(29);
    let all = docs(&mut rng, 5, DIMS, &["cat"], "c");
    let copy = |path: &str| imgvec::store::ImageDoc {
        path: path.to_string(),
        ..all[0].clone()
    };
    let at = |path: &str| DocPath {
        id: all[0].id.clone(),
        path: path.to_string(),
        mtime_ms: None,
    };
    let (a, b, c) = ("/a/1.jpg", "/b/1.jpg", "/c/1.jpg");
    let id = all[0].id.as_str();
    for store in [&es as &dyn VectorStore, &local] {
        let what = store.describe();
        store.ensure_index(&spec(DIMS)).await.expect("ensure_index");
        let first = imgvec::store::ImageDoc {
            path: a.to_string(),
            ..all[0].clone()
        };
        store.upsert(&[first], false).await.expect("upsert");
        store.upsert(&all[1..], false).await.expect("upsert");
        // A copy written as a document: already present, its path recorded.
        let again = store.upsert(&[copy(b)], false).await.expect("upsert copy");
        assert_eq!(again.already_present, [id], "{what}");
        // A copy told by path alone (what ingest does for bytes it knows), twice: kept once.
        let unknown = DocPath {
            id: "f".repeat(64),
            ..at(c)
        };
        let missing = store
            .add_paths(&[at(c), at(c), at(a), unknown.clone()])
            .await
            .expect("add_paths");
        assert_eq!(missing, std::slice::from_ref(&unknown.id), "{what}");
        store.refresh().await.expect("refresh");
        assert_eq!(
            paths_of(store, id).await,
            Some((
                a.into(),
                vec![b.into(), c.into()],
                vec![a.into(), b.into(), c.into()]
            )),
            "{what}"
        );
        let hits = store
            .knn(&KnnQuery {
                vector: all[0].vector.clone(),
                k: 3,
                num_candidates: 50,
                label: None,
            })
            .await
            .expect("knn");
        assert_eq!(
            (hits[0].path.as_str(), hits[0].other_paths.len()),
            (a, 2),
            "{what}"
        );
        // An overwrite keeps the paths.
        store.upsert(&[copy(c)], true).await.expect("overwrite");
        store.refresh().await.expect("refresh");
        assert_eq!(
            paths_of(store, id).await.map(|p| p.2.len()),
            Some(3),
            "{what}"
        );

        // The first path goes: another takes its place; then the rest, and the document goes.
        let r = store.remove_paths(&[at(a)]).await.expect("remove a");
        assert_eq!((r.paths, r.documents), (1, 0), "{what}");
        store.refresh().await.expect("refresh");
        let (first, others, _) = paths_of(store, id).await.expect("still there");
        assert_eq!((others.len(), first == a), (1, false), "{what}");
        let r = store
            .remove_paths(&[at(b), at(c), at("/never/there.jpg")])
            .await
            .expect("remove b, c");
        assert_eq!((r.paths, r.documents), (2, 1), "{what}");
        store.refresh().await.expect("refresh");
        assert_eq!(paths_of(store, id).await, None, "{what}");
        assert_eq!(store.count().await.expect("count"), 4, "{what}");
    }
}
