//! TIFF samples to RGB the way Pillow reads them and transformers' `convert_to_rgb` converts
//! them: bilevel and 2/4/8-bit gray (scaled as Pillow's `L;2`/`L;4` unpackers do, inverted for
//! WhiteIsZero), palettes (16-bit colormap entries divided by 256), RGB with unassociated or
//! associated alpha (unpremultiplied as Pillow's `RGBa`→`RGBA` does, then over white), CMYK
//! (Pillow's `cmyk2rgb`), 16-bit samples by their high byte, YCbCr not compressed with JPEG
//! (`ycbcr.rs`) and 8-bit CIELab (`lab.rs`; planar CIELab comes out white, as in the reference
//! pipeline: Pillow leaves its padding byte 0 for planar data and LittleCMS copies it as alpha).
//!
//! Not for: reading or decompressing the data (`codec.rs`). Float and signed samples, 16-bit
//! CIELab and YCbCr with extra samples are refused (`Error::Unsupported`), as Pillow refuses them.

use super::codec::Planes;
use super::ycbcr::{self, LibtiffTables};
use super::{lab, Error, Layout};
use crate::image::convert::over_white;

/// What one pixel becomes, before compositing: Pillow's mode for the file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Bilevel {
        invert: bool,
    },
    Gray {
        invert: bool,
        alpha: bool,
    },
    Palette {
        alpha: bool,
    },
    Rgb {
        alpha: Alpha,
    },
    Cmyk,
    /// `libtiff`: through libtiff's RGBA interface, else Pillow's raw reader.
    YCbCr {
        libtiff: bool,
    },
    Lab {
        planar: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Alpha {
    None,
    Straight,
    Premultiplied,
}

fn mode(l: &Layout) -> Result<Mode, Error> {
    let extra = l.extra.first().copied();
    let unsupported = |what: String| Err(Error::Unsupported(what));
    if l.sample_format != 1 {
        return unsupported(format!("sample format {}", l.sample_format));
    }
    let bits_ok = match l.photometric {
        0 | 1 => matches!(l.bps, 1 | 2 | 4 | 8 | 16) || (l.bps == 12 && l.photometric == 1),
        3 => matches!(l.bps, 1 | 2 | 4 | 8),
        _ => matches!(l.bps, 8 | 16),
    };
    if !bits_ok {
        return unsupported(format!(
            "{}-bit samples with photometric {}",
            l.bps, l.photometric
        ));
    }
    Ok(match (l.photometric, l.spp) {
        (0 | 1, 1) if l.bps == 1 => Mode::Bilevel {
            invert: l.photometric == 0,
        },
        // Pillow reads 16-bit gray as I;16 and ignores WhiteIsZero for it; 12-bit (BlackIsZero,
        // one sample) as I;12 → I;16.
        (1, 1) if l.bps == 12 => Mode::Gray {
            invert: false,
            alpha: false,
        },
        (0 | 1, 1 | 2) if l.bps != 12 => Mode::Gray {
            invert: l.photometric == 0 && l.bps != 16,
            alpha: l.spp == 2 && extra.is_some(),
        },
        (3, 1 | 2) => Mode::Palette { alpha: l.spp == 2 },
        // JPEG-compressed YCbCr comes out of libjpeg as RGB.
        (2, 3..) | (6, 3) if l.photometric == 2 || l.compression == 7 => Mode::Rgb {
            alpha: match (l.spp, extra) {
                (4.., Some(1)) => Alpha::Premultiplied,
                (4.., Some(2)) => Alpha::Straight,
                _ => Alpha::None,
            },
        },
        // Chunky JPEG-compressed CMYK comes out of our libjpeg as RGB (cmyk2rgb applied); as
        // separate planes, each is a one-component JPEG of stored samples.
        (5, 4..) if l.bps == 8 && l.compression == 7 && !l.planar => {
            Mode::Rgb { alpha: Alpha::None }
        }
        (5, 4..) if l.bps == 8 => Mode::Cmyk,
        // Pillow reads uncompressed YCbCr itself (chunky only), the rest through libtiff's
        // RGBA interface (planar only when not subsampled); old-style JPEG is neither.
        (6, 3) if l.bps == 8 && l.compression == 1 && !l.planar => Mode::YCbCr { libtiff: false },
        (6, 3)
            if l.bps == 8
                && l.compression != 6
                && !(l.ycbcr_units() && (l.planar || l.predictor != 1)) =>
        {
            Mode::YCbCr { libtiff: true }
        }
        (8, 3) if l.bps == 8 => Mode::Lab { planar: l.planar },
        (p, spp) => return unsupported(format!("photometric {p} with {spp} samples")),
    })
}

/// Reads samples from the planes.
struct Samples<'a> {
    planes: &'a Planes,
    l: &'a Layout,
    row_bytes: usize,
}

