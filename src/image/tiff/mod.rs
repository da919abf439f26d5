//! TIFF decoding as Pillow (with libtiff) does it. Every TIFF is tried here first (`image::decode`);
//! only what this refuses as unsupported goes on to the `image` crate's decoder. Beyond the
//! common strips and tiles of 8-bit gray, RGB and RGBA it reads: palette (1-8 bit, with alpha),
//! 2- and 4-bit gray, FillOrder 2,
//! WhiteIsZero, associated alpha, JPEG-compressed (YCbCr and RGB, exact through our libjpeg
//! decoder), CCITT Modified Huffman/G3 1-D and 2-D/G4, LZMA, CIELab, YCbCr not compressed with
//! JPEG (subsampled too), BigTIFF. The first image of the file is decoded, turned upright by the
//! caller (Pillow applies a TIFF's Orientation tag when it loads it).
//!
//! By stage: [`ifd`] (header and directory), [`codec`] (strips and tiles, decompression —
//! [`ccitt`] for fax coding — and predictor), [`pixels`] (samples to RGB as Pillow converts
//! them, with [`ycbcr`] and [`lab`] for those colour spaces).
//!
//! Not for: anything refused as [`Error::Unsupported`] (old-style JPEG, 16-bit CIELab, float and
//! signed samples, YCbCr subsamplings libtiff does not read): the caller then tries the `image`
//! crate's decoder.

mod ccitt;
mod codec;
mod ifd;
mod lab;
mod pixels;
mod ycbcr;

use std::borrow::Cow;

use ifd::tag;

use super::limits::check_size;
use super::DecodeError;
use super::MAX_DECODE_BYTES;

/// Why a TIFF could not be decoded here.
#[derive(Debug)]
pub(crate) enum Error {
    /// A feature this decoder does not have: the caller may try another.
    Unsupported(String),
    /// What the reference pipeline refuses too (no Pillow mode reads it): no other decoder tries.
    Refused(String),
    Corrupt(String),
    Truncated,
    TooLarge(DecodeError),
}

/// The decoded first image: RGB rows and the Orientation tag (1 when absent).
pub(crate) struct TiffImage {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) rgb: Vec<u8>,
    pub(crate) orientation: u8,
}

/// What the first IFD says about the pixel data.
#[derive(Clone)]
pub(super) struct Layout {
    width: usize,
    height: usize,
    bps: usize,
    spp: usize,
    photometric: u64,
    compression: u64,
    planar: bool,
    predictor: u64,
    fill_order_reversed: bool,
    sample_format: u64,
    extra: Vec<u64>,
    colormap: Vec<u64>,
    big_endian: bool,
    tiled: bool,
    chunk_w: usize,
    chunk_h: usize,
    /// `(offset, byte count)` of every strip or tile, planes one after the other.
    chunks: Vec<(u64, u64)>,
    jpeg_tables: Vec<u8>,
    t4_options: u64,
    /// YCbCrSubsampling (horizontal, vertical): libtiff's default (2, 2) when absent.
    subsampling: (usize, usize),
    /// YCbCrCoefficients and ReferenceBlackWhite, libtiff's defaults when absent.
    ycbcr_coefficients: [f32; 3],
    reference_black_white: [f32; 6],
}

impl Layout {
    /// Bytes in one row of one plane of the whole image.
    fn row_bytes(&self) -> usize {
        let spp = if self.planar { 1 } else { self.spp };
        (self.width * self.bps * spp).div_ceil(8)
    }

    /// Whether the samples are subsampled YCbCr that libtiff's RGBA interface reads (stored in
    /// data units of `h·v` luma samples, then Cb and Cr).
    fn ycbcr_units(&self) -> bool {
        self.photometric == 6
            && !matches!(self.compression, 1 | 6 | 7)
            && self.subsampling != (1, 1)
    }

    /// How the data is laid out for reading: for subsampled YCbCr, one "pixel" per data unit
    /// (`ycbcr.rs` spreads them back out); otherwise the layout itself.
    fn stored(&self) -> Cow<'_, Layout> {
        if !self.ycbcr_units() {
            return Cow::Borrowed(self);
        }
        let (h, v) = self.subsampling;
        Cow::Owned(Layout {
            width: self.width.div_ceil(h),
            height: self.height.div_ceil(v),
            spp: h * v + 2,
            chunk_w: self.chunk_w.div_ceil(h),
            chunk_h: self.chunk_h.div_ceil(v),
            subsampling: (1, 1),
            ..self.clone()
        })
    }
}

