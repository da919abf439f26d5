//! The linear layers in 8-bit integers (`--precision int8` on the CPU): each weight row (output
//! channel) quantized symmetrically once, at load (`w ≈ sw · q`, q in −127..127); each activation
//! row (token) quantized likewise as the layer packs it (`x ≈ sx · q`), after its LayerNorm;
//! products summed exactly in 32-bit integers by `vpdpbusd` (AVX-512 VNNI: 64 byte products into
//! 16 sums an instruction, four times an f32 FMA's multiply-adds, a quarter of the bytes of weights
//! to read; or AVX-VNNI's 256-bit form on AVX2-only CPUs, in the AVX2 kernels' 6 × 16 tiles; or,
//! on AVX2 CPUs without any VNNI, exact sums from AVX2's `vpmaddubsw` and `vpmaddwd` with the
//! weights in 7 bits, [`Dot::Madd`]: about 1.8× an f32 tile's multiply-adds there); each k
//! block's sum scaled back to f32 (`sx · sw`) and added to the output. Bias, residual, LayerNorm,
//! GELU and softmax stay f32; attention's two products run in bf16 where the CPU has AVX512_BF16
//! (`attention.rs`), in f32 elsewhere.
//!
//! `vpdpbusd` multiplies unsigned bytes (its register operand) by signed ones (its last operand,
//! which can be a word broadcast from memory): the weights go in offset by 128 (1..255), the
//! activations as they are, each row's word the broadcast operand (`microkernel_int8.rs`). Each of
//! a row's sums then carries `128 · Σ q_x` over the k block too much: that is taken off exactly, in
//! integers, by starting the block's sums at `−128 · Σ q_x` (`comp`, one integer per row and k
//! block, computed as the rows are packed). Each block's sum is then exactly `Σ q_x · q_w`, at most
//! 1,024 · 127² < 2²⁴ in size (a k block is at most 256 words), so it also converts to f32 exactly;
//! on the way the sums stay within ±(255 + 128) · 127 · 1,024 ≈ 5·10⁷, far inside an i32.
//!
//! The layout is the f32 kernels' with k quartered: four consecutive k's bytes fill one f32 slot.
//! The blocked loop (`tiles.rs`), its threads, prefetching and the packing transposes run unchanged
//! on ⌈k / 4⌉ "floats"; the row scales and compensations travel after the packed rows, the column
//! scales with the weights. Unlike f32 and bf16, fc1's output is not written straight into fc2's
//! packed rows: a row's scale needs the whole row, which no one task computes.
//!
//! Arithmetic, exactly (checked bit for bit by the tests against [`reference`]): `q = clamp(round(v
//! / s), −127, 127)`, ties to even, with `s = max |v| / 127` (a zero row: `s = 0`, q = 0; the
//! weights under [`Dot::Madd`]: `/ 63`, [`reference_levels`]); at the end
//! of each k block `out = base + (Σ q_x · q_w as f32) · (sx · sw)`, `base` the bias plus the
//! residual for the first block, the output so far for later ones. Measured on random-weight
//! ViT-L/14 (seed 7): cosine to the f32 embedding ≥ 0.9994 (docs/performance.md). Not for: CPUs with
//! AMX-INT8, where the layers run on its tiles (`amx/`: `tdpbssd`, exact sums over all of k).

use super::pack::{convert_rows, pack_rows as pack_f32_rows, pack_weight_rows, Line};
use super::tiles::k_block;
use super::{HostNorm, Simd};
use rayon::prelude::*;
use std::sync::OnceLock;

/// Whether this CPU runs the int8 layers ([`level`]).
pub fn available() -> bool {
    level().is_some()
}

