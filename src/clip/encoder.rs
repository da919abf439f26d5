//! The transformer encoder both CLIP towers share: pre-LayerNorm blocks of self-attention and MLP.
//!
//! Same arithmetic as Hugging Face's `CLIPEncoderLayer`, arranged for speed on CPU: q, k and v are one
//! fused matmul (weights concatenated once at load, the attention scale folded into q); attention
//! reads the heads straight from that product and writes the context in the layout the output
//! projection reads (`dense/attention.rs`); LayerNorm is applied to the rows as the next layer
//! packs them, quick-GELU to fc1's tiles as they are written, and those tiles go straight into the
//! packed rows fc2 reads (the MLP is one op, `dense::mlp`). Without AVX2+FMA, LayerNorm is
//! candle's and the heads' attention and the activation are the fused kernels of `kernels.rs`.
//! On a GPU, or in f16/bf16 (`--precision`), every op is candle's own and stays on the device
//! (matmul, LayerNorm, softmax, sigmoid/GELU, copies): the fused kernels and the packed GEMM step
//! aside, and nothing is copied back to the host inside the forward pass. Each of those ops has
//! f16, bf16 and f32 CUDA kernels in candle 0.11.1 (cuBLAS GEMMs; LayerNorm and softmax accumulate
//! in f32; bf16 ones are compiled for compute capability 8.0 and up), and Metal takes the same path.
//! Not for: embeddings, pooling or projections (see `vision.rs`, `text.rs`).

use candle_core::{DType, Result as CResult, Tensor, D};
use candle_nn::ops::layer_norm;

use super::config::Activation;
use super::dense::{attention_from_qkv, Dense, Epilogue, HostNorm, LinearPrecision};
use super::kernels::attention;
use super::weights::Weights;
use super::ClipError;

/// A LayerNorm with its weights.
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
    /// The weights as host floats when they are f32 on the CPU: the packed layers normalize
    /// their input rows themselves.
    host: Option<(Vec<f32>, Vec<f32>)>,
}

impl LayerNorm {
    pub fn load(w: &Weights, prefix: &str, dim: usize, eps: f64) -> Result<Self, ClipError> {
        let weight = w.get(&format!("{prefix}.weight"), &[dim])?;
        let bias = w.get(&format!("{prefix}.bias"), &[dim])?;
        let host = if weight.device().is_cpu() && weight.dtype() == DType::F32 {
            let floats = |t: &Tensor| t.to_vec1::<f32>().map_err(w.error_in(prefix));
            Some((floats(&weight)?, floats(&bias)?))
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            eps: eps as f32,
            host,
        })
    }

    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps)
    }

    /// The parameters on the host, for layers that normalize rows as they pack them.
    fn host(&self) -> Option<HostNorm<'_>> {
        self.host.as_ref().map(|(weight, bias)| HostNorm {
            weight,
            bias,
            eps: self.eps,
        })
    }

    /// `epilogue(dense(layer_norm(x)))`: normalized while the dense layer packs its input where
    /// it can, by this LayerNorm and then the layer otherwise.
    fn then(&self, dense: &Dense, x: &Tensor, epilogue: Epilogue) -> CResult<Tensor> {
        if let Some(norm) = self.host() {
            if let Some(y) = dense.forward_normed(x, norm, epilogue)? {
                return Ok(y);
            }
        }
        dense.forward_with(&self.forward(x)?, epilogue)
    }
}

/// A linear layer `y = x Wᵀ + b` loaded by name, weight shape `[out, inp]`.
pub fn load_linear(
    w: &Weights,
    prefix: &str,
    out: usize,
    inp: usize,
    bias: bool,
) -> Result<Dense, ClipError> {
    let bias = if bias {
        Some(w.get(&format!("{prefix}.bias"), &[out])?)
    } else {
        None
    };
    let name = format!("{prefix}.weight");
    // Packed straight from the checkpoint's map where it can be: no copy of the weight to make
    // and free (the largest, ViT-L/14's MLP weights, are 17 MB each).
    let packed = w.with_floats(&name, &[out, inp], |floats| {
        Dense::from_floats(floats, out, inp, bias.as_ref(), w.linear())
    });
    if let Some(dense) = packed.transpose().map_err(w.error_in(prefix))?.flatten() {
        return Ok(dense);
    }
    let weight = w.get(&name, &[out, inp])?;
    dense(w, prefix, weight, bias)
}

