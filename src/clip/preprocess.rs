//! Image preprocessing for CLIP: the parameters of transformers' `CLIPImageProcessor` (read
//! from a checkpoint's `preprocessor_config.json`) and the order of its steps, turning encoded
//! image bytes into the `[3, H, W]` channel-major `f32` tensor the vision tower expects,
//! bit-identical to transformers on its PIL path (what the original Python pipeline ran, with
//! Pillow 13).
//!
//! The steps: decode with PIL-exact conversion to RGB and optional EXIF orientation
//! ([`crate::image::decode_rgb`]) → Pillow's two-pass fixed-point resampling
//! ([`crate::image::resample`]: shortest edge to `size`, antialiased when shrinking, pass order as
//! in Pillow 13) → transformers' `center_crop` → `x as f64 * rescale_factor` cast to `f32` →
//! `(x - mean) / std` in `f32`. Only the output pixels inside the crop window are resampled,
//! which gives the same numbers as resizing the whole image and cropping afterwards.
//!
//! Not for: decoding, mode conversions or the resampling arithmetic (`crate::image`), model code
//! (`vision.rs`), walking directories or reading image files (the caller passes bytes and adds
//! the path to errors). Everything here is a pure function of its arguments, apart from
//! [`PreprocessConfig::from_model_dir`], which reads one JSON file.
//!
//! Deliberate differences from transformers, all outside its well-defined cases: EXIF
//! orientation is applied by default (transformers ignores it; `apply_exif_orientation = false`
//! restores its behaviour); the others are in decoding (see [`crate::image::decode`]).

use std::path::Path;

use image::metadata::Orientation;
use image::{ImageFormat, RgbImage};
use serde::Deserialize;
use serde_json::Value;

use crate::image::resample::resample_window;
use crate::image::{decode_rgb, DecodeError, Resample};

/// Largest `size` / `crop_size` accepted from a `preprocessor_config.json`.
pub const MAX_CONFIG_SIDE: u32 = 4096;

/// OpenAI CLIP's normalization constants (transformers' `OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD`).
pub const OPENAI_CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const OPENAI_CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Why an image (or a preprocessing config) could not be used. The caller adds the path.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Image(#[from] DecodeError),
    #[error("{0}")]
    Config(String),
}

/// What `size` asks the resize step for (transformers' size dict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTarget {
    /// `{"shortest_edge": s}`: the short side becomes `s`, the long side
    /// `int(s * long / short)`; with `longest_edge` the long side is capped as in transformers'
    /// `get_size_with_aspect_ratio`.
    ShortestEdge {
        shortest_edge: u32,
        longest_edge: Option<u32>,
    },
    /// `{"height": h, "width": w}`: resize to exactly this, ignoring the aspect ratio.
    Exact { height: u32, width: u32 },
}

/// The parameters of transformers' `CLIPImageProcessor` (names as in `preprocessor_config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    /// Parsed for completeness; images are always converted to RGB (the model needs 3 channels).
    pub do_convert_rgb: bool,
    pub do_resize: bool,
    pub size: ResizeTarget,
    pub resample: Resample,
    pub do_center_crop: bool,
    pub crop_height: u32,
    pub crop_width: u32,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    /// Per channel (R, G, B); cast to `f32` before use, as numpy does.
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
}

/// `preprocessor_config.json`, as written: every key optional, several with more than one shape.
#[derive(Debug, Deserialize)]
struct RawConfig {
    do_convert_rgb: Option<bool>,
    do_resize: Option<bool>,
    size: Option<Value>,
    resample: Option<Value>,
    do_center_crop: Option<bool>,
    crop_size: Option<Value>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<Value>,
    image_std: Option<Value>,
}

impl PreprocessConfig {
    /// OpenAI CLIP's preprocessing for a model with `image_size`-pixel inputs: shortest edge and
    /// center crop to `image_size`, bicubic, ×1/255, CLIP mean and std.
    pub fn clip_default(image_size: u32) -> Self {
        Self {
            do_convert_rgb: true,
            do_resize: true,
            size: ResizeTarget::ShortestEdge {
                shortest_edge: image_size,
                longest_edge: None,
            },
            resample: Resample::Bicubic,
            do_center_crop: true,
            crop_height: image_size,
            crop_width: image_size,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
        }
    }

