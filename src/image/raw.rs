//! Camera RAW files: the largest full-colour preview the camera embedded (a baseline or progressive
//! JPEG), found by parsing the container, and the orientation the file asks for. No demosaicing:
//! what rawpy's `extract_thumb()` gives, and what rclip and photo managers show for a RAW file.
//!
//! Containers: TIFF-based ones (DNG, CR2, NEF, ARW, PEF, SRW… with the magic 42; ORF's `IIRO`/`IIRS`/
//! `MMOR`; RW2's `IIU\0`) through IFD0's chain and every SubIFD: `JPEGInterchangeFormat`/`Length`,
//! single-strip JPEG-compressed images that are not raw data (CFA or LinearRaw, or a lossless JPEG),
//! RW2's `JpgFromRaw` tag, and the previews in Nikon's and Olympus' makernotes (`makernote`); CR3
//! (ISO-BMFF, brand `crx `) through its preview box (`PRVW`), its thumbnail (`THMB`) and the
//! full-size JPEG of its first track (`trak`/`stsz`/`co64`), its orientation from the `CMT1` TIFF
//! block; RAF through the JPEG offset and length in its header.
//! Each candidate's size is read from its JPEG frame header; the one with most pixels wins.
//!
//! Not for: decoding the JPEG (`jpeg`), or recognising files that are plain images (`sniff`).

use std::collections::HashSet;

/// A camera RAW container, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawKind {
    /// TIFF-based with the standard magic (DNG, CR2, NEF, ARW, …): only told from a plain TIFF by
    /// its tags ([`raw_preview`]).
    Tiff,
    /// Olympus ORF (a TIFF with its own magic).
    Orf,
    /// Panasonic RW2/RAW (a TIFF with its own magic).
    Rw2,
    /// Canon CR3 (ISO base media file format).
    Cr3,
    /// Fujifilm RAF.
    Raf,
}

impl RawKind {
    pub fn name(self) -> &'static str {
        match self {
            RawKind::Tiff => "TIFF-based camera RAW",
            RawKind::Orf => "ORF",
            RawKind::Rw2 => "RW2",
            RawKind::Cr3 => "CR3",
            RawKind::Raf => "RAF",
        }
    }
}

/// The RAW containers with a magic of their own (a TIFF-based RAW with the standard magic sniffs
/// as TIFF and is told apart by [`raw_preview`]).
pub fn sniff_raw(header: &[u8]) -> Option<RawKind> {
    if header.starts_with(b"FUJIFILMCCD-RAW") {
        return Some(RawKind::Raf);
    }
    if header.get(4..12) == Some(b"ftypcrx ") {
        return Some(RawKind::Cr3);
    }
    if header.starts_with(b"IIRO") || header.starts_with(b"IIRS") || header.starts_with(b"MMOR") {
        return Some(RawKind::Orf);
    }
    if header.starts_with(b"IIU\0") {
        return Some(RawKind::Rw2);
    }
    None
}

/// The preview chosen: its JPEG bytes, pixel size, and the orientation the container gives (an
/// EXIF/TIFF Orientation value), if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preview<'a> {
    pub jpeg: &'a [u8],
    pub width: u32,
    pub height: u32,
    pub orientation: Option<u16>,
}

/// If `data` is a camera RAW file (by its magic, or a standard TIFF that is a DNG, a CR2 or holds
/// raw sensor data): its kind, and its largest preview or why there is none. One walk over the
/// container answers both.
pub fn raw_preview(data: &[u8]) -> Option<(RawKind, Result<Preview<'_>, String>)> {
    let mut found = Found::default();
    let kind = match sniff_raw(data) {
        Some(kind @ (RawKind::Orf | RawKind::Rw2)) => {
            if let Some(tiff) = Tiff::open(data) {
                tiff.collect(&mut found);
            }
            kind
        }
        Some(RawKind::Cr3) => {
            cr3(data, &mut found);
            RawKind::Cr3
        }
        Some(RawKind::Raf) => {
            raf(data, &mut found);
            RawKind::Raf
        }
        Some(RawKind::Tiff) | None => {
            if !(data.starts_with(b"II*\0") || data.starts_with(b"MM\0*")) {
                return None;
            }
            Tiff::open(data)?.collect(&mut found);
            // Canon CR2: "CR" after the TIFF header.
            if !found.raw_data && data.get(8..10) != Some(b"CR") {
                return None;
            }
            RawKind::Tiff
        }
    };
    let preview = found.best.ok_or_else(|| {
        format!(
            "no embedded JPEG preview found in this {} file (imgvec reads a RAW file's preview, \
             not its raw sensor data)",
            kind.name()
        )
    });
    Some((kind, preview))
}

