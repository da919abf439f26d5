//! How large an image may be: the decompression-bomb limits, given to the decoders and checked
//! against the header's dimensions before any pixel buffer is allocated.
//!
//! Not for: limits on preprocessing parameters (`clip::preprocess::MAX_CONFIG_SIDE`), or on how
//! many bytes a file may have (the caller reads the file).

use ::image::error::LimitError;
use ::image::Limits;

use super::DecodeError;

/// Largest image accepted, in pixels (width × height): 100 MP. A 48 MP phone photo decodes;
/// decompression bombs are refused before any pixel buffer is allocated.
pub const MAX_PIXELS: u64 = 100_000_000;
/// Largest width or height accepted.
pub const MAX_SIDE: u32 = 100_000;
/// Most memory a decoder may allocate for one image (the decoded buffer included): 1 GiB.
pub const MAX_DECODE_BYTES: u64 = 1 << 30;

/// The limits the `image` crate's decoders enforce themselves.
pub(crate) fn decoder_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// Refuses a `width × height` image over [`MAX_PIXELS`] or [`MAX_SIDE`], or whose decoded
/// buffer (`total_bytes`) would exceed [`MAX_DECODE_BYTES`].
pub(crate) fn check_size(width: u32, height: u32, total_bytes: u64) -> Result<(), DecodeError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS || width > MAX_SIDE || height > MAX_SIDE {
        return Err(DecodeError::TooLarge {
            reason: format!(
                "{width}×{height} pixels ({:.1} MP); the limit is {} MP and {MAX_SIDE} pixels a side",
                pixels as f64 / 1e6,
                MAX_PIXELS / 1_000_000
            ),
        });
    }
    if total_bytes > MAX_DECODE_BYTES {
        return Err(DecodeError::TooLarge {
            reason: format!(
                "{width}×{height} pixels need {} MiB decoded; the limit is {} MiB",
                total_bytes >> 20,
                MAX_DECODE_BYTES >> 20
            ),
        });
    }
    Ok(())
}

/// A limit the `image` crate's decoder hit, as [`DecodeError::TooLarge`].
pub(crate) fn limit_exceeded(l: LimitError) -> DecodeError {
    DecodeError::TooLarge {
        reason: format!(
            "{l} (limits: {} MP, {} MiB)",
            MAX_PIXELS / 1_000_000,
            MAX_DECODE_BYTES >> 20
        ),
    }
}
