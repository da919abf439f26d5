//! The packed layouts the microkernels read, and the packing into them: weights in panels of NR
//! columns (once at load for the layers; per head for attention's k and v), activations in panels of
//! MR rows (per call), optionally layer-normalized on the way. Not for: the products themselves
//! (`tiles.rs`).

use rayon::prelude::*;

use super::Simd;

/// 64 bytes, the unit of the packed buffer, so every panel starts on a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Line(pub(super) [f32; 16]);

/// `out` resized to hold `n` columns in panels of NR (`k × NR` floats each) and zeroed (columns
/// past n stay zero); its floats and NR.
fn zeroed_panels(simd: Simd, n: usize, k: usize, out: &mut Vec<Line>) -> (&mut [f32], usize) {
    let (_, nr) = simd.tile();
    out.clear();
    out.resize((n.div_ceil(nr) * k * nr).div_ceil(16), Line([0.0; 16]));
    (lines_as_floats_mut(out), nr)
}

/// `n` weight rows of `k` floats, `ldw` apart in `w` (`y = x Wᵀ`), into panels of NR columns
/// (each k's NR floats adjacent; columns past n zero), replacing `out`'s contents: the layout of
/// [`pack_rows`] with NR rows a panel.
pub(super) fn pack_weight_rows(
    simd: Simd,
    w: &[f32],
    n: usize,
    k: usize,
    ldw: usize,
    out: &mut Vec<Line>,
) {
    let (_, nr) = simd.tile();
    pack_rows(simd, w, n, k, ldw, nr, None, false, out);
}

/// The same panels from `w` stored the other way: `k` rows of `n` floats, `ldw` apart
/// (`y = x W`), replacing `out`'s contents.
pub(super) fn pack_weight_cols(
    simd: Simd,
    w: &[f32],
    k: usize,
    n: usize,
    ldw: usize,
    out: &mut Vec<Line>,
) {
    let (flat, nr) = zeroed_panels(simd, n, k, out);
    for p in 0..k {
        let row = &w[p * ldw..p * ldw + n];
        for (j, cols) in row.chunks(nr).enumerate() {
            let dst = &mut flat[j * k * nr + p * nr..][..cols.len()];
            // 16 floats at a time as fixed-size copies (inlined; `copy_from_slice` of a length
            // known only at run time is a call to memmove for 64 or 128 bytes).
            let ((dst16, dst_rest), (src16, src_rest)) =
                (dst.as_chunks_mut::<16>(), cols.as_chunks::<16>());
            for (d, s) in dst16.iter_mut().zip(src16) {
                *d = *s;
            }
            dst_rest.copy_from_slice(src_rest);
        }
    }
}

/// A LayerNorm's parameters on the host: rows normalized while they are packed.
#[derive(Clone, Copy)]
pub struct HostNorm<'a> {
    pub weight: &'a [f32],
    pub bias: &'a [f32],
    pub eps: f32,
}

impl HostNorm<'_> {
    /// Mean and 1/√(variance + eps) of one row (two passes, sixteen partial sums each: the same
    /// function as PyTorch's, and a loop the compiler vectorizes).
    #[inline(always)]
    pub(super) fn stats(&self, row: &[f32]) -> (f32, f32) {
        #[inline(always)]
        fn sum16(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
            let mut acc = [0f32; 16];
            let mut chunks = row.chunks_exact(16);
            for c in &mut chunks {
                for (a, &v) in acc.iter_mut().zip(c) {
                    *a += f(v);
                }
            }
            acc.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
        }
        let n = row.len().max(1) as f32;
        let mean = sum16(row, |v| v) / n;
        let var = sum16(row, |v| (v - mean) * (v - mean)) / n;
        (mean, 1.0 / (var + self.eps).sqrt())
    }

    /// `src` (a row's columns from `p0` on) normalized into `dst` with the row's [`Self::stats`]:
    /// `(v − mean) · rstd · weight + bias`, the one formula every packing uses.
    #[inline(always)]
    pub(super) fn apply(&self, (mean, rstd): (f32, f32), src: &[f32], p0: usize, dst: &mut [f32]) {
        let end = p0 + src.len();
        let (w, b) = (&self.weight[p0..end], &self.bias[p0..end]);
        for (((o, &v), &w), &b) in dst.iter_mut().zip(src).zip(w).zip(b) {
            *o = (v - mean) * rstd * w + b;
        }
    }
}

