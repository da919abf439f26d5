//! Decoding: [`decode_rgb`] sniffs the format, enforces the size limits, decodes and converts to
//! RGB as Pillow does, and applies the orientation. JPEG goes through our libjpeg-turbo-exact
//! decoder (`jpeg/`; the `image` crate's only for what it refuses), TIFF through ours (`tiff/`;
//! the crate's for what ours does not support), RLE and 16-bit BMP through `bmp.rs`; PNG, GIF,
//! WebP and the other BMPs through the `image` crate, whose output matched Pillow's on every file
//! tried (a GIF without a colour table gets Pillow's grey ramp first, odd BMP headers are
//! normalised first).
//!
//! Not for: resizing or any CLIP-specific step (`clip::preprocess`), or the arithmetic of the
//! mode conversions (`convert.rs`).
//!
//! Deliberate differences from Pillow + transformers: EXIF orientation is applied when asked
//! (transformers does not; TIFF orientation is always applied, as Pillow does it on load);
//! images above [`MAX_PIXELS`](super::MAX_PIXELS) are refused; a truncated file is refused as
//! Pillow refuses it, unless [`DecodeOptions::allow_truncated`].

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ::image::metadata::Orientation;
use ::image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};

use super::convert::to_rgb_like_pil;
use super::limits::{check_size, decoder_limits, limit_exceeded, MAX_DECODE_BYTES};
use super::raw::{self, Preview, RawKind};
use super::sniff::sniff_image_format;
use super::{bmp, heif, jpeg, tiff, DecodeError, DecodedImage};

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
    // Camera RAW containers are parsed here too, so a panic in their parser is a refusal as well.
    if let Some((kind, preview)) = catch_unwind(|| raw::raw_preview(bytes)).ok().flatten() {
        let decoded = catch_unwind(AssertUnwindSafe(|| decode_raw(kind, preview, opts)));
        return decoded.unwrap_or_else(|_| {
            Err(DecodeError::Raw {
                kind: kind.name(),
                reason: PANICKED.to_string(),
            })
        });
    }
    if let Some(kind) = heif::sniff_heif(bytes) {
        let decoded = catch_unwind(AssertUnwindSafe(|| decode_heif(bytes, kind, opts)));
        return decoded.unwrap_or_else(|_| {
            Err(DecodeError::Heif {
                kind: kind.name(),
                reason: PANICKED.to_string(),
            })
        });
    }
    let format = sniff_image_format(bytes).ok_or(DecodeError::UnknownFormat)?;
    match catch_unwind(AssertUnwindSafe(|| decode_inner(bytes, format, opts))) {
        Ok(result) => result,
        Err(_) => Err(DecodeError::Decode {
            format,
            reason: PANICKED.to_string(),
        }),
    }
}

/// A camera RAW file: its largest embedded preview, decoded as a JPEG, turned upright by the
/// container's orientation (else the preview's own EXIF) under the same option as a JPEG's EXIF.
fn decode_raw(
    kind: RawKind,
    preview: Result<Preview<'_>, String>,
    opts: &DecodeOptions,
) -> Result<DecodedImage, DecodeError> {
    let preview = preview.map_err(|reason| DecodeError::Raw {
        kind: kind.name(),
        reason,
    })?;
    let jpeg_opts = DecodeOptions {
        apply_exif_orientation: opts.apply_exif_orientation && preview.orientation.is_none(),
        ..*opts
    };
    let mut decoded = decode_rgb_with(preview.jpeg, &jpeg_opts).map_err(|e| DecodeError::Raw {
        kind: kind.name(),
        reason: format!("its embedded preview JPEG: {e}"),
    })?;
    let container = preview
        .orientation
        .and_then(|o| Orientation::from_exif(o as u8));
    if let (true, Some(orientation)) = (opts.apply_exif_orientation, container) {
        decoded.rgb = orient(decoded.rgb, orientation);
        (decoded.original_width, decoded.original_height) = decoded.rgb.dimensions();
        decoded.orientation = orientation;
    }
    decoded.raw_preview = Some((kind.name(), preview.width, preview.height));
    Ok(decoded)
}

