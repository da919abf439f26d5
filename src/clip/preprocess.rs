//! Image preprocessing for CLIP: encoded image bytes in, the `[3, H, W]` channel-major `f32`
//! tensor the vision tower expects out, bit-identical to Hugging Face transformers'
//! `CLIPImageProcessor` on its PIL path (what the original Python pipeline ran).
//!
//! The steps, each reproducing the integer arithmetic of Pillow / the numpy code of transformers:
//! decode (with decompression-bomb limits) → optional EXIF orientation → PIL-exact conversion to
//! RGB (alpha composited onto white with Pillow's `AlphaComposite.c` arithmetic, grayscale
//! replicated, palettes expanded, CMYK through Pillow's formula) → Pillow's two-pass fixed-point
//! resampling (`Resample.c`: shortest edge to `size`, antialiased when shrinking) → transformers'
//! `center_crop` → `x as f64 * rescale_factor` cast to `f32` → `(x - mean) / std` in `f32`.
//! Only the output pixels inside the crop window are resampled, which gives the same numbers as
//! resizing the whole image and cropping afterwards.
//!
//! Not for: model code (`vision.rs`), walking directories or reading files (the caller passes
//! bytes and adds the path to errors). Everything here is a pure function of its arguments,
//! apart from [`PreprocessConfig::from_model_dir`], which reads one JSON file.
//!
//! Deliberate differences from transformers, all outside its well-defined cases: EXIF orientation
//! is applied by default (transformers ignores it; `apply_exif_orientation = false` restores its
//! behaviour); 16-bit grayscale images use the high byte of each sample (Pillow clips them to
//! 255, which turns them white); images above [`MAX_PIXELS`] are refused.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};
use serde::Deserialize;
use serde_json::Value;

/// Largest image accepted, in pixels (width × height): 100 MP. A 48 MP phone photo decodes;
/// decompression bombs are refused before any pixel buffer is allocated.
pub const MAX_PIXELS: u64 = 100_000_000;
/// Largest width or height accepted.
pub const MAX_SIDE: u32 = 100_000;
/// Most memory a decoder may allocate for one image (the decoded buffer included): 1 GiB.
pub const MAX_DECODE_BYTES: u64 = 1 << 30;
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
    #[error("not an image in a supported format (PNG, JPEG, GIF, WebP, BMP, TIFF)")]
    UnknownFormat,
    #[error("cannot decode {format:?} image: {reason}")]
    Decode { format: ImageFormat, reason: String },
    #[error("image too large: {reason}")]
    TooLarge { reason: String },
    #[error("unsupported pixel format: {0}")]
    UnsupportedMode(String),
    #[error("{0}")]
    Config(String),
}

/// Pillow's resampling filters, by their PIL codes (transformers' `resample`). NEAREST (0) is
/// not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Resample {
    /// From a PIL resampling code: 1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING.
    pub fn from_pil(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Lanczos),
            2 => Some(Self::Bilinear),
            3 => Some(Self::Bicubic),
            4 => Some(Self::Box),
            5 => Some(Self::Hamming),
            _ => None,
        }
    }

    pub fn pil_code(self) -> u8 {
        match self {
            Self::Lanczos => 1,
            Self::Bilinear => 2,
            Self::Bicubic => 3,
            Self::Box => 4,
            Self::Hamming => 5,
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    /// The filter kernels of Pillow's `Resample.c`, same expressions, same evaluation order.
    fn eval(self, x: f64) -> f64 {
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                return 1.0;
            }
            let x = x * std::f64::consts::PI;
            x.sin() / x
        }
        match self {
            Self::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    return 1.0;
                }
                if x >= 1.0 {
                    return 0.0;
                }
                let x = x * std::f64::consts::PI;
                // `0.54f + 0.46f * cos(x)` in C: float constants promoted to double.
                x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
            }
            Self::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
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

    /// Reads `dir/preprocessor_config.json` when present, else [`Self::clip_default`]. Keys the
    /// file leaves out take their `clip_default(image_size)` values.
    pub fn from_model_dir(dir: &Path, image_size: u32) -> Result<Self, PreprocessError> {
        let path = dir.join("preprocessor_config.json");
        if !path.is_file() {
            return Ok(Self::clip_default(image_size));
        }
        let text = std::fs::read_to_string(&path)?;
        Self::from_json(&text, image_size)
    }

    /// Parses the text of a `preprocessor_config.json` (see [`Self::from_model_dir`]).
    pub fn from_json(text: &str, image_size: u32) -> Result<Self, PreprocessError> {
        let raw: RawConfig = serde_json::from_str(text)
            .map_err(|e| PreprocessError::Config(format!("invalid JSON: {e}")))?;
        let mut cfg = Self::clip_default(image_size);
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
                    if l <= shortest_edge {
                        return Err(PreprocessError::Config(format!(
                            "size.longest_edge = {l} must be greater than size.shortest_edge = {shortest_edge}"
                        )));
                    }
                }
            }
            ResizeTarget::Exact { height, width } => {
                side("size.height", height)?;
                side("size.width", width)?;
            }
        }
        side("crop_size.height", self.crop_height)?;
        side("crop_size.width", self.crop_width)?;
        if !self.do_center_crop
            && !(self.do_resize && matches!(self.size, ResizeTarget::Exact { .. }))
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

