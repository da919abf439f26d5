//! The commands a user runs, end to end, on both backends: the embedded store and Elasticsearch.
//!
//! The Elasticsearch part needs a server speaking Elastic's REST API at IMGVEC_TEST_ES_URL
//! (tests/run.sh starts one); the very same tests run against a real Elasticsearch 8.12+/9.x. Only
//! documented API behaviour is asserted, never exact ANN scores. Each test uses its own index.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::{json, Value};

fn ok_out(idx: &TestIndex, out: Output) -> Output {
    ok(idx, &out);
    out
}

/// train/cats: chelsea (a cat), synth_alpha; train/dogs: coffee, rocket; plus a hidden file.
fn cats_and_dogs() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train");
    let img = fixtures().join("images");
    for (dir, files) in [
        ("cats", ["chelsea.png", "synth_alpha.png"]),
        ("dogs", ["coffee.png", "rocket.jpg"]),
    ] {
        std::fs::create_dir_all(train.join(dir)).unwrap();
        for f in files {
            std::fs::copy(img.join(f), train.join(dir).join(f)).unwrap();
        }
    }
    std::fs::copy(img.join("camera.png"), train.join("cats/.hidden.png")).unwrap();
    (tmp, train)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

backend_test! {
    fn create_index_is_idempotent_and_recreate_asks(idx) {
        let out = idx.run(&["create-index"]);
        assert!(ok(&idx, &out).contains("created"), "{}", stdout(&out));
        let again = idx.run(&["create-index"]);
        assert!(
            ok(&idx, &again).contains("already exists"),
            "{}",
            stdout(&again)
        );
        let refuse = idx.run(&["create-index", "--recreate"]);
        assert!(!refuse.status.success(), "[{}]", idx.kind());
        assert!(stderr(&refuse).contains("--yes"), "{}", stderr(&refuse));
        let img = fixtures().join("images/chelsea.png");
        ok(&idx, &idx.run(&["ingest", s(&img), "--label", "x"]));
        assert_eq!(idx.count(), 1);
        ok(&idx, &idx.run(&["create-index", "--recreate", "--yes"]));
        assert_eq!(idx.count(), 0, "[{}] recreated empty", idx.kind());
    }
}

#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn elastic_mapping_as_created() {
    let idx = TestIndex::elastic("mapping");
    idx.create();
    let url = idx.es_url().unwrap();
    let m: Value = idx
        .http()
        .get(format!("{url}/{}/_mapping", idx.name))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let props = &m[&idx.name]["mappings"]["properties"];
    assert_eq!(props["IFV"]["type"], "dense_vector");
    assert_eq!(props["IFV"]["dims"], 32, "dims from the model's config");
    assert_eq!(props["IFV"]["similarity"], "l2_norm");
    assert_eq!(props["IFV"]["index"], true);
    assert_eq!(props["IFV"]["index_options"]["type"], "int8_hnsw");
    assert_eq!(props["name"]["type"], "keyword");
    assert_eq!(props["path"]["type"], "keyword");
}

