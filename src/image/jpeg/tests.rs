//! Tests of the JPEG decoder: pixel-exact against libjpeg-turbo (through Pillow) on the fixtures,
//! and robust on truncated and corrupted files.

use std::time::{Duration, Instant};

use ::image::{ImageFormat, RgbImage};

use super::decode;
use crate::image::decode::PANICKED;
use crate::image::test_util::*;
use crate::image::{decode_rgb, DecodeError, MAX_DECODE_BYTES};

#[test]
fn jpeg_decoder_matches_libjpeg_turbo() {
    // (file, width, height, FNV-1a of PIL's RGB)
    let cases = [
        (JPEG_PROGRESSIVE_420, 23, 17, 0x24988efe05a55eb0_u64),
        (JPEG_RESTART_422, 19, 13, 0x2d625f6500eea1f2),
        (JPEG_CMYK, 11, 7, 0x56dc70391a2b05b1),
        (JPEG_GRAY_PROGRESSIVE, 13, 9, 0xa613764a5bb62f4f),
    ];
    for (bytes, w, h, expected) in cases {
        // Our decoder, not the fallback.
        let direct = decode(bytes, MAX_DECODE_BYTES).unwrap();
        let decoded = decode_rgb(bytes, true).unwrap();
        assert_eq!(decoded.rgb, direct);
        assert_eq!(decoded.format, ImageFormat::Jpeg);
        assert_eq!(decoded.rgb.dimensions(), (w, h));
        assert_eq!(fnv(decoded.rgb.into_raw()), expected);
    }
}

/// The largest difference between two images' samples in rows `rows`.
fn max_diff(a: &RgbImage, b: &RgbImage, rows: std::ops::Range<u32>) -> u8 {
    rows.flat_map(|y| (0..a.width()).map(move |x| (x, y)))
        .flat_map(|(x, y)| {
            let (p, q) = (a.get_pixel(x, y).0, b.get_pixel(x, y).0);
            (0..3).map(move |c| p[c].abs_diff(q[c]))
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn truncated_jpeg_falls_back_to_a_partial_image() {
    let img = pattern(512, 384);
    let full = jpeg_with_orientation(&img, None);
    let half = &full[..full.len() / 2];
    let start = Instant::now();
    // Our decoder refuses a scan that ends early (Pillow raises on it too)...
    let ours = decode(half, MAX_DECODE_BYTES);
    assert!(
        matches!(&ours, Err(e) if e.contains("truncated")),
        "{:?}",
        ours.map(|i| i.dimensions())
    );
    // ...and decode_rgb falls back to the `image` crate, which decodes the rows the data holds
    // (here the first 176, within the 3 levels by which it differs from libjpeg) and fills the
    // rest with one colour.
    let partial = decode_rgb(half, true).unwrap().rgb;
    let complete = decode_rgb(&full, true).unwrap().rgb;
    assert_eq!(partial.dimensions(), (512, 384));
    assert!(max_diff(&partial, &complete, 0..176) <= 3);
    let last_row: Vec<_> = (0..512).map(|x| partial.get_pixel(x, 383)).collect();
    assert!(
        last_row.iter().all(|p| *p == last_row[0]),
        "{:?}",
        &last_row[..4]
    );
    assert!(start.elapsed() < Duration::from_secs(20));
}

/// Positions of the markers that follow the first scan's data (where a cut leaves whole scans).
fn markers_after_first_scan(file: &[u8]) -> Vec<usize> {
    let sos = file.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    (sos + 2..file.len() - 1)
        .filter(|&i| file[i] == 0xFF && !matches!(file[i + 1], 0x00 | 0xFF | 0xD0..=0xD7))
        .collect()
}

#[test]
fn truncated_files_decode_only_when_cut_between_scans() {
    let start = Instant::now();
    for file in JPEGS {
        // libjpeg's rule: data that ends without EOI keeps the scans it completed; a cut inside
        // a scan or a marker segment is an error. So a prefix decodes exactly when it ends at a
        // marker after the first scan (just before its 0xFF, or just after).
        let cuts = markers_after_first_scan(file);
        let expected: Vec<usize> = cuts.iter().flat_map(|&p| [p, p + 1]).collect();
        let complete = decode(file, MAX_DECODE_BYTES).unwrap();
        let mut decoded = Vec::new();
        for n in 0..file.len() {
            let prefix = &file[..n];
            if let Ok(img) = decode(prefix, MAX_DECODE_BYTES) {
                assert_eq!(img.dimensions(), complete.dimensions(), "prefix {n}");
                decoded.push(n);
            }
            if let Err(DecodeError::Decode { reason, .. }) = decode_rgb(prefix, true) {
                assert_ne!(reason, PANICKED, "prefix {n}");
            }
        }
        assert_eq!(decoded, expected);
        // The prefix ending at EOI is the whole image.
        let eoi = *cuts.last().unwrap();
        assert_eq!(decode(&file[..eoi], MAX_DECODE_BYTES).unwrap(), complete);
    }
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn corrupt_data_is_refused_without_panicking() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let not_panicked = |r: &Result<_, DecodeError>| !matches!(r, Err(DecodeError::Decode { reason, .. }) if reason == PANICKED);
    // Our JPEG decoder is called directly (a panic fails the test): decode_rgb would hide a
    // panic behind catch_unwind, so its result is checked for that instead.
    for file in JPEGS {
        let (mut refused, mut decoded) = (0, 0);
        for _ in 0..300 {
            let mut bytes = file.to_vec();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            match decode(&bytes, MAX_DECODE_BYTES) {
                Ok(img) => {
                    assert_eq!(
                        img.as_raw().len(),
                        img.width() as usize * img.height() as usize * 3
                    );
                    decoded += 1;
                }
                Err(reason) => {
                    assert!(!reason.is_empty());
                    refused += 1;
                }
            }
            assert!(not_panicked(&decode_rgb(&bytes, true)));
        }
        // Both outcomes happen: the decoder notices corruption (most mutations hit the
        // entropy-coded data and trip its checks), and tolerates what libjpeg tolerates.
        assert!(
            refused >= 100 && decoded >= 30,
            "{refused} refused, {decoded} decoded"
        );
    }
    // Random bytes behind a format's magic number: refused, by every decoder, without panics.
    let magics: [&[u8]; 6] = [
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff",
        b"GIF89a",
        b"RIFF\0\0\0\0WEBPVP8 ",
        b"II*\0",
        b"BM\0\0\0\0\0\0\0\0\0\0\0\0\x28\0\0\0",
    ];
    for magic in magics {
        for _ in 0..50 {
            let mut bytes = magic.to_vec();
            bytes.extend((0..next() % 200).map(|_| next() as u8));
            let result = decode_rgb(&bytes, true);
            assert!(not_panicked(&result));
            assert!(
                matches!(
                    result,
                    Err(DecodeError::Decode { .. } | DecodeError::TooLarge { .. })
                ),
                "{magic:?}: {result:?}"
            );
        }
    }
}