/// A decoded image converted to RGB the way PIL's `convert_to_rgb` does it.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// Full resolution, upright when EXIF orientation was applied.
    pub rgb: RgbImage,
    /// Width and height before resizing, as displayed (after EXIF orientation when applied;
    /// equal to `rgb.dimensions()`).
    pub original_width: u32,
    pub original_height: u32,
    /// The container format found by content sniffing.
    pub format: ImageFormat,
    /// The EXIF orientation that was applied (`NoTransforms` when none, or when disabled).
    pub orientation: Orientation,
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

/// The format of an image from its first bytes (16 are enough), or `None` when it is not one of
/// the formats this build decodes (PNG, JPEG, GIF, WebP, BMP, TIFF), whatever the file's name.
pub fn sniff_image_format(header: &[u8]) -> Option<ImageFormat> {
    let format = image::guess_format(header).ok()?;
    match format {
        ImageFormat::Png
        | ImageFormat::Jpeg
        | ImageFormat::Gif
        | ImageFormat::WebP
        | ImageFormat::Tiff => Some(format),
        // "BM" alone matches plenty of text: also require a known DIB header size.
        ImageFormat::Bmp => {
            let dib = header.get(14..18)?;
            let dib = u32::from_le_bytes([dib[0], dib[1], dib[2], dib[3]]);
            matches!(dib, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124).then_some(format)
        }
        _ => None,
    }
}

/// Decodes an image and converts it to RGB exactly as PIL's `convert_to_rgb` path does.
/// `apply_exif_orientation` rotates/flips the image upright per its EXIF tag (transformers does
/// not; pass `false` for strict parity on tagged images). Refuses images over [`MAX_PIXELS`].
/// Never panics: a panic inside a decoder comes back as [`PreprocessError::Decode`].
pub fn decode_rgb(
    bytes: &[u8],
    apply_exif_orientation: bool,
) -> Result<DecodedImage, PreprocessError> {
    let format = sniff_image_format(bytes).ok_or(PreprocessError::UnknownFormat)?;
    match catch_unwind(AssertUnwindSafe(|| {
        decode_inner(bytes, format, apply_exif_orientation)
    })) {
        Ok(result) => result,
        Err(_) => Err(PreprocessError::Decode {
            format,
            reason: "the decoder panicked on this file".to_string(),
        }),
    }
}