/// What the walk over a container found.
#[derive(Default)]
struct Found<'a> {
    best: Option<Preview<'a>>,
    orientation: Option<u16>,
    /// Whether some directory holds raw sensor data.
    raw_data: bool,
}

impl<'a> Found<'a> {
    /// Takes `jpeg` if it is a colour JPEG bigger than the best so far.
    fn offer(&mut self, jpeg: Option<&'a [u8]>) {
        let Some(jpeg) = jpeg else { return };
        let Some((width, height)) = jpeg_size(jpeg) else {
            return;
        };
        let pixels = u64::from(width) * u64::from(height);
        if self
            .best
            .is_none_or(|b| pixels > u64::from(b.width) * u64::from(b.height))
        {
            self.best = Some(Preview {
                jpeg,
                width,
                height,
                orientation: None,
            });
        }
        if let Some(b) = self.best.as_mut() {
            b.orientation = self.orientation;
        }
    }

    fn set_orientation(&mut self, value: u16) {
        if (1..=8).contains(&value) && self.orientation.is_none() {
            self.orientation = Some(value);
            if let Some(b) = self.best.as_mut() {
                b.orientation = Some(value);
            }
        }
    }
}

/// The width and height in the frame header of a baseline, extended or progressive Huffman JPEG
/// with one or three components; `None` for anything else (lossless raw data included).
fn jpeg_size(jpeg: &[u8]) -> Option<(u32, u32)> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2usize;
    loop {
        while *jpeg.get(at)? == 0xFF && *jpeg.get(at + 1)? == 0xFF {
            at += 1;
        }
        if *jpeg.get(at)? != 0xFF {
            return None;
        }
        let marker = *jpeg.get(at + 1)?;
        let len = usize::from(u16::from_be_bytes([*jpeg.get(at + 2)?, *jpeg.get(at + 3)?]));
        match marker {
            0xC0..=0xC2 => {
                let seg = jpeg.get(at + 4..at + 2 + len)?;
                let height = u16::from_be_bytes([*seg.get(1)?, *seg.get(2)?]);
                let width = u16::from_be_bytes([*seg.get(3)?, *seg.get(4)?]);
                let components = *seg.get(5)?;
                return (width > 0 && height > 0 && matches!(components, 1 | 3))
                    .then_some((u32::from(width), u32::from(height)));
            }
            // Other frame types (lossless, arithmetic, hierarchical), or image data before a frame.
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xDA | 0xD9 => return None,
            _ => at = at.checked_add(2 + len)?,
        }
    }
}

/// Tags read here.
mod tag {
    pub const COMPRESSION: u16 = 259;
    pub const PHOTOMETRIC: u16 = 262;
    pub const STRIP_OFFSETS: u16 = 273;
    pub const ORIENTATION: u16 = 274;
    pub const STRIP_BYTE_COUNTS: u16 = 279;
    pub const SUB_IFDS: u16 = 330;
    pub const JPEG_OFFSET: u16 = 513;
    pub const JPEG_LENGTH: u16 = 514;
    /// Panasonic RW2: a whole JPEG as the tag's value.
    pub const RW2_JPG_FROM_RAW: u16 = 46;
    pub const DNG_VERSION: u16 = 50706;
}

/// Photometric interpretations of raw sensor data.
const CFA: u64 = 32803;
const LINEAR_RAW: u64 = 34892;
/// Compressions only camera raw data uses (Nikon NEF, Sony ARW, Pentax, Samsung…).
const RAW_COMPRESSIONS: [u64; 5] = [32767, 32769, 32770, 34713, 65535];