impl Samples<'_> {
    /// Sample `s` of pixel `x` in row `y`, as stored (0..2^bps).
    #[inline]
    fn get(&self, x: usize, y: usize, s: usize) -> u16 {
        let (plane, index) = if self.l.planar {
            (s, x)
        } else {
            (0, x * self.l.spp + s)
        };
        let row = &self.planes[plane][y * self.row_bytes..(y + 1) * self.row_bytes];
        match self.l.bps {
            8 => u16::from(row[index]),
            16 => {
                let b = [row[2 * index], row[2 * index + 1]];
                if self.l.big_endian {
                    u16::from_be_bytes(b)
                } else {
                    u16::from_le_bytes(b)
                }
            }
            // Packed big-endian bit order, two samples in three bytes (Pillow's "I;12").
            12 => {
                let bit = index * 12;
                let (hi, lo) = (row[bit / 8], row[bit / 8 + 1]);
                if bit % 8 == 0 {
                    (u16::from(hi) << 4) | u16::from(lo >> 4)
                } else {
                    (u16::from(hi & 0x0F) << 8) | u16::from(lo)
                }
            }
            bps => {
                let bit = index * bps;
                let byte = row[bit / 8];
                u16::from((byte >> (8 - bps - bit % 8)) & ((1 << bps) - 1) as u8)
            }
        }
    }

    /// Sample `s` as 8 bits: the high byte of a 16-bit one (the high 8 bits of a 12-bit one), a
    /// sub-byte one scaled to 0..255.
    #[inline]
    fn get8(&self, x: usize, y: usize, s: usize) -> u8 {
        let v = self.get(x, y, s);
        match self.l.bps {
            16 => (v >> 8) as u8,
            12 => (v >> 4) as u8,
            8 => v as u8,
            4 => (v * 17) as u8,
            2 => (v * 85) as u8,
            _ => (v * 255) as u8,
        }
    }
}

impl Samples<'_> {
    /// Y, Cb and Cr of pixel `(x, y)`; subsampled data is read from its data units (each
    /// pixel takes its unit's Cb and Cr, as libtiff's RGBA interface does).
    fn ycbcr(&self, x: usize, y: usize) -> (u8, u8, u8) {
        let l = self.l;
        if !l.ycbcr_units() {
            return (self.get8(x, y, 0), self.get8(x, y, 1), self.get8(x, y, 2));
        }
        let (h, v) = l.subsampling;
        let unit = h * v + 2;
        let row = l.width.div_ceil(h) * unit;
        let at = (y / v) * row + (x / h) * unit;
        let d = &self.planes[0];
        (
            d[at + (y % v) * h + x % h],
            d[at + h * v],
            d[at + h * v + 1],
        )
    }
}

/// Pillow's RGBa→RGBA (`rgba2rgbA`): unpremultiply with truncating division.
fn unpremultiply(v: u8, a: u8) -> u8 {
    if a == 0 || a == 255 {
        v
    } else {
        ((255 * u32::from(v)) / u32::from(a)).min(255) as u8
    }
}

