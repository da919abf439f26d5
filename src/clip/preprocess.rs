//! Image preprocessing for CLIP: encoded image bytes in, the `[3, H, W]` channel-major `f32`
//! tensor the vision tower expects out, bit-identical to Hugging Face transformers'
//! `CLIPImageProcessor` on its PIL path (what the original Python pipeline ran, with Pillow 13).
//!
//! The steps, each reproducing the integer arithmetic of Pillow / the numpy code of transformers:
//! decode (with decompression-bomb limits) → optional EXIF orientation → PIL-exact conversion to
//! RGB (alpha composited onto white with Pillow's `AlphaComposite.c` arithmetic, grayscale
//! replicated, palettes expanded, CMYK through Pillow's formula) → Pillow's two-pass fixed-point
//! resampling (`Resample.c`: shortest edge to `size`, antialiased when shrinking, pass order as in
//! Pillow 13) → transformers' `center_crop` → `x as f64 * rescale_factor` cast to `f32` →
//! `(x - mean) / std` in `f32`. Only the output pixels inside the crop window are resampled, which
//! gives the same numbers as resizing the whole image and cropping afterwards.
//!
//! JPEG goes through a decoder of our own (module `pil_jpeg`) that reproduces libjpeg-turbo,
//! which Pillow uses (the `image` crate's zune-jpeg differs by a few levels: IDCT, chroma
//! upsampling); files it refuses (arithmetic coding, 12-bit, corrupt or truncated data) fall back
//! to the `image` crate. Other formats use the `image` crate, whose PNG, GIF, WebP, BMP and TIFF
//! output matched Pillow's on every file tried.
//!
//! Not for: model code (`vision.rs`), walking directories or reading files (the caller passes
//! bytes and adds the path to errors). Everything here is a pure function of its arguments,
//! apart from [`PreprocessConfig::from_model_dir`], which reads one JSON file.
//!
//! Deliberate differences from transformers, all outside its well-defined cases: EXIF orientation
//! is applied by default (transformers ignores it; `apply_exif_orientation = false` restores its
//! behaviour); 16-bit grayscale images use the high byte of each sample (Pillow clips them to
//! 255, which turns them white); images above [`MAX_PIXELS`] are refused; a truncated JPEG that
//! Pillow would refuse decodes as far as the `image` crate gets.

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
    // JPEG: our libjpeg-turbo-exact decoder; the `image` crate's (zune-jpeg, which differs from
    // libjpeg by a few levels) only for what ours refuses: arithmetic coding, 12-bit, corrupt or
    // truncated data.
    let exact_jpeg = if format == ImageFormat::Jpeg {
        pil_jpeg::decode(bytes, MAX_DECODE_BYTES)
            .ok()
            .filter(|img| img.dimensions() == (width, height))
    } else {
        None
    };
    let rgb = match exact_jpeg {
        Some(rgb) => rgb,
        None => {
            let image = DynamicImage::from_decoder(decoder).map_err(err)?;
            // A PNG of colour type 2 (RGB) whose tRNS chunk the decoder expanded to alpha is
            // still mode "RGB" for PIL, which transformers passes through untouched: drop the
            // alpha, don't composite.
            let rgb_with_trns = format == ImageFormat::Png && png_color_type(bytes) == Some(2);
            to_rgb_like_pil(image, rgb_with_trns)?
        }
    };
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

/// Pillow's fixed-point precision for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;
const HALF: i32 = 1 << (PRECISION_BITS - 1);

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

const SPLIT_BITS: u32 = 11;

/// `HALF + Σ p·k` with `k = hi·2^11 + lo`, as two 16-bit dot products (which compile to
/// `pmaddwd`). Wrapping arithmetic gives the exact sum: it fits in an `i32`, since
/// `Σ|k| ≤ 1.5 · 2^22` for every filter and `p ≤ 255`.
#[inline]
fn dot_split(p: &[i16], hi: &[i16], lo: &[i16]) -> i32 {
    let dot = |k: &[i16]| {
        p.iter()
            .zip(k)
            .map(|(&p, &k)| i32::from(p).wrapping_mul(i32::from(k)))
            .fold(0i32, i32::wrapping_add)
    };
    HALF.wrapping_add(dot(hi).wrapping_shl(SPLIT_BITS))
        .wrapping_add(dot(lo))
}

/// Fixed-point resampling weights for some consecutive outputs of one axis.
struct AxisCoeffs {
    ksize: usize,
    /// Per output: first input index and number of taps.
    bounds: Vec<(usize, usize)>,
    /// `ksize` per output, the first `taps` used.
    weights: Vec<i32>,
    /// The same weights split as `hi · 2^11 + lo` (`lo` in `0..2^11`), both `i16`, so the
    /// horizontal dot products can use 16-bit multiply-add instructions and stay exact.
    hi: Vec<i16>,
    lo: Vec<i16>,
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
        let hi = weights.iter().map(|&w| (w >> SPLIT_BITS) as i16).collect();
        let lo = weights
            .iter()
            .map(|&w| (w & ((1 << SPLIT_BITS) - 1)) as i16)
            .collect();
        Self {
            ksize,
            bounds,
            weights,
            hi,
            lo,
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

    fn split_taps(&self, i: usize) -> (usize, &[i16], &[i16]) {
        let (start, n) = self.bounds[i];
        let r = i * self.ksize..i * self.ksize + n;
        (start, &self.hi[r.clone()], &self.lo[r])
    }
}

/// Rows `ys..ys + yc`, columns `xs..xs + xc` of `img` resized to `rh × rw` with Pillow's
/// `ImagingResample`: two passes, each rounded and clipped to `u8`; an axis whose size does not
/// change is not resampled. Horizontal pass first, except where Pillow 13 runs the vertical pass
/// first (see [`vertical_first`]). Interleaved RGB, `yc × xc × 3`.
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
    let src_rows = |rows: std::ops::Range<usize>| {
        src[rows.start * src_stride..rows.end * src_stride].chunks_exact(src_stride)
    };
    let (ys, xs) = (ys as usize, xs as usize);
    match (&vertical, &horizontal) {
        (None, None) => src_rows(ys..ys + yc)
            .flat_map(|row| &row[xs * 3..(xs + xc) * 3])
            .copied()
            .collect(),
        (None, Some(hc)) => horizontal_pass(src_rows(ys..ys + yc), 0, hc),
        (Some(vc), None) => vertical_pass(src, src_stride, 0, xs..xs + xc, vc),
        (Some(vc), Some(hc)) if vertical_first(u64::from(w), u64::from(h), rw, rh) => {
            let (c0, c1) = hc.span();
            let tmp = vertical_pass(src, src_stride, 0, c0..c1, vc);
            horizontal_pass(tmp.chunks_exact((c1 - c0) * 3), c0, hc)
        }
        (Some(vc), Some(hc)) => {
            let (r0, r1) = vc.span();
            let tmp = horizontal_pass(src_rows(r0..r1), 0, hc);
            vertical_pass(&tmp, xc * 3, r0, 0..xc, vc)
        }
    }
}

/// Pillow 13 (python-pillow/Pillow#9549) resamples vertically first when the height shrinks by
/// more than twice as many pixels as the width; earlier Pillow always went horizontal first.
/// Derived from Pillow 13.0's output (exact on thousands of random size pairs and all filters);
/// with an aspect-preserving resize it concerns shrunk portraits taller than about 2:1.
fn vertical_first(w: u64, h: u64, rw: u64, rh: u64) -> bool {
    let (w, h, rw, rh) = (w as i128, h as i128, rw as i128, rh as i128);
    rh < h && h - rh > 2 * (w - rw)
}

/// Horizontal pass: each of `rows` holds interleaved RGB from column `col_offset` on; every
/// output row is `hc`'s outputs, interleaved. Each row's used columns are first split into
/// planes so the dot products vectorize.
fn horizontal_pass<'a>(
    rows: impl Iterator<Item = &'a [u8]>,
    col_offset: usize,
    hc: &AxisCoeffs,
) -> Vec<u8> {
    let stride = hc.bounds.len() * 3;
    let (c0, c1) = hc.span();
    let n = c1 - c0;
    let mut planes = vec![0i16; 3 * n];
    let mut out = Vec::new();
    for row in rows {
        let (p0, rest) = planes.split_at_mut(n);
        let (p1, p2) = rest.split_at_mut(n);
        let used = &row[(c0 - col_offset) * 3..(c1 - col_offset) * 3];
        for (((p, a), b), c) in used
            .chunks_exact(3)
            .zip(p0.iter_mut())
            .zip(p1.iter_mut())
            .zip(p2.iter_mut())
        {
            (*a, *b, *c) = (i16::from(p[0]), i16::from(p[1]), i16::from(p[2]));
        }
        let start = out.len();
        out.resize(start + stride, 0);
        for (j, o) in out[start..].chunks_exact_mut(3).enumerate() {
            let (first, hi, lo) = hc.split_taps(j);
            let s = first - c0;
            for (oc, plane) in o.iter_mut().zip([&*p0, &*p1, &*p2]) {
                *oc = clip8(dot_split(&plane[s..s + hi.len()], hi, lo));
            }
        }
    }
    out
}