    /// transformers' `SiglipImageProcessor` for `image_size`-pixel inputs: a square resize to
    /// `image_size`×`image_size` without crop (the aspect ratio is not kept), bicubic, ×1/255,
    /// mean and std 0.5 (`IMAGENET_STANDARD_MEAN`/`_STD`).
    pub fn siglip_default(image_size: u32) -> Self {
        Self {
            size: ResizeTarget::Exact {
                height: image_size,
                width: image_size,
            },
            do_center_crop: false,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
            ..Self::clip_default(image_size)
        }
    }

    /// Reads `dir/preprocessor_config.json` when present, else [`Self::clip_default`]. Keys the
    /// file leaves out take their `clip_default(image_size)` values.
    pub fn from_model_dir(dir: &Path, image_size: u32) -> Result<Self, PreprocessError> {
        Self::from_model_dir_over(dir, Self::clip_default(image_size))
    }

    /// Reads `dir/preprocessor_config.json` when present, else `defaults` (the family's image
    /// processor's class defaults); keys the file leaves out keep their `defaults` values.
    pub fn from_model_dir_over(dir: &Path, defaults: Self) -> Result<Self, PreprocessError> {
        let path = dir.join("preprocessor_config.json");
        if !path.is_file() {
            return Ok(defaults);
        }
        let text = std::fs::read_to_string(&path)?;
        Self::from_json_over(&text, defaults)
    }

    /// Parses the text of a `preprocessor_config.json` (see [`Self::from_model_dir`]).
    pub fn from_json(text: &str, image_size: u32) -> Result<Self, PreprocessError> {
        Self::from_json_over(text, Self::clip_default(image_size))
    }

