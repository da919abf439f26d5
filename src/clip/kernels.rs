//! Fused CPU kernels for the element-wise parts of the encoder: the GELUs and softmax.
//!
//! candle computes these with one scalar `exp` per element and one pass per operation; at ViT-L/14
//! sizes that cost about a quarter of the encoder's time (measured: `benches/profile_ops.rs`). Here each
//! is a single pass over contiguous f32 data, split across threads, with an exp the compiler can
//! vectorize (Cephes' polynomial, about 1 ulp) compiled for AVX-512 or AVX2+FMA when the CPU has them
//! (detected at run time, as `dense::Simd` says). Any other device or dtype falls back to candle's own ops, so results are
//! the same function everywhere. Not for: matmuls (candle/gemm) or anything with weights.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel task: big enough to amortise scheduling, small enough to balance 2-64 cores.
const CHUNK: usize = 16 * 1024;

/// ln 2 in two parts (`LN2_HI` exact in few bits), for the reduction `r = x − n·ln 2`.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// exp's polynomial on the reduced argument, highest power first: `e^r ≈ 1 + r + r²·p(r)`.
const EXP_P: [f32; 6] = [
    1.987_569_2e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];
/// Below this, exp is under f32's smallest normal.
const EXP_MIN: f32 = -87.3;

/// `exp(x)`, relative error about 1 ulp on the f32 range; written branch-free so loops of it vectorize.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // Above 88.3 it overflows. max/min (not clamp) so that a NaN becomes a number here and `n`
    // below is always defined; the NaN is given back at the end.
    let nan = x.is_nan();
    #[allow(clippy::manual_clamp)]
    let x = x.max(EXP_MIN).min(88.3);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = EXP_P[1..].iter().fold(EXP_P[0], |p, &c| p * r + c);
    let e = p * r * r + r + 1.0;
    // SAFETY: x is clamped (a NaN too: max/min return the other operand), so n is a finite whole
    // number in [-126, 128]: it fits an i32. (`as i32` would be safe too, but its saturation checks
    // stop the loop from vectorizing.)
    let n = unsafe { n.to_int_unchecked::<i32>() };
    let y = f32::from_bits(((n + 127) as u32) << 23) * e;
    if nan {
        f32::NAN
    } else {
        y
    }
}

/// `exp(x)` for softmax's `v − max` (x ≤ 0, −∞ or NaN): [`exp`]'s reduction and polynomial on
/// fused multiply-adds, 16 vector operations for 8 or 16 values instead of 26; a NaN stays NaN
/// through the arithmetic. Only for code compiled with FMA (the SIMD kernels), where `mul_add` is
/// one instruction rather than a library call.
#[inline(always)]
fn exp_nonpositive_fma(x: f32) -> f32 {
    // 1.5 · 2²³: adding it rounds to a whole number, which lands in the low bits.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < EXP_MIN { EXP_MIN } else { x };
    let t = x.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let p = EXP_P[1..].iter().fold(EXP_P[0], |p, &c| p.mul_add(r, c));
    let e = (p * r).mul_add(r, r) + 1.0;
    // 2ⁿ: n + 127 in the exponent bits (n ≥ −126: x was clamped).
    let bits = t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    e * f32::from_bits(bits << 23)
}

/// `exp(x)` for any x on fused multiply-adds: [`exp_nonpositive_fma`] with x above 88 taken as 88
/// (a NaN stays NaN), so that 2ⁿ stays finite. For the reduced precisions' quick-GELU.
#[inline(always)]
fn exp_fma(x: f32) -> f32 {
    exp_nonpositive_fma(if x > 88.0 { 88.0 } else { x })
}

/// `x · sigmoid(1.702 x)` as [`quick_gelu_one`], its exponential on fused multiply-adds (16 vector
/// operations instead of 26): within a few units in the last place of it, not bit for bit. The
/// activation of the bf16 and int8 layers (`Epilogue::QuickGeluFma`), whose outputs are rounded to
/// 8 significant bits or fewer right after.
#[inline(always)]
fn quick_gelu_fma_one(x: f32) -> f32 {
    x / (1.0 + exp_fma(-1.702 * x))
}

#[inline(always)]
fn quick_gelu_fma_generic(src: &[f32], dst: &mut [f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = quick_gelu_fma_one(x);
    }
}

#[inline(always)]
fn quick_gelu_fma_in_place_generic(buf: &mut [f32]) {
    for x in buf.iter_mut() {
        *x = quick_gelu_fma_one(*x);
    }
}