/// The kernels the int8 layers run on here: AVX-512 (14 × 32 tiles) with AVX-512 VNNI and BW;
/// else AVX2's 6 × 16 tiles: with AVX-VNNI (Intel since Alder Lake, Sierra Forest), or where
/// `IMGVEC_SIMD=avx2` lowered an AVX-512 VNNI CPU (the same tile in EVEX encoding), or with
/// AVX2's own byte products where the CPU has no VNNI ([`Dot::Madd`]); else none.
pub(super) fn level() -> Option<Simd> {
    static LEVEL: OnceLock<Option<Simd>> = OnceLock::new();
    *LEVEL.get_or_init(|| match Simd::get() {
        Simd::Avx512 if runs_at(Simd::Avx512) => Some(Simd::Avx512),
        Simd::Avx512 | Simd::Avx2 if runs_at(Simd::Avx2) => Some(Simd::Avx2),
        _ => None,
    })
}

/// Whether this CPU has the instructions of the int8 tiles at `simd`: AVX-512F, BW and VNNI; or
/// AVX2 and FMA (and VNNI on ymm where it has it: [`dot_at`]).
pub(super) fn runs_at(simd: Simd) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        match simd {
            Simd::Avx512 => has!("avx512f") && has!("avx512bw") && has!("avx512vnni"),
            Simd::Avx2 => has!("avx2") && has!("fma"),
            Simd::None => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = simd;
        false
    }
}

/// How a tile sums four byte products into a 32-bit lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dot {
    /// One `vpdpbusd` (AVX-512 VNNI, AVX-VNNI): the weights offset by 128 the unsigned operand,
    /// the sums starting at the rows' compensations.
    Vnni,
    /// AVX2 alone, for CPUs without VNNI (Intel before Ice Lake / Alder Lake, AMD before Zen 4):
    /// `vpmaddubsw`, `vpmaddwd` by ones and `vpaddd`, three instructions where VNNI has one (see
    /// `microkernel_int8::avx2::dpbusd_madd`). `vpmaddubsw` sums each pair of byte products into
    /// a saturating 16-bit word, so its operands must keep a pair within ±2¹⁵: the activations
    /// go in as its unsigned operand offset by 128 (1..255, the row's word broadcast), the
    /// weights as the signed one with [`MADD_LEVELS`] levels each side instead of 127 (7 bits:
    /// 2 · 255 · 63 < 2¹⁵, exact). The offset is taken off by starting each column's sums at
    /// −128 · Σ q_w over the k block, computed once at load ([`Weights::comp`]).
    Madd,
}

/// The weights' levels each side of zero under [`Dot::Madd`] (127 elsewhere).
pub(super) const MADD_LEVELS: f32 = 63.0;

/// The instruction `simd`'s int8 tiles use on this CPU: VNNI where it has it on that width.
pub(super) fn dot_at(simd: Simd) -> Dot {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if simd == Simd::Avx2 && !has!("avxvnni") && !(has!("avx512vnni") && has!("avx512vl")) {
            return Dot::Madd;
        }
    }
    Dot::Vnni
}

/// Why [`available`] is false, for the refusal of `--precision int8`.
pub fn unavailable_reason() -> String {
    format!(
        "the CPU's linear layers run on {} here, and the int8 layers need AVX2 and FMA, or \
AVX-512 with VNNI",
        Simd::get().name()
    )
}

/// The scale of a row: max |v| / 127 (0 for a zero row).
pub(super) fn scale(row: &[f32]) -> f32 {
    largest(row) / 127.0
}

/// max |v| over `row`.
fn largest(row: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F present.
        return unsafe { largest_avx512(row) };
    }
    let mut m = [0f32; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in m.iter_mut().zip(c) {
            *a = a.max(v.abs());
        }
    }
    let tail = chunks.remainder().iter().fold(0f32, |a, &v| a.max(v.abs()));
    m.iter().fold(tail, |a, &v| a.max(v))
}

/// max |v| over `row` (the loop above does not vectorize: `f32::max` must pass NaN by; for finite
/// values the same result), 16 lanes at a time.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn largest_avx512(row: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mut m = _mm512_setzero_ps();
    for c in row.chunks(16) {
        // SAFETY: the mask enables the c.len() ≤ 16 lanes inside the chunk; the rest are not read.
        let v = unsafe { _mm512_maskz_loadu_ps(((1u32 << c.len()) - 1) as u16, c.as_ptr()) };
        m = _mm512_max_ps(m, _mm512_abs_ps(v));
    }
    _mm512_reduce_max_ps(m)
}