    /// Parses the text of a `preprocessor_config.json` over `defaults`.
    pub fn from_json_over(text: &str, defaults: Self) -> Result<Self, PreprocessError> {
        let raw: RawConfig = serde_json::from_str(text)
            .map_err(|e| PreprocessError::Config(format!("invalid JSON: {e}")))?;
        let mut cfg = defaults;
        if let Some(v) = raw.do_convert_rgb {
            cfg.do_convert_rgb = v;
        }
        if let Some(v) = raw.do_resize {
            cfg.do_resize = v;
        }
        if let Some(v) = raw.size.as_ref().filter(|v| !v.is_null()) {
            cfg.size = parse_size(v)?;
        }
        if let Some(v) = raw.resample.as_ref().filter(|v| !v.is_null()) {
            let code = v.as_i64().ok_or_else(|| {
                PreprocessError::Config(format!("resample: expected an integer, got {v}"))
            })?;
            cfg.resample = Resample::from_pil(code).ok_or_else(|| {
                PreprocessError::Config(format!(
                    "resample {code} is not supported (supported: 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)"
                ))
            })?;
        }
        if let Some(v) = raw.do_center_crop {
            cfg.do_center_crop = v;
        }
        if let Some(v) = raw.crop_size.as_ref().filter(|v| !v.is_null()) {
            (cfg.crop_height, cfg.crop_width) = parse_crop_size(v)?;
        }
        if let Some(v) = raw.do_rescale {
            cfg.do_rescale = v;
        }
        if let Some(v) = raw.rescale_factor {
            cfg.rescale_factor = v;
        }
        if let Some(v) = raw.do_normalize {
            cfg.do_normalize = v;
        }
        if let Some(v) = raw.image_mean.as_ref().filter(|v| !v.is_null()) {
            cfg.image_mean = parse_per_channel("image_mean", v)?;
        }
        if let Some(v) = raw.image_std.as_ref().filter(|v| !v.is_null()) {
            cfg.image_std = parse_per_channel("image_std", v)?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that the parameters make sense and give every image the same tensor size.
    pub fn validate(&self) -> Result<(), PreprocessError> {
        let side = |name: &str, v: u32| {
            if v == 0 || v > MAX_CONFIG_SIDE {
                Err(PreprocessError::Config(format!(
                    "{name} = {v} is out of range (1..={MAX_CONFIG_SIDE})"
                )))
            } else {
                Ok(())
            }
        };
        match self.size {
            ResizeTarget::ShortestEdge {
                shortest_edge,
                longest_edge,
            } => {
                side("size.shortest_edge", shortest_edge)?;
                if let Some(l) = longest_edge {
                    side("size.longest_edge", l)?;
                }
            }
            ResizeTarget::Exact { height, width } => {
                side("size.height", height)?;
                side("size.width", width)?;
            }
        }
        side("crop_size.height", self.crop_height)?;
        side("crop_size.width", self.crop_width)?;
        if !(self.do_center_crop
            || (self.do_resize && matches!(self.size, ResizeTarget::Exact { .. })))
        {
            return Err(PreprocessError::Config(
                "without center crop or a fixed resize size the tensor size would depend on each image; \
                 the model needs a fixed size"
                    .to_string(),
            ));
        }
        if !self.rescale_factor.is_finite() {
            return Err(PreprocessError::Config(format!(
                "rescale_factor = {} is not a finite number",
                self.rescale_factor
            )));
        }
        for c in 0..3 {
            let (m, s) = (self.image_mean[c], self.image_std[c]);
            if !m.is_finite() || !s.is_finite() || s as f32 == 0.0 {
                return Err(PreprocessError::Config(format!(
                    "image_mean[{c}] = {m}, image_std[{c}] = {s}: need finite values and a non-zero std"
                )));
            }
        }
        Ok(())
    }

    /// `(height, width)` of the tensor [`preprocess_rgb`] returns: the crop size, or the resize
    /// size when there is no center crop. (A config that [`Self::validate`] rejects still gets a
    /// fixed size: the crop size, applied as a center crop.)
    pub fn output_size(&self) -> (u32, u32) {
        match (self.do_center_crop, self.do_resize, self.size) {
            (false, true, ResizeTarget::Exact { height, width }) => (height, width),
            _ => (self.crop_height, self.crop_width),
        }
    }

    /// `(height, width)` an image of `height × width` pixels is resized to, before cropping:
    /// transformers' `get_resize_output_image_size` (shortest edge) or
    /// `get_size_with_aspect_ratio` (shortest and longest edge). Never 0.
    pub fn resized_size(&self, height: u32, width: u32) -> (u64, u64) {
        let (h, w) = (u64::from(height), u64::from(width));
        if !self.do_resize {
            return (h, w);
        }
        let (oh, ow) = match self.size {
            ResizeTarget::Exact { height, width } => (u64::from(height), u64::from(width)),
            ResizeTarget::ShortestEdge {
                shortest_edge,
                longest_edge: None,
            } => {
                let s = u64::from(shortest_edge);
                let (short, long) = if w <= h { (w, h) } else { (h, w) };
                let new_long = (s as f64 * long as f64 / short.max(1) as f64) as u64;
                if w <= h {
                    (new_long, s)
                } else {
                    (s, new_long)
                }
            }
            ResizeTarget::ShortestEdge {
                shortest_edge,
                longest_edge: Some(max_size),
            } => size_with_aspect_ratio(h, w, u64::from(shortest_edge), u64::from(max_size)),
        };
        (oh.max(1), ow.max(1))
    }

    /// The output value of every possible `u8` pixel value, per channel: rescale in `f64` then
    /// cast to `f32`, normalize in `f32` (transformers' `rescale` and `normalize`).
    fn lookup_tables(&self) -> [[f32; 256]; 3] {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            let (mean, std) = (self.image_mean[c] as f32, self.image_std[c] as f32);
            for (v, out) in table.iter_mut().enumerate() {
                let mut x = if self.do_rescale {
                    (v as f64 * self.rescale_factor) as f32
                } else {
                    v as f32
                };
                if self.do_normalize {
                    x = (x - mean) / std;
                }
                *out = x;
            }
        }
        lut
    }
}

/// transformers' `get_size_with_aspect_ratio((height, width), size, max_size)`.
fn size_with_aspect_ratio(h: u64, w: u64, size: u64, max_size: u64) -> (u64, u64) {
    let mut size = size;
    let mut raw_size = None;
    let min_original = h.min(w) as f64;
    let max_original = h.max(w) as f64;
    if max_original / min_original * size as f64 > max_size as f64 {
        let raw = max_size as f64 * min_original / max_original;
        raw_size = Some(raw);
        size = raw.round_ties_even() as u64; // Python's round()
    }
    if (h <= w && h == size) || (w <= h && w == size) {
        (h, w)
    } else if w < h {
        let oh = match raw_size {
            Some(raw) => (raw * h as f64 / w as f64) as u64,
            None => ((size * h) as f64 / w as f64) as u64,
        };
        (oh, size)
    } else {
        let ow = match raw_size {
            Some(raw) => (raw * w as f64 / h as f64) as u64,
            None => ((size * w) as f64 / h as f64) as u64,
        };
        (size, ow)
    }
}

fn config_u32(name: &str, v: &Value) -> Result<u32, PreprocessError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            PreprocessError::Config(format!("{name}: expected a positive integer, got {v}"))
        })
}

