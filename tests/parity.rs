//! Parity with Hugging Face transformers on the tiny checkpoint: the reference numbers in
//! tests/fixtures were computed by transformers from the same weights and images.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::*;
use imgvec::clip::encoder::{Encoder, EncoderShape};
use imgvec::clip::preprocess::preprocess_rgb;
use imgvec::clip::weights::Weights;
use imgvec::clip::{ImageEncoder, ModelDir, TextEncoder};
use imgvec::image::decode_rgb;

fn image_encoder() -> ImageEncoder {
    let model = ModelDir::open(&tiny_model_dir()).unwrap();
    ImageEncoder::load(&model, &Device::Cpu).unwrap()
}

#[test]
fn reference_pixels_through_the_model() {
    let enc = image_encoder();
    let exp = expected();
    let images = exp["images"].as_array().unwrap();
    assert_eq!(images.len(), 13);
    let mut worst = 1.0f64;
    for img in images {
        let name = img["file"].as_str().unwrap();
        let pixels = reference_pixels(name);
        let got = &enc.embed_pixels(&[&pixels]).unwrap()[0];
        let want = floats(&img["embedding"]);
        assert_eq!(got.len(), 32);
        let c = cosine(got, &want);
        assert!((norm(got) - 1.0).abs() < 1e-5, "{name}: norm {}", norm(got));
        assert!(c >= 0.99999, "{name}: cosine {c}");
        worst = worst.min(c);
    }
    eprintln!("reference pixels → model: min cosine {worst:.8}");
}

/// The towers run their last layer only at the pooled token (`Encoder::forward_at`): those rows
/// are the rows of the whole last layer, the vision tower's (several images, any token) and the
/// causal text tower's: to the bit on the packed kernels (each output's sums run in the same order
/// whatever the number of rows), to rounding on candle's (`IMGVEC_SIMD=none`), whose GEMM blocks
/// 3 rows differently from 150.
#[test]
fn last_layer_at_the_pooled_token_only() {
    let model = ModelDir::open(&tiny_model_dir()).unwrap();
    let cfg = model.config();
    let path = tiny_model_dir().join("model.safetensors");
    let w = Weights::open(&path, &Device::Cpu, DType::F32).unwrap();
    for (prefix, shape, causal) in [
        (
            "vision_model",
            EncoderShape::vision(&cfg.vision_config),
            false,
        ),
        ("text_model", EncoderShape::text(&cfg.text_config), true),
    ] {
        let enc = Encoder::load(&w, prefix, &shape).unwrap();
        let n = 50;
        let at = [0, n - 1, 17];
        let x = Tensor::randn(0f32, 1., (at.len(), n, shape.hidden), &Device::Cpu).unwrap();
        let all = enc.forward(&x, causal).unwrap();
        let some = enc.forward_at(&x, causal, &at).unwrap();
        assert_eq!(some.dims(), &[at.len(), shape.hidden]);
        for (i, &t) in at.iter().enumerate() {
            let want = all.i((i, t)).unwrap().to_vec1::<f32>().unwrap();
            let got = some.i(i).unwrap().to_vec1::<f32>().unwrap();
            if imgvec::clip::dense::Simd::get() != imgvec::clip::dense::Simd::None {
                assert_eq!(got, want, "{prefix}: sequence {i}, token {t}");
            }
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{prefix}: {i}, {t}"
                );
            }
        }
    }
}

#[test]
fn batched_equals_one_by_one() {
    let enc = image_encoder();
    let names = ["chelsea.png", "coffee.png", "synth_small.png"];
    let px: Vec<Vec<f32>> = names.iter().map(|n| reference_pixels(n)).collect();
    let refs: Vec<&[f32]> = px.iter().map(|p| p.as_slice()).collect();
    let batch = enc.embed_pixels(&refs).unwrap();
    for (i, p) in refs.iter().enumerate() {
        let single = &enc.embed_pixels(&[p]).unwrap()[0];
        assert!(cosine(single, &batch[i]) > 0.999999, "{}", names[i]);
    }
}

/// Every reference image through imgvec's own decoding and preprocessing gives exactly
/// transformers' pixels (every value equal, max |Δ| = 0), and then the reference embedding.
#[test]
fn image_files_through_our_preprocessing() {
    let enc = image_encoder();
    let exp = expected();
    let mut report = Vec::new();
    for img in exp["images"].as_array().unwrap() {
        let name = img["file"].as_str().unwrap();
        let bytes = std::fs::read(fixtures().join("images").join(name)).unwrap();
        // The reference ignores EXIF orientation; these files carry none, so either setting agrees.
        let decoded = decode_rgb(&bytes, true).unwrap();
        let ours = preprocess_rgb(&decoded.rgb, enc.preprocess_config());
        let theirs = reference_pixels(name);
        assert_eq!(ours.len(), theirs.len(), "{name}");
        let max_diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let differing = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing,
            0,
            "{name}: {differing} of {} pixel values differ from transformers' (max |Δ| {max_diff:e})",
            ours.len()
        );
        let got = &enc.embed_pixels(&[&ours]).unwrap()[0];
        let c = cosine(got, &floats(&img["embedding"]));
        report.push(format!(
            "{name:>20}  max |Δpixel| {max_diff:.2e}  cosine {c:.8}"
        ));
        assert!(
            c >= 0.9995,
            "{name}: cosine {c} (max pixel diff {max_diff})"
        );
        assert!((norm(got) - 1.0).abs() < 1e-5);
    }
    eprintln!(
        "image files → imgvec preprocessing → model:\n{}",
        report.join("\n")
    );
}

#[test]
fn text_parity() {
    let model = ModelDir::open(&tiny_model_dir()).unwrap();
    let enc = TextEncoder::load(&model, &Device::Cpu).unwrap();
    let exp = expected();
    let texts = exp["texts"].as_array().unwrap();
    assert!(texts.len() >= 8);
    let mut worst = 1.0f64;
    for t in texts {
        let text = t["text"].as_str().unwrap();
        let want_ids: Vec<u32> = t["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let got = enc.embed(text).unwrap();
        assert_eq!(got.input_ids, want_ids, "input_ids of {text:?}");
        assert!(!got.truncated);
        let c = cosine(&got.vector, &floats(&t["embedding"]));
        assert!(c >= 0.9999, "{text:?}: cosine {c}");
        assert!((norm(&got.vector) - 1.0).abs() < 1e-5);
        worst = worst.min(c);
    }
    eprintln!("texts: min cosine {worst:.8}");
}

#[test]
fn long_text_is_truncated_like_transformers() {
    let model = ModelDir::open(&tiny_model_dir()).unwrap();
    let enc = TextEncoder::load(&model, &Device::Cpu).unwrap();
    let long = "cat ".repeat(200);
    let got = enc.embed(&long).unwrap();
    assert!(got.truncated);
    assert_eq!(got.input_ids.len(), 77);
    assert_eq!(got.input_ids[0], 49406, "starts with <|startoftext|>");
    assert_eq!(got.input_ids[76], 49407, "ends with <|endoftext|>");
    // The same as the text cut to its first 75 words by hand.
    let short = enc.embed(&"cat ".repeat(75)).unwrap();
    assert!(!short.truncated);
    assert_eq!(short.input_ids, got.input_ids);
    assert!(cosine(&short.vector, &got.vector) > 0.999999);
}