/// `v / s` rounded to the nearest integer, ties to even, within ±127 (0 where s is 0).
pub(super) fn quantize(v: f32, inv: f32) -> i8 {
    (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8
}

/// The weights of one layer in bytes, with what the kernels need besides.
pub(super) struct Weights {
    /// Per output column (padded to whole panels with zeros): `sw`.
    pub(super) scale: Vec<f32>,
    /// How the tiles sum the byte products.
    pub(super) dot: Dot,
    /// Under [`Dot::Madd`], for each k block ([`k_block`]) the padded columns' starts, `−128 · Σ
    /// q_w` over the block (empty under VNNI, whose rows carry theirs).
    pub(super) comp: Vec<i32>,
}

/// `n` weight rows of `k` floats (`y = x Wᵀ`) quantized per row, packed as `simd`'s f32 kernels'
/// panels of ⌈k / 4⌉ words (four bytes each, k = 4p first), replacing `out`'s contents; the scales
/// padded to `padded` columns. Under [`Dot::Vnni`] each byte is `q + 128` (a quad's missing bytes
/// 128, a zero); under [`Dot::Madd`] `q` itself, with [`MADD_LEVELS`] levels, and the columns'
/// compensations.
pub(super) fn pack_weight(
    simd: Simd,
    dot: Dot,
    w: &[f32],
    n: usize,
    k: usize,
    padded: usize,
    out: &mut Vec<Line>,
) -> Weights {
    let kq = k.div_ceil(4);
    let levels = if dot == Dot::Madd { MADD_LEVELS } else { 127.0 };
    // Signed bytes as the rows are (vectorized: at load, one scalar rounding a weight was 1.4 s of
    // ViT-L/14's).
    let (mut words, mut scales) = quantize_rows_normed(w, n, k, None, levels);
    let comp = if dot == Dot::Madd {
        let mut comp = vec![0i32; kq.div_ceil(k_block(kq)) * padded];
        comp.par_chunks_mut(padded)
            .enumerate()
            .for_each(|(blk, c)| {
                for (j, c) in c.iter_mut().take(n).enumerate() {
                    *c = compensation(&words, kq, j, blk);
                }
            });
        comp
    } else {
        offset_bytes(&mut words);
        Vec::new()
    };
    scales.resize(padded, 0.0);
    pack_weight_rows(simd, &words, n, kq, kq, out);
    Weights {
        scale: scales,
        dot,
        comp,
    }
}

/// `n` rows of `k` floats each quantized with its own scale: ⌈k / 4⌉ words a row (four signed
/// bytes, k = 4p first, missing bytes 0) and the n scales. The weights on AMX-INT8
/// (`amx/pack.rs`).
pub(super) fn quantize_rows(w: &[f32], n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    quantize_rows_normed(w, n, k, None, 127.0)
}

/// As [`quantize_rows`], each row normalized by `norm` first if given, with `levels` levels each
/// side of zero (`s = max |v| / levels`; 127, or [`MADD_LEVELS`] for the weights under
/// [`Dot::Madd`]): the rows ([`pack_rows`]) and the weights ([`pack_weight`]).
pub(super) fn quantize_rows_normed(
    x: &[f32],
    m: usize,
    k: usize,
    norm: Option<HostNorm<'_>>,
    levels: f32,
) -> (Vec<f32>, Vec<f32>) {
    convert_rows(x, m, k, k.div_ceil(4), norm, |row, dst| {
        let s = largest(row) / levels;
        quantize_row(row, s, dst);
        s
    })
}

/// Each signed byte of `words` plus 128 (for q in −127..127, its top bit flipped; a 0 becomes
/// 128): the unsigned operand of `vpdpbusd` (the weights under [`Dot::Vnni`]) or of `vpmaddubsw`
/// (the rows under [`Dot::Madd`]).
fn offset_bytes(words: &mut [f32]) {
    words
        .par_iter_mut()
        .for_each(|d| *d = f32::from_bits(d.to_bits() ^ 0x8080_8080));
}

/// `−128 · Σ q` over k block `blk` ([`k_block`] of `kq` words) of row `row` of `words` (`kq`
/// words a row, signed bytes): what an operand offset by 128 adds to that row's sums, taken off
/// by starting them there.
fn compensation(words: &[f32], kq: usize, row: usize, blk: usize) -> i32 {
    let kb = k_block(kq);
    let (p0, p1) = (blk * kb, ((blk + 1) * kb).min(kq));
    let sum: i32 = words[row * kq + p0..row * kq + p1]
        .iter()
        .map(|w| {
            w.to_bits()
                .to_le_bytes()
                .iter()
                .map(|&b| i32::from(b as i8))
                .sum::<i32>()
        })
        .sum();
    -128 * sum
}

/// Lines the packed rows take, scales and compensations included (see [`pack_rows`]).
pub(super) fn rows_lines(simd: Simd, m: usize, k: usize) -> usize {
    super::pack::rows_lines(simd, m, k.div_ceil(4)) + extras(m, k).div_ceil(16)
}

/// Where the rows' scales start in rows packed by [`pack_rows`] (in floats); the compensations
/// follow them (see [`pack_rows`]).
pub(super) fn scales_at(simd: Simd, m: usize, k: usize) -> usize {
    super::pack::rows_lines(simd, m, k.div_ceil(4)) * 16
}

/// The floats after the packed rows: m scales, then m compensations for each k block.
pub(super) fn extras(m: usize, k: usize) -> usize {
    let kq = k.div_ceil(4);
    m + m * kq.div_ceil(k_block(kq))
}

/// `m` rows of `k` floats (normalized by `norm` first if given), each quantized with its own
/// scale (signed bytes; under [`Dot::Madd`] offset by 128, unsigned), packed in `simd`'s panels of
/// MR rows of ⌈k / 4⌉ words, then (from [`scales_at`]) the rows' scales, one float a row, then for
/// each k block (of [`k_block`] words) the rows' compensations `−128 · Σ q_x` over the block, one
/// i32 a row (its bits in a float; zero under [`Dot::Madd`], whose columns carry theirs),
/// replacing `out`'s contents.
pub(super) fn pack_rows(
    simd: Simd,
    dot: Dot,
    x: &[f32],
    m: usize,
    k: usize,
    norm: Option<HostNorm<'_>>,
    out: &mut Vec<Line>,
) {
    let kq = k.div_ceil(4);
    let (mut words, scales) = quantize_rows_normed(x, m, k, norm, 127.0);
    if dot == Dot::Madd {
        offset_bytes(&mut words);
    }
    pack_f32_rows(simd, &words, m, kq, kq, simd.tile().0, None, true, out);
    let at = scales_at(simd, m, k);
    out.resize(rows_lines(simd, m, k), Line([0.0; 16]));
    if m == 0 {
        return;
    }
    let extra = &mut super::pack::lines_as_floats_mut(out)[at..at + extras(m, k)];
    let (s, comps) = extra.split_at_mut(m);
    s.copy_from_slice(&scales);
    if dot == Dot::Madd {
        comps.fill(0.0);
        return;
    }
    // Block b's compensations at comps[b · m..], one a row.
    comps.par_chunks_mut(m).enumerate().for_each(|(blk, c)| {
        for (i, c) in c.iter_mut().enumerate() {
            *c = f32::from_bits(compensation(&words, kq, i, blk) as u32);
        }
    });
}

/// One row quantized with scale `s`, four signed bytes a word, into `dst` (⌈len / 4⌉ words;
/// missing bytes are 0).
pub(super) fn quantize_row(row: &[f32], s: f32, dst: &mut [f32]) {
    let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") {
            // SAFETY: AVX-512F and BW present; dst holds ⌈len / 4⌉ ≥ len / 4 words.
            done = unsafe { quantize_avx512(row, inv, dst) };
        } else if has!("avx2") {
            // SAFETY: AVX2 present; dst holds ⌈len / 4⌉ ≥ len / 4 words.
            done = unsafe { quantize_avx2(row, inv, dst) };
        }
    }
    for (w, d) in dst.iter_mut().enumerate().skip(done / 4) {
        let b: [u8; 4] =
            std::array::from_fn(|i| row.get(4 * w + i).map_or(0, |&v| quantize(v, inv) as u8));
        *d = f32::from_bits(u32::from_le_bytes(b));
    }
}

