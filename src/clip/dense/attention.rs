//! Self-attention on CPU straight from the fused q/k/v product, on the packed-GEMM microkernels.
//!
//! The q/k/v layer's output `[batch·tokens, 3·hidden]` holds each token's q, k and v side by side,
//! each split into heads. For every image and head (in parallel, one per task) this packs that
//! head's q rows and k rows from where they lie, multiplies them (`q kᵀ`, the score matrix stays in
//! the task's cache), applies the causal mask and the softmax, packs the scores and v, and writes
//! the head's context columns straight into `[batch·tokens, hidden]`: the layout the output
//! projection reads. So nothing is permuted or copied between the products, and each product runs on
//! the same tiles as the linear layers. Not for: GPUs, other dtypes, or CPUs without AVX2+FMA
//! (`kernels::attention` and candle's ops do those).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::pack::{lines_as_floats, pack_rows, pack_weight_cols, pack_weight_rows, Line};
use super::tiles::{Out, Panels, SendPtr};
use super::Simd;

/// Per-task buffers, reused across the heads a thread runs.
#[derive(Default)]
struct Scratch {
    /// Packed rows: q, then the scores.
    rows: Vec<Line>,
    /// Packed panels: k, then v.
    panels: Vec<Line>,
    scores: Vec<f32>,
}

/// `softmax(q kᵀ [+ causal mask]) v` for every image and head of `qkv` (`[batch, tokens, 3·hidden]`,
/// q already scaled by 1/√head_dim), as `[batch, tokens, hidden]`, heads side by side. `None` where
/// this path does not apply (not f32 on a CPU with AVX2+FMA): the caller uses the general one.
pub fn attention_from_qkv(qkv: &Tensor, heads: usize, causal: bool) -> Result<Option<Tensor>> {
    if !qkv.device().is_cpu() || qkv.dtype() != DType::F32 || Simd::get() == Simd::None {
        return Ok(None);
    }
    let (_, _, d3) = qkv.dims3()?;
    if heads == 0 || d3 % (3 * heads) != 0 {
        candle_core::bail!("attention: width {d3} is not 3 × {heads} heads");
    }
    Ok(Some(qkv.contiguous()?.apply_op1_no_bwd(&FromQkv {
        simd: Simd::get(),
        heads,
        causal,
    })?))
}

struct FromQkv {
    simd: Simd,
    heads: usize,
    causal: bool,
}

impl CustomOp1 for FromQkv {
    fn name(&self) -> &'static str {
        "imgvec-attention-qkv"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = super::layer::contiguous_f32(s, l)?;
        let (batch, n, d3) = l.shape().dims3()?;
        let out = attention(self.simd, qkv, batch, n, d3 / 3, self.heads, self.causal);
        Ok((CpuStorage::F32(out), Shape::from((batch, n, d3 / 3))))
    }
}

