use serde_json::json;

use super::*;

#[test]
fn mget_documents_are_read_with_their_vectors() {
    let doc = json!({"_id": "abc", "found": true, "_source": {
        "name": "cats", "path": "/p/a.jpg", "IFV": [0.5, -0.25], "bytes": 10, "width": 3,
        "height": 4, "model": "m", "indexed_at": 1700000000000u64}});
    let d = parse_doc(&doc).unwrap().unwrap();
    assert_eq!(
        (d.id.as_str(), d.label.as_str(), d.path.as_str()),
        ("abc", "cats", "/p/a.jpg")
    );
    assert_eq!(d.vector, [0.5, -0.25]);
    assert_eq!(
        (d.bytes, d.width, d.height, d.indexed_at_ms),
        (10, 3, 4, 1_700_000_000_000)
    );

    // The original pipeline's documents have only name, path and IFV.
    let old = json!({"_id": "1001", "found": true, "_source": {"name": "dog", "path": "x", "IFV": [1.0]}});
    assert_eq!(parse_doc(&old).unwrap().unwrap().model, "");

    assert!(parse_doc(&json!({"_id": "x", "found": false}))
        .unwrap()
        .is_none());
    let no_vector = json!({"_id": "x", "found": true, "_source": {"name": "a", "path": "b"}});
    assert!(parse_doc(&no_vector)
        .unwrap_err()
        .contains("exclude_source_vectors"));
}

#[test]
fn versions_are_read_as_major_minor() {
    assert_eq!(parse_version("8.15.3"), Some((8, 15)));
    assert_eq!(parse_version("9.2.0-SNAPSHOT"), Some((9, 2)));
    assert_eq!(parse_version("9"), None);
    assert!(parse_version("9.1.4").unwrap() < EXCLUDES_VECTORS_SINCE);
    assert!(parse_version("10.0.0").unwrap() >= EXCLUDES_VECTORS_SINCE);
}
