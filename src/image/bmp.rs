//! BMP files the `image` crate reads differently from Pillow: RLE4/RLE8 (decoded here the way
//! Pillow's `BmpRleDecoder` does: skipped and missing pixels are palette index 0, top-down RLE
//! accepted), 16-bit pixels (Pillow's `BGR;15`/`BGR;16` scaling, `v·255/31` truncated), and
//! headers the crate refuses but Pillow reads (OS/2 2.x 64-byte headers, planes ≠ 1), which are
//! rewritten into the equivalent 40-byte header before the crate decodes them.
//!
//! Not for: the usual 1/4/8/24/32-bit uncompressed files (the `image` crate's output equals
//! Pillow's there) or bit-field layouts other than 5-5-5 and 5-6-5 at 16 bits.

use std::borrow::Cow;

use super::limits::check_size;
use super::DecodeError;

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The BMP header fields used here (BITMAPINFOHEADER layout, 40 bytes or more).
struct Header {
    header_size: usize,
    width: u32,
    height: i32,
    bpp: u16,
    compression: u32,
    colors_used: u32,
    data_offset: usize,
}

fn header(b: &[u8]) -> Option<Header> {
    let header_size = le32(b, 14)? as usize;
    if header_size < 40 {
        return None; // OS/2 1.x (12 bytes): the crate reads it as Pillow does
    }
    Some(Header {
        header_size,
        width: u32::try_from(le32(b, 18)? as i32).ok()?,
        height: le32(b, 22)? as i32,
        bpp: le16(b, 28)?,
        compression: le32(b, 30)?,
        colors_used: le32(b, 46)?,
        data_offset: le32(b, 10)? as usize,
    })
}

/// The file as the `image` crate should see it: an OS/2 2.x header cut down to the 40 bytes it
/// shares with Windows' BITMAPINFOHEADER, and the plane count set to 1 (Pillow ignores it).
pub(crate) fn normalized(b: &[u8]) -> Cow<'_, [u8]> {
    let Some(h) = header(b) else {
        return Cow::Borrowed(b);
    };
    let planes = le16(b, 26);
    if h.header_size != 64 && planes == Some(1) {
        return Cow::Borrowed(b);
    }
    let mut out = b.to_vec();
    out[26..28].copy_from_slice(&1u16.to_le_bytes());
    if h.header_size == 64 && b.len() >= 78 {
        out.drain(54..78);
        out[14..18].copy_from_slice(&40u32.to_le_bytes());
        let offset = (h.data_offset as u32).saturating_sub(24);
        out[10..14].copy_from_slice(&offset.to_le_bytes());
        let size = (out.len() as u32).to_le_bytes();
        out[2..6].copy_from_slice(&size);
    }
    Cow::Owned(out)
}

/// A BMP decoded here.
pub(crate) struct Bmp {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) rgb: Vec<u8>,
    /// Pixel data missing at the end (Pillow: "image file is truncated"); zeros stand in.
    pub(crate) truncated: bool,
}

/// RLE and 16-bit files decoded here to RGB (`None`: the `image` crate's job).
pub(crate) fn decode(b: &[u8]) -> Option<Result<Bmp, DecodeError>> {
    let h = header(b)?;
    let rle = matches!((h.compression, h.bpp), (1, 8) | (2, 4));
    let rgb16 = h.bpp == 16 && matches!(h.compression, 0 | 3);
    if !rle && !rgb16 {
        return None;
    }
    let (w, rows) = (h.width, h.height.unsigned_abs());
    if let Err(e) = check_size(w, rows, u64::from(w) * u64::from(rows) * 4) {
        return Some(Err(e));
    }
    if w == 0 || rows == 0 {
        return None;
    }
    let data = b.get(h.data_offset..).unwrap_or(&[]);
    let (w, rows) = (w as usize, rows as usize);
    let mut truncated = false;
    let rgb = if rle {
        let indices = rle_indices(data, h.data_offset % 2, w, rows, h.bpp == 4);
        let palette = palette(b, &h);
        indices
            .iter()
            .flat_map(|&i| palette.get(usize::from(i)).copied().unwrap_or([0; 3]))
            .collect::<Vec<u8>>()
    } else {
        let masks = if h.compression == 3 {
            (le32(b, 54).unwrap_or(0), le32(b, 58).unwrap_or(0))
        } else {
            (0x7C00, 0x3E0)
        };
        let rgb = rgb16_pixels(data, w, rows, masks)?;
        // Pixels missing at the end: Pillow calls the file truncated.
        truncated = data.len() < (w * 2).div_ceil(4) * 4 * rows;
        rgb
    };
    // Rows are stored bottom-up unless the height is negative.
    let rgb = if h.height > 0 {
        rgb.chunks_exact(w * 3).rev().flatten().copied().collect()
    } else {
        rgb
    };
    Some(Ok(Bmp {
        width: w as u32,
        height: rows as u32,
        rgb,
        truncated,
    }))
}