/// Each of the `m` rows of `k` floats in `x`, normalized by `norm` first if given, through `convert`
/// into `width` words of its own (the rows in parallel): the words, and the value `convert` returns
/// for each row (int8's scale). How the bf16 and int8 layers make their rows before packing them.
pub(super) fn convert_rows(
    x: &[f32],
    m: usize,
    k: usize,
    width: usize,
    norm: Option<HostNorm<'_>>,
    convert: impl Fn(&[f32], &mut [f32]) -> f32 + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let mut words = vec![0f32; m * width];
    let mut per_row = vec![0f32; m];
    words
        .par_chunks_mut(width)
        .zip(x.par_chunks(k))
        .zip(per_row.par_iter_mut())
        .for_each_init(Vec::new, |tmp: &mut Vec<f32>, ((dst, row), v)| {
            let row = match norm {
                Some(norm) => {
                    tmp.resize(k, 0.0);
                    norm.apply(norm.stats(row), row, 0, tmp);
                    &tmp[..]
                }
                None => row,
            };
            *v = convert(row, dst);
        });
    (words, per_row)
}

/// Columns of k packed per pass over a panel's rows: the panel's share (PB × MR floats) stays in
/// L1 while the rows are read, where a whole panel (k × MR) would not.
const PB: usize = 64;

dispatch!(pack_panel(simd) => pack_panel_generic(
    level: Simd,
    dst: &mut [std::mem::MaybeUninit<f32>],
    rows: &[f32],
    have: usize,
    k: usize,
    ldx: usize,
    mr: usize,
    norm: Option<HostNorm<'_>>
));

/// One panel of MR activation rows: for each of k, the rows' values adjacent (missing rows zero).
/// `rows` holds the panel's rows, `ldx` apart, each k long; `norm` normalizes each row on the way.
/// (`pack_panel` is this compiled for a SIMD level, `level` the same level for [`interleave`].)
/// Rows to normalize go 64 columns at a time through a small buffer (normalized there row by row,
/// vectorized), then are interleaved into the panel; rows as they are, straight from `rows`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pack_panel_generic(
    level: Simd,
    dst: &mut [std::mem::MaybeUninit<f32>],
    rows: &[f32],
    have: usize,
    k: usize,
    ldx: usize,
    mr: usize,
    norm: Option<HostNorm<'_>>,
) {
    let mut stats = [(0f32, 1f32); 16];
    if let Some(norm) = norm {
        for (r, st) in stats.iter_mut().enumerate().take(have) {
            *st = norm.stats(&rows[r * ldx..r * ldx + k]);
        }
    }
    // (A chunk past the last panel, the tail of the last line, has no rows: zeros only.)
    if have > 0 {
        assert!(
            dst.len() >= k * mr && rows.len() >= (have - 1) * ldx + k,
            "pack: panel sizes"
        );
    }
    match norm {
        _ if have == 0 => {}
        // Straight from the rows: each is one stream, and they are few.
        // SAFETY: the rows hold have × k values ldx apart, dst k × mr floats (asserted above).
        None => unsafe {
            interleave(
                level,
                rows.as_ptr(),
                ldx,
                have,
                k,
                mr,
                dst.as_mut_ptr().cast(),
            )
        },
        Some(norm) => {
            let mut block = [[0f32; PB]; 16];
            for p0 in (0..k).step_by(PB) {
                let pend = (p0 + PB).min(k);
                for (r, buf) in block.iter_mut().enumerate().take(have) {
                    let src = &rows[r * ldx + p0..r * ldx + pend];
                    norm.apply(stats[r], src, p0, &mut buf[..pend - p0]);
                }
                let out = dst[p0 * mr..].as_mut_ptr().cast();
                // SAFETY: block holds have ≤ 16 rows of pend − p0 values, PB apart; dst from
                // p0 · mr on has room for (pend − p0) × mr floats.
                unsafe { interleave(level, block.as_ptr().cast(), PB, have, pend - p0, mr, out) };
            }
        }
    }
    if have < mr {
        for (idx, slot) in dst.iter_mut().enumerate() {
            if idx % mr >= have {
                slot.write(0.0);
            }
        }
    }
}

