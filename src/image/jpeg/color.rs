//! The last stage: IDCT of the stored coefficients, upsampling, and colour conversion of the
//! samples into RGB (grayscale replicated; YCbCr through libjpeg's tables; CMYK and YCCK as
//! Pillow converts libjpeg's inverted CMYK).
//!
//! Not for: the IDCT and upsampling arithmetic themselves (`idct.rs`, `upsample.rs`), or any
//! colour handling of images not decoded by this decoder (`image/convert.rs`).

use ::image::RgbImage;

use super::idct::idct_islow;
use super::upsample::Upsampler;
use super::{Decoder, Frame, Result};
use crate::image::convert::cmyk_channel;

impl<'a> Decoder<'a> {
    /// IDCT, upsampling and colour conversion into RGB.
    pub(super) fn output(mut self) -> Result<RgbImage> {
        let mut frame = self.frame.take().ok_or("no frame header")?;
        let (w, h) = (frame.width, frame.height);
        let planes = idct_planes(&mut frame)?;
        let ups: Vec<Upsampler> = frame
            .comps
            .iter()
            .zip(&planes)
            .map(|(c, p)| Upsampler::new(p, c, frame.max_h, frame.max_v, w))
            .collect::<Result<_>>()?;
        let kind = self.color_kind(&frame)?;
        // In a TIFF strip (libtiff's set-up), Pillow reads libjpeg's CMYK as stored ("CMYK").
        let cmyk_as_stored = self.force_ycc.is_some();
        let t = YccTables::new();
        let mut rgb = vec![0u8; w * h * 3];
        let mut bufs: Vec<(Vec<u8>, Vec<u16>)> = ups
            .iter()
            .map(|u| (vec![0u8; u.buf_len()], vec![0u16; u.dw + 2]))
            .collect();
        for (y, out) in rgb.chunks_exact_mut(w * 3).enumerate() {
            let mut rows: [&[u8]; 4] = [&[]; 4];
            for ((u, buf), r) in ups.iter().zip(bufs.iter_mut()).zip(rows.iter_mut()) {
                *r = u.row(y, &mut buf.0, &mut buf.1);
            }
            convert_row(kind, &t, &rows, out, cmyk_as_stored);
        }
        RgbImage::from_raw(w as u32, h as u32, rgb).ok_or_else(|| "buffer size".to_string())
    }

    /// The colour space of the samples, guessed as libjpeg's `default_decompress_parms` does.
    fn color_kind(&self, frame: &Frame) -> Result<ColorKind> {
        Ok(match frame.comps.len() {
            1 => ColorKind::Gray,
            3 => {
                let ids = (frame.comps[0].id, frame.comps[1].id, frame.comps[2].id);
                let is_rgb = if let Some(ycc) = self.force_ycc {
                    !ycc
                } else if self.saw_jfif {
                    false
                } else if let Some(t) = self.adobe_transform {
                    t == 0
                } else {
                    ids == (82, 71, 66)
                };
                if is_rgb {
                    ColorKind::Rgb
                } else {
                    ColorKind::Ycc
                }
            }
            4 if matches!(self.adobe_transform, Some(t) if t != 0) => ColorKind::Ycck,
            4 => ColorKind::Cmyk,
            n => return Err(format!("{n}-component JPEG is not supported")),
        })
    }
}

/// IDCT each component into a plane of its own blocks, freeing coefficients as we go (a plane
/// the single-scan path already filled is taken as is).
fn idct_planes(frame: &mut Frame) -> Result<Vec<Vec<u8>>> {
    let mut planes = Vec::with_capacity(frame.comps.len());
    for c in &mut frame.comps {
        let quant = c.quant.ok_or("a component has no scan")?;
        if c.plane.is_empty() {
            let stride = c.wib * 8;
            let mut plane = vec![0u8; stride * c.hib * 8];
            for (by, band) in plane.chunks_exact_mut(8 * stride).enumerate() {
                let row = &c.coefs[by * c.bw * 64..(by * c.bw + c.wib) * 64];
                for (bx, block) in row.chunks_exact(64).enumerate() {
                    idct_islow(block, &quant, &mut band[bx * 8..], stride);
                }
            }
            c.plane = plane;
        }
        c.coefs = Vec::new();
        planes.push(std::mem::take(&mut c.plane));
    }
    Ok(planes)
}

