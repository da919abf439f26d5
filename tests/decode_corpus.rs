//! The odd-file corpus (`tests/fixtures/odd/`, built by `make_odd.py`): every file Pillow reads
//! decodes to exactly Pillow's pixels (after transformers' `convert_to_rgb`), and every file Pillow
//! refuses is refused with a reason. Prints the pass rate.
//!
//! Not for: preprocessing or the model (`parity.rs`), or robustness against hostile files
//! (`decode_fuzz_corpus` below replays the fuzzer's regression corpus, which has no reference).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use imgvec::image::{decode_rgb, decode_rgb_with, DecodeError, DecodeOptions};

/// Files whose decoding paths have no other file in the corpus: each must stay in the manifest
/// as a file Pillow reads (so the pixel comparison above covers that path).
const MUST_COVER: [&str; 17] = [
    "tif_cmyk_jpeg_strips.tif", // CMYK JPEG in TIFF: stored CMYK, not Adobe-inverted
    "tif_cmyk_jpeg_tiles.tif",  // the same in tiles
    "tif_gray12.tif",           // 12-bit grayscale (its high 8 bits, deliberately)
    "tif_huffman_odd_width.tif", // CCITT Modified Huffman, rows byte-aligned
    "tif_bilevel_g3_2d_fill.tif", // CCITT G3 2-D, byte-aligned EOLs, several strips
    "tif_bilevel_g3_fill.tif",  // CCITT G3 1-D, FillOrder 2
    "tif_lzma_gray_predictor.tif", // LZMA with horizontal differencing
    "tif_lab.tif",              // CIELab through LittleCMS's Lab → sRGB
    "tif_lab_planar.tif",       // planar CIELab: white in the reference pipeline
    "tif_ycbcr.tif",            // YCbCr 1×1 through libtiff's RGBA interface
    "tif_ycbcr_22.tif",         // 2×2 subsampling, odd size, several strips
    "tif_ycbcr_41_refbw.tif",   // 4×1 with ReferenceBlackWhite
    "tif_ycbcr_12_coefficients.tif", // 1×2 with YCbCrCoefficients
    "tif_ycbcr_42.tif",         // 4×2
    "tif_ycbcr_raw.tif",        // uncompressed: Pillow's own YCbCr → RGB
    "tif_g4_crash_eol.tif",     // Pillow's G4 crash case: runs past the row, an EOL ends the strip
    "tif_g4_crash_width.tif",   // Pillow's G4 crash case: runs past the row's end are dropped
];

fn odd() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/odd")
}

fn manifest() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(odd().join("manifest.json")).expect("manifest.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    json["files"].as_array().expect("files").clone()
}

/// What imgvec makes of one corpus file, compared with Pillow: `Ok` when they agree.
fn check(entry: &serde_json::Value) -> Result<(), String> {
    let name = entry["file"].as_str().unwrap_or_default();
    let bytes = std::fs::read(odd().join("files").join(name)).map_err(|e| e.to_string())?;
    // transformers ignores EXIF orientation; so does the reference.
    let ours = decode_rgb(&bytes, false);
    if entry["pillow"] == "refused" {
        return match ours {
            Err(e) if !e.to_string().is_empty() => Ok(()),
            Err(_) => Err("refused without a reason".into()),
            Ok(_) => Err(format!("decoded; Pillow refuses it ({})", entry["reason"])),
        };
    }
    let ours = ours.map_err(|e| format!("refused ({e}); Pillow reads it"))?;
    let want_path = odd().join("expected").join(format!("{name}.png"));
    let want = image::open(&want_path)
        .map_err(|e| e.to_string())?
        .to_rgb8();
    if ours.rgb.dimensions() != want.dimensions() {
        return Err(format!(
            "size {:?}, Pillow {:?}",
            ours.rgb.dimensions(),
            want.dimensions()
        ));
    }
    let diffs: Vec<i32> = ours
        .rgb
        .as_raw()
        .iter()
        .zip(want.as_raw())
        .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
        .filter(|&d| d > 0)
        .collect();
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} values differ, max |Δ| {}",
            diffs.len(),
            want.as_raw().len(),
            diffs.iter().max().unwrap_or(&0)
        ))
    }
}

