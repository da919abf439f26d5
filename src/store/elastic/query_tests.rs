//! Tests of `query`: the kNN body and reading hits.

use serde_json::json;

use super::*;

#[test]
fn knn_body_follows_the_documented_shape() {
    let q = KnnQuery {
        vector: vec![0.0, 1.0],
        k: 5,
        num_candidates: 50,
        label: Some("cat".into()),
    };
    assert_eq!(
        knn_body(&q, ExactScores::RescoreVector),
        json!({
            "knn": {
                "field": "IFV", "query_vector": [0.0, 1.0], "k": 5, "num_candidates": 50,
                "filter": { "term": { "name": "cat" } },
                "rescore_vector": { "oversample": 3.0 }
            },
            "size": 5,
            "_source": ["name", "path"]
        })
    );
    assert_eq!(
        knn_body(&q, ExactScores::Script),
        json!({
            "knn": {
                "field": "IFV", "query_vector": [0.0, 1.0], "k": 15, "num_candidates": 50,
                "filter": { "term": { "name": "cat" } }
            },
            "size": 5,
            "_source": ["name", "path"],
            "rescore": {
                "window_size": 15,
                "query": {
                    "rescore_query": { "script_score": {
                        "query": { "match_all": {} },
                        "script": {
                            "source": "double d = l2norm(params.query_vector, 'IFV'); return 1.0 / (1.0 + d * d);",
                            "params": { "query_vector": [0.0, 1.0] }
                        }
                    } },
                    "query_weight": 0.0,
                    "rescore_query_weight": 1.0
                }
            }
        })
    );
    let q = KnnQuery {
        vector: vec![1.0],
        k: 20,
        num_candidates: 3,
        label: None,
    };
    let body = knn_body(&q, ExactScores::Script);
    assert_eq!(body["knn"]["num_candidates"], 20, "raised to k");
    assert_eq!(
        body["knn"]["k"], 20,
        "the window stays within num_candidates"
    );
    assert_eq!(body["rescore"]["window_size"], 20);
    assert!(body["knn"].get("filter").is_none());
    let q = KnnQuery {
        vector: vec![1.0],
        k: 10,
        num_candidates: 1_000_000,
        label: None,
    };
    assert_eq!(
        knn_body(&q, ExactScores::RescoreVector)["knn"]["num_candidates"],
        10_000
    );
}

#[test]
fn hits_are_parsed_in_order() {
    let body = json!({ "hits": { "hits": [
        { "_id": "a", "_score": 0.9, "_source": { "name": "cat", "path": "/a.jpg" } },
        { "_id": "b", "_score": 0.5, "_source": { "name": "dog" } }
    ] } });
    let hits = parse_hits(&body).unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].id, "a");
    assert_eq!(hits[0].label, "cat");
    assert_eq!(hits[0].path, "/a.jpg");
    assert!((hits[0].score - 0.9).abs() < 1e-6);
    assert_eq!(hits[1].path, "");
    assert!(parse_hits(&json!({ "took": 1 })).is_err());
}