/// A [`Dense`] layer in the checkpoint's precision, its packing errors named after the tensor.
pub fn dense(
    w: &Weights,
    prefix: &str,
    weight: Tensor,
    bias: Option<Tensor>,
) -> Result<Dense, ClipError> {
    dense_in(w, prefix, weight, bias, w.linear())
}

/// [`dense`] in `precision` rather than the checkpoint's.
pub fn dense_in(
    w: &Weights,
    prefix: &str,
    weight: Tensor,
    bias: Option<Tensor>,
    precision: LinearPrecision,
) -> Result<Dense, ClipError> {
    Dense::with_precision(weight, bias, precision).map_err(w.error_in(prefix))
}

/// Sizes of one encoder stack.
#[derive(Debug, Clone, Copy)]
pub struct EncoderShape {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub layers: usize,
    pub eps: f64,
    pub act: Activation,
}

impl EncoderShape {
    pub fn vision(c: &super::config::VisionConfig) -> Self {
        Self {
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            heads: c.num_attention_heads,
            layers: c.num_hidden_layers,
            eps: c.layer_norm_eps,
            act: c.hidden_act,
        }
    }

    pub fn text(c: &super::config::TextConfig) -> Self {
        Self {
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            heads: c.num_attention_heads,
            layers: c.num_hidden_layers,
            eps: c.layer_norm_eps,
            act: c.hidden_act,
        }
    }
}

struct Attention {
    qkv: Dense,
    out_proj: Dense,
    heads: usize,
}

/// The Hugging Face names of one attention block's linear layers, each a prefix of `.weight` and
/// `.bias`.
pub struct AttentionNames<'a> {
    pub q: &'a str,
    pub k: &'a str,
    pub v: &'a str,
    pub out: &'a str,
}

impl Attention {
    fn load(w: &Weights, prefix: &str, s: &EncoderShape) -> Result<Self, ClipError> {
        let name = |n: &str| format!("{prefix}.{n}");
        let (q, k, v, out) = (
            name("q_proj"),
            name("k_proj"),
            name("v_proj"),
            name("out_proj"),
        );
        let names = AttentionNames {
            q: &q,
            k: &k,
            v: &v,
            out: &out,
        };
        Self::load_named(w, prefix, &names, s)
    }

    /// The block from its layers' names; `prefix` names it in errors.
    fn load_named(
        w: &Weights,
        prefix: &str,
        names: &AttentionNames<'_>,
        s: &EncoderShape,
    ) -> Result<Self, ClipError> {
        let d = s.hidden;
        let head_dim = d / s.heads;
        let scale = (head_dim as f64).powf(-0.5);
        let get = |name: &str, part: &str, shape: &[usize]| w.get(&format!("{name}.{part}"), shape);
        let wrap = w.error_in(prefix);
        let q_w = (get(names.q, "weight", &[d, d])? * scale).map_err(wrap)?;
        let q_b = (get(names.q, "bias", &[d])? * scale).map_err(wrap)?;
        let qkv_w = Tensor::cat(
            &[
                &q_w,
                &get(names.k, "weight", &[d, d])?,
                &get(names.v, "weight", &[d, d])?,
            ],
            0,
        )
        .map_err(wrap)?;
        let qkv_b = Tensor::cat(
            &[
                &q_b,
                &get(names.k, "bias", &[d])?,
                &get(names.v, "bias", &[d])?,
            ],
            0,
        )
        .map_err(wrap)?;
        Ok(Self {
            qkv: dense(w, &format!("{prefix}.qkv"), qkv_w, Some(qkv_b))?,
            out_proj: load_linear(w, names.out, d, d, true)?,
            heads: s.heads,
        })
    }

    /// `x + attention(ln(x))`; `x`: `[batch, tokens, hidden]`; `causal`: each token attends only to
    /// those before it. With `at`, only for token `at[i]` of sequence i, as `[batch, 1, hidden]`
    /// (the keys and values of every token still count).
    fn forward(
        &self,
        ln: &LayerNorm,
        x: &Tensor,
        causal: bool,
        at: Option<&[usize]>,
    ) -> CResult<Tensor> {
        let qkv = ln.then(&self.qkv, x, Epilogue::None)?;
        self.finish(&qkv, x, causal, at)
    }