#[test]
fn odd_files_decode_as_pillow_does() {
    let files = manifest();
    assert!(files.len() >= 100, "corpus has {} files", files.len());
    for name in MUST_COVER {
        assert!(
            files
                .iter()
                .any(|e| e["file"] == name && e["pillow"] == "ok"),
            "{name} is missing from the manifest"
        );
    }
    let mut failures = Vec::new();
    let (mut read, mut same) = (0, 0);
    for entry in &files {
        let pillow_reads = entry["pillow"] == "ok";
        read += usize::from(pillow_reads);
        let name = entry["file"].as_str().unwrap_or_default();
        match check(entry) {
            Ok(()) => same += usize::from(pillow_reads),
            Err(why) => failures.push(format!("{name}: {why}")),
        }
    }
    eprintln!(
        "odd corpus: {same}/{read} files Pillow reads give its pixels ({:.1}%); {} of {} files disagree",
        100.0 * same as f64 / read.max(1) as f64,
        failures.len(),
        files.len()
    );
    for f in &failures {
        eprintln!("  {f}");
    }
    assert!(
        failures.is_empty(),
        "{} files disagree with Pillow",
        failures.len()
    );
    assert_eq!(same, read, "every file Pillow reads gives its pixels");
}

/// Files Pillow refuses as truncated are refused with the reason "truncated"; allowed, a JPEG
/// decodes (what the data holds) and says it was truncated. Other formats decode partially where
/// their decoder can, else stay refused as truncated.
#[test]
fn truncated_files_are_refused_unless_allowed() {
    for entry in manifest() {
        let name = entry["file"].as_str().unwrap_or_default();
        let reason = entry["reason"].as_str().unwrap_or_default();
        if !name.starts_with("trunc_") || !reason.contains("truncated") {
            continue;
        }
        let bytes = std::fs::read(odd().join("files").join(name)).unwrap();
        match decode_rgb(&bytes, false) {
            Err(DecodeError::Truncated { .. }) => {}
            other => panic!("{name}: expected Truncated, got {other:?}"),
        }
        let opts = DecodeOptions {
            allow_truncated: true,
            ..DecodeOptions::default()
        };
        match decode_rgb_with(&bytes, &opts) {
            Ok(decoded) => assert!(decoded.truncated, "{name}: not marked truncated"),
            Err(DecodeError::Truncated { .. }) if !name.ends_with(".jpg") => {}
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

/// The fuzzer's regression corpus: files that once crashed, hung or blew up a decoder. Each must
/// decode or be refused quickly, without panicking.
#[test]
fn decode_fuzz_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/fixtures/fuzz") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let start = Instant::now();
        let opts = DecodeOptions {
            allow_truncated: true,
            ..DecodeOptions::default()
        };
        let result = decode_rgb_with(&bytes, &opts);
        let took = start.elapsed();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        eprintln!(
            "{name}: {took:.2?}: {:?}",
            result.as_ref().map(|d| d.rgb.dimensions())
        );
        if let Err(DecodeError::Decode { reason, .. }) = &result {
            assert!(!reason.contains("panicked"), "{name}: {reason}");
        }
        if name.starts_with("tiff_lzma_bomb") {
            // Decoded (all black), without inflating the whole stream.
            let rgb = result.as_ref().map(|d| d.rgb.clone()).expect("decodes");
            assert_eq!(rgb.dimensions(), (64, 64), "{name}");
            assert!(rgb.as_raw().iter().all(|&v| v == 0), "{name}");
        }
        if name.starts_with("heic_grid_canvas_bomb") {
            // A grid whose own canvas is far over the limits (its ispe says 120×100): refused
            // before libheif allocates it; without the feature, refused as HEIC all the same.
            if cfg!(feature = "heif") {
                assert!(
                    matches!(result, Err(DecodeError::TooLarge { .. })),
                    "{name}: {result:?}"
                );
            } else {
                assert!(matches!(result, Err(DecodeError::Heif { .. })), "{name}");
            }
        }
        if name.starts_with("jpeg_2000_scans") {
            assert!(
                matches!(result, Err(DecodeError::TooLarge { .. })),
                "{name}"
            );
        }
        assert!(
            took < Duration::from_secs(10),
            "{}: {took:?}",
            path.display()
        );
        n += 1;
    }
    assert!(n > 0, "no fuzz regression files in {}", dir.display());
}