#[inline(always)]
fn quick_gelu_generic(src: &[f32], dst: &mut [f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = quick_gelu_one(x);
    }
}

#[inline(always)]
fn quick_gelu_in_place_generic(buf: &mut [f32]) {
    for x in buf.iter_mut() {
        *x = quick_gelu_one(*x);
    }
}

/// `x · sigmoid(1.702 x)`: the one formula both quick-GELU kernels use, so a layer's fused
/// epilogue and the separate pass agree bit for bit.
#[inline(always)]
fn quick_gelu_one(x: f32) -> f32 {
    x / (1.0 + exp(-1.702 * x))
}

#[inline(always)]
fn gelu_tanh_in_place_generic(buf: &mut [f32]) {
    for x in buf.iter_mut() {
        *x = gelu_tanh_one(*x);
    }
}

/// GELU's tanh approximation (`gelu_pytorch_tanh`, SigLIP's activation),
/// `0.5 x (1 + tanh(u))` with `u = √(2/π) (x + 0.044715 x³)`, written as `x · sigmoid(2u)` (the
/// same function: `1 + tanh(u) = 2 sigmoid(2u)`), quick-GELU's shape.
#[inline(always)]
fn gelu_tanh_one(x: f32) -> f32 {
    // 2·√(2/π)
    const C: f32 = 1.595_769_2;
    x / (1.0 + exp(-C * (x + 0.044_715 * x * x * x)))
}

#[inline(always)]
fn gelu_erf_in_place_generic(buf: &mut [f32]) {
    for x in buf.iter_mut() {
        *x = gelu_erf_one(*x);
    }
}

/// Exact GELU (`gelu`: LAION / MetaCLIP CLIP, Chinese-CLIP's text), `0.5 x (1 + erf(x/√2))`, with
/// `1 + erf(z)` as `erfc(−z)`: for z < 0 that is `E = erfc(|z|)`, else `2 − E`, and E by
/// Abramowitz & Stegun 7.1.26, `t·(a₁ + a₂t + … + a₅t⁴)·exp(−z²)` with `t = 1/(1 + p|z|)`,
/// absolute error under 1.5·10⁻⁷ (f32's rounding is 6·10⁻⁸ of 1): no cancellation for negative
/// x, branch-free so that it vectorizes (candle's `gelu_erf` is one scalar f64 erf per element,
/// on one thread).
#[inline(always)]
fn gelu_erf_one(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        1.061_405_4,
        -1.453_152,
        1.421_413_7,
        -0.284_496_74,
        0.254_829_6,
    ];
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let az = z.abs();
    let t = 1.0 / (1.0 + P * az);
    let poly = A[1..].iter().fold(A[0], |p, &c| p * t + c);
    let e = t * poly * exp(-az * az);
    let one_plus_erf = if z < 0.0 { e } else { 2.0 - e };
    0.5 * x * one_plus_erf
}

/// Softmax of each row of `n` values, in place.
#[inline(always)]
fn softmax_rows_generic(buf: &mut [f32], n: usize) {
    for d in buf.chunks_exact_mut(n) {
        let max = d.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for o in d.iter_mut() {
            *o = exp(*o - max);
        }
        // Sixteen partial sums: a float sum in one accumulator cannot be vectorized.
        let mut acc = [0f32; 16];
        let mut chunks = d.chunks_exact(16);
        for c in &mut chunks {
            for (a, v) in acc.iter_mut().zip(c) {
                *a += v;
            }
        }
        let sum: f32 = acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
        let inv = 1.0 / sum;
        d.iter_mut().for_each(|o| *o *= inv);
    }
}

/// Softmax down each column of `buf` (rows of `width` floats), in place: each column is one
/// distribution. The width is one weight panel's, 16 (AVX2) or 32 (AVX-512), so a row stays in
/// registers: the maxima, exps and sums run a panel's columns at a time, with no reduction across
/// lanes.
#[inline(always)]
fn softmax_columns_generic(buf: &mut [f32], width: usize) {
    match width {
        16 => softmax_columns_of::<16>(buf),
        32 => softmax_columns_of::<32>(buf),
        _ => panic!("softmax_columns: width {width}, not a weight panel's (16 or 32)"),
    }
}

