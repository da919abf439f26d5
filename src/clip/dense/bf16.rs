//! The linear layers in bfloat16 (`--precision bf16` on the CPU): weights rounded to bf16 once, at
//! load; activations rounded to bf16 as each layer packs them; products accumulated in f32 by
//! AVX512_BF16's `vdpbf16ps`, which multiplies 16 pairs of bf16 and adds both products to 16 f32
//! sums in one instruction — twice the multiply-adds of an f32 FMA, and half the bytes of weights to
//! read. Bias, residual, LayerNorm, GELU and softmax stay f32; attention's products are bf16 too.
//!
//! The layout is the f32 kernels' with k halved: a bf16 pair (k = 2p in the low half, 2p + 1 in the
//! high half, as `vdpbf16ps` reads them) fills the 32 bits of one f32 slot. So a weight panel holds,
//! for each pair p, NR such words, and a panel of packed rows, for each p, MR of them; the blocked
//! loop (`tiles.rs`), its threading and prefetching, the packing transposes (`pack.rs`, which move
//! bits and never compute with them) run unchanged on k/2 "floats". What differs: rounding to bf16
//! before packing ([`to_pairs`]), the microkernel's step (a broadcast pair and two `vdpbf16ps`,
//! `microkernel::avx512::tile_bf16`), and fc1's finished tiles rounded into fc2's packed pairs.
//!
//! Arithmetic, exactly (checked bit for bit by the tests against [`reference`]): each operand is
//! rounded to the nearest bf16, ties to even; each step adds to the f32 sum first the product of
//! the high halves, then that of the low halves, each product exact and each add rounded to
//! nearest even (as Intel's pseudo-code for `vdpbf16ps` says, and as Zen 4 was measured to do);
//! inputs and outputs below f32's normal range are flushed to zero by the hardware (CLIP's
//! activations and weights are nowhere near). Attention's two products run in the same arithmetic
//! under `--precision bf16` and `int8` (`attention.rs`). Not for: CPUs with AMX, where `--precision bf16`
//! runs on the tiles (`amx/`, one `tdpbf16ps` product), or int8.

use super::pack::{convert_rows, pack_rows as pack_f32_rows, pack_weight_rows, Line};
use super::{HostNorm, Simd};
use rayon::prelude::*;
use std::sync::OnceLock;

/// Whether this CPU runs the bf16 layers: AVX-512 kernels (not lowered by `IMGVEC_SIMD`) and
/// AVX512_BF16.
pub fn available() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            Simd::get() == Simd::Avx512 && std::arch::is_x86_feature_detected!("avx512bf16")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Why [`available`] is false, for the refusal of `--precision bf16`.
pub fn unavailable_reason() -> String {
    super::missing_instructions(
        "bf16",
        "AVX512_BF16",
        "AMD Zen 4 and later, Intel Cooper Lake and Sapphire Rapids and later",
    )
}

/// `x` rounded to the nearest bf16, ties to even, as its 16 bits (NaN stays NaN; f32 subnormals
/// flush to zero, as the hardware conversion does).
pub(super) fn round(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    if x != 0.0 && !x.is_normal() && x.is_finite() {
        return ((b >> 16) & 0x8000) as u16;
    }
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The f32 a bf16's 16 bits stand for.
#[cfg(test)]
pub(super) fn widen(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `src` rounded to bf16, two values to a 32-bit word (value 2p in the low half), into `dst`
/// (⌈len / 2⌉ words, a missing last high half zero), each word stored as the f32 with its bits.
pub(super) fn to_pairs(src: &[f32], dst: &mut [f32]) {
    // Times 1, exactly: the same bits as rounding `src` itself.
    to_pairs_scaled(src, 1.0, dst);
}

/// [`to_pairs`] of `src` times `scale` (each product rounded to f32, then to bf16): a softmax's
/// exponentials scaled by 1 / their sum as they are packed, in one pass.
pub(super) fn to_pairs_scaled(src: &[f32], scale: f32, dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), src.len().div_ceil(2));
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX512_BF16 present (available); the lengths as the function asks.
        done = unsafe { to_pairs_avx512(src, scale, dst) };
    }
    for (p, d) in dst.iter_mut().enumerate().skip(done / 2) {
        let lo = round(src[2 * p] * scale);
        let hi = src.get(2 * p + 1).map_or(0, |&v| round(v * scale));
        *d = f32::from_bits(lo as u32 | (hi as u32) << 16);
    }
}

