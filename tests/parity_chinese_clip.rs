//! Parity with Hugging Face transformers for Chinese-CLIP (`ChineseCLIPModel`) on a tiny checkpoint
//! of the exact architecture with random weights: `tests/fixtures/chinese-clip-tiny`, and the
//! numbers transformers computed from it, `tests/fixtures/expected-chinese-clip-tiny.json` (both
//! made by `tests/fixtures/make_chinese_clip_tiny.py`; its docstring has the command). Pixels are
//! compared exactly (SHA-256 of the f32 bytes), embeddings to 1 − cos ≤ 1e-6, token ids exactly,
//! for texts in Chinese, English, German, Japanese and mixed.

mod common;
#[path = "common/family.rs"]
mod family;

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::Device;
use common::*;
use family::{check_images, check_texts, ids};
use imgvec::clip::preprocess::preprocess_rgb;
use imgvec::clip::{ImageEncoder, ModelDir, TextEncoder};
use imgvec::image::decode_rgb;

fn model_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| unpack_model("chinese-clip-tiny"))
        .clone()
}

fn reference() -> serde_json::Value {
    family::reference("expected-chinese-clip-tiny.json")
}

#[test]
fn the_fixture_is_the_checkpoint_the_reference_was_computed_from() {
    family::check_fixture(&model_dir(), &reference(), "chinese_clip", 24);
}

/// Every image through imgvec's decoding and preprocessing (a square resize without crop, as
/// the checkpoint's preprocessor_config.json says) gives transformers' pixels exactly, and then
/// its embedding.
#[test]
fn images_pixels_exact_and_embeddings() {
    let model = ModelDir::open(&model_dir()).unwrap();
    let enc = ImageEncoder::load(&model, &Device::Cpu).unwrap();
    let exp = reference();
    let images = exp["images"].as_array().unwrap();
    assert_eq!(images.len(), 13);
    assert_eq!(enc.pixels_len(), 3 * 224 * 224);
    check_images(&enc, images, 24, "chinese-clip-tiny");
}

/// The tokenizer from `vocab.txt` alone (what the real checkpoints ship) and from the
/// `tokenizer.json` the `tokenizers` package wrote give transformers' ids; the text tower its
/// embeddings.
#[test]
fn texts_ids_and_embeddings_from_vocab_txt_and_tokenizer_json() {
    let with_json = model_dir();
    let vocab_only = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&with_json).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap() != "tokenizer.json" {
            std::fs::copy(&p, vocab_only.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let exp = reference();
    let texts = exp["texts"].as_array().unwrap();
    assert!(texts.len() >= 9);
    for dir in [with_json.as_path(), vocab_only.path()] {
        let model = ModelDir::open(dir).unwrap();
        let enc = TextEncoder::load(&model, &Device::Cpu).unwrap();
        assert_eq!(enc.tokenizer().max_len(), 52);
        assert!(texts
            .iter()
            .all(|t| ids(&t["token_type_ids"]).iter().all(|&x| x == 0)));
        check_texts(&enc, texts, &dir.display().to_string(), |t| {
            ids(&t["input_ids"]).len() == 52
        });
    }
}

/// The query the issue asks for, end to end: `search --text` in Chinese finds the image whose
/// embedding is closest, on the embedded store, and the index records the Chinese-CLIP model.
#[test]
fn search_with_a_chinese_query_end_to_end() {
    let store = tempfile::tempdir().unwrap();
    let dir = model_dir();
    let run = |args: &[&str]| {
        imgvec_command(args)
            .env("IMGVEC_MODEL_DIR", &dir)
            .env("IMGVEC_STORE", store.path())
            .output()
            .unwrap()
    };
    let images = fixtures().join("images");
    for f in ["chelsea.png", "coffee.png", "astronaut.png"] {
        let out = run(&["ingest", images.join(f).to_str().unwrap(), "--label", f]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = run(&[
        "search",
        "--text",
        "一只在草地上奔跑的狗",
        "-k",
        "3",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hits = json_lines(&stdout(&out));
    assert_eq!(hits.len(), 3, "{}", stdout(&out));
    // The ranking transformers' embeddings give.
    let exp = reference();
    let query = floats(&exp["texts"][0]["embedding"]);
    let mut want: Vec<(f64, String)> = exp["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            ["chelsea.png", "coffee.png", "astronaut.png"].contains(&i["file"].as_str().unwrap())
        })
        .map(|i| {
            (
                cosine(&query, &floats(&i["embedding"])),
                i["file"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    want.sort_by(|a, b| b.0.total_cmp(&a.0));
    let got: Vec<&str> = hits.iter().map(|h| h["label"].as_str().unwrap()).collect();
    let want: Vec<&str> = want.iter().map(|w| w.1.as_str()).collect();
    assert_eq!(got, want);
    let info = run(&["info", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&info).trim()).unwrap();
    assert_eq!(v["index_model"]["family"], "chinese_clip", "{v}");
    assert_eq!(v["index_model"]["dims"], 24);
}

/// A checkpoint published as `pytorch_model.bin` (the OFA-Sys repositories) is read as it is: the
/// vision tower from it gives the embeddings of the safetensors one bit for bit, the index's
/// fingerprint comes from it, and a tensor it lacks is named.
#[test]
fn pytorch_model_bin_is_read_like_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(model_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap() != "model.safetensors" {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(
        fixtures().join("chinese-clip-tiny-vision.pytorch.bin"),
        dir.path().join("pytorch_model.bin"),
    )
    .unwrap();
    let from_bin = ModelDir::open(dir.path()).unwrap();
    let from_safetensors = ModelDir::open(&model_dir()).unwrap();
    let a = ImageEncoder::load(&from_bin, &Device::Cpu).unwrap();
    let b = ImageEncoder::load(&from_safetensors, &Device::Cpu).unwrap();
    let bytes = std::fs::read(fixtures().join("images/chelsea.png")).unwrap();
    let pixels = preprocess_rgb(
        &decode_rgb(&bytes, true).unwrap().rgb,
        a.preprocess_config(),
    );
    assert_eq!(
        a.embed_pixels(&[&pixels]).unwrap(),
        b.embed_pixels(&[&pixels]).unwrap()
    );
    let fp = from_bin.fingerprint().unwrap().unwrap();
    assert_eq!(fp.len(), 64);
    assert_ne!(Some(fp), from_safetensors.fingerprint().unwrap());
    // The file holds the vision tower only: the text tower names what is missing.
    let err = TextEncoder::load(&from_bin, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("pytorch_model.bin") && err.contains("text_model."),
        "{err}"
    );
}