/// [`quantize_row`] for whole groups of 16 values; returns how many it did.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512BW; `dst` holds at least `row.len() / 4` words.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_avx512(row: &[f32], inv: f32, dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let whole = row.len() / 16 * 16;
    let inv = _mm512_set1_ps(inv);
    for i in (0..whole).step_by(16) {
        // SAFETY: i + 16 ≤ row.len(); dst has (i + 16) / 4 words (the contract); unaligned.
        unsafe {
            let bytes = quantize16(_mm512_loadu_ps(row.as_ptr().add(i)), inv);
            _mm_storeu_si128(dst.as_mut_ptr().add(i / 4).cast(), bytes);
        }
    }
    whole
}

/// 16 values times `inv` as [`quantize`] makes them (rounded to nearest even, then clamped to
/// ±127, on the floats), each the low byte of its lane: the signed bytes, two's complement.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn quantize16(
    v: std::arch::x86_64::__m512,
    inv: std::arch::x86_64::__m512,
) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    let v = _mm512_mul_ps(v, inv);
    let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
    let q = _mm512_cvtps_epi32(_mm512_min_ps(
        _mm512_max_ps(r, _mm512_set1_ps(-127.0)),
        _mm512_set1_ps(127.0),
    ));
    _mm512_cvtepi32_epi8(q)
}