/// [`to_pairs_scaled`] for whole groups of 32 values; returns how many values it converted.
///
/// # Safety
/// The CPU has AVX-512F and AVX512_BF16; `dst` holds at least `src.len() / 2` words.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn to_pairs_avx512(src: &[f32], scale: f32, dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let whole = src.len() / 32 * 32;
    let s = _mm512_set1_ps(scale);
    for i in (0..whole).step_by(32) {
        // SAFETY: i + 32 ≤ src.len(); dst has (i + 32) / 2 words (the contract); unaligned.
        unsafe {
            let lo = _mm512_mul_ps(_mm512_loadu_ps(src.as_ptr().add(i)), s);
            let hi = _mm512_mul_ps(_mm512_loadu_ps(src.as_ptr().add(i + 16)), s);
            // 32 bf16 in order: lo's 16 in the low 256 bits, hi's above.
            let packed = _mm512_cvtne2ps_pbh(hi, lo);
            _mm512_storeu_si512(
                dst.as_mut_ptr().add(i / 2).cast(),
                std::mem::transmute::<__m512bh, __m512i>(packed),
            );
        }
    }
    whole
}

/// Two rows rounded to bf16 and interleaved into pairs: word c holds `lo[c]` in its low half and
/// `hi[c]` (0 without `hi`) in its high half — consecutive k's of a column-major operand (attention's
/// values and probabilities, whose k runs down the rows) as the pair layout wants them.
pub(super) fn interleave_rows(lo: &[f32], hi: Option<&[f32]>, dst: &mut [f32]) {
    debug_assert!(lo.len() == dst.len() && hi.is_none_or(|h| h.len() == lo.len()));
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(hi)) = (available(), hi) {
        // SAFETY: AVX512_BF16 present (available); the three lengths equal.
        done = unsafe { interleave_rows_avx512(lo, hi, dst) };
    }
    for c in done..dst.len() {
        let h = hi.map_or(0, |h| round(h[c]));
        dst[c] = f32::from_bits(round(lo[c]) as u32 | (h as u32) << 16);
    }
}

/// [`interleave_rows`] for whole groups of 16 columns; returns how many it did.
///
/// # Safety
/// The CPU has AVX-512F and AVX512_BF16; `lo`, `hi` and `dst` are equally long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn interleave_rows_avx512(lo: &[f32], hi: &[f32], dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let whole = dst.len() / 16 * 16;
    for c in (0..whole).step_by(16) {
        // SAFETY: c + 16 ≤ the three lengths (the contract); unaligned loads and stores.
        unsafe {
            let l = _mm512_cvtneps_pbh(_mm512_loadu_ps(lo.as_ptr().add(c)));
            let h = _mm512_cvtneps_pbh(_mm512_loadu_ps(hi.as_ptr().add(c)));
            let l = _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(l));
            let h = _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(h));
            let words = _mm512_or_si512(l, _mm512_slli_epi32::<16>(h));
            _mm512_storeu_si512(dst.as_mut_ptr().add(c).cast(), words);
        }
    }
    whole
}

/// `n` weight rows of `k` floats (`y = x Wᵀ`) in bf16 pairs, packed as the f32 kernels' panels of
/// ⌈k / 2⌉ words, replacing `out`'s contents.
pub(super) fn pack_weight(w: &[f32], n: usize, k: usize, out: &mut Vec<Line>) {
    let kp = k.div_ceil(2);
    let mut pairs = vec![0f32; n * kp];
    pairs
        .par_chunks_mut(kp)
        .zip(w.par_chunks(k))
        .for_each(|(d, s)| to_pairs(s, d));
    pack_weight_rows(Simd::Avx512, &pairs, n, kp, kp, out);
}

