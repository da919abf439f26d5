//! HEIC/HEIF and AVIF (`tests/fixtures/heif/`, built by `make_heif.py` with heif-enc, avifenc and
//! pillow-heif): each file Pillow 13 + pillow-heif reads gives its pixels (to within the rounding
//! of another libheif/libde265/libavif version: the largest difference is printed and bounded),
//! turned as Pillow turns it; through the tiny checkpoint, the embedding of imgvec's pixels is at
//! cosine ≥ 0.9995 to that of Pillow's; damaged files are refused with a reason that names the
//! format. Without the `heif` feature, every such file is refused saying how to get support.

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use common::*;
use imgvec::clip::preprocess::preprocess_rgb;
use imgvec::clip::{ImageEncoder, ModelDir};
use imgvec::image::{decode_rgb, DecodeError};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heif")
}

fn manifest() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    json["files"].as_array().expect("files").clone()
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join("files").join(name)).expect("fixture")
}

fn pillow(name: &str) -> image::RgbImage {
    image::open(dir().join("expected").join(format!("{name}.png")))
        .expect("expected png")
        .to_rgb8()
}

/// Largest |Δ| over all values, and the mean |Δ|.
fn diff(a: &image::RgbImage, b: &image::RgbImage) -> (u8, f64) {
    let d: Vec<u8> = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| x.abs_diff(y))
        .collect();
    let max = d.iter().copied().max().unwrap_or(0);
    (
        max,
        d.iter().map(|&v| f64::from(v)).sum::<f64>() / d.len().max(1) as f64,
    )
}

/// The largest difference allowed from Pillow's pixels: libheif 1.15 with libde265 1.0 (Debian 12)
/// against pillow-heif's libheif 1.23 with libde265 1.1 (and libavif's own YUV→RGB for AVIF).
const MAX_DELTA: u8 = 3;

#[test]
#[cfg_attr(not(feature = "heif"), ignore = "needs --features heif")]
fn heif_files_decode_as_pillow_does() {
    let mut report = Vec::new();
    let mut read_by_pillow = 0;
    for entry in manifest() {
        let name = entry["file"].as_str().unwrap_or_default();
        let bytes = read(name);
        let ours = decode_rgb(&bytes, false);
        if entry["pillow"] != "ok" {
            match ours {
                Err(e @ DecodeError::Heif { .. }) => {
                    let text = e.to_string();
                    assert!(
                        text.starts_with("cannot read HEIC file: ")
                            || text.starts_with("cannot read AVIF file: "),
                        "{name}: {text}"
                    );
                    report.push(format!("{name:>26}  refused: {text}"));
                }
                other => panic!("{name}: Pillow refuses it; imgvec gives {other:?}"),
            }
            continue;
        }
        read_by_pillow += 1;
        let ours = ours.unwrap_or_else(|e| panic!("{name}: refused ({e}); Pillow reads it"));
        let want = pillow(name);
        assert_eq!(ours.rgb.dimensions(), want.dimensions(), "{name}: size");
        let (max, mean) = diff(&ours.rgb, &want);
        report.push(format!("{name:>26}  max |Δ| {max:>2}  mean |Δ| {mean:.3}"));
        assert!(max <= MAX_DELTA, "{name}: max |Δ| {max} (mean {mean:.3})");
        assert!(mean < 1.0, "{name}: mean |Δ| {mean:.3}");
    }
    eprintln!(
        "HEIF/AVIF against Pillow + pillow-heif:\n{}",
        report.join("\n")
    );
    assert!(
        read_by_pillow >= 12,
        "{read_by_pillow} files read by Pillow"
    );
}

/// HEIC: libheif applies irot/imir (and clap); the EXIF tag a phone writes as well is not applied
/// on top (pillow-heif resets it to 1). AVIF: Pillow leaves the pixels as coded and gives irot/imir
/// as the EXIF orientation, which imgvec applies as it does a JPEG's.
#[test]
#[cfg_attr(not(feature = "heif"), ignore = "needs --features heif")]
fn heif_orientation_as_pillow_gives_it() {
    for entry in manifest() {
        let name = entry["file"].as_str().unwrap_or_default();
        if entry["pillow"] != "ok" {
            continue;
        }
        let bytes = read(name);
        let plain = decode_rgb(&bytes, false).expect("decodes");
        let upright = decode_rgb(&bytes, true).expect("decodes");
        let exif = entry["exif_orientation"].as_u64().unwrap_or(1) as u8;
        let orientation =
            image::metadata::Orientation::from_exif(exif).expect("a valid orientation");
        assert_eq!(upright.orientation, orientation, "{name}");
        let mut want = image::DynamicImage::ImageRgb8(plain.rgb.clone());
        want.apply_orientation(orientation);
        assert_eq!(upright.rgb, want.to_rgb8(), "{name}");
        if name.starts_with("heic") {
            assert_eq!(exif, 1, "{name}: pillow-heif resets the EXIF orientation");
        }
    }
    // The files that test it really are turned: portrait from a landscape source.
    for name in ["heic_orient6.heic", "heic_orient5.heic"] {
        let d = decode_rgb(&read(name), true).expect("decodes");
        assert_eq!(d.rgb.dimensions(), (48, 64), "{name}");
    }
    let d = decode_rgb(&read("avif_irot1_imir0.avif"), true).expect("decodes");
    assert_eq!(d.rgb.dimensions(), (120, 160));
    // EXIF Orientation 6 and the irot libavif wrote for it: turned once.
    let d = decode_rgb(&read("avif_exif6.avif"), true).expect("decodes");
    assert_eq!(d.orientation, image::metadata::Orientation::Rotate90);
    assert_eq!(d.rgb.dimensions(), (120, 160));
    let d = decode_rgb(&read("heic_clap.heic"), true).expect("decodes");
    assert_eq!(d.rgb.dimensions(), (100, 80));
    assert_eq!(
        decode_rgb(&read("heic_grid.heic"), true)
            .expect("decodes")
            .rgb
            .dimensions(),
        (120, 100)
    );
}