/// `m` rows of `k` floats, `ldx` apart in `x`, in panels of `mr` rows (see [`pack_panel`]; at
/// most 32, 16 with `norm`: the microkernel's MR, or NR for weight panels), normalized by `norm` if
/// given, replacing `out`'s contents; the panels split across threads when `parallel` (a layer's
/// input), on this thread otherwise (an attention task's).
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_rows(
    simd: Simd,
    x: &[f32],
    m: usize,
    k: usize,
    ldx: usize,
    mr: usize,
    norm: Option<HostNorm<'_>>,
    parallel: bool,
    out: &mut Vec<Line>,
) {
    assert!(
        mr <= if norm.is_some() { 16 } else { 32 },
        "pack: {mr} rows a panel"
    );
    let panel = k * mr;
    let lines = panel_lines(m, k, mr);
    out.clear();
    out.reserve(lines);
    let spare = &mut out.spare_capacity_mut()[..lines];
    // SAFETY: MaybeUninit<Line> is 16 MaybeUninit<f32> (repr(C), no padding).
    let floats: &mut [std::mem::MaybeUninit<f32>] =
        unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast(), lines * 16) };
    let one = |(i, dst): (usize, &mut [std::mem::MaybeUninit<f32>])| {
        let first = i * mr;
        let have = mr.min(m.saturating_sub(first));
        let rows = x.get(first * ldx..).unwrap_or(&[]);
        pack_panel(simd, simd, dst, rows, have, k, ldx, mr, norm);
    };
    if parallel {
        floats.par_chunks_mut(panel).enumerate().for_each(one);
    } else {
        floats.chunks_mut(panel).enumerate().for_each(one);
    }
    // SAFETY: every float of the `lines` lines was written above (a last chunk shorter than a
    // panel, the line's tail, by pack_panel's zero fill).
    unsafe { out.set_len(lines) };
}

/// `rows` rows of `cols` floats, `ld` apart from `src`, into `dst` as (part of) a panel of `mr`
/// rows: `dst[c · mr + r] = src[r · ld + c]`; rows `rows..mr` are left as they are. On AVX-512
/// sixteen columns at a time through a 16 × 16 transpose in registers (a scalar load and store per
/// value made three quarters of the packing's time), on AVX2 eight through an 8 × 8 one for whole
/// panels (the last, cut panel of a packing one value at a time).
///
/// # Safety
/// `src` holds the `rows × cols` values (rows `ld` apart), `dst` room for `cols × mr` floats,
/// `rows ≤ mr`, and `level` is one this CPU has.
pub(super) unsafe fn interleave(
    level: Simd,
    src: *const f32,
    ld: usize,
    rows: usize,
    cols: usize,
    mr: usize,
    dst: *mut f32,
) {
    debug_assert!(rows <= mr);
    #[cfg(target_arch = "x86_64")]
    match level {
        Simd::Avx512 => {
            // SAFETY: the level is one this CPU has (the contract), so it has AVX-512F; src, dst
            // and rows ≤ mr as the contract says.
            return unsafe { transpose::interleave_avx512(src, ld, rows, cols, mr, dst) };
        }
        Simd::Avx2 if rows == mr && (mr <= 8 || mr.is_multiple_of(8)) => {
            // SAFETY: the level is one this CPU has (the contract), so it has AVX2; src, dst as
            // the contract says, and rows == mr with mr ≤ 8 or a multiple of 8 (this arm's guard).
            return unsafe { transpose::interleave_avx2(src, ld, rows, cols, mr, dst) };
        }
        _ => {}
    }
    // SAFETY: src, dst and rows ≤ mr as the contract says, for all the columns 0..cols.
    unsafe { interleave_columns(src, ld, rows, 0..cols, mr, dst) }
}