/// One output row of interleaved RGB from the components' upsampled `rows`. `cmyk_as_stored`:
/// libjpeg's CMYK output is read as Pillow's TIFF plugin reads libtiff's ("CMYK", not inverted).
fn convert_row(
    kind: ColorKind,
    t: &YccTables,
    rows: &[&[u8]; 4],
    out: &mut [u8],
    cmyk_as_stored: bool,
) {
    match kind {
        ColorKind::Gray => {
            for (o, &v) in out.chunks_exact_mut(3).zip(rows[0]) {
                o.fill(v);
            }
        }
        ColorKind::Rgb => per_pixel(out, rows, |r, g, b| [r, g, b]),
        ColorKind::Ycc => per_pixel(out, rows, |y, cb, cr| t.rgb(y, cb, cr)),
        ColorKind::Cmyk | ColorKind::Ycck => {
            let it = out
                .chunks_exact_mut(3)
                .zip(rows[0])
                .zip(rows[1])
                .zip(rows[2])
                .zip(rows[3]);
            for ((((o, &c0), &c1), &c2), &k) in it {
                let cmy = if matches!(kind, ColorKind::Ycck) {
                    // ycck_cmyk_convert
                    let [r, g, b] = t.rgb(c0, c1, c2);
                    [255 - r, 255 - g, 255 - b]
                } else {
                    [c0, c1, c2]
                };
                // Pillow's JPEG plugin reads libjpeg's CMYK as "CMYK;I" (inverted) and
                // converts with cmyk2rgb; that equals round(c·k/255) of libjpeg's values. Its
                // TIFF plugin reads it as "CMYK": the same of the inverted values.
                for (oc, &c) in o.iter_mut().zip(&cmy) {
                    *oc = if cmyk_as_stored {
                        cmyk_channel(255 - c, 255 - k)
                    } else {
                        cmyk_channel(c, k)
                    };
                }
            }
        }
    }
}

/// `f` of the first three components' samples, pixel by pixel, into `out`.
#[inline(always)]
fn per_pixel(out: &mut [u8], rows: &[&[u8]; 4], f: impl Fn(u8, u8, u8) -> [u8; 3]) {
    for (((o, &a), &b), &c) in out
        .chunks_exact_mut(3)
        .zip(rows[0])
        .zip(rows[1])
        .zip(rows[2])
    {
        o.copy_from_slice(&f(a, b, c));
    }
}

/// The colour space of the decoded samples.
#[derive(Clone, Copy)]
enum ColorKind {
    Gray,
    Rgb,
    Ycc,
    Cmyk,
    Ycck,
}

/// `build_ycc_rgb_table` of `jdcolor.c`.
struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i64; 256],
    cb_g: [i64; 256],
}

impl YccTables {
    fn new() -> Self {
        const SCALEBITS: u32 = 16;
        const ONE_HALF: i64 = 1 << (SCALEBITS - 1);
        let fix = |x: f64| (x * f64::from(1u32 << SCALEBITS) + 0.5) as i64;
        let mut t = Self {
            cr_r: [0; 256],
            cb_b: [0; 256],
            cr_g: [0; 256],
            cb_g: [0; 256],
        };
        for i in 0..256usize {
            let x = i as i64 - 128;
            t.cr_r[i] = ((fix(1.40200) * x + ONE_HALF) >> SCALEBITS) as i32;
            t.cb_b[i] = ((fix(1.77200) * x + ONE_HALF) >> SCALEBITS) as i32;
            t.cr_g[i] = -fix(0.71414) * x;
            t.cb_g[i] = -fix(0.34414) * x + ONE_HALF;
        }
        t
    }

    #[inline]
    fn rgb(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let (y, cb, cr) = (i32::from(y), usize::from(cb), usize::from(cr));
        let g = ((self.cb_g[cb] + self.cr_g[cr]) >> 16) as i32;
        [
            (y + self.cr_r[cr]).clamp(0, 255) as u8,
            (y + g).clamp(0, 255) as u8,
            (y + self.cb_b[cb]).clamp(0, 255) as u8,
        ]
    }
}