/// The target: cosine ≥ 0.9995 on the tiny checkpoint between the embedding of imgvec's
/// decoding and that of Pillow + pillow-heif's (both through the preprocessing that
/// `tests/parity.rs` shows equal to transformers', value for value).
#[test]
#[cfg_attr(not(feature = "heif"), ignore = "needs --features heif")]
fn heif_embeddings_match_pillows_on_the_tiny_checkpoint() {
    let model = ModelDir::open(&tiny_model_dir()).unwrap();
    let enc = ImageEncoder::load(&model, &Device::Cpu).unwrap();
    let mut report = Vec::new();
    let mut worst = 1.0f64;
    for entry in manifest() {
        let name = entry["file"].as_str().unwrap_or_default();
        if entry["pillow"] != "ok" {
            continue;
        }
        let ours = decode_rgb(&read(name), false).expect("decodes");
        let ours = preprocess_rgb(&ours.rgb, enc.preprocess_config());
        let theirs = preprocess_rgb(&pillow(name), enc.preprocess_config());
        let e = enc.embed_pixels(&[&ours, &theirs]).unwrap();
        let c = cosine(&e[0], &e[1]);
        worst = worst.min(c);
        report.push(format!("{name:>26}  cosine {c:.8}"));
        assert!(c >= 0.9995, "{name}: cosine {c}");
    }
    eprintln!(
        "HEIF/AVIF parity (tiny checkpoint):\n{}\nmin cosine {worst:.8}",
        report.join("\n")
    );
}

/// Damaged files are refused naming the format and the reason, never as "not an image"; a file
/// cut anywhere is refused or decoded, never a panic.
#[test]
#[cfg_attr(not(feature = "heif"), ignore = "needs --features heif")]
fn damaged_heif_files_are_refused_with_a_reason() {
    let trunc = decode_rgb(&read("trunc_heic_data.heic"), false).unwrap_err();
    assert!(trunc.to_string().contains("truncated"), "{trunc}");
    for name in [
        "heic_8bit.heic",
        "avif_8bit.avif",
        "heic_grid.heic",
        "heic_alpha.heic",
    ] {
        let whole = read(name);
        for cut in (0..whole.len()).step_by(97).skip(1) {
            match decode_rgb(&whole[..cut], false) {
                Ok(_) => {}
                Err(DecodeError::Heif { reason, .. }) => {
                    assert!(
                        !reason.contains("panicked") && !reason.is_empty(),
                        "{name}@{cut}: {reason}"
                    )
                }
                Err(e) => panic!("{name} cut at {cut}: {e}"),
            }
        }
    }
}

/// Built without the feature: recognised by content, refused with how to get support.
#[test]
#[cfg_attr(feature = "heif", ignore = "built with --features heif")]
fn heif_files_are_refused_without_the_feature() {
    for entry in manifest() {
        let name = entry["file"].as_str().unwrap_or_default();
        if name.starts_with("trunc_heic_header") {
            continue;
        }
        match decode_rgb(&read(name), true) {
            Err(DecodeError::Heif { kind, reason }) => {
                assert!(kind == "HEIC" || kind == "AVIF", "{name}: {kind}");
                assert!(reason.contains("--features heif"), "{name}: {reason}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// A header claiming a huge image is refused as too large before libheif decodes anything: over
/// imgvec's 100 MP, and over libheif's 32 768-pixel side limit.
#[test]
#[cfg_attr(not(feature = "heif"), ignore = "needs --features heif")]
fn huge_heif_headers_are_refused_before_decoding() {
    let whole = read("heic_8bit.heic");
    let at = whole
        .windows(4)
        .position(|w| w == b"ispe")
        .expect("an ispe box")
        + 8;
    for (w, h) in [(20_000u32, 20_000u32), (40_000, 16), (100_000, 100_000)] {
        let mut bytes = whole.clone();
        bytes[at..at + 4].copy_from_slice(&w.to_be_bytes());
        bytes[at + 4..at + 8].copy_from_slice(&h.to_be_bytes());
        match decode_rgb(&bytes, true) {
            Err(DecodeError::TooLarge { reason }) => assert!(!reason.is_empty()),
            other => panic!("{w}x{h}: expected TooLarge, got {other:?}"),
        }
    }
}
