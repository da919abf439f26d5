//! Packing for the AMX products: weights once at load, activations per call, each f32 split into
//! two bfloat16 tiles (`hi`, `lo`), or only rounded to one (`hi`: `--precision bf16`), in the
//! layouts the module doc of `amx` describes.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::super::pack::{HostNorm, Line};
use super::{enabled, int8_enabled, KT, TILE_LINES};

fn tiles_as_u16_mut(v: &mut [Line]) -> &mut [u16] {
    // SAFETY: a Line is 64 bytes with no padding, any bit pattern is a valid u16.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u16>(), v.len() * 32) }
}

/// A weight matrix `[n, k]` (`y = x Wᵀ`) in AMX tiles (see the module doc); n a multiple of 32.
pub(in crate::clip::dense) struct AmxWeight {
    pub(super) n: usize,
    pub(super) k: usize,
    /// What a tile holds, and so which product runs.
    pub(in crate::clip::dense) kind: Kind,
    data: Vec<Line>,
    /// int8: each output column's scale `sw` (n of them).
    pub(super) scale: Vec<f32>,
}

/// What the tiles of a product hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::clip::dense) enum Kind {
    /// Each f32 as `hi + lo`, two bf16 tiles a k tile (f32 to ~2⁻¹⁷; three `tdpbf16ps`).
    Split,
    /// Each value rounded to one bf16 (`--precision bf16`; one `tdpbf16ps`).
    Bf16,
    /// Signed bytes, weights per column and rows per row scaled as `int8.rs` does (`--precision
    /// int8`; one `tdpbssd`, exact i32 sums over all of k).
    Int8,
}

impl Kind {
    /// Tiles a k tile takes: hi and lo, or one.
    pub(super) fn terms(self) -> usize {
        if self == Kind::Split {
            2
        } else {
            1
        }
    }

    /// k values a tile row holds: 32 bf16 pairs' worth, or 64 bytes.
    pub(super) fn k_tile(self) -> usize {
        if self == Kind::Int8 {
            64
        } else {
            KT
        }
    }

    fn split(self) -> bool {
        self == Kind::Split
    }
}

impl AmxWeight {
    /// `None` unless AMX is [`enabled`] and `n` is a multiple of 32 (the products are 32 columns
    /// wide). `w` holds n rows of k floats; `kind`: split (`hi + lo`, f32) or rounded to bf16
    /// (int8: [`Self::pack_int8`]).
    pub(in crate::clip::dense) fn pack(w: &[f32], n: usize, k: usize, kind: Kind) -> Option<Self> {
        if !enabled() || n == 0 || !n.is_multiple_of(32) || kind == Kind::Int8 {
            return None;
        }
        assert_eq!(w.len(), n * k, "amx: weight size");
        let split = kind.split();
        let (kts, per) = (k.div_ceil(KT), kind.terms());
        let mut data = vec![Line([0.0; 16]); n / 16 * kts * per * TILE_LINES];
        tiles_as_u16_mut(&mut data)
            .par_chunks_mut(kts * per * 512)
            .enumerate()
            .for_each(|(j, group)| {
                let (mut hi, mut lo) = ([0u16; KT], [0u16; KT]);
                for c in 0..16 {
                    let row = &w[(j * 16 + c) * k..][..k];
                    for (kt, chunk) in row.chunks(KT).enumerate() {
                        // SAFETY: AMX is enabled, so the CPU has AVX-512F and BW; hi and lo hold
                        // 32 each.
                        unsafe { split_row(chunk, hi.as_mut_ptr(), lo.as_mut_ptr()) };
                        // Pair-interleaved: k = 2p and 2p + 1 of column c side by side in row p.
                        for q in 0..KT {
                            let at = kt * per * 512 + (q / 2) * 32 + c * 2 + q % 2;
                            group[at] = hi[q];
                            if split {
                                group[at + 512] = lo[q];
                            }
                        }
                    }
                }
            });
        Some(Self {
            n,
            k,
            kind,
            data,
            scale: Vec::new(),
        })
    }