/// [`interleave`] of the columns `cols` one value at a time.
///
/// # Safety
/// As [`interleave`] with `cols.end` columns (`src` holds rows × cols.end values, `dst` room for
/// cols.end × mr floats, rows ≤ mr); no SIMD level needed.
unsafe fn interleave_columns(
    src: *const f32,
    ld: usize,
    rows: usize,
    cols: std::ops::Range<usize>,
    mr: usize,
    dst: *mut f32,
) {
    for c in cols {
        for r in 0..rows {
            // SAFETY: r < rows and c < cols.end: value r · ld + c of src, and c · mr + r <
            // cols.end × mr of dst (r < rows ≤ mr), both inside what the contract gives.
            unsafe { *dst.add(c * mr + r) = *src.add(r * ld + c) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod transpose {
    use std::arch::x86_64::*;

    /// [`super::interleave`] on AVX-512: per group of up to 16 rows and 16 columns, the rows
    /// loaded (masked past `cols`; absent rows zero), transposed, each column stored as the group's
    /// `mr`-apart run (masked past `rows`).
    ///
    /// # Safety
    /// As [`super::interleave`]; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn interleave_avx512(
        src: *const f32,
        ld: usize,
        rows: usize,
        cols: usize,
        mr: usize,
        dst: *mut f32,
    ) {
        for g in (0..rows).step_by(16) {
            let in_group = (rows - g).min(16);
            let store = ((1u32 << in_group) - 1) as __mmask16;
            for c0 in (0..cols).step_by(16) {
                let width = (cols - c0).min(16);
                let load = ((1u32 << width) - 1) as __mmask16;
                let mut v = [_mm512_setzero_ps(); 16];
                for (r, v) in v.iter_mut().enumerate().take(in_group) {
                    // SAFETY: row g + r < rows, column c0 < cols: inside src (the contract); the
                    // mask reads only columns c0..c0 + width ≤ cols of that row. AVX-512F: the
                    // contract.
                    *v = unsafe { _mm512_maskz_loadu_ps(load, src.add((g + r) * ld + c0)) };
                }
                let t = transpose16(v);
                for (c, t) in t.iter().enumerate().take(width) {
                    // SAFETY: column c0 + c < cols, row g < rows ≤ mr: inside dst's cols × mr
                    // floats (the contract); the mask writes only rows g..g + in_group ≤ rows of
                    // that column's mr-float run.
                    unsafe { _mm512_mask_storeu_ps(dst.add((c0 + c) * mr + g), store, *t) };
                }
            }
        }
    }

    /// [`super::interleave`] on AVX2 for whole panels (`rows == mr`) of at most 8 rows or of
    /// groups of 8: per group and 8 columns, an 8 × 8 transpose, each column stored 8 wide (with
    /// fewer rows, the spill lands on the next columns' rows, stored after it; a store that would
    /// spill past the panel stores its rows only); columns past the last 8, one value at a time.
    ///
    /// # Safety
    /// As [`super::interleave`], with `rows == mr` and `mr ≤ 8` or a multiple of 8; the CPU has
    /// AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn interleave_avx2(
        src: *const f32,
        ld: usize,
        rows: usize,
        cols: usize,
        mr: usize,
        dst: *mut f32,
    ) {
        let whole = cols - cols % 8;
        for g in (0..rows).step_by(8) {
            let in_group = (rows - g).min(8);
            for c0 in (0..whole).step_by(8) {
                let mut v = [_mm256_setzero_ps(); 8];
                for (r, v) in v.iter_mut().enumerate().take(in_group) {
                    // SAFETY: row g + r < rows, columns c0..c0 + 8 ≤ whole ≤ cols: inside src
                    // (the contract). AVX2: the contract.
                    *v = unsafe { _mm256_loadu_ps(src.add((g + r) * ld + c0)) };
                }
                for (c, t) in transpose8(v).iter().enumerate() {
                    // SAFETY: column c0 + c < cols, row g < rows = mr: inside dst's cols × mr
                    // floats (the contract).
                    let d = unsafe { dst.add((c0 + c) * mr + g) };
                    if in_group == 8 || (c0 + c) * mr + g + 8 <= cols * mr {
                        // SAFETY: 8 floats from d: a whole group's rows g..g + 8 ≤ mr of the
                        // column, or (fewer rows) checked just above to end inside dst; the spill
                        // onto the next columns' rows is overwritten when those are stored.
                        unsafe { _mm256_storeu_ps(d, *t) };
                    } else {
                        let mut last = [0f32; 8];
                        // SAFETY: `last` is a local 8 floats; from it, the column's in_group =
                        // rows − g rows left, inside dst (the contract) and not overlapping it.
                        unsafe {
                            _mm256_storeu_ps(last.as_mut_ptr(), *t);
                            std::ptr::copy_nonoverlapping(last.as_ptr(), d, in_group);
                        }
                    }
                }
            }
        }
        // SAFETY: the same src, dst and rows ≤ mr (the contract), for the columns whole..cols
        // left over.
        unsafe { super::interleave_columns(src, ld, rows, whole..cols, mr, dst) }
    }

    /// 8 rows in, 8 columns out: 32-bit interleaves, 64-bit shuffles, then the 128-bit halves.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let mut t = [_mm256_setzero_ps(); 8];
        for i in 0..4 {
            t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // u[4h + j], half l: column 4l + j of rows 4h..4h + 4.
        let mut u = [_mm256_setzero_ps(); 8];
        for h in 0..2 {
            let (a, b, c, d) = (t[4 * h], t[4 * h + 1], t[4 * h + 2], t[4 * h + 3]);
            u[4 * h] = _mm256_shuffle_ps::<0x44>(a, c);
            u[4 * h + 1] = _mm256_shuffle_ps::<0xEE>(a, c);
            u[4 * h + 2] = _mm256_shuffle_ps::<0x44>(b, d);
            u[4 * h + 3] = _mm256_shuffle_ps::<0xEE>(b, d);
        }
        let mut out = [_mm256_setzero_ps(); 8];
        for j in 0..4 {
            out[j] = _mm256_permute2f128_ps::<0x20>(u[j], u[4 + j]);
            out[4 + j] = _mm256_permute2f128_ps::<0x31>(u[j], u[4 + j]);
        }
        out
    }

    /// Rows in, columns out: 32-bit then 64-bit interleaves within 128-bit lanes, then two rounds
    /// of lane shuffles (64 instructions for 256 values).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // u[4i + j], lane l: column 4l + j of rows 4i..4i + 4.
        let mut u = [_mm512_setzero_ps(); 16];
        for i in 0..4 {
            let pd = |x: __m512| _mm512_castps_pd(x);
            let (a, b, c, d) = (
                pd(t[4 * i]),
                pd(t[4 * i + 1]),
                pd(t[4 * i + 2]),
                pd(t[4 * i + 3]),
            );
            u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
            u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
            u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
            u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
        }
        let mut out = [_mm512_setzero_ps(); 16];
        for j in 0..4 {
            // Lanes 0 and 2 / 1 and 3 of rows 0–7, then of rows 8–15.
            let v = _mm512_shuffle_f32x4::<0x88>(u[j], u[4 + j]);
            let w = _mm512_shuffle_f32x4::<0xDD>(u[j], u[4 + j]);
            let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + j], u[12 + j]);
            let w2 = _mm512_shuffle_f32x4::<0xDD>(u[8 + j], u[12 + j]);
            out[j] = _mm512_shuffle_f32x4::<0x88>(v, v2);
            out[8 + j] = _mm512_shuffle_f32x4::<0xDD>(v, v2);
            out[4 + j] = _mm512_shuffle_f32x4::<0x88>(w, w2);
            out[12 + j] = _mm512_shuffle_f32x4::<0xDD>(w, w2);
        }
        out
    }
}

