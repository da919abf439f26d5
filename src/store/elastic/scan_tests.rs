//! Tests of `scan`: which servers need vectors asked for, the page body, reading a page.

use serde_json::json;

use super::*;

#[test]
fn vectors_are_asked_for_from_9_2_and_on_serverless() {
    let v = |n: &str| json!({ "version": { "number": n } });
    assert!(!source_excludes_vectors(&v("8.12.0")));
    assert!(!source_excludes_vectors(&v("8.15.3")));
    assert!(!source_excludes_vectors(&v("9.1.4")));
    assert!(source_excludes_vectors(&v("9.2.0")));
    assert!(source_excludes_vectors(&v("9.10.1-SNAPSHOT")));
    assert!(source_excludes_vectors(&v("10.0.0")));
    assert!(source_excludes_vectors(
        &json!({ "version": { "number": "8.11.0", "build_flavor": "serverless" } })
    ));
    assert!(!source_excludes_vectors(&json!({})));
}

#[test]
fn page_bodies_sort_on_the_id_field_and_continue_after_the_last_hit() {
    let first = scan_body("P", 100, None, None, false);
    assert_eq!(first["pit"], json!({ "id": "P", "keep_alive": "5m" }));
    assert_eq!(first["sort"], json!([{ "sha256": "asc" }]));
    assert_eq!(first["size"], 100);
    assert!(first.get("query").is_none() && first.get("search_after").is_none());
    assert!(first["_source"].as_array().unwrap().contains(&json!("IFV")));

    let next = scan_body("P", 100, Some("ab"), Some(&json!(["ab", 7])), true);
    assert_eq!(
        next["query"],
        json!({ "range": { "sha256": { "gt": "ab" } } })
    );
    assert_eq!(next["search_after"], json!(["ab", 7]));
    assert_eq!(next["_source"]["exclude_vectors"], json!(false));
    assert!(next["_source"]["includes"]
        .as_array()
        .unwrap()
        .contains(&json!("IFV")));
}

#[test]
fn pages_are_read_with_their_vectors() {
    let body = json!({ "hits": { "hits": [
        { "_id": "a", "sort": ["a", 1], "_source": {
            "name": "cat", "path": "/a.jpg", "IFV": [0.5, -0.25], "bytes": 10, "width": 3,
            "height": 4, "model": "m", "indexed_at": 1700000000000u64 } },
        { "_id": "b", "sort": ["b", 2], "_source": { "name": "dog", "IFV": [1, 0] } }
    ] } });
    let (docs, last) = parse_scan_page(&body).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].vector, vec![0.5, -0.25]);
    assert_eq!((docs[0].bytes, docs[0].width, docs[0].height), (10, 3, 4));
    assert_eq!(docs[0].indexed_at_ms, 1_700_000_000_000);
    assert_eq!(docs[1].label, "dog");
    assert_eq!(docs[1].vector, vec![1.0, 0.0]);
    assert_eq!(last, Some(json!(["b", 2])));

    let without = json!({ "hits": { "hits": [ { "_id": "c", "_source": { "name": "x" } } ] } });
    let err = parse_scan_page(&without).unwrap_err();
    assert!(err.contains("no IFV in _source"), "{err}");
    assert_eq!(
        parse_scan_page(&json!({ "hits": { "hits": [] } })).unwrap(),
        (vec![], None)
    );
}