fn decode_inner(
    bytes: &[u8],
    format: ImageFormat,
    apply_exif_orientation: bool,
) -> Result<DecodedImage, PreprocessError> {
    let err = |e: ImageError| map_image_error(e, format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(err)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(PreprocessError::Decode {
            format,
            reason: format!("empty image ({width}×{height})"),
        });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS || width > MAX_SIDE || height > MAX_SIDE {
        return Err(PreprocessError::TooLarge {
            reason: format!(
                "{width}×{height} pixels ({:.1} MP); the limit is {} MP and {MAX_SIDE} pixels a side",
                pixels as f64 / 1e6,
                MAX_PIXELS / 1_000_000
            ),
        });
    }
    if decoder.total_bytes() > MAX_DECODE_BYTES {
        return Err(PreprocessError::TooLarge {
            reason: format!(
                "{width}×{height} pixels need {} MiB decoded; the limit is {} MiB",
                decoder.total_bytes() >> 20,
                MAX_DECODE_BYTES >> 20
            ),
        });
    }
    let orientation = if apply_exif_orientation {
        decoder.orientation().unwrap_or(Orientation::NoTransforms)
    } else {
        Orientation::NoTransforms
    };
    let image = DynamicImage::from_decoder(decoder).map_err(err)?;
    // A PNG of colour type 2 (RGB) whose tRNS chunk the decoder expanded to alpha is still mode
    // "RGB" for PIL, which transformers passes through untouched: drop the alpha, don't composite.
    let rgb_with_trns = format == ImageFormat::Png && png_color_type(bytes) == Some(2);
    let rgb = to_rgb_like_pil(image, rgb_with_trns)?;
    let rgb = if orientation == Orientation::NoTransforms {
        rgb
    } else {
        let mut dynamic = DynamicImage::ImageRgb8(rgb);
        dynamic.apply_orientation(orientation);
        match dynamic {
            DynamicImage::ImageRgb8(rgb) => rgb,
            other => other.to_rgb8(),
        }
    };
    let (original_width, original_height) = rgb.dimensions();
    Ok(DecodedImage {
        rgb,
        original_width,
        original_height,
        format,
        orientation,
    })
}

fn map_image_error(e: ImageError, format: ImageFormat) -> PreprocessError {
    match e {
        ImageError::Limits(l) => PreprocessError::TooLarge {
            reason: format!(
                "{l} (limits: {} MP, {} MiB)",
                MAX_PIXELS / 1_000_000,
                MAX_DECODE_BYTES >> 20
            ),
        },
        // Reading from memory: an I/O error means the data ended early or is corrupt.
        other => PreprocessError::Decode {
            format,
            reason: other.to_string(),
        },
    }
}

/// The colour type byte of a PNG's IHDR chunk.
fn png_color_type(bytes: &[u8]) -> Option<u8> {
    (bytes.get(12..16)? == b"IHDR").then(|| bytes.get(25).copied())?
}

/// Pillow's `alpha_composite` of an `(v, a)` pixel over opaque white (`AlphaComposite.c`, with
/// the destination fixed at 255: `coef1 = a·128`, `coef2 = (255 − a)·128`).
#[inline]
fn over_white(v: u8, a: u8) -> u8 {
    if a == 0 {
        return 255;
    }
    let (v, a) = (u32::from(v), u32::from(a));
    let tmp = 128 * (v * a + 255 * (255 - a)) + (0x80 << 7);
    ((((tmp >> 8) + tmp) >> 8) >> 7) as u8
}

/// transformers' `convert_to_rgb`: mode RGB passes through; anything else becomes RGBA, is
/// composited onto white and converted to RGB. 16-bit samples keep their high byte.
fn to_rgb_like_pil(image: DynamicImage, rgb_with_trns: bool) -> Result<RgbImage, PreprocessError> {
    let (w, h) = (image.width(), image.height());
    let build = |data: Vec<u8>| {
        RgbImage::from_raw(w, h, data).ok_or_else(|| {
            PreprocessError::UnsupportedMode("pixel buffer size mismatch".to_string())
        })
    };
    let rgba = |src: &[u8], drop_alpha: bool| -> Vec<u8> {
        let mut out = Vec::with_capacity(src.len() / 4 * 3);
        for p in src.chunks_exact(4) {
            if drop_alpha {
                out.extend_from_slice(&p[..3]);
            } else {
                out.extend_from_slice(&[
                    over_white(p[0], p[3]),
                    over_white(p[1], p[3]),
                    over_white(p[2], p[3]),
                ]);
            }
        }
        out
    };
    let la = |src: &[u8]| -> Vec<u8> {
        let mut out = Vec::with_capacity(src.len() / 2 * 3);
        for p in src.chunks_exact(2) {
            let v = over_white(p[0], p[1]);
            out.extend_from_slice(&[v, v, v]);
        }
        out
    };
    let high = |src: &[u16]| -> Vec<u8> { src.iter().map(|&v| (v >> 8) as u8).collect() };
    match image {
        DynamicImage::ImageRgb8(img) => Ok(img),
        DynamicImage::ImageRgba8(img) => build(rgba(img.as_raw(), rgb_with_trns)),
        DynamicImage::ImageLuma8(img) => {
            build(img.as_raw().iter().flat_map(|&v| [v, v, v]).collect())
        }
        DynamicImage::ImageLumaA8(img) => build(la(img.as_raw())),
        DynamicImage::ImageRgb16(img) => build(high(img.as_raw())),
        DynamicImage::ImageRgba16(img) => build(rgba(&high(img.as_raw()), rgb_with_trns)),
        DynamicImage::ImageLuma16(img) => build(
            img.as_raw()
                .iter()
                .flat_map(|&v| [(v >> 8) as u8; 3])
                .collect(),
        ),
        DynamicImage::ImageLumaA16(img) => build(la(&high(img.as_raw()))),
        DynamicImage::ImageRgb32F(_) => Ok(image.to_rgb8()),
        DynamicImage::ImageRgba32F(_) => build(rgba(image.to_rgba8().as_raw(), false)),
        other => Err(PreprocessError::UnsupportedMode(format!(
            "{:?}",
            other.color()
        ))),
    }
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
        (0, ((crop64 - resized + 1) / 2) as usize, resized as usize)
    }
}

/// Pillow's fixed-point precision for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;
const HALF: i32 = 1 << (PRECISION_BITS - 1);

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Fixed-point resampling weights for some consecutive outputs of one axis.
struct AxisCoeffs {
    ksize: usize,
    /// Per output: first input index and number of taps.
    bounds: Vec<(usize, usize)>,
    /// `ksize` per output, the first `taps` used.
    weights: Vec<i32>,
}