/// A HEIC/HEIF or AVIF file through libheif (`heif.rs` says what is applied): HEIC's
/// transformations always (as pillow-heif applies them on load), AVIF's `irot`/`imir` as its EXIF
/// orientation. Truncated files are refused as such; `allow_truncated` does not apply (libheif
/// decodes whole images only).
fn decode_heif(
    bytes: &[u8],
    kind: heif::HeifKind,
    opts: &DecodeOptions,
) -> Result<DecodedImage, DecodeError> {
    let img = heif::decode(bytes, kind)?;
    let orientation = if opts.apply_exif_orientation {
        img.orientation
    } else {
        Orientation::NoTransforms
    };
    let rgb = orient(img.rgb, orientation);
    let (original_width, original_height) = rgb.dimensions();
    Ok(DecodedImage {
        rgb,
        original_width,
        original_height,
        format: ImageFormat::Avif,
        heif: Some(kind.name()),
        orientation,
        truncated: false,
        raw_preview: None,
    })
}

/// The reason [`decode_rgb`] gives when a decoder panicked.
pub(crate) const PANICKED: &str = "the decoder panicked on this file";

/// Pixels as stored, before orientation.
struct Stored {
    rgb: RgbImage,
    /// The orientation the file asks for (whether or not it is to be applied).
    orientation: Orientation,
    truncated: bool,
}

fn decode_inner(
    bytes: &[u8],
    format: ImageFormat,
    opts: &DecodeOptions,
) -> Result<DecodedImage, DecodeError> {
    let stored = match format {
        ImageFormat::Jpeg => match decode_jpeg(bytes, opts.allow_truncated)? {
            Some(stored) => stored,
            None => decode_with_image_crate(bytes, format)?,
        },
        ImageFormat::Bmp => match bmp::decode(bytes) {
            Some(result) => {
                let img = result?;
                Stored {
                    rgb: RgbImage::from_raw(img.width, img.height, img.rgb).ok_or_else(|| {
                        DecodeError::UnsupportedMode("pixel buffer size mismatch".to_string())
                    })?,
                    orientation: Orientation::NoTransforms,
                    truncated: img.truncated,
                }
            }
            None => decode_with_image_crate(&bmp::normalized(bytes), format)?,
        },
        ImageFormat::Tiff => match decode_tiff(bytes)? {
            Ok(stored) => stored,
            // Ours does not support it: the `image` crate's decoder may; if not, say what.
            Err(ours) => {
                decode_with_image_crate(bytes, format).map_err(|_| DecodeError::Decode {
                    format,
                    reason: format!("unsupported TIFF: {ours}"),
                })?
            }
        },
        ImageFormat::Gif => decode_with_image_crate(&gif_default_palette(bytes), format)?,
        _ => decode_with_image_crate(bytes, format)?,
    };
    if stored.truncated && !opts.allow_truncated {
        return Err(DecodeError::Truncated { format });
    }
    // Pillow's TIFF plugin applies the Orientation tag when it loads a file (`load_end` calls
    // `exif_transpose`), so the reference pipeline sees TIFFs upright whatever transformers does.
    let orientation = if opts.apply_exif_orientation || format == ImageFormat::Tiff {
        stored.orientation
    } else {
        Orientation::NoTransforms
    };
    let rgb = orient(stored.rgb, orientation);
    let (original_width, original_height) = rgb.dimensions();
    Ok(DecodedImage {
        rgb,
        original_width,
        original_height,
        format,
        heif: None,
        orientation,
        truncated: stored.truncated,
        raw_preview: None,
    })
}