#[inline(always)]
fn softmax_columns_of<const W: usize>(buf: &mut [f32]) {
    // (A NaN is skipped by the maximum, as `f32::max` does, and comes back through exp.)
    let mut max = [f32::NEG_INFINITY; W];
    for row in buf.chunks_exact(W) {
        for (m, &v) in max.iter_mut().zip(row) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut sum = [0f32; W];
    for row in buf.chunks_exact_mut(W) {
        for ((v, s), m) in row.iter_mut().zip(&mut sum).zip(&max) {
            *v = exp_nonpositive_fma(*v - m);
            *s += *v;
        }
    }
    let inv = sum.map(|s| 1.0 / s);
    for row in buf.chunks_exact_mut(W) {
        for (v, i) in row.iter_mut().zip(&inv) {
            *v *= i;
        }
    }
}

/// Softmax's exponentials over the first `valid` values of `row`, in place (each `e^(v − max)`),
/// and zero from there to its end, with 1 / their sum into `inv`: one query's attention scores in
/// a row, the keys it may not see (causal) or that are padding set to exactly zero, the scaling
/// left to the caller's next pass. Sixteen lanes of maxima and sums, as [`softmax_columns_of`]
/// keeps one a column.
#[inline(always)]
fn exp_row_prefix_generic(row: &mut [f32], valid: usize, inv: &mut f32) {
    let (live, dead) = row.split_at_mut(valid);
    dead.fill(0.0);
    let larger = |m: f32, v: f32| if v > m { v } else { m };
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = live.chunks_exact(16);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = larger(*m, v);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| larger(m, v));
    let max = lanes.iter().fold(tail, |m, &v| larger(m, v));
    let mut sums = [0f32; 16];
    let mut chunks = live.chunks_exact_mut(16);
    for c in &mut chunks {
        for (v, s) in c.iter_mut().zip(&mut sums) {
            *v = exp_nonpositive_fma(*v - max);
            *s += *v;
        }
    }
    let mut tail = 0f32;
    for v in chunks.into_remainder() {
        *v = exp_nonpositive_fma(*v - max);
        tail += *v;
    }
    *inv = 1.0 / (sums.iter().sum::<f32>() + tail);
}

dispatch!(pub(super) quick_gelu_slice => quick_gelu_generic(src: &[f32], dst: &mut [f32]));
dispatch!(pub(super) quick_gelu_in_place => quick_gelu_in_place_generic(buf: &mut [f32]));
dispatch!(pub(super) quick_gelu_fma_slice => quick_gelu_fma_generic(src: &[f32], dst: &mut [f32]));
dispatch!(pub(super) quick_gelu_fma_in_place => quick_gelu_fma_in_place_generic(buf: &mut [f32]));
dispatch!(pub(super) gelu_tanh_in_place => gelu_tanh_in_place_generic(buf: &mut [f32]));
dispatch!(pub(super) gelu_erf_in_place => gelu_erf_in_place_generic(buf: &mut [f32]));
dispatch!(pub(super) softmax_rows => softmax_rows_generic(buf: &mut [f32], n: usize));
dispatch!(pub(super) softmax_columns => softmax_columns_generic(buf: &mut [f32], width: usize));
dispatch!(pub(super) exp_row_prefix => exp_row_prefix_generic(row: &mut [f32], valid: usize, inv: &mut f32));

/// The contiguous f32 data of a CPU storage, or `None` (then the caller falls back to candle).
pub(super) fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Option<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((start, end))) => v.get(start..end),
        _ => None,
    }
}

struct QuickGelu;

impl CustomOp1 for QuickGelu {
    fn name(&self) -> &'static str {
        "imgvec-quick-gelu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout)
            .ok_or_else(|| candle_core::Error::Msg("quick_gelu: contiguous f32 expected".into()))?;
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| quick_gelu_slice(s, d));
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "imgvec-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout)
            .ok_or_else(|| candle_core::Error::Msg("softmax: contiguous f32 expected".into()))?;
        let n = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let rows_per_task = (CHUNK / n).max(1);
        let mut dst = src.to_vec();
        dst.par_chunks_mut(rows_per_task * n)
            .for_each(|d| softmax_rows(d, n));
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

