//! CLIP models: a checkpoint directory in, image and text embeddings out.
//!
//! [`ModelDir`] finds the files of a Hugging Face CLIP checkpoint; [`ImageEncoder`] and [`TextEncoder`]
//! each load only their own tower. Everything is pure computation over tensors: no file walking, no
//! network (the submodules say what each part does). Vectors come out L2-normalized, with the
//! checkpoint's `projection_dim` entries, as f32 whatever dtype the model computes in
//! ([`ModelDir::with_dtype`]).

/// Defines `name(args)` that runs `generic(args)` compiled for the best instruction set present
/// (`dense::Simd::get()`), or, as `name(level)`, for the level passed in first (one this CPU has).
/// Used by the element-wise kernels (`kernels.rs`) and the packing of the dense layers.
macro_rules! dispatch {
    ($vis:vis $name:ident => $generic:ident($($arg:ident: $ty:ty),*)) => {
        $vis fn $name($($arg: $ty),*) {
            dispatch!(@body $crate::clip::dense::Simd::get(), $generic($($arg: $ty),*))
        }
    };
    ($vis:vis $name:ident($level:ident) => $generic:ident($($arg:ident: $ty:ty),*)) => {
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($level: $crate::clip::dense::Simd, $($arg: $ty),*) {
            dispatch!(@body $level, $generic($($arg: $ty),*))
        }
    };
    (@body $level:expr, $generic:ident($($arg:ident: $ty:ty),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            /// The generic function compiled for AVX-512F.
            ///
            /// # Safety
            /// The CPU has AVX-512F.
            #[target_feature(enable = "avx512f")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512($($arg: $ty),*) {
                $generic($($arg),*)
            }
            /// The generic function compiled for AVX2 and FMA.
            ///
            /// # Safety
            /// The CPU has AVX2 and FMA.
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) {
                $generic($($arg),*)
            }
            match $level {
                // SAFETY: the level says the CPU has AVX-512F.
                $crate::clip::dense::Simd::Avx512 => return unsafe { avx512($($arg),*) },
                // SAFETY: the level says the CPU has AVX2 and FMA.
                $crate::clip::dense::Simd::Avx2 => return unsafe { avx2($($arg),*) },
                $crate::clip::dense::Simd::None => {}
            }
        }
        $generic($($arg),*)
    }};
}

pub mod bert;
pub mod config;
pub mod dense;
pub mod encoder;
pub mod kernels;
pub mod preprocess;
pub mod siglip;
pub mod spiece;
pub mod text;
pub mod tokenizer;
pub mod vision;
pub mod weights;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use bert::BertTextTower;
use config::{ClipConfig, Family};
use preprocess::PreprocessConfig;
use siglip::SiglipVisionTower;
use text::TextTower;
use tokenizer::ClipTokenizer;
use vision::VisionTower;
use weights::Weights;

/// What can go wrong loading or running a model; every variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("model directory {path} not found. {hint}")]
    ModelDirMissing { path: PathBuf, hint: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error("{path}: tensor {name} is missing (expected shape {expected:?}): not a checkpoint of this CLIP architecture")]
    MissingTensor {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
    },
    #[error("{path}: tensor {name} has shape {found:?}, config.json implies {expected:?}")]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("model computation failed: {0}")]
    Compute(#[from] candle_core::Error),
}

impl ClipError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ClipError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How to get the default model, for error messages.
pub const GET_MODEL_HINT: &str = "Run `imgvec fetch-model` where the Hugging Face hub is reachable (it \
downloads openai/clip-vit-large-patch14 into the Hugging Face cache, where imgvec finds it), or copy \
config.json, model.safetensors, tokenizer.json and preprocessor_config.json into a directory by hand \
(see models/README.md) and point --model-dir / IMGVEC_MODEL_DIR at it.";

/// A Hugging Face CLIP checkpoint directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    dir: PathBuf,
    config: ClipConfig,
    /// Set by whoever found the directory (a hub snapshot's folder is named by its revision).
    name: Option<String>,
    /// The dtype the towers are loaded and run in (f32 unless [`Self::with_dtype`] says otherwise).
    dtype: DType,
    /// The arithmetic of the CPU's packed linear layers (f32 unless [`Self::with_linear`] says
    /// bf16).
    linear: dense::LinearPrecision,
}

