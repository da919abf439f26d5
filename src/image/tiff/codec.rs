//! TIFF pixel data: each strip or tile read, bit-reversed for FillOrder 2, decompressed (none,
//! PackBits, LZW, Deflate, LZMA through `lzma-rust2`, CCITT Modified Huffman, G3 1-D/2-D and
//! G4 through `ccitt.rs`, JPEG through our libjpeg-exact decoder with the JPEGTables spliced
//! in, as libtiff does), un-predicted (horizontal differencing) and placed into whole-image
//! sample planes.
//!
//! Not for: what the samples mean (`pixels.rs`) or the directory (`ifd.rs`).

use super::{ccitt, Error, Layout};
use crate::image::jpeg;
use crate::image::MAX_DECODE_BYTES;

/// Whole-image sample rows: one plane (chunky) or one per sample (planar), each
/// `height × row_bytes` with `row_bytes` from [`Layout::row_bytes`].
pub(super) type Planes = Vec<Vec<u8>>;

/// Reads, decompresses and places every chunk.
pub(super) fn read_planes(data: &[u8], l: &Layout) -> Result<Planes, Error> {
    let planes = if l.planar { l.spp } else { 1 };
    let row_bytes = l.row_bytes();
    let mut out: Planes = (0..planes)
        .map(|_| vec![0u8; row_bytes * l.height])
        .collect();
    let across = l.width.div_ceil(l.chunk_w);
    let down = l.height.div_ceil(l.chunk_h);
    let per_plane = across * down;
    if l.chunks.len() < per_plane * planes {
        return Err(Error::Corrupt(format!(
            "{} strips or tiles, {} needed",
            l.chunks.len(),
            per_plane * planes
        )));
    }
    let chunk_spp = if l.planar { 1 } else { l.spp };
    let chunk_row = (l.chunk_w * l.bps * chunk_spp).div_ceil(8);
    for (i, &(offset, len)) in l.chunks.iter().take(per_plane * planes).enumerate() {
        let (plane, idx) = (i / per_plane, i % per_plane);
        let (x0, y0) = ((idx % across) * l.chunk_w, (idx / across) * l.chunk_h);
        // Strips hold only the rows left; tiles are always whole.
        let rows = if l.tiled {
            l.chunk_h
        } else {
            l.chunk_h.min(l.height - y0)
        };
        let raw = chunk_bytes(data, offset, len)?;
        // Uncompressed data shorter than its rows: Pillow's raw decoder calls it truncated
        // (libtiff's codecs tolerate a short compressed strip, and so does `decompress`).
        if l.compression == 1 && raw.len() < chunk_row * rows {
            return Err(Error::Truncated);
        }
        let pixels = decompress(raw, l, chunk_row * rows, rows)?;
        let mut pixels = pixels;
        pixels.resize(chunk_row * rows, 0);
        unpredict(&mut pixels, l, chunk_row, chunk_spp)?;
        place(
            &pixels,
            &mut out[plane],
            l,
            chunk_row,
            (x0, y0),
            rows,
            chunk_spp,
        );
    }
    Ok(out)
}

/// The chunk's bytes in the file: refused as truncated when the file ends before them.
fn chunk_bytes(data: &[u8], offset: u64, len: u64) -> Result<&[u8], Error> {
    let start = usize::try_from(offset).map_err(|_| Error::Truncated)?;
    let end = usize::try_from(offset.saturating_add(len)).map_err(|_| Error::Truncated)?;
    data.get(start..end).ok_or(Error::Truncated)
}

/// Copies a decompressed chunk's rows into the plane, clipping what lies outside the image.
fn place(
    pixels: &[u8],
    plane: &mut [u8],
    l: &Layout,
    chunk_row: usize,
    (x0, y0): (usize, usize),
    rows: usize,
    chunk_spp: usize,
) {
    let row_bytes = l.row_bytes();
    let bit_x0 = x0 * l.bps * chunk_spp;
    let cols = l.chunk_w.min(l.width - x0);
    let copy_bits = cols * l.bps * chunk_spp;
    for r in 0..rows.min(l.height - y0) {
        let src = &pixels[r * chunk_row..(r + 1) * chunk_row];
        let dst = &mut plane[(y0 + r) * row_bytes..(y0 + r + 1) * row_bytes];
        if bit_x0.is_multiple_of(8) {
            let n = copy_bits.div_ceil(8);
            dst[bit_x0 / 8..bit_x0 / 8 + n].copy_from_slice(&src[..n]);
        } else {
            // Only sub-byte samples in tiles whose width is not a multiple of 8 get here.
            for b in 0..copy_bits {
                let bit = (src[b / 8] >> (7 - b % 8)) & 1;
                let at = bit_x0 + b;
                dst[at / 8] |= bit << (7 - at % 8);
            }
        }
    }
}