/// `size`: an int (CLIP: shortest edge), `{"shortest_edge"[, "longest_edge"]}`,
/// `{"height", "width"}` or `[height, width]`.
fn parse_size(v: &Value) -> Result<ResizeTarget, PreprocessError> {
    let get = |key: &str| v.get(key).filter(|x| !x.is_null());
    match v {
        Value::Number(_) => Ok(ResizeTarget::ShortestEdge {
            shortest_edge: config_u32("size", v)?,
            longest_edge: None,
        }),
        Value::Array(a) if a.len() == 2 => Ok(ResizeTarget::Exact {
            height: config_u32("size[0]", &a[0])?,
            width: config_u32("size[1]", &a[1])?,
        }),
        Value::Object(_) => {
            if let Some(s) = get("shortest_edge") {
                Ok(ResizeTarget::ShortestEdge {
                    shortest_edge: config_u32("size.shortest_edge", s)?,
                    longest_edge: get("longest_edge")
                        .map(|l| config_u32("size.longest_edge", l))
                        .transpose()?,
                })
            } else if let (Some(h), Some(w)) = (get("height"), get("width")) {
                Ok(ResizeTarget::Exact {
                    height: config_u32("size.height", h)?,
                    width: config_u32("size.width", w)?,
                })
            } else {
                Err(PreprocessError::Config(format!(
                    "size {v} is not supported (expected shortest_edge, or height and width)"
                )))
            }
        }
        _ => Err(PreprocessError::Config(format!(
            "size {v} is not supported"
        ))),
    }
}

/// `crop_size`: an int (square), `{"height", "width"}` or `[height, width]`.
fn parse_crop_size(v: &Value) -> Result<(u32, u32), PreprocessError> {
    match v {
        Value::Number(_) => {
            let s = config_u32("crop_size", v)?;
            Ok((s, s))
        }
        Value::Array(a) if a.len() == 2 => Ok((
            config_u32("crop_size[0]", &a[0])?,
            config_u32("crop_size[1]", &a[1])?,
        )),
        Value::Object(o) => match (o.get("height"), o.get("width")) {
            (Some(h), Some(w)) => Ok((
                config_u32("crop_size.height", h)?,
                config_u32("crop_size.width", w)?,
            )),
            _ => Err(PreprocessError::Config(format!(
                "crop_size {v}: expected height and width"
            ))),
        },
        _ => Err(PreprocessError::Config(format!(
            "crop_size {v} is not supported"
        ))),
    }
}