impl ModelDir {
    /// Checks the directory and reads its `config.json`.
    pub fn open(dir: &Path) -> Result<Self, ClipError> {
        if !dir.is_dir() {
            return Err(ClipError::ModelDirMissing {
                path: dir.to_path_buf(),
                hint: GET_MODEL_HINT.to_string(),
            });
        }
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(ClipError::Config {
                path: config_path,
                reason: format!("missing: not a Hugging Face model directory. {GET_MODEL_HINT}"),
            });
        }
        let config = ClipConfig::from_file(&config_path)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            name: None,
            dtype: DType::F32,
            linear: dense::LinearPrecision::F32,
        })
    }

    /// The same directory, its towers loaded in `dtype` (weights and activations; `--precision`).
    /// f32 on the CPU runs imgvec's own kernels; any other dtype runs candle's ops, which is what
    /// a GPU wants.
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// The dtype the towers compute in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The same directory, its f32 towers' linear layers run in `linear` on the CPU
    /// (`--precision bf16` there: the rest stays f32).
    pub fn with_linear(mut self, linear: dense::LinearPrecision) -> Self {
        self.linear = linear;
        self
    }

    /// The arithmetic of the CPU's linear layers.
    pub fn linear(&self) -> dense::LinearPrecision {
        self.linear
    }

    /// The precision the vectors are made in, as `--precision` spells it: `int8` or `bf16` where
    /// the CPU's linear layers run so, else the towers' dtype (`f32`, `f16`, `bf16`).
    pub fn precision_name(&self) -> &'static str {
        match self.linear {
            dense::LinearPrecision::Int8 => "int8",
            dense::LinearPrecision::Bf16 => "bf16",
            dense::LinearPrecision::F32 => self.dtype.as_str(),
        }
    }

    /// The same directory under another short name (see [`Self::name`]).
    pub fn with_name(mut self, name: String) -> Self {
        self.name = Some(name);
        self
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }
    /// Embedding dimension of both towers.
    pub fn dims(&self) -> usize {
        self.config.projection_dim
    }
    /// A short name for the model, stored with each vector: the one given with [`Self::with_name`]
    /// (the repository's name for a hub snapshot), else the directory's name.
    pub fn name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        self.dir
            .canonicalize()
            .unwrap_or_else(|_| self.dir.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "clip".to_string())
    }

    /// The checkpoint's image preprocessing (`preprocessor_config.json`, defaults where absent),
    /// checked against the vision tower's input size. Reads no weights.
    pub fn preprocess_config(&self) -> Result<PreprocessConfig, ClipError> {
        let path = self.dir.join("preprocessor_config.json");
        let size = self.config.vision_config.image_size as u32;
        let defaults = match self.config.family {
            Family::Siglip => PreprocessConfig::siglip_default(size),
            Family::Clip | Family::ChineseClip => PreprocessConfig::clip_default(size),
        };
        let preprocess =
            PreprocessConfig::from_model_dir_over(&self.dir, defaults).map_err(|e| {
                ClipError::Config {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
        let (h, w) = preprocess.output_size();
        if (h, w) != (size, size) {
            return Err(ClipError::Config {
                path,
                reason: format!("crop size {h}×{w} differs from the model's image_size {size}"),
            });
        }
        Ok(preprocess)
    }

    /// CLIP's learned temperature: the scalar tensor `logit_scale` of `model.safetensors`. The
    /// zero-shot logits are `exp(logit_scale) · cos(image, text)`. Reads that one tensor only.
    pub fn logit_scale(&self) -> Result<f32, ClipError> {
        let weights = self.weights(&Device::Cpu, DType::F32)?;
        // CLIP's is a scalar, SigLIP's a tensor of one value.
        let shape: &[usize] = match self.config.family {
            Family::Siglip => &[1],
            Family::Clip | Family::ChineseClip => &[],
        };
        scalar(&weights, "logit_scale", shape)
    }

    /// SigLIP's learned bias, `logit_bias` of `model.safetensors`: its zero-shot score is
    /// `sigmoid(exp(logit_scale) · cos(image, text) + logit_bias)`. `None` for the softmax
    /// families (CLIP, Chinese-CLIP), which have none.
    pub fn logit_bias(&self) -> Result<Option<f32>, ClipError> {
        if self.config.family != Family::Siglip {
            return Ok(None);
        }
        let weights = self.weights(&Device::Cpu, DType::F32)?;
        scalar(&weights, "logit_bias", &[1]).map(Some)
    }

    /// The fingerprint of `model.safetensors` (else `pytorch_model.bin`; [`weights::fingerprint`]);
    /// `None` when the directory has no weights file (commands that read only `config.json` work
    /// without one).
    pub fn fingerprint(&self) -> Result<Option<String>, ClipError> {
        for name in ["model.safetensors", "pytorch_model.bin"] {
            let path = self.dir.join(name);
            if path.is_file() {
                return weights::fingerprint(&path).map(Some);
            }
        }
        Ok(None)
    }

    /// The architecture family: `clip`, `chinese_clip`, `siglip`.
    pub fn family(&self) -> &'static str {
        self.config.family.name()
    }

    fn weights(&self, device: &Device, dtype: DType) -> Result<Weights, ClipError> {
        let path = self.dir.join("model.safetensors");
        if !path.is_file() {
            // The OFA-Sys Chinese-CLIP repositories publish only PyTorch's format.
            let pytorch = self.dir.join("pytorch_model.bin");
            if pytorch.is_file() {
                return Ok(Weights::open_pytorch(&pytorch, device, dtype)?.with_linear(self.linear));
            }
            return Err(ClipError::Weights {
                path,
                reason: format!("missing. {GET_MODEL_HINT}"),
            });
        }
        Ok(Weights::open(&path, device, dtype)?.with_linear(self.linear))
    }
}

/// The one value of the tensor `name` (shape `shape`: `[]` or `[1]`), which must be finite.
fn scalar(weights: &Weights, name: &str, shape: &[usize]) -> Result<f32, ClipError> {
    let value = weights
        .get(name, shape)?
        .flatten_all()?
        .get(0)?
        .to_scalar::<f32>()?;
    if !value.is_finite() {
        return Err(ClipError::Weights {
            path: weights.path().to_path_buf(),
            reason: format!("tensor {name} is {value}, not a finite number"),
        });
    }
    Ok(value)
}

/// Images → embeddings: the vision tower plus the checkpoint's preprocessing parameters.
pub struct ImageEncoder {
    tower: AnyVisionTower,
    preprocess: PreprocessConfig,
    device: Device,
    dtype: DType,
    dims: usize,
    /// Last: the tower's memory goes back to the system once it is dropped.
    _release: crate::ReleaseOnDrop,
}

impl ImageEncoder {
    /// Loads `vision_model.*` and `visual_projection` only, in the model's dtype.
    pub fn load(model: &ModelDir, device: &Device) -> Result<Self, ClipError> {
        let cfg = model.config();
        let weights = model.weights(device, model.dtype())?;
        let tower = match cfg.family {
            Family::Clip | Family::ChineseClip => AnyVisionTower::Clip(Box::new(
                VisionTower::load(&weights, &cfg.vision_config, cfg.projection_dim)?,
            )),
            Family::Siglip => AnyVisionTower::Siglip(Box::new(SiglipVisionTower::load(
                &weights,
                &cfg.vision_config,
            )?)),
        };
        let preprocess = model.preprocess_config()?;
        crate::release_freed_memory();
        Ok(Self {
            tower,
            preprocess,
            device: device.clone(),
            dtype: model.dtype(),
            dims: cfg.projection_dim,
            _release: crate::ReleaseOnDrop,
        })
    }

    /// The dtype the tower computes in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn dims(&self) -> usize {
        self.dims
    }
    pub fn preprocess_config(&self) -> &PreprocessConfig {
        &self.preprocess
    }
    /// Floats in one preprocessed image: channels × size × size.
    pub fn pixels_len(&self) -> usize {
        let c = self.tower.config();
        c.num_channels * c.image_size * c.image_size
    }

    /// Embeds a batch of preprocessed images (each `[3, size, size]`, channel-major).
    pub fn embed_pixels(&self, images: &[&[f32]]) -> Result<Vec<Vec<f32>>, ClipError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.tower.config();
        let (ch, s) = (c.num_channels, c.image_size);
        let n = self.pixels_len();
        let mut flat = Vec::with_capacity(images.len() * n);
        for img in images {
            if img.len() != n {
                return Err(ClipError::Compute(candle_core::Error::Msg(format!(
                    "preprocessed image has {} floats, expected {n}",
                    img.len()
                ))));
            }
            flat.extend_from_slice(img);
        }
        // Uploaded as f32 and converted on the device (one kernel; no host-side pass).
        let pixels =
            Tensor::from_vec(flat, (images.len(), ch, s, s), &self.device)?.to_dtype(self.dtype)?;
        // The tower's output is f32 already (converted before the normalisation): the one copy back.
        let embeddings = match &self.tower {
            AnyVisionTower::Clip(t) => t.forward(&pixels)?,
            AnyVisionTower::Siglip(t) => t.forward(&pixels)?,
        };
        Ok(embeddings.to_vec2::<f32>()?)
    }
}

