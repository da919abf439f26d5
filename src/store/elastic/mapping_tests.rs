//! Tests of `mapping`: the index body, and what counts as a compatible existing mapping.

use serde_json::{json, Value};

use super::super::test_support::spec;
use super::*;
use crate::store::IndexSpec;

#[test]
fn index_body_is_the_template_plus_spec() {
    let body = index_body(&spec(768));
    let ifv = &body["mappings"]["properties"]["IFV"];
    assert_eq!(ifv["type"], "dense_vector");
    assert_eq!(ifv["dims"], 768);
    assert_eq!(ifv["index"], true);
    assert_eq!(ifv["similarity"], "l2_norm");
    assert_eq!(ifv["index_options"], json!({ "type": "int8_hnsw" }));
    let props = &body["mappings"]["properties"];
    for (field, ty) in [
        ("name", "keyword"),
        ("path", "keyword"),
        ("sha256", "keyword"),
        ("bytes", "long"),
        ("width", "integer"),
        ("height", "integer"),
        ("model", "keyword"),
        ("indexed_at", "date"),
        ("mtime", "date"),
    ] {
        assert_eq!(props[field]["type"], ty, "{field}");
    }
    assert_eq!(props["indexed_at"]["format"], "epoch_millis");
    assert_eq!(body["settings"]["index"]["number_of_shards"], 1);
    // What the store writes is exactly what the mapping declares.
    let mut declared: Vec<&str> = props
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    declared.sort_unstable();
    // `mtime` is written when the index has it (indices made before it existed do not).
    let mut written = written_fields().to_vec();
    written.push(MTIME_FIELD);
    written.sort_unstable();
    assert_eq!(declared, written);
    // A freshly made mapping is compatible with its own spec.
    assert!(mapping_differences(&body["mappings"], &spec(768)).is_empty());
}

#[test]
fn index_body_sets_hnsw_parameters_when_given() {
    let body = index_body(&IndexSpec {
        dims: 512,
        hnsw_m: Some(32),
        hnsw_ef_construction: Some(200),
    });
    assert_eq!(
        body["mappings"]["properties"]["IFV"]["index_options"],
        json!({ "type": "int8_hnsw", "m": 32, "ef_construction": 200 })
    );
}

#[test]
fn differences_name_each_mismatch() {
    let existing = json!({
        "properties": {
            "IFV": {
                "type": "dense_vector", "dims": 512, "index": true,
                "similarity": "cosine", "index_options": { "type": "bbq_hnsw" }
            },
            "name": { "type": "text", "fields": { "keyword": { "type": "keyword" } } }
        }
    });
    let d = mapping_differences(&existing, &spec(768));
    assert_eq!(
        d,
        vec![
            "IFV dims: index has 512, model makes 768".to_string(),
            "IFV similarity: index has cosine, expected l2_norm".to_string(),
            "IFV index_options.type: index has bbq_hnsw, expected int8_hnsw".to_string(),
            "name type: index has text, expected keyword (the label filter matches it exactly)"
                .to_string(),
        ]
    );
}

#[test]
fn differences_for_missing_or_wrong_vector_field() {
    let d = mapping_differences(&json!({ "properties": {} }), &spec(8));
    assert_eq!(d.len(), 1);
    assert!(d[0].starts_with("IFV: index has no such field"), "{d:?}");

    let d = mapping_differences(
        &json!({ "properties": { "IFV": { "type": "float" } } }),
        &spec(8),
    );
    assert_eq!(d, vec!["IFV type: index has float, expected dense_vector"]);

    let d = mapping_differences(
        &json!({ "properties": { "IFV": {
            "type": "dense_vector", "dims": 8, "element_type": "byte", "index": false } } }),
        &spec(8),
    );
    assert!(
        d.iter().any(|s| s.contains("element_type: index has byte")),
        "{d:?}"
    );
    assert!(
        d.iter().any(|s| s.contains("IFV index: index has false")),
        "{d:?}"
    );
    assert!(
        d.iter()
            .any(|s| s.contains("similarity: index has none set")),
        "{d:?}"
    );
}

#[test]
fn differences_accept_python_pipeline_index_without_index_options() {
    // A 3-field index as the original pipeline made it, dynamic mapping left on.
    let existing = json!({
        "properties": {
            "IFV": { "type": "dense_vector", "dims": 768, "index": true, "similarity": "l2_norm" },
            "name": { "type": "keyword" },
            "path": { "type": "keyword" }
        }
    });
    assert!(mapping_differences(&existing, &spec(768)).is_empty());
    // The same with dynamic: strict cannot take the extra fields.
    let mut strict = existing.clone();
    strict["dynamic"] = json!("strict");
    let d = mapping_differences(&strict, &spec(768));
    assert_eq!(d.len(), 6, "{d:?}");
    assert!(d[0].starts_with("sha256: index has no such field"));
}

#[test]
fn vector_dims_reads_the_mapping() {
    assert_eq!(vector_dims(&index_body(&spec(16))["mappings"]), Some(16));
    assert_eq!(vector_dims(&json!({ "properties": {} })), None);
    assert_eq!(vector_dims(&Value::Null), None);
}