/// Pillow's `cmyk2rgb` for one channel.
fn cmyk(c: u8, k: u8) -> u8 {
    let nk = 255 - i32::from(k);
    let t = i32::from(c) * nk + 128;
    let mul = ((t >> 8) + t) >> 8;
    (nk - mul).clamp(0, 255) as u8
}

/// The whole image as RGB rows.
pub(super) fn to_rgb(l: &Layout, planes: &Planes) -> Result<Vec<u8>, Error> {
    let mode = mode(l)?;
    let tables = match mode {
        Mode::YCbCr { libtiff: true } => Some(
            LibtiffTables::new(l.ycbcr_coefficients, l.reference_black_white).ok_or_else(|| {
                Error::Corrupt("YCbCrCoefficients or ReferenceBlackWhite out of range".into())
            })?,
        ),
        _ => None,
    };
    let px = Pixels {
        s: Samples {
            planes,
            l,
            row_bytes: l.row_bytes(),
        },
        mode,
        tables,
    };
    let mut out = Vec::with_capacity(l.width * l.height * 3);
    for y in 0..l.height {
        for x in 0..l.width {
            out.extend_from_slice(&px.get(x, y));
        }
    }
    Ok(out)
}

/// Everything one pixel's conversion needs.
struct Pixels<'a> {
    s: Samples<'a>,
    mode: Mode,
    tables: Option<LibtiffTables>,
}

impl Pixels<'_> {
    /// Colormap entry `i`, channel `ch`, as Pillow keeps it (the high byte).
    fn palette(&self, i: usize, ch: usize) -> u8 {
        let n = 1usize << self.s.l.bps;
        self.s
            .l
            .colormap
            .get(ch * n + i)
            .map_or(0, |&v| (v / 256) as u8)
    }

    /// Pixel `(x, y)` as RGB, composited over white where it has alpha.
    fn get(&self, x: usize, y: usize) -> [u8; 3] {
        let s = &self.s;
        match self.mode {
            Mode::Bilevel { invert } => {
                let v = if (s.get(x, y, 0) != 0) != invert {
                    255
                } else {
                    0
                };
                [v; 3]
            }
            Mode::Gray { invert, alpha } => {
                let mut v = s.get8(x, y, 0);
                if invert {
                    v = 255 - v;
                }
                if alpha {
                    v = over_white(v, s.get8(x, y, 1));
                }
                [v; 3]
            }
            Mode::Palette { alpha } => {
                let i = usize::from(s.get(x, y, 0));
                let rgb = [0, 1, 2].map(|ch| self.palette(i, ch));
                if alpha {
                    let a = s.get8(x, y, 1);
                    rgb.map(|v| over_white(v, a))
                } else {
                    rgb
                }
            }
            Mode::Rgb { alpha } => {
                let rgb = [s.get8(x, y, 0), s.get8(x, y, 1), s.get8(x, y, 2)];
                match alpha {
                    Alpha::None => rgb,
                    Alpha::Straight => {
                        let a = s.get8(x, y, 3);
                        rgb.map(|v| over_white(v, a))
                    }
                    Alpha::Premultiplied => {
                        let a = s.get8(x, y, 3);
                        rgb.map(|v| over_white(unpremultiply(v, a), a))
                    }
                }
            }
            Mode::Cmyk => {
                let k = s.get8(x, y, 3);
                [0, 1, 2].map(|c| cmyk(s.get8(x, y, c), k))
            }
            Mode::YCbCr { .. } => {
                let (luma, cb, cr) = s.ycbcr(x, y);
                match &self.tables {
                    Some(t) => t.to_rgb(luma, cb, cr),
                    None => ycbcr::pillow_to_rgb(luma, cb, cr),
                }
            }
            Mode::Lab { planar: true } => [255; 3],
            Mode::Lab { planar: false } => {
                lab::to_rgb(s.get8(x, y, 0), s.get8(x, y, 1), s.get8(x, y, 2))
            }
        }
    }
}