/// Lines that `m` rows of `k` floats take once packed (whole panels of MR rows).
pub(super) fn rows_lines(simd: Simd, m: usize, k: usize) -> usize {
    panel_lines(m, k, simd.tile().0)
}

/// Lines that `m` rows of `k` floats take in whole panels of `mr` rows.
fn panel_lines(m: usize, k: usize, mr: usize) -> usize {
    (m.div_ceil(mr) * k * mr).div_ceil(16)
}

pub(super) fn lines_as_floats(v: &[Line]) -> &[f32] {
    // SAFETY: Line is repr(C) [f32; 16] (align 64, size 64, no padding).
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<f32>(), v.len() * 16) }
}

pub(super) fn lines_as_floats_mut(v: &mut [Line]) -> &mut [f32] {
    // SAFETY: as above.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<f32>(), v.len() * 16) }
}

/// `v`'s first `floats` floats, `v` grown (zeroed) to whole lines first where it is shorter: a
/// per-task buffer reused from call to call, its old contents kept.
pub(super) fn floats_of(v: &mut Vec<Line>, floats: usize) -> &mut [f32] {
    let lines = floats.div_ceil(16);
    if v.len() < lines {
        v.resize(lines, Line([0.0; 16]));
    }
    &mut lines_as_floats_mut(v)[..floats]
}
