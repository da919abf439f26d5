//! Pillow's resampling (`Resample.c`, Pillow 13): the filters by their PIL codes, the
//! fixed-point coefficients, and the two separable passes, each rounded and clipped to `u8`,
//! in Pillow 13's pass order. Only a window of the output is computed, which gives the same
//! numbers as resizing the whole image and cropping afterwards.
//!
//! Not for: deciding the output size or the crop (transformers' rules: `clip::preprocess`), or
//! NEAREST, which CLIP checkpoints do not use.

use ::image::RgbImage;

/// Pillow's resampling filters, by their PIL codes (transformers' `resample`). NEAREST (0) is
/// not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Resample {
    /// From a PIL resampling code: 1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING.
    pub fn from_pil(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Lanczos),
            2 => Some(Self::Bilinear),
            3 => Some(Self::Bicubic),
            4 => Some(Self::Box),
            5 => Some(Self::Hamming),
            _ => None,
        }
    }

    pub fn pil_code(self) -> u8 {
        match self {
            Self::Lanczos => 1,
            Self::Bilinear => 2,
            Self::Bicubic => 3,
            Self::Box => 4,
            Self::Hamming => 5,
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    /// The filter kernels of Pillow's `Resample.c`, same expressions, same evaluation order.
    fn eval(self, x: f64) -> f64 {
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                return 1.0;
            }
            let x = x * std::f64::consts::PI;
            x.sin() / x
        }
        match self {
            Self::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    return 1.0;
                }
                if x >= 1.0 {
                    return 0.0;
                }
                let x = x * std::f64::consts::PI;
                // `0.54f + 0.46f * cos(x)` in C: float constants promoted to double.
                x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
            }
            Self::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// Pillow's fixed-point precision for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;
const HALF: i32 = 1 << (PRECISION_BITS - 1);

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

const SPLIT_BITS: u32 = 11;

/// `HALF + Σ p·k` with `k = hi·2^11 + lo`, as two 16-bit dot products (which compile to
/// `pmaddwd`). Wrapping arithmetic gives the exact sum: it fits in an `i32`, since
/// `Σ|k| ≤ 1.5 · 2^22` for every filter and `p ≤ 255`.
#[inline]
fn dot_split(p: &[i16], hi: &[i16], lo: &[i16]) -> i32 {
    let dot = |k: &[i16]| {
        p.iter()
            .zip(k)
            .map(|(&p, &k)| i32::from(p).wrapping_mul(i32::from(k)))
            .fold(0i32, i32::wrapping_add)
    };
    HALF.wrapping_add(dot(hi).wrapping_shl(SPLIT_BITS))
        .wrapping_add(dot(lo))
}

/// Fixed-point resampling weights for some consecutive outputs of one axis.
struct AxisCoeffs {
    ksize: usize,
    /// Per output: first input index and number of taps.
    bounds: Vec<(usize, usize)>,
    /// `ksize` per output, the first `taps` used.
    weights: Vec<i32>,
    /// The same weights split as `hi · 2^11 + lo` (`lo` in `0..2^11`), both `i16`, so the
    /// horizontal dot products can use 16-bit multiply-add instructions and stay exact.
    hi: Vec<i16>,
    lo: Vec<i16>,
}