/// `image_mean` / `image_std`: one number for all channels or one per channel.
fn parse_per_channel(name: &str, v: &Value) -> Result<[f64; 3], PreprocessError> {
    let bad =
        || PreprocessError::Config(format!("{name}: expected a number or 3 numbers, got {v}"));
    match v {
        Value::Number(n) => {
            let x = n.as_f64().ok_or_else(bad)?;
            Ok([x; 3])
        }
        Value::Array(a) if a.len() == 3 => {
            let mut out = [0.0; 3];
            for (o, x) in out.iter_mut().zip(a) {
                *o = x.as_f64().ok_or_else(bad)?;
            }
            Ok(out)
        }
        _ => Err(bad()),
    }
}

/// The result of [`preprocess_bytes`]: the tensor plus what is worth storing about the image.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// `[3, H, W]` channel-major, `H, W` = [`PreprocessConfig::output_size`].
    pub pixels: Vec<f32>,
    pub original_width: u32,
    pub original_height: u32,
    pub format: ImageFormat,
    pub orientation: Orientation,
}

/// Resize, center crop, rescale and normalize an RGB image: the `[3, H, W]` channel-major
/// tensor, `(H, W)` = [`PreprocessConfig::output_size`], `len == 3 * H * W`. Bit-identical to
/// transformers' PIL path for the same RGB pixels.
pub fn preprocess_rgb(img: &RgbImage, cfg: &PreprocessConfig) -> Vec<f32> {
    let (out_h, out_w) = cfg.output_size();
    let (out_h, out_w) = (out_h as usize, out_w as usize);
    let lut = cfg.lookup_tables();
    let (w, h) = img.dimensions();
    let mut out = vec![0f32; 3 * out_h * out_w];
    if out.is_empty() {
        return out; // a hand-built config with a zero crop side
    }
    if w == 0 || h == 0 {
        for (c, plane) in out.chunks_exact_mut(out_h * out_w).enumerate() {
            plane.fill(lut[c][0]);
        }
        return out;
    }
    let (rh, rw) = cfg.resized_size(h, w);
    // transformers' center_crop: top = (height - crop) // 2; a crop larger than the image pads
    // with zeros, ceil((crop - height) / 2) before.
    let (ys, pad_top, yc) = crop_axis(rh, out_h);
    let (xs, pad_left, xc) = crop_axis(rw, out_w);
    let filter = cfg.resample;
    let window = resample_window(img, rh, rw, ys, yc, xs, xc, filter);
    for (c, plane) in out.chunks_exact_mut(out_h * out_w).enumerate() {
        let table = &lut[c];
        let pad = table[0];
        for (y, row) in plane.chunks_exact_mut(out_w).enumerate() {
            if y < pad_top || y >= pad_top + yc {
                row.fill(pad);
                continue;
            }
            let src = &window[(y - pad_top) * xc * 3..(y - pad_top + 1) * xc * 3];
            row[..pad_left].fill(pad);
            for (o, p) in row[pad_left..pad_left + xc]
                .iter_mut()
                .zip(src.chunks_exact(3))
            {
                *o = table[p[c] as usize];
            }
            row[pad_left + xc..].fill(pad);
        }
    }
    out
}

/// Decode + [`preprocess_rgb`] in one call; the full-size RGB image is dropped.
pub fn preprocess_bytes(
    bytes: &[u8],
    cfg: &PreprocessConfig,
    apply_exif_orientation: bool,
) -> Result<Preprocessed, PreprocessError> {
    let decoded = decode_rgb(bytes, apply_exif_orientation)?;
    Ok(Preprocessed {
        pixels: preprocess_rgb(&decoded.rgb, cfg),
        original_width: decoded.original_width,
        original_height: decoded.original_height,
        format: decoded.format,
        orientation: decoded.orientation,
    })
}

/// One axis of the crop: `(first resized index, zero padding before, count of resized pixels)`.
fn crop_axis(resized: u64, crop: usize) -> (u64, usize, usize) {
    let crop64 = crop as u64;
    if crop64 <= resized {
        ((resized - crop64) / 2, 0, crop)
    } else {
        (0, (crop64 - resized).div_ceil(2) as usize, resized as usize)
    }
}

#[cfg(test)]
mod tests;
