//! The checks the per-family parity tests share (`parity_chinese_clip.rs`, `parity_siglip.rs`):
//! every reference image through imgvec's own decoding and preprocessing, its pixels compared
//! exactly with transformers' (SHA-256 of the f32 bytes) and its embedding to 1 − cos ≤ 1e-6;
//! every reference text's ids exactly and its embedding to 1 − cos ≤ 1e-6.
#![allow(dead_code)]

use imgvec::clip::preprocess::preprocess_rgb;
use imgvec::clip::{ImageEncoder, TextEncoder};
use imgvec::image::decode_rgb;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{cosine, fixtures, floats, norm};

/// The reference numbers `tests/fixtures/NAME`.
pub fn reference(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A JSON list of token ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fixture checkpoint in `dir` is the one `reference` was computed from (its
/// `model_sha256`), read as `family` with `dims`-long embeddings.
pub fn check_fixture(dir: &std::path::Path, reference: &Value, family: &str, dims: usize) {
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    assert_eq!(
        hex(&Sha256::digest(&weights)),
        reference["model_sha256"].as_str().unwrap()
    );
    let model = imgvec::clip::ModelDir::open(dir).unwrap();
    assert_eq!(model.family(), family);
    assert_eq!(model.dims(), dims);
}

/// Each entry of `images` (`file`, `pixels_sha256`, `embedding`, `embedding_f64`) from its file
/// in `tests/fixtures/images`: equal pixels, then a `dims`-long unit embedding within 1e-6.
pub fn check_images(enc: &ImageEncoder, images: &[Value], dims: usize, label: &str) {
    let mut report = Vec::new();
    let mut worst = 0f64;
    for img in images {
        let name = img["file"].as_str().unwrap();
        let bytes = std::fs::read(fixtures().join("images").join(name)).unwrap();
        let decoded = decode_rgb(&bytes, true).unwrap();
        let pixels = preprocess_rgb(&decoded.rgb, enc.preprocess_config());
        assert_eq!(pixels.len(), enc.pixels_len(), "{name}");
        let raw: Vec<u8> = pixels.iter().flat_map(|x| x.to_le_bytes()).collect();
        let sum: f64 = pixels.iter().map(|&x| f64::from(x)).sum();
        assert_eq!(
            hex(&Sha256::digest(&raw)),
            img["pixels_sha256"].as_str().unwrap(),
            "{name}: pixels differ from transformers' (sum {sum}, theirs {})",
            img["pixels_sum"]
        );
        let got = &enc.embed_pixels(&[&pixels]).unwrap()[0];
        assert_eq!(got.len(), dims);
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
        "{label} images: worst 1 − cos {worst:.2e}\n{}",
        report.join("\n")
    );
}

/// Each entry of `texts` (`text`, `input_ids`, `embedding`, `embedding_f64`): equal ids, the
/// truncation flag `truncated` says, and an embedding within 1e-6.
pub fn check_texts(
    enc: &TextEncoder,
    texts: &[Value],
    label: &str,
    truncated: impl Fn(&Value) -> bool,
) {
    let mut worst = 0f64;
    for t in texts {
        let text = t["text"].as_str().unwrap();
        let got = enc.embed(text).unwrap();
        assert_eq!(
            got.input_ids,
            ids(&t["input_ids"]),
            "input_ids of {text:?} ({label})"
        );
        assert_eq!(got.truncated, truncated(t), "{text:?}");
        let d = 1.0 - cosine(&got.vector, &floats(&t["embedding"]));
        let d64 = 1.0 - cosine(&got.vector, &floats(&t["embedding_f64"]));
        assert!(
            d <= 1e-6 && d64 <= 1e-6,
            "{text:?}: 1 − cos {d:e} (f64 {d64:e})"
        );
        worst = worst.max(d);
    }
    eprintln!("{label} texts: worst 1 − cos {worst:.2e}");
}
