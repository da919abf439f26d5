//! CLIP's text tower: token ids → L2-normalized text embeddings.
//!
//! Hugging Face's `CLIPTextTransformer` + `text_projection`, loading only `text_model.*` and
//! `text_projection.weight`. Causal self-attention; the pooled token follows the checkpoint's
//! `eos_token_id` as transformers does: with the legacy value 2 (the real OpenAI checkpoints) it is the
//! first occurrence of the largest id (`<|endoftext|>`), otherwise the first `eos_token_id`.
//! SigLIP's `SiglipTextTransformer` + `head` is the same stack with three differences
//! ([`TextTower::load_siglip`]): attention is not causal, the pooled token is the last position
//! (the texts are padded to the context length, so it may be padding), and the head has a bias.
//! Not for: tokenizing (`tokenizer.rs`).

use candle_core::{DType, Device, Result as CResult, Tensor};

use super::config::TextConfig;
use super::encoder::{l2_normalize_rows, load_linear, Encoder, EncoderShape, LayerNorm};
use super::weights::{Rows, Weights};
use super::ClipError;

pub struct TextTower {
    cfg: TextConfig,
    /// Left in the checkpoint's map on the CPU: a query reads its few rows of 49,408.
    token_embedding: Rows,
    position_embedding: Tensor,
    encoder: Encoder,
    final_layer_norm: LayerNorm,
    projection: super::dense::Dense,
    device: Device,
    /// SigLIP's tower: bidirectional attention, the last position pooled.
    siglip: bool,
}

impl TextTower {
    pub fn load(w: &Weights, cfg: &TextConfig, projection_dim: usize) -> Result<Self, ClipError> {
        let projection = load_linear(w, "text_projection", projection_dim, cfg.hidden_size, false)?;
        Self::load_with(w, cfg, projection, false)
    }

    /// SigLIP's text tower (`text_model.*`, its `text_model.head` giving `projection_size` values).
    pub fn load_siglip(w: &Weights, cfg: &TextConfig) -> Result<Self, ClipError> {
        let d = cfg.hidden_size;
        let out = cfg.projection_size.unwrap_or(d);
        let head = load_linear(w, "text_model.head", out, d, true)?;
        Self::load_with(w, cfg, head, true)
    }

    fn load_with(
        w: &Weights,
        cfg: &TextConfig,
        projection: super::dense::Dense,
        siglip: bool,
    ) -> Result<Self, ClipError> {
        let d = cfg.hidden_size;
        let shape = EncoderShape::text(cfg);
        let e = "text_model.embeddings";
        Ok(Self {
            cfg: cfg.clone(),
            token_embedding: w.rows(&format!("{e}.token_embedding.weight"), [cfg.vocab_size, d])?,
            position_embedding: w.get(
                &format!("{e}.position_embedding.weight"),
                &[cfg.max_position_embeddings, d],
            )?,
            encoder: Encoder::load(w, "text_model", &shape)?,
            final_layer_norm: LayerNorm::load(
                w,
                "text_model.final_layer_norm",
                d,
                cfg.layer_norm_eps,
            )?,
            projection,
            device: w.device().clone(),
            siglip,
        })
    }

    pub fn max_len(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    /// Index of the token whose state is pooled, as transformers chooses it.
    pub fn pooled_index(&self, ids: &[u32]) -> usize {
        if self.siglip {
            ids.len().saturating_sub(1)
        } else if self.cfg.eos_token_id == 2 {
            let max = ids.iter().copied().max().unwrap_or(0);
            ids.iter().position(|&t| t == max).unwrap_or(0)
        } else {
            ids.iter()
                .position(|&t| i64::from(t) == self.cfg.eos_token_id)
                .unwrap_or(ids.len().saturating_sub(1))
        }
    }

    /// One sequence of token ids (at most `max_len`) → `[projection_dim]`, unit norm, f32 whatever
    /// the weights' dtype (converted before the normalisation).
    pub fn forward(&self, ids: &[u32]) -> CResult<Tensor> {
        let n = ids.len();
        if n == 0 || n > self.max_len() {
            candle_core::bail!("{n} tokens: the text tower takes 1 to {}", self.max_len());
        }
        let d = self.cfg.hidden_size;
        let x = self.token_embedding.select(ids)?.to_device(&self.device)?;
        let x = (x + self.position_embedding.narrow(0, 0, n)?)?.reshape((1, n, d))?;
        // Only the pooled token's state is read: the last layer computes only that row.
        let pooled = self
            .encoder
            .forward_at(&x, !self.siglip, &[self.pooled_index(ids)])?;
        let pooled = self.final_layer_norm.forward(&pooled)?;
        l2_normalize_rows(&self.projection.forward(&pooled)?.to_dtype(DType::F32)?)?.squeeze(0)
    }
}
