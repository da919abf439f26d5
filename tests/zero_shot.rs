//! Zero-shot parity with transformers: `CLIPModel(...).logits_per_image.softmax(-1)` on the tiny
//! checkpoint, for the 13 reference images (transformers' own pixels) and 7 label prompts, to 1e-5.
//!
//! The reference numbers are `tests/fixtures/zero-shot-tiny-seed1.json`, written by
//! `tests/fixtures/reference_zero_shot.py` (its docstring says how). Two cases: the checkpoint as it
//! is, and the same checkpoint with `logit_scale` set to ln(100) — so a scale that is not read from
//! the file cannot pass both.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use imgvec::clip::{ImageEncoder, ModelDir, TextEncoder};
use imgvec::eval::zero_shot;
use serde_json::Value;

const TOLERANCE: f64 = 1e-5;

fn reference() -> Value {
    let path = fixtures().join("zero-shot-tiny-seed1.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A copy of the tiny model directory whose `logit_scale` tensor (an f32 scalar) is `value`.
fn with_logit_scale(value: f32) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tiny_model_dir();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
    }
    let path = tmp.path().join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let info = &header["logit_scale"];
    assert_eq!(info["dtype"], "F32");
    assert_eq!(info["shape"], serde_json::json!([]));
    let start = 8 + header_len + info["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[start..start + 4].copy_from_slice(&value.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let dir = tmp.path().to_path_buf();
    (tmp, dir)
}

fn check_case(dir: &Path, case: &Value, reference: &Value) {
    let model = ModelDir::open(dir).unwrap();
    let logit_scale = model.logit_scale().unwrap();
    let expected_scale = case["logit_scale"].as_f64().unwrap();
    assert!(
        (f64::from(logit_scale) - expected_scale).abs() < 1e-6,
        "logit_scale {logit_scale} vs transformers' {expected_scale}"
    );
    let device = candle_core::Device::Cpu;
    let text = TextEncoder::load(&model, &device).unwrap();
    let labels: Vec<String> = reference["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let template = reference["template"].as_str().unwrap();
    let mut texts = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let prompt = zero_shot::prompt(template, label).unwrap();
        assert_eq!(prompt, reference["prompts"][i].as_str().unwrap());
        let e = text.embed(&prompt).unwrap();
        // transformers padded the batch with <|endoftext|>; the ids up to the first one match.
        let padded: Vec<u32> = reference["input_ids"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(e.input_ids, padded[..e.input_ids.len()], "{prompt}");
        texts.push(e.vector);
    }
    let images = ImageEncoder::load(&model, &device).unwrap();
    let mut worst = 0f64;
    for row in case["images"].as_array().unwrap() {
        let file = row["file"].as_str().unwrap();
        let pixels = reference_pixels(file);
        let v = images.embed_pixels(&[&pixels]).unwrap().remove(0);
        let logits = zero_shot::logits(&v, &texts, logit_scale);
        let probs = zero_shot::softmax(&logits);
        let expected = floats(&row["probs"]);
        for (j, (p, e)) in probs.iter().zip(&expected).enumerate() {
            let diff = (p - f64::from(*e)).abs();
            worst = worst.max(diff);
            assert!(
                diff < TOLERANCE,
                "{file}, label {}: {p} vs transformers' {e}",
                labels[j]
            );
        }
        // The classifier picks the most probable label, as argmax over transformers' row.
        let best = (0..expected.len())
            .max_by(|&a, &b| expected[a].total_cmp(&expected[b]))
            .unwrap();
        let prediction = zero_shot::classify(
            &v,
            &labels,
            &texts,
            zero_shot::Scoring::softmax(logit_scale),
        )
        .unwrap();
        assert_eq!(prediction.label, labels[best], "{file}");
        assert!((prediction.confidence - f64::from(expected[best])).abs() < TOLERANCE);
    }
    eprintln!(
        "logit_scale {logit_scale}: largest probability difference {worst:.2e} over {} images",
        case["images"].as_array().unwrap().len()
    );
}

#[test]
fn zero_shot_probabilities_equal_transformers() {
    let reference = reference();
    check_case(
        &tiny_model_dir(),
        &reference["cases"]["checkpoint"],
        &reference,
    );
}

#[test]
fn logit_scale_is_read_from_the_checkpoint() {
    let reference = reference();
    let case = &reference["cases"]["logit_scale_ln100"];
    let (_tmp, dir) = with_logit_scale(case["logit_scale"].as_f64().unwrap() as f32);
    check_case(&dir, case, &reference);
}

#[test]
fn a_checkpoint_without_logit_scale_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(tiny_model_dir()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
    }
    // Rename the tensor in the header (same length, so every offset stays valid).
    let path = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    let renamed = header.replace("\"logit_scale\"", "\"logit_scalX\"");
    assert_ne!(header, renamed);
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(renamed.as_bytes());
    out.extend_from_slice(&bytes[8 + header_len..]);
    std::fs::write(&path, out).unwrap();
    let err = ModelDir::open(tmp.path())
        .unwrap()
        .logit_scale()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("logit_scale") && err.contains("model.safetensors"),
        "{err}"
    );
}
