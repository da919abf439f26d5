//! Tests of the JPEG decoder: pixel-exact against libjpeg-turbo (through Pillow) on the fixtures,
//! and robust on truncated and corrupted files.

use std::time::{Duration, Instant};

use ::image::{ImageFormat, RgbImage};

use super::decode;
use crate::image::decode::PANICKED;
use crate::image::test_util::*;
use crate::image::{decode_rgb, decode_rgb_with, DecodeError, DecodeOptions, MAX_DECODE_BYTES};

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
        assert!(!direct.truncated);
        let decoded = decode_rgb(bytes, true).unwrap();
        assert_eq!(decoded.rgb, direct.rgb);
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
fn truncated_jpeg_is_refused_or_decoded_partially_when_allowed() {
    let img = pattern(512, 384);
    let full = jpeg_with_orientation(&img, None);
    let half = &full[..full.len() / 2];
    let start = Instant::now();
    // Our decoder decodes what the data holds and says it was truncated...
    let ours = decode(half, MAX_DECODE_BYTES).unwrap();
    assert!(ours.truncated);
    // ...decode_rgb refuses it, as Pillow does ("image file is truncated")...
    assert!(matches!(
        decode_rgb(half, true),
        Err(DecodeError::Truncated { .. })
    ));
    // ...and allowed, the rows the data holds are exact and the rest is libjpeg's grey.
    let opts = DecodeOptions {
        allow_truncated: true,
        ..DecodeOptions::default()
    };
    let partial = decode_rgb_with(half, &opts).unwrap();
    assert!(partial.truncated);
    let complete = decode_rgb(&full, true).unwrap().rgb;
    assert_eq!(partial.rgb.dimensions(), (512, 384));
    assert_eq!(max_diff(&partial.rgb, &complete, 0..160), 0);
    assert!((0..512).all(|x| partial.rgb.get_pixel(x, 383).0 == [128, 128, 128]));
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn every_prefix_is_truncated_never_a_silent_partial_image() {
    let start = Instant::now();
    for file in JPEGS {
        let complete = decode(file, MAX_DECODE_BYTES).unwrap();
        assert!(!complete.truncated);
        let eoi = file.windows(2).rposition(|w| w == [0xFF, 0xD9]).unwrap();
        for n in 0..eoi + 2 {
            let prefix = &file[..n];
            if let Ok(img) = decode(prefix, MAX_DECODE_BYTES) {
                assert!(img.truncated || n == eoi + 2, "prefix {n}");
                assert_eq!(
                    img.rgb.dimensions(),
                    complete.rgb.dimensions(),
                    "prefix {n}"
                );
            }
            match decode_rgb(prefix, true) {
                Err(DecodeError::Decode { reason, .. }) => assert_ne!(reason, PANICKED),
                Err(_) => {}
                Ok(_) => panic!("prefix {n} of {} decoded", file.len()),
            }
        }
        assert_eq!(
            decode(&file[..eoi + 2], MAX_DECODE_BYTES).unwrap().rgb,
            complete.rgb
        );
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
                    let img = img.rgb;
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
                    Err(DecodeError::Decode { .. }
                        | DecodeError::TooLarge { .. }
                        | DecodeError::Truncated { .. })
                ),
                "{magic:?}: {result:?}"
            );
        }
    }
}
