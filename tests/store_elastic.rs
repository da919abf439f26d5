//! Integration tests of the Elasticsearch store against a live server at `IMGVEC_TEST_ES_URL`.
//!
//! Start a local test server first (see `.ci/es-server.sh`):
//! ```text
//! eval "$(bash .ci/es-server.sh start target/es-test)"
//! cargo test --test store_elastic
//! bash .ci/es-server.sh stop target/es-test
//! ```
//! Built with `IMGVEC_SKIP_ES_TESTS=1` they are marked ignored (shown as skipped). They use only Elasticsearch's documented REST API and never
//! assert exact ANN scores, so they hold against a real Elasticsearch 8.12+ or 9.x as well. Each test
//! works in its own index (`imgvec-test-<test>-<pid>`), deleted at the end even when the test fails.

#[path = "common/contract.rs"]
mod contract;
#[path = "common/docs.rs"]
mod docs;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use docs::{docs, ids, sorted, spec, Rng};
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::Method;
use imgvec::store::elastic::{ElasticConfig, ElasticStore};
use imgvec::store::{
    EnsureOutcome, Hit, ImageDoc, IndexSpec, KnnQuery, StoreError, UpsertReport, VectorStore,
};
use serde_json::{json, Value};

const START_HINT: &str = "IMGVEC_TEST_ES_URL is not set. Start the test server with\n    \
     eval \"$(bash .ci/es-server.sh start target/es-test)\"\n\
     (stop it with `bash .ci/es-server.sh stop target/es-test`), point IMGVEC_TEST_ES_URL at an \
     Elasticsearch 8.12+ server, or set IMGVEC_SKIP_ES_TESTS=1 to skip these tests.";

/// The server URL (these tests are marked ignored when built with `IMGVEC_SKIP_ES_TESTS=1`).
fn server_url() -> String {
    match std::env::var("IMGVEC_TEST_ES_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!("{START_HINT}"),
    }
}

fn config(url: &str, index: &str) -> ElasticConfig {
    let mut cfg = ElasticConfig::new(url, index);
    cfg.request_timeout = Duration::from_secs(30);
    cfg.max_retries = 3;
    cfg.retry_base = Duration::from_millis(100);
    // Credentials for a real server, if it needs them (never needed by the local test server).
    cfg.username = std::env::var("IMGVEC_TEST_ES_USERNAME").ok();
    cfg.password = std::env::var("IMGVEC_TEST_ES_PASSWORD").ok();
    cfg.api_key = std::env::var("IMGVEC_TEST_ES_API_KEY").ok();
    cfg.ca_cert = std::env::var_os("IMGVEC_TEST_ES_CA_CERT").map(Into::into);
    cfg
}

/// A store on an index of this test's own, deleted when dropped (also after a failed assertion).
struct TestIndex {
    store: ElasticStore,
    cfg: ElasticConfig,
}

impl TestIndex {
    async fn new(test: &str) -> TestIndex {
        Self::with_config(test, |_| {}).await
    }

    async fn with_config(test: &str, tweak: impl FnOnce(&mut ElasticConfig)) -> TestIndex {
        let url = server_url();
        let name = format!(
            "imgvec-test-{}-{}",
            test.to_lowercase().replace('_', "-"),
            std::process::id()
        );
        let mut cfg = config(&url, &name);
        tweak(&mut cfg);
        let store = ElasticStore::connect(cfg.clone()).expect("connect");
        store.delete_index().await.expect("delete a leftover index");
        TestIndex { store, cfg }
    }
}

impl Drop for TestIndex {
    fn drop(&mut self) {
        // Drop cannot await: delete from a thread with a runtime (and a client) of its own.
        let cfg = self.cfg.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(store) = ElasticStore::connect(cfg) {
                    let _ = store.delete_index().await;
                }
            });
        })
        .join();
    }
}

