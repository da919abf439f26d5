//! `imgvec embed` as a user runs it: the built binary on the reference images and on bad files.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn embeds_a_folder_as_json_lines_in_order() {
    let images = fixtures().join("images");
    let out = imgvec(&[
        "embed",
        images.to_str().unwrap(),
        "--json",
        "--batch-size",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&stdout(&out));
    assert_eq!(lines.len(), 13);
    let exp = expected();
    for (line, want) in lines.iter().zip(exp["images"].as_array().unwrap()) {
        let path = line["path"].as_str().unwrap();
        assert!(
            path.ends_with(want["file"].as_str().unwrap()),
            "order: {path}"
        );
        let v = floats(&line["embedding"]);
        assert_eq!(v.len(), 32);
        assert!((norm(&v) - 1.0).abs() < 1e-5, "{path}: norm {}", norm(&v));
        let c = cosine(&v, &floats(&want["embedding"]));
        assert!(c >= 0.9995, "{path}: cosine {c}");
    }
}

#[test]
fn bad_files_are_reported_and_the_rest_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(fixtures().join("images/chelsea.png"), d.join("a_good.png")).unwrap();
    let rocket = std::fs::read(fixtures().join("images/rocket.jpg")).unwrap();
    std::fs::write(d.join("b_truncated.jpg"), &rocket[..600]).unwrap();
    std::fs::write(d.join("c_fake.jpg"), b"plain text, not a JPEG").unwrap();
    std::fs::copy(
        fixtures().join("images/synth_small.png"),
        d.join("d_good.png"),
    )
    .unwrap();
    std::fs::write(d.join("notes.txt"), b"not an image, skipped quietly").unwrap();
    let out = imgvec(&["embed", d.to_str().unwrap(), "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "non-zero exit status when a file fails"
    );
    let lines = json_lines(&stdout(&out));
    let paths: Vec<&str> = lines.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(paths[0].ends_with("a_good.png") && paths[1].ends_with("d_good.png"));
    let err = stderr(&out);
    let err_lines: Vec<&str> = err.lines().filter(|l| l.contains("imgvec:")).collect();
    assert!(
        err_lines.iter().any(|l| l.contains("b_truncated.jpg")),
        "{err}"
    );
    assert!(err_lines.iter().any(|l| l.contains("c_fake.jpg")), "{err}");
    assert!(!err.contains("notes.txt"), "{err}");
}