    /// As [`Self::pack`] in signed bytes (`Kind::Int8`), where AMX-INT8 is [`int8_enabled`]: each
    /// weight row (output column) quantized as `int8.rs` does (`q = round(w / sw)`, `sw = max |w| /
    /// 127`), a tile row holding four consecutive k's of each of 16 columns.
    pub(in crate::clip::dense) fn pack_int8(w: &[f32], n: usize, k: usize) -> Option<Self> {
        if !int8_enabled() || n == 0 || !n.is_multiple_of(32) {
            return None;
        }
        assert_eq!(w.len(), n * k, "amx: weight size");
        let (words, scale) = super::super::int8::quantize_rows(w, n, k);
        let (kq, kts) = (k.div_ceil(4), k.div_ceil(64));
        let mut data = vec![Line([0.0; 16]); n / 16 * kts * TILE_LINES];
        data.par_chunks_mut(kts * TILE_LINES)
            .enumerate()
            .for_each(|(j, group)| {
                // Tile row p of k tile kt: quad kt·16 + p of columns j·16..j·16 + 16.
                for (line, dst) in group.iter_mut().enumerate() {
                    let (kt, p) = (line / 16, line % 16);
                    for (c, d) in dst.0.iter_mut().enumerate() {
                        let quad = kt * 16 + p;
                        if quad < kq {
                            *d = words[(j * 16 + c) * kq + quad];
                        }
                    }
                }
            });
        Some(Self {
            n,
            k,
            kind: Kind::Int8,
            data,
            scale,
        })
    }

    /// Tile (hi) of column group `j` (16 columns), k tile `kt`.
    pub(super) fn tile(&self, j: usize, kt: usize) -> *const u8 {
        let kts = self.k.div_ceil(self.kind.k_tile());
        self.data[(j * kts + kt) * self.kind.terms() * TILE_LINES..]
            .as_ptr()
            .cast()
    }
}

/// Lines (64 bytes) that `m` rows of `k` floats take in AMX tiles of `kind` (int8: the rows'
/// scales after the tiles).
pub(in crate::clip::dense) fn rows_lines(m: usize, k: usize, kind: Kind) -> usize {
    let tiles = m.div_ceil(16) * k.div_ceil(kind.k_tile()) * kind.terms() * TILE_LINES;
    match kind {
        Kind::Int8 => tiles + m.div_ceil(16),
        _ => tiles,
    }
}

/// `m` rows of `k` floats (normalized by `norm` first if given) in signed-byte tiles, each row
/// quantized with its own scale as `int8.rs` does (straight into its tile rows), then the m scales
/// (floats), replacing `out`'s contents.
fn pack_rows_int8(x: &[f32], m: usize, k: usize, norm: Option<HostNorm<'_>>, out: &mut Vec<Line>) {
    pack_rows_int8_with(x, m, k, norm, None, out)
}

/// As [`pack_rows_int8`]; with `maxima` (no norm; k a multiple of 32; m rows of k / 32 slots, as the
/// previous layer's `Out::row_max` wrote them), each row's scale is the largest of its slots / 127
/// (the largest |value| of the row, so [`super::super::int8::scale`] bit for bit) instead of a pass
/// over the row.
pub(in crate::clip::dense) fn pack_rows_int8_with(
    x: &[f32],
    m: usize,
    k: usize,
    norm: Option<HostNorm<'_>>,
    maxima: Option<&[f32]>,
    out: &mut Vec<Line>,
) {
    use super::super::int8::{quantize_into_lines, scale};
    let slots = k / 32;
    assert!(
        maxima.is_none_or(|mx| norm.is_none() && k.is_multiple_of(32) && mx.len() == m * slots),
        "int8 rows: {m} rows of {k} and row maxima that do not match"
    );
    let kts = k.div_ceil(64);
    let tiles = m.div_ceil(16) * kts * TILE_LINES;
    // Every tile line of the m rows is written below, and the scales; lines of rows past m (a
    // last group's) must be zero.
    out.resize(rows_lines(m, k, Kind::Int8), Line([0.0; 16]));
    let (t, s) = out.split_at_mut(tiles);
    let mut scales = vec![0f32; m.div_ceil(16) * 16];
    t.par_chunks_mut(kts * TILE_LINES)
        .zip(scales.par_chunks_mut(16))
        .enumerate()
        .for_each_init(Vec::new, |buf: &mut Vec<f32>, (g, (group, sc))| {
            for (r, sc) in sc.iter_mut().enumerate() {
                let i = g * 16 + r;
                if i >= m {
                    for kt in 0..kts {
                        group[kt * 16 + r] = Line([0.0; 16]);
                    }
                    continue;
                }
                let row = row_at(x, (i, k), norm, buf);
                *sc = match maxima {
                    None => scale(row),
                    Some(mx) => {
                        mx[i * slots..][..slots].iter().fold(0f32, |a, &b| a.max(b)) / 127.0
                    }
                };
                // Tile kt's row r: k = kt·64..kt·64 + 64 of the row (a short last one zero past k).
                // SAFETY: AMX is enabled, so the CPU has AVX-512F and BW (`enabled`); the group
                // holds kts tiles of 16 lines, so the kts lines 16 apart from line r are inside it.
                unsafe { quantize_into_lines(row, *sc, group[r..].as_mut_ptr(), 16) };
            }
        });
    super::super::pack::lines_as_floats_mut(s)[..m].copy_from_slice(&scales[..m]);
}

