//! Camera RAW files against the reference pipeline: rawpy's `extract_thumb()` followed by Pillow
//! (`tests/fixtures/raw/parity/`, built by `make_raw.py` to each container's layout and opened by
//! LibRaw 0.22 through rawpy 0.28). For each file: imgvec picks the very bytes LibRaw picks (the
//! same place in the file, the same SHA-256), decodes them to Pillow's pixels, turns them as the
//! container says, and its embedding is at cosine ≥ 0.9995 to that of Pillow's pixels through the
//! tiny checkpoint.

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use common::*;
use image::metadata::Orientation;
use imgvec::clip::preprocess::preprocess_rgb;
use imgvec::clip::{ImageEncoder, ModelDir};
use imgvec::image::decode_rgb;
use imgvec::image::raw::raw_preview;
use sha2::{Digest, Sha256};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/raw/parity")
}

/// The files LibRaw opened (all of them, as built), with what rawpy and Pillow gave.
fn manifest() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    let files = json["files"].as_array().expect("files").clone();
    for f in &files {
        assert_eq!(f["rawpy"], "ok", "LibRaw refused {}", f["file"]);
    }
    files
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join("files").join(name)).expect("fixture")
}

fn pillow(entry: &serde_json::Value) -> image::RgbImage {
    let png = entry["expected"].as_str().expect("expected");
    image::open(dir().join("expected").join(png))
        .expect("expected png")
        .to_rgb8()
}

fn max_delta(a: &image::RgbImage, b: &image::RgbImage) -> u8 {
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| x.abs_diff(y))
        .max()
        .unwrap_or(0)
}

/// LibRaw's flip (0, 3, 5, 6) as the EXIF orientation it stands for.
fn from_flip(flip: u64) -> Orientation {
    match flip {
        0 => Orientation::NoTransforms,
        3 => Orientation::Rotate180,
        5 => Orientation::Rotate270,
        6 => Orientation::Rotate90,
        other => panic!("flip {other}"),
    }
}

#[test]
fn raw_previews_are_the_bytes_rawpy_extracts() {
    let files = manifest();
    assert!(files.len() >= 9, "{} files", files.len());
    let mut formats = std::collections::BTreeSet::new();
    for entry in &files {
        let name = entry["file"].as_str().unwrap_or_default();
        let bytes = read(name);
        let (_, preview) = raw_preview(&bytes).unwrap_or_else(|| panic!("{name}: not RAW"));
        let preview = preview.unwrap_or_else(|e| panic!("{name}: {e}"));
        let offset = preview.jpeg.as_ptr() as usize - bytes.as_ptr() as usize;
        assert_eq!(
            (offset as u64, preview.jpeg.len() as u64),
            (
                entry["preview_offset"].as_u64().unwrap_or(0),
                entry["preview_len"].as_u64().unwrap_or(0)
            ),
            "{name}: where the preview lies"
        );
        let sha: String = Sha256::digest(preview.jpeg)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            sha,
            entry["preview_sha256"].as_str().unwrap_or(""),
            "{name}"
        );
        let size = &entry["size"];
        assert_eq!(
            (u64::from(preview.width), u64::from(preview.height)),
            (size[0].as_u64().unwrap_or(0), size[1].as_u64().unwrap_or(0)),
            "{name}"
        );
        formats.insert(name.split('_').next().unwrap_or_default().to_string());
    }
    assert_eq!(
        formats.into_iter().collect::<Vec<_>>().join(" "),
        "arw cr2 dng nef orf pef raf rw2"
    );
}

/// Pillow's pixels exactly (both decoders are libjpeg-turbo's arithmetic), as stored; turned as
/// LibRaw's flip says when orientation applies (rawpy's thumbnail itself is never turned, and
/// transformers does not turn it either: `--ignore-exif-orientation` gives the reference pixels).
/// RAF is the exception: LibRaw takes no orientation from a RAF's preview, imgvec takes the
/// preview's own EXIF tag, as for any JPEG.
#[test]
fn raw_previews_decode_to_pillows_pixels_and_turn_as_libraw_says() {
    for entry in manifest() {
        let name = entry["file"].as_str().unwrap_or_default();
        let bytes = read(name);
        let want = pillow(&entry);
        let ours = decode_rgb(&bytes, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ours.rgb.dimensions(), want.dimensions(), "{name}");
        assert_eq!(max_delta(&ours.rgb, &want), 0, "{name}: pixels");
        assert_eq!(ours.orientation, Orientation::NoTransforms, "{name}");

        let upright = decode_rgb(&bytes, true).expect("decodes");
        let flip = entry["libraw_flip"].as_u64().unwrap_or(99);
        let orientation = if name.ends_with(".raf") {
            assert_eq!(flip, 0, "{name}");
            Orientation::Rotate90 // the preview's EXIF Orientation 6
        } else {
            from_flip(flip)
        };
        assert_eq!(upright.orientation, orientation, "{name}");
        let mut turned = image::DynamicImage::ImageRgb8(want);
        turned.apply_orientation(orientation);
        assert_eq!(upright.rgb, turned.to_rgb8(), "{name}: turned");
    }
}

/// The target: cosine ≥ 0.9995 on the tiny checkpoint between imgvec's decoding and
/// Pillow's pixels of rawpy's thumbnail, through the same preprocessing.
#[test]
fn raw_embeddings_match_the_reference_on_the_tiny_checkpoint() {
    let model = ModelDir::open(&tiny_model_dir()).unwrap();
    let enc = ImageEncoder::load(&model, &Device::Cpu).unwrap();
    let mut report = Vec::new();
    for entry in manifest() {
        let name = entry["file"].as_str().unwrap_or_default();
        let ours = decode_rgb(&read(name), false).expect("decodes");
        let ours = preprocess_rgb(&ours.rgb, enc.preprocess_config());
        let theirs = preprocess_rgb(&pillow(&entry), enc.preprocess_config());
        let e = enc.embed_pixels(&[&ours, &theirs]).unwrap();
        let c = cosine(&e[0], &e[1]);
        report.push(format!("{name:>20}  cosine {c:.8}"));
        assert!(c >= 0.9995, "{name}: cosine {c}");
    }
    eprintln!("RAW parity (tiny checkpoint):\n{}", report.join("\n"));
}