    /// `x + attention(x)`, no LayerNorm before it (post-LayerNorm blocks: BERT).
    fn forward_plain(&self, x: &Tensor, causal: bool) -> CResult<Tensor> {
        let qkv = self.qkv.forward_with(x, Epilogue::None)?;
        self.finish(&qkv, x, causal, None)
    }

    /// `x + out_proj(context)` from the q/k/v product of (a normalization of) `x`.
    fn finish(
        &self,
        qkv: &Tensor,
        x: &Tensor,
        causal: bool,
        at: Option<&[usize]>,
    ) -> CResult<Tensor> {
        let x = match at {
            Some(at) => pick_rows(x, at)?,
            None => x.clone(),
        };
        let ctx = match attention_from_qkv(qkv, self.heads, causal, at, self.qkv.precision())? {
            Some(ctx) => ctx,
            None => {
                let ctx = self.context(qkv, causal)?;
                match at {
                    Some(at) => pick_rows(&ctx, at)?,
                    None => ctx,
                }
            }
        };
        self.out_proj.forward_add(&ctx, &x)
    }

    /// Every token's attention context from the q/k/v product, on candle's ops and the fused
    /// kernels: `[batch, tokens, hidden]`.
    fn context(&self, qkv: &Tensor, causal: bool) -> CResult<Tensor> {
        let (b, n, d3) = qkv.dims3()?;
        let (h, d) = (self.heads, d3 / 3);
        let hd = d / h;
        let qkv = qkv.reshape((b, n, 3, h, hd))?;
        let qkv = qkv.permute((2, 0, 3, 1, 4))?; // [3, b, h, n, hd]
        let q = qkv.get(0)?.contiguous()?.reshape((b * h, n, hd))?;
        let k = qkv.get(1)?.contiguous()?.reshape((b * h, n, hd))?;
        let v = qkv.get(2)?.contiguous()?.reshape((b * h, n, hd))?;
        // q already carries the 1/√hd scale.
        let ctx = attention(&q, &k, &v, causal)?; // [b·h, n, hd]
        ctx.reshape((b, h, n, hd))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, n, d))
    }
}

/// Row `at[i]` of each sequence `i` of `x` (`[batch, tokens, hidden]`), as `[batch, 1, hidden]`.
fn pick_rows(x: &Tensor, at: &[usize]) -> CResult<Tensor> {
    let (b, n, d) = x.dims3()?;
    if at.len() != b || at.iter().any(|&t| t >= n) {
        candle_core::bail!("rows {at:?} of {b} sequences of {n} tokens");
    }
    let flat: Vec<u32> = at
        .iter()
        .enumerate()
        .map(|(i, &t)| u32::try_from(i * n + t))
        .collect::<Result<_, _>>()
        .map_err(|e| candle_core::Error::Msg(format!("row index: {e}")))?;
    let idx = Tensor::new(flat, x.device())?;
    x.reshape((b * n, d))?
        .index_select(&idx, 0)?
        .reshape((b, 1, d))
}

/// The MLP of a pre-LayerNorm block (`{prefix}.fc1`, `{prefix}.fc2`).
pub struct Mlp {
    fc1: Dense,
    fc2: Dense,
    act: Activation,
}

impl Mlp {
    pub fn load(w: &Weights, prefix: &str, s: &EncoderShape) -> Result<Self, ClipError> {
        Ok(Self {
            fc1: load_linear(w, &format!("{prefix}.fc1"), s.intermediate, s.hidden, true)?,
            fc2: load_linear(w, &format!("{prefix}.fc2"), s.hidden, s.intermediate, true)?,
            act: s.act,
        })
    }

    /// `x + mlp(ln(x))`.
    pub fn forward(&self, ln: &LayerNorm, x: &Tensor) -> CResult<Tensor> {
        let epilogue = epilogue(self.act);
        if let Some(norm) = ln.host() {
            if let Some(y) = Dense::mlp(&self.fc1, &self.fc2, x, norm, epilogue)? {
                return Ok(y);
            }
        }
        let h = ln.then(&self.fc1, x, epilogue)?;
        self.fc2.forward_add(&h, x)
    }
}

struct Layer {
    ln1: LayerNorm,
    attn: Attention,
    ln2: LayerNorm,
    mlp: Mlp,
}

/// A stack of encoder layers, `{prefix}.encoder.layers.{i}` in Hugging Face's names.
pub struct Encoder {
    layers: Vec<Layer>,
}