/// `m` rows of `k` floats (normalized by `norm` first if given) in AMX tiles of `kind`: split
/// (`hi + lo`), rounded to bf16, or quantized to bytes; replacing `out`'s contents (the rows past m
/// in the last group zero).
pub(in crate::clip::dense) fn pack_rows(
    x: &[f32],
    m: usize,
    k: usize,
    norm: Option<HostNorm<'_>>,
    kind: Kind,
    out: &mut Vec<Line>,
) {
    if kind == Kind::Int8 {
        return pack_rows_int8(x, m, k, norm, out);
    }
    let lines = rows_lines(m, k, kind);
    // Every line is written below: no need to zero the old contents first.
    if out.len() < lines {
        out.resize(lines, Line([0.0; 16]));
    }
    out.truncate(lines);
    tiles_as_u16_mut(out)
        .par_chunks_mut(k.div_ceil(KT) * kind.terms() * 512)
        .enumerate()
        .for_each_init(Vec::new, |buf: &mut Vec<f32>, (g, tiles)| {
            // SAFETY: AMX is enabled, so the CPU has AVX-512F and BW (checked in `enabled`).
            unsafe { pack_group(x, (m, k), norm, kind, g, tiles, buf) }
        });
}

/// Row group `g` of [`pack_rows`] into `tiles` (its k tiles, hi then lo each, or hi alone).
#[target_feature(enable = "avx512f,avx512bw")]
fn pack_group(
    x: &[f32],
    (m, k): (usize, usize),
    norm: Option<HostNorm<'_>>,
    kind: Kind,
    g: usize,
    tiles: &mut [u16],
    buf: &mut Vec<f32>,
) {
    let mut no_lo = [0u16; KT];
    for r in 0..16 {
        let i = g * 16 + r;
        let row: &[f32] = if i < m {
            row_at(x, (i, k), norm, buf)
        } else {
            &[]
        };
        for kt in 0..k.div_ceil(KT) {
            let chunk = row
                .get(kt * KT..)
                .map_or(&[][..], |c| &c[..KT.min(c.len())]);
            let at = kt * kind.terms() * 512 + r * KT;
            // SAFETY: tiles holds this group's k tiles (hi, lo; or hi) of 512 u16 each; no_lo 32.
            unsafe {
                let lo = if kind.split() {
                    tiles.as_mut_ptr().add(at + 512)
                } else {
                    no_lo.as_mut_ptr()
                };
                split_row(chunk, tiles.as_mut_ptr().add(at), lo)
            };
        }
    }
}

/// Row i of `x` (rows of k), normalized by `norm` into `buf` if given.
fn row_at<'a>(
    x: &'a [f32],
    (i, k): (usize, usize),
    norm: Option<HostNorm<'_>>,
    buf: &'a mut Vec<f32>,
) -> &'a [f32] {
    let row = &x[i * k..][..k];
    match norm {
        None => row,
        Some(norm) => {
            buf.resize(k, 0.0);
            norm.apply(norm.stats(row), row, 0, buf);
            buf
        }
    }
}

/// Up to 32 floats split as `x = hi + lo`, both bfloat16 rounded to nearest even (`lo` the
/// rounded remainder; for finite `x`: an infinity's `lo` is NaN, a NaN may come out as infinity):
/// 32 of each, zeros past `v`.
///
/// # Safety
/// `hi` and `lo` are valid for 32 writes; the CPU has AVX-512F and BW.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn split_row(v: &[f32], hi: *mut u16, lo: *mut u16) {
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn round(x: __m512) -> __m512i {
        let b = _mm512_castps_si512(x);
        let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
        _mm512_srli_epi32::<16>(_mm512_add_epi32(
            b,
            _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)),
        ))
    }
    for half in 0..2 {
        let have = v.len().saturating_sub(16 * half).min(16);
        // Where v is shorter than 16 · half (an empty chunk, a row's short last one) the offset
        // runs past `v`: computed wrapping, so no out-of-bounds pointer is made with `add`.
        let at = v.as_ptr().wrapping_add(16 * half);
        // SAFETY: the mask enables only the `have` lanes that lie in `v` (16 · half + have ≤
        // v.len()), and masked-off lanes are neither read nor fault; AVX-512F: the contract.
        let x = unsafe { _mm512_maskz_loadu_ps(((1u32 << have) - 1) as u16, at) };
        let h = round(x);
        let l = round(_mm512_sub_ps(
            x,
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(h)),
        ));
        // SAFETY: hi and lo are valid for 32 u16 writes (the contract): this half's 16 of each,
        // unaligned stores.
        unsafe {
            _mm256_storeu_si256(hi.add(16 * half).cast(), _mm512_cvtepi32_epi16(h));
            _mm256_storeu_si256(lo.add(16 * half).cast(), _mm512_cvtepi32_epi16(l));
        }
    }
}
