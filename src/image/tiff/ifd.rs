//! TIFF structure: the header (classic and BigTIFF, either byte order) and the first image
//! file directory, read into the few tag values decoding needs.
//!
//! Not for: pixel data (`codec.rs` decompresses it, `pixels.rs` interprets it). Only the first
//! IFD is read, as Pillow shows the first frame; later IFDs (and any loops among them) are never
//! followed.

use super::Error;

/// Tag numbers used here.
pub(super) mod tag {
    pub const WIDTH: u16 = 256;
    pub const HEIGHT: u16 = 257;
    pub const BITS_PER_SAMPLE: u16 = 258;
    pub const COMPRESSION: u16 = 259;
    pub const PHOTOMETRIC: u16 = 262;
    pub const FILL_ORDER: u16 = 266;
    pub const STRIP_OFFSETS: u16 = 273;
    pub const ORIENTATION: u16 = 274;
    pub const SAMPLES_PER_PIXEL: u16 = 277;
    pub const ROWS_PER_STRIP: u16 = 278;
    pub const STRIP_BYTE_COUNTS: u16 = 279;
    pub const T4_OPTIONS: u16 = 292;
    pub const PLANAR: u16 = 284;
    pub const PREDICTOR: u16 = 317;
    pub const COLOR_MAP: u16 = 320;
    pub const TILE_WIDTH: u16 = 322;
    pub const TILE_LENGTH: u16 = 323;
    pub const TILE_OFFSETS: u16 = 324;
    pub const TILE_BYTE_COUNTS: u16 = 325;
    pub const EXTRA_SAMPLES: u16 = 338;
    pub const SAMPLE_FORMAT: u16 = 339;
    pub const JPEG_TABLES: u16 = 347;
    pub const YCBCR_COEFFICIENTS: u16 = 529;
    pub const YCBCR_SUBSAMPLING: u16 = 530;
    pub const REFERENCE_BLACK_WHITE: u16 = 532;
}

/// The file's byte order and where its values are.
pub(super) struct File<'a> {
    pub(super) data: &'a [u8],
    pub(super) big_endian: bool,
}

/// One directory entry: its type, count and where its value bytes are.
#[derive(Clone, Copy)]
struct Entry {
    tag: u16,
    typ: u16,
    count: u64,
    /// Offset of the value bytes in the file.
    at: usize,
}

/// The first IFD's entries.
pub(super) struct Ifd<'a> {
    pub(super) file: File<'a>,
    entries: Vec<Entry>,
}

/// `a + b`, or truncated when it overflows (an offset past any file).
fn add(a: usize, b: usize) -> Result<usize, Error> {
    a.checked_add(b).ok_or(Error::Truncated)
}