/// Directories read at most (a damaged file may point in circles).
const MAX_IFDS: usize = 64;
/// Entries of one directory read at most.
const MAX_ENTRIES: usize = 1_000;

/// A classic TIFF structure (any magic) over `data`.
#[derive(Clone, Copy)]
struct Tiff<'a> {
    data: &'a [u8],
    big_endian: bool,
    first: usize,
}

/// One directory entry: tag, type, count, and the offset of its value bytes.
#[derive(Clone, Copy)]
struct Entry {
    tag: u16,
    typ: u16,
    count: u32,
    at: usize,
}

impl<'a> Tiff<'a> {
    fn open(data: &'a [u8]) -> Option<Tiff<'a>> {
        let big_endian = match data.get(0..2)? {
            b"II" => false,
            b"MM" => true,
            _ => return None,
        };
        let t = Tiff {
            data,
            big_endian,
            first: 0,
        };
        let first = t.u32(4)? as usize;
        Some(Tiff { first, ..t })
    }

    /// A TIFF-like structure without a TIFF header (a makernote's): the byte order ("II"/"MM") at
    /// `order`, the first directory at `first`, offsets from the start of `data`.
    fn at(data: &'a [u8], order: usize, first: usize) -> Option<Tiff<'a>> {
        let big_endian = match data.get(order..order + 2)? {
            b"II" => false,
            b"MM" => true,
            _ => return None,
        };
        Some(Tiff {
            data,
            big_endian,
            first,
        })
    }

    fn u16(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.data.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.data.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    /// The entries of the directory at `at`, and the offset of the next one (0: none).
    fn ifd(&self, at: usize) -> Option<(Vec<Entry>, usize)> {
        let n = usize::from(self.u16(at)?).min(MAX_ENTRIES);
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            let e = at + 2 + 12 * i;
            let (tag, typ, count) = (self.u16(e)?, self.u16(e + 2)?, self.u32(e + 4)?);
            let size = match typ {
                1 | 2 | 6 | 7 => 1usize,
                3 | 8 => 2,
                4 | 9 | 11 | 13 => 4,
                5 | 10 | 12 => 8,
                _ => 0,
            };
            let bytes = size.saturating_mul(count as usize);
            let value_at = if bytes <= 4 {
                e + 8
            } else {
                self.u32(e + 8)? as usize
            };
            entries.push(Entry {
                tag,
                typ,
                count,
                at: value_at,
            });
        }
        let next = self.u32(at + 2 + 12 * n).unwrap_or(0) as usize;
        Some((entries, next))
    }

    /// The `i`-th value of an integer entry.
    fn value(&self, e: &Entry, i: u32) -> Option<u64> {
        if i >= e.count {
            return None;
        }
        let i = i as usize;
        match e.typ {
            1 | 7 => self.data.get(e.at + i).map(|&b| u64::from(b)),
            3 => self.u16(e.at + 2 * i).map(u64::from),
            4 | 13 => self.u32(e.at + 4 * i).map(u64::from),
            _ => None,
        }
    }

    /// The first value of the entry with `tag` among `entries`.
    fn tag_value(&self, entries: &[Entry], tag: u16) -> Option<u64> {
        entries
            .iter()
            .find(|e| e.tag == tag)
            .and_then(|e| self.value(e, 0))
    }

    /// `len` bytes at `offset`, if the file holds them.
    fn slice(&self, offset: u64, len: u64) -> Option<&'a [u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.data.get(start..end)
    }

    /// Walks IFD0's chain and every SubIFD, offering each preview JPEG to `found`, and noting the
    /// orientation (of IFD0) and whether raw sensor data is there.
    fn collect(&self, found: &mut Found<'a>) {
        let mut queue = vec![(self.first, true)];
        let mut seen = HashSet::new();
        while let Some((at, chain)) = queue.pop() {
            if at == 0 || seen.len() >= MAX_IFDS || !seen.insert(at) {
                continue;
            }
            let Some((entries, next)) = self.ifd(at) else {
                continue;
            };
            if chain {
                queue.push((next, true));
            }
            let get = |t: u16| entries.iter().find(|e| e.tag == t);
            let first = |t: u16| get(t).and_then(|e| self.value(e, 0));
            if at == self.first {
                if let Some(o) = first(tag::ORIENTATION) {
                    found.set_orientation(o as u16);
                }
                if get(tag::DNG_VERSION).is_some() {
                    found.raw_data = true;
                }
                if let Some(exif) = first(makernote::EXIF_IFD) {
                    makernote::collect(self, exif as usize, found);
                }
            }
            if let Some(subs) = get(tag::SUB_IFDS) {
                for i in 0..subs.count.min(MAX_IFDS as u32) {
                    if let Some(sub) = self.value(subs, i).or_else(|| {
                        // Some writers give SubIFDs the IFD type (13) or LONG: both read as u32.
                        self.u32(subs.at + 4 * i as usize).map(u64::from)
                    }) {
                        queue.push((sub as usize, false));
                    }
                }
            }
            let photometric = first(tag::PHOTOMETRIC);
            let compression = first(tag::COMPRESSION).unwrap_or(1);
            let raw = matches!(photometric, Some(CFA | LINEAR_RAW))
                || RAW_COMPRESSIONS.contains(&compression);
            found.raw_data |= raw;
            if let (Some(offset), Some(len)) = (first(tag::JPEG_OFFSET), first(tag::JPEG_LENGTH)) {
                found.offer(self.slice(offset, len));
            }
            let strips = get(tag::STRIP_OFFSETS).filter(|s| s.count == 1);
            if !raw && matches!(compression, 6 | 7) {
                if let (Some(s), Some(len)) = (strips, first(tag::STRIP_BYTE_COUNTS)) {
                    found.offer(self.value(s, 0).and_then(|o| self.slice(o, len)));
                }
            }
            if let Some(e) = get(tag::RW2_JPG_FROM_RAW).filter(|e| e.typ == 7) {
                found.offer(self.slice(e.at as u64, u64::from(e.count)));
            }
        }
    }
}

/// One ISO-BMFF box: its type, and its payload's range in the file.
struct Bmff {
    kind: [u8; 4],
    body: std::ops::Range<usize>,
}

/// The boxes in `data[range]`, in order (stops at the first damaged one).
fn boxes(data: &[u8], range: std::ops::Range<usize>) -> Vec<Bmff> {
    let mut out = Vec::new();
    let mut at = range.start;
    while at + 8 <= range.end && out.len() < 4_096 {
        let Some(size32) = data
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            break;
        };
        let mut kind = [0u8; 4];
        kind.copy_from_slice(&data[at + 4..at + 8]);
        let (size, header) = match size32 {
            0 => ((range.end - at) as u64, 8),
            1 => match data.get(at + 8..at + 16) {
                Some(b) => (u64::from_be_bytes(b.try_into().unwrap_or([0; 8])), 16),
                None => break,
            },
            n => (u64::from(n), 8),
        };
        let Some(end) = usize::try_from(size).ok().and_then(|s| at.checked_add(s)) else {
            break;
        };
        if size < header as u64 || end > range.end {
            break;
        }
        out.push(Bmff {
            kind,
            body: at + header..end,
        });
        at = end;
    }
    out
}

