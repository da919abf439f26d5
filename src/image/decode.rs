//! Decoding: [`decode_rgb`] sniffs the format, enforces the size limits, decodes (JPEG with our
//! libjpeg-turbo-exact decoder, falling back to the `image` crate for what it refuses; every
//! other format with the `image` crate, whose PNG, GIF, WebP, BMP and TIFF output matched
//! Pillow's on every file tried), converts to RGB as Pillow does and applies EXIF orientation.
//!
//! Not for: resizing or any CLIP-specific step (`clip::preprocess`), or the arithmetic of the
//! mode conversions (`convert.rs`).
//!
//! Deliberate differences from Pillow + transformers: EXIF orientation is applied when asked
//! (transformers ignores it); images above [`MAX_PIXELS`](super::MAX_PIXELS) are refused; a truncated JPEG that
//! Pillow would refuse decodes as far as the `image` crate gets.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ::image::metadata::Orientation;
use ::image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};

use super::convert::to_rgb_like_pil;
use super::limits::{check_size, decoder_limits, limit_exceeded, MAX_DECODE_BYTES};
use super::sniff::sniff_image_format;
use super::{jpeg, DecodeError, DecodedImage};

/// Decodes an image and converts it to RGB exactly as PIL's `convert_to_rgb` path does.
/// `apply_exif_orientation` rotates/flips the image upright per its EXIF tag (transformers does
/// not; pass `false` for strict parity on tagged images). Refuses images over
/// [`MAX_PIXELS`](super::MAX_PIXELS).
/// Never panics: a panic inside a decoder comes back as [`DecodeError::Decode`].
pub fn decode_rgb(bytes: &[u8], apply_exif_orientation: bool) -> Result<DecodedImage, DecodeError> {
    decode_rgb_with(
        bytes,
        &DecodeOptions {
            apply_exif_orientation,
            allow_truncated: false,
        },
    )
}

/// How [`decode_rgb_with`] decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Turn the image upright per its EXIF orientation (transformers does not).
    pub apply_exif_orientation: bool,
    /// Decode a truncated file as far as its data goes (marked [`DecodedImage::truncated`])
    /// instead of refusing it with [`DecodeError::Truncated`], as Pillow does.
    pub allow_truncated: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            apply_exif_orientation: true,
            allow_truncated: false,
        }
    }
}

/// [`decode_rgb`] with every option.
pub fn decode_rgb_with(bytes: &[u8], opts: &DecodeOptions) -> Result<DecodedImage, DecodeError> {
    let format = sniff_image_format(bytes).ok_or(DecodeError::UnknownFormat)?;
    let apply_exif_orientation = opts.apply_exif_orientation;
    match catch_unwind(AssertUnwindSafe(|| {
        decode_inner(bytes, format, apply_exif_orientation)
    })) {
        Ok(result) => result,
        Err(_) => Err(DecodeError::Decode {
            format,
            reason: PANICKED.to_string(),
        }),
    }
}

/// The reason [`decode_rgb`] gives when a decoder panicked.
pub(crate) const PANICKED: &str = "the decoder panicked on this file";

fn decode_inner(
    bytes: &[u8],
    format: ImageFormat,
    apply_exif_orientation: bool,
) -> Result<DecodedImage, DecodeError> {
    let mut decoder = open_decoder(bytes, format)?;
    let orientation = if apply_exif_orientation {
        decoder.orientation().unwrap_or(Orientation::NoTransforms)
    } else {
        Orientation::NoTransforms
    };
    let rgb = decode_pixels(bytes, format, decoder)?;
    let rgb = orient(rgb, orientation);
    let (original_width, original_height) = rgb.dimensions();
    Ok(DecodedImage {
        rgb,
        original_width,
        original_height,
        format,
        orientation,
        truncated: false,
    })
}

/// The `image` crate's decoder for `bytes`, its header read and its size within the limits.
fn open_decoder(bytes: &[u8], format: ImageFormat) -> Result<impl ImageDecoder + '_, DecodeError> {
    let err = |e: ImageError| map_image_error(e, format);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(decoder_limits());
    let decoder = reader.into_decoder().map_err(err)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(DecodeError::Decode {
            format,
            reason: format!("empty image ({width}×{height})"),
        });
    }
    check_size(width, height, decoder.total_bytes())?;
    Ok(decoder)
}

