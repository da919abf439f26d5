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
use imgvec::store::{Hit, KnnQuery, VectorStore};

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