/// Canon's metadata box inside `moov` (THMB, CMT1…).
const CANON_UUID: [u8; 16] = [
    0x85, 0xc0, 0xb6, 0x87, 0x82, 0x0f, 0x11, 0xe0, 0x81, 0x11, 0xf4, 0xce, 0x46, 0x2b, 0x6a, 0x48,
];
/// The top-level box holding the PRVW preview.
const PREVIEW_UUID: [u8; 16] = [
    0xea, 0xf4, 0x2b, 0x5e, 0x1c, 0x98, 0x4b, 0x88, 0xb9, 0xfb, 0xb7, 0xdc, 0x40, 0x6e, 0x4d, 0x16,
];

/// CR3: the PRVW preview, the THMB thumbnail, the first track's full-size JPEG; CMT1's orientation.
fn cr3<'a>(data: &'a [u8], found: &mut Found<'a>) {
    for top in boxes(data, 0..data.len()) {
        match &top.kind {
            b"moov" => {
                for b in boxes(data, top.body.clone()) {
                    if &b.kind == b"uuid"
                        && data.get(b.body.start..b.body.start + 16) == Some(&CANON_UUID)
                    {
                        canon_box(data, b.body.start + 16..b.body.end, found);
                    }
                    if &b.kind == b"trak" {
                        first_sample(data, b.body, found);
                    }
                }
            }
            b"uuid" if data.get(top.body.start..top.body.start + 16) == Some(&PREVIEW_UUID) => {
                // 16 bytes of uuid, 8 of Canon's own, then the PRVW box.
                let inner = top.body.start + 24..top.body.end;
                for b in boxes(data, inner) {
                    if &b.kind == b"PRVW" {
                        // u32, u16, width u16, height u16, u16, JPEG length u32, the JPEG.
                        found.offer(sized(data, b.body.start + 12, b.body.start + 16));
                    }
                }
            }
            _ => {}
        }
    }
}