/// The vision tower of the checkpoint's family (boxed: one is made per encoder, and the two
/// differ in size).
enum AnyVisionTower {
    Clip(Box<VisionTower>),
    Siglip(Box<SiglipVisionTower>),
}

impl AnyVisionTower {
    fn config(&self) -> &config::VisionConfig {
        match self {
            AnyVisionTower::Clip(t) => t.config(),
            AnyVisionTower::Siglip(t) => t.config(),
        }
    }
}

/// Chinese-CLIP's context length (`cn_clip`'s `context_length`, what its text tower was trained
/// on): longer texts are cut, as `truncation=True, max_length=52` does in transformers.
pub const CHINESE_CLIP_CONTEXT: usize = 52;

/// Text → embeddings: the text tower plus the tokenizer.
pub struct TextEncoder {
    tower: AnyTextTower,
    tokenizer: ClipTokenizer,
    /// Last: the tower's memory goes back to the system once it is dropped.
    _release: crate::ReleaseOnDrop,
}

/// The text tower of the checkpoint's family.
enum AnyTextTower {
    Clip(TextTower),
    Bert(BertTextTower),
}

/// A text embedding and how the text was tokenized.
#[derive(Debug, Clone)]
pub struct TextEmbedding {
    pub vector: Vec<f32>,
    pub input_ids: Vec<u32>,
    /// Whether the text was cut to the model's context length.
    pub truncated: bool,
}