impl AxisCoeffs {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for outputs `first..first + count`
    /// of an `in_size → out_size` resize (box = the whole image).
    fn new(in_size: u32, out_size: u64, first: u64, count: usize, filter: Resample) -> Self {
        let scale = f64::from(in_size) / out_size as f64;
        let filterscale = if scale < 1.0 { 1.0 } else { scale };
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let ss = 1.0 / filterscale;
        let mut bounds = Vec::with_capacity(count);
        let mut weights = vec![0i32; count * ksize];
        let mut k = vec![0f64; ksize];
        for (i, wrow) in weights.chunks_exact_mut(ksize).enumerate() {
            let center = ((first + i as u64) as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero, as `as` does.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size));
            let taps = (xmax - xmin).clamp(0, ksize as i64) as usize;
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().take(taps).enumerate() {
                let w = filter.eval(((x as i64 + xmin) as f64 - center + 0.5) * ss);
                *kx = w;
                ww += w;
            }
            for (kx, wx) in k.iter().take(taps).zip(wrow.iter_mut()) {
                let kx = if ww != 0.0 { kx / ww } else { *kx };
                let scaled = kx * f64::from(1u32 << PRECISION_BITS);
                *wx = if kx < 0.0 {
                    (-0.5 + scaled) as i32
                } else {
                    (0.5 + scaled) as i32
                };
            }
            bounds.push((xmin as usize, taps));
        }
        let hi = weights.iter().map(|&w| (w >> SPLIT_BITS) as i16).collect();
        let lo = weights
            .iter()
            .map(|&w| (w & ((1 << SPLIT_BITS) - 1)) as i16)
            .collect();
        Self {
            ksize,
            bounds,
            weights,
            hi,
            lo,
        }
    }

    /// Input indices `[first, last)` any output reads.
    fn span(&self) -> (usize, usize) {
        let first = self.bounds.iter().map(|b| b.0).min().unwrap_or(0);
        let last = self.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(first);
        (first, last.max(first))
    }

    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let (start, n) = self.bounds[i];
        (start, &self.weights[i * self.ksize..i * self.ksize + n])
    }

    fn split_taps(&self, i: usize) -> (usize, &[i16], &[i16]) {
        let (start, n) = self.bounds[i];
        let r = i * self.ksize..i * self.ksize + n;
        (start, &self.hi[r.clone()], &self.lo[r])
    }
}

/// Rows `ys..ys + yc`, columns `xs..xs + xc` of `img` resized to `rh × rw` with Pillow's
/// `ImagingResample`: two passes, each rounded and clipped to `u8`; an axis whose size does not
/// change is not resampled. Horizontal pass first, except where Pillow 13 runs the vertical pass
/// first (see [`vertical_first`]). Interleaved RGB, `yc × xc × 3`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resample_window(
    img: &RgbImage,
    rh: u64,
    rw: u64,
    ys: u64,
    yc: usize,
    xs: u64,
    xc: usize,
    filter: Resample,
) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let src = img.as_raw();
    let src_stride = w as usize * 3;
    let vertical = (rh != u64::from(h)).then(|| AxisCoeffs::new(h, rh, ys, yc, filter));
    let horizontal = (rw != u64::from(w)).then(|| AxisCoeffs::new(w, rw, xs, xc, filter));
    let src_rows = |rows: std::ops::Range<usize>| {
        src[rows.start * src_stride..rows.end * src_stride].chunks_exact(src_stride)
    };
    let (ys, xs) = (ys as usize, xs as usize);
    match (&vertical, &horizontal) {
        (None, None) => src_rows(ys..ys + yc)
            .flat_map(|row| &row[xs * 3..(xs + xc) * 3])
            .copied()
            .collect(),
        (None, Some(hc)) => horizontal_pass(src_rows(ys..ys + yc), 0, hc),
        (Some(vc), None) => vertical_pass(src, src_stride, 0, xs..xs + xc, vc),
        (Some(vc), Some(hc)) if vertical_first(u64::from(w), u64::from(h), rw, rh) => {
            let (c0, c1) = hc.span();
            let tmp = vertical_pass(src, src_stride, 0, c0..c1, vc);
            horizontal_pass(tmp.chunks_exact((c1 - c0) * 3), c0, hc)
        }
        (Some(vc), Some(hc)) => {
            let (r0, r1) = vc.span();
            let tmp = horizontal_pass(src_rows(r0..r1), 0, hc);
            vertical_pass(&tmp, xc * 3, r0, 0..xc, vc)
        }
    }
}

/// Pillow 13 (python-pillow/Pillow#9549) resamples vertically first when the height shrinks by
/// more than twice as many pixels as the width; earlier Pillow always went horizontal first.
/// Derived from Pillow 13.0's output (exact on thousands of random size pairs and all filters);
/// with an aspect-preserving resize it concerns shrunk portraits taller than about 2:1.
fn vertical_first(w: u64, h: u64, rw: u64, rh: u64) -> bool {
    let (w, h, rw, rh) = (w as i128, h as i128, rw as i128, rh as i128);
    rh < h && h - rh > 2 * (w - rw)
}

