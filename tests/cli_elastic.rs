//! The commands a user runs against Elasticsearch, end to end: create-index, ingest, search.
//!
//! Needs a server speaking Elastic's REST API at IMGVEC_TEST_ES_URL (tests/run.sh starts one); the
//! very same tests run against a real Elasticsearch 8.12+/9.x. Only documented API behaviour is
//! asserted, never exact ANN scores. Each test uses its own index and deletes it afterwards.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::{json, Value};

fn es_url() -> Option<String> {
    match std::env::var("IMGVEC_TEST_ES_URL") {
        Ok(u) if !u.is_empty() => Some(u.trim_end_matches('/').to_string()),
        _ if std::env::var("IMGVEC_SKIP_ES_TESTS").as_deref() == Ok("1") => {
            eprintln!("skipped: IMGVEC_SKIP_ES_TESTS=1");
            None
        }
        _ => panic!(
            "IMGVEC_TEST_ES_URL is not set: run the tests with `bash tests/run.sh` (it starts a test \
server), point IMGVEC_TEST_ES_URL at an Elasticsearch, or set IMGVEC_SKIP_ES_TESTS=1"
        ),
    }
}

/// One test's index on the test server, deleted when dropped.
struct Index {
    url: String,
    name: String,
    http: reqwest::blocking::Client,
}

impl Index {
    fn new(test: &str) -> Option<Self> {
        let url = es_url()?;
        let name = format!("imgvec-cli-{test}-{}", std::process::id());
        let idx = Self {
            url,
            name,
            http: reqwest::blocking::Client::new(),
        };
        idx.delete();
        Some(idx)
    }

    fn delete(&self) {
        let _ = self
            .http
            .delete(format!("{}/{}", self.url, self.name))
            .send();
    }