/// One chunk decompressed (at most `expected` bytes are kept; fewer are zero-filled later, as
/// libtiff tolerates a short strip).
fn decompress(raw: &[u8], l: &Layout, expected: usize, rows: usize) -> Result<Vec<u8>, Error> {
    let reversed: Vec<u8>;
    let raw = if l.fill_order_reversed && l.compression != 7 {
        reversed = raw.iter().map(|b| b.reverse_bits()).collect();
        &reversed[..]
    } else {
        raw
    };
    let corrupt = |what: &str| Error::Corrupt(format!("{what} data"));
    // Reserve no more than the data could plausibly expand to; growth past it is on demand.
    let expected_cap = expected.min(raw.len().saturating_mul(64));
    let mut out = match l.compression {
        1 => raw.to_vec(),
        32773 => packbits(raw, expected),
        5 => lzw(raw, expected).ok_or_else(|| corrupt("LZW"))?,
        8 | 32946 => {
            use std::io::Read;
            let mut out = Vec::with_capacity(expected_cap);
            let mut z = flate2::read::ZlibDecoder::new(raw).take(expected as u64);
            if z.read_to_end(&mut out).is_err() && out.is_empty() {
                return Err(corrupt("Deflate"));
            }
            out
        }
        2..=4 => fax(raw, l, rows)?,
        34925 => lzma(raw, expected)?,
        7 => jpeg_chunk(raw, l)?,
        c => return Err(Error::Unsupported(format!("compression {c}"))),
    };
    out.truncate(expected);
    Ok(out)
}

/// LZW as TIFF writes it (MSB first, early change), up to `expected` bytes: a stream cut short
/// or without its end code keeps what decoded, as libtiff does. `None` if nothing did.
fn lzw(raw: &[u8], expected: usize) -> Option<Vec<u8>> {
    let mut dec = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
    let mut out = vec![0u8; expected];
    let (mut filled, mut input) = (0, raw);
    while filled < expected {
        let r = dec.decode_bytes(input, &mut out[filled..]);
        filled += r.consumed_out;
        input = &input[r.consumed_in..];
        match r.status {
            Ok(weezl::LzwStatus::Ok) if r.consumed_in + r.consumed_out > 0 => {}
            Err(_) if filled == 0 => return None,
            _ => break,
        }
    }
    out.truncate(filled);
    Some(out)
}

/// PackBits (Apple's run-length coding), up to `expected` bytes.
fn packbits(raw: &[u8], expected: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(expected.min(raw.len().saturating_mul(64)));
    let mut i = 0;
    while i < raw.len() && out.len() < expected {
        let n = raw[i] as i8;
        i += 1;
        if n >= 0 {
            let end = (i + n as usize + 1).min(raw.len());
            out.extend_from_slice(&raw[i..end]);
            i = end;
        } else if n != -128 {
            if let Some(&b) = raw.get(i) {
                out.extend(std::iter::repeat_n(b, (1 - i32::from(n)) as usize));
            }
            i += 1;
        }
    }
    out
}

/// CCITT data (compression 2, 3 or 4) as 1-bit rows, black = 1 as libtiff gives them.
fn fax(raw: &[u8], l: &Layout, rows: usize) -> Result<Vec<u8>, Error> {
    if l.bps != 1 || l.spp != 1 {
        return Err(Error::Unsupported(format!(
            "CCITT coding of {} samples of {} bits",
            l.spp, l.bps
        )));
    }
    let scheme = match l.compression {
        2 => ccitt::Scheme::ModifiedHuffman,
        3 => ccitt::Scheme::Group3 {
            two_d: l.t4_options & 1 != 0,
        },
        _ => ccitt::Scheme::Group4,
    };
    Ok(ccitt::decode(raw, l.chunk_w, rows, scheme))
}

