//! Parity with Hugging Face transformers on any checkpoint made by make_weights.py, given the expected
//! numbers reference.py wrote: the full-size check that CI cannot afford (tests/parity.rs does the
//! same on the tiny checkpoint). Prints per-case cosines and the minimum of each kind.
//!
//! cargo bench --bench parity -- --model DIR --reference DIR/clip-reference --expected FILE.json

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use imgvec::clip::preprocess::preprocess_rgb;
use imgvec::clip::{cosine, ImageEncoder, ModelDir, TextEncoder};
use imgvec::image::decode_rgb;

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_f64())
                .map(|x| x as f32)
                .collect()
        })
        .unwrap_or_default()
}

fn main() {
    imgvec::tune_allocator();
    let mut model = PathBuf::from("models/clip-vit-large-patch14");
    let mut reference = PathBuf::from("../shared/clip-reference");
    let mut expected = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--model" => model = it.next().map(PathBuf::from).unwrap_or(model),
            "--reference" => reference = it.next().map(PathBuf::from).unwrap_or(reference),
            "--expected" => expected = it.next().map(PathBuf::from),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let expected = expected.unwrap_or_else(|| reference.join("expected/vit-l-14-seed1.json"));
    let exp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&expected)
            .unwrap_or_else(|e| panic!("{}: {e}", expected.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", expected.display()));

    let t = Instant::now();
    let dir = ModelDir::open(&model).unwrap_or_else(|e| panic!("{e}"));
    let enc = ImageEncoder::load(&dir, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "model {} loaded in {:.2} s",
        model.display(),
        t.elapsed().as_secs_f64()
    );

    let (mut min_px, mut min_file, mut max_diff) = (1f64, 1f64, 0f32);
    let mut pixels_equal = true;
    for img in exp["images"].as_array().into_iter().flatten() {
        let name = img["file"].as_str().unwrap_or("?");
        let want = floats(&img["embedding"]);
        let bytes =
            std::fs::read(reference.join("images").join(name)).unwrap_or_else(|e| panic!("{e}"));
        let ours = preprocess_rgb(
            &decode_rgb(&bytes, true)
                .unwrap_or_else(|e| panic!("{e}"))
                .rgb,
            enc.preprocess_config(),
        );
        // Expected files of make_chinese_clip_tiny.py / make_clip_variants.py carry the pixels'
        // SHA-256 instead of pixel files: equal hashes, equal pixels.
        let px = if let Some(sha) = img["pixels_sha256"].as_str() {
            use sha2::Digest;
            let raw: Vec<u8> = ours.iter().flat_map(|x| x.to_le_bytes()).collect();
            let got: String = sha2::Sha256::digest(&raw)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if got != sha {
                pixels_equal = false;
                println!("image {name:>20}  pixels DIFFER from transformers' (SHA-256)");
            }
            ours.clone()
        } else {
            let raw = std::fs::read(reference.join("pixels").join(format!("{name}.f32")))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let diff = ours
            .iter()
            .zip(&px)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let v = enc
            .embed_pixels(&[&px, &ours])
            .unwrap_or_else(|e| panic!("{e}"));
        let (c_px, c_file) = (cosine(&v[0], &want), cosine(&v[1], &want));
        println!("image {name:>20}  reference pixels 1-cos {:.2e}  own preprocessing 1-cos {:.2e}  max|Δpixel| {diff:.3e}", 1.0 - c_px, 1.0 - c_file);
        min_px = min_px.min(c_px);
        min_file = min_file.min(c_file);
        max_diff = max_diff.max(diff);
    }

    let text = TextEncoder::load(&dir, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let (mut min_text, mut ids_equal) = (1f64, true);
    for t in exp["texts"].as_array().into_iter().flatten() {
        let s = t["text"].as_str().unwrap_or("");
        let want_ids: Vec<u32> = t["input_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect();
        let e = text.embed(s).unwrap_or_else(|e| panic!("{e}"));
        let c = cosine(&e.vector, &floats(&t["embedding"]));
        let same = e.input_ids == want_ids;
        ids_equal &= same;
        println!(
            "text {s:?}: input_ids {} 1-cos {:.2e}",
            if same { "identical" } else { "DIFFER" },
            1.0 - c
        );
        min_text = min_text.min(c);
    }
    println!(
        "SUMMARY min cosine: reference pixels {min_px:.8} (target ≥ 0.99999), own preprocessing {min_file:.8} (≥ 0.9995), \
texts {min_text:.8} (≥ 0.9999), input_ids {}; max pixel difference {max_diff:.3e}{}",
        if ids_equal { "all identical" } else { "SOME DIFFER" },
        if pixels_equal { "" } else { "; SOME PIXELS DIFFER" }
    );
    println!(
        "SUMMARY worst 1 − cos: images {:.2e}, texts {:.2e}",
        1.0 - min_file.min(min_px),
        1.0 - min_text
    );
    // Timing, for the figures beside PyTorch's: the vision tower at batch 1 and 8.
    let px = vec![0.1f32; enc.pixels_len()];
    for batch in [1usize, 8] {
        let imgs: Vec<&[f32]> = (0..batch).map(|_| &px[..]).collect();
        enc.embed_pixels(&imgs).unwrap_or_else(|e| panic!("{e}"));
        let (t, mut n) = (Instant::now(), 0usize);
        while t.elapsed().as_secs_f64() < 3.0 {
            enc.embed_pixels(&imgs).unwrap_or_else(|e| panic!("{e}"));
            n += batch;
        }
        println!(
            "SPEED imgvec vision tower batch {batch}: {:.2} img/s",
            n as f64 / t.elapsed().as_secs_f64()
        );
    }
    let pass =
        min_px >= 0.99999 && min_file >= 0.9995 && min_text >= 0.9999 && ids_equal && pixels_equal;
    std::process::exit(if pass { 0 } else { 1 });
}