/// The pixels as stored (before orientation), converted to RGB.
fn decode_pixels(
    bytes: &[u8],
    format: ImageFormat,
    decoder: impl ImageDecoder,
) -> Result<RgbImage, DecodeError> {
    // JPEG: our libjpeg-turbo-exact decoder; the `image` crate's (zune-jpeg, which differs from
    // libjpeg by a few levels) only for what ours refuses: arithmetic coding, 12-bit, corrupt or
    // truncated data.
    if format == ImageFormat::Jpeg {
        let exact = jpeg::decode(bytes, MAX_DECODE_BYTES)
            .ok()
            .filter(|img| img.dimensions() == decoder.dimensions());
        if let Some(rgb) = exact {
            return Ok(rgb);
        }
    }
    let image = DynamicImage::from_decoder(decoder).map_err(|e| map_image_error(e, format))?;
    // A PNG of colour type 2 (RGB) whose tRNS chunk the decoder expanded to alpha is still mode
    // "RGB" for PIL, which transformers passes through untouched: drop the alpha, don't
    // composite.
    let rgb_with_trns = format == ImageFormat::Png && png_color_type(bytes) == Some(2);
    to_rgb_like_pil(image, rgb_with_trns)
}

/// `rgb` turned upright per its EXIF `orientation`.
fn orient(rgb: RgbImage, orientation: Orientation) -> RgbImage {
    if orientation == Orientation::NoTransforms {
        return rgb;
    }
    let mut dynamic = DynamicImage::ImageRgb8(rgb);
    dynamic.apply_orientation(orientation);
    match dynamic {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}

fn map_image_error(e: ImageError, format: ImageFormat) -> DecodeError {
    match e {
        ImageError::Limits(l) => limit_exceeded(l),
        // Reading from memory: an I/O error means the data ended early or is corrupt.
        other => DecodeError::Decode {
            format,
            reason: other.to_string(),
        },
    }
}

/// The colour type byte of a PNG's IHDR chunk.
fn png_color_type(bytes: &[u8]) -> Option<u8> {
    (bytes.get(12..16)? == b"IHDR").then(|| bytes.get(25).copied())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::test_util::{bmp_header, jpeg_with_orientation, pattern};

    #[test]
    fn exif_orientation_6_rotates_clockwise() {
        let img = pattern(16, 8);
        let plain = decode_rgb(&jpeg_with_orientation(&img, None), true).unwrap();
        let tagged_bytes = jpeg_with_orientation(&img, Some(6));
        let tagged = decode_rgb(&tagged_bytes, true).unwrap();
        assert_eq!(plain.orientation, Orientation::NoTransforms);
        assert_eq!(tagged.orientation, Orientation::Rotate90);
        assert_eq!((tagged.original_width, tagged.original_height), (8, 16));
        assert_eq!(tagged.rgb, ::image::imageops::rotate90(&plain.rgb));
        // Turned off: the stored pixels, as transformers sees them.
        let raw = decode_rgb(&tagged_bytes, false).unwrap();
        assert_eq!(raw.orientation, Orientation::NoTransforms);
        assert_eq!(raw.rgb, plain.rgb);
    }

    #[test]
    fn huge_images_are_refused_before_decoding() {
        let one = decode_rgb(&bmp_header(1, 1), true);
        assert!(one.is_ok(), "{one:?}");
        // The BMP decoder refuses sides over 65 535 itself (a decode error).
        assert!(decode_rgb(&bmp_header(200_000, 1), true).is_err());
        for (w, h) in [(20_000, 20_000), (60_000, 2_000), (2_000, -60_000)] {
            match decode_rgb(&bmp_header(w, h), true) {
                Err(DecodeError::TooLarge { reason }) => assert!(!reason.is_empty()),
                other => panic!("{w}x{h}: expected TooLarge, got {other:?}"),
            }
        }
    }
}