impl AxisCoeffs {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for outputs `first..first + count`
    /// of an `in_size → out_size` resize (box = the whole image).
    fn new(in_size: u32, out_size: u64, first: u64, count: usize, filter: Resample) -> Self {
        let scale = f64::from(in_size) / out_size as f64;
        let filterscale = if scale < 1.0 { 1.0 } else { scale };
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let ss = 1.0 / filterscale;
        let mut bounds = Vec::with_capacity(count);
        let mut weights = vec![0i32; count * ksize];
        let mut k = vec![0f64; ksize];
        for (i, wrow) in weights.chunks_exact_mut(ksize).enumerate() {
            let center = ((first + i as u64) as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero, as `as` does.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size));
            let taps = (xmax - xmin).clamp(0, ksize as i64) as usize;
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().take(taps).enumerate() {
                let w = filter.eval(((x as i64 + xmin) as f64 - center + 0.5) * ss);
                *kx = w;
                ww += w;
            }
            for (kx, wx) in k.iter().take(taps).zip(wrow.iter_mut()) {
                let kx = if ww != 0.0 { kx / ww } else { *kx };
                let scaled = kx * f64::from(1u32 << PRECISION_BITS);
                *wx = if kx < 0.0 {
                    (-0.5 + scaled) as i32
                } else {
                    (0.5 + scaled) as i32
                };
            }
            bounds.push((xmin as usize, taps));
        }
        Self {
            ksize,
            bounds,
            weights,
        }
    }

    /// Input indices `[first, last)` any output reads.
    fn span(&self) -> (usize, usize) {
        let first = self.bounds.iter().map(|b| b.0).min().unwrap_or(0);
        let last = self.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(first);
        (first, last.max(first))
    }

    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let (start, n) = self.bounds[i];
        (start, &self.weights[i * self.ksize..i * self.ksize + n])
    }
}

/// Rows `ys..ys + yc`, columns `xs..xs + xc` of `img` resized to `rh × rw` with Pillow's
/// `ImagingResample` (horizontal pass first, each pass rounded and clipped to `u8`; an axis whose
/// size does not change is not resampled). Interleaved RGB, `yc × xc × 3`.
#[allow(clippy::too_many_arguments)]
fn resample_window(
    img: &RgbImage,
    rh: u64,
    rw: u64,
    ys: u64,
    yc: usize,
    xs: u64,
    xc: usize,
    filter: Resample,
) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let src = img.as_raw();
    let src_stride = w as usize * 3;
    let vertical = (rh != u64::from(h)).then(|| AxisCoeffs::new(h, rh, ys, yc, filter));
    let horizontal = (rw != u64::from(w)).then(|| AxisCoeffs::new(w, rw, xs, xc, filter));
    let (row_first, row_last) = match &vertical {
        Some(v) => v.span(),
        None => (ys as usize, ys as usize + yc),
    };
    let stride = xc * 3;

    // Horizontal pass over the rows the vertical pass reads.
    let mut tmp = vec![0u8; (row_last - row_first) * stride];
    for (r, out_row) in tmp.chunks_exact_mut(stride).enumerate() {
        let y = row_first + r;
        let in_row = &src[y * src_stride..(y + 1) * src_stride];
        match &horizontal {
            None => {
                let x0 = xs as usize * 3;
                out_row.copy_from_slice(&in_row[x0..x0 + stride]);
            }
            Some(hc) => {
                for (j, o) in out_row.chunks_exact_mut(3).enumerate() {
                    let (start, k) = hc.taps(j);
                    let px = &in_row[start * 3..(start + k.len()) * 3];
                    let (mut s0, mut s1, mut s2) = (HALF, HALF, HALF);
                    for (&kw, p) in k.iter().zip(px.chunks_exact(3)) {
                        s0 += i32::from(p[0]) * kw;
                        s1 += i32::from(p[1]) * kw;
                        s2 += i32::from(p[2]) * kw;
                    }
                    o[0] = clip8(s0);
                    o[1] = clip8(s1);
                    o[2] = clip8(s2);
                }
            }
        }
    }

    // Vertical pass.
    let Some(vc) = vertical else {
        return tmp;
    };
    let mut out = vec![0u8; yc * stride];
    let mut acc = vec![0i32; stride];
    for (i, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let (start, k) = vc.taps(i);
        acc.fill(HALF);
        for (t, &kw) in k.iter().enumerate() {
            let r = start + t - row_first;
            let in_row = &tmp[r * stride..(r + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(in_row) {
                *a += i32::from(p) * kw;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder() {}
}
