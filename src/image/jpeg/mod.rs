//! A baseline/progressive Huffman JPEG decoder whose output is bit-identical to libjpeg-turbo's
//! default decompression as Pillow runs it: islow integer IDCT (`jidctint.c`), "fancy"
//! triangle-filter chroma upsampling with libjpeg's alternating rounding biases and edge
//! replication (`jdsample.c`, `jdmainct.c`), table-driven YCbCr→RGB (`jdcolor.c`), libjpeg's
//! colour-space guess (`default_decompress_parms`), and Pillow's inverted-CMYK handling
//! (`CMYK;I` then `cmyk2rgb`).
//!
//! By stage: [`markers`] (marker segments: frame header, Huffman and quantization tables),
//! [`scan`] (one scan's MCUs, baseline or progressive), [`entropy`] (the bit reader and the
//! per-block Huffman decoding), [`idct`], [`upsample`] (chroma upsampling) and [`color`] (colour
//! conversion into RGB). This file holds the shared state and the marker loop.
//!
//! Arithmetic coding (SOF9, SOF10) is decoded as libjpeg's `jdarith.c` does ([`arith`]).
//! Truncated data is not an error here: the decoder stops where the data ends, leaves the rest
//! empty (grey, as libjpeg does) and says so ([`JpegImage::truncated`]); the caller decides.
//!
//! Not for: anything the `image` crate decodes well enough. Strict: anything unusual (12-bit,
//! lossless, DNL, 2 components, fractional sampling ratios, corrupt data) is an error, and the
//! caller ([`super::decode`]) falls back to the `image` crate's decoder. EXIF orientation is
//! only found (the APP1 segment), not applied: the caller does that.

mod arith;
mod color;
mod entropy;
mod idct;
mod markers;
mod scan;
#[cfg(test)]
mod tests;
mod upsample;

use ::image::RgbImage;

/// What one scan codes (the Huffman and the arithmetic decoders both follow it).
#[derive(Clone, Copy)]
enum ScanKind {
    Sequential,
    DcFirst,
    DcRefine,
    AcFirst,
    AcRefine,
}

use arith::Conditioning;
use markers::Huffman;

type Result<T> = std::result::Result<T, String>;

/// A decoded JPEG.
pub(crate) struct JpegImage<'a> {
    pub(crate) rgb: RgbImage,
    /// The data ended before the image did (no EOI, or a scan cut short); what the data held
    /// is decoded, the rest is grey. Pillow refuses such a file ("image file is truncated").
    pub(crate) truncated: bool,
    /// The payload of the first APP1 `Exif` segment, after its `Exif\0\0` header.
    pub(crate) exif: Option<&'a [u8]>,
}

/// The error when the file ends before any image data.
pub(crate) const TRUNCATED_BEFORE_DATA: &str = "truncated before any image data";
/// An Adobe (APP14) segment without its version: libjpeg skips it, but Pillow's JPEG plugin
/// reads the version unconditionally and cannot identify the file, so neither do we.
pub(crate) const ADOBE_TOO_SHORT: &str =
    "APP14 Adobe segment too short to hold its version (Pillow cannot identify such a file)";
/// How the errors for a file over the work limits begin (final: no other decoder tries it).
pub(crate) const WORK_LIMIT: &str = "too much work to decode:";
/// The error for a truncated file when no partial image is wanted.
pub(crate) const TRUNCATED_AFTER_DATA: &str = "truncated";
/// The error when the file ends inside a marker segment.
pub(crate) const TRUNCATED_SEGMENT: &str = "truncated inside a marker segment";

/// Zigzag index → natural (row-major) index, with libjpeg's 16 extra entries for corrupt
/// run lengths.
const NATURAL_ORDER: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63,
];

/// One colour component of the frame: its sampling, sizes, and decoded data.
struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Latched when the component's first scan starts (libjpeg's `latch_quant_tables`).
    quant: Option<[u16; 64]>,
    /// Downsampled size in samples and in blocks.
    dw: usize,
    dh: usize,
    wib: usize,
    hib: usize,
    /// Coefficient array width in blocks (whole MCUs).
    bw: usize,
    coefs: Vec<i16>,
    /// Samples, `wib·8 × hib·8`: written by the IDCT, directly during a single-scan
    /// sequential decode (no coefficient storage), else after the last scan.
    plane: Vec<u8>,
    dc_pred: i32,
}

impl Component {
    /// A component as the frame header declares it; its sizes come from the frame layout.
    fn new(id: u8, h: usize, v: usize, tq: usize) -> Self {
        Self {
            id,
            h,
            v,
            tq,
            quant: None,
            dw: 0,
            dh: 0,
            wib: 0,
            hib: 0,
            bw: 0,
            coefs: Vec::new(),
            plane: Vec::new(),
            dc_pred: 0,
        }
    }
}