/// Attention of every head at once: `softmax(q kᵀ + mask) v`, for `q`, `k`, `v` of shape
/// `[heads, tokens, head_dim]` with the 1/√d scale already in `q`.
///
/// candle runs a batched matmul as one small multi-threaded GEMM per head, one after another, and
/// ViT-L/14's heads are too small for that to pay (measured: 30-40 GFLOP/s). Here the heads run in
/// parallel, each with a single-threaded GEMM, and a head's score matrix (257² floats) stays in cache
/// between the two products and the softmax.
struct Attention {
    causal: bool,
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "imgvec-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let msg = |m: &str| candle_core::Error::Msg(format!("attention: {m}"));
        let (q, k, v) = match (
            contiguous_f32(s1, l1),
            contiguous_f32(s2, l2),
            contiguous_f32(s3, l3),
        ) {
            (Some(q), Some(k), Some(v)) => (q, k, v),
            _ => return Err(msg("contiguous f32 q, k, v expected")),
        };
        let (heads, n, d) = l1.shape().dims3()?;
        if l2.shape() != l1.shape() || l3.shape() != l1.shape() {
            return Err(msg("q, k and v differ in shape"));
        }
        let causal = self.causal;
        let mut out = vec![0f32; heads * n * d];
        out.par_chunks_mut(n * d).enumerate().for_each_init(
            || vec![0f32; n * n],
            |scores, (h, o)| {
                let at = h * n * d;
                let head = Head {
                    q: &q[at..at + n * d],
                    k: &k[at..at + n * d],
                    v: &v[at..at + n * d],
                    n,
                    d,
                };
                head.attend(scores, o, causal);
            },
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// One head's `q`, `k`, `v` (each `n × d`, row-major) for [`Attention`].
struct Head<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    n: usize,
    d: usize,
}

impl Head<'_> {
    /// `o (n×d) = softmax(q kᵀ [+ causal mask]) v`, the scores in `scores` (`n × n`).
    fn attend(&self, scores: &mut [f32], o: &mut [f32], causal: bool) {
        let (n, d) = (self.n, self.d);
        assert!(scores.len() >= n * n && o.len() >= n * d);
        // scores (n×n) = q (n×d) · kᵀ (d×n)
        // SAFETY: every pointer/stride pair describes memory inside the slices: scores is n×n
        // row-major (checked above), q and k are n×d row-major (their length is n·d).
        unsafe {
            gemm_f32(
                n,
                n,
                d,
                scores.as_mut_ptr(),
                n,
                self.q.as_ptr(),
                d,
                1,
                self.k.as_ptr(),
                1,
                d,
            )
        };
        if causal {
            for r in 0..n {
                scores[r * n + r + 1..(r + 1) * n].fill(f32::NEG_INFINITY);
            }
        }
        softmax_rows(&mut scores[..n * n], n);
        // o (n×d) = scores (n×n) · v (n×d)
        // SAFETY: o is n×d row-major (checked above), scores n×n, v n×d row-major.
        unsafe {
            gemm_f32(
                n,
                d,
                n,
                o.as_mut_ptr(),
                d,
                scores.as_ptr(),
                n,
                1,
                self.v.as_ptr(),
                d,
                1,
            )
        };
    }
}

/// `dst (m×n, row stride ld_dst) = lhs (m×k; row stride lhs_rs, column stride lhs_cs) · rhs (k×n;
/// row stride rhs_rs, column stride rhs_cs)`, one thread, through the `gemm` crate.
///
/// # Safety
/// Each pointer with its strides must describe memory valid for the whole matrix it names (`dst`
/// writable), and `dst` must not overlap the others.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    ld_dst: usize,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
) {
    // SAFETY: the caller's contract; gemm reads lhs and rhs and writes dst within those extents.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            ld_dst as isize,
            false,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `softmax(q kᵀ [+ causal mask]) v` per head; `q`, `k`, `v`: `[heads, tokens, head_dim]`, `q` scaled.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<Tensor> {
    if fused_ok(q) {
        return q.contiguous()?.apply_op3_no_bwd(
            &k.contiguous()?,
            &v.contiguous()?,
            &Attention { causal },
        );
    }
    let mut scores = q.matmul(&k.t()?)?;
    if causal {
        let n = q.dim(1)?;
        let mask: Vec<f32> = (0..n)
            .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (n, n), q.device())?.to_dtype(scores.dtype())?;
        scores = scores.broadcast_add(&mask)?;
    }
    candle_nn::ops::softmax_last_dim(&scores)?.matmul(v)
}

fn fused_ok(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// `x · sigmoid(1.702 x)`, OpenAI CLIP's activation.
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    if fused_ok(x) {
        x.contiguous()?.apply_op1_no_bwd(&QuickGelu)
    } else {
        x * candle_nn::ops::sigmoid(&(x * 1.702)?)?
    }
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused_ok(x) {
        x.contiguous()?.apply_op1_no_bwd(&SoftmaxLastDim)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

#[cfg(test)]
mod tests;
