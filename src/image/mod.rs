//! Images: encoded bytes in, full-resolution RGB pixels out, exactly as Pillow (the library
//! behind transformers' `CLIPImageProcessor`) would produce them; and Pillow's resampler, which
//! the CLIP preprocessing resizes with.
//!
//! - [`sniff`]: which format a file is in, from its first bytes (also what `walk` uses to pick
//!   image files).
//! - [`raw`]: a camera RAW file's largest embedded preview JPEG, and its orientation.
//! - [`heif`]: HEIC/HEIF and AVIF, recognised always, decoded through the system's libheif with
//!   the cargo feature `heif` (else refused with that reason).
//! - [`limits`]: the decompression-bomb limits, checked before any pixel buffer is allocated.
//! - [`decode`]: [`decode_rgb`], the entry point: format dispatch, EXIF orientation, truncation,
//!   panics turned into errors. JPEG goes through our libjpeg-turbo-exact decoder (`jpeg`), TIFF
//!   through ours (`tiff`), RLE/16-bit BMP through `bmp`, the rest through the `image` crate.
//! - [`convert`]: Pillow's mode conversions to RGB (alpha over white, grayscale, 16-bit, CMYK).
//! - [`resample`]: Pillow's two-pass fixed-point resampling filters.
//!
//! Not for: reading files or walking directories (the caller passes bytes and adds the path to
//! errors), or the CLIP-specific steps and their parameters (resize target, center crop,
//! rescale, normalize: `clip::preprocess`). Everything here is a pure function of its arguments.

use ::image::metadata::Orientation;
use ::image::{ImageFormat, RgbImage};

mod bmp;
pub mod convert;
pub mod decode;
pub mod heif;
mod jpeg;
pub mod limits;
pub mod raw;
pub mod resample;
pub mod sniff;
#[cfg(test)]
pub(crate) mod test_util;
mod tiff;

pub use decode::{decode_rgb, decode_rgb_with, DecodeOptions};
pub use limits::{MAX_DECODE_BYTES, MAX_PIXELS, MAX_SIDE};
pub use resample::Resample;
pub use sniff::sniff_image_format;

/// The image formats read (by content, whatever the file's name), as `imgvec info` lists them.
pub const FORMATS: &[&str] = &["JPEG", "PNG", "GIF", "WebP", "BMP", "TIFF"];
/// The HEIF-family formats read with the cargo feature `heif` (through libheif).
pub const HEIF_FORMATS: &[&str] = &["HEIC", "HEIF", "AVIF"];
/// The camera RAW containers read, by their embedded preview.
pub const RAW_FORMATS: &[&str] = &[
    "DNG", "CR2", "CR3", "NEF", "ARW", "ORF", "RW2", "RAF", "PEF", "SRW",
];

/// Why an image could not be decoded. The caller adds the path.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "not an image in a supported format (PNG, JPEG, GIF, WebP, BMP, TIFF, HEIC/HEIF, AVIF, or a camera RAW file's preview)"
    )]
    UnknownFormat,
    /// A HEIC/HEIF or AVIF file that cannot be decoded (corrupt, truncated, a codec libheif
    /// lacks, or a build without the `heif` feature).
    #[error("cannot read {kind} file: {reason}")]
    Heif { kind: &'static str, reason: String },
    /// A camera RAW file without a usable preview.
    #[error("cannot read {kind} file: {reason}")]
    Raw { kind: &'static str, reason: String },
    #[error("cannot decode {format:?} image: {reason}")]
    Decode { format: ImageFormat, reason: String },
    #[error("image too large: {reason}")]
    TooLarge { reason: String },
    #[error("unsupported pixel format: {0}")]
    UnsupportedMode(String),
    /// The file ends before its image data does (Pillow: "image file is truncated"). Refused
    /// unless [`DecodeOptions::allow_truncated`].
    #[error("truncated: the {format:?} file ends before its image data does")]
    Truncated { format: ImageFormat },
}

/// A decoded image converted to RGB the way PIL's `convert_to_rgb` does it.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// Full resolution, upright when EXIF orientation was applied.
    pub rgb: RgbImage,
    /// Width and height before resizing, as displayed (after EXIF orientation when applied;
    /// equal to `rgb.dimensions()`).
    pub original_width: u32,
    pub original_height: u32,
    /// The container format found by content sniffing. HEIC/HEIF and AVIF files all report
    /// `ImageFormat::Avif` (the `image` crate has no HEIF format); [`Self::heif`] says which.
    pub format: ImageFormat,
    /// A HEIF-family file: which (`HEIC`, `HEIF`, `AVIF`).
    pub heif: Option<&'static str>,
    /// The EXIF orientation that was applied (`NoTransforms` when none, or when disabled).
    pub orientation: Orientation,
    /// The file was truncated and decoded as far as its data goes (only with
    /// [`DecodeOptions::allow_truncated`]); the rest of the picture is filled in.
    pub truncated: bool,
    /// A camera RAW file: its container, and the size of the embedded preview decoded.
    pub raw_preview: Option<(&'static str, u32, u32)>,
}