/// The frame header (SOF) and the MCU grid that follows from it.
struct Frame {
    progressive: bool,
    arithmetic: bool,
    width: usize,
    height: usize,
    max_h: usize,
    max_v: usize,
    mcus_x: usize,
    mcus_y: usize,
    comps: Vec<Component>,
}

/// Parser state: the tables and frame read so far, and the position in the data.
struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    qt: [Option<[u16; 64]>; 4],
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
    restart_interval: usize,
    saw_jfif: bool,
    adobe_transform: Option<u8>,
    frame: Option<Frame>,
    scans: usize,
    eobrun: u32,
    cond: Conditioning,
    truncated: bool,
    block_visits: u64,
    exif: Option<&'a [u8]>,
    /// Three components are YCbCr (`true`) or stored as they are (`false`), whatever the
    /// markers say: how libtiff sets up libjpeg for a JPEG strip. `Some` also means a TIFF's
    /// CMYK, which Pillow reads as stored where a JPEG file's is read inverted.
    force_ycc: Option<bool>,
}

/// Decodes `data` to RGB as Pillow + libjpeg-turbo do; `max_bytes` bounds the memory used.
#[cfg(test)]
pub(crate) fn decode(data: &[u8], max_bytes: u64) -> Result<JpegImage<'_>> {
    decode_with(data, max_bytes, None, true)
}

/// [`decode`], with the colour space of three-component data given (`force_ycc`) instead of
/// guessed from the markers; without `partial`, a truncated file is an error
/// ([`TRUNCATED_AFTER_DATA`]) found before any time goes into its pixels.
pub(crate) fn decode_with(
    data: &[u8],
    max_bytes: u64,
    force_ycc: Option<bool>,
    partial: bool,
) -> Result<JpegImage<'_>> {
    let mut d = Decoder {
        data,
        pos: 0,
        qt: [None; 4],
        dc: [None, None, None, None],
        ac: [None, None, None, None],
        restart_interval: 0,
        saw_jfif: false,
        adobe_transform: None,
        frame: None,
        scans: 0,
        eobrun: 0,
        cond: Conditioning::default(),
        truncated: false,
        block_visits: 0,
        exif: None,
        force_ycc,
    };
    if data.get(0..2) != Some(&[0xFF, 0xD8]) {
        return Err("not a JPEG".into());
    }
    d.pos = 2;
    loop {
        let Some(marker) = d.next_marker() else {
            // End of data without EOI: libjpeg gives what the scans held, Pillow calls the
            // file truncated.
            if d.scans == 0 {
                return Err(TRUNCATED_BEFORE_DATA.into());
            }
            d.truncated = true;
            break;
        };
        if !d.marker(marker, max_bytes)? {
            break;
        }
    }
    let exif = d.exif;
    let truncated = d.truncated;
    if truncated && !partial {
        return Err(TRUNCATED_AFTER_DATA.into());
    }
    Ok(JpegImage {
        rgb: d.output()?,
        truncated,
        exif,
    })
}

impl Decoder<'_> {
    /// Handles one marker (its segment, or its scan); `false` at EOI.
    fn marker(&mut self, marker: u8, max_bytes: u64) -> Result<bool> {
        match marker {
            0xD8 => return Err("unexpected SOI".into()),
            0xC0..=0xC2 => self.read_sof(marker == 0xC2, false, max_bytes)?,
            0xC9 | 0xCA => self.read_sof(marker == 0xCA, true, max_bytes)?,
            0xC3 | 0xC5..=0xC7 | 0xCB | 0xCD..=0xCF => {
                return Err(format!("unsupported JPEG process (SOF{})", marker - 0xC0))
            }
            0xC4 => self.read_dht()?,
            0xCC => self.read_dac()?,
            0xDB => self.read_dqt()?,
            0xDD => {
                let seg = self.segment()?;
                if seg.len() < 2 {
                    return Err("bad DRI".into());
                }
                self.restart_interval = usize::from(u16::from_be_bytes([seg[0], seg[1]]));
            }
            0xDA => self.read_scan()?,
            0xD9 => return Ok(false),
            0xE0 => {
                let seg = self.segment()?;
                if seg.len() >= 14 && &seg[..5] == b"JFIF\0" {
                    self.saw_jfif = true;
                }
            }
            0xEE => {
                let seg = self.segment()?;
                if seg.starts_with(b"Adobe") && seg.len() < 7 {
                    return Err(ADOBE_TOO_SHORT.into());
                }
                if seg.len() >= 12 && &seg[..5] == b"Adobe" {
                    self.adobe_transform = Some(seg[11]);
                }
            }
            0xE1 => {
                let seg = self.segment()?;
                if self.exif.is_none() && seg.starts_with(b"Exif\0\0") {
                    self.exif = Some(&seg[6..]);
                }
            }
            0xE2..=0xED | 0xEF | 0xFE => {
                self.segment()?;
            }
            0xD0..=0xD7 | 0x01 => {}
            0xDC => return Err("DNL marker is not supported".into()),
            other => return Err(format!("unexpected marker 0x{other:02X}")),
        }
        Ok(true)
    }
}
