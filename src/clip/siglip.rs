//! SigLIP's vision tower: preprocessed pixels `[batch, 3, H, W]` → L2-normalized image embeddings.
//!
//! Hugging Face's `SiglipVisionTransformer` as `SiglipModel.get_image_features` runs it: the patch
//! embedding (a convolution with a bias) plus one learned position per patch (no class token),
//! the pre-LayerNorm encoder every family shares (`encoder.rs`, on the fused CPU kernels),
//! `post_layernorm` over every token, then the attention-pooling head
//! (`SiglipMultiheadAttentionPoolingHead`): a learned probe attends to every token through
//! `nn.MultiheadAttention` (its q, k and v packed in one `in_proj`), and a LayerNorm + MLP is
//! added to the result. The head's output is the image embedding (transformers returns it
//! unnormalized; imgvec normalizes every vector). Loads only `vision_model.*`.
//! Not for: the text tower (`text.rs` runs SigLIP's too), preprocessing (`preprocess.rs`).

use candle_core::{DType, Result as CResult, Tensor};
use candle_nn::ops::softmax_last_dim;

use super::config::VisionConfig;
use super::dense::{Dense, Epilogue};
use super::encoder::{dense, l2_normalize_rows, Encoder, EncoderShape, LayerNorm, Mlp};
use super::vision::{load_patch, patch_embed};
use super::weights::Weights;
use super::ClipError;

pub struct SiglipVisionTower {
    cfg: VisionConfig,
    /// The convolution kernel, flattened to `[hidden, channels·patch·patch]`.
    patch: Dense,
    patch_bias: Tensor,
    position_embedding: Tensor,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    head: PoolingHead,
}

impl SiglipVisionTower {
    pub fn load(w: &Weights, cfg: &VisionConfig) -> Result<Self, ClipError> {
        let d = cfg.hidden_size;
        let e = "vision_model.embeddings";
        let shape = EncoderShape::vision(cfg);
        Ok(Self {
            cfg: cfg.clone(),
            patch: load_patch(w, cfg)?,
            patch_bias: w.get(&format!("{e}.patch_embedding.bias"), &[d])?,
            position_embedding: w.get(
                &format!("{e}.position_embedding.weight"),
                &[cfg.num_patches(), d],
            )?,
            encoder: Encoder::load(w, "vision_model", &shape)?,
            post_layernorm: LayerNorm::load(
                w,
                "vision_model.post_layernorm",
                d,
                cfg.layer_norm_eps,
            )?,
            head: PoolingHead::load(w, "vision_model.head", &shape)?,
        })
    }

    pub fn config(&self) -> &VisionConfig {
        &self.cfg
    }

    /// `pixels`: `[batch, channels, image_size, image_size]`, in the weights' dtype →
    /// `[batch, hidden]`, unit rows, always f32 (converted before the normalisation).
    pub fn forward(&self, pixels: &Tensor) -> CResult<Tensor> {
        let x = patch_embed(pixels, &self.patch, &self.cfg)?
            .broadcast_add(&self.patch_bias)?
            .broadcast_add(&self.position_embedding)?;
        // Every token's state is pooled (by the head's attention), so the last layer runs in full.
        let x = self.encoder.forward(&x, false)?;
        let x = self.post_layernorm.forward(&x)?;
        l2_normalize_rows(&self.head.forward(&x)?.to_dtype(DType::F32)?)
    }
}

/// `SiglipMultiheadAttentionPoolingHead`: one learned query (the probe) attends to every token.
struct PoolingHead {
    /// The probe's query, `(probe · W_qᵀ + b_q) / √head_dim`, per head: `[1, heads, 1, head_dim]`.
    /// It depends on no image, so it is computed once, at load.
    query: Tensor,
    /// k and v in one product: rows `hidden..3·hidden` of `in_proj_weight`.
    kv: Dense,
    out_proj: Dense,
    layernorm: LayerNorm,
    mlp: Mlp,
    heads: usize,
}

impl PoolingHead {
    fn load(w: &Weights, prefix: &str, s: &EncoderShape) -> Result<Self, ClipError> {
        let d = s.hidden;
        let (h, hd) = (s.heads, s.hidden / s.heads);
        let a = format!("{prefix}.attention");
        let wrap = w.error_in(&a);
        let in_w = w.get(&format!("{a}.in_proj_weight"), &[3 * d, d])?;
        let in_b = w.get(&format!("{a}.in_proj_bias"), &[3 * d])?;
        let probe = w.get(&format!("{prefix}.probe"), &[1, 1, d])?;
        let query = (|| {
            let q_w = in_w.narrow(0, 0, d)?;
            let q_b = in_b.narrow(0, 0, d)?;
            let q = probe
                .reshape((1, d))?
                .matmul(&q_w.t()?)?
                .broadcast_add(&q_b)?;
            (q * (hd as f64).powf(-0.5))?.reshape((1, h, 1, hd))
        })()
        .map_err(wrap)?;
        let kv_w = in_w.narrow(0, d, 2 * d).map_err(wrap)?;
        let kv_b = in_b.narrow(0, d, 2 * d).map_err(wrap)?;
        Ok(Self {
            query,
            kv: dense(w, &format!("{a}.kv"), kv_w, Some(kv_b))?,
            out_proj: super::encoder::load_linear(w, &format!("{a}.out_proj"), d, d, true)?,
            layernorm: LayerNorm::load(w, &format!("{prefix}.layernorm"), d, s.eps)?,
            mlp: Mlp::load(w, &format!("{prefix}.mlp"), s)?,
            heads: h,
        })
    }

    /// `[batch, tokens, hidden]` → `[batch, hidden]`.
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let (b, n, d) = x.dims3()?;
        let (h, hd) = (self.heads, d / self.heads);
        let kv = self.kv.forward_with(x, Epilogue::None)?; // [b, n, 2d]
        let kv = kv.reshape((b, n, 2, h, hd))?.permute((2, 0, 3, 1, 4))?; // [2, b, h, n, hd]
        let k = kv.get(0)?.contiguous()?;
        let v = kv.get(1)?.contiguous()?;
        let q = self
            .query
            .to_dtype(x.dtype())?
            .broadcast_as((b, h, 1, hd))?;
        let scores = q.contiguous()?.matmul(&k.t()?)?; // [b, h, 1, n]
        let ctx = softmax_last_dim(&scores)?.matmul(&v)?; // [b, h, 1, hd]
        let ctx = ctx.reshape((b, 1, d))?;
        let pooled = self.out_proj.forward(&ctx)?;
        // `pooled + mlp(layernorm(pooled))`: the residual form of every encoder block's MLP.
        self.mlp.forward(&self.layernorm, &pooled)?.reshape((b, d))
    }
}
