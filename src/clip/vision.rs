//! CLIP's vision tower: preprocessed pixels `[batch, 3, H, W]` → L2-normalized image embeddings.
//!
//! Hugging Face's `CLIPVisionTransformer` + `visual_projection`, loading only `vision_model.*` and
//! `visual_projection.weight` (the text tower's weights are never touched, so they are never paged
//! in). The patch embedding, a convolution whose stride equals its kernel, is computed as one matmul
//! over the unfolded patches. Not for: decoding or preprocessing images (`preprocess.rs`).

use candle_core::{DType, Result as CResult, Tensor};

use super::config::VisionConfig;
use super::dense::{Dense, LinearPrecision};
use super::encoder::{dense_in, l2_normalize_rows, load_linear, Encoder, EncoderShape, LayerNorm};
use super::weights::Weights;
use super::ClipError;

pub struct VisionTower {
    cfg: VisionConfig,
    /// The convolution kernel, flattened to `[hidden, channels·patch·patch]`.
    patch: Dense,
    class_embedding: Tensor,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    projection: super::dense::Dense,
}

impl VisionTower {
    pub fn load(w: &Weights, cfg: &VisionConfig, projection_dim: usize) -> Result<Self, ClipError> {
        let d = cfg.hidden_size;
        let e = "vision_model.embeddings";
        let patch = load_patch(w, cfg)?;
        let shape = EncoderShape::vision(cfg);
        Ok(Self {
            cfg: cfg.clone(),
            patch,
            class_embedding: w.get(&format!("{e}.class_embedding"), &[d])?,
            position_embedding: w.get(
                &format!("{e}.position_embedding.weight"),
                &[cfg.num_positions(), d],
            )?,
            // "layrnorm" is Hugging Face's spelling in the real checkpoints.
            pre_layrnorm: LayerNorm::load(w, "vision_model.pre_layrnorm", d, cfg.layer_norm_eps)?,
            encoder: Encoder::load(w, "vision_model", &shape)?,
            post_layernorm: LayerNorm::load(
                w,
                "vision_model.post_layernorm",
                d,
                cfg.layer_norm_eps,
            )?,
            projection: load_linear(w, "visual_projection", projection_dim, d, false)?,
        })
    }

    pub fn config(&self) -> &VisionConfig {
        &self.cfg
    }

    /// `pixels`: `[batch, channels, image_size, image_size]`, in the weights' dtype →
    /// `[batch, projection_dim]`, unit rows, always f32 (converted before the normalisation).
    pub fn forward(&self, pixels: &Tensor) -> CResult<Tensor> {
        let x = patch_embed(pixels, &self.patch, &self.cfg)?;
        let (b, d) = (x.dim(0)?, self.cfg.hidden_size);
        let cls = self
            .class_embedding
            .reshape((1, 1, d))?
            .broadcast_as((b, 1, d))?;
        let x = Tensor::cat(&[&cls, &x], 1)?;
        let x = x.broadcast_add(&self.position_embedding)?;
        let x = self.pre_layrnorm.forward(&x)?;
        // The class token's state is what is pooled: the last layer computes only that row.
        let cls = self.encoder.forward_at(&x, false, &vec![0; b])?;
        let pooled = self.post_layernorm.forward(&cls)?;
        l2_normalize_rows(&self.projection.forward(&pooled)?.to_dtype(DType::F32)?)
    }
}

/// The patch embedding's convolution kernel, `{vision_model.embeddings}.patch_embedding.weight`,
/// flattened to `[hidden, channels·patch·patch]`, as a linear layer over the unfolded patches: f32
/// by default; bf16 under `--precision bf16` and `int8` where the CPU runs bf16 (the layer that
/// sees the raw pixels is kept out of int8), else f32.
pub fn load_patch(w: &Weights, cfg: &VisionConfig) -> Result<Dense, ClipError> {
    let (d, c, p) = (cfg.hidden_size, cfg.num_channels, cfg.patch_size);
    let name = "vision_model.embeddings.patch_embedding";
    let weight = w
        .get(&format!("{name}.weight"), &[d, c, p, p])?
        .reshape((d, c * p * p))
        .map_err(|err| ClipError::Weights {
            path: w.path().to_path_buf(),
            reason: err.to_string(),
        })?;
    let precision = match w.linear() {
        LinearPrecision::F32 => LinearPrecision::F32,
        _ if crate::clip::dense::bf16::available() => LinearPrecision::Bf16,
        _ => LinearPrecision::F32,
    };
    dense_in(w, name, weight, None, precision)
}

/// The patch embedding, a convolution whose stride equals its kernel, as one matmul over the
/// unfolded patches: `pixels` `[batch, channels, image_size, image_size]` → `[batch, grid², hidden]`
/// (no bias; the caller adds SigLIP's).
pub fn patch_embed(pixels: &Tensor, patch: &Dense, cfg: &VisionConfig) -> CResult<Tensor> {
    let (b, c, hgt, wid) = pixels.dims4()?;
    let p = cfg.patch_size;
    let g = cfg.grid();
    if c != cfg.num_channels || hgt != cfg.image_size || wid != cfg.image_size {
        candle_core::bail!(
            "pixels are {c}×{hgt}×{wid}, the model wants {}×{}×{}",
            cfg.num_channels,
            cfg.image_size,
            cfg.image_size
        );
    }
    // The "valid" convolution leaves out what is past the last whole patch (384 px, 14-px patches).
    let pixels = if g * p == hgt {
        pixels.clone()
    } else {
        pixels
            .narrow(2, 0, g * p)?
            .narrow(3, 0, g * p)?
            .contiguous()?
    };
    // Unfold into non-overlapping patches: [b, c, g, p, g, p] → [b, g, g, c, p, p] → [b·g², c·p·p].
    let patches = pixels
        .reshape((b, c, g, p, g, p))?
        .permute((0, 2, 4, 1, 3, 5))?
        .contiguous()?
        .reshape((b * g * g, c * p * p))?;
    patch
        .forward(&patches)?
        .reshape((b, g * g, cfg.hidden_size))
}