/// Most strips or tiles a file may list.
const MAX_CHUNKS: u64 = 1 << 22;

/// Decodes the first image of a TIFF file.
pub(crate) fn decode(data: &[u8]) -> Result<TiffImage, Error> {
    let dir = ifd::read(data)?;
    let l = layout(&dir)?;
    let (w, h) = (
        u32::try_from(l.width).map_err(|_| Error::Corrupt(format!("width {}", l.width)))?,
        u32::try_from(l.height).map_err(|_| Error::Corrupt(format!("height {}", l.height)))?,
    );
    // The pixel count first: within it, the byte counts below cannot overflow.
    check_size(w, h, 0).map_err(Error::TooLarge)?;
    let stored = l.stored();
    let planes = if stored.planar { stored.spp } else { 1 };
    let bytes = (stored.row_bytes() * stored.height * planes + l.width * l.height * 3) as u64;
    check_size(w, h, bytes).map_err(Error::TooLarge)?;
    let orientation = dir.uint(tag::ORIENTATION, 1)?;
    let sample_planes = codec::read_planes(data, &stored)?;
    let rgb = pixels::to_rgb(&l, &sample_planes)?;
    Ok(TiffImage {
        width: w,
        height: h,
        rgb,
        orientation: u8::try_from(orientation).unwrap_or(1),
    })
}

/// Reads the layout, refusing sizes and combinations that cannot be decoded.
fn layout(dir: &ifd::Ifd) -> Result<Layout, Error> {
    let width = dir.uint(tag::WIDTH, 0)? as usize;
    let height = dir.uint(tag::HEIGHT, 0)? as usize;
    if width == 0 || height == 0 {
        return Err(Error::Corrupt(format!("empty image ({width}×{height})")));
    }
    // Sides first: within them, the byte counts below cannot overflow.
    let side = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    check_size(side(width), side(height), 0).map_err(Error::TooLarge)?;
    let (spp, bps) = samples(dir)?;
    let chunks = chunks(dir, width, height, bps * spp)?;
    Ok(Layout {
        width,
        height,
        bps,
        spp,
        photometric: dir.uint(tag::PHOTOMETRIC, 0)?,
        compression: dir.uint(tag::COMPRESSION, 1)?,
        planar: dir.uint(tag::PLANAR, 1)? == 2 && spp > 1,
        predictor: dir.uint(tag::PREDICTOR, 1)?,
        fill_order_reversed: dir.uint(tag::FILL_ORDER, 1)? == 2,
        sample_format: dir.uint(tag::SAMPLE_FORMAT, 1)?,
        extra: dir.uints(tag::EXTRA_SAMPLES, 16)?.unwrap_or_default(),
        colormap: dir.uints(tag::COLOR_MAP, 3 << 16)?.unwrap_or_default(),
        big_endian: dir.file.big_endian,
        tiled: chunks.tiled,
        chunk_w: chunks.width,
        chunk_h: chunks.height,
        chunks: chunks.at,
        jpeg_tables: dir
            .bytes(tag::JPEG_TABLES)?
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
        t4_options: dir.uint(tag::T4_OPTIONS, 0)?,
        subsampling: ycbcr_subsampling(dir, (width, height), chunks.height)?,
        ycbcr_coefficients: dir
            .floats(tag::YCBCR_COEFFICIENTS, 3)?
            .and_then(|v| v.try_into().ok())
            .unwrap_or(ycbcr::DEFAULT_COEFFICIENTS),
        reference_black_white: dir
            .floats(tag::REFERENCE_BLACK_WHITE, 6)?
            .and_then(|v| v.try_into().ok())
            .unwrap_or(ycbcr::DEFAULT_REFERENCE),
    })
}

/// Samples per pixel and bits per sample, refusing what cannot be decoded (mixed sample sizes)
/// and what Pillow has no mode for (32-bit samples beyond one per pixel: it reads 32-bit
/// grayscale only).
fn samples(dir: &ifd::Ifd) -> Result<(usize, usize), Error> {
    let spp = dir.uint(tag::SAMPLES_PER_PIXEL, 1)? as usize;
    let bps_all = dir.uints(tag::BITS_PER_SAMPLE, 64)?.unwrap_or(vec![1]);
    let bps = bps_all.first().copied().unwrap_or(1) as usize;
    if bps == 32 && spp > 1 && bps_all.iter().all(|&b| b == 32) {
        return Err(Error::Refused(format!(
            "{spp} samples of 32 bits (Pillow has no mode for them)"
        )));
    }
    if !(1..=16).contains(&spp)
        || !(1..=32).contains(&bps)
        || bps_all.iter().any(|&b| b as usize != bps)
    {
        return Err(Error::Unsupported(format!(
            "{spp} samples of {bps_all:?} bits"
        )));
    }
    Ok((spp, bps))
}

