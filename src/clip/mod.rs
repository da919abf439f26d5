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
mod image_encoder;
pub mod kernels;
pub mod preprocess;
pub mod siglip;
pub mod spiece;
pub mod text;
mod text_encoder;
pub mod tokenizer;
pub mod vision;
pub mod weights;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use config::{ClipConfig, Family};
use preprocess::PreprocessConfig;
use weights::Weights;

pub use image_encoder::ImageEncoder;
pub use text_encoder::{TextEmbedding, TextEncoder, CHINESE_CLIP_CONTEXT};

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