/// An LZMA strip (libtiff writes an xz stream): at most `expected` bytes are pulled from the
/// decoder, so a small stream cannot expand past the strip; a stream cut short or damaged keeps
/// what decoded, as libtiff does.
fn lzma(raw: &[u8], expected: usize) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    // The dictionary grows with the output, so this limit only refuses absurd headers.
    let limit_kib = u32::try_from(MAX_DECODE_BYTES / 4 / 1024).unwrap_or(u32::MAX);
    let reader = lzma_rust2::XzReader::new_mem_limit(raw, false, limit_kib);
    let mut out = Vec::with_capacity(expected.min(raw.len().saturating_mul(64)));
    let result = reader.take(expected as u64).read_to_end(&mut out);
    if result.is_err() && out.is_empty() {
        return Err(Error::Corrupt("LZMA data".into()));
    }
    Ok(out)
}

/// A JPEG strip or tile: the JPEGTables stream (without its EOI) then the chunk (without its
/// SOI), decoded with the colour handling libtiff asks libjpeg for. Samples out: 1 or 3 (CMYK:
/// RGB in the strip's 4 or more).
fn jpeg_chunk(raw: &[u8], l: &Layout) -> Result<Vec<u8>, Error> {
    let mut stream = Vec::with_capacity(raw.len() + l.jpeg_tables.len());
    match (l.jpeg_tables.len() >= 4, raw.starts_with(&[0xFF, 0xD8])) {
        (true, true) => {
            stream.extend_from_slice(&l.jpeg_tables[..l.jpeg_tables.len() - 2]);
            stream.extend_from_slice(&raw[2..]);
        }
        _ => stream.extend_from_slice(raw),
    }
    // libtiff converts YCbCr to RGB (JPEGCOLORMODE_RGB, as Pillow sets it); anything else
    // comes out as stored.
    let ycbcr = l.photometric == 6;
    let img =
        jpeg::decode_with(&stream, MAX_DECODE_BYTES, Some(ycbcr), false).map_err(|e| {
            match e.as_str() {
                jpeg::TRUNCATED_AFTER_DATA
                | jpeg::TRUNCATED_BEFORE_DATA
                | jpeg::TRUNCATED_SEGMENT => Error::Truncated,
                _ => Error::Corrupt(format!("JPEG data: {e}")),
            }
        })?;
    let spp = if l.planar { 1 } else { l.spp.min(3) };
    let rgb = img.rgb.into_raw();
    if !l.planar && l.photometric == 5 && l.spp > 3 {
        // CMYK, converted to RGB by the JPEG decoder as Pillow converts it (`pixels.rs` reads
        // it as RGB): laid out in the strip's `spp` samples a pixel, the rest zero.
        let mut out = Vec::with_capacity(rgb.len() / 3 * l.spp);
        for p in rgb.chunks_exact(3) {
            out.extend_from_slice(p);
            out.resize(out.len() + l.spp - 3, 0);
        }
        return Ok(out);
    }
    Ok(if spp == 3 {
        rgb
    } else {
        rgb.chunks_exact(3).map(|p| p[0]).collect()
    })
}

/// Undoes horizontal differencing (Predictor 2) row by row, for 8- and 16-bit samples.
fn unpredict(pixels: &mut [u8], l: &Layout, chunk_row: usize, spp: usize) -> Result<(), Error> {
    match (l.predictor, l.bps) {
        (1, _) => Ok(()),
        (2, 8) => {
            for row in pixels.chunks_exact_mut(chunk_row) {
                for i in spp..row.len() {
                    row[i] = row[i].wrapping_add(row[i - spp]);
                }
            }
            Ok(())
        }
        (2, 16) => {
            let be = l.big_endian;
            let get = |b: &[u8], i: usize| {
                let v = [b[2 * i], b[2 * i + 1]];
                if be {
                    u16::from_be_bytes(v)
                } else {
                    u16::from_le_bytes(v)
                }
            };
            for row in pixels.chunks_exact_mut(chunk_row) {
                for i in spp..row.len() / 2 {
                    let v = get(row, i).wrapping_add(get(row, i - spp));
                    let b = if be { v.to_be_bytes() } else { v.to_le_bytes() };
                    row[2 * i..2 * i + 2].copy_from_slice(&b);
                }
            }
            Ok(())
        }
        (p, bps) => Err(Error::Unsupported(format!(
            "predictor {p} with {bps}-bit samples"
        ))),
    }
}