    /// Runs imgvec against this index.
    fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--index", &self.name]);
        imgvec_env(&all, &[("IMGVEC_ES_URL", &self.url)])
    }

    fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/{}{path}", self.url, self.name))
            .send()
            .unwrap();
        r.json().unwrap()
    }

    fn count(&self) -> u64 {
        self.http
            .post(format!("{}/{}/_refresh", self.url, self.name))
            .send()
            .unwrap();
        self.get("/_count")["count"].as_u64().unwrap()
    }

    fn search_raw(&self, body: &Value) -> Value {
        let r = self
            .http
            .post(format!("{}/{}/_search", self.url, self.name))
            .json(body)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text());
        r.json().unwrap()
    }

    fn create(&self) {
        let out = self.run(&["create-index"]);
        assert!(out.status.success(), "create-index: {}", stderr(&out));
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        self.delete();
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
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

#[test]
fn create_index_makes_the_documented_mapping() {
    let Some(idx) = Index::new("mapping") else {
        return;
    };
    let out = idx.run(&["create-index"]);
    assert!(ok(&out).contains("created"), "{}", stdout(&out));
    let m = idx.get("/_mapping");
    let props = &m[&idx.name]["mappings"]["properties"];
    assert_eq!(props["IFV"]["type"], "dense_vector");
    assert_eq!(props["IFV"]["dims"], 32, "dims from the model's config");
    assert_eq!(props["IFV"]["similarity"], "l2_norm");
    assert_eq!(props["IFV"]["index"], true);
    assert_eq!(props["IFV"]["index_options"]["type"], "int8_hnsw");
    assert_eq!(props["name"]["type"], "keyword");
    assert_eq!(props["path"]["type"], "keyword");
    // Again: compatible, says so, succeeds.
    let again = idx.run(&["create-index"]);
    assert!(ok(&again).contains("already exists"), "{}", stdout(&again));
    // --recreate without a terminal needs --yes.
    let refuse = idx.run(&["create-index", "--recreate"]);
    assert!(!refuse.status.success());
    assert!(stderr(&refuse).contains("--yes"), "{}", stderr(&refuse));
    ok(&idx.run(&["create-index", "--recreate", "--yes"]));
}

#[test]
fn create_index_refuses_an_incompatible_index() {
    let Some(idx) = Index::new("incompatible") else {
        return;
    };
    let body = json!({"mappings": {"properties": {
        "IFV": {"type": "dense_vector", "dims": 16, "index": true, "similarity": "l2_norm",
                "index_options": {"type": "int8_hnsw"}},
        "name": {"type": "keyword"}, "path": {"type": "keyword"}}}});
    let r = idx
        .http
        .put(format!("{}/{}", idx.url, idx.name))
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
    // Ingest and search refuse too, naming both sizes.
    let img = fixtures().join("images/chelsea.png");
    let out = idx.run(&["search", s(&img)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("16-d") && stderr(&out).contains("32-d"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ingest_from_dirs_then_search_by_image() {
    let Some(idx) = Index::new("cats-dogs") else {
        return;
    };
    idx.create();
    let (_tmp, train) = cats_and_dogs();
    let out = idx.run(&["ingest", s(&train), "--label-from-dir"]);
    let summary = ok(&out);
    assert!(summary.contains("indexed 4"), "{summary}");
    assert_eq!(idx.count(), 4, "hidden files are skipped");

    // An image searched finds itself first.
    let query = train.join("cats/chelsea.png");
    let out = idx.run(&["search", s(&query), "-k", "3", "--json"]);
    let hits = json_lines(&ok(&out));
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
    let hits = json_lines(&ok(&out));
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h["label"] == "dogs"), "{hits:?}");

    // Human-readable output names rank, score, label and path.
    let out = idx.run(&["search", s(&query), "-k", "1"]);
    let text = ok(&out);
    assert!(
        text.contains("rank") && text.contains("chelsea.png") && text.contains("cats"),
        "{text}"
    );
}

#[test]
fn reingest_is_idempotent_and_labels_never_overwrite() {
    let Some(idx) = Index::new("idempotent") else {
        return;
    };
    idx.create();
    let (_tmp, train) = cats_and_dogs();
    ok(&idx.run(&["ingest", s(&train.join("cats")), "--label", "cat"]));
    assert_eq!(idx.count(), 2);
    let again = ok(&idx.run(&["ingest", s(&train.join("cats")), "--label", "cat"]));
    assert!(
        again.contains("indexed 0") && again.contains("already present 2"),
        "{again}"
    );
    assert_eq!(idx.count(), 2);
    // The same bytes under another label: kept as they were.
    ok(&idx.run(&[
        "ingest",
        s(&train.join("cats/chelsea.png")),
        "--label",
        "dog",
    ]));
    assert_eq!(idx.count(), 2);
    let hits = idx.search_raw(&json!({"query": {"term": {"name": "dog"}}}));
    assert_eq!(hits["hits"]["hits"].as_array().unwrap().len(), 0);
    // --force re-embeds and overwrites.
    let forced = ok(&idx.run(&[
        "ingest",
        s(&train.join("cats")),
        "--label",
        "cat",
        "--force",
        "--json",
    ]));
    let summary: Value = serde_json::from_str(forced.trim()).unwrap();
    assert_eq!(summary["indexed"], 2, "{summary}");
    assert_eq!(idx.count(), 2);
}

#[test]
fn a_folder_with_corrupt_files() {
    let Some(idx) = Index::new("corrupt") else {
        return;
    };
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

#[test]
fn missing_index_says_what_to_do() {
    let Some(idx) = Index::new("missing") else {
        return;
    };
    let img = fixtures().join("images/chelsea.png");
    for args in [
        vec!["search", s(&img)],
        vec!["ingest", s(&img), "--label", "x"],
    ] {
        let out = idx.run(&args);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("imgvec create-index"),
            "{}",
            stderr(&out)
        );
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
fn no_url_is_a_clear_error() {
    let img = fixtures().join("images/chelsea.png");
    let out = imgvec(&["search", s(&img)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("IMGVEC_ES_URL"), "{}", stderr(&out));
}

#[test]
fn a_plain_knn_query_finds_what_imgvec_indexed() {
    // The original Python pipeline queried the index itself: es.search(index=..., knn={...}).
    let Some(idx) = Index::new("interop") else {
        return;
    };
    idx.create();
    let img = fixtures().join("images/coffee.png");
    ok(&idx.run(&["ingest", s(&img), "--label", "coffee"]));
    let out = imgvec(&["embed", s(&img), "--json"]);
    let v = &json_lines(&ok(&out))[0]["embedding"];
    let r = idx.search_raw(&json!({
        "knn": {"field": "IFV", "query_vector": v, "k": 1, "num_candidates": 10},
        "_source": ["name", "path"]
    }));
    let hit = &r["hits"]["hits"][0];
    assert_eq!(hit["_source"]["name"], "coffee");
    assert!(hit["_source"]["path"]
        .as_str()
        .unwrap()
        .ends_with("coffee.png"));
}

#[test]
fn search_by_text() {
    let Some(idx) = Index::new("text") else {
        return;
    };
    idx.create();
    let (_tmp, train) = cats_and_dogs();
    ok(&idx.run(&["ingest", s(&train), "--label-from-dir"]));
    let out = idx.run(&["search", "--text", "a photo of a cat", "-k", "4", "--json"]);
    let hits = json_lines(&ok(&out));
    assert_eq!(hits.len(), 4);
    let out = idx.run(&[
        "search",
        "--text",
        "a photo of a cat",
        "--label",
        "cats",
        "--json",
    ]);
    let hits = json_lines(&ok(&out));
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h["label"] == "cats"));
    // Image plus text, and text minus text, both run.
    let q = train.join("dogs/coffee.png");
    ok(&idx.run(&["search", s(&q), "--text", "a cup of coffee", "-k", "1"]));
    ok(&idx.run(&["search", "--text", "cat", "--minus", "indoors", "-k", "1"]));
}