/// The big-endian u32 at `at`.
fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// The bytes at `start` whose length is the big-endian u32 at `len_at`.
fn sized(data: &[u8], len_at: usize, start: usize) -> Option<&[u8]> {
    let len = be32(data, len_at)? as usize;
    data.get(start..start.checked_add(len)?)
}

/// Canon's uuid box in `moov`: THMB (a small JPEG) and CMT1 (IFD0 as a TIFF, for orientation).
fn canon_box<'a>(data: &'a [u8], range: std::ops::Range<usize>, found: &mut Found<'a>) {
    for b in boxes(data, range) {
        match &b.kind {
            b"CMT1" => {
                if let Some(tiff) = data.get(b.body.clone()).and_then(Tiff::open) {
                    if let Some((entries, _)) = tiff.ifd(tiff.first) {
                        if let Some(o) = entries
                            .iter()
                            .find(|e| e.tag == tag::ORIENTATION)
                            .and_then(|e| tiff.value(e, 0))
                        {
                            found.set_orientation(o as u16);
                        }
                    }
                }
            }
            b"THMB" => {
                // version u8, flags u24, width u16, height u16, JPEG length u32, u16, u16, the JPEG.
                found.offer(sized(data, b.body.start + 8, b.body.start + 16));
            }
            _ => {}
        }
    }
}

/// The first sample of a track (`trak/mdia/minf/stbl`: its size from `stsz`, its place from
/// `co64` or `stco`), offered as a JPEG: CR3's first track is the full-size JPEG.
fn first_sample<'a>(data: &'a [u8], trak: std::ops::Range<usize>, found: &mut Found<'a>) {
    let find = |range: std::ops::Range<usize>, kind: &[u8; 4]| {
        boxes(data, range)
            .into_iter()
            .find(|b| &b.kind == kind)
            .map(|b| b.body)
    };
    let Some(stbl) = find(trak, b"mdia")
        .and_then(|r| find(r, b"minf"))
        .and_then(|r| find(r, b"stbl"))
    else {
        return;
    };
    let be32 = |at: usize| be32(data, at);
    // stsz: version/flags, sample size (0: per sample), count, sizes.
    let size = find(stbl.clone(), b"stsz").and_then(|r| match be32(r.start + 4)? {
        0 => be32(r.start + 12),
        n => Some(n),
    });
    let offset = find(stbl.clone(), b"co64")
        .and_then(|r| data.get(r.start + 8..r.start + 16))
        .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
        .or_else(|| {
            find(stbl, b"stco")
                .and_then(|r| be32(r.start + 8))
                .map(u64::from)
        });
    if let (Some(size), Some(offset)) = (size, offset) {
        let start = usize::try_from(offset).ok();
        found.offer(start.and_then(|s| data.get(s..s.checked_add(size as usize)?)));
    }
}

/// RAF: the JPEG's offset and length are big-endian u32s at bytes 84 and 88 of the header.
fn raf<'a>(data: &'a [u8], found: &mut Found<'a>) {
    if let Some(offset) = be32(data, 84) {
        found.offer(sized(data, 88, offset as usize));
    }
}

mod makernote;
#[cfg(test)]
mod tests;