/// Horizontal pass: each of `rows` holds interleaved RGB from column `col_offset` on; every
/// output row is `hc`'s outputs, interleaved. Each row's used columns are first split into
/// planes so the dot products vectorize.
fn horizontal_pass<'a>(
    rows: impl Iterator<Item = &'a [u8]>,
    col_offset: usize,
    hc: &AxisCoeffs,
) -> Vec<u8> {
    let stride = hc.bounds.len() * 3;
    let (c0, c1) = hc.span();
    let n = c1 - c0;
    let mut planes = vec![0i16; 3 * n];
    let mut out = Vec::new();
    for row in rows {
        let (p0, rest) = planes.split_at_mut(n);
        let (p1, p2) = rest.split_at_mut(n);
        let used = &row[(c0 - col_offset) * 3..(c1 - col_offset) * 3];
        for (((p, a), b), c) in used
            .chunks_exact(3)
            .zip(p0.iter_mut())
            .zip(p1.iter_mut())
            .zip(p2.iter_mut())
        {
            (*a, *b, *c) = (i16::from(p[0]), i16::from(p[1]), i16::from(p[2]));
        }
        let start = out.len();
        out.resize(start + stride, 0);
        for (j, o) in out[start..].chunks_exact_mut(3).enumerate() {
            let (first, hi, lo) = hc.split_taps(j);
            let s = first - c0;
            for (oc, plane) in o.iter_mut().zip([&*p0, &*p1, &*p2]) {
                *oc = clip8(dot_split(&plane[s..s + hi.len()], hi, lo));
            }
        }
    }
    out
}

/// Vertical pass over columns `cols` of an interleaved RGB image whose rows are `stride` bytes
/// and start at source row `row_offset`; one output row per output of `vc`.
fn vertical_pass(
    src: &[u8],
    stride: usize,
    row_offset: usize,
    cols: std::ops::Range<usize>,
    vc: &AxisCoeffs,
) -> Vec<u8> {
    let width = cols.len() * 3;
    let x0 = cols.start * 3;
    let mut out = vec![0u8; vc.bounds.len() * width];
    let mut acc = vec![0i32; width];
    for (i, out_row) in out.chunks_exact_mut(width).enumerate() {
        let (first, k) = vc.taps(i);
        acc.fill(HALF);
        for (t, &kw) in k.iter().enumerate() {
            let r = first + t - row_offset;
            let in_row = &src[r * stride + x0..r * stride + x0 + width];
            for (a, &p) in acc.iter_mut().zip(in_row) {
                *a = a.wrapping_add(i32::from(p).wrapping_mul(kw));
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::test_util::{fnv, pattern};

    #[test]
    fn resampling_matches_pillow() {
        let src = pattern(9, 7);
        let expect_4x3: [u8; 36] = [
            103, 133, 148, 139, 144, 150, 140, 143, 139, 130, 123, 107, 128, 152, 120, 148, 127,
            123, 137, 110, 149, 124, 121, 146, 103, 166, 152, 142, 112, 167, 137, 125, 134, 151,
            120, 139,
        ];
        let full = |w: usize, h: usize, f: Resample| {
            resample_window(&src, h as u64, w as u64, 0, h, 0, w, f)
        };
        assert_eq!(full(4, 3, Resample::Bicubic), expect_4x3);
        // (width, height, PIL filter code, FNV-1a of Image.resize's bytes)
        let cases: [(usize, usize, i64, u64); 9] = [
            (4, 3, 3, 0x77ec90e413fda7a1),
            (13, 11, 3, 0xdf30efb599b389af),
            (5, 20, 3, 0x9d038b83603268d5),
            (6, 5, 2, 0x07248a3b6a44c815),
            (6, 5, 1, 0xa12479413a7d76ea),
            (6, 5, 4, 0x83a6c8eed8b05adb),
            (6, 5, 5, 0x22381416a4cdde82),
            (40, 3, 3, 0xf23207b7d34a61ac),
            (3, 40, 1, 0xae2827dd4b281d83),
        ];
        for (w, h, code, expected) in cases {
            let filter = Resample::from_pil(code).unwrap();
            assert_eq!(fnv(full(w, h, filter)), expected, "{w}x{h} filter {code}");
        }
    }

    #[test]
    fn same_size_is_identity() {
        let src = pattern(9, 7);
        assert_eq!(
            resample_window(&src, 7, 9, 0, 7, 0, 9, Resample::Bicubic),
            src.as_raw().as_slice()
        );
    }
}
