//! `--precision`: f16 refused on the CPU with an error naming the flag; bf16 and int8 on the CPU
//! (imgvec's own linear layers) run where the CPU has the instructions and are refused with the
//! reason where it does not; and the library's f16/bf16 path (what a GPU runs: candle's ops in that
//! dtype, output converted to f32 before the normalisation) checked on the CPU, where candle has
//! those ops too, against the f32 model.

mod common;

use candle_core::{DType, Device};
use common::*;
use imgvec::clip::{ImageEncoder, ModelDir, TextEncoder};

#[test]
fn f16_on_the_cpu_is_refused_naming_the_flag() {
    let image = fixtures().join("images/chelsea.png");
    let image = image.to_str().unwrap();
    let store = tempfile::tempdir().unwrap();
    let store = store.path().to_str().unwrap();
    type Run<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let mut runs: Vec<Run> = vec![
        (vec!["embed", image, "--precision", "f16"], vec![], "f16"),
        (
            vec!["embed", image, "--precision", "f16", "--device", "cpu"],
            vec![],
            "f16",
        ),
        (
            vec![
                "search",
                "--text",
                "a cat",
                "--store",
                store,
                "--precision",
                "f16",
            ],
            vec![],
            "f16",
        ),
        (
            vec![
                "ingest",
                image,
                "--label",
                "cat",
                "--store",
                store,
                "--precision",
                "f16",
            ],
            vec![],
            "f16",
        ),
        // From the environment.
        (
            vec!["embed", image],
            vec![("IMGVEC_PRECISION", "f16")],
            "f16",
        ),
    ];
    if !cfg!(feature = "cuda") && !cfg!(feature = "metal") {
        // `auto` in a CPU-only build is the CPU.
        runs.push((
            vec!["embed", image, "--device", "auto", "--precision", "f16"],
            vec![],
            "f16",
        ));
    }
    for (args, env, name) in runs {
        let out = imgvec_env(&args, &env);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("--precision {name} needs a GPU")) && err.contains("f32"),
            "{args:?}: {err}"
        );
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
}

#[test]
fn f32_on_the_cpu_is_accepted_and_announced() {
    let image = fixtures().join("images/chelsea.png");
    let out = imgvec(&["embed", image.to_str().unwrap(), "--precision", "f32"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("precision f32"), "{}", stderr(&out));
    // The default on the CPU is f32 too.
    let out = imgvec(&["embed", image.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("precision f32"), "{}", stderr(&out));
}

/// The embeddings `imgvec embed --json` prints for `images` with these extra flags.
fn embed_json(images: &[&str], flags: &[&str]) -> Vec<Vec<f32>> {
    let mut args = vec!["embed", "--json"];
    args.extend(images);
    args.extend(flags);
    let out = imgvec(&args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

/// bf16 and int8 on the CPU, through the binary: where this CPU has the instructions (`imgvec info`
/// lists them), embeddings within cosine 0.999 of f32's and the precision announced; elsewhere
/// refused with the reason, nothing printed.
#[test]
fn bf16_and_int8_on_the_cpu_run_where_the_cpu_has_them() {
    let names = ["chelsea.png", "rocket.jpg", "synth_gray.jpg"];
    let paths: Vec<String> = names
        .iter()
        .map(|n| {
            fixtures()
                .join("images")
                .join(n)
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let paths: Vec<&str> = paths.iter().map(|p| p.as_str()).collect();
    let want = embed_json(&paths, &[]);
    let info = imgvec(&["info", "--json"]);
    let info: serde_json::Value = serde_json::from_str(stdout(&info).trim()).unwrap();
    let has = |p: &str| {
        info["cpu"]["precisions"]
            .as_array()
            .is_some_and(|a| a.contains(&serde_json::json!(p)))
    };
    for (p, has_it) in [("bf16", has("bf16")), ("int8", has("int8"))] {
        if has_it {
            let got = embed_json(&paths, &["--precision", p]);
            assert_eq!(got.len(), names.len());
            for ((name, g), w) in names.iter().zip(&got).zip(&want) {
                assert!((norm(g) - 1.0).abs() < 1e-5, "{p} {name}");
                let c = cosine(g, w);
                assert!(
                    (0.999..1.0 - 1e-9).contains(&c),
                    "{p} {name}: cosine to f32 {c}"
                );
            }
            let out = imgvec(&["embed", paths[0], "--precision", p]);
            assert!(
                stderr(&out).contains(&format!("precision {p}")),
                "{}",
                stderr(&out)
            );
        } else {
            let out = imgvec(&["embed", paths[0], "--precision", p]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{p}: {err}");
            assert!(
                err.contains(&format!("--precision {p} on the CPU: ")),
                "{err}"
            );
            assert!(stdout(&out).is_empty());
        }
    }
}

fn model(dtype: DType) -> ModelDir {
    ModelDir::open(&tiny_model_dir()).unwrap().with_dtype(dtype)
}

/// The tiny checkpoint in f16 and bf16 against f32 (the same weights, rounded): every reference
/// image's embedding within cosine 0.99, f32 out, unit norm. The bounds are loose on purpose (bf16
/// keeps 8 bits of mantissa); the GPU benchmark prints the figure for ViT-L/14.
#[test]
fn half_precision_vision_tower_matches_f32() {
    let names = expected_strings("images", "file");
    let pixels: Vec<Vec<f32>> = names.iter().map(|n| reference_pixels(n)).collect();
    let batch: Vec<&[f32]> = pixels.iter().map(|p| p.as_slice()).collect();
    let f32_enc = ImageEncoder::load(&model(DType::F32), &Device::Cpu).unwrap();
    assert_eq!(f32_enc.dtype(), DType::F32);
    let want = f32_enc.embed_pixels(&batch).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let enc = ImageEncoder::load(&model(dtype), &Device::Cpu).unwrap();
        assert_eq!(enc.dtype(), dtype);
        let got = enc.embed_pixels(&batch).unwrap();
        assert_eq!(got.len(), names.len());
        let mut worst = 1.0f64;
        for ((name, g), w) in names.iter().zip(&got).zip(&want) {
            assert_eq!(g.len(), 32);
            assert!(
                (norm(g) - 1.0).abs() < 1e-5,
                "{dtype:?} {name}: norm {}",
                norm(g)
            );
            let c = cosine(g, w);
            assert!(c >= 0.99, "{dtype:?} {name}: cosine to f32 {c}");
            worst = worst.min(c);
        }
        eprintln!("{dtype:?} vs f32, tiny checkpoint, 13 images: min cosine {worst:.6}");
        // Batched equals one by one in this dtype too.
        let single = &enc.embed_pixels(&[batch[1]]).unwrap()[0];
        assert!(cosine(single, &got[1]) > 0.999, "{dtype:?}");
    }
}

#[test]
fn half_precision_text_tower_matches_f32() {
    let texts = expected_strings("texts", "text");
    let f32_enc = TextEncoder::load(&model(DType::F32), &Device::Cpu).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        // The causal mask is built in the scores' dtype (it was f32 only before).
        let enc = TextEncoder::load(&model(dtype), &Device::Cpu).unwrap();
        for t in &texts {
            let got = enc.embed(t).unwrap().vector;
            let want = f32_enc.embed(t).unwrap().vector;
            assert!((norm(&got) - 1.0).abs() < 1e-5, "{dtype:?} {t:?}");
            let c = cosine(&got, &want);
            assert!(c >= 0.99, "{dtype:?} {t:?}: cosine to f32 {c}");
        }
    }
}
