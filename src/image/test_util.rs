//! Helpers shared by the unit tests of `image` and `clip::preprocess`: checksums, a synthetic
//! test image, small encoders, and the decoding fixtures in `tests/fixtures/decode/`.
//!
//! Not for: anything outside `#[cfg(test)]`.
//!
//! Expected values in the tests were computed with Pillow 13 (libjpeg-turbo) + numpy,
//! replicating transformers' CLIPImageProcessor (PIL backend) step by step; the same emulation
//! reproduces the project's reference pixel files exactly.

use ::image::RgbImage;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/decode/",
            $name
        ))
    };
}

/// Progressive YCbCr 4:2:0, 23×17.
pub(crate) const JPEG_PROGRESSIVE_420: &[u8] = fixture!("progressive_420.jpg");
/// Baseline YCbCr 4:2:2 with restart markers, 19×13.
pub(crate) const JPEG_RESTART_422: &[u8] = fixture!("restart_422.jpg");
/// Adobe CMYK (inverted), 11×7.
pub(crate) const JPEG_CMYK: &[u8] = fixture!("cmyk.jpg");
/// Progressive grayscale, 13×9.
pub(crate) const JPEG_GRAY_PROGRESSIVE: &[u8] = fixture!("gray_progressive.jpg");
/// The four JPEG fixtures.
pub(crate) const JPEGS: [&[u8]; 4] = [
    JPEG_PROGRESSIVE_420,
    JPEG_RESTART_422,
    JPEG_CMYK,
    JPEG_GRAY_PROGRESSIVE,
];
/// PNG fixtures, all 4×3 (`pattern(4, 3)` where they hold colour).
pub(crate) const PNG_RGB_TRNS: &[u8] = fixture!("rgb_trns.png");
pub(crate) const PNG_GRAY_TRNS: &[u8] = fixture!("gray_trns.png");
pub(crate) const PNG_GRAY_ALPHA: &[u8] = fixture!("gray_alpha.png");
pub(crate) const PNG_RGB16: &[u8] = fixture!("rgb16.png");
pub(crate) const PNG_GRAY16: &[u8] = fixture!("gray16.png");
pub(crate) const PNG_PALETTE_TRNS: &[u8] = fixture!("palette_trns.png");

/// FNV-1a, 64-bit.
pub(crate) fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// FNV-1a of the floats' little-endian bytes.
pub(crate) fn fnv_f32(v: &[f32]) -> u64 {
    fnv(v.iter().flat_map(|x| x.to_le_bytes()))
}

/// `(x·37 + y·91 + c·53 + x·y·13) mod 256`: not smooth, so clipping and rounding show.
pub(crate) fn pattern(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = |c: u32| ((x * 37 + y * 91 + c * 53 + x * y * 13) % 256) as u8;
        ::image::Rgb([v(0), v(1), v(2)])
    })
}

/// A JPEG of `img`, with an EXIF APP1 segment carrying `orientation` when given.
pub(crate) fn jpeg_with_orientation(img: &RgbImage, orientation: Option<u16>) -> Vec<u8> {
    let mut bytes = Vec::new();
    ::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
        .encode_image(img)
        .unwrap();
    if let Some(o) = orientation {
        // Big-endian TIFF header, one IFD entry: tag 0x0112 (Orientation), SHORT, count 1.
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        exif.extend_from_slice(&o.to_be_bytes());
        exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut app1 = vec![0xFF, 0xE1];
        app1.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        app1.extend_from_slice(&exif);
        bytes.splice(2..2, app1);
    }
    bytes
}

/// A 24-bit BMP header claiming `width × height`, followed by one pixel.
pub(crate) fn bmp_header(width: i32, height: i32) -> Vec<u8> {
    let mut b = b"BM".to_vec();
    for v in [54u32 + 4, 0, 54, 40] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&width.to_le_bytes());
    b.extend_from_slice(&height.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&24u16.to_le_bytes());
    b.extend_from_slice(&[0; 24]);
    b.extend_from_slice(&[1, 2, 3, 0]); // one pixel, row padded to 4 bytes
    b
}
