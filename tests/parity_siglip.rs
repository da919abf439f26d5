//! Parity with Hugging Face transformers for SigLIP (`SiglipModel`) on a tiny checkpoint of the
//! exact architecture with random weights and a SigLIP 2-style Gemma `tokenizer.json`:
//! `tests/fixtures/siglip-tiny`, and the numbers transformers computed from it,
//! `tests/fixtures/expected-siglip-tiny.json` (both made by `tests/fixtures/make_siglip_tiny.py`;
//! its docstring has the command). Pixels are compared exactly (SHA-256 of the f32 bytes),
//! embeddings to 1 − cos ≤ 1e-6, token ids exactly, for texts in English, Chinese, Japanese,
//! German, with emoji, and one over the 64-token context.

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
    DIR.get_or_init(|| unpack_model("siglip-tiny")).clone()
}

fn reference() -> serde_json::Value {
    family::reference("expected-siglip-tiny.json")
}

#[test]
fn the_fixture_is_the_checkpoint_the_reference_was_computed_from() {
    // SiglipModel's embedding is the vision tower's width.
    family::check_fixture(&model_dir(), &reference(), "siglip", 64);
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
    assert_eq!(enc.pixels_len(), 3 * 224 * 224);
    check_images(&enc, images, 64, "siglip-tiny");
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
            preprocess_rgb(
                &decode_rgb(&bytes, true).unwrap().rgb,
                enc.preprocess_config(),
            )
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
    assert!(texts.iter().all(|t| ids(&t["input_ids"]).len() == 64));
    check_texts(&enc, texts, "siglip-tiny", |t| {
        ids(&t["unpadded_ids"]).len() > 64
    });
}

