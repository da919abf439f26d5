//! Parity with Hugging Face transformers for `CLIPModel` configurations beyond OpenAI's ViT-L/14:
//! 336- and 378-pixel inputs (24×24 and 27×27 patches), exact and tanh GELU, projections of 48 and
//! 20, and both ways of choosing the pooled text token (`eos_token_id` 2: argmax; 49407: the first
//! end-of-text id). Checkpoints with random weights written by transformers
//! (`tests/fixtures/make_clip_variants.py`), the numbers it computed in
//! `tests/fixtures/expected-clip-variants.json`. Pixels are compared exactly (SHA-256 of the f32
//! bytes), embeddings to 1 − cos ≤ 1e-6, token ids exactly.

mod common;

use std::path::PathBuf;

use candle_core::Device;
use common::*;
use imgvec::clip::preprocess::preprocess_rgb;
use imgvec::clip::{ImageEncoder, ModelDir, TextEncoder};
use imgvec::image::decode_rgb;
use sha2::{Digest, Sha256};

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("expected-clip-variants.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The variant's directory with clip-tiny's tokenizer beside it.
fn variant_dir(name: &str) -> PathBuf {
    let dir = unpack_model(&format!("clip-variants/{name}"));
    std::fs::copy(
        tiny_model_dir().join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    dir
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_variant(name: &str) {
    let exp = &reference()["variants"][name];
    let dir = variant_dir(name);
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    assert_eq!(
        hex(&Sha256::digest(&weights)),
        exp["model_sha256"].as_str().unwrap()
    );
    let model = ModelDir::open(&dir).unwrap();
    let dims = exp["dims"].as_u64().unwrap() as usize;
    let size = exp["image_size"].as_u64().unwrap() as usize;
    assert_eq!((model.family(), model.dims()), ("clip", dims));

    let images = ImageEncoder::load(&model, &Device::Cpu).unwrap();
    assert_eq!(images.pixels_len(), 3 * size * size);
    let mut worst = 0f64;
    for img in exp["images"].as_array().unwrap() {
        let file = img["file"].as_str().unwrap();
        let bytes = std::fs::read(fixtures().join("images").join(file)).unwrap();
        let pixels = preprocess_rgb(
            &decode_rgb(&bytes, true).unwrap().rgb,
            images.preprocess_config(),
        );
        let raw: Vec<u8> = pixels.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(
            hex(&Sha256::digest(&raw)),
            img["pixels_sha256"].as_str().unwrap(),
            "{name}/{file}: pixels differ from transformers' (sum {}, theirs {})",
            pixels.iter().map(|&x| f64::from(x)).sum::<f64>(),
            img["pixels_sum"]
        );
        let got = &images.embed_pixels(&[&pixels]).unwrap()[0];
        assert_eq!(got.len(), dims);
        let d = 1.0 - cosine(got, &floats(&img["embedding"]));
        let d64 = 1.0 - cosine(got, &floats(&img["embedding_f64"]));
        assert!(
            d <= 1e-6 && d64 <= 1e-6,
            "{name}/{file}: 1 − cos {d:e} (f64 {d64:e})"
        );
        worst = worst.max(d);
    }
    eprintln!("{name}: images pixels equal, worst 1 − cos {worst:.2e}");

    let texts = TextEncoder::load(&model, &Device::Cpu).unwrap();
    let mut worst = 0f64;
    for t in exp["texts"].as_array().unwrap() {
        let text = t["text"].as_str().unwrap();
        let want: Vec<u32> = t["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let got = texts.embed(text).unwrap();
        assert_eq!(got.input_ids, want, "{name}: ids of {text:?}");
        let d = 1.0 - cosine(&got.vector, &floats(&t["embedding"]));
        let d64 = 1.0 - cosine(&got.vector, &floats(&t["embedding_f64"]));
        assert!(
            d <= 1e-6 && d64 <= 1e-6,
            "{name}: {text:?}: 1 − cos {d:e} (f64 {d64:e})"
        );
        worst = worst.max(d);
    }
    eprintln!("{name}: texts ids equal, worst 1 − cos {worst:.2e}");
}

#[test]
fn gelu_336_projection_48_eos_49407() {
    check_variant("gelu-336");
}

#[test]
fn gelu_tanh_378_projection_20() {
    check_variant("tanh-378");
}