/// A row with scale `s` ([`scale`] of it, bit for bit) quantized as [`quantize_row`] does, its
/// bytes into `lines` (64 values a line, line `t` at `lines.add(t · stride)`; a last line zero past
/// the row's end): AMX's tile rows, with no dispatch or reciprocal per 64 values.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512BW; `lines` is valid for writes of ⌈row.len() / 64⌉ lines
/// `stride` lines apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn quantize_into_lines(row: &[f32], s: f32, lines: *mut Line, stride: usize) {
    use std::arch::x86_64::*;
    let inv = _mm512_set1_ps(if s > 0.0 { 1.0 / s } else { 0.0 });
    for (t, chunk) in row.chunks(64).enumerate() {
        // SAFETY: line t of ⌈len / 64⌉, `stride` lines apart (the contract).
        let line = unsafe { lines.add(t * stride) }.cast::<__m128i>();
        for j in 0..4 {
            let part = chunk.get(16 * j..).unwrap_or(&[]);
            let n = part.len().min(16);
            // SAFETY: the mask enables the n lanes inside the chunk (none past it are read); the
            // store writes the line's j-th 16 bytes (zero for the lanes past the row's end, as
            // their quantized zeros).
            unsafe {
                let mask = ((1u32 << n) - 1) as u16;
                let v = _mm512_maskz_loadu_ps(mask, part.as_ptr());
                _mm_storeu_si128(line.add(j), quantize16(v, inv));
            }
        }
    }
}