/// Vertical pass over columns `cols` of an interleaved RGB image whose rows are `stride` bytes
/// and start at source row `row_offset`; one output row per output of `vc`.
fn vertical_pass(
    src: &[u8],
    stride: usize,
    row_offset: usize,
    cols: std::ops::Range<usize>,
    vc: &AxisCoeffs,
) -> Vec<u8> {
    let width = cols.len() * 3;
    let x0 = cols.start * 3;
    let mut out = vec![0u8; vc.bounds.len() * width];
    let mut acc = vec![0i32; width];
    for (i, out_row) in out.chunks_exact_mut(width).enumerate() {
        let (first, k) = vc.taps(i);
        acc.fill(HALF);
        for (t, &kw) in k.iter().enumerate() {
            let r = first + t - row_offset;
            let in_row = &src[r * stride + x0..r * stride + x0 + width];
            for (a, &p) in acc.iter_mut().zip(in_row) {
                *a = a.wrapping_add(i32::from(p).wrapping_mul(kw));
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// A baseline/progressive Huffman JPEG decoder whose output is bit-identical to libjpeg-turbo's
/// default decompression as Pillow runs it: islow integer IDCT (`jidctint.c`), "fancy"
/// triangle-filter chroma upsampling with libjpeg's alternating rounding biases and edge
/// replication (`jdsample.c`, `jdmainct.c`), table-driven YCbCr→RGB (`jdcolor.c`), libjpeg's
/// colour-space guess (`default_decompress_parms`), and Pillow's inverted-CMYK handling
/// (`CMYK;I` then `cmyk2rgb`). Strict: anything unusual (arithmetic coding, 12-bit, lossless,
/// DNL, 2 components, fractional sampling ratios, corrupt or truncated data) is an error and the
/// caller falls back to the `image` crate's decoder.
mod pil_jpeg {
    use image::RgbImage;

    pub(super) type Result<T> = std::result::Result<T, String>;

    /// Zigzag index → natural (row-major) index, with libjpeg's 16 extra entries for corrupt
    /// run lengths.
    const NATURAL_ORDER: [usize; 80] = [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27,
        20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
        58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63,
        63, 63, 63, 63, 63, 63, 63, 63, 63,
    ];

    const FAST_BITS: u32 = 9;

    struct Huffman {
        /// `(length << 8) | symbol` for codes of at most FAST_BITS bits, else 0.
        fast: Vec<u16>,
        maxcode: [i32; 18],
        valoffset: [i32; 18],
        values: Vec<u8>,
    }

    impl Huffman {
        fn new(counts: &[u8], symbols: &[u8]) -> Result<Self> {
            let mut fast = vec![0u16; 1 << FAST_BITS];
            let mut maxcode = [-1i32; 18];
            let mut valoffset = [0i32; 18];
            let mut code: u32 = 0;
            let mut k = 0usize;
            for l in 1..=16u32 {
                let n = counts[l as usize - 1] as usize;
                valoffset[l as usize] = k as i32 - code as i32;
                for _ in 0..n {
                    if code >= 1 << l {
                        return Err("bad Huffman table".into());
                    }
                    if l <= FAST_BITS {
                        let shift = FAST_BITS - l;
                        for i in 0..(1u32 << shift) {
                            fast[((code << shift) | i) as usize] =
                                ((l as u16) << 8) | u16::from(symbols[k]);
                        }
                    }
                    code += 1;
                    k += 1;
                }
                if n > 0 {
                    maxcode[l as usize] = code as i32 - 1;
                }
                // libjpeg's jdhuff.c check: no code may be all ones.
                if code >= 1 << l {
                    return Err("bad Huffman table".into());
                }
                code <<= 1;
            }
            maxcode[17] = i32::MAX;
            Ok(Self {
                fast,
                maxcode,
                valoffset,
                values: symbols.to_vec(),
            })
        }
    }

    /// Entropy-coded data reader. Past a marker or the end of the data it supplies zero bits, as
    /// libjpeg does, but remembers if any were consumed (then the data was truncated or corrupt).
    struct Bits<'a> {
        data: &'a [u8],
        pos: usize,
        acc: u64,
        n: u32,
        pad: u32,
        at_marker: bool,
        overrun: bool,
    }

    impl<'a> Bits<'a> {
        fn new(data: &'a [u8], pos: usize) -> Self {
            Self {
                data,
                pos,
                acc: 0,
                n: 0,
                pad: 0,
                at_marker: false,
                overrun: false,
            }
        }

        fn fill(&mut self) {
            while self.n <= 56 {
                let byte = if self.at_marker || self.pos >= self.data.len() {
                    self.at_marker = true;
                    self.pad += 8;
                    0
                } else {
                    let b = self.data[self.pos];
                    if b == 0xFF {
                        if self.data.get(self.pos + 1) == Some(&0) {
                            self.pos += 2;
                            0xFF
                        } else {
                            self.at_marker = true;
                            self.pad += 8;
                            0
                        }
                    } else {
                        self.pos += 1;
                        b
                    }
                };
                self.acc |= u64::from(byte) << (56 - self.n);
                self.n += 8;
            }
        }

        #[inline]
        fn consume(&mut self, k: u32) {
            self.acc <<= k;
            self.n -= k;
            if self.n < self.pad {
                self.overrun = true;
                self.pad = self.n;
            }
        }

        #[inline]
        fn bits(&mut self, k: u32) -> u32 {
            if k == 0 {
                return 0;
            }
            if self.n < k {
                self.fill();
            }
            let v = (self.acc >> (64 - k)) as u32;
            self.consume(k);
            v
        }

        #[inline]
        fn bit(&mut self) -> bool {
            self.bits(1) != 0
        }

        /// `HUFF_EXTEND(bits(s), s)`.
        #[inline]
        fn receive_extend(&mut self, s: u32) -> i32 {
            if s == 0 {
                return 0;
            }
            let v = self.bits(s) as i32;
            if v < 1 << (s - 1) {
                v - (1 << s) + 1
            } else {
                v
            }
        }

        #[inline]
        fn decode(&mut self, h: &Huffman) -> Result<u8> {
            if self.n < 16 {
                self.fill();
            }
            let f = h.fast[(self.acc >> (64 - FAST_BITS)) as usize];
            if f != 0 {
                self.consume(u32::from(f >> 8));
                return Ok(f as u8);
            }
            for l in FAST_BITS + 1..=16 {
                let code = (self.acc >> (64 - l)) as i32;
                if code <= h.maxcode[l as usize] {
                    self.consume(l);
                    let i = code + h.valoffset[l as usize];
                    return h
                        .values
                        .get(i as usize)
                        .copied()
                        .ok_or_else(|| "bad Huffman code".to_string());
                }
            }
            Err("bad Huffman code".into())
        }

        /// Drops buffered bits and reads an RSTn marker.
        fn restart(&mut self) -> Result<()> {
            self.acc = 0;
            self.n = 0;
            self.pad = 0;
            self.at_marker = false;
            while self.data.get(self.pos) == Some(&0xFF)
                && self.data.get(self.pos + 1) == Some(&0xFF)
            {
                self.pos += 1;
            }
            match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
                (Some(0xFF), Some(0xD0..=0xD7)) => {
                    self.pos += 2;
                    Ok(())
                }
                _ => Err("missing restart marker".into()),
            }
        }
    }

    struct Component {
        id: u8,
        h: usize,
        v: usize,
        tq: usize,
        /// Latched when the component's first scan starts (libjpeg's `latch_quant_tables`).
        quant: Option<[u16; 64]>,
        /// Downsampled size in samples and in blocks.
        dw: usize,
        dh: usize,
        wib: usize,
        hib: usize,
        /// Coefficient array width in blocks (whole MCUs).
        bw: usize,
        coefs: Vec<i16>,
        /// Samples, `wib·8 × hib·8`: written by the IDCT, directly during a single-scan
        /// sequential decode (no coefficient storage), else after the last scan.
        plane: Vec<u8>,
        dc_pred: i32,
    }

    struct Frame {
        progressive: bool,
        width: usize,
        height: usize,
        max_h: usize,
        max_v: usize,
        mcus_x: usize,
        mcus_y: usize,
        comps: Vec<Component>,
    }

    struct Decoder<'a> {
        data: &'a [u8],
        pos: usize,
        qt: [Option<[u16; 64]>; 4],
        dc: [Option<Huffman>; 4],
        ac: [Option<Huffman>; 4],
        restart_interval: usize,
        saw_jfif: bool,
        adobe_transform: Option<u8>,
        frame: Option<Frame>,
        scans: usize,
        eobrun: u32,
    }

    /// Decodes `data` to RGB as Pillow + libjpeg-turbo do; `max_bytes` bounds the memory used.
    pub(super) fn decode(data: &[u8], max_bytes: u64) -> Result<RgbImage> {
        let mut d = Decoder {
            data,
            pos: 0,
            qt: [None; 4],
            dc: [None, None, None, None],
            ac: [None, None, None, None],
            restart_interval: 0,
            saw_jfif: false,
            adobe_transform: None,
            frame: None,
            scans: 0,
            eobrun: 0,
        };
        if data.get(0..2) != Some(&[0xFF, 0xD8]) {
            return Err("not a JPEG".into());
        }
        d.pos = 2;
        loop {
            let Some(marker) = d.next_marker() else {
                // End of data without EOI: accept what the scans gave, as libjpeg does.
                if d.scans == 0 {
                    return Err("no image data".into());
                }
                break;
            };
            match marker {
                0xD8 => return Err("unexpected SOI".into()),
                0xC0..=0xC2 => d.read_sof(marker == 0xC2, max_bytes)?,
                0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                    return Err(format!("unsupported JPEG process (SOF{})", marker - 0xC0))
                }
                0xC4 => d.read_dht()?,
                0xCC => return Err("arithmetic coding is not supported".into()),
                0xDB => d.read_dqt()?,
                0xDD => {
                    let seg = d.segment()?;
                    if seg.len() < 2 {
                        return Err("bad DRI".into());
                    }
                    d.restart_interval = usize::from(u16::from_be_bytes([seg[0], seg[1]]));
                }
                0xDA => d.read_scan()?,
                0xD9 => break,
                0xE0 => {
                    let seg = d.segment()?;
                    if seg.len() >= 14 && &seg[..5] == b"JFIF\0" {
                        d.saw_jfif = true;
                    }
                }
                0xEE => {
                    let seg = d.segment()?;
                    if seg.len() >= 12 && &seg[..5] == b"Adobe" {
                        d.adobe_transform = Some(seg[11]);
                    }
                }
                0xE1..=0xED | 0xEF | 0xFE => {
                    d.segment()?;
                }
                0xD0..=0xD7 | 0x01 => {}
                0xDC => return Err("DNL marker is not supported".into()),
                other => return Err(format!("unexpected marker 0x{other:02X}")),
            }
        }
        d.output()
    }

    impl<'a> Decoder<'a> {
        /// The next marker code, skipping garbage and fill bytes; `None` at the end of the data.
        fn next_marker(&mut self) -> Option<u8> {
            loop {
                while *self.data.get(self.pos)? != 0xFF {
                    self.pos += 1;
                }
                while *self.data.get(self.pos)? == 0xFF {
                    self.pos += 1;
                }
                let code = *self.data.get(self.pos)?;
                self.pos += 1;
                if code != 0 {
                    return Some(code);
                }
            }
        }

        /// The payload of a marker segment (after its length), advancing past it.
        fn segment(&mut self) -> Result<&'a [u8]> {
            let data = self.data;
            let len = data
                .get(self.pos..self.pos + 2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                .ok_or("truncated marker segment")?;
            if len < 2 {
                return Err("bad marker segment length".into());
            }
            let seg = data
                .get(self.pos + 2..self.pos + len)
                .ok_or("truncated marker segment")?;
            self.pos += len;
            Ok(seg)
        }

        fn read_sof(&mut self, progressive: bool, max_bytes: u64) -> Result<()> {
            if self.frame.is_some() {
                return Err("more than one frame".into());
            }
            let s = self.segment()?;
            if s.len() < 6 {
                return Err("bad SOF".into());
            }
            if s[0] != 8 {
                return Err(format!("{}-bit JPEG is not supported", s[0]));
            }
            let height = usize::from(u16::from_be_bytes([s[1], s[2]]));
            let width = usize::from(u16::from_be_bytes([s[3], s[4]]));
            let nc = usize::from(s[5]);
            if height == 0 || width == 0 {
                return Err("zero image size (DNL) is not supported".into());
            }
            if !matches!(nc, 1 | 3 | 4) || s.len() < 6 + 3 * nc {
                return Err(format!("{nc}-component JPEG is not supported"));
            }
            let mut comps = Vec::with_capacity(nc);
            for i in 0..nc {
                let c = &s[6 + 3 * i..9 + 3 * i];
                let (h, v, tq) = (
                    usize::from(c[1] >> 4),
                    usize::from(c[1] & 15),
                    usize::from(c[2]),
                );
                if !(1..=4).contains(&h) || !(1..=4).contains(&v) || tq > 3 {
                    return Err("bad component parameters".into());
                }
                if comps.iter().any(|x: &Component| x.id == c[0]) {
                    return Err("duplicate component id".into());
                }
                comps.push(Component {
                    id: c[0],
                    h,
                    v,
                    tq,
                    quant: None,
                    dw: 0,
                    dh: 0,
                    wib: 0,
                    hib: 0,
                    bw: 0,
                    coefs: Vec::new(),
                    plane: Vec::new(),
                    dc_pred: 0,
                });
            }
            let max_h = comps.iter().map(|c| c.h).max().unwrap_or(1);
            let max_v = comps.iter().map(|c| c.v).max().unwrap_or(1);
            let mcus_x = width.div_ceil(8 * max_h);
            let mcus_y = height.div_ceil(8 * max_v);
            let mut bytes: u64 = (width * height * 3) as u64;
            for c in &mut comps {
                // Upsampling must be one of libjpeg's integral cases.
                if max_h % c.h != 0 || max_v % c.v != 0 {
                    return Err("fractional sampling ratios are not supported".into());
                }
                c.dw = (width * c.h).div_ceil(max_h);
                c.dh = (height * c.v).div_ceil(max_v);
                c.wib = c.dw.div_ceil(8);
                c.hib = c.dh.div_ceil(8);
                c.bw = mcus_x * c.h;
                let blocks = c.bw * mcus_y * c.v;
                bytes += (blocks * 64 * 2 + c.wib * c.hib * 64 + width * height) as u64;
            }
            if bytes > max_bytes {
                return Err(format!("needs {} MiB", bytes >> 20));
            }
            self.frame = Some(Frame {
                progressive,
                width,
                height,
                max_h,
                max_v,
                mcus_x,
                mcus_y,
                comps,
            });
            Ok(())
        }

        fn read_dht(&mut self) -> Result<()> {
            let mut s = self.segment()?;
            while !s.is_empty() {
                if s.len() < 17 {
                    return Err("bad DHT".into());
                }
                let (class, id) = (s[0] >> 4, usize::from(s[0] & 15));
                let counts = &s[1..17];
                let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
                if class > 1 || id > 3 || total > 256 || s.len() < 17 + total {
                    return Err("bad DHT".into());
                }
                let table = Huffman::new(counts, &s[17..17 + total])?;
                if class == 0 {
                    self.dc[id] = Some(table);
                } else {
                    self.ac[id] = Some(table);
                }
                s = &s[17 + total..];
            }
            Ok(())
        }

        fn read_dqt(&mut self) -> Result<()> {
            let mut s = self.segment()?;
            while !s.is_empty() {
                let (precision, id) = (s[0] >> 4, usize::from(s[0] & 15));
                let size = if precision == 0 { 64 } else { 128 };
                if precision > 1 || id > 3 || s.len() < 1 + size {
                    return Err("bad DQT".into());
                }
                let mut q = [0u16; 64];
                for (i, &n) in NATURAL_ORDER[..64].iter().enumerate() {
                    q[n] = if precision == 0 {
                        u16::from(s[1 + i])
                    } else {
                        u16::from_be_bytes([s[1 + 2 * i], s[2 + 2 * i]])
                    };
                }
                self.qt[id] = Some(q);
                s = &s[1 + size..];
            }
            Ok(())
        }

        fn read_scan(&mut self) -> Result<()> {
            let s = self.segment()?;
            let frame = self.frame.as_mut().ok_or("scan before frame header")?;
            let ns = usize::from(*s.first().ok_or("bad SOS")?);
            if !(1..=4).contains(&ns) || s.len() < 4 + 2 * ns {
                return Err("bad SOS".into());
            }
            let mut scan_comps = Vec::with_capacity(ns);
            for i in 0..ns {
                let (id, tables) = (s[1 + 2 * i], s[2 + 2 * i]);
                let ci = frame
                    .comps
                    .iter()
                    .position(|c| c.id == id)
                    .ok_or("scan names an unknown component")?;
                if scan_comps.iter().any(|&(c, _, _)| c == ci) {
                    return Err("component repeated in scan".into());
                }
                scan_comps.push((ci, usize::from(tables >> 4), usize::from(tables & 15)));
            }
            let p = 1 + 2 * ns;
            let (ss, se, ah, al) = (
                usize::from(s[p]),
                usize::from(s[p + 1]),
                u32::from(s[p + 2] >> 4),
                u32::from(s[p + 2] & 15),
            );
            if frame.progressive {
                let valid = if ss == 0 {
                    se == 0
                } else {
                    se >= ss && se <= 63 && ns == 1
                };
                if !valid || al > 13 || (ah != 0 && ah != al + 1) {
                    return Err("bad progressive scan parameters".into());
                }
            }
            for &(ci, td, ta) in &scan_comps {
                if td > 3 || ta > 3 {
                    return Err("bad Huffman table index".into());
                }
                let c = &mut frame.comps[ci];
                if c.quant.is_none() {
                    c.quant = Some(self.qt[c.tq].ok_or("missing quantization table")?);
                }
                c.dc_pred = 0;
            }
            self.eobrun = 0;
            let frame = self.frame.as_mut().ok_or("scan before frame header")?;
            let mut bits = Bits::new(self.data, self.pos);
            let progressive = frame.progressive;
            let kind = if !progressive {
                ScanKind::Sequential
            } else if ss == 0 {
                if ah == 0 {
                    ScanKind::DcFirst
                } else {
                    ScanKind::DcRefine
                }
            } else if ah == 0 {
                ScanKind::AcFirst
            } else {
                ScanKind::AcRefine
            };
            let interleaved = ns > 1;
            // A sequential frame whose first scan holds every component (the usual baseline
            // file) is decoded straight into sample planes; anything else keeps coefficients.
            let streaming = !frame.progressive && self.scans == 0 && ns == frame.comps.len();
            if self.scans > 0 && frame.comps.iter().any(|c| !c.plane.is_empty()) {
                return Err("unexpected scan after a complete sequential scan".into());
            }
            for &(ci, _, _) in &scan_comps {
                let c = &mut frame.comps[ci];
                if streaming {
                    c.plane = vec![0u8; c.wib * 8 * c.hib * 8];
                } else if c.coefs.is_empty() {
                    c.coefs = vec![0i16; c.bw * frame.mcus_y * c.v * 64];
                }
            }
            let mut scratch = [0i16; 64];
            let total = if interleaved {
                frame.mcus_x * frame.mcus_y
            } else {
                let c = &frame.comps[scan_comps[0].0];
                c.wib * c.hib
            };
            let mcus_x = frame.mcus_x;
            let mut to_go = self.restart_interval;
            for m in 0..total {
                if self.restart_interval > 0 {
                    if to_go == 0 {
                        bits.restart()?;
                        for &(ci, _, _) in &scan_comps {
                            frame.comps[ci].dc_pred = 0;
                        }
                        self.eobrun = 0;
                        to_go = self.restart_interval;
                    }
                    to_go -= 1;
                }
                for &(ci, td, ta) in &scan_comps {
                    let c = &mut frame.comps[ci];
                    let (nbx, nby, bx0, by0) = if interleaved {
                        (c.h, c.v, (m % mcus_x) * c.h, (m / mcus_x) * c.v)
                    } else {
                        (1, 1, m % c.wib, m / c.wib)
                    };
                    let (dc, ac) = (self.dc[td].as_ref(), self.ac[ta].as_ref());
                    for by in by0..by0 + nby {
                        for bx in bx0..bx0 + nbx {
                            if streaming {
                                let (Some(dc), Some(ac)) = (dc, ac) else {
                                    return Err("missing Huffman table".into());
                                };
                                scratch.fill(0);
                                decode_sequential(&mut bits, dc, ac, &mut c.dc_pred, &mut scratch)?;
                                // Blocks of MCU padding past the component's size are dropped.
                                if bx < c.wib && by < c.hib {
                                    let quant =
                                        c.quant.as_ref().ok_or("missing quantization table")?;
                                    let stride = c.wib * 8;
                                    idct_islow(
                                        &scratch,
                                        quant,
                                        &mut c.plane[by * 8 * stride + bx * 8..],
                                        stride,
                                    );
                                }
                                continue;
                            }
                            let off = (by * c.bw + bx) * 64;
                            let block = &mut c.coefs[off..off + 64];
                            match (kind, dc, ac) {
                                (ScanKind::Sequential, Some(dc), Some(ac)) => {
                                    decode_sequential(&mut bits, dc, ac, &mut c.dc_pred, block)?
                                }
                                (ScanKind::DcFirst, Some(dc), _) => {
                                    let s = u32::from(bits.decode(dc)?);
                                    if s > 15 {
                                        return Err("bad DC coefficient".into());
                                    }
                                    c.dc_pred = c.dc_pred.wrapping_add(bits.receive_extend(s));
                                    block[0] = (c.dc_pred << al) as i16;
                                }
                                (ScanKind::DcRefine, _, _) => {
                                    if bits.bit() {
                                        block[0] |= (1i32 << al) as i16;
                                    }
                                }
                                (ScanKind::AcFirst, _, Some(ac)) => decode_ac_first(
                                    &mut bits,
                                    ac,
                                    &mut self.eobrun,
                                    block,
                                    ss,
                                    se,
                                    al,
                                )?,
                                (ScanKind::AcRefine, _, Some(ac)) => decode_ac_refine(
                                    &mut bits,
                                    ac,
                                    &mut self.eobrun,
                                    block,
                                    ss,
                                    se,
                                    al,
                                )?,
                                _ => return Err("missing Huffman table".into()),
                            }
                        }
                    }
                }
                if bits.overrun {
                    return Err("truncated or corrupt entropy-coded data".into());
                }
            }
            self.pos = bits.pos;
            self.scans += 1;
            Ok(())
        }

        /// IDCT, upsampling and colour conversion into RGB.
        fn output(mut self) -> Result<RgbImage> {
            let mut frame = self.frame.take().ok_or("no frame header")?;
            let (w, h) = (frame.width, frame.height);
            // IDCT each component into a plane of its own blocks, freeing coefficients as we go.
            let mut planes = Vec::with_capacity(frame.comps.len());
            for c in &mut frame.comps {
                let quant = c.quant.ok_or("a component has no scan")?;
                if c.plane.is_empty() {
                    let stride = c.wib * 8;
                    let mut plane = vec![0u8; stride * c.hib * 8];
                    for (by, band) in plane.chunks_exact_mut(8 * stride).enumerate() {
                        let row = &c.coefs[by * c.bw * 64..(by * c.bw + c.wib) * 64];
                        for (bx, block) in row.chunks_exact(64).enumerate() {
                            idct_islow(block, &quant, &mut band[bx * 8..], stride);
                        }
                    }
                    c.plane = plane;
                }
                c.coefs = Vec::new();
                planes.push(std::mem::take(&mut c.plane));
            }
            let ups: Vec<Upsampler> = frame
                .comps
                .iter()
                .zip(&planes)
                .map(|(c, p)| Upsampler::new(p, c, frame.max_h, frame.max_v, w))
                .collect::<Result<_>>()?;
            let kind = match frame.comps.len() {
                1 => ColorKind::Gray,
                3 => {
                    let ids = (frame.comps[0].id, frame.comps[1].id, frame.comps[2].id);
                    // libjpeg's default_decompress_parms.
                    let is_rgb = if self.saw_jfif {
                        false
                    } else if let Some(t) = self.adobe_transform {
                        t == 0
                    } else {
                        ids == (82, 71, 66)
                    };
                    if is_rgb {
                        ColorKind::Rgb
                    } else {
                        ColorKind::Ycc
                    }
                }
                4 if matches!(self.adobe_transform, Some(t) if t != 0) => ColorKind::Ycck,
                4 => ColorKind::Cmyk,
                n => return Err(format!("{n}-component JPEG is not supported")),
            };
            let t = YccTables::new();
            let mut rgb = vec![0u8; w * h * 3];
            let mut bufs: Vec<(Vec<u8>, Vec<u16>)> = ups
                .iter()
                .map(|u| (vec![0u8; u.buf_len()], vec![0u16; u.dw + 2]))
                .collect();
            for (y, out) in rgb.chunks_exact_mut(w * 3).enumerate() {
                let mut rows: [&[u8]; 4] = [&[]; 4];
                for ((u, buf), r) in ups.iter().zip(bufs.iter_mut()).zip(rows.iter_mut()) {
                    *r = u.row(y, &mut buf.0, &mut buf.1);
                }
                match kind {
                    ColorKind::Gray => {
                        for (o, &v) in out.chunks_exact_mut(3).zip(rows[0]) {
                            o.fill(v);
                        }
                    }
                    ColorKind::Rgb => {
                        for (((o, &r), &g), &b) in out
                            .chunks_exact_mut(3)
                            .zip(rows[0])
                            .zip(rows[1])
                            .zip(rows[2])
                        {
                            o.copy_from_slice(&[r, g, b]);
                        }
                    }
                    ColorKind::Ycc => {
                        for (((o, &y), &cb), &cr) in out
                            .chunks_exact_mut(3)
                            .zip(rows[0])
                            .zip(rows[1])
                            .zip(rows[2])
                        {
                            o.copy_from_slice(&t.rgb(y, cb, cr));
                        }
                    }
                    ColorKind::Cmyk | ColorKind::Ycck => {
                        let it = out
                            .chunks_exact_mut(3)
                            .zip(rows[0])
                            .zip(rows[1])
                            .zip(rows[2])
                            .zip(rows[3]);
                        for ((((o, &c0), &c1), &c2), &k) in it {
                            let cmy = if matches!(kind, ColorKind::Ycck) {
                                // ycck_cmyk_convert
                                let [r, g, b] = t.rgb(c0, c1, c2);
                                [255 - r, 255 - g, 255 - b]
                            } else {
                                [c0, c1, c2]
                            };
                            // Pillow reads libjpeg's CMYK as "CMYK;I" (inverted) and converts
                            // with cmyk2rgb; that equals round(c·k/255) of libjpeg's values.
                            for (oc, &c) in o.iter_mut().zip(&cmy) {
                                let t = u32::from(c) * u32::from(k) + 128;
                                *oc = (((t >> 8) + t) >> 8) as u8;
                            }
                        }
                    }
                }
            }
            RgbImage::from_raw(w as u32, h as u32, rgb).ok_or_else(|| "buffer size".to_string())
        }
    }

    #[derive(Clone, Copy)]
    enum ColorKind {
        Gray,
        Rgb,
        Ycc,
        Cmyk,
        Ycck,
    }

    #[derive(Clone, Copy)]
    enum ScanKind {
        Sequential,
        DcFirst,
        DcRefine,
        AcFirst,
        AcRefine,
    }

    fn decode_sequential(
        bits: &mut Bits,
        dc: &Huffman,
        ac: &Huffman,
        pred: &mut i32,
        block: &mut [i16],
    ) -> Result<()> {
        let s = u32::from(bits.decode(dc)?);
        if s > 15 {
            return Err("bad DC coefficient".into());
        }
        *pred = pred.wrapping_add(bits.receive_extend(s));
        block[0] = *pred as i16;
        let mut k = 1;
        while k < 64 {
            let rs = bits.decode(ac)?;
            let (r, s) = (usize::from(rs >> 4), u32::from(rs & 15));
            if s != 0 {
                k += r;
                block[NATURAL_ORDER[k]] = bits.receive_extend(s) as i16;
            } else if r == 15 {
                k += 15;
            } else {
                break;
            }
            k += 1;
        }
        Ok(())
    }

    fn decode_ac_first(
        bits: &mut Bits,
        ac: &Huffman,
        eobrun: &mut u32,
        block: &mut [i16],
        ss: usize,
        se: usize,
        al: u32,
    ) -> Result<()> {
        if *eobrun > 0 {
            *eobrun -= 1;
            return Ok(());
        }
        let mut k = ss;
        while k <= se {
            let rs = bits.decode(ac)?;
            let (r, s) = (u32::from(rs >> 4), u32::from(rs & 15));
            if s != 0 {
                k += r as usize;
                block[NATURAL_ORDER[k]] = (bits.receive_extend(s) << al) as i16;
            } else if r == 15 {
                k += 15;
            } else {
                *eobrun = 1 << r;
                if r != 0 {
                    *eobrun += bits.bits(r);
                }
                *eobrun -= 1;
                break;
            }
            k += 1;
        }
        Ok(())
    }

    /// libjpeg's `decode_mcu_AC_refine`.
    fn decode_ac_refine(
        bits: &mut Bits,
        ac: &Huffman,
        eobrun: &mut u32,
        block: &mut [i16],
        ss: usize,
        se: usize,
        al: u32,
    ) -> Result<()> {
        let p1: i16 = (1i32 << al) as i16;
        let m1: i16 = (-1i32 << al) as i16;
        let mut k = ss;
        let refine = |bits: &mut Bits, coef: &mut i16| {
            if bits.bit() && (*coef & p1) == 0 {
                *coef = if *coef >= 0 {
                    coef.wrapping_add(p1)
                } else {
                    coef.wrapping_add(m1)
                };
            }
        };
        if *eobrun == 0 {
            while k <= se {
                let rs = bits.decode(ac)?;
                let (mut r, s) = (i32::from(rs >> 4), u32::from(rs & 15));
                let mut value: i16 = 0;
                if s != 0 {
                    if s != 1 {
                        return Err("bad refinement coefficient".into());
                    }
                    value = if bits.bit() { p1 } else { m1 };
                } else if r != 15 {
                    *eobrun = 1 << r;
                    if r != 0 {
                        *eobrun += bits.bits(r as u32);
                    }
                    break;
                }
                while k <= se {
                    let coef = &mut block[NATURAL_ORDER[k]];
                    if *coef != 0 {
                        refine(bits, coef);
                    } else {
                        r -= 1;
                        if r < 0 {
                            break;
                        }
                    }
                    k += 1;
                }
                if value != 0 {
                    if k > se {
                        return Err("bad refinement run".into());
                    }
                    block[NATURAL_ORDER[k]] = value;
                }
                k += 1;
            }
        }
        if *eobrun > 0 {
            while k <= se {
                let coef = &mut block[NATURAL_ORDER[k]];
                if *coef != 0 {
                    refine(bits, coef);
                }
                k += 1;
            }
            *eobrun -= 1;
        }
        Ok(())
    }

    const CONST_BITS: u32 = 13;
    const PASS1_BITS: u32 = 2;
    const FIX_0_298631336: i64 = 2446;
    const FIX_0_390180644: i64 = 3196;
    const FIX_0_541196100: i64 = 4433;
    const FIX_0_765366865: i64 = 6270;
    const FIX_0_899976223: i64 = 7373;
    const FIX_1_175875602: i64 = 9633;
    const FIX_1_501321110: i64 = 12299;
    const FIX_1_847759065: i64 = 15137;
    const FIX_1_961570560: i64 = 16069;
    const FIX_2_053119869: i64 = 16819;
    const FIX_2_562915447: i64 = 20995;
    const FIX_3_072711026: i64 = 25172;

    #[inline]
    fn descale(x: i64, n: u32) -> i64 {
        (x + (1 << (n - 1))) >> n
    }

    /// libjpeg's post-IDCT range limit: `range_limit[x & 1023]`.
    #[inline]
    fn range_limit(x: i64) -> u8 {
        let v = (x as i32 & 1023) as usize;
        match v {
            0..=127 => (v + 128) as u8,
            128..=511 => 255,
            512..=895 => 0,
            _ => (v - 896) as u8,
        }
    }

    /// The odd part shared by both passes of `jpeg_idct_islow`.
    #[inline(always)]
    fn odd_part(t0: i64, t1: i64, t2: i64, t3: i64) -> (i64, i64, i64, i64) {
        let z4 = t1 + t3;
        let z3 = t0 + t2;
        let z2 = t1 + t2;
        let z1 = t0 + t3;
        let z5 = (z3 + z4) * FIX_1_175875602;
        let t3 = t3 * FIX_1_501321110;
        let t2 = t2 * FIX_3_072711026;
        let t1 = t1 * FIX_2_053119869;
        let t0 = t0 * FIX_0_298631336;
        let z4 = z4 * -FIX_0_390180644 + z5;
        let z3 = z3 * -FIX_1_961570560 + z5;
        let z1 = z1 * -FIX_0_899976223;
        let z2 = z2 * -FIX_2_562915447;
        (t0 + z1 + z3, t1 + z2 + z4, t2 + z2 + z3, t3 + z1 + z4)
    }

    /// `jpeg_idct_islow` (libjpeg-turbo `jidctint.c`): dequantize, 8×8 integer IDCT, range limit.
    /// 64-bit intermediates like C's `JLONG`; the all-zero-AC shortcuts give the same numbers as
    /// the full computation.
    fn idct_islow(coef: &[i16], quant: &[u16; 64], out: &mut [u8], stride: usize) {
        let Ok(coef) = <&[i16; 64]>::try_from(coef) else {
            return;
        };
        let mut ws = [0i64; 64];
        for col in 0..8 {
            let mut dq = [0i64; 8];
            for (r, d) in dq.iter_mut().enumerate() {
                *d = i64::from(coef[r * 8 + col]) * i64::from(quant[r * 8 + col]);
            }
            if dq[1..].iter().all(|&x| x == 0) {
                let dc = i64::from((dq[0] << PASS1_BITS) as i32);
                for r in 0..8 {
                    ws[r * 8 + col] = dc;
                }
                continue;
            }
            let z1 = (dq[2] + dq[6]) * FIX_0_541196100;
            let tmp2 = z1 + dq[6] * -FIX_1_847759065;
            let tmp3 = z1 + dq[2] * FIX_0_765366865;
            let tmp0 = (dq[0] + dq[4]) << CONST_BITS;
            let tmp1 = (dq[0] - dq[4]) << CONST_BITS;
            let (tmp10, tmp13, tmp11, tmp12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
            let (t0, t1, t2, t3) = odd_part(dq[7], dq[5], dq[3], dq[1]);
            let n = CONST_BITS - PASS1_BITS;
            // The workspace is C `int`.
            let d = |x: i64| i64::from(descale(x, n) as i32);
            ws[col] = d(tmp10 + t3);
            ws[8 + col] = d(tmp11 + t2);
            ws[16 + col] = d(tmp12 + t1);
            ws[24 + col] = d(tmp13 + t0);
            ws[32 + col] = d(tmp13 - t0);
            ws[40 + col] = d(tmp12 - t1);
            ws[48 + col] = d(tmp11 - t2);
            ws[56 + col] = d(tmp10 - t3);
        }
        let n = CONST_BITS + PASS1_BITS + 3;
        for (row, w) in ws.chunks_exact(8).enumerate() {
            let Some(o) = out.get_mut(row * stride..row * stride + 8) else {
                return;
            };
            if w[1..].iter().all(|&x| x == 0) {
                o.fill(range_limit(descale(w[0], PASS1_BITS + 3)));
                continue;
            }
            let z1 = (w[2] + w[6]) * FIX_0_541196100;
            let tmp0 = (w[0] + w[4]) << CONST_BITS;
            let tmp3 = z1 + w[2] * FIX_0_765366865;
            let tmp1 = (w[0] - w[4]) << CONST_BITS;
            let tmp2 = z1 + w[6] * -FIX_1_847759065;
            let (tmp10, tmp13, tmp11, tmp12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
            let (t0, t1, t2, t3) = odd_part(w[7], w[5], w[3], w[1]);
            o[0] = range_limit(descale(tmp10 + t3, n));
            o[7] = range_limit(descale(tmp10 - t3, n));
            o[1] = range_limit(descale(tmp11 + t2, n));
            o[6] = range_limit(descale(tmp11 - t2, n));
            o[2] = range_limit(descale(tmp12 + t1, n));
            o[5] = range_limit(descale(tmp12 - t1, n));
            o[3] = range_limit(descale(tmp13 + t0, n));
            o[4] = range_limit(descale(tmp13 - t0, n));
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum UpsampleKind {
        FullSize,
        H2V1Fancy,
        H1V2Fancy,
        H2V2Fancy,
        /// Replication: h2v1/h2v2 on components ≤ 2 samples wide, and libjpeg's `int_upsample`.
        Box {
            he: usize,
            ve: usize,
        },
    }

    /// One component's samples, upsampled a row at a time as libjpeg's `jdsample.c` does (rows and
    /// columns past the component's own size repeat its last one, as `jdmainct.c` arranges).
    struct Upsampler<'p> {
        plane: &'p [u8],
        stride: usize,
        dw: usize,
        dh: usize,
        w: usize,
        kind: UpsampleKind,
    }

    impl<'p> Upsampler<'p> {
        fn new(
            plane: &'p [u8],
            c: &Component,
            max_h: usize,
            max_v: usize,
            w: usize,
        ) -> Result<Self> {
            let (h2, v2) = (c.h * 2 == max_h, c.v * 2 == max_v);
            let (hs, vs) = (c.h == max_h, c.v == max_v);
            // jinit_upsampler's selection, with do_fancy_upsampling on.
            let kind = if hs && vs {
                UpsampleKind::FullSize
            } else if h2 && vs && c.dw > 2 {
                UpsampleKind::H2V1Fancy
            } else if hs && v2 {
                UpsampleKind::H1V2Fancy
            } else if h2 && v2 && c.dw > 2 {
                UpsampleKind::H2V2Fancy
            } else if max_h % c.h == 0 && max_v % c.v == 0 {
                UpsampleKind::Box {
                    he: max_h / c.h,
                    ve: max_v / c.v,
                }
            } else {
                return Err("fractional sampling ratios are not supported".into());
            };
            Ok(Self {
                plane,
                stride: c.wib * 8,
                dw: c.dw,
                dh: c.dh,
                w,
                kind,
            })
        }

        fn buf_len(&self) -> usize {
            match self.kind {
                UpsampleKind::FullSize => 0,
                UpsampleKind::H2V1Fancy | UpsampleKind::H2V2Fancy => 2 * self.dw,
                _ => self.w,
            }
        }

        fn in_row(&self, i: usize) -> &'p [u8] {
            let i = i.min(self.dh - 1);
            &self.plane[i * self.stride..i * self.stride + self.dw]
        }

        /// Output row `y`, `w` samples (borrowed from the plane or written into `buf`);
        /// `ext` is scratch of `dw + 2` entries.
        fn row<'a>(&'a self, y: usize, buf: &'a mut [u8], ext: &mut [u16]) -> &'a [u8] {
            let (w, dw) = (self.w, self.dw);
            // The fancy filters on a row padded with a copy of its first and last sample: the
            // edge outputs then come out as libjpeg's special cases compute them.
            let pad = |ext: &mut [u16]| {
                ext[0] = ext[1];
                ext[dw + 1] = ext[dw];
            };
            match self.kind {
                UpsampleKind::FullSize => &self.in_row(y)[..w],
                UpsampleKind::H2V1Fancy => {
                    for (e, &v) in ext[1..=dw].iter_mut().zip(self.in_row(y)) {
                        *e = u16::from(v);
                    }
                    pad(ext);
                    for (o, t) in buf[..2 * dw].chunks_exact_mut(2).zip(ext.windows(3)) {
                        let v = 3 * t[1];
                        o[0] = ((v + t[0] + 1) >> 2) as u8;
                        o[1] = ((v + t[2] + 2) >> 2) as u8;
                    }
                    &buf[..w]
                }
                UpsampleKind::H1V2Fancy => {
                    let i = y / 2;
                    let (near, (far, bias)) = (
                        self.in_row(i),
                        if y % 2 == 0 {
                            (self.in_row(i.saturating_sub(1)), 1)
                        } else {
                            (self.in_row(i + 1), 2)
                        },
                    );
                    for ((o, &a), &b) in buf[..w].iter_mut().zip(near).zip(far) {
                        *o = ((3 * u16::from(a) + u16::from(b) + bias) >> 2) as u8;
                    }
                    &buf[..w]
                }
                UpsampleKind::H2V2Fancy => {
                    let i = y / 2;
                    let near = self.in_row(i);
                    let far = if y % 2 == 0 {
                        self.in_row(i.saturating_sub(1))
                    } else {
                        self.in_row(i + 1)
                    };
                    // Column sums 3·near + far (≤ 1020), then the horizontal triangle filter.
                    for ((e, &a), &b) in ext[1..=dw].iter_mut().zip(near).zip(far) {
                        *e = 3 * u16::from(a) + u16::from(b);
                    }
                    pad(ext);
                    for (o, t) in buf[..2 * dw].chunks_exact_mut(2).zip(ext.windows(3)) {
                        let v = 3 * t[1];
                        o[0] = ((v + t[0] + 8) >> 4) as u8;
                        o[1] = ((v + t[2] + 7) >> 4) as u8;
                    }
                    &buf[..w]
                }
                UpsampleKind::Box { he, ve } => {
                    let s = self.in_row(y / ve);
                    for (x, o) in buf[..w].iter_mut().enumerate() {
                        *o = s[x / he];
                    }
                    &buf[..w]
                }
            }
        }
    }

    /// `build_ycc_rgb_table` of `jdcolor.c`.
    struct YccTables {
        cr_r: [i32; 256],
        cb_b: [i32; 256],
        cr_g: [i64; 256],
        cb_g: [i64; 256],
    }

    impl YccTables {
        fn new() -> Self {
            const SCALEBITS: u32 = 16;
            const ONE_HALF: i64 = 1 << (SCALEBITS - 1);
            let fix = |x: f64| (x * f64::from(1u32 << SCALEBITS) + 0.5) as i64;
            let mut t = Self {
                cr_r: [0; 256],
                cb_b: [0; 256],
                cr_g: [0; 256],
                cb_g: [0; 256],
            };
            for i in 0..256usize {
                let x = i as i64 - 128;
                t.cr_r[i] = ((fix(1.40200) * x + ONE_HALF) >> SCALEBITS) as i32;
                t.cb_b[i] = ((fix(1.77200) * x + ONE_HALF) >> SCALEBITS) as i32;
                t.cr_g[i] = -fix(0.71414) * x;
                t.cb_g[i] = -fix(0.34414) * x + ONE_HALF;
            }
            t
        }

        #[inline]
        fn rgb(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
            let (y, cb, cr) = (i32::from(y), usize::from(cb), usize::from(cr));
            let g = ((self.cb_g[cb] + self.cr_g[cr]) >> 16) as i32;
            [
                (y + self.cr_r[cr]).clamp(0, 255) as u8,
                (y + g).clamp(0, 255) as u8,
                (y + self.cb_b[cb]).clamp(0, 255) as u8,
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    // Expected values below were computed with Pillow 13 (libjpeg-turbo) + numpy, replicating
    // transformers' CLIPImageProcessor (PIL backend) step by step; the same emulation reproduces
    // the project's reference pixel files exactly.

    fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
        bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    fn fnv_f32(v: &[f32]) -> u64 {
        fnv(v.iter().flat_map(|x| x.to_le_bytes()))
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `(x·37 + y·91 + c·53 + x·y·13) mod 256`: not smooth, so clipping and rounding show.
    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = |c: u32| ((x * 37 + y * 91 + c * 53 + x * y * 13) % 256) as u8;
            image::Rgb([v(0), v(1), v(2)])
        })
    }

    #[test]
    fn resampling_matches_pillow() {
        let src = pattern(9, 7);
        let expect_4x3: [u8; 36] = [
            103, 133, 148, 139, 144, 150, 140, 143, 139, 130, 123, 107, 128, 152, 120, 148, 127,
            123, 137, 110, 149, 124, 121, 146, 103, 166, 152, 142, 112, 167, 137, 125, 134, 151,
            120, 139,
        ];
        let full = |w: usize, h: usize, f: Resample| {
            resample_window(&src, h as u64, w as u64, 0, h, 0, w, f)
        };
        assert_eq!(full(4, 3, Resample::Bicubic), expect_4x3);
        // (width, height, PIL filter code, FNV-1a of Image.resize's bytes)
        let cases: [(usize, usize, i64, u64); 9] = [
            (4, 3, 3, 0x77ec90e413fda7a1),
            (13, 11, 3, 0xdf30efb599b389af),
            (5, 20, 3, 0x9d038b83603268d5),
            (6, 5, 2, 0x07248a3b6a44c815),
            (6, 5, 1, 0xa12479413a7d76ea),
            (6, 5, 4, 0x83a6c8eed8b05adb),
            (6, 5, 5, 0x22381416a4cdde82),
            (40, 3, 3, 0xf23207b7d34a61ac),
            (3, 40, 1, 0xae2827dd4b281d83),
        ];
        for (w, h, code, expected) in cases {
            let filter = Resample::from_pil(code).unwrap();
            assert_eq!(fnv(full(w, h, filter)), expected, "{w}x{h} filter {code}");
        }
    }

    #[test]
    fn same_size_is_identity() {
        let src = pattern(9, 7);
        assert_eq!(
            resample_window(&src, 7, 9, 0, 7, 0, 9, Resample::Bicubic),
            src.as_raw().as_slice()
        );
    }

    #[test]
    fn pipeline_matches_transformers() {
        let clip = PreprocessConfig::clip_default(224);
        let mut pad = clip.clone();
        (
            pad.do_resize,
            pad.crop_height,
            pad.crop_width,
            pad.do_normalize,
        ) = (false, 5, 12, false);
        let mut exact = clip.clone();
        exact.size = ResizeTarget::Exact {
            height: 30,
            width: 20,
        };
        exact.do_center_crop = false;
        exact.resample = Resample::Bilinear;
        (exact.image_mean, exact.image_std) = ([0.5; 3], [0.5; 3]);
        let mut capped = clip.clone();
        capped.size = ResizeTarget::ShortestEdge {
            shortest_edge: 20,
            longest_edge: Some(30),
        };
        (capped.crop_height, capped.crop_width, capped.do_rescale) = (16, 16, false);
        // (image size, config, tensor (h, w), FNV-1a of transformers' float32 bytes, first value)
        let cases = [
            (
                (20, 13),
                clip.clone(),
                (224, 224),
                0x2baa06e7133b9b1e_u64,
                -0.39081356_f32,
            ),
            (
                (300, 100),
                clip.clone(),
                (224, 224),
                0xb62448d9d3ca5054,
                -0.42001042,
            ),
            (
                (37, 300),
                clip.clone(),
                (224, 224),
                0x94b950a7f42f1f3d,
                0.54348576,
            ),
            // Shrunk portrait taller than 2:1: Pillow 13 runs the vertical pass first.
            (
                (300, 700),
                clip.clone(),
                (224, 224),
                0x4dae6bf0888ea677,
                -0.60978997,
            ),
            (
                (1170, 2532),
                clip.clone(),
                (224, 224),
                0x59050ae2a0e12149,
                0.12013142,
            ),
            (
                (50, 41),
                PreprocessConfig::clip_default(32),
                (32, 32),
                0x23a2f50d977913da,
                0.0033439053,
            ),
            ((9, 7), pad, (5, 12), 0x3c3aa79228e866c9, 0.0),
            ((50, 40), exact, (30, 20), 0xf3a71815c9fffdc3, -0.46666664),
            ((100, 40), capped, (16, 16), 0x078515e00480216a, -1.7922626),
        ];
        for ((w, h), cfg, size, expected, first) in cases {
            assert_eq!(cfg.output_size(), size);
            let px = preprocess_rgb(&pattern(w, h), &cfg);
            assert_eq!(px.len(), 3 * size.0 as usize * size.1 as usize);
            assert_eq!(px[0], first, "{w}x{h}");
            assert_eq!(fnv_f32(&px), expected, "{w}x{h} {cfg:?}");
        }
    }

    #[test]
    fn resize_sizes_follow_transformers() {
        let clip = PreprocessConfig::clip_default(224);
        assert_eq!(clip.resized_size(300, 451), (224, 336));
        assert_eq!(clip.resized_size(427, 640), (224, 335));
        assert_eq!(clip.resized_size(700, 100), (1568, 224));
        assert_eq!(clip.resized_size(224, 224), (224, 224));
        assert_eq!(clip.resized_size(1, 100_000), (224, 22_400_000));
        assert_eq!(crop_axis(335, 224), (55, 0, 224));
        assert_eq!(crop_axis(7, 12), (0, 3, 7));
        assert_eq!(crop_axis(8, 12), (0, 2, 8));
    }

    #[test]
    fn extreme_aspect_ratio_stays_cheap() {
        // 22 400 000 × 224 after resize: only the crop window is computed.
        let img = pattern(100_000, 1);
        let px = preprocess_rgb(&img, &PreprocessConfig::clip_default(224));
        assert_eq!(px.len(), 3 * 224 * 224);
        assert!(px.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn composite_over_white_matches_pillow() {
        // Image.alpha_composite(white, (v, v, v, a)), all 65 536 pixels, alpha-major.
        let table = (0..=255u8).flat_map(|a| (0..=255u8).map(move |v| over_white(v, a)));
        assert_eq!(fnv(table), 0x5546cee15493f6a7);
    }

    #[test]
    fn normalization_is_float32_like_numpy() {
        let lut = PreprocessConfig::clip_default(224).lookup_tables();
        assert_eq!(lut[0][0], (0.0f32 - 0.48145466f32) / 0.26862954f32);
        let x255 = (255.0f64 * (1.0 / 255.0)) as f32;
        assert_eq!(
            lut[2][255],
            (x255 - 0.40821073f64 as f32) / (0.27577711f64 as f32)
        );
    }

    #[test]
    fn jpeg_decoder_matches_libjpeg_turbo() {
        // (file, width, height, FNV-1a of PIL's RGB)
        let cases = [
            (JPEG_PROGRESSIVE_420, 23, 17, 0x24988efe05a55eb0_u64),
            (JPEG_RESTART_422, 19, 13, 0x2d625f6500eea1f2),
            (JPEG_CMYK, 11, 7, 0x56dc70391a2b05b1),
            (JPEG_GRAY_PROGRESSIVE, 13, 9, 0xa613764a5bb62f4f),
        ];
        for (file, w, h, expected) in cases {
            let bytes = hex(file);
            // Our decoder, not the fallback.
            let direct = pil_jpeg::decode(&bytes, MAX_DECODE_BYTES).unwrap();
            let decoded = decode_rgb(&bytes, true).unwrap();
            assert_eq!(decoded.rgb, direct);
            assert_eq!(decoded.format, ImageFormat::Jpeg);
            assert_eq!(decoded.rgb.dimensions(), (w, h));
            assert_eq!(fnv(decoded.rgb.into_raw()), expected);
        }
    }

    #[test]
    fn png_modes_convert_like_pil() {
        let pattern_4x3: Vec<u8> = pattern(4, 3).into_raw();
        let cases: [(&str, Vec<u8>); 6] = [
            // Mode RGB with a tRNS colour: transformers passes it through untouched.
            (PNG_RGB_TRNS, pattern_4x3),
            // Mode L with tRNS: the transparent value becomes white.
            (
                PNG_GRAY_TRNS,
                vec![
                    0, 0, 0, 37, 37, 37, 74, 74, 74, 111, 111, 111, 91, 91, 91, 141, 141, 141, 191,
                    191, 191, 241, 241, 241, 182, 182, 182, 255, 255, 255, 52, 52, 52, 115, 115,
                    115,
                ],
            ),
            (
                PNG_GRAY_ALPHA,
                vec![
                    202, 202, 202, 178, 178, 178, 165, 165, 165, 162, 162, 162, 162, 162, 162, 168,
                    168, 168, 194, 194, 194, 253, 253, 253, 188, 188, 188, 253, 253, 253, 171, 171,
                    171, 163, 163, 163,
                ],
            ),
            // 16-bit RGB: Pillow keeps the high byte.
            (
                PNG_RGB16,
                vec![
                    0, 53, 106, 37, 90, 143, 74, 127, 180, 111, 164, 217, 91, 144, 197, 141, 194,
                    248, 191, 245, 41, 242, 38, 91, 182, 236, 32, 246, 42, 95, 52, 105, 158, 115,
                    168, 221,
                ],
            ),
            // 16-bit gray: the high byte too (Pillow would clip to 255: a deliberate difference).
            (
                PNG_GRAY16,
                vec![
                    0, 0, 0, 37, 37, 37, 74, 74, 74, 111, 111, 111, 91, 91, 91, 141, 141, 141, 191,
                    191, 191, 242, 242, 242, 182, 182, 182, 246, 246, 246, 52, 52, 52, 115, 115,
                    115,
                ],
            ),
            // Palette with per-entry alpha (tRNS).
            (
                PNG_PALETTE_TRNS,
                vec![
                    0, 1, 2, 255, 255, 255, 130, 131, 131, 248, 248, 248, 12, 13, 14, 15, 16, 17,
                    18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
                ],
            ),
        ];
        for (file, expected) in cases {
            let decoded = decode_rgb(&hex(file), true).unwrap();
            assert_eq!(decoded.format, ImageFormat::Png);
            assert_eq!(decoded.rgb.into_raw(), expected);
        }
    }

    /// A JPEG of `img`, with an EXIF APP1 segment carrying `orientation` when given.
    fn jpeg_with_orientation(img: &RgbImage, orientation: Option<u16>) -> Vec<u8> {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
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

    #[test]
    fn exif_orientation_6_rotates_clockwise() {
        let img = pattern(16, 8);
        let plain = decode_rgb(&jpeg_with_orientation(&img, None), true).unwrap();
        let tagged_bytes = jpeg_with_orientation(&img, Some(6));
        let tagged = decode_rgb(&tagged_bytes, true).unwrap();
        assert_eq!(plain.orientation, Orientation::NoTransforms);
        assert_eq!(tagged.orientation, Orientation::Rotate90);
        assert_eq!((tagged.original_width, tagged.original_height), (8, 16));
        assert_eq!(tagged.rgb, image::imageops::rotate90(&plain.rgb));
        // Turned off: the stored pixels, as transformers sees them.
        let raw = decode_rgb(&tagged_bytes, false).unwrap();
        assert_eq!(raw.orientation, Orientation::NoTransforms);
        assert_eq!(raw.rgb, plain.rgb);
    }

    #[test]
    fn truncated_jpeg_returns_quickly() {
        let img = pattern(512, 384);
        let full = jpeg_with_orientation(&img, None);
        let start = Instant::now();
        let half = decode_rgb(&full[..full.len() / 2], true);
        assert!(half.is_ok() || half.is_err());
        // Every prefix of a progressive file: an error or an image, never a panic or a hang.
        let progressive = hex(JPEG_PROGRESSIVE_420);
        for n in 0..progressive.len() {
            let _ = pil_jpeg::decode(&progressive[..n], MAX_DECODE_BYTES);
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
        for file in [
            JPEG_PROGRESSIVE_420,
            JPEG_RESTART_422,
            JPEG_CMYK,
            JPEG_GRAY_PROGRESSIVE,
        ] {
            let original = hex(file);
            for _ in 0..300 {
                let mut bytes = original.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] = next() as u8;
                }
                let _ = pil_jpeg::decode(&bytes, MAX_DECODE_BYTES);
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

    fn bmp_header(width: i32, height: i32) -> Vec<u8> {
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

    #[test]
    fn huge_images_are_refused_before_decoding() {
        let one = decode_rgb(&bmp_header(1, 1), true);
        assert!(one.is_ok(), "{one:?}");
        // The BMP decoder refuses sides over 65 535 itself (a decode error).
        assert!(decode_rgb(&bmp_header(200_000, 1), true).is_err());
        for (w, h) in [(20_000, 20_000), (60_000, 2_000), (2_000, -60_000)] {
            match decode_rgb(&bmp_header(w, h), true) {
                Err(PreprocessError::TooLarge { reason }) => assert!(!reason.is_empty()),
                other => panic!("{w}x{h}: expected TooLarge, got {other:?}"),
            }
        }
    }

    #[test]
    fn sniffing_recognises_images_by_content() {
        assert_eq!(sniff_image_format(&hex(JPEG_CMYK)), Some(ImageFormat::Jpeg));
        assert_eq!(sniff_image_format(&hex(PNG_RGB16)), Some(ImageFormat::Png));
        assert_eq!(sniff_image_format(b"GIF89a\x01\0"), Some(ImageFormat::Gif));
        assert_eq!(
            sniff_image_format(b"RIFF\x10\0\0\0WEBPVP8 "),
            Some(ImageFormat::WebP)
        );
        assert_eq!(
            sniff_image_format(b"II*\0\x08\0\0\0"),
            Some(ImageFormat::Tiff)
        );
        assert_eq!(
            sniff_image_format(&bmp_header(2, 2)),
            Some(ImageFormat::Bmp)
        );
        assert_eq!(sniff_image_format(b"BMW service notes, 2024\n"), None);
        assert_eq!(sniff_image_format(b"P6\n1 1\n255\n"), None); // PNM: not decoded here
        assert_eq!(sniff_image_format(b"hello"), None);
        assert_eq!(sniff_image_format(b""), None);
        assert!(matches!(
            decode_rgb(b"not an image", true),
            Err(PreprocessError::UnknownFormat)
        ));
    }

    const HF_CONFIG: &str = r#"{
        "crop_size": {"height": 224, "width": 224}, "do_center_crop": true,
        "do_convert_rgb": true, "do_normalize": true, "do_rescale": true, "do_resize": true,
        "image_processor_type": "CLIPImageProcessor",
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 224}}"#;

    /// openai/clip-vit-large-patch14's file: ints for size and crop_size, no rescale keys.
    const OPENAI_CONFIG: &str = r#"{
        "crop_size": 224, "do_center_crop": true, "do_normalize": true, "do_resize": true,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}"#;

    #[test]
    fn config_files_parse_to_clip_defaults() {
        let clip = PreprocessConfig::clip_default(224);
        assert_eq!(PreprocessConfig::from_json(HF_CONFIG, 224).unwrap(), clip);
        assert_eq!(
            PreprocessConfig::from_json(OPENAI_CONFIG, 224).unwrap(),
            clip
        );
        // Missing keys take the defaults for the model's size.
        let c336 = PreprocessConfig::from_json("{}", 336).unwrap();
        assert_eq!(c336, PreprocessConfig::clip_default(336));
        assert_eq!(c336.output_size(), (336, 336));
    }

    #[test]
    fn config_variants_and_errors() {
        let parse = |s: &str| PreprocessConfig::from_json(s, 224);
        let exact =
            parse(r#"{"size": {"height": 256, "width": 192}, "do_center_crop": false}"#).unwrap();
        assert_eq!(exact.output_size(), (256, 192));
        let listed =
            parse(r#"{"size": [256, 192], "crop_size": [200, 100], "resample": 2}"#).unwrap();
        assert_eq!(
            listed.size,
            ResizeTarget::Exact {
                height: 256,
                width: 192
            }
        );
        assert_eq!(
            (listed.output_size(), listed.resample),
            ((200, 100), Resample::Bilinear)
        );
        let single = parse(r#"{"image_mean": 0.5, "image_std": 0.25}"#).unwrap();
        assert_eq!((single.image_mean, single.image_std), ([0.5; 3], [0.25; 3]));
        let longest = parse(r#"{"size": {"shortest_edge": 224, "longest_edge": 448}}"#).unwrap();
        // transformers: raw = 448·100/1000 = 44.8, round → 45 (short side), int(44.8·1000/100).
        assert_eq!(longest.resized_size(100, 1000), (45, 448));
        for bad in [
            "not json",
            r#"{"resample": 0}"#,
            r#"{"resample": 9}"#,
            r#"{"resample": "bicubic"}"#,
            r#"{"do_center_crop": false}"#,
            r#"{"do_resize": false, "do_center_crop": false}"#,
            r#"{"size": {"longest_edge": 224}}"#,
            r#"{"size": 0}"#,
            r#"{"crop_size": 100000}"#,
            r#"{"image_mean": [0.5, 0.5]}"#,
            r#"{"image_std": [0.5, 0.0, 0.5]}"#,
            r#"{"do_resize": "yes"}"#,
        ] {
            match parse(bad) {
                Err(PreprocessError::Config(reason)) => assert!(!reason.is_empty(), "{bad}"),
                other => panic!("{bad}: expected a Config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn from_model_dir_reads_the_file_when_present() {
        let dir = std::env::temp_dir().join(format!("imgvec-preprocess-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("preprocessor_config.json");
        let _ = std::fs::remove_file(&file);
        let absent = PreprocessConfig::from_model_dir(&dir, 336).unwrap();
        assert_eq!(absent, PreprocessConfig::clip_default(336));
        std::fs::write(&file, OPENAI_CONFIG).unwrap();
        let present = PreprocessConfig::from_model_dir(&dir, 336).unwrap();
        assert_eq!(present, PreprocessConfig::clip_default(224));
        std::fs::write(&file, r#"{"resample": 0}"#).unwrap();
        assert!(matches!(
            PreprocessConfig::from_model_dir(&dir, 224),
            Err(PreprocessError::Config(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn preprocess_bytes_reports_the_image() {
        let out = preprocess_bytes(
            &hex(JPEG_RESTART_422),
            &PreprocessConfig::clip_default(224),
            true,
        )
        .unwrap();
        assert_eq!(out.pixels.len(), 3 * 224 * 224);
        assert_eq!((out.original_width, out.original_height), (19, 13));
        assert_eq!(out.format, ImageFormat::Jpeg);
        let empty = RgbImage::new(0, 0);
        assert_eq!(
            preprocess_rgb(&empty, &PreprocessConfig::clip_default(8)).len(),
            3 * 64
        );
    }

    const JPEG_PROGRESSIVE_420: &str = concat!(
        "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b",
        "0b0c1912130f141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e3334",
        "32ffdb0043010909090c0b0c180d0d1832211c21323232323232323232323232323232323232323232323232",
        "3232323232323232323232323232323232323232323232323232ffc200110800110017030122000211010311",
        "01ffc400190001000301010000000000000000000000000203050106ffc40019010002030100000000000000",
        "0000000000000103040506ffda000c0301000210031000000192ae32c443d7f30494b4c73ba7ffc4001e1001",
        "0001020700000000000000000000000102002103040511123233ffda00080101000105026c31b2341778c2a5",
        "bc4c4eb98ad3bd7fffc4001e110002010305000000000000000000000000013102132104113271f0ffda0008",
        "010301013f01c46de82c5cca65526b39ae91ffc4001b11000300020300000000000000000000000001020422",
        "313334ffda0008010201013f01e49886b6460f9e0cfee67fffc4002210000103040007000000000000000000",
        "000100021112213171103251618391d1ffda0008010100063f028111ab7a541e4a81d2975ce94037ed74ca9b",
        "4c9c4e042970d1ea8f0f1fc5ffc4002110010001040105010100000000000000000111002131415161718191",
        "a1d1f0ffda0008010100013f21129dbc4e5f8ef7b736a171041ced27c69e602f170740863d2be1a24acd3547",
        "0674378c6e0a9aa23cee504f5bad09a24d8a0e4b3ebcd7d15b57f7ef4fffda000c030100020003000000100f",
        "f002ffc4001f110001030305000000000000000000000001003141112151718191f0f1ffda0008010301013f",
        "10b000224d8456ba2c5f2c84176f388684faee30bfffc4001d11000201040300000000000000000000000111",
        "210010618191a1f0ffda0008010201013f1021907139897c8cce09a7266e34bcdc9ae95b7fffc4001d100101",
        "01000202030000000000000000000111210031104171a1b1ffda0008010100013f10624102cb618ca3d9ec05",
        "b0997e8aec80da682c4b89c2500036a874d018a203d09c1dd15ec34a15b2e000d27841bdfa52176f686aaeb5",
        "cb548c17a69047157bc3af3ee3f0f1f57c387fffd9",
    );
    const JPEG_RESTART_422: &str = concat!(
        "ffd8ffe000104a46494600010100000100010000ffdb00430006040506050406060506070706080a100a0a09",
        "090a140e0f0c1017141818171416161a1d251f1a1b231c1616202c20232627292a29191f2d302d2830252829",
        "28ffdb0043010707070a080a130a0a13281a161a282828282828282828282828282828282828282828282828",
        "2828282828282828282828282828282828282828282828282828ffc0001108000d0013030121000211010311",
        "01ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303",
        "020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f024",
        "33627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a63646566",
        "6768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7",
        "b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffc400",
        "1f0100030101010101010101010000000000000102030405060708090a0bffc400b511000201020404030407",
        "05040400010277000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a",
        "162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a63646566676869",
        "6a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9",
        "bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffdd00040001ff",
        "da000c03010002110311003f009a7530dbb5bdb2dbadb2a85286d9842dc83830e0829cb13bb2ea149ddb95a3",
        "093d9c725b7f67ce0a69e9770dc98cee7f24012074ce3e601a372319f94af5aba909a49bbb95d3b3b6e9a96e",
        "b45a271f36de8a2925a53c349c5250b5d4ba75e56baede77ded1f8b593ffd0964827721eeaeb5b499802c961",
        "1010a71c2a807a81807dc1a2b9e59573be6fa94277fb4e7672f36b9377bbf337faca8fbb1af4e297474aed79",
        "37ec9ddad9bbbd7ab3ffd14d334efb58d18dbcef6cf7f24e21209616e60321ee72c0989481918c2ee2e1540a",
        "56535acf35915b3f2e19f5596c3ca59490a86131af27ae3cd6624f2c49c9e78ea85294a72717cb2d6ed75d25",
        "1efd1c6eb5d2ed6bb9cd0aaf18e507a5ed7eb7f7a295fd2fd2cbb24af7ffd2c6ff008498c2cf1487570f1b32",
        "31b6d56585188246ed983827a9e79249ef4529d1c0539384f0d0935a36e31bbf37eef53e8f0fc18f1b4a38a8",
        "e23954d295b976babdbe25b5edb23fffd9",
    );
    const JPEG_CMYK: &str = concat!(
        "ffd8ffee000e41646f626500640000000000ffdb004300030202030202030303030403030405080505040405",
        "0a070706080c0a0c0c0b0a0b0b0d0e12100d0e110e0b0b1016101113141515150c0f171816141812141514ff",
        "c00014080007000b044311004d11005911004b1100ffc4001f00000105010101010101000000000000000001",
        "02030405060708090a0bffc400b5100002010303020403050504040000017d01020300041105122131410613",
        "516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a",
        "434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a92939495",
        "969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3",
        "e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda000e0443004d0059004b00003f008bc24748bef87b7a742b5d",
        "36cf4bb2dda75e8d1ad1a0812096c21b8331b59302e229218a690c17124c5e16982b5a4a52176f8bb5db6d0a",
        "46d2b4ebed1534830da3c515ee9f20d36f64fb55bbc56e6c563746809d42d9c49329b88d560732caeb25b47d",
        "5dd681a84567a7d9788ee16eac350d861b1bc4416f6cf243690dbcb711420a45294ba8c192c044f01d415835",
        "d324c53f54e9b77fb3f2f8c6fef753d2fe2543e08b737335bc9a1695e1d96ead2dae2191a1b83048d7311f2d",
        "e58e49157cb408ae142a8502ba9b4f80df15efe132783b5bd07c3fa023bc31e91e20d56ee5bcb19518a5c40c",
        "f15b48aca932caa8c247251509663927c775bfdb81fe13de45e18d3b5cd4b59d3edad6de7b6bcbd8b64ed14f",
        "0a4e8b26de0b22ca10b00a18a960ab9da0afffd9",
    );
    const JPEG_GRAY_PROGRESSIVE: &str = concat!(
        "ffd8ffe000104a46494600010100000100010000ffdb0043000a07070807060a0808080b0a0a0b0e18100e0d",
        "0d0e1d15161118231f2524221f2221262b372f26293429212230413134393b3e3e3e252e4449433c48373d3e",
        "3bffc2000b080009000d01011100ffc400160001010100000000000000000000000000040102ffda00080101",
        "00000001aa16ff00ffc4001a100002020300000000000000000000000000010203212231ffda000801010001",
        "05027854ea43b41fffc4001e100001020701000000000000000000000000011102032141527191f0ffda0008",
        "010100063f026466d538449625fb114fffc40020100001030207000000000000000000000001002131b1f011",
        "4151618191a1ffda0008010100013f21062d8b987adc222616610098d47615355236ccafffda000801010000",
        "0010afffc4001a100101000301010000000000000000000001112131411061ffda0008010100013f10a22901",
        "a0b2618476dd06d443d66611eca7624f89e85fffd9",
    );
    const PNG_RGB_TRNS: &str = concat!(
        "89504e470d0a1a0a0000000d49484452000000040000000308020000003b9639910000000674524e5300bf00",
        "f400290c4edb340000003249444154789c012700d8ff0000356a255a8f4a7fb46fa4d9005b90c58dc2f7bff4",
        "29f1265b00b6eb20f52a5f34699e73a8dd56be12cd5f9c23570000000049454e44ae426082",
    );
    const PNG_GRAY_TRNS: &str = concat!(
        "89504e470d0a1a0a0000000d4948445200000004000000030800000000919ff11a0000000274524e5300f5bb",
        "44cbab0000001749444154789c636050f5ca6788eeddff9161db57936200233905c9c5419d15000000004945",
        "4e44ae426082",
    );
    const PNG_GRAY_ALPHA: &str = concat!(
        "89504e470d0a1a0a0000000d49484452000000040000000308040000001efd664d0000002449444154789c63",
        "6030558df2aacf5fc2103da1f7d0fe2f1fd518b6bdfeaa659259bc02008f9f0c0d9c6a76170000000049454e",
        "44ae426082",
    );
    const PNG_RGB16: &str = concat!(
        "89504e470d0a1a0a0000000d49484452000000040000000310020000006b06e5d20000005649444154789c01",
        "4b00b4ff00000035356a6a25285a5d8f924a507f85b4ba6f78a4add9e2005b67909cc5d18d9cc2d1f806bfd1",
        "f506293bf206263b5b7000b6ceec032038f6102a455f7a345269879ebc7394a8c9ddfed01c22f06335469000",
        "00000049454e44ae426082",
    );
    const PNG_GRAY16: &str = concat!(
        "89504e470d0a1a0a0000000d4948445200000004000000031000000000c10f2d590000002449444154789c63",
        "606050d5f00ac8af60884eef9db3ffe22736866de7be099804154f010075b80a593f73f0190000000049454e",
        "44ae426082",
    );
    const PNG_PALETTE_TRNS: &str = concat!(
        "89504e470d0a1a0a0000000d4948445200000004000000030803000000832a5ef400000030504c5445000102",
        "030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e",
        "2fad978eef0000000474524e53ff008007c8716d830000001749444154789c6360606462666061656367e0e0",
        "e4e20600014f0043aed336c90000000049454e44ae426082",
    );
}
