//! Chinese-CLIP's text tower: token ids → L2-normalized text embeddings.
//!
//! Hugging Face's `ChineseCLIPTextModel` (a BERT/RoBERTa-shaped encoder: word + position +
//! token-type embeddings, LayerNorm, post-LayerNorm blocks with exact GELU) + `text_projection`,
//! as `ChineseCLIPModel.get_text_features` runs it: the first token's (`[CLS]`) final state goes
//! through `text_projection` (not BERT's pooler, which Chinese-CLIP does not use). One text at a
//! time, so no attention mask is needed (every token is real) and the token types are all 0.
//! Loads only `text_model.*` and `text_projection.weight`. The blocks run on the same fused CPU
//! kernels as CLIP's (`encoder.rs`). Not for: tokenizing (`tokenizer.rs`).

use candle_core::{DType, Device, Result as CResult, Tensor};

use super::config::TextConfig;
use super::encoder::{
    l2_normalize_rows, load_linear, AttentionNames, EncoderShape, LayerNorm, PostNormLayer,
    PostNormNames,
};
use super::weights::Weights;
use super::ClipError;

pub struct BertTextTower {
    cfg: TextConfig,
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    /// Row 0 of `token_type_embeddings`: every token of a single text has type 0.
    token_type_0: Tensor,
    embeddings_norm: LayerNorm,
    layers: Vec<PostNormLayer>,
    projection: super::dense::Dense,
    device: Device,
}

impl BertTextTower {
    pub fn load(w: &Weights, cfg: &TextConfig, projection_dim: usize) -> Result<Self, ClipError> {
        let d = cfg.hidden_size;
        let e = "text_model.embeddings";
        let types = cfg.type_vocab_size.max(1);
        let token_type = w.get(&format!("{e}.token_type_embeddings.weight"), &[types, d])?;
        let shape = EncoderShape::text(cfg);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("text_model.encoder.layer.{i}");
            let n = |s: &str| format!("{p}.{s}");
            let (q, k, v, out) = (
                n("attention.self.query"),
                n("attention.self.key"),
                n("attention.self.value"),
                n("attention.output.dense"),
            );
            let (ln1, fc1, fc2, ln2) = (
                n("attention.output.LayerNorm"),
                n("intermediate.dense"),
                n("output.dense"),
                n("output.LayerNorm"),
            );
            let names = PostNormNames {
                attention: AttentionNames {
                    q: &q,
                    k: &k,
                    v: &v,
                    out: &out,
                },
                ln1: &ln1,
                fc1: &fc1,
                fc2: &fc2,
                ln2: &ln2,
            };
            layers.push(PostNormLayer::load(w, &p, &names, &shape)?);
        }
        let wrap = |err: candle_core::Error| ClipError::Weights {
            path: w.path().to_path_buf(),
            reason: format!("{e}.token_type_embeddings: {err}"),
        };
        Ok(Self {
            cfg: cfg.clone(),
            word_embeddings: w.get(&format!("{e}.word_embeddings.weight"), &[cfg.vocab_size, d])?,
            position_embeddings: w.get(
                &format!("{e}.position_embeddings.weight"),
                &[cfg.max_position_embeddings, d],
            )?,
            token_type_0: token_type.narrow(0, 0, 1).map_err(wrap)?,
            embeddings_norm: LayerNorm::load(w, &format!("{e}.LayerNorm"), d, cfg.layer_norm_eps)?,
            layers,
            projection: load_linear(w, "text_projection", projection_dim, d, false)?,
            device: w.device().clone(),
        })
    }

    /// The most tokens the position embeddings allow.
    pub fn max_len(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    /// One sequence of token ids (`[CLS] … [SEP]`, at most `max_len`) → `[projection_dim]`, unit
    /// norm, f32 whatever the weights' dtype.
    pub fn forward(&self, ids: &[u32]) -> CResult<Tensor> {
        let n = ids.len();
        if n == 0 || n > self.max_len() {
            candle_core::bail!("{n} tokens: the text tower takes 1 to {}", self.max_len());
        }
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            candle_core::bail!(
                "token id {bad} is outside the vocabulary of {} (tokenizer and model disagree)",
                self.cfg.vocab_size
            );
        }
        let d = self.cfg.hidden_size;
        let ids_t = Tensor::new(ids, &self.device)?;
        let x = self.word_embeddings.index_select(&ids_t, 0)?;
        let x = x.broadcast_add(&self.token_type_0)?;
        let x = (x + self.position_embeddings.narrow(0, 0, n)?)?.reshape((1, n, d))?;
        let mut x = self.embeddings_norm.forward(&x)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        let cls = x.narrow(1, 0, 1)?.squeeze(1)?; // [1, hidden]
        l2_normalize_rows(&self.projection.forward(&cls)?.to_dtype(DType::F32)?)?.squeeze(0)
    }
}