/// [`quantize_row`] for whole groups of 8 values, as [`quantize_avx512`] does; returns how many it
/// did.
///
/// # Safety
/// The CPU has AVX2; `dst` holds at least `row.len() / 4` words.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2(row: &[f32], inv: f32, dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let whole = row.len() / 8 * 8;
    let (scale, lo, hi) = (
        _mm256_set1_ps(inv),
        _mm256_set1_ps(-127.0),
        _mm256_set1_ps(127.0),
    );
    for i in (0..whole).step_by(8) {
        // SAFETY: i + 8 ≤ row.len(); dst has (i + 8) / 4 words (the contract); unaligned.
        unsafe {
            let v = _mm256_mul_ps(_mm256_loadu_ps(row.as_ptr().add(i)), scale);
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
            let q = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
            // Within ±127, so the saturating packs keep each value: 8 × i32 -> i16 -> i8.
            let w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
            _mm_storel_epi64(dst.as_mut_ptr().add(i / 4).cast(), _mm_packs_epi16(w, w));
        }
    }
    whole
}

/// The arithmetic of the int8 layers, one output at a time (see the module's text), in k blocks
/// of `kc` words (4 k each). For tests.
#[cfg(test)]
pub(super) fn reference(
    x: &[f32],
    w: &[f32],
    (b, r): (Option<&[f32]>, Option<&[f32]>),
    (m, n, k): (usize, usize, usize),
    kc: usize,
) -> Vec<f32> {
    reference_levels(x, w, (b, r), (m, n, k), kc, 127.0)
}

/// [`reference`] with the weights quantized to `levels` levels each side ([`MADD_LEVELS`] under
/// [`Dot::Madd`]).
#[cfg(test)]
pub(super) fn reference_levels(
    x: &[f32],
    w: &[f32],
    (b, r): (Option<&[f32]>, Option<&[f32]>),
    (m, n, k): (usize, usize, usize),
    kc: usize,
    levels: f32,
) -> Vec<f32> {
    let quant = |rows: &[f32], count: usize, levels: f32| -> (Vec<i32>, Vec<f32>) {
        let mut q = vec![0i32; count * k];
        let mut s = vec![0f32; count];
        for i in 0..count {
            let row = &rows[i * k..(i + 1) * k];
            s[i] = largest(row) / levels;
            let inv = if s[i] > 0.0 { 1.0 / s[i] } else { 0.0 };
            for (p, &v) in row.iter().enumerate() {
                q[i * k + p] = quantize(v, inv) as i32;
            }
        }
        (q, s)
    };
    let (qx, sx) = quant(x, m, 127.0);
    let (qw, sw) = quant(w, n, levels);
    let kq = k.div_ceil(4);
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut out = b.map_or(0.0, |b| b[j]) + r.map_or(0.0, |r| r[i * n + j]);
            for p0 in (0..kq * 4).step_by(kc * 4) {
                let mut sum: i32 = 0;
                for p in p0..(p0 + kc * 4).min(k) {
                    sum += qx[i * k + p] * qw[j * k + p];
                }
                out += sum as f32 * (sx[i] * sw[j]);
            }
            y[i * n + j] = out;
        }
    }
    y
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::{quantize, quantize_avx2};

    /// AVX2's quantizer (what AVX-VNNI CPUs pack rows with; AVX-512 ones use the AVX-512 one, which
    /// the layer tests check) equals the scalar one byte for byte: ties both ways, the clamp, signs.
    #[test]
    #[cfg_attr(not(cpu_avx2), ignore = "no AVX2 on this CPU")]
    fn avx2_quantizer_equals_the_scalar_one() {
        let mut row = vec![
            0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, 127.4, 127.5, 128.0, -200.0, 0.0, -0.0,
            3.49, -3.51,
        ];
        row.extend((0..40).map(|i| ((i * 37 % 101) as f32 - 50.0) * 2.7));
        for inv in [1.0, 0.5, 1.0 / 3.0] {
            let mut dst = vec![0f32; row.len() / 4];
            // SAFETY: AVX2 present (the test is ignored elsewhere); dst holds len / 4 words.
            let done = unsafe { quantize_avx2(&row, inv, &mut dst) };
            assert_eq!(done, row.len() / 8 * 8);
            for (i, &v) in row[..done].iter().enumerate() {
                let got = dst[i / 4].to_bits().to_le_bytes()[i % 4];
                assert_eq!(got, quantize(v, inv) as u8, "{v} · {inv}");
            }
        }
    }
}