/// A raw request through the store's client, as any other program would send it.
async fn raw(
    store: &ElasticStore,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let response = store
        .client()
        .send(
            method,
            path,
            HeaderMap::new(),
            None::<&()>,
            body.as_deref(),
            None,
        )
        .await
        .expect("raw request");
    let status = response.status_code().as_u16();
    let text = response.text().await.expect("raw response body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The index's `GET /INDEX/_mapping` answer: status and body.
async fn mapping(store: &ElasticStore) -> (u16, Value) {
    raw(
        store,
        Method::Get,
        &format!("/{}/_mapping", store.index()),
        None,
    )
    .await
}

async fn upsert_all(store: &ElasticStore, docs: &[ImageDoc]) {
    let report = store.upsert(docs, false).await.expect("upsert");
    assert!(report.failed.is_empty(), "failed: {:?}", report.failed);
    assert_eq!(report.indexed.len(), docs.len());
    store.refresh().await.expect("refresh");
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn mapping_as_created_reads_back() {
    let t = TestIndex::new("mapping_as_created").await;
    let spec = IndexSpec {
        dims: 12,
        hnsw_m: Some(24),
        hnsw_ef_construction: Some(128),
        ..IndexSpec::for_dims(12)
    };
    assert_eq!(
        t.store.ensure_index(&spec).await.unwrap(),
        EnsureOutcome::Created
    );

    let (status, body) = mapping(&t.store).await;
    assert_eq!(status, 200, "{body}");
    let props = &body[t.store.index()]["mappings"]["properties"];
    let ifv = &props["IFV"];
    assert_eq!(ifv["type"], "dense_vector", "{body}");
    assert_eq!(ifv["dims"], 12, "{body}");
    assert_eq!(ifv["similarity"], "l2_norm", "{body}");
    assert_eq!(ifv["index_options"]["type"], "int8_hnsw", "{body}");
    assert_eq!(ifv["index_options"]["m"], 24, "{body}");
    assert_eq!(ifv["index_options"]["ef_construction"], 128, "{body}");
    assert_eq!(props["name"]["type"], "keyword", "{body}");
    assert_eq!(props["path"]["type"], "keyword", "{body}");
    assert_eq!(props["indexed_at"]["type"], "date", "{body}");

    assert_eq!(t.store.index_dims().await.unwrap(), 12);
    assert_eq!(t.store.count().await.unwrap(), 0);
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn ensure_index_twice_creates_once() {
    let t = TestIndex::new("ensure_twice").await;
    assert_eq!(
        t.store.ensure_index(&spec(8)).await.unwrap(),
        EnsureOutcome::Created
    );
    assert_eq!(
        t.store.ensure_index(&spec(8)).await.unwrap(),
        EnsureOutcome::AlreadyExists
    );
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn ensure_index_race_creates_exactly_once() {
    let t = TestIndex::new("ensure_race").await;
    let other = ElasticStore::connect(t.cfg.clone()).unwrap();
    let s = spec(8);
    let (a, b) = tokio::join!(t.store.ensure_index(&s), other.ensure_index(&s));
    let mut outcomes = vec![a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| *o == EnsureOutcome::AlreadyExists);
    assert_eq!(
        outcomes,
        vec![EnsureOutcome::Created, EnsureOutcome::AlreadyExists]
    );
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn incompatible_dims_are_named() {
    let t = TestIndex::new("incompatible").await;
    contract::incompatible_dims_are_named(&t.store, t.store.index()).await;
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn upsert_refresh_count_and_again_is_already_present() {
    let t = TestIndex::new("upsert_again").await;
    t.store.ensure_index(&spec(8)).await.unwrap();
    let mut rng = Rng(1);
    let batch = docs(&mut rng, 30, 8, &["cat", "dog"], "a");

    let first = t.store.upsert(&batch, false).await.unwrap();
    assert_eq!(sorted(first.indexed.clone()), sorted(ids(&batch)));
    assert!(
        first.already_present.is_empty() && first.failed.is_empty(),
        "{first:?}"
    );
    t.store.refresh().await.unwrap();
    assert_eq!(t.store.count().await.unwrap(), 30);

    let again = t.store.upsert(&batch, false).await.unwrap();
    assert_eq!(
        again,
        UpsertReport {
            indexed: vec![],
            already_present: ids(&batch),
            failed: vec![],
        }
    );
    t.store.refresh().await.unwrap();
    assert_eq!(t.store.count().await.unwrap(), 30);

    // Nothing was overwritten: the stored label is still the first one.
    let (_, body) = raw(
        &t.store,
        Method::Get,
        &format!("/{}/_doc/{}", t.store.index(), batch[1].id),
        None,
    )
    .await;
    assert_eq!(body["_source"]["name"], "dog", "{body}");
    assert_eq!(body["_source"]["sha256"], batch[1].id.as_str(), "{body}");
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn overwrite_replaces_documents() {
    let t = TestIndex::new("overwrite").await;
    t.store.ensure_index(&spec(8)).await.unwrap();
    let mut rng = Rng(2);
    let batch = docs(&mut rng, 10, 8, &["cat"], "b");
    upsert_all(&t.store, &batch).await;

    let relabeled: Vec<ImageDoc> = batch
        .iter()
        .map(|d| ImageDoc {
            label: "lion".into(),
            ..d.clone()
        })
        .collect();
    let report = t.store.upsert(&relabeled, true).await.unwrap();
    assert_eq!(sorted(report.indexed), sorted(ids(&batch)));
    assert!(report.already_present.is_empty() && report.failed.is_empty());
    t.store.refresh().await.unwrap();
    assert_eq!(t.store.count().await.unwrap(), 10);
    let hits = t
        .store
        .knn(&KnnQuery {
            vector: batch[0].vector.clone(),
            k: 10,
            num_candidates: 20,
            label: Some("lion".into()),
        })
        .await
        .unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.label == "lion"), "{hits:?}");
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn small_bulk_bounds_split_requests() {
    // A byte bound smaller than two documents: every document goes in a request of its own.
    let t = TestIndex::with_config("bulk_bounds", |cfg| {
        cfg.bulk_max_bytes = 600;
        cfg.bulk_max_docs = 3;
    })
    .await;
    t.store.ensure_index(&spec(16)).await.unwrap();
    let mut rng = Rng(3);
    let batch = docs(&mut rng, 12, 16, &["cat"], "c");
    upsert_all(&t.store, &batch).await;
    assert_eq!(t.store.count().await.unwrap(), 12);
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn existing_ids_over_several_batches() {
    let t = TestIndex::new("existing_ids").await;
    contract::existing_ids_over_several_batches(&t.store).await;
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn knn_finds_a_stored_vector_first() {
    let t = TestIndex::new("knn_self").await;
    t.store.ensure_index(&spec(16)).await.unwrap();
    let mut rng = Rng(5);
    let batch = docs(&mut rng, 60, 16, &["cat", "dog", "fox"], "e");
    upsert_all(&t.store, &batch).await;

    for d in batch.iter().step_by(7) {
        let hits = t
            .store
            .knn(&KnnQuery {
                vector: d.vector.clone(),
                k: 5,
                num_candidates: 100,
                label: None,
            })
            .await
            .unwrap();
        assert_eq!(hits.len(), 5, "{hits:?}");
        let first = &hits[0];
        assert_eq!(first.id, d.id, "{hits:?}");
        assert_eq!(first.label, d.label);
        assert_eq!(first.path, d.path);
        // l2_norm scores lie in (0, 1] and come best first; their exact values are the server's.
        assert!(
            hits.windows(2).all(|w| w[0].score >= w[1].score),
            "{hits:?}"
        );
        assert!(
            hits.iter().all(|h| h.score > 0.0 && h.score <= 1.0 + 1e-3),
            "{hits:?}"
        );
        assert!(first.distance() < 0.3, "{first:?}");
        let ids: HashSet<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids.len(), 5, "duplicate hits: {hits:?}");
    }
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn label_filter_only_returns_that_label() {
    let t = TestIndex::new("knn_label").await;
    t.store.ensure_index(&spec(16)).await.unwrap();
    let mut rng = Rng(6);
    let batch = docs(&mut rng, 40, 16, &["cat", "dog"], "f");
    upsert_all(&t.store, &batch).await;

    // Query with a dog's own vector but ask for cats: the dog must not come back.
    let dog = batch.iter().find(|d| d.label == "dog").unwrap();
    let hits: Vec<Hit> = t
        .store
        .knn(&KnnQuery {
            vector: dog.vector.clone(),
            k: 10,
            num_candidates: 100,
            label: Some("cat".into()),
        })
        .await
        .unwrap();
    assert_eq!(hits.len(), 10, "{hits:?}");
    assert!(hits.iter().all(|h| h.label == "cat"), "{hits:?}");
    assert!(hits.iter().all(|h| h.id != dog.id));

    // A label nobody has: no hits.
    let none = t
        .store
        .knn(&KnnQuery {
            vector: dog.vector.clone(),
            k: 10,
            num_candidates: 100,
            label: Some("zebra".into()),
        })
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn bulk_item_failure_is_reported_per_item() {
    let t = TestIndex::new("bulk_item_failure").await;
    t.store.ensure_index(&spec(8)).await.unwrap();
    let mut rng = Rng(7);
    let mut batch = docs(&mut rng, 5, 8, &["cat"], "g");
    batch[2].vector = rng.unit_vector(7); // wrong length for the mapping
    let bad_id = batch[2].id.clone();

    let report = t.store.upsert(&batch, false).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].0, bad_id);
    assert!(
        !report.failed[0].1.trim().is_empty(),
        "empty reason: {report:?}"
    );
    assert_eq!(report.indexed.len(), 4);
    assert!(!report.indexed.contains(&bad_id));
    t.store.refresh().await.unwrap();
    assert_eq!(t.store.count().await.unwrap(), 4);
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn unreachable_server_is_reported_quickly() {
    // A port that was just free on loopback: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let mut cfg = ElasticConfig::new(&url, "imgvec-test-unreachable");
    cfg.request_timeout = Duration::from_secs(2);
    cfg.max_retries = 2;
    cfg.retry_base = Duration::from_millis(10);
    let store = ElasticStore::connect(cfg).unwrap();

    let started = Instant::now();
    match store.count().await {
        Err(StoreError::Unreachable { url: shown, detail }) => {
            assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
            assert!(!detail.is_empty());
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let err = store.ensure_index(&spec(8)).await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn missing_index_is_reported_as_missing() {
    let t = TestIndex::new("missing").await;
    let missing = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::IndexMissing { index }) => assert_eq!(index, t.store.index()),
        other => panic!("{what}: expected IndexMissing, got {other:?}"),
    };
    missing(t.store.index_dims().await.map(drop), "index_dims");
    missing(t.store.count().await.map(drop), "count");
    missing(t.store.refresh().await, "refresh");
    missing(
        t.store
            .knn(&KnnQuery {
                vector: vec![1.0; 8],
                k: 3,
                num_candidates: 10,
                label: None,
            })
            .await
            .map(drop),
        "knn",
    );
    missing(
        t.store.existing_ids(&["x".to_string()]).await.map(drop),
        "existing_ids",
    );
    let mut rng = Rng(8);
    missing(
        t.store
            .upsert(&docs(&mut rng, 1, 8, &["cat"], "h"), false)
            .await
            .map(drop),
        "upsert",
    );
    // upsert did not let `_bulk` auto-create the index.
    assert!(!t.store.index_exists().await.unwrap());
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn recreate_index_starts_empty() {
    let t = TestIndex::new("recreate").await;
    t.store.ensure_index(&spec(8)).await.unwrap();
    let mut rng = Rng(9);
    upsert_all(&t.store, &docs(&mut rng, 5, 8, &["cat"], "i")).await;
    assert_eq!(t.store.count().await.unwrap(), 5);
    t.store.recreate_index(&spec(24)).await.unwrap();
    assert_eq!(t.store.count().await.unwrap(), 0);
    assert_eq!(t.store.index_dims().await.unwrap(), 24);
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn python_pipeline_search_finds_stored_docs() {
    let t = TestIndex::new("interop").await;
    t.store.ensure_index(&spec(16)).await.unwrap();
    let mut rng = Rng(10);
    let batch = docs(&mut rng, 20, 16, &["cat", "dog"], "j");
    upsert_all(&t.store, &batch).await;

    // The request body exactly as the original Python pipeline wrote it.
    let target = &batch[3];
    let (status, body) = raw(
        &t.store,
        Method::Post,
        &format!("/{}/_search", t.store.index()),
        Some(json!({
            "knn": {
                "field": "IFV",
                "query_vector": target.vector,
                "k": 3,
                "num_candidates": 10
            }
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let hits = body["hits"]["hits"].as_array().expect("hits.hits");
    assert!(!hits.is_empty(), "{body}");
    assert_eq!(hits[0]["_id"], target.id.as_str(), "{body}");
    assert_eq!(hits[0]["_source"]["name"], target.label.as_str(), "{body}");
    assert_eq!(hits[0]["_source"]["path"], target.path.as_str(), "{body}");
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn the_index_remembers_its_model_in_the_mapping_meta() {
    let t = TestIndex::new("model_meta").await;
    let a = imgvec::store::ModelRecord {
        name: "model-a".into(),
        family: "clip".into(),
        dims: 12,
        fingerprint: Some("aa".into()),
        precisions: vec!["f32".into()],
    };
    let b = imgvec::store::ModelRecord {
        name: "model-b".into(),
        fingerprint: Some("bb".into()),
        ..a.clone()
    };
    t.store
        .ensure_index(&IndexSpec::for_model(&a))
        .await
        .unwrap();
    let (status, body) = mapping(&t.store).await;
    assert_eq!(status, 200, "{body}");
    let meta = &body[t.store.index()]["mappings"]["_meta"]["imgvec"]["model"];
    assert_eq!(meta["name"], "model-a", "{body}");
    assert_eq!(meta["dims"], 12, "{body}");
    assert_eq!(t.store.index_model().await.unwrap(), Some(a.clone()));
    assert_eq!(
        t.store.adopt_model(&b).await.unwrap(),
        a,
        "the first record stays"
    );

    // An index made without a record (an older imgvec) adopts one, its other _meta kept.
    t.store.recreate_index(&spec(12)).await.unwrap();
    assert_eq!(t.store.index_model().await.unwrap(), None);
    let (status, body) = raw(
        &t.store,
        Method::Put,
        &format!("/{}/_mapping", t.store.index()),
        Some(json!({"_meta": {"owner": "someone"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.store.adopt_model(&b).await.unwrap(), b);
    assert_eq!(t.store.index_model().await.unwrap(), Some(b.clone()));
    let (_, body) = mapping(&t.store).await;
    assert_eq!(
        body[t.store.index()]["mappings"]["_meta"]["owner"],
        "someone",
        "{body}"
    );

    // The same model in another precision is added to the record (mixing is allowed), the other
    // _meta still kept; another model's precisions are not.
    let b_bf16 = imgvec::store::ModelRecord {
        precisions: vec!["bf16".into()],
        ..b.clone()
    };
    let mixed = t.store.adopt_model(&b_bf16).await.unwrap();
    assert_eq!(mixed.precisions, ["f32", "bf16"]);
    assert_eq!(t.store.index_model().await.unwrap(), Some(mixed.clone()));
    assert_eq!(t.store.adopt_model(&b).await.unwrap(), mixed);
    let a_int8 = imgvec::store::ModelRecord {
        precisions: vec!["int8".into()],
        ..a
    };
    assert_eq!(t.store.adopt_model(&a_int8).await.unwrap(), mixed);
    let (_, body) = mapping(&t.store).await;
    let meta = &body[t.store.index()]["mappings"]["_meta"];
    assert_eq!(meta["owner"], "someone", "{body}");
    assert_eq!(
        meta["imgvec"]["model"]["precisions"],
        json!(["f32", "bf16"]),
        "{body}"
    );
}