/// The palette (BGRX entries after the header), as RGB.
fn palette(b: &[u8], h: &Header) -> Vec<[u8; 3]> {
    let n = if h.colors_used == 0 {
        1usize << h.bpp
    } else {
        (h.colors_used as usize).min(256)
    };
    let start = 14 + h.header_size;
    (0..n)
        .map_while(|i| b.get(start + 4 * i..start + 4 * i + 3))
        .map(|e| [e[2], e[1], e[0]])
        .collect()
}

/// Pillow's `BmpRleDecoder`: palette indices in file row order, index 0 where nothing is coded.
/// `parity` is the data's offset in the file modulo 2 (absolute runs are word-aligned in the
/// file).
fn rle_indices(data: &[u8], parity: usize, w: usize, rows: usize, rle4: bool) -> Vec<u8> {
    let total = w * rows;
    let mut out: Vec<u8> = Vec::with_capacity(total);
    let (mut x, mut i) = (0usize, 0usize);
    while out.len() < total && i + 1 < data.len() {
        let (n, byte) = (usize::from(data[i]), data[i + 1]);
        i += 2;
        if n > 0 {
            let n = n.min(w.saturating_sub(x));
            for k in 0..n {
                out.push(match (rle4, k % 2) {
                    (false, _) => byte,
                    (true, 0) => byte >> 4,
                    (true, _) => byte & 15,
                });
            }
            x += n;
            continue;
        }
        match byte {
            0 => {
                let pad = (w - out.len() % w) % w;
                out.resize(out.len() + pad, 0);
                x = 0;
            }
            1 => break,
            2 => {
                let (Some(&right), Some(&up)) = (data.get(i), data.get(i + 1)) else {
                    break;
                };
                i += 2;
                let skip = usize::from(right) + usize::from(up) * w;
                out.resize((out.len() + skip).min(total), 0);
                x = out.len() % w;
            }
            count => {
                let count = usize::from(count).min(total - out.len());
                let bytes = if rle4 { count.div_ceil(2) } else { count };
                let got = &data[i..(i + bytes).min(data.len())];
                i += got.len();
                if rle4 {
                    for (j, &v) in got.iter().enumerate() {
                        out.push(v >> 4);
                        if j * 2 + 1 < count {
                            out.push(v & 15);
                        }
                    }
                } else {
                    out.extend_from_slice(got);
                }
                if got.len() < bytes || out.len() == total {
                    break;
                }
                x += usize::from(byte);
                i += (parity + i) % 2;
            }
        }
    }
    out.truncate(total);
    out.resize(total, 0);
    out
}

/// 16-bit pixels (5-5-5, or 5-6-5 with those bit fields), scaled as Pillow's unpackers do.
fn rgb16_pixels(
    data: &[u8],
    w: usize,
    rows: usize,
    (r_mask, g_mask): (u32, u32),
) -> Option<Vec<u8>> {
    let (g_bits, r_shift) = match (r_mask, g_mask) {
        (0x7C00, 0x3E0) => (5, 10),
        (0xF800, 0x7E0) => (6, 11),
        _ => return None,
    };
    let stride = (w * 2).div_ceil(4) * 4;
    let g_max = (1u32 << g_bits) - 1;
    let mut out = Vec::with_capacity(w * rows * 3);
    for y in 0..rows {
        for x in 0..w {
            let at = y * stride + 2 * x;
            let p = u32::from(le16(data, at).unwrap_or(0));
            out.push((((p >> r_shift) & 31) * 255 / 31) as u8);
            out.push((((p >> 5) & g_max) * 255 / g_max) as u8);
            out.push(((p & 31) * 255 / 31) as u8);
        }
    }
    Some(out)
}