/// JPEG through our libjpeg-turbo-exact decoder; `None` when it refuses the file (12-bit,
/// lossless, corrupt data, …): then the `image` crate's decoder (zune-jpeg, which differs from
/// libjpeg by a few levels) gets a try.
fn decode_jpeg(bytes: &[u8], partial: bool) -> Result<Option<Stored>, DecodeError> {
    match jpeg::decode_with(bytes, MAX_DECODE_BYTES, None, partial) {
        Ok(img) => Ok(Some(Stored {
            orientation: img
                .exif
                .and_then(Orientation::from_exif_chunk)
                .unwrap_or(Orientation::NoTransforms),
            rgb: img.rgb,
            truncated: img.truncated,
        })),
        Err(e)
            if e == jpeg::TRUNCATED_BEFORE_DATA
                || e == jpeg::TRUNCATED_SEGMENT
                || e == jpeg::TRUNCATED_AFTER_DATA =>
        {
            Err(DecodeError::Truncated {
                format: ImageFormat::Jpeg,
            })
        }
        Err(e) if e.starts_with(jpeg::WORK_LIMIT) => Err(DecodeError::TooLarge { reason: e }),
        Err(e) if e == jpeg::ADOBE_TOO_SHORT => Err(DecodeError::Decode {
            format: ImageFormat::Jpeg,
            reason: e,
        }),
        Err(_) => Ok(None),
    }
}

/// TIFF through our decoder (`tiff/`); `Ok(Err(what))` for what it does not support.
fn decode_tiff(bytes: &[u8]) -> Result<Result<Stored, String>, DecodeError> {
    let format = ImageFormat::Tiff;
    match tiff::decode(bytes) {
        Ok(img) => {
            let rgb = RgbImage::from_raw(img.width, img.height, img.rgb).ok_or_else(|| {
                DecodeError::UnsupportedMode("pixel buffer size mismatch".to_string())
            })?;
            Ok(Ok(Stored {
                rgb,
                orientation: Orientation::from_exif(img.orientation)
                    .unwrap_or(Orientation::NoTransforms),
                truncated: false,
            }))
        }
        Err(tiff::Error::Unsupported(what)) => Ok(Err(what)),
        Err(tiff::Error::Truncated) => Err(DecodeError::Truncated { format }),
        Err(tiff::Error::TooLarge(e)) => Err(e),
        Err(tiff::Error::Corrupt(reason) | tiff::Error::Refused(reason)) => {
            Err(DecodeError::Decode { format, reason })
        }
    }
}

/// Any format through the `image` crate's decoders, converted to RGB as Pillow does.
fn decode_with_image_crate(bytes: &[u8], format: ImageFormat) -> Result<Stored, DecodeError> {
    let mut decoder = open_decoder(bytes, format)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = match DynamicImage::from_decoder(decoder) {
        Ok(image) => image,
        Err(e) if is_truncation(&e) => return Err(DecodeError::Truncated { format }),
        Err(e) => return Err(map_image_error(e, format)),
    };
    // A PNG of colour type 2 (RGB) whose tRNS chunk the decoder expanded to alpha is still mode
    // "RGB" for PIL, which transformers passes through untouched: drop the alpha, don't
    // composite.
    let rgb_with_trns = format == ImageFormat::Png && png_color_type(bytes) == Some(2);
    Ok(Stored {
        rgb: to_rgb_like_pil(image, rgb_with_trns)?,
        orientation,
        truncated: false,
    })
}

/// A GIF without a global colour table gets a grey ramp as one: Pillow reads such a file as
/// mode L (each index its own grey level) where the `image` crate would refuse a frame that has
/// no local table either.
fn gif_default_palette(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match bytes.get(10) {
        Some(&flags) if flags & 0x80 == 0 && bytes.len() >= 13 => {
            let mut out = Vec::with_capacity(bytes.len() + 768);
            out.extend_from_slice(&bytes[..10]);
            out.push(flags | 0x80 | 0x07);
            out.extend_from_slice(&bytes[11..13]);
            out.extend((0..=255u8).flat_map(|v| [v, v, v]));
            out.extend_from_slice(&bytes[13..]);
            std::borrow::Cow::Owned(out)
        }
        _ => std::borrow::Cow::Borrowed(bytes),
    }
}

/// Whether the `image` crate's error means the data ended early.
fn is_truncation(e: &ImageError) -> bool {
    match e {
        ImageError::IoError(io) => io.kind() == std::io::ErrorKind::UnexpectedEof,
        ImageError::Decoding(d) => {
            let text = d.to_string().to_ascii_lowercase();
            [
                "eof",
                "end of file",
                "unexpected end",
                "truncated",
                "not enough data",
            ]
            .iter()
            .any(|w| text.contains(w))
        }
        _ => false,
    }
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