#[test]
fn a_named_file_that_cannot_be_read() {
    let out = imgvec(&["embed", "/no/such/photo.jpg", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("/no/such/photo.jpg"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn readable_output_without_json() {
    let img = fixtures().join("images/coffee.png");
    let out = imgvec(&["embed", img.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("coffee.png") && s.contains("32 values"), "{s}");
}

#[test]
fn embeds_text() {
    let out = imgvec(&["embed", "--text", "a photo of a cat", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = &json_lines(&stdout(&out))[0];
    assert_eq!(line["text"], "a photo of a cat");
    let want = expected()["texts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["text"] == "a photo of a cat")
        .map(|t| floats(&t["embedding"]))
        .unwrap();
    assert!(cosine(&floats(&line["embedding"]), &want) >= 0.9999);
}

#[test]
fn long_text_warns() {
    let long = "dog ".repeat(100);
    let out = imgvec(&["embed", "--text", &long, "--json"]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
}

#[test]
fn missing_model_dir_is_a_clear_error() {
    let out = imgvec_env(
        &["embed", "x.jpg"],
        &[("IMGVEC_MODEL_DIR", "/no/model/here")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("/no/model/here") && err.contains("models/README.md"),
        "{err}"
    );
}

#[test]
fn fetch_model_without_network_fails_fast_and_clearly() {
    // A closed port on loopback stands for an unreachable hub: the command must not hang.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let hf_home = dir.path().join("hf");
    let endpoint = format!("http://127.0.0.1:{port}");
    let t = std::time::Instant::now();
    let out = imgvec_env(
        &["fetch-model", "--endpoint", &endpoint],
        &[("HF_HOME", hf_home.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(t.elapsed() < std::time::Duration::from_secs(30));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach")
            && err.contains(&endpoint)
            && err.contains("HF_ENDPOINT")
            && err.contains("models/README.md"),
        "{err}"
    );
    // Nothing that looks like a download: no snapshot, no ref.
    let repo = hf_home.join("hub/models--openai--clip-vit-large-patch14");
    assert!(!repo.join("snapshots").exists() && !repo.join("refs").exists());
}

/// A panic while preparing one file (the test-only fault hook) fails that file with one line:
/// no panic message or backtrace, the other files embedded in order, exit status 1.
#[test]
fn a_panic_fails_one_file_quietly_and_the_rest_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Different images: ingest skips repeated content before preparing it.
    for (name, src) in [
        ("a.png", "synth_small.png"),
        ("b.png", "synth_exact.png"),
        ("c.png", "synth_palette.png"),
    ] {
        std::fs::copy(fixtures().join("images").join(src), d.join(name)).unwrap();
    }
    let env = [
        ("IMGVEC_TEST_PANIC_ON", "b.png"),
        ("RUST_BACKTRACE", "full"),
    ];
    for batch in ["1", "8"] {
        let args = [
            "embed",
            d.to_str().unwrap(),
            "--json",
            "--batch-size",
            batch,
        ];
        let out = imgvec_env(&args, &env);
        assert_eq!(out.status.code(), Some(1));
        let lines = json_lines(&stdout(&out));
        let paths: Vec<&str> = lines.iter().map(|l| l["path"].as_str().unwrap()).collect();
        assert!(paths.len() == 2 && paths[0].ends_with("a.png") && paths[1].ends_with("c.png"));
        let err = stderr(&out);
        let about_b: Vec<&str> = err.lines().filter(|l| l.contains("b.png")).collect();
        assert_eq!(about_b.len(), 1, "{err}");
        assert!(about_b[0].contains("internal error"), "{err}");
        for noise in ["panicked", "backtrace", "RUST_BACKTRACE"] {
            assert!(!err.contains(noise), "{noise}: {err}");
        }
    }
    // The same in ingest: counted as failed, exit status 1.
    let store = d.join("store");
    let out = imgvec_env(
        &[
            "ingest",
            d.to_str().unwrap(),
            "--label",
            "x",
            "--json",
            "--store",
            store.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(summary["indexed"], 2);
    assert_eq!(summary["failed"], 1);
    assert!(!stderr(&out).contains("panicked at"));
}

/// A truncated file is refused as "truncated" (as Pillow refuses it); --allow-truncated embeds
/// what it holds and warns.
#[test]
fn truncated_files_fail_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rocket = std::fs::read(fixtures().join("images/rocket.jpg")).unwrap();
    std::fs::write(d.join("half.jpg"), &rocket[..rocket.len() / 2]).unwrap();
    let path = d.join("half.jpg");
    let out = imgvec(&["embed", path.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("half.jpg: truncated"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
    let out = imgvec(&["embed", path.to_str().unwrap(), "--allow-truncated"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1);
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    // ingest names it in the summary as a warning.
    let store = d.join("store");
    let out = imgvec(&[
        "ingest",
        path.to_str().unwrap(),
        "--label",
        "x",
        "--json",
        "--allow-truncated",
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(summary["indexed"], 1);
    assert_eq!(summary["warnings"].as_array().map(Vec::len), Some(1));
}

/// A folder of phone photos (HEIC, AVIF, a damaged HEIC): with `--features heif` they embed and
/// the damaged one is named with its reason; without it each is named with how to get support,
/// never as "not an image".
#[test]
fn heic_and_avif_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let heif = fixtures().join("heif/files");
    std::fs::copy(heif.join("heic_orient6.heic"), d.join("IMG_0001.HEIC")).unwrap();
    std::fs::copy(heif.join("avif_8bit.avif"), d.join("IMG_0002.avif")).unwrap();
    std::fs::copy(heif.join("trunc_heic_data.heic"), d.join("IMG_0003.heic")).unwrap();
    let out = imgvec(&["embed", d.to_str().unwrap(), "--json"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(!err.contains("not an image"), "{err}");
    let lines = json_lines(&stdout(&out));
    if cfg!(feature = "heif") {
        assert_eq!(lines.len(), 2, "{err}");
        assert!(
            err.contains("IMG_0003.heic") && err.contains("cannot read HEIC file: truncated"),
            "{err}"
        );
    } else {
        assert!(lines.is_empty(), "{err}");
        for name in ["IMG_0001.HEIC", "IMG_0002.avif", "IMG_0003.heic"] {
            assert!(err.contains(name), "{name}: {err}");
        }
        assert!(err.contains("--features heif"), "{err}");
    }
}
