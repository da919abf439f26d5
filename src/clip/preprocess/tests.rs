//! Tests of the CLIP preprocessing: config parsing and the whole pipeline against
//! transformers' numbers (decoding and resampling have their own tests in `crate::image`).

use super::*;
use crate::image::test_util::{fnv_f32, pattern, JPEG_RESTART_422};

#[test]
fn pipeline_matches_transformers() {
    let clip = PreprocessConfig::clip_default(224);
    let mut pad = clip.clone();
    (
        pad.do_resize,
        pad.crop_height,
        pad.crop_width,
        pad.do_normalize,
    ) = (false, 5, 12, false);
    let mut exact = clip.clone();
    exact.size = ResizeTarget::Exact {
        height: 30,
        width: 20,
    };
    exact.do_center_crop = false;
    exact.resample = Resample::Bilinear;
    (exact.image_mean, exact.image_std) = ([0.5; 3], [0.5; 3]);
    let mut capped = clip.clone();
    capped.size = ResizeTarget::ShortestEdge {
        shortest_edge: 20,
        longest_edge: Some(30),
    };
    (capped.crop_height, capped.crop_width, capped.do_rescale) = (16, 16, false);
    // (image size, config, tensor (h, w), FNV-1a of transformers' float32 bytes, first value)
    let cases = [
        (
            (20, 13),
            clip.clone(),
            (224, 224),
            0x2baa06e7133b9b1e_u64,
            -0.39081356_f32,
        ),
        (
            (300, 100),
            clip.clone(),
            (224, 224),
            0xb62448d9d3ca5054,
            -0.42001042,
        ),
        (
            (37, 300),
            clip.clone(),
            (224, 224),
            0x94b950a7f42f1f3d,
            0.54348576,
        ),
        // Shrunk portrait taller than 2:1: Pillow 13 runs the vertical pass first.
        (
            (300, 700),
            clip.clone(),
            (224, 224),
            0x4dae6bf0888ea677,
            -0.60978997,
        ),
        (
            (1170, 2532),
            clip.clone(),
            (224, 224),
            0x59050ae2a0e12149,
            0.12013142,
        ),
        (
            (50, 41),
            PreprocessConfig::clip_default(32),
            (32, 32),
            0x23a2f50d977913da,
            0.0033439053,
        ),
        ((9, 7), pad, (5, 12), 0x3c3aa79228e866c9, 0.0),
        ((50, 40), exact, (30, 20), 0xf3a71815c9fffdc3, -0.46666664),
        ((100, 40), capped, (16, 16), 0x078515e00480216a, -1.7922626),
    ];
    for ((w, h), cfg, size, expected, first) in cases {
        assert_eq!(cfg.output_size(), size);
        let px = preprocess_rgb(&pattern(w, h), &cfg);
        assert_eq!(px.len(), 3 * size.0 as usize * size.1 as usize);
        assert_eq!(px[0], first, "{w}x{h}");
        assert_eq!(fnv_f32(&px), expected, "{w}x{h} {cfg:?}");
    }
}

#[test]
fn resize_sizes_follow_transformers() {
    let clip = PreprocessConfig::clip_default(224);
    assert_eq!(clip.resized_size(300, 451), (224, 336));
    assert_eq!(clip.resized_size(427, 640), (224, 335));
    assert_eq!(clip.resized_size(700, 100), (1568, 224));
    assert_eq!(clip.resized_size(224, 224), (224, 224));
    assert_eq!(clip.resized_size(1, 100_000), (224, 22_400_000));
    assert_eq!(crop_axis(335, 224), (55, 0, 224));
    assert_eq!(crop_axis(7, 12), (0, 3, 7));
    assert_eq!(crop_axis(8, 12), (0, 2, 8));
}

#[test]
fn extreme_aspect_ratio_stays_cheap() {
    // 22 400 000 × 224 after resize: only the crop window is computed.
    let img = pattern(100_000, 1);
    let px = preprocess_rgb(&img, &PreprocessConfig::clip_default(224));
    assert_eq!(px.len(), 3 * 224 * 224);
    assert!(px.iter().all(|v| v.is_finite()));
}

#[test]
fn normalization_is_float32_like_numpy() {
    let lut = PreprocessConfig::clip_default(224).lookup_tables();
    assert_eq!(lut[0][0], (0.0f32 - 0.48145466f32) / 0.26862954f32);
    let x255 = (255.0f64 * (1.0 / 255.0)) as f32;
    assert_eq!(
        lut[2][255],
        (x255 - 0.40821073f64 as f32) / (0.27577711f64 as f32)
    );
}

