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