/// Zero-shot: every image's score against each label prompt is transformers'
/// `torch.sigmoid(SiglipModel(...).logits_per_image)`, with the checkpoint's `logit_scale` and
/// `logit_bias` (4.7 and −12.9, the real checkpoints' magnitudes: a softmax or a missing bias
/// would be far off).
#[test]
fn zero_shot_scores_are_transformers_sigmoids() {
    use imgvec::eval::zero_shot;
    let model = ModelDir::open(&model_dir()).unwrap();
    let exp = reference();
    let scoring = zero_shot::Scoring {
        logit_scale: model.logit_scale().unwrap(),
        logit_bias: model.logit_bias().unwrap(),
    };
    assert!((f64::from(scoring.logit_scale) - exp["logit_scale"].as_f64().unwrap()).abs() < 1e-6);
    assert_eq!(
        scoring.logit_bias.map(f64::from),
        exp["logit_bias"].as_f64().map(|b| b as f32 as f64)
    );
    let zs = &exp["zero_shot"];
    let labels: Vec<String> = zs["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let text = TextEncoder::load(&model, &Device::Cpu).unwrap();
    let template = zs["template"].as_str().unwrap();
    let texts: Vec<Vec<f32>> = labels
        .iter()
        .map(|l| {
            let prompt = zero_shot::prompt(template, l).unwrap();
            text.embed(&prompt).unwrap().vector
        })
        .collect();
    let images = ImageEncoder::load(&model, &Device::Cpu).unwrap();
    let mut worst = 0f64;
    let bias = f64::from(scoring.logit_bias.unwrap());
    for (i, img) in exp["images"].as_array().unwrap().iter().enumerate() {
        let name = img["file"].as_str().unwrap();
        let bytes = std::fs::read(fixtures().join("images").join(name)).unwrap();
        let pixels = preprocess_rgb(
            &decode_rgb(&bytes, true).unwrap().rgb,
            images.preprocess_config(),
        );
        let v = images.embed_pixels(&[&pixels]).unwrap().remove(0);
        let scores = scoring.scores(&v, &texts);
        let logits = zero_shot::logits(&v, &texts, scoring.logit_scale);
        let want_logits = floats(&zs["logits_per_image"][i]);
        let want = floats(&zs["probabilities"][i]);
        for j in 0..labels.len() {
            // exp(4.7) ≈ 110 times the cosine: f32's 1e-7 on a cosine is ~1e-5 on a logit, and
            // the same relative difference on a small sigmoid.
            let diff = (logits[j] + bias - f64::from(want_logits[j])).abs();
            worst = worst.max(diff);
            assert!(
                diff <= logit_tolerance(),
                "{name}, {}: logit {} vs transformers' {}",
                labels[j],
                logits[j] + bias,
                want_logits[j]
            );
            let rel = (scores[j] - f64::from(want[j])).abs() / f64::from(want[j]);
            assert!(
                rel <= logit_tolerance(),
                "{name}, {}: {} vs {}",
                labels[j],
                scores[j],
                want[j]
            );
        }
        let best = (0..want.len())
            .max_by(|&a, &b| want[a].total_cmp(&want[b]))
            .unwrap();
        let p = zero_shot::classify(&v, &labels, &texts, scoring).unwrap();
        assert_eq!(p.label, labels[best], "{name}");
    }
    eprintln!("siglip-tiny zero-shot: largest logit difference {worst:.2e}");
}

/// How far a logit may be from transformers' (and a sigmoid score, relatively: far below 0.5 its
/// relative error is the logit's). The f32 kernels: 1e-4 (exp(4.7) ≈ 110 times the cosine, f32's
/// 1e-7 on a cosine is ~1e-5 on a logit). AMX's split-bf16 products (`amx-bf16x3`, the default on
/// Intel Xeons with AMX) carry about 17 bits of each operand, not 24: embeddings within ~1e-5 of
/// f32's, so a logit within ~1e-3 (1.5e-4 seen on a Sapphire Rapids-class Xeon).
fn logit_tolerance() -> f64 {
    if imgvec::clip::dense::linear_kernels() == "amx-bf16x3" {
        1e-3
    } else {
        1e-4
    }
}

/// End to end on the embedded store: ingest records the SigLIP model, `search --text` ranks as
/// transformers' embeddings do, and `classify --zero-shot` reports the sigmoid score of the best
/// label (the labels are the index's).
#[test]
fn ingest_search_and_zero_shot_classify_end_to_end() {
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
    let files = ["chelsea.png", "coffee.png", "astronaut.png"];
    let labels = ["cat", "coffee", "astronaut"];
    for (f, l) in files.iter().zip(labels) {
        let out = run(&["ingest", images.join(f).to_str().unwrap(), "--label", l]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let exp = reference();
    let emb = |file: &str| {
        let img = exp["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["file"] == file)
            .unwrap();
        floats(&img["embedding"])
    };
    let query = exp["texts"][2]["text"].as_str().unwrap();
    let out = run(&["search", "--text", query, "-k", "3", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hits = json_lines(&stdout(&out));
    let qv = floats(&exp["texts"][2]["embedding"]);
    let mut want: Vec<(f64, &str)> = files
        .iter()
        .zip(labels)
        .map(|(f, l)| (cosine(&qv, &emb(f)), l))
        .collect();
    want.sort_by(|a, b| b.0.total_cmp(&a.0));
    let got: Vec<&str> = hits.iter().map(|h| h["label"].as_str().unwrap()).collect();
    assert_eq!(got, want.iter().map(|w| w.1).collect::<Vec<_>>());

    let out = run(&[
        "classify",
        images.join("chelsea.png").to_str().unwrap(),
        "--zero-shot",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = &json_lines(&stdout(&out))[0];
    // transformers' sigmoid scores for chelsea.png over the index's labels.
    let zs = &exp["zero_shot"];
    let all: Vec<&str> = zs["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let row = floats(&zs["probabilities"][0]);
    let (best, score) = labels
        .iter()
        .map(|l| (*l, f64::from(row[all.iter().position(|a| a == l).unwrap()])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!(line["label"], best, "{line}");
    let conf = line["confidence"].as_f64().unwrap();
    assert!(
        (conf - score).abs() <= logit_tolerance() * score,
        "{conf} vs {score}"
    );

    let info = run(&["info", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&info).trim()).unwrap();
    assert_eq!(v["index_model"]["family"], "siglip", "{v}");
    assert_eq!(v["model"]["family"], "siglip", "{v}");
    assert_eq!(v["model"]["dims"], 64, "{v}");
    assert_eq!(v["index_model"]["dims"], 64);
}

/// SigLIP (v1) ships only SentencePiece's `spiece.model`: the same checkpoint with that tokenizer
/// (a unigram model with an NFKC character map, `do_lower_case`) gives the ids of transformers'
/// `SiglipTokenizer` (canonicalized text, `</s>` appended, padded on the right with `</s>` to
/// 64, cut there), then its embeddings.
#[test]
fn siglip_v1_spiece_model_ids_and_embeddings() {
    let dir = unpack_model("siglip-tiny-spiece");
    for f in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ] {
        std::fs::copy(model_dir().join(f), dir.join(f)).unwrap();
    }
    let model = ModelDir::open(&dir).unwrap();
    let enc = TextEncoder::load(&model, &Device::Cpu).unwrap();
    let exp = reference();
    let texts = exp["spiece_texts"].as_array().unwrap();
    assert!(texts.len() >= 10);
    check_texts(&enc, texts, "siglip-tiny spiece.model", |t| {
        ids(&t["unpadded_ids"]).len() > 64
    });
}

/// In f16 and bf16 (`--precision`, candle's ops: what a GPU runs, here on the CPU) both towers,
/// the pooling head included, give the f32 embeddings to a cosine of 0.99.
#[test]
fn half_precision_towers_match_f32() {
    use candle_core::DType;
    let model = |dtype| ModelDir::open(&model_dir()).unwrap().with_dtype(dtype);
    let exp = reference();
    let f32_images = ImageEncoder::load(&model(DType::F32), &Device::Cpu).unwrap();
    let pixels: Vec<Vec<f32>> = ["chelsea.png", "synth_tall.png"]
        .iter()
        .map(|f| {
            let bytes = std::fs::read(fixtures().join("images").join(f)).unwrap();
            preprocess_rgb(
                &decode_rgb(&bytes, true).unwrap().rgb,
                f32_images.preprocess_config(),
            )
        })
        .collect();
    let refs: Vec<&[f32]> = pixels.iter().map(Vec::as_slice).collect();
    let want = f32_images.embed_pixels(&refs).unwrap();
    let f32_text = TextEncoder::load(&model(DType::F32), &Device::Cpu).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let enc = ImageEncoder::load(&model(dtype), &Device::Cpu).unwrap();
        for (g, w) in enc.embed_pixels(&refs).unwrap().iter().zip(&want) {
            assert!((norm(g) - 1.0).abs() < 1e-5);
            let c = cosine(g, w);
            assert!(c >= 0.99, "{dtype:?}: image cosine to f32 {c}");
        }
        let text = TextEncoder::load(&model(dtype), &Device::Cpu).unwrap();
        for t in exp["texts"].as_array().unwrap().iter().take(3) {
            let t = t["text"].as_str().unwrap();
            let c = cosine(
                &text.embed(t).unwrap().vector,
                &f32_text.embed(t).unwrap().vector,
            );
            assert!(c >= 0.99, "{dtype:?} {t:?}: text cosine to f32 {c}");
        }
    }
}
