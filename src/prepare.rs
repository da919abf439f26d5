//! One file's bytes to model-ready pixels: decoding (`image`) then CLIP preprocessing
//! (`clip::preprocess`), with any panic in either turned into that file's failure reason.
//!
//! Not for: reading files or running the stages in parallel (`pipeline`), or the model.

use crate::clip::preprocess::{preprocess_rgb, PreprocessConfig};
use crate::guard::guarded;
use crate::image::{decode_rgb_with, DecodeOptions};

/// Decoded and preprocessed pixels of one file.
pub struct PreparedPixels {
    pub pixels: Vec<f32>,
    pub width: u32,
    pub height: u32,
    /// The file was truncated and only what its data held was decoded (`allow_truncated`).
    pub truncated: bool,
    /// Worth a warning, though the file was used: a camera RAW file whose preview is smaller than
    /// the model's input.
    pub note: Option<String>,
}

/// Decodes and preprocesses one file's bytes: the pixels for the model, and the decoded size.
pub fn prepare_bytes(
    bytes: &[u8],
    cfg: &PreprocessConfig,
    apply_exif: bool,
) -> Result<(Vec<f32>, u32, u32), String> {
    let opts = DecodeOptions {
        apply_exif_orientation: apply_exif,
        allow_truncated: false,
    };
    prepare_bytes_with(bytes, cfg, &opts).map(|p| (p.pixels, p.width, p.height))
}

/// [`prepare_bytes`] with every decoding option. A panic anywhere in it fails the file.
pub fn prepare_bytes_with(
    bytes: &[u8],
    cfg: &PreprocessConfig,
    opts: &DecodeOptions,
) -> Result<PreparedPixels, String> {
    guarded(|| {
        let decoded = decode_rgb_with(bytes, opts).map_err(|e| e.to_string())?;
        let note = decoded.raw_preview.and_then(|(kind, w, h)| {
            (w < cfg.crop_width || h < cfg.crop_height).then(|| {
                format!(
                    "{kind}: its embedded preview is only {w}×{h}, smaller than the model's {}×{} input",
                    cfg.crop_width, cfg.crop_height
                )
            })
        });
        Ok(PreparedPixels {
            pixels: preprocess_rgb(&decoded.rgb, cfg),
            width: decoded.rgb.width(),
            height: decoded.rgb.height(),
            truncated: decoded.truncated,
            note,
        })
    })
}
