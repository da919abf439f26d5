//! TIFF decoding as Pillow (with libtiff) does it, for the files the `image` crate's TIFF decoder
//! refuses or reads differently: palette (1-8 bit, with alpha), 2- and 4-bit gray, FillOrder 2,
//! WhiteIsZero, associated alpha, JPEG-compressed (YCbCr and RGB, exact through our libjpeg
//! decoder), CCITT G3 1-D/G4, BigTIFF. The first image of the file is decoded, turned upright
//! by the caller (Pillow applies a TIFF's Orientation tag when it loads it).
//!
//! By stage: [`ifd`] (header and directory), [`codec`] (strips and tiles, decompression,
//! predictor), [`pixels`] (samples to RGB as Pillow converts them).
//!
//! Not for: anything refused as [`Error::Unsupported`] (CIELab, YCbCr not compressed with JPEG,
//! old-style JPEG, CCITT G3 2-D and Modified Huffman, LZMA, float and signed samples): the
//! caller then tries the `image` crate's decoder.

mod codec;
mod ifd;
mod pixels;

use ifd::tag;

use super::limits::check_size;
use super::DecodeError;
use super::MAX_DECODE_BYTES;

/// Why a TIFF could not be decoded here.
#[derive(Debug)]
pub(crate) enum Error {
    /// A feature this decoder does not have: the caller may try another.
    Unsupported(String),
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
}

impl Layout {
    /// Bytes in one row of one plane of the whole image.
    fn row_bytes(&self) -> usize {
        let spp = if self.planar { 1 } else { self.spp };
        (self.width * self.bps * spp).div_ceil(8)
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
    let planes = if l.planar { l.spp } else { 1 };
    let bytes = (l.row_bytes() * l.height * planes + l.width * l.height * 3) as u64;
    check_size(w, h, bytes).map_err(Error::TooLarge)?;
    let orientation = dir.uint(tag::ORIENTATION, 1)?;
    let sample_planes = codec::read_planes(data, &l)?;
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
    let spp = dir.uint(tag::SAMPLES_PER_PIXEL, 1)? as usize;
    let bps_all = dir.uints(tag::BITS_PER_SAMPLE, 64)?.unwrap_or(vec![1]);
    let bps = bps_all.first().copied().unwrap_or(1) as usize;
    if !(1..=16).contains(&spp)
        || !(1..=32).contains(&bps)
        || bps_all.iter().any(|&b| b as usize != bps)
    {
        return Err(Error::Unsupported(format!(
            "{spp} samples of {bps_all:?} bits"
        )));
    }
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
    let chunk_bytes = (chunk_w * bps * spp).div_ceil(8) as u64 * chunk_h as u64;
    if chunk_bytes > MAX_DECODE_BYTES / 4 {
        return Err(Error::Corrupt(format!(
            "a {chunk_w}×{chunk_h} strip or tile needs {} MiB",
            chunk_bytes >> 20
        )));
    }
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
        tiled,
        chunk_w,
        chunk_h,
        chunks: offsets.into_iter().zip(counts).collect(),
        jpeg_tables: dir
            .bytes(tag::JPEG_TABLES)?
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
        t4_options: dir.uint(tag::T4_OPTIONS, 0)?,
    })
}