#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn an_incompatible_index_is_refused() {
    let idx = TestIndex::elastic("incompatible");
    let url = idx.es_url().unwrap();
    let body = json!({"mappings": {"properties": {
        "IFV": {"type": "dense_vector", "dims": 16, "index": true, "similarity": "l2_norm",
                "index_options": {"type": "int8_hnsw"}},
        "name": {"type": "keyword"}, "path": {"type": "keyword"}}}});
    let r = idx
        .http()
        .put(format!("{url}/{}", idx.name))
        .json(&body)
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let out = idx.run(&["create-index"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("dims") && err.contains("16") && err.contains("32"),
        "{err}"
    );
    let img = fixtures().join("images/chelsea.png");
    let out = idx.run(&["search", s(&img)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("16-d") && stderr(&out).contains("32-d"),
        "{}",
        stderr(&out)
    );
}

backend_test! {
    fn ingest_from_dirs_then_search_by_image(idx) {
        idx.create();
        let (_tmp, train) = cats_and_dogs();
        let summary = ok(&idx, &idx.run(&["ingest", s(&train), "--label-from-dir"]));
        assert!(summary.contains("indexed 4"), "[{}] {summary}", idx.kind());
        assert_eq!(idx.count(), 4, "[{}] hidden files are skipped", idx.kind());

        // An image searched finds itself first.
        let query = train.join("cats/chelsea.png");
        let hits = json_lines(&ok(
            &idx,
            &idx.run(&["search", s(&query), "-k", "3", "--json"]),
        ));
        assert_eq!(hits.len(), 3);
        let first = &hits[0];
        assert_eq!(first["rank"], 1);
        assert_eq!(first["label"], "cats");
        assert!(
            first["path"]
                .as_str()
                .unwrap()
                .ends_with("cats/chelsea.png"),
            "{first}"
        );
        assert!(Path::new(first["path"].as_str().unwrap()).is_absolute());
        for key in ["score", "distance", "id"] {
            assert!(!first[key].is_null(), "{key} missing in {first}");
        }
        let (score, dist) = (
            first["score"].as_f64().unwrap(),
            first["distance"].as_f64().unwrap(),
        );
        assert!(
            (score - 1.0 / (1.0 + dist * dist)).abs() < 1e-4,
            "score = 1/(1+d²)"
        );
        let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
        assert!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "best first: {scores:?}"
        );

        // The label filter applies inside kNN: only dogs, and both of them, even with k = 2.
        let out = idx.run(&["search", s(&query), "-k", "2", "--label", "dogs", "--json"]);
        let hits = json_lines(&ok(&idx, &out));
        assert_eq!(hits.len(), 2, "[{}]", idx.kind());
        assert!(hits.iter().all(|h| h["label"] == "dogs"), "{hits:?}");

        // Human-readable output names rank, score, label and path.
        let text = ok(&idx, &idx.run(&["search", s(&query), "-k", "1"]));
        assert!(
            text.contains("rank") && text.contains("chelsea.png") && text.contains("cats"),
            "{text}"
        );
    }
}

backend_test! {
    fn reingest_is_idempotent_and_labels_never_overwrite(idx) {
        idx.create();
        let (_tmp, train) = cats_and_dogs();
        ok(
            &idx,
            &idx.run(&["ingest", s(&train.join("cats")), "--label", "cat"]),
        );
        assert_eq!(idx.count(), 2);
        let again = ok(
            &idx,
            &idx.run(&["ingest", s(&train.join("cats")), "--label", "cat"]),
        );
        assert!(
            again.contains("indexed 0") && again.contains("already present 2"),
            "{again}"
        );
        assert_eq!(idx.count(), 2);
        // The same bytes under another label: kept as they were.
        ok(
            &idx,
            &idx.run(&[
                "ingest",
                s(&train.join("cats/chelsea.png")),
                "--label",
                "dog",
            ]),
        );
        assert_eq!(idx.count(), 2);
        let q = train.join("cats/chelsea.png");
        let hits = json_lines(&ok(&idx, &idx.run(&["search", s(&q), "-k", "2", "--json"])));
        assert!(
            hits.iter().all(|h| h["label"] == "cat"),
            "[{}] {hits:?}",
            idx.kind()
        );
        // --force re-embeds and overwrites.
        let forced = ok(
            &idx,
            &idx.run(&[
                "ingest",
                s(&train.join("cats")),
                "--label",
                "cat",
                "--force",
                "--json",
            ]),
        );
        let summary: Value = serde_json::from_str(forced.trim()).unwrap();
        assert_eq!(summary["indexed"], 2, "{summary}");
        assert_eq!(idx.count(), 2);
    }
}

