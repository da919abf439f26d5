//! Parity with Hugging Face transformers for SigLIP (`SiglipModel`) on a tiny checkpoint of the
//! exact architecture with random weights and a SigLIP 2-style Gemma `tokenizer.json`:
//! `tests/fixtures/siglip-tiny`, and the numbers transformers computed from it,
//! `tests/fixtures/expected-siglip-tiny.json` (both made by `tests/fixtures/make_siglip_tiny.py`;
//! its docstring has the command). Pixels are compared exactly (SHA-256 of the f32 bytes),
//! embeddings to 1 − cos ≤ 1e-6, token ids exactly, for texts in English, Chinese, Japanese,
//! German, with emoji, and one over the 64-token context.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::Device;
use common::*;
use imgvec::clip::preprocess::preprocess_rgb;
use imgvec::clip::{ImageEncoder, ModelDir, TextEncoder};
use imgvec::image::decode_rgb;
use sha2::{Digest, Sha256};

fn model_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| unpack_model("siglip-tiny")).clone()
}

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("expected-siglip-tiny.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_fixture_is_the_checkpoint_the_reference_was_computed_from() {
    let weights = std::fs::read(model_dir().join("model.safetensors")).unwrap();
    assert_eq!(
        hex(&Sha256::digest(&weights)),
        reference()["model_sha256"].as_str().unwrap()
    );
    let model = ModelDir::open(&model_dir()).unwrap();
    assert_eq!(model.family(), "siglip");
    // SiglipModel's embedding is the vision tower's width.
    assert_eq!(model.dims(), 64);
}

/// Every image through imgvec's decoding and preprocessing (`SiglipImageProcessor`: a square
/// resize without crop, mean and std 0.5) gives transformers' pixels exactly, and then its
/// embedding.
#[test]
fn images_pixels_exact_and_embeddings() {
    let model = ModelDir::open(&model_dir()).unwrap();
    let enc = ImageEncoder::load(&model, &Device::Cpu).unwrap();
    let exp = reference();
    assert_eq!(exp["image_processor"], "SiglipImageProcessorPil");
    let images = exp["images"].as_array().unwrap();
    assert_eq!(images.len(), 13);
    let mut report = Vec::new();
    let mut worst = 0f64;
    for img in images {
        let name = img["file"].as_str().unwrap();
        let bytes = std::fs::read(fixtures().join("images").join(name)).unwrap();
        let decoded = decode_rgb(&bytes, true).unwrap();
        let pixels = preprocess_rgb(&decoded.rgb, enc.preprocess_config());
        assert_eq!(pixels.len(), 3 * 224 * 224, "{name}");
        let raw: Vec<u8> = pixels.iter().flat_map(|x| x.to_le_bytes()).collect();
        let sum: f64 = pixels.iter().map(|&x| f64::from(x)).sum();
        assert_eq!(
            hex(&Sha256::digest(&raw)),
            img["pixels_sha256"].as_str().unwrap(),
            "{name}: pixels differ from transformers' (sum {sum}, theirs {})",
            img["pixels_sum"]
        );
        let got = &enc.embed_pixels(&[&pixels]).unwrap()[0];
        assert_eq!(got.len(), 64);
        let d = 1.0 - cosine(got, &floats(&img["embedding"]));
        let d64 = 1.0 - cosine(got, &floats(&img["embedding_f64"]));
        assert!(
            d <= 1e-6 && d64 <= 1e-6,
            "{name}: 1 − cos {d:e} (f64 {d64:e})"
        );
        assert!((norm(got) - 1.0).abs() < 1e-5);
        worst = worst.max(d);
        report.push(format!("{name:>18}  pixels equal  1 − cos {d:.2e}"));
    }
    eprintln!(
        "siglip-tiny images: worst 1 − cos {worst:.2e}\n{}",
        report.join("\n")
    );
}

/// A batch gives each image's embedding alone (the head's attention is per image).
#[test]
fn a_batch_is_its_images_one_by_one() {
    let model = ModelDir::open(&model_dir()).unwrap();
    let enc = ImageEncoder::load(&model, &Device::Cpu).unwrap();
    let pixels: Vec<Vec<f32>> = ["chelsea.png", "synth_wide.jpg", "camera.png"]
        .iter()
        .map(|f| {
            let bytes = std::fs::read(fixtures().join("images").join(f)).unwrap();
            preprocess_rgb(&decode_rgb(&bytes, true).unwrap().rgb, enc.preprocess_config())
        })
        .collect();
    let refs: Vec<&[f32]> = pixels.iter().map(Vec::as_slice).collect();
    let batch = enc.embed_pixels(&refs).unwrap();
    for (p, b) in refs.iter().zip(&batch) {
        let one = &enc.embed_pixels(&[p]).unwrap()[0];
        assert!(1.0 - cosine(one, b) <= 1e-6);
    }
}

/// The Gemma `tokenizer.json` gives transformers' ids, padded on the left to 64 with `<pad>` as
/// `padding="max_length"` does, long texts cut at 64; the text tower (last position pooled, no
/// attention mask) its embeddings.
#[test]
fn texts_ids_and_embeddings() {
    let model = ModelDir::open(&model_dir()).unwrap();
    let enc = TextEncoder::load(&model, &Device::Cpu).unwrap();
    assert_eq!(enc.tokenizer().max_len(), 64);
    let exp = reference();
    let texts = exp["texts"].as_array().unwrap();
    assert!(texts.len() >= 8);
    let mut worst = 0f64;
    for t in texts {
        let text = t["text"].as_str().unwrap();
        let want = ids(&t["input_ids"]);
        assert_eq!(want.len(), 64);
        let got = enc.embed(text).unwrap();
        assert_eq!(got.input_ids, want, "input_ids of {text:?}");
        assert_eq!(
            got.truncated,
            ids(&t["unpadded_ids"]).len() > 64,
            "{text:?}"
        );
        let d = 1.0 - cosine(&got.vector, &floats(&t["embedding"]));
        let d64 = 1.0 - cosine(&got.vector, &floats(&t["embedding_f64"]));
        assert!(
            d <= 1e-6 && d64 <= 1e-6,
            "{text:?}: 1 − cos {d:e} (f64 {d64:e})"
        );
        worst = worst.max(d);
    }
    eprintln!("siglip-tiny texts: worst 1 − cos {worst:.2e}");
}
