//! Tests of `exact`: the exact search body and reading the labels aggregation.

use serde_json::json;

use super::*;

#[test]
fn exact_body_is_a_script_score_with_the_l2_norm_score() {
    let q = KnnQuery {
        vector: vec![0.5, -0.5],
        k: 7,
        num_candidates: 100,
        label: None,
    };
    let body = exact_knn_body(&q);
    assert_eq!(body["size"], 7);
    let ss = &body["query"]["script_score"];
    assert_eq!(ss["query"], json!({ "match_all": {} }));
    assert_eq!(ss["script"]["params"]["query_vector"], json!([0.5, -0.5]));
    let source = ss["script"]["source"].as_str().unwrap();
    assert!(
        source.contains("l2norm(params.query_vector, 'IFV')"),
        "{source}"
    );
    assert!(source.contains("1.0 / (1.0 + d * d)"), "{source}");
    assert_eq!(body["_source"], json!(["name", "path"]));

    let q = KnnQuery {
        label: Some("cat".into()),
        ..q
    };
    assert_eq!(
        exact_knn_body(&q)["query"]["script_score"]["query"],
        json!({ "bool": { "filter": { "term": { "name": "cat" } } } })
    );
}

#[test]
fn labels_come_from_a_terms_aggregation() {
    let body = labels_body();
    assert_eq!(body["size"], 0);
    let terms = &body["aggs"]["labels"]["terms"];
    assert_eq!(terms["field"], "name");
    assert_eq!(terms["size"], MAX_LABELS);

    let answer = json!({ "aggregations": { "labels": {
        "sum_other_doc_count": 0,
        "buckets": [
            { "key": "cat", "doc_count": 3 },
            { "key": "dog", "doc_count": 5 },
            { "key": "ant", "doc_count": 3 }
        ]
    } } });
    let mut labels = parse_labels(&answer).unwrap();
    sort_labels(&mut labels);
    let order: Vec<(&str, u64)> = labels.iter().map(|l| (l.label.as_str(), l.count)).collect();
    assert_eq!(order, [("dog", 5), ("ant", 3), ("cat", 3)]);
    assert!(parse_labels(&json!({ "hits": {} })).is_err());
    let cut = json!({ "aggregations": { "labels": { "sum_other_doc_count": 4, "buckets": [] } } });
    assert!(parse_labels(&cut).unwrap_err().contains("more than"));
}