/// `m` rows of `k` floats (normalized by `norm` first if given) in bf16 pairs, packed in panels of
/// `mr` rows as the microkernel reads them, replacing `out`'s contents.
pub(super) fn pack_rows(
    x: &[f32],
    m: usize,
    k: usize,
    mr: usize,
    norm: Option<HostNorm<'_>>,
    out: &mut Vec<Line>,
) {
    let kp = k.div_ceil(2);
    let (pairs, _) = convert_rows(x, m, k, kp, norm, |row, dst| {
        to_pairs(row, dst);
        0.0
    });
    pack_f32_rows(Simd::Avx512, &pairs, m, kp, kp, mr, None, true, out);
}

/// The arithmetic of the bf16 layers, one output at a time: `y = x · Wᵀ + b (+ residual)` with x
/// and W rounded to bf16, each pair's two products added to the f32 sum high half first, in k
/// blocks of `kc` pairs. The first block's sum starts from the bias plus the residual, and each
/// later block's from zero, added to the output at its end (as the microkernel's `Init::Start` and
/// `Init::Accumulate` do) — except in a last panel cut by n (columns from `n / nr · nr` when `nr`
/// does not divide n), whose every block starts from zero, the start added at its end
/// (`Panels::run_edge`). For tests.
#[cfg(test)]
pub(super) fn reference(
    x: &[f32],
    w: &[f32],
    (b, r): (Option<&[f32]>, Option<&[f32]>),
    (m, n, k): (usize, usize, usize),
    (kc, nr): (usize, usize),
) -> Vec<f32> {
    let q = |v: &[f32], row: usize, c: usize| {
        if c < k {
            widen(round(v[row * k + c]))
        } else {
            0.0
        }
    };
    let kp = k.div_ceil(2);
    let cut = if n.is_multiple_of(nr) { n } else { n / nr * nr };
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let start = b.map_or(0.0, |b| b[j]) + r.map_or(0.0, |r| r[i * n + j]);
            let mut out = start;
            for (blk, p0) in (0..kp).step_by(kc).enumerate() {
                let first = blk == 0 && j < cut;
                let mut s = if first { start } else { 0.0 };
                for p in p0..(p0 + kc).min(kp) {
                    s += q(x, i, 2 * p + 1) * q(w, j, 2 * p + 1);
                    s += q(x, i, 2 * p) * q(w, j, 2 * p);
                }
                out = if first { s } else { s + out };
            }
            y[i * n + j] = out;
        }
    }
    y
}

/// A finished f32 tile (`rows` ≤ 16 rows of `cols` ≤ 32 floats, even, `ld` apart) rounded into the
/// next layer's packed rows: its `cols / 2` pairs, each pair's `mr` rows adjacent, at `dst` (the
/// pairs' place in a panel of `mr` rows; rows past `rows` are left as they are).
///
/// # Safety
/// `src` holds the tile as said, `dst` room for `cols / 2 × mr` words, `rows ≤ mr`, and the CPU
/// has AVX-512F (the packed rows are only made where [`available`]).
pub(super) unsafe fn interleave_pairs(
    src: *const f32,
    ld: usize,
    rows: usize,
    cols: usize,
    mr: usize,
    dst: *mut f32,
) {
    debug_assert!(rows <= 16 && cols <= 32 && cols.is_multiple_of(2));
    let mut pairs = [0f32; 16 * 16];
    let words = cols / 2;
    for r in 0..rows {
        // SAFETY: row r < rows of the tile, `cols` floats at src + r · ld (the contract).
        let row = unsafe { std::slice::from_raw_parts(src.add(r * ld), cols) };
        to_pairs(row, &mut pairs[r * words..(r + 1) * words]);
    }
    // SAFETY: `pairs` holds rows × words values, `words` apart; dst and rows ≤ mr as the contract
    // says; AVX-512F present (the contract).
    unsafe { super::pack::interleave(Simd::Avx512, pairs.as_ptr(), words, rows, words, mr, dst) }
}
