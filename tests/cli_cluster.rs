//! The Elasticsearch-only commands and flags a production cluster needs, end to end through the
//! binary: shards and replicas at `create-index`, `ingest --bulk-load`, and the connection checks
//! (credentials, `--insecure` with `--ca-cert`). Needs the server at IMGVEC_TEST_ES_URL (tests/run.sh
//! starts one); marked ignored when built with IMGVEC_SKIP_ES_TESTS=1. Only documented API behaviour
//! is asserted.

mod common;

use common::*;
use serde_json::Value;

fn get_json(idx: &TestIndex, path: &str) -> Value {
    let url = idx.es_url().expect("an Elasticsearch test index");
    idx.http()
        .get(format!("{url}/{}/{path}", idx.name))
        .send()
        .expect("GET")
        .json()
        .expect("JSON")
}

/// `index.<key>` of the test index's settings, as the server reports it (a string).
fn setting(idx: &TestIndex, key: &str) -> Option<String> {
    let v = get_json(idx, "_settings");
    v.as_object()?
        .values()
        .next()?
        .pointer(&format!("/settings/index/{key}"))?
        .as_str()
        .map(str::to_string)
}

#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn create_index_sets_shards_and_replicas_only_when_asked() {
    let idx = TestIndex::elastic("shards");
    let out = idx.run(&["create-index", "--shards", "2", "--replicas", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(setting(&idx, "number_of_shards").as_deref(), Some("2"));
    assert_eq!(setting(&idx, "number_of_replicas").as_deref(), Some("0"));

    let plain = TestIndex::elastic("noshards");
    plain.create();
    // The server's defaults (1 and 1 on Elasticsearch): nothing was sent to override them.
    assert_eq!(setting(&plain, "number_of_shards").as_deref(), Some("1"));
}

/// Creates the test index directly with this `IFV` mapping and these other properties.
fn put_index(idx: &TestIndex, ifv: Value, others: Value) {
    let url = idx.es_url().expect("an Elasticsearch test index");
    let mut props = others;
    props["IFV"] = ifv;
    let r = idx
        .http()
        .put(format!("{url}/{}", idx.name))
        .json(&serde_json::json!({ "mappings": { "properties": props } }))
        .send()
        .expect("PUT index");
    assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
}

#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn create_index_accepts_other_vector_index_types_and_names_them() {
    let dims = tiny_dims();
    let keyword = serde_json::json!({ "type": "keyword" });
    for (t, options) in [
        ("hnsw", Some("hnsw")),
        ("int4_hnsw", Some("int4_hnsw")),
        ("the server's default", None),
    ] {
        let idx = TestIndex::elastic(&format!("type-{}", options.unwrap_or("none")));
        let mut ifv = serde_json::json!({
            "type": "dense_vector", "dims": dims, "index": true, "similarity": "l2_norm"
        });
        if let Some(o) = options {
            ifv["index_options"] = serde_json::json!({ "type": o });
        }
        put_index(
            &idx,
            ifv,
            serde_json::json!({ "name": keyword, "path": keyword }),
        );
        let out = idx.run(&["create-index"]);
        assert!(out.status.success(), "{t}: {}", stderr(&out));
        if options.is_none() {
            // A server may report the default it chose (int8_hnsw on 8.14+) or none (8.12–8.13):
            // either way the index is usable.
            assert!(
                stdout(&out).contains("compatible mapping"),
                "{}",
                stdout(&out)
            );
            continue;
        }
        assert!(
            stdout(&out).contains(&format!("compatible mapping: {dims}-d {t} l2_norm")),
            "{t}: {}",
            stdout(&out)
        );
        assert!(
            stderr(&out).contains("imgvec: warning: IFV"),
            "{t}: {}",
            stderr(&out)
        );
    }
}

#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn an_index_whose_label_is_not_a_keyword_is_refused() {
    let dims = tiny_dims();
    let ifv = serde_json::json!({
        "type": "dense_vector", "dims": dims, "index": true, "similarity": "l2_norm",
        "index_options": { "type": "int8_hnsw" }
    });
    let idx = TestIndex::elastic("unmapped-name");
    put_index(
        &idx,
        ifv,
        serde_json::json!({ "path": { "type": "keyword" } }),
    );
    let out = idx.run(&["create-index"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("name: index has no such field"),
        "{}",
        stderr(&out)
    );
    // Search by label says so too, instead of silently finding nothing.
    let (_tmp, dir) = distinct_images(1);
    let img = dir.join("img0000.png");
    let out = idx.run(&["search", &img.display().to_string(), "--label", "cat"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("name: index has no such field"),
        "{}",
        stderr(&out)
    );
}

/// The tiny model's vector size.
fn tiny_dims() -> u64 {
    let cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(tiny_model_dir().join("config.json")).expect("config.json"),
    )
    .expect("config JSON");
    cfg["projection_dim"].as_u64().expect("projection_dim")
}

#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn bulk_load_puts_the_settings_back_after_the_load() {
    let idx = TestIndex::elastic("bulkload");
    let out = idx.run(&["create-index", "--replicas", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let url = idx.es_url().expect("elastic");
    let r = idx
        .http()
        .put(format!("{url}/{}/_settings", idx.name))
        .json(&serde_json::json!({ "index": { "refresh_interval": "7s" } }))
        .send()
        .expect("PUT _settings");
    assert!(r.status().is_success());

    let (_tmp, dir) = distinct_images(5);
    let out = idx.run(&[
        "ingest",
        &dir.display().to_string(),
        "--label",
        "x",
        "--bulk-load",
        "--force-merge",
        "--bulk-concurrency",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("bulk-load mode"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("index settings put back"),
        "{}",
        stderr(&out)
    );
    assert_eq!(setting(&idx, "number_of_replicas").as_deref(), Some("1"));
    assert_eq!(setting(&idx, "refresh_interval").as_deref(), Some("7s"));
    assert_eq!(idx.count(), 5);
}

#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn bulk_load_resets_settings_that_were_not_set() {
    let idx = TestIndex::elastic("bulkload-unset");
    idx.create();
    let before = setting(&idx, "refresh_interval");
    let (_tmp, dir) = distinct_images(2);
    let out = idx.run(&[
        "ingest",
        &dir.display().to_string(),
        "--label",
        "x",
        "--bulk-load",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        setting(&idx, "refresh_interval"),
        before,
        "unset again, not -1"
    );
    assert_eq!(idx.count(), 2);
}
