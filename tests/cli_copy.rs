//! `imgvec copy`, end to end: embedded → Elasticsearch → embedded keeps every document bit for bit
//! (id, label, path, vector, sizes, model, times); an interrupted copy (`--limit`) resumes and
//! writes nothing twice, into either backend; a target of another vector size or model is refused.

mod common;
#[path = "common/docs.rs"]
mod docs;

use std::path::Path;
use std::process::Output;

use common::*;
use docs::{docs, spec, Rng};
use imgvec::store::local::LocalStore;
use imgvec::store::{ImageDoc, VectorStore};
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn summary(out: &Output) -> Value {
    serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    summary(out)
}

/// Every document of a local store's index, in id order, read back through the store API.
fn read_all(dir: &Path, index: &str) -> Vec<ImageDoc> {
    let store = LocalStore::open(dir, index).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let mut scan = store.scan(7, None).await.unwrap();
        let mut all = Vec::new();
        loop {
            let page = scan.next_page().await.unwrap();
            if page.is_empty() {
                break;
            }
            all.extend(page);
        }
        scan.close().await.unwrap();
        all
    })
}

/// A local store holding the photos of two labelled folders (`cats`, `dogs`), ingested with the
/// tiny model; returns (temp dir, store dir).
fn ingested_store(n: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, photos) = distinct_images(n);
    let train = tmp.path().join("train");
    for (i, e) in std::fs::read_dir(&photos).unwrap().enumerate() {
        let p = e.unwrap().path();
        let dir = train.join(if i % 2 == 0 { "cats" } else { "dogs" });
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::rename(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let store = tmp.path().join("store");
    let args = [
        "ingest",
        s(&train),
        "--label-from-dir",
        "--store",
        s(&store),
        "--index",
        "src",
        "--json",
    ];
    let v = ok(&imgvec(&args));
    assert_eq!(v["indexed"], n as u64, "{v}");
    (tmp, store)
}

/// The flags that make `idx` the target of a copy.
fn target_flags(idx: &TestIndex) -> Vec<String> {
    let mut out = vec!["--to-index".to_string(), idx.name.clone()];
    match &idx.backend {
        Backend::Local(dir) => out.extend(["--to-store".into(), dir.path().display().to_string()]),
        Backend::Elastic(url) => out.extend(["--to-es-url".into(), url.clone()]),
    }
    out
}

fn assert_same_docs(a: &[ImageDoc], b: &[ImageDoc]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        let bits = |d: &ImageDoc| d.vector.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(x), bits(y), "vector of {} changed", x.id);
        assert_eq!(x, y, "document {} changed", x.id);
    }
}

