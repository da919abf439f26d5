//! Tests of the JPEG decoder: pixel-exact against libjpeg-turbo (through Pillow) on the fixtures,
//! and robust on truncated and corrupted files.

use std::time::{Duration, Instant};

use ::image::ImageFormat;

use super::decode;
use crate::image::test_util::*;
use crate::image::{decode_rgb, MAX_DECODE_BYTES};

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

#[test]
fn truncated_jpeg_returns_quickly() {
    let img = pattern(512, 384);
    let full = jpeg_with_orientation(&img, None);
    let start = Instant::now();
    let half = decode_rgb(&full[..full.len() / 2], true);
    assert!(half.is_ok() || half.is_err());
    // Every prefix of a progressive file: an error or an image, never a panic or a hang.
    let progressive = JPEG_PROGRESSIVE_420;
    for n in 0..progressive.len() {
        let _ = decode(&progressive[..n], MAX_DECODE_BYTES);
        let _ = decode_rgb(&progressive[..n], true);
    }
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn corrupt_data_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Our JPEG decoder is called directly: decode_rgb would hide a panic behind catch_unwind.
    for original in JPEGS {
        for _ in 0..300 {
            let mut bytes = original.to_vec();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            let _ = decode(&bytes, MAX_DECODE_BYTES);
            let _ = decode_rgb(&bytes, true);
        }
    }
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
            let _ = decode_rgb(&bytes, true);
        }
    }
}