/// As [`attention_from_qkv`] on the raw floats: `qkv` is `batch·n` rows of `3·d`.
fn attention(
    simd: Simd,
    qkv: &[f32],
    batch: usize,
    n: usize,
    d: usize,
    heads: usize,
    causal: bool,
) -> Vec<f32> {
    assert_eq!(qkv.len(), batch * n * 3 * d, "attention: qkv size");
    let hd = d / heads;
    let d3 = 3 * d;
    let (_, nr) = simd.tile();
    let mut out = vec![0f32; batch * n * d];
    let dst = SendPtr(out.as_mut_ptr());
    (0..batch * heads)
        .into_par_iter()
        .for_each_init(Scratch::default, |s, task| {
            let (image, head) = (task / heads, task % heads);
            let rows = &qkv[image * n * d3..(image + 1) * n * d3];
            let (q, k, v) = (
                &rows[head * hd..],
                &rows[d + head * hd..],
                &rows[2 * d + head * hd..],
            );
            // scores (n × n) = q (n × hd) · kᵀ: k's rows are the "weight" rows.
            pack_rows(simd, q, n, hd, d3, None, false, &mut s.rows);
            pack_weight_rows(simd, k, n, hd, d3, &mut s.panels);
            // Every score is written by the product below: only the length needs setting.
            s.scores.resize(n * n, 0.0);
            let scores = Out::rows(s.scores.as_mut_ptr(), n);
            let kt = Panels {
                simd,
                n,
                k: hd,
                data: lines_as_floats(&s.panels),
                bias: None,
            };
            // SAFETY: scores holds n rows of n floats; the packed buffers were made for these
            // sizes just above; this task alone uses them.
            unsafe { kt.block(lines_as_floats(&s.rows), n, &scores, 0..n.div_ceil(nr)) };
            if causal {
                for r in 0..n {
                    s.scores[r * n + r + 1..(r + 1) * n].fill(f32::NEG_INFINITY);
                }
            }
            crate::clip::kernels::softmax_rows(&mut s.scores, n);
            // context (n × hd) = scores (n × n) · v (n × hd), into this head's columns of out.
            pack_rows(simd, &s.scores, n, n, n, None, false, &mut s.rows);
            pack_weight_cols(simd, v, n, hd, d3, &mut s.panels);
            // SAFETY: row image·n, column head·hd lies inside out (batch·n rows of d).
            let ctx = Out::rows(unsafe { dst.get().add(image * n * d + head * hd) }, d);
            let vp = Panels {
                simd,
                n: hd,
                k: n,
                data: lines_as_floats(&s.panels),
                bias: None,
            };
            // SAFETY: the task writes rows image·n.. of columns head·hd..(head+1)·hd of out, which
            // no other task writes; n rows of hd columns, d apart, fit from that start.
            unsafe { vp.block(lines_as_floats(&s.rows), n, &ctx, 0..hd.div_ceil(nr)) };
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Against candle's own ops (per head: matmul, mask, softmax, matmul) on every SIMD level this
    /// CPU has, for image and text shapes, heads narrower than a panel included.
    #[test]
    fn matches_candle_ops() -> Result<()> {
        let levels = match super::super::detect() {
            Simd::Avx512 => vec![Simd::Avx512, Simd::Avx2],
            Simd::Avx2 => vec![Simd::Avx2],
            Simd::None => vec![],
        };
        let dev = Device::Cpu;
        for simd in levels {
            for &(batch, n, heads, hd, causal) in &[
                (1, 257, 4, 64, false),
                (2, 50, 3, 24, false),
                (2, 77, 2, 64, true),
                (1, 5, 1, 8, true),
            ] {
                let d = heads * hd;
                let qkv = Tensor::randn(0f32, 1., (batch, n, 3 * d), &dev)?;
                let got = attention(
                    simd,
                    &qkv.flatten_all()?.to_vec1::<f32>()?,
                    batch,
                    n,
                    d,
                    heads,
                    causal,
                );
                let split = qkv
                    .reshape((batch, n, 3, heads, hd))?
                    .permute((2, 0, 3, 1, 4))?;
                let part = |i: usize| -> Result<Tensor> {
                    split.get(i)?.contiguous()?.reshape((batch * heads, n, hd))
                };
                let (q, k, v) = (part(0)?, part(1)?, part(2)?);
                let mut scores = q.matmul(&k.t()?)?;
                if causal {
                    let mask: Vec<f32> = (0..n)
                        .flat_map(|i| {
                            (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })
                        })
                        .collect();
                    scores = scores.broadcast_add(&Tensor::from_vec(mask, (n, n), &dev)?)?;
                }
                let want = candle_nn::ops::softmax_last_dim(&scores)?
                    .matmul(&v)?
                    .reshape((batch, heads, n, hd))?
                    .transpose(1, 2)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                assert_eq!(got.len(), want.len());
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{simd:?} batch={batch} n={n} heads={heads} hd={hd} causal={causal}: [{i}] = {g}, want {w}"
                    );
                }
            }
        }
        Ok(())
    }
}