impl TextEncoder {
    /// Loads `text_model.*`, `text_projection` and the tokenizer (`tokenizer.json`; for
    /// Chinese-CLIP, `vocab.txt` where there is no `tokenizer.json`).
    pub fn load(model: &ModelDir, device: &Device) -> Result<Self, ClipError> {
        let cfg = model.config();
        let dir = model.path();
        let tokenizer = match cfg.family {
            Family::Clip => ClipTokenizer::from_file(
                &dir.join("tokenizer.json"),
                cfg.text_config.max_position_embeddings,
            )?,
            Family::Siglip => {
                let max_len = cfg.text_config.max_position_embeddings;
                let json = dir.join("tokenizer.json");
                let config = dir.join("tokenizer_config.json");
                // SigLIP 2 ships a Gemma tokenizer.json, SigLIP (v1) only spiece.model.
                if json.is_file() || !dir.join("spiece.model").is_file() {
                    ClipTokenizer::from_file(&json, max_len)?.padded(&config, "GemmaTokenizer")?
                } else {
                    ClipTokenizer::from_spiece(
                        &dir.join("spiece.model"),
                        lower_cases(dir)?,
                        max_len,
                    )?
                    .padded(&config, "SiglipTokenizer")?
                }
            }
            Family::ChineseClip => {
                let max_len = CHINESE_CLIP_CONTEXT.min(cfg.text_config.max_position_embeddings);
                let json = dir.join("tokenizer.json");
                if json.is_file() {
                    ClipTokenizer::from_file(&json, max_len)?
                } else {
                    ClipTokenizer::from_wordpiece_vocab(
                        &dir.join("vocab.txt"),
                        lower_cases(dir)?,
                        max_len,
                    )?
                }
            }
        };
        let weights = model.weights(device, model.dtype())?;
        let tower = match cfg.family {
            Family::Clip => AnyTextTower::Clip(TextTower::load(
                &weights,
                &cfg.text_config,
                cfg.projection_dim,
            )?),
            Family::ChineseClip => AnyTextTower::Bert(BertTextTower::load(
                &weights,
                &cfg.text_config,
                cfg.projection_dim,
            )?),
            Family::Siglip => {
                AnyTextTower::Clip(TextTower::load_siglip(&weights, &cfg.text_config)?)
            }
        };
        crate::release_freed_memory();
        Ok(Self {
            tower,
            tokenizer,
            _release: crate::ReleaseOnDrop,
        })
    }

    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    pub fn embed(&self, text: &str) -> Result<TextEmbedding, ClipError> {
        let tokens = self.tokenizer.encode(text)?;
        let vector = match &self.tower {
            AnyTextTower::Clip(t) => t.forward(&tokens.ids)?,
            AnyTextTower::Bert(t) => t.forward(&tokens.ids)?,
        }
        .to_vec1::<f32>()?;
        Ok(TextEmbedding {
            vector,
            input_ids: tokens.ids,
            truncated: tokens.truncated,
        })
    }
}

/// `do_lower_case` of the directory's `tokenizer_config.json` (transformers' `BertTokenizer`
/// and `SiglipTokenizer` default, true, when the file or the key is absent).
fn lower_cases(dir: &Path) -> Result<bool, ClipError> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(true);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| ClipError::io(&path, e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ClipError::Tokenizer {
            path: path.clone(),
            reason: format!("not valid JSON: {e}"),
        })?;
    Ok(value
        .get("do_lower_case")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true))
}

/// L2-normalizes a vector in place; a zero vector stays zero.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// The query vector: the sum of the unit vectors with their signs, L2-normalized again; `None` when
/// they cancel out.
pub fn combine(dims: usize, parts: &[(Vec<f32>, f32)]) -> Option<Vec<f32>> {
    let mut v = vec![0f32; dims];
    for (part, sign) in parts {
        for (a, x) in v.iter_mut().zip(part) {
            *a += sign * x;
        }
    }
    l2_normalize(&mut v);
    v.iter().any(|x| *x != 0.0).then_some(v)
}

/// Cosine similarity of two vectors (0 if either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}