backend_test! {
    fn a_folder_with_corrupt_files(idx) {
        idx.create();
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::copy(fixtures().join("images/chelsea.png"), d.join("good1.png")).unwrap();
        std::fs::copy(
            fixtures().join("images/synth_wide.jpg"),
            d.join("good2.jpg"),
        )
        .unwrap();
        let rocket = std::fs::read(fixtures().join("images/rocket.jpg")).unwrap();
        std::fs::write(d.join("truncated.jpg"), &rocket[..500]).unwrap();
        std::fs::write(d.join("fake.png"), b"not a png").unwrap();
        let out = idx.run(&["ingest", s(d), "--label", "x", "--json"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let summary: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(summary["indexed"], 2, "{summary}");
        assert_eq!(summary["failed"], 2, "{summary}");
        let failures = summary["failures"].to_string();
        assert!(
            failures.contains("truncated.jpg") && failures.contains("fake.png"),
            "{failures}"
        );
        assert_eq!(idx.count(), 2);
    }
}

backend_test! {
    fn ingest_creates_a_missing_index_and_search_explains(idx) {
        let img = fixtures().join("images/chelsea.png");
        let out = idx.run(&["search", s(&img)]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("imgvec create-index"),
            "[{}] {}",
            idx.kind(),
            stderr(&out)
        );
        // ingest creates exactly the index create-index would, and says so in one line.
        let out = idx.run(&["ingest", s(&img), "--label", "x"]);
        ok(&idx, &out);
        let err = stderr(&out);
        assert_eq!(err.matches("created index").count(), 1, "[{}] {err}", idx.kind());
        assert!(err.contains("32-d"), "{err}");
        assert_eq!(idx.count(), 1);
        let again = idx.run(&["create-index"]);
        assert!(ok(&idx, &again).contains("already exists"), "{}", stdout(&again));
        let out = idx.run(&["ingest", s(&img), "--label", "x"]);
        assert!(!stderr(&ok_out(&idx, out)).contains("created index"));
    }
}

#[test]
fn server_down_is_a_clear_error() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let img = fixtures().join("images/chelsea.png");
    let out = imgvec_env(
        &["search", s(&img), "--es-url", &url],
        &[("IMGVEC_ES_MAX_RETRIES", "1")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&url) && err.contains("cannot reach"), "{err}");
}

#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn a_plain_knn_query_finds_what_imgvec_indexed() {
    // The original Python pipeline queried the index itself: es.search(index=..., knn={...}).
    let idx = TestIndex::elastic("interop");
    idx.create();
    let img = fixtures().join("images/coffee.png");
    ok(&idx, &idx.run(&["ingest", s(&img), "--label", "coffee"]));
    let out = imgvec(&["embed", s(&img), "--json"]);
    let v = &json_lines(&stdout(&out))[0]["embedding"];
    let url = idx.es_url().unwrap();
    let r: Value = idx
        .http()
        .post(format!("{url}/{}/_search", idx.name))
        .json(&json!({
            "knn": {"field": "IFV", "query_vector": v, "k": 1, "num_candidates": 10},
            "_source": ["name", "path"]
        }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let hit = &r["hits"]["hits"][0];
    assert_eq!(hit["_source"]["name"], "coffee");
    assert!(hit["_source"]["path"]
        .as_str()
        .unwrap()
        .ends_with("coffee.png"));
}

backend_test! {
    fn search_by_text(idx) {
        idx.create();
        let (_tmp, train) = cats_and_dogs();
        ok(&idx, &idx.run(&["ingest", s(&train), "--label-from-dir"]));
        let hits = json_lines(&ok(
            &idx,
            &idx.run(&["search", "--text", "a photo of a cat", "-k", "4", "--json"]),
        ));
        assert_eq!(hits.len(), 4);
        let out = idx.run(&[
            "search",
            "--text",
            "a photo of a cat",
            "--label",
            "cats",
            "--json",
        ]);
        let hits = json_lines(&ok(&idx, &out));
        assert_eq!(hits.len(), 2);
        assert!(hits.iter().all(|h| h["label"] == "cats"));
        // Image plus text, and text minus text, both run.
        let q = train.join("dogs/coffee.png");
        ok(
            &idx,
            &idx.run(&["search", s(&q), "--text", "a cup of coffee", "-k", "1"]),
        );
        ok(
            &idx,
            &idx.run(&["search", "--text", "cat", "--minus", "indoors", "-k", "1"]),
        );
    }
}

backend_test! {
    fn info_reports_the_index(idx) {
        idx.create();
        ok(
            &idx,
            &idx.run(&[
                "ingest",
                s(&fixtures().join("images/coffee.png")),
                "--label",
                "c",
            ]),
        );
        let v: Value =
            serde_json::from_str(ok(&idx, &idx.run(&["info", "--json"])).trim()).unwrap();
        assert_eq!(v["documents"], 1);
        assert_eq!(v["dims"], 32);
        let linear = v["cpu"]["linear_layers"].as_str().unwrap_or_default();
        assert!(
            ["amx-bf16x3", "avx512", "avx2+fma", "none"].contains(&linear),
            "{v}"
        );
        assert!(v["cpu"]["threads"].as_u64().is_some_and(|t| t >= 1), "{v}");
        let precisions: Vec<&str> = v["cpu"]["precisions"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(precisions.first(), Some(&"f32"), "{v}");
        assert!(precisions.iter().all(|p| ["f32", "bf16", "int8"].contains(p)), "{v}");
        assert!(v["raw_formats"].as_array().is_some_and(|f| f.contains(&json!("CR3"))), "{v}");
        assert_eq!(v["heif"]["formats"], json!(["HEIC", "HEIF", "AVIF"]), "{v}");
        assert_eq!(v["heif"]["supported"], json!(cfg!(feature = "heif")), "{v}");
        assert_eq!(v["heif"]["libheif"].is_string(), cfg!(feature = "heif"), "{v}");
        let human = ok(&idx, &idx.run(&["info"]));
        assert!(human.contains("formats: JPEG, PNG") && human.contains("DNG"), "{human}");
        assert!(human.contains("HEIC, HEIF, AVIF"), "{human}");
        assert!(human.contains(&format!("cpu: linear layers on {linear}")), "{human}");
        assert!(
            human.contains(&format!("--precision {}", precisions.join(", "))),
            "{human}"
        );
        assert!(
            human.contains("1 image") && human.contains(&idx.name),
            "{human}"
        );
    }
}

#[test]
fn the_default_store_needs_no_server() {
    // No URL anywhere: the embedded store in --store.
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("data");
    let img = fixtures().join("images/chelsea.png");
    let st = s(&store);
    for args in [
        vec!["create-index", "--store", st],
        vec!["ingest", s(&img), "--label", "cat", "--store", st],
    ] {
        let out = imgvec(&args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = imgvec(&["search", s(&img), "--store", st, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&stdout(&out))[0]["label"], "cat");
    assert!(store.join("imgvec.sqlite3").is_file());
}

backend_test! {
    fn shards_split_an_ingest_without_overlap(idx) {
        const N: u64 = 30;
        let (_tmp, dir) = distinct_images(N as usize);
        let mut total = 0;
        for i in 1..=3 {
            let shard = format!("{i}/3");
            let out = idx.run(&["ingest", s(&dir), "--label", "x", "--json", "--shard", &shard]);
            let v: Value = serde_json::from_str(ok(&idx, &out).trim()).unwrap();
            let indexed = v["indexed"].as_u64().unwrap();
            assert_eq!(v["already_present"], 0, "[{}] shard {shard} overlaps: {v}", idx.kind());
            assert_eq!(indexed + v["other_shards"].as_u64().unwrap(), N, "{v}");
            assert!(indexed > 0, "shard {shard} took nothing of {N}: {v}");
            total += indexed;
        }
        assert_eq!(total, N);
        assert_eq!(idx.count(), N);
        // The union is the whole: a plain ingest finds nothing left to do.
        let out = idx.run(&["ingest", s(&dir), "--label", "x", "--json"]);
        let v: Value = serde_json::from_str(ok(&idx, &out).trim()).unwrap();
        assert_eq!((v["indexed"].as_u64(), v["already_present"].as_u64()), (Some(0), Some(N)), "{v}");
        let bad = idx.run(&["ingest", s(&dir), "--label", "x", "--shard", "4/3"]);
        assert_eq!(bad.status.code(), Some(2), "a bad --shard is a usage error");
    }
}

/// The tiny model with other weights (one byte of the first tensor changed), same config and size.
fn other_tiny_model() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("clip-tiny-other");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(tiny_model_dir()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let weights = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[8 + header] ^= 0x01;
    std::fs::write(&weights, bytes).unwrap();
    (tmp, dir)
}

backend_test! {
    fn index_remembers_its_model_and_refuses_another(idx) {
        let img = fixtures().join("images/chelsea.png");
        ok(&idx, &idx.run(&["ingest", s(&img), "--label", "cat"]));
        let info = idx.run(&["info", "--json"]);
        let v: Value = serde_json::from_str(stdout(&info).trim()).unwrap();
        let model = &v["index_model"];
        assert_eq!(model["family"], "clip", "[{}] {v}", idx.kind());
        assert_eq!(model["dims"], 32);
        assert!(model["name"].as_str().unwrap().starts_with("clip-tiny"), "{model}");
        let fingerprint = model["fingerprint"].as_str().unwrap().to_string();
        assert_eq!(fingerprint.len(), 64);
        let text = stdout(&idx.run(&["info"]));
        assert!(text.contains("filled by model clip-tiny"), "{text}");

        // The same weights in another directory are the same model.
        let (_same_tmp, same) = other_tiny_model();
        std::fs::copy(tiny_model_dir().join("model.safetensors"), same.join("model.safetensors")).unwrap();
        let out = idx.run(&["search", "--text", "a cat", "--model-dir", s(&same)]);
        ok(&idx, &out);

        // Other weights, same size: refused by ingest and search, naming both models.
        let (_tmp, other) = other_tiny_model();
        for args in [
            vec!["ingest", s(&fixtures().join("images/coffee.png")), "--label", "cup"],
            vec!["search", "--text", "a cat"],
            vec!["search", s(&img)],
        ] {
            let mut args = args.clone();
            args.extend(["--model-dir", s(&other)]);
            let out = idx.run(&args);
            assert!(!out.status.success(), "[{}] {args:?} should be refused", idx.kind());
            let err = stderr(&out);
            assert!(err.contains("was filled by model clip-tiny"), "{err}");
            assert!(err.contains(&fingerprint[..12]), "names the index's model: {err}");
            assert!(err.contains("clip-tiny-other"), "names the command's model: {err}");
        }
        assert_eq!(idx.count(), 1, "[{}] nothing was written", idx.kind());
    }
}

/// The precision besides f32 that this build's CPU runs (build.rs's cfgs), if any.
const REDUCED_PRECISION: Option<&str> = if cfg!(cpu_avx512_bf16) {
    Some("bf16")
} else if cfg!(cpu_avx512_vnni) || cfg!(cpu_avx2) {
    // int8 runs wherever AVX2 does (with VNNI or without).
    Some("int8")
} else {
    None
};

backend_test! {
    fn index_records_the_precisions_that_filled_it(idx) {
        let precisions = |idx: &TestIndex| -> Value {
            let info = idx.run(&["info", "--json"]);
            let v: Value = serde_json::from_str(ok(idx, &info).trim()).unwrap();
            v["index_model"]["precisions"].clone()
        };
        let chelsea = fixtures().join("images/chelsea.png");
        ok(&idx, &idx.run(&["ingest", s(&chelsea), "--label", "cat"]));
        assert_eq!(precisions(&idx), json!(["f32"]), "[{}]", idx.kind());
        assert!(stdout(&idx.run(&["info"])).contains("vectors in f32"));
        // Another precision of the same model is allowed, said once, and recorded after f32;
        // where this CPU runs none, a second f32 run leaves the record as it was.
        let p = REDUCED_PRECISION.unwrap_or("f32");
        let coffee = fixtures().join("images/coffee.png");
        let out = idx.run(&["ingest", s(&coffee), "--label", "cup", "--precision", p]);
        ok(&idx, &out);
        let noted = stderr(&out).contains("holds f32 vectors; this run adds");
        assert_eq!(noted, p != "f32", "[{}] {}", idx.kind(), stderr(&out));
        let want = if p == "f32" { json!(["f32"]) } else { json!(["f32", p]) };
        assert_eq!(precisions(&idx), want, "[{}]", idx.kind());
        let info = stdout(&idx.run(&["info"]));
        assert!(info.contains(&format!("vectors in {}", want.as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect::<Vec<_>>().join("+"))), "{info}");
        // Searches see both.
        let out = idx.run(&["search", "--text", "a cup", "-k", "5", "--json"]);
        assert_eq!(json_lines(ok(&idx, &out).trim()).len(), 2, "[{}]", idx.kind());
        assert_eq!(idx.count(), 2);
    }
}