/// How the pixels are cut into strips or tiles, and where each is.
struct Chunks {
    tiled: bool,
    width: usize,
    height: usize,
    /// (offset, byte count) of each strip or tile.
    at: Vec<(u64, u64)>,
}

/// The strips or tiles of a `width`×`height` image of `bits_per_pixel`, checked: offsets and
/// counts present, sizes sane, one decompressed chunk within the decoding memory limit.
fn chunks(
    dir: &ifd::Ifd,
    width: usize,
    height: usize,
    bits_per_pixel: usize,
) -> Result<Chunks, Error> {
    let tiled = dir.uints(tag::TILE_OFFSETS, MAX_CHUNKS)?.is_some();
    let (offsets_tag, counts_tag) = if tiled {
        (tag::TILE_OFFSETS, tag::TILE_BYTE_COUNTS)
    } else {
        (tag::STRIP_OFFSETS, tag::STRIP_BYTE_COUNTS)
    };
    let offsets = dir.uints(offsets_tag, MAX_CHUNKS)?.unwrap_or_default();
    let counts = dir.uints(counts_tag, MAX_CHUNKS)?.unwrap_or_default();
    if offsets.is_empty() || counts.len() < offsets.len() {
        return Err(Error::Corrupt(
            "missing strip offsets or byte counts".into(),
        ));
    }
    let (chunk_w, chunk_h) = if tiled {
        (
            dir.uint(tag::TILE_WIDTH, 0)? as usize,
            dir.uint(tag::TILE_LENGTH, 0)? as usize,
        )
    } else {
        let rows = dir.uint(tag::ROWS_PER_STRIP, u64::from(u32::MAX))?;
        (width, (rows as usize).clamp(1, height))
    };
    if chunk_w == 0 || chunk_h == 0 || (tiled && (chunk_w > 1 << 16 || chunk_h > 1 << 16)) {
        return Err(Error::Corrupt(format!("tile size {chunk_w}×{chunk_h}")));
    }
    // One decompressed strip or tile must fit the decoding memory limit too.
    let chunk_bytes = (chunk_w * bits_per_pixel).div_ceil(8) as u64 * chunk_h as u64;
    if chunk_bytes > MAX_DECODE_BYTES / 4 {
        return Err(Error::Corrupt(format!(
            "a {chunk_w}×{chunk_h} strip or tile needs {} MiB",
            chunk_bytes >> 20
        )));
    }
    Ok(Chunks {
        tiled,
        width: chunk_w,
        height: chunk_h,
        at: offsets.into_iter().zip(counts).collect(),
    })
}

/// YCbCrSubsampling where libtiff's RGBA interface applies it (compressed, not JPEG, YCbCr),
/// else (1, 1): checked to be one it reads (1, 2 or 4 across, not more down than across, or
/// 1×2), no larger than the image, and whole data units in every strip but the last.
fn ycbcr_subsampling(
    dir: &ifd::Ifd,
    (width, height): (usize, usize),
    strip_rows: usize,
) -> Result<(usize, usize), Error> {
    let compression = dir.uint(tag::COMPRESSION, 1)?;
    if dir.uint(tag::PHOTOMETRIC, 0)? != 6 || matches!(compression, 1 | 6 | 7) {
        return Ok((1, 1));
    }
    let (h, v) = match dir.uints(tag::YCBCR_SUBSAMPLING, 2)?.as_deref() {
        None => (2, 2),
        Some(&[h, v]) => (h, v),
        Some(other) => return Err(Error::Corrupt(format!("YCbCr subsampling {other:?}"))),
    };
    let known = matches!(
        (h, v),
        (1, 1) | (1, 2) | (2, 1) | (2, 2) | (4, 1) | (4, 2) | (4, 4)
    );
    let (h, v) = (h as usize, v as usize);
    if !known || width < h || height < v || (strip_rows < height && !strip_rows.is_multiple_of(v)) {
        return Err(Error::Unsupported(format!(
            "YCbCr subsampling {h}×{v} of a {width}×{height} image"
        )));
    }
    Ok((h, v))
}
