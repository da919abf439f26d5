//! Chroma upsampling as libjpeg-turbo does it with `do_fancy_upsampling` on (`jdsample.c`):
//! the triangle filters for 2:1 horizontal and/or vertical subsampling with libjpeg's
//! alternating rounding biases, replication otherwise, and the edge handling of `jdmainct.c`.
//!
//! Not for: colour conversion (`color.rs`) or any resizing of the decoded image
//! (`image/resample.rs`).

use super::{Component, Result};

/// Which of libjpeg's upsampling methods a component gets.
#[derive(Clone, Copy, PartialEq)]
enum UpsampleKind {
    FullSize,
    H2V1Fancy,
    H1V2Fancy,
    H2V2Fancy,
    /// Replication: h2v1/h2v2 on components ≤ 2 samples wide, and libjpeg's `int_upsample`.
    Box {
        he: usize,
        ve: usize,
    },
}

/// One component's samples, upsampled a row at a time as libjpeg's `jdsample.c` does (rows and
/// columns past the component's own size repeat its last one, as `jdmainct.c` arranges).
pub(super) struct Upsampler<'p> {
    plane: &'p [u8],
    stride: usize,
    pub(super) dw: usize,
    dh: usize,
    w: usize,
    kind: UpsampleKind,
}

impl<'p> Upsampler<'p> {
    pub(super) fn new(
        plane: &'p [u8],
        c: &Component,
        max_h: usize,
        max_v: usize,
        w: usize,
    ) -> Result<Self> {
        let (h2, v2) = (c.h * 2 == max_h, c.v * 2 == max_v);
        let (hs, vs) = (c.h == max_h, c.v == max_v);
        // jinit_upsampler's selection, with do_fancy_upsampling on.
        let kind = if hs && vs {
            UpsampleKind::FullSize
        } else if h2 && vs && c.dw > 2 {
            UpsampleKind::H2V1Fancy
        } else if hs && v2 {
            UpsampleKind::H1V2Fancy
        } else if h2 && v2 && c.dw > 2 {
            UpsampleKind::H2V2Fancy
        } else if max_h.is_multiple_of(c.h) && max_v.is_multiple_of(c.v) {
            UpsampleKind::Box {
                he: max_h / c.h,
                ve: max_v / c.v,
            }
        } else {
            return Err("fractional sampling ratios are not supported".into());
        };
        Ok(Self {
            plane,
            stride: c.wib * 8,
            dw: c.dw,
            dh: c.dh,
            w,
            kind,
        })
    }

    pub(super) fn buf_len(&self) -> usize {
        match self.kind {
            UpsampleKind::FullSize => 0,
            UpsampleKind::H2V1Fancy | UpsampleKind::H2V2Fancy => 2 * self.dw,
            _ => self.w,
        }
    }

    fn in_row(&self, i: usize) -> &'p [u8] {
        let i = i.min(self.dh - 1);
        &self.plane[i * self.stride..i * self.stride + self.dw]
    }

    /// Output row `y`, `w` samples (borrowed from the plane or written into `buf`);
    /// `ext` is scratch of `dw + 2` entries.
    pub(super) fn row<'a>(&'a self, y: usize, buf: &'a mut [u8], ext: &mut [u16]) -> &'a [u8] {
        let (w, dw) = (self.w, self.dw);
        match self.kind {
            UpsampleKind::FullSize => &self.in_row(y)[..w],
            UpsampleKind::H2V1Fancy => {
                for (e, &v) in ext[1..=dw].iter_mut().zip(self.in_row(y)) {
                    *e = u16::from(v);
                }
                widen(ext, dw, buf, (1, 2), 2);
                &buf[..w]
            }
            UpsampleKind::H1V2Fancy => {
                let i = y / 2;
                let (near, (far, bias)) = (
                    self.in_row(i),
                    if y.is_multiple_of(2) {
                        (self.in_row(i.saturating_sub(1)), 1)
                    } else {
                        (self.in_row(i + 1), 2)
                    },
                );
                for ((o, &a), &b) in buf[..w].iter_mut().zip(near).zip(far) {
                    *o = ((3 * u16::from(a) + u16::from(b) + bias) >> 2) as u8;
                }
                &buf[..w]
            }
            UpsampleKind::H2V2Fancy => {
                let i = y / 2;
                let near = self.in_row(i);
                let far = if y.is_multiple_of(2) {
                    self.in_row(i.saturating_sub(1))
                } else {
                    self.in_row(i + 1)
                };
                // Column sums 3·near + far (≤ 1020), then the horizontal triangle filter.
                for ((e, &a), &b) in ext[1..=dw].iter_mut().zip(near).zip(far) {
                    *e = 3 * u16::from(a) + u16::from(b);
                }
                widen(ext, dw, buf, (8, 7), 4);
                &buf[..w]
            }
            UpsampleKind::Box { he, ve } => {
                let s = self.in_row(y / ve);
                for (x, o) in buf[..w].iter_mut().enumerate() {
                    *o = s[x / he];
                }
                &buf[..w]
            }
        }
    }
}

/// The horizontal triangle filter of libjpeg's `h2v1_fancy_upsample` and `h2v2_fancy_upsample`:
/// `ext[1..=dw]` holds a row of samples (of column sums for h2v2). The row is padded with a copy
/// of its first and last entry, so that the edge outputs come out as libjpeg's special cases
/// compute them; then each entry `e` gives two outputs, `(3·e + left + bias.0) >> shift` and
/// `(3·e + right + bias.1) >> shift`.
#[inline(always)]
fn widen(ext: &mut [u16], dw: usize, out: &mut [u8], bias: (u16, u16), shift: u32) {
    ext[0] = ext[1];
    ext[dw + 1] = ext[dw];
    for (o, t) in out[..2 * dw].chunks_exact_mut(2).zip(ext.windows(3)) {
        let v = 3 * t[1];
        o[0] = ((v + t[0] + bias.0) >> shift) as u8;
        o[1] = ((v + t[2] + bias.1) >> shift) as u8;
    }
}
