//! Tests of `mapping`: the index body, and what counts as a compatible existing mapping.

use serde_json::{json, Value};

use super::super::compat::{check_mapping, mapping_differences};
use super::super::test_support::{fake_server, fast_store, spec};
use super::*;
use crate::store::{IndexSpec, VectorStore};

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
    assert!(
        body.get("settings").is_none(),
        "no settings unless asked: Serverless refuses shard settings"
    );
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
        ..IndexSpec::for_dims(512)
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
            "name type: index has text, expected keyword (the label filter matches it exactly)"
                .to_string(),
        ]
    );
}

#[test]
fn differences_for_missing_or_wrong_vector_field() {
    let name = json!({ "type": "keyword" });
    let d = mapping_differences(&json!({ "properties": { "name": name } }), &spec(8));
    assert_eq!(d.len(), 1);
    assert!(d[0].starts_with("IFV: index has no such field"), "{d:?}");

    let d = mapping_differences(
        &json!({ "properties": { "IFV": { "type": "float" }, "name": name } }),
        &spec(8),
    );
    assert_eq!(d, vec!["IFV type: index has float, expected dense_vector"]);

    let d = mapping_differences(
        &json!({ "properties": { "name": name, "IFV": {
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

#[test]
fn shards_and_replicas_are_sent_only_when_given() {
    let body = index_body(&IndexSpec {
        shards: Some(3),
        replicas: Some(0),
        ..spec(8)
    });
    assert_eq!(
        body["settings"],
        json!({ "index": { "number_of_shards": 3, "number_of_replicas": 0 } })
    );
    let body = index_body(&IndexSpec {
        replicas: Some(2),
        ..spec(8)
    });
    assert_eq!(
        body["settings"],
        json!({ "index": { "number_of_replicas": 2 } })
    );
}

#[tokio::test]
async fn create_index_request_carries_no_settings_by_default() {
    let (url, seen) = fake_server(vec![
        (404, ""),
        (200, r#"{"acknowledged":true,"index":"idx"}"#),
    ]);
    let store = fast_store(&url, 0);
    store.ensure_index(&spec(8)).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let (line, body) = seen[1].split_once('\n').unwrap();
    assert_eq!(line, "PUT /idx");
    let body: Value = serde_json::from_str(body).unwrap();
    assert!(body.get("settings").is_none(), "{body}");
    assert_eq!(body["mappings"]["properties"]["IFV"]["dims"], 8);
}

fn vector_mapping(index_options: Option<Value>) -> Value {
    let mut ifv =
        json!({ "type": "dense_vector", "dims": 768, "index": true, "similarity": "l2_norm" });
    if let Some(o) = index_options {
        ifv["index_options"] = o;
    }
    json!({ "properties": {
        "IFV": ifv, "name": { "type": "keyword" }, "path": { "type": "keyword" }
    } })
}

#[test]
fn every_hnsw_or_flat_variant_is_usable_and_named() {
    let check = check_mapping(
        &vector_mapping(Some(json!({ "type": "int8_hnsw", "m": 16 }))),
        &spec(768),
    );
    assert_eq!(check.errors, Vec::<String>::new());
    assert_eq!(check.warnings, Vec::<String>::new());
    assert_eq!(check.vector_index.as_deref(), Some("int8_hnsw"));
    for t in [
        "hnsw",
        "int4_hnsw",
        "bbq_hnsw",
        "flat",
        "int8_flat",
        "int4_flat",
        "bbq_flat",
        "bbq_disk",
    ] {
        let check = check_mapping(&vector_mapping(Some(json!({ "type": t }))), &spec(768));
        assert!(check.errors.is_empty(), "{t}: {:?}", check.errors);
        assert_eq!(check.vector_index.as_deref(), Some(t));
        assert_eq!(check.warnings.len(), 1, "{t}: {:?}", check.warnings);
        assert!(
            check.warnings[0].starts_with(&format!("IFV index_options.type is {t}, not int8_hnsw")),
            "{:?}",
            check.warnings
        );
    }
    // None stated (8.12–8.13 float hnsw, 9.1+ bbq_hnsw for ≥ 384 dims): usable, said so.
    let check = check_mapping(&vector_mapping(None), &spec(768));
    assert!(check.errors.is_empty(), "{:?}", check.errors);
    assert_eq!(check.vector_index, None);
    assert!(
        check.warnings[0].contains("server's default"),
        "{:?}",
        check.warnings
    );
    assert!(
        check.warnings[0].contains("bbq_hnsw"),
        "{:?}",
        check.warnings
    );
}

#[test]
fn an_unmapped_or_text_label_is_an_error_and_a_text_path_a_warning() {
    let mut m = vector_mapping(Some(json!({ "type": "int8_hnsw" })));
    m["properties"].as_object_mut().unwrap().remove("name");
    m["properties"]["path"] = json!({ "type": "text" });
    let check = check_mapping(&m, &spec(768));
    assert_eq!(check.errors.len(), 1, "{:?}", check.errors);
    assert!(
        check.errors[0].starts_with("name: index has no such field"),
        "{:?}",
        check.errors
    );
    assert!(check.errors[0].contains("dynamically as text"));
    assert_eq!(check.warnings.len(), 1, "{:?}", check.warnings);
    assert!(check.warnings[0].starts_with("path is text, not keyword"));
}

#[test]
fn the_model_is_recorded_in_meta_and_read_back() {
    let model = crate::store::ModelRecord {
        name: "m".into(),
        family: "chinese_clip".into(),
        dims: 512,
        fingerprint: Some("ab".into()),
        precisions: vec!["f32".into(), "int8".into()],
    };
    let body = index_body(&IndexSpec::for_model(&model));
    assert_eq!(
        body["mappings"]["_meta"]["imgvec"]["model"]["family"],
        "chinese_clip"
    );
    assert_eq!(body["mappings"]["properties"]["IFV"]["dims"], 512);
    assert_eq!(model_record(&body["mappings"]), Ok(Some(model)));
    assert_eq!(model_record(&json!({"properties": {}})), Ok(None));
    let bad = json!({"_meta": {"imgvec": {"model": {"name": 3}}}});
    assert!(model_record(&bad).unwrap_err().contains("unreadable"));
}