impl File<'_> {
    pub(super) fn u16_at(&self, at: usize) -> Result<u16, Error> {
        let b = self.data.get(at..add(at, 2)?).ok_or(Error::Truncated)?;
        let b = [b[0], b[1]];
        Ok(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32_at(&self, at: usize) -> Result<u32, Error> {
        let b = self.data.get(at..add(at, 4)?).ok_or(Error::Truncated)?;
        let b = [b[0], b[1], b[2], b[3]];
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn u64_at(&self, at: usize) -> Result<u64, Error> {
        let hi_lo = (self.u32_at(at)?, self.u32_at(add(at, 4)?)?);
        let (first, second) = (u64::from(hi_lo.0), u64::from(hi_lo.1));
        Ok(if self.big_endian {
            first << 32 | second
        } else {
            second << 32 | first
        })
    }
}

/// Size in bytes of one value of TIFF field type `typ` (0 for unknown types).
fn type_size(typ: u16) -> u64 {
    match typ {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 | 17 | 18 => 8,
        _ => 0,
    }
}

/// Parses the header and the first IFD.
pub(super) fn read(data: &[u8]) -> Result<Ifd<'_>, Error> {
    let big_endian = match data.get(..2) {
        Some(b"II") => false,
        Some(b"MM") => true,
        _ => return Err(Error::Corrupt("not a TIFF header".into())),
    };
    let file = File { data, big_endian };
    let (big, ifd_offset) = match file.u16_at(2)? {
        42 => (false, u64::from(file.u32_at(4)?)),
        43 => (true, file.u64_at(8)?),
        v => return Err(Error::Corrupt(format!("bad TIFF version {v}"))),
    };
    let at = usize::try_from(ifd_offset).map_err(|_| Error::Truncated)?;
    let (count, first, size) = if big {
        (file.u64_at(at)?, add(at, 8)?, 20)
    } else {
        (u64::from(file.u16_at(at)?), add(at, 2)?, 12)
    };
    if count == 0 || count > 4096 {
        return Err(Error::Corrupt(format!("{count} directory entries")));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let e = add(first, i * size)?;
        let tag = file.u16_at(e)?;
        let typ = file.u16_at(add(e, 2)?)?;
        let (count, inline_at, inline_size) = if big {
            (file.u64_at(add(e, 4)?)?, add(e, 12)?, 8)
        } else {
            (u64::from(file.u32_at(add(e, 4)?)?), add(e, 8)?, 4)
        };
        let bytes = type_size(typ).saturating_mul(count);
        let at = if bytes <= inline_size {
            inline_at
        } else if big {
            usize::try_from(file.u64_at(inline_at)?).map_err(|_| Error::Truncated)?
        } else {
            file.u32_at(inline_at)? as usize
        };
        entries.push(Entry {
            tag,
            typ,
            count,
            at,
        });
    }
    Ok(Ifd { file, entries })
}

impl<'a> Ifd<'a> {
    fn entry(&self, tag: u16) -> Option<Entry> {
        self.entries.iter().copied().find(|e| e.tag == tag)
    }

    /// An integer-typed tag's values (at most `max` of them), `None` when absent.
    pub(super) fn uints(&self, tag: u16, max: u64) -> Result<Option<Vec<u64>>, Error> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        if e.count > max {
            return Err(Error::Corrupt(format!("tag {tag}: {} values", e.count)));
        }
        let size = type_size(e.typ) as usize;
        let mut out = Vec::with_capacity(e.count as usize);
        for i in 0..e.count as usize {
            let at = add(e.at, i * size)?;
            out.push(match e.typ {
                1 | 7 => u64::from(*self.file.data.get(at).ok_or(Error::Truncated)?),
                3 => u64::from(self.file.u16_at(at)?),
                4 | 13 => u64::from(self.file.u32_at(at)?),
                16 | 18 => self.file.u64_at(at)?,
                t => return Err(Error::Corrupt(format!("tag {tag} has type {t}"))),
            });
        }
        Ok(Some(out))
    }

    /// A single integer tag, or `default` when absent.
    pub(super) fn uint(&self, tag: u16, default: u64) -> Result<u64, Error> {
        Ok(self
            .uints(tag, 1 << 20)?
            .and_then(|v| v.first().copied())
            .unwrap_or(default))
    }

    /// A tag of exactly `n` numbers as libtiff reads them into floats (a RATIONAL as
    /// `num as f32 / den as f32`, 0 when `den` is 0); `None` when absent or of another count
    /// (libtiff then ignores it and uses its default).
    pub(super) fn floats(&self, tag: u16, n: usize) -> Result<Option<Vec<f32>>, Error> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        if e.count != n as u64 {
            return Ok(None);
        }
        let size = type_size(e.typ) as usize;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let at = add(e.at, i * size)?;
            let ratio = |num: f32, den: f32| if den == 0.0 { 0.0 } else { num / den };
            out.push(match e.typ {
                1 => f32::from(*self.file.data.get(at).ok_or(Error::Truncated)?),
                3 => f32::from(self.file.u16_at(at)?),
                4 => self.file.u32_at(at)? as f32,
                5 => ratio(
                    self.file.u32_at(at)? as f32,
                    self.file.u32_at(add(at, 4)?)? as f32,
                ),
                10 => ratio(
                    self.file.u32_at(at)? as i32 as f32,
                    self.file.u32_at(add(at, 4)?)? as i32 as f32,
                ),
                11 => f32::from_bits(self.file.u32_at(at)?),
                12 => f64::from_bits(self.file.u64_at(at)?) as f32,
                t => return Err(Error::Corrupt(format!("tag {tag} has type {t}"))),
            });
        }
        Ok(Some(out))
    }

    /// An UNDEFINED or BYTE tag's raw bytes (JPEGTables).
    pub(super) fn bytes(&self, tag: u16) -> Result<Option<&'a [u8]>, Error> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        let len = usize::try_from(e.count * type_size(e.typ)).map_err(|_| Error::Truncated)?;
        let data = self.file.data;
        Ok(Some(
            data.get(e.at..add(e.at, len)?).ok_or(Error::Truncated)?,
        ))
    }
}
