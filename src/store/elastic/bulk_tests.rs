//! Tests of `bulk`: the NDJSON lines, item classification, and what `upsert` sends (chunks, item
//! retries, no index check per request, a missing index).

use serde_json::{json, Value};

use super::super::test_support::{doc, fake_server, fast_store, request_lines};
use super::super::{ElasticConfig, ElasticStore};
use super::*;
use crate::store::{ImageDoc, StoreError, UpsertReport, VectorStore};

/// `GET /idx/_mapping`'s answer for an index of 2-d vectors.
const MAPPING_2D: &str = r#"{"idx":{"mappings":{"properties":{"IFV":{"type":"dense_vector","dims":2},"name":{"type":"keyword"}}}}}"#;
const CREATED: &str =
    r#"{"errors":false,"items":[{"create":{"_id":"d","status":201,"result":"created"}}]}"#;

#[test]
fn bulk_lines_are_two_json_lines() {
    let text = bulk_lines(&doc("abc", 4), false);
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    assert_eq!(lines.len(), 2);
    let action: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(action, json!({ "create": { "_id": "abc" } }));
    let source: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(source["name"], "cat");
    assert_eq!(source["path"], "/data/cat \"1\".jpg");
    assert_eq!(source["IFV"], json!([0.5, 0.5, 0.5, 0.5]));
    assert_eq!(source["sha256"], "abc");
    assert_eq!(source["indexed_at"], 1_700_000_000_000u64);
    let over = bulk_lines(&doc("abc", 4), true);
    assert!(over.starts_with(r#"{"index":{"_id":"abc"}}"#));
}

#[test]
fn bulk_items_are_classified() {
    let created = json!({ "create": { "_id": "a", "status": 201, "result": "created" } });
    assert_eq!(
        classify_bulk_item(&created, false),
        BulkItemOutcome::Indexed
    );
    let updated = json!({ "index": { "_id": "a", "status": 200, "result": "updated" } });
    assert_eq!(classify_bulk_item(&updated, true), BulkItemOutcome::Indexed);
    let conflict = json!({ "create": { "_id": "a", "status": 409, "error": {
        "type": "version_conflict_engine_exception",
        "reason": "[a]: version conflict, document already exists (current version [1])" } } });
    assert_eq!(
        classify_bulk_item(&conflict, false),
        BulkItemOutcome::AlreadyPresent
    );
    assert!(matches!(
        classify_bulk_item(&conflict, true),
        BulkItemOutcome::Failed(_)
    ));
    let busy = json!({ "create": { "_id": "a", "status": 429, "error": {
        "type": "es_rejected_execution_exception", "reason": "rejected execution" } } });
    assert_eq!(
        classify_bulk_item(&busy, false),
        BulkItemOutcome::Transient("es_rejected_execution_exception: rejected execution".into())
    );
    let unavailable = json!({ "create": { "_id": "a", "status": 503, "error": {
        "type": "unavailable_shards_exception", "reason": "primary shard is not active" } } });
    assert!(matches!(
        classify_bulk_item(&unavailable, false),
        BulkItemOutcome::Transient(_)
    ));
    let bad = json!({ "create": { "_id": "a", "status": 400, "error": {
        "type": "document_parsing_exception",
        "reason": "[1:1] failed to parse: different number of dimensions [3] than defined in the mapping [4]",
        "caused_by": { "type": "illegal_argument_exception",
            "reason": "different number of dimensions [3] than defined in the mapping [4]" } } } });
    match classify_bulk_item(&bad, false) {
        BulkItemOutcome::Failed(r) => {
            assert!(r.starts_with("document_parsing_exception: "), "{r}");
            assert!(r.contains("dimensions [3]"), "{r}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        classify_bulk_item(&json!({}), false),
        BulkItemOutcome::Failed(_)
    ));
}

#[tokio::test]
async fn upsert_retries_the_request_and_only_transient_items() {
    let (url, seen) = fake_server(vec![
        (200, MAPPING_2D), // GET /idx/_mapping, as ingest asks before writing
        (
            503,
            r#"{"error":{"type":"unavailable","reason":"busy"},"status":503}"#,
        ),
        (
            200,
            r#"{"errors":true,"items":[
            {"create":{"_id":"d0","status":201,"result":"created"}},
            {"create":{"_id":"d1","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_id":"d2","status":400,"error":{"type":"document_parsing_exception","reason":"bad vector"}}},
            {"create":{"_id":"d3","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}}]}"#,
        ),
        (
            200,
            r#"{"errors":false,"items":[{"create":{"_id":"d1","status":201,"result":"created"}}]}"#,
        ),
        // The paths of d3, already present: the same path, so nothing more is written.
        (
            200,
            r#"{"docs":[{"_index":"idx","_id":"d3","_seq_no":3,"_primary_term":1,"found":true,"_source":{"path":"/data/cat \"1\".jpg"}}]}"#,
        ),
    ]);
    let store = fast_store(&url, 3);
    assert_eq!(store.index_dims().await.unwrap(), 2);
    let docs: Vec<ImageDoc> = (0..4).map(|i| doc(&format!("d{i}"), 2)).collect();
    let report = store.upsert(&docs, false).await.unwrap();
    assert_eq!(report.indexed, vec!["d0".to_string(), "d1".to_string()]);
    assert_eq!(report.already_present, vec!["d3".to_string()]);
    assert_eq!(
        report.failed,
        vec![(
            "d2".to_string(),
            "document_parsing_exception: bad vector".to_string()
        )]
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen[4].starts_with("POST /idx/_mget"), "{seen:?}");
    assert!(seen[0].starts_with("GET /idx/_mapping\n"), "{seen:?}");
    assert!(seen[1].starts_with("POST /idx/_bulk\n"), "{seen:?}");
    assert_eq!(
        seen[1], seen[2],
        "the whole request is sent again after a 503"
    );
    // Only the 429'd document is sent again.
    let last = seen[3].strip_prefix("POST /idx/_bulk\n").unwrap();
    assert_eq!(last, bulk_lines(&docs[1], false));
}

#[tokio::test]
async fn items_still_failing_after_the_retries_are_reported() {
    let busy = r#"{"errors":true,"items":[{"create":{"_id":"d0","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}]}"#;
    // HEAD /idx first: a fresh store has not seen the index yet.
    let (url, seen) = fake_server(vec![(200, ""), (200, busy), (200, busy)]);
    let store = fast_store(&url, 1);
    let report = store.upsert(&[doc("d0", 2)], false).await.unwrap();
    assert!(report.indexed.is_empty());
    assert_eq!(report.failed.len(), 1);
    assert_eq!(
        report.failed[0].1,
        "es_rejected_execution_exception: queue full (still failing after 1 retries)"
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn upsert_asks_for_the_index_once_per_store_not_per_request() {
    let (url, seen) = fake_server(vec![
        (200, ""),
        (200, CREATED),
        (200, CREATED),
        (200, CREATED),
    ]);
    let mut cfg = ElasticConfig::new(&url, "idx");
    cfg.bulk_max_docs = 1;
    let store = ElasticStore::connect(cfg).unwrap();
    let report = store
        .upsert(&[doc("d", 2), doc("d", 2)], false)
        .await
        .unwrap();
    assert_eq!(report.indexed.len(), 2);
    store.upsert(&[doc("d", 2)], false).await.unwrap();
    let requests = request_lines(&seen);
    assert_eq!(
        requests,
        [
            "HEAD /idx",
            "POST /idx/_bulk",
            "POST /idx/_bulk",
            "POST /idx/_bulk"
        ]
    );
}

#[tokio::test]
async fn a_missing_index_in_the_bulk_answer_is_index_missing() {
    let gone_item = r#"{"errors":true,"items":[{"create":{"_id":"d","status":404,"error":{"type":"index_not_found_exception","reason":"no such index [idx]"}}}]}"#;
    let gone = r#"{"error":{"type":"index_not_found_exception","reason":"no such index [idx]"},"status":404}"#;
    let (url, seen) = fake_server(vec![
        (200, MAPPING_2D),
        (200, gone_item),
        (404, ""), // HEAD again: the index is no longer known to be there
        (200, MAPPING_2D),
        (404, gone),
    ]);
    let store = fast_store(&url, 3);
    let missing = |r: Result<UpsertReport, StoreError>| match r {
        Err(StoreError::IndexMissing { index }) => assert_eq!(index, "idx"),
        other => panic!("expected IndexMissing, got {other:?}"),
    };
    store.index_dims().await.unwrap();
    missing(store.upsert(&[doc("d", 2)], false).await);
    missing(store.upsert(&[doc("d", 2)], false).await);
    store.index_dims().await.unwrap();
    missing(store.upsert(&[doc("d", 2)], true).await);
    let requests = request_lines(&seen);
    assert_eq!(
        requests,
        [
            "GET /idx/_mapping",
            "POST /idx/_bulk",
            "HEAD /idx",
            "GET /idx/_mapping",
            // An overwrite reads the paths it keeps first: that finds the index gone.
            "POST /idx/_mget?_source_includes=path"
        ]
    );
}

#[test]
fn vectors_are_written_in_their_shortest_f32_form() {
    let mut d = doc("abc", 3);
    d.vector = vec![0.1, -0.333_333_34, 1.0e-8];
    let text = bulk_lines(&d, false);
    let source = text.lines().nth(1).unwrap();
    assert!(
        source.contains(r#""IFV":[0.1,-0.33333334,1e-8]"#),
        "{source}"
    );
    let parsed: Value = serde_json::from_str(source).unwrap();
    let back: Vec<f32> = parsed["IFV"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(back, d.vector, "the same f32s after a round trip");
    assert_eq!(
        parsed,
        doc_source(&d)
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.insert("IFV".into(), parsed["IFV"].clone());
                Value::Object(o)
            })
            .unwrap()
    );
}

#[test]
fn bulk_lines_carry_every_field_of_doc_source() {
    let mut doc = crate::store::ImageDoc {
        id: "ab".into(),
        label: "cat".into(),
        path: "/p/a.jpg".into(),
        other_paths: Vec::new(),
        vector: vec![0.1, -0.5],
        bytes: 7,
        width: 3,
        height: 2,
        model: "m".into(),
        indexed_at_ms: 5,
        mtime_ms: Some(4),
    };
    let copies = vec!["/q/a.jpg".to_string()];
    for (mtime, others) in [(Some(4), vec![]), (None, vec![]), (Some(4), copies)] {
        doc.mtime_ms = mtime;
        doc.other_paths = others;
        let lines = bulk_lines(&doc, false);
        let mut source: serde_json::Value =
            serde_json::from_str(lines.lines().nth(1).expect("two lines")).expect("json");
        let mut expected = doc_source(&doc);
        let floats = |v: &mut serde_json::Value| -> Vec<f32> {
            let ifv = v
                .as_object_mut()
                .and_then(|o| o.remove("IFV"))
                .expect("IFV");
            serde_json::from_value(ifv).expect("numbers")
        };
        assert_eq!(floats(&mut source), floats(&mut expected), "{lines}");
        assert_eq!(
            source, expected,
            "every other field, mtime included: {lines}"
        );
        // One path stays the plain string of the original pipeline; copies make an array.
        let path = &source["path"];
        if doc.other_paths.is_empty() {
            assert_eq!(path, "/p/a.jpg");
        } else {
            assert_eq!(path, &serde_json::json!(["/p/a.jpg", "/q/a.jpg"]));
        }
    }
}