const HF_CONFIG: &str = r#"{
    "crop_size": {"height": 224, "width": 224}, "do_center_crop": true,
    "do_convert_rgb": true, "do_normalize": true, "do_rescale": true, "do_resize": true,
    "image_processor_type": "CLIPImageProcessor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
    "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 224}}"#;

/// openai/clip-vit-large-patch14's file: ints for size and crop_size, no rescale keys.
const OPENAI_CONFIG: &str = r#"{
    "crop_size": 224, "do_center_crop": true, "do_normalize": true, "do_resize": true,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}"#;

#[test]
fn config_files_parse_to_clip_defaults() {
    let clip = PreprocessConfig::clip_default(224);
    assert_eq!(PreprocessConfig::from_json(HF_CONFIG, 224).unwrap(), clip);
    assert_eq!(
        PreprocessConfig::from_json(OPENAI_CONFIG, 224).unwrap(),
        clip
    );
    // Missing keys take the defaults for the model's size.
    let c336 = PreprocessConfig::from_json("{}", 336).unwrap();
    assert_eq!(c336, PreprocessConfig::clip_default(336));
    assert_eq!(c336.output_size(), (336, 336));
}

#[test]
fn config_variants_and_errors() {
    let parse = |s: &str| PreprocessConfig::from_json(s, 224);
    let exact =
        parse(r#"{"size": {"height": 256, "width": 192}, "do_center_crop": false}"#).unwrap();
    assert_eq!(exact.output_size(), (256, 192));
    let listed = parse(r#"{"size": [256, 192], "crop_size": [200, 100], "resample": 2}"#).unwrap();
    assert_eq!(
        listed.size,
        ResizeTarget::Exact {
            height: 256,
            width: 192
        }
    );
    assert_eq!(
        (listed.output_size(), listed.resample),
        ((200, 100), Resample::Bilinear)
    );
    let single = parse(r#"{"image_mean": 0.5, "image_std": 0.25}"#).unwrap();
    assert_eq!((single.image_mean, single.image_std), ([0.5; 3], [0.25; 3]));
    let longest = parse(r#"{"size": {"shortest_edge": 224, "longest_edge": 448}}"#).unwrap();
    // transformers: raw = 448·100/1000 = 44.8, round → 45 (short side), int(44.8·1000/100).
    assert_eq!(longest.resized_size(100, 1000), (45, 448));
    for bad in [
        "not json",
        r#"{"resample": 0}"#,
        r#"{"resample": 9}"#,
        r#"{"resample": "bicubic"}"#,
        r#"{"do_center_crop": false}"#,
        r#"{"do_resize": false, "do_center_crop": false}"#,
        r#"{"size": {"longest_edge": 224}}"#,
        r#"{"size": 0}"#,
        r#"{"crop_size": 100000}"#,
        r#"{"image_mean": [0.5, 0.5]}"#,
        r#"{"image_std": [0.5, 0.0, 0.5]}"#,
        r#"{"do_resize": "yes"}"#,
    ] {
        match parse(bad) {
            Err(PreprocessError::Config(reason)) => assert!(!reason.is_empty(), "{bad}"),
            other => panic!("{bad}: expected a Config error, got {other:?}"),
        }
    }
}

#[test]
fn from_model_dir_reads_the_file_when_present() {
    let dir = std::env::temp_dir().join(format!("imgvec-preprocess-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("preprocessor_config.json");
    let _ = std::fs::remove_file(&file);
    let absent = PreprocessConfig::from_model_dir(&dir, 336).unwrap();
    assert_eq!(absent, PreprocessConfig::clip_default(336));
    std::fs::write(&file, OPENAI_CONFIG).unwrap();
    let present = PreprocessConfig::from_model_dir(&dir, 336).unwrap();
    assert_eq!(present, PreprocessConfig::clip_default(224));
    std::fs::write(&file, r#"{"resample": 0}"#).unwrap();
    assert!(matches!(
        PreprocessConfig::from_model_dir(&dir, 224),
        Err(PreprocessError::Config(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn preprocess_bytes_reports_the_image() {
    let out =
        preprocess_bytes(JPEG_RESTART_422, &PreprocessConfig::clip_default(224), true).unwrap();
    assert_eq!(out.pixels.len(), 3 * 224 * 224);
    assert_eq!((out.original_width, out.original_height), (19, 13));
    assert_eq!(out.format, ImageFormat::Jpeg);
    let empty = RgbImage::new(0, 0);
    assert_eq!(
        preprocess_rgb(&empty, &PreprocessConfig::clip_default(8)).len(),
        3 * 64
    );
}