impl Encoder {
    pub fn load(w: &Weights, prefix: &str, s: &EncoderShape) -> Result<Self, ClipError> {
        let mut layers = Vec::with_capacity(s.layers);
        for i in 0..s.layers {
            let p = format!("{prefix}.encoder.layers.{i}");
            layers.push(Layer {
                ln1: LayerNorm::load(w, &format!("{p}.layer_norm1"), s.hidden, s.eps)?,
                attn: Attention::load(w, &format!("{p}.self_attn"), s)?,
                ln2: LayerNorm::load(w, &format!("{p}.layer_norm2"), s.hidden, s.eps)?,
                mlp: Mlp::load(w, &format!("{p}.mlp"), s)?,
            });
        }
        Ok(Self { layers })
    }

    /// Every token's final state: `[batch, tokens, hidden]`.
    pub fn forward(&self, x: &Tensor, causal: bool) -> CResult<Tensor> {
        self.run(x, causal, None)
    }

    /// The final state of token `at[i]` of each sequence `i`: `[batch, hidden]`, the same numbers
    /// as those rows of [`Self::forward`]. What the towers pool is one token's state, so the last
    /// layer computes its keys and values for every token and the rest (the attention of one
    /// query, the output projection, the MLP) for that token alone: in ViT-L/14's vision tower,
    /// 5 of its 162 GFLOP an image not spent.
    pub fn forward_at(&self, x: &Tensor, causal: bool, at: &[usize]) -> CResult<Tensor> {
        if self.layers.is_empty() {
            return pick_rows(x, at)?.squeeze(1);
        }
        self.run(x, causal, Some(at))?.squeeze(1)
    }

    /// All layers, the last one only at the rows `at` when given.
    fn run(&self, x: &Tensor, causal: bool, at: Option<&[usize]>) -> CResult<Tensor> {
        let mut x = x.clone();
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            let at = if i == last { at } else { None };
            x = layer.attn.forward(&layer.ln1, &x, causal, at)?;
            x = layer.mlp.forward(&layer.ln2, &x)?;
        }
        Ok(x)
    }
}

/// One post-LayerNorm transformer block (BERT's: `x = ln1(x + attention(x))`,
/// `x = ln2(x + fc2(act(fc1(x))))`), on the same fused attention and dense layers as CLIP's
/// pre-LayerNorm blocks. The names of its tensors are the caller's (`bert.rs`).
pub struct PostNormLayer {
    attn: Attention,
    ln1: LayerNorm,
    fc1: Dense,
    fc2: Dense,
    ln2: LayerNorm,
    act: Activation,
}

/// The names of a [`PostNormLayer`]'s tensors.
pub struct PostNormNames<'a> {
    pub attention: AttentionNames<'a>,
    pub ln1: &'a str,
    pub fc1: &'a str,
    pub fc2: &'a str,
    pub ln2: &'a str,
}

impl PostNormLayer {
    pub fn load(
        w: &Weights,
        prefix: &str,
        names: &PostNormNames<'_>,
        s: &EncoderShape,
    ) -> Result<Self, ClipError> {
        Ok(Self {
            attn: Attention::load_named(w, prefix, &names.attention, s)?,
            ln1: LayerNorm::load(w, names.ln1, s.hidden, s.eps)?,
            fc1: load_linear(w, names.fc1, s.intermediate, s.hidden, true)?,
            fc2: load_linear(w, names.fc2, s.hidden, s.intermediate, true)?,
            ln2: LayerNorm::load(w, names.ln2, s.hidden, s.eps)?,
            act: s.act,
        })
    }

    /// `[batch, tokens, hidden]` → the same shape; every token attends to every other one.
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let x = self.ln1.forward(&self.attn.forward_plain(x, false)?)?;
        let h = self.fc1.forward_with(&x, epilogue(self.act))?;
        self.ln2.forward(&self.fc2.forward_add(&h, &x)?)
    }
}

/// The MLP's activation as the epilogue fc1's tiles get as they are written.
fn epilogue(act: Activation) -> Epilogue {
    match act {
        Activation::QuickGelu => Epilogue::QuickGelu,
        Activation::Gelu => Epilogue::GeluErf,
        Activation::GeluTanh => Epilogue::GeluTanh,
    }
}

/// L2-normalizes each row of a `[batch, dim]` tensor.
pub fn l2_normalize_rows(x: &Tensor) -> CResult<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    x.broadcast_div(&norm)
}