#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn embedded_to_elasticsearch_and_back_keeps_every_document_bit_for_bit() {
    let (tmp, store) = ingested_store(9);
    let original = read_all(&store, "src");
    assert_eq!(original.len(), 9);
    assert!(
        original.iter().all(|d| d.mtime_ms.is_some()),
        "ingest records mtimes"
    );
    let es = TestIndex::elastic("copy_round_trip");
    let url = es.es_url().unwrap().to_string();
    let there = [
        "copy",
        "--store",
        s(&store),
        "--index",
        "src",
        "--to-es-url",
        &url,
        "--to-index",
        &es.name,
        "--json",
    ];
    let v = ok(&imgvec(&there));
    assert_eq!(
        (v["written"].as_u64(), v["created_index"].as_bool()),
        (Some(9), Some(true)),
        "{v}"
    );
    assert_eq!(es.count(), 9);
    let back_dir = tmp.path().join("back");
    let back = [
        "copy",
        "--es-url",
        &url,
        "--index",
        &es.name,
        "--to-store",
        s(&back_dir),
        "--to-index",
        "again",
        "--json",
        "--batch-size",
        "4",
    ];
    let v = ok(&imgvec(&back));
    assert_eq!(
        (v["written"].as_u64(), v["target_after"].as_u64()),
        (Some(9), Some(9)),
        "{v}"
    );
    assert_same_docs(&original, &read_all(&back_dir, "again"));
    // The copy searches as the original does.
    let query = fixtures().join("images/chelsea.png");
    let hits = |dir: &Path, index: &str| {
        let out = imgvec(&[
            "search",
            s(&query),
            "--store",
            s(dir),
            "--index",
            index,
            "--json",
            "-k",
            "9",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(hits(&store, "src"), hits(&back_dir, "again"));
}

#[test]
fn embedded_to_embedded_keeps_every_document_bit_for_bit() {
    let (tmp, store) = ingested_store(5);
    let target = tmp.path().join("other");
    let args = [
        "copy",
        "--store",
        s(&store),
        "--index",
        "src",
        "--to-store",
        s(&target),
        "--json",
    ];
    let v = ok(&imgvec(&args));
    assert_eq!(v["written"], 5, "{v}");
    assert_same_docs(&read_all(&store, "src"), &read_all(&target, "src"));
    // The target remembers the model that filled the source.
    let rt = runtime();
    let model = |dir: &Path| {
        rt.block_on(LocalStore::open(dir, "src").unwrap().index_model())
            .unwrap()
    };
    let recorded = model(&store);
    assert_eq!(recorded.as_ref().map(|m| m.dims), Some(32), "{recorded:?}");
    assert_eq!(model(&target), recorded, "copy carries the model record");
    let same = imgvec(&[
        "copy",
        "--store",
        s(&store),
        "--index",
        "src",
        "--to-store",
        s(&store),
    ]);
    assert!(!same.status.success());
    assert!(
        stderr(&same).contains("same store directory"),
        "{}",
        stderr(&same)
    );
}

backend_test! {
    fn an_interrupted_copy_resumes_without_writing_twice(idx) {
        let (_tmp, store) = ingested_store(10);
        let mut args: Vec<String> = ["copy", "--store", s(&store), "--index", "src", "--json",
            "--batch-size", "3"].iter().map(|a| a.to_string()).collect();
        args.extend(target_flags(&idx));
        let run = |extra: &[&str]| {
            let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
            a.extend(extra);
            imgvec(&a)
        };
        let first = run(&["--limit", "4"]);
        assert_eq!(first.status.code(), Some(1), "[{}] stopped short: {}", idx.kind(), stderr(&first));
        let v = summary(&first);
        assert_eq!((v["written"].as_u64(), v["stopped_at_limit"].as_bool()), (Some(4), Some(true)), "{v}");
        assert_eq!(idx.count(), 4);
        let v = ok(&run(&[]));
        assert_eq!((v["written"].as_u64(), v["already_present"].as_u64()), (Some(6), Some(4)),
            "[{}] {v}", idx.kind());
        assert_eq!((v["created_index"].as_bool(), v["target_after"].as_u64()), (Some(false), Some(10)));
        let v = ok(&run(&[]));
        assert_eq!((v["written"].as_u64(), v["already_present"].as_u64()), (Some(0), Some(10)), "{v}");
        assert_eq!(idx.count(), 10);
    }
}

#[test]
fn a_target_of_another_size_or_model_is_refused() {
    let (tmp, store) = ingested_store(2);
    let target = tmp.path().join("target");
    let rt = runtime();
    {
        let t = LocalStore::open(&target, "small").unwrap();
        rt.block_on(t.ensure_index(&spec(16))).unwrap();
    }
    {
        let t = LocalStore::open(&target, "other-model").unwrap();
        rt.block_on(t.ensure_index(&spec(32))).unwrap();
        let d = docs(&mut Rng(1), 1, 32, &["x"], "z");
        rt.block_on(t.upsert(&d, false)).unwrap();
    }
    let copy = |index: &str| {
        imgvec(&[
            "copy",
            "--store",
            s(&store),
            "--index",
            "src",
            "--to-store",
            s(&target),
            "--to-index",
            index,
        ])
    };
    let out = copy("small");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("16-d") && stderr(&out).contains("32-d"),
        "{}",
        stderr(&out)
    );
    let out = copy("other-model");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("clip-test"), "{}", stderr(&out));
}
