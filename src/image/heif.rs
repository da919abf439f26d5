//! HEIF-family images (HEIC, generic HEIF, AVIF): recognised by their `ftyp` brands always,
//! decoded through the system's libheif when built with the cargo feature `heif` (`libheif.rs`),
//! else refused with that reason (never as "not an image").
//!
//! What the reference pipeline gets, and so what this gives:
//! - HEIC/HEIF as pillow-heif opens them: the primary image with its transformations applied
//!   (`clap` crop, `irot`, `imir`, as libheif applies them), 10-bit images reduced to 8 bits by
//!   libheif (pillow-heif's default `convert_hdr_to_8bit`), grids assembled by libheif. pillow-heif
//!   resets the EXIF Orientation to 1 on open (the transformations already turned the image), so
//!   the EXIF tag is never applied on top, whatever `apply_exif_orientation` says.
//! - AVIF as Pillow's own AVIF plugin (libavif) opens it: the pixels as coded, without any
//!   transformation, and `irot`/`imir` turned into an EXIF orientation (the file's own EXIF
//!   Orientation is replaced by it). So an AVIF is turned upright under the same option as a
//!   JPEG's EXIF tag, and a `clap` crop is not applied (Pillow does not apply it either).
//!
//! Not for: camera RAW files in ISO-BMFF (CR3: `raw.rs`), or HEIF sequences beyond the primary
//! image.

use ::image::metadata::Orientation;

use super::DecodeError;

#[cfg(feature = "heif")]
mod libheif;
#[cfg(test)]
mod tests;

/// A HEIF-family file, from its `ftyp` brands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeifKind {
    /// HEVC-coded (`heic`, `heix`, `hevc`, … brands): iPhones' default.
    Heic,
    /// AV1-coded (`avif`, `avis`).
    Avif,
    /// A HEIF whose brands name no codec (`mif1`, `msf1` alone).
    Heif,
}

impl HeifKind {
    pub fn name(self) -> &'static str {
        match self {
            HeifKind::Heic => "HEIC",
            HeifKind::Avif => "AVIF",
            HeifKind::Heif => "HEIF",
        }
    }
}

/// Whether this build decodes HEIF-family files (the cargo feature `heif`).
pub const SUPPORTED: bool = cfg!(feature = "heif");

/// The version of the libheif this build is linked with; `None` without the feature.
pub fn libheif_version() -> Option<String> {
    #[cfg(feature = "heif")]
    return Some(libheif::version());
    #[cfg(not(feature = "heif"))]
    None
}

/// The reason given for a HEIF-family file in a build without the feature.
pub const NOT_BUILT: &str =
    "this imgvec was built without HEIC/HEIF/AVIF support; install libheif \
     (Debian/Ubuntu: `sudo apt install libheif-dev`) and rebuild with `--features heif` \
     (docs/formats.md)";

const HEVC_BRANDS: [&[u8; 4]; 8] = [
    b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs",
];
const AVIF_BRANDS: [&[u8; 4]; 2] = [b"avif", b"avis"];
const STRUCTURAL_BRANDS: [&[u8; 4]; 4] = [b"mif1", b"msf1", b"mif2", b"miaf"];

/// The HEIF-family kind of a file from its first bytes (the `ftyp` box: 32 bytes usually hold
/// every brand that matters), or `None`. A file is one when its major brand, or one of its
/// compatible brands, is a HEIF image brand; MP4/QuickTime videos and CR3 are not.
pub fn sniff_heif(header: &[u8]) -> Option<HeifKind> {
    if header.get(4..8)? != b"ftyp" {
        return None;
    }
    let size = u32::from_be_bytes(header.get(0..4)?.try_into().ok()?) as usize;
    if size < 16 {
        return None;
    }
    let major: &[u8] = header.get(8..12)?;
    let end = size.min(header.len());
    let compatible: Vec<&[u8]> = header
        .get(16..end)
        .unwrap_or_default()
        .chunks_exact(4)
        .collect();
    let is = |brand: &[u8], set: &[&[u8; 4]]| set.iter().any(|b| b.as_slice() == brand);
    let any = |set: &[&[u8; 4]]| compatible.iter().any(|b| is(b, set));
    if is(major, &AVIF_BRANDS) {
        return Some(HeifKind::Avif);
    }
    if is(major, &HEVC_BRANDS) {
        return Some(HeifKind::Heic);
    }
    // A compatible brand names the codec (AVIF first, as libheif does when both are listed).
    if any(&AVIF_BRANDS) {
        return Some(HeifKind::Avif);
    }
    if any(&HEVC_BRANDS) {
        return Some(HeifKind::Heic);
    }
    is(major, &STRUCTURAL_BRANDS).then_some(HeifKind::Heif)
}

/// A decoded HEIF-family image: RGB, and the orientation still to apply (AVIF's `irot`/`imir` as
/// an EXIF orientation; HEIC's are applied already).
pub(crate) struct HeifImage {
    pub rgb: ::image::RgbImage,
    pub orientation: Orientation,
}

/// Decodes the primary image of a HEIF-family file of `kind` (see the module's notes for what is
/// applied). Refused with the reason when this build has no HEIF support.
pub(crate) fn decode(bytes: &[u8], kind: HeifKind) -> Result<HeifImage, DecodeError> {
    #[cfg(feature = "heif")]
    {
        let apply_transformations = kind != HeifKind::Avif;
        let img = libheif::decode_primary(bytes, apply_transformations).map_err(|e| match e {
            libheif::Error::TooLarge(e) => e,
            libheif::Error::Other(reason) => DecodeError::Heif {
                kind: kind.name(),
                reason,
            },
        })?;
        let orientation = if kind == HeifKind::Avif {
            primary_orientation(bytes)
        } else {
            Orientation::NoTransforms
        };
        let rgb = img.into_rgb()?;
        Ok(HeifImage { rgb, orientation })
    }
    #[cfg(not(feature = "heif"))]
    {
        let _ = bytes;
        Err(DecodeError::Heif {
            kind: kind.name(),
            reason: NOT_BUILT.to_string(),
        })
    }
}

/// The EXIF orientation that the primary item's `irot` and `imir` properties amount to, as
/// Pillow's AVIF plugin (`irot_imir_to_exif_orientation`) computes it; `NoTransforms` when there
/// are none or the boxes cannot be read.
pub fn primary_orientation(bytes: &[u8]) -> Orientation {
    let (irot, imir) = primary_transforms(bytes).unwrap_or((None, None));
    Orientation::from_exif(exif_orientation(irot, imir)).unwrap_or(Orientation::NoTransforms)
}

/// `irot`'s angle (anti-clockwise quarter turns) and `imir`'s axis bit (libavif's reading: 0 a
/// top-to-bottom mirror, 1 left-to-right) as an EXIF Orientation value: Pillow's
/// `irot_imir_to_exif_orientation` (its AVIF plugin), table for table.
pub fn exif_orientation(irot: Option<u8>, imir: Option<u8>) -> u8 {
    let angle = irot.unwrap_or(0) & 3;
    match (angle, imir.map(|axis| axis & 1)) {
        (1, Some(1)) => 7,
        (1, Some(_)) => 5,
        (1, None) => 8,
        (2, Some(1)) => 4,
        (2, Some(_)) => 2,
        (2, None) => 3,
        (3, Some(1)) => 5,
        (3, Some(_)) => 7,
        (3, None) => 6,
        (_, Some(1)) => 2,
        (_, Some(_)) => 4,
        (_, None) => 1,
    }
}

/// The primary item's `irot` angle and `imir` axis, read from the `meta` box (`pitm`, then
/// `iprp`'s `ipco` and `ipma`). `None` when the boxes are missing or malformed.
pub fn primary_transforms(bytes: &[u8]) -> Option<(Option<u8>, Option<u8>)> {
    let meta = boxes(bytes).find(|b| &b.kind == b"meta")?.body.get(4..)?;
    let primary = {
        let pitm = boxes(meta).find(|b| &b.kind == b"pitm")?.body;
        match pitm.first()? {
            0 => u32::from(u16::from_be_bytes(pitm.get(4..6)?.try_into().ok()?)),
            _ => u32::from_be_bytes(pitm.get(4..8)?.try_into().ok()?),
        }
    };
    let iprp = boxes(meta).find(|b| &b.kind == b"iprp")?.body;
    let properties: Vec<Bx<'_>> = boxes(boxes(iprp).find(|b| &b.kind == b"ipco")?.body).collect();
    let (mut irot, mut imir) = (None, None);
    for ipma in boxes(iprp).filter(|b| &b.kind == b"ipma") {
        let body = ipma.body;
        let (version, flags) = (*body.first()?, *body.get(3)?);
        let count = u32::from_be_bytes(body.get(4..8)?.try_into().ok()?);
        let mut at = 8usize;
        for _ in 0..count {
            let item = if version < 1 {
                let v = u32::from(u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?));
                at += 2;
                v
            } else {
                let v = u32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?);
                at += 4;
                v
            };
            let associations = *body.get(at)?;
            at += 1;
            for _ in 0..associations {
                let index = if flags & 1 == 1 {
                    let v = u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?);
                    at += 2;
                    usize::from(v & 0x7fff)
                } else {
                    let v = *body.get(at)?;
                    at += 1;
                    usize::from(v & 0x7f)
                };
                if item != primary || index == 0 {
                    continue;
                }
                let Some(property) = properties.get(index - 1) else {
                    continue;
                };
                match &property.kind {
                    b"irot" => irot = property.body.first().map(|b| b & 3),
                    b"imir" => imir = property.body.first().map(|b| b & 1),
                    _ => {}
                }
            }
        }
    }
    Some((irot, imir))
}

/// The output size a derived primary image declares for itself, which its `ispe` need not match:
/// a grid's (`grid`) or an overlay's (`iovl`) canvas, read from the item's data. `None` for a
/// coded image, or when the boxes cannot be read (libheif then refuses the file or decodes a
/// coded image, whose size libheif checks against `ispe`).
pub fn derived_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let meta = boxes(bytes).find(|b| &b.kind == b"meta")?.body.get(4..)?;
    let full = |b: &[u8]| -> Option<(u8, Vec<u8>)> { Some((*b.first()?, b.get(4..)?.to_vec())) };
    let pitm = boxes(meta).find(|b| &b.kind == b"pitm")?.body;
    let primary = match pitm.first()? {
        0 => u32::from(be16(pitm, 4)?),
        _ => be32(pitm, 4)?,
    };
    // The primary item's type, from iinf's infe boxes (version 2: 16-bit ids, 3: 32-bit).
    let (iinf_version, iinf) = full(boxes(meta).find(|b| &b.kind == b"iinf")?.body)?;
    let entries = iinf.get(if iinf_version == 0 { 2 } else { 4 }..)?;
    let kind = boxes(entries)
        .filter(|b| &b.kind == b"infe")
        .find_map(|infe| {
            let (version, body) = full(infe.body)?;
            let (id, at) = match version {
                2 => (u32::from(be16(&body, 0)?), 2),
                3 => (be32(&body, 0)?, 4),
                _ => return None,
            };
            (id == primary).then(|| body.get(at + 2..at + 6).map(<[u8]>::to_vec))?
        })?;
    if kind != b"grid" && kind != b"iovl" {
        return None;
    }
    let data = item_data(bytes, meta, primary)?;
    let (flags, at) = if kind == b"grid" {
        (*data.get(1)?, 4)
    } else {
        (*data.get(1)?, 2 + 8)
    };
    if flags & 1 == 0 {
        Some((u32::from(be16(data, at)?), u32::from(be16(data, at + 2)?)))
    } else {
        Some((be32(data, at)?, be32(data, at + 4)?))
    }
}

/// The first extent of item `id`'s data (`iloc`, in the file or in `idat`), at most 64 bytes.
fn item_data<'a>(bytes: &'a [u8], meta: &'a [u8], id: u32) -> Option<&'a [u8]> {
    let iloc = boxes(meta).find(|b| &b.kind == b"iloc")?.body;
    let version = *iloc.first()?;
    let sizes = (*iloc.get(4)?, *iloc.get(5)?);
    let (offset_size, length_size) = (usize::from(sizes.0 >> 4), usize::from(sizes.0 & 15));
    let base_size = usize::from(sizes.1 >> 4);
    let index_size = if version >= 1 {
        usize::from(sizes.1 & 15)
    } else {
        0
    };
    let uint = |at: usize, n: usize| -> Option<u64> {
        let b = iloc.get(at..at + n)?;
        (n <= 8).then(|| b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
    };
    let (count, mut at) = if version < 2 {
        (u64::from(be16(iloc, 6)?), 8)
    } else {
        (u64::from(be32(iloc, 6)?), 10)
    };
    for _ in 0..count {
        let id_size = if version < 2 { 2 } else { 4 };
        let item = uint(at, id_size)?;
        at += id_size;
        let method = if version >= 1 {
            at += 2;
            uint(at - 2, 2)? & 15
        } else {
            0
        };
        at += 2; // data reference index
        let base = uint(at, base_size)?;
        at += base_size;
        let extents = uint(at, 2)?;
        at += 2;
        let first = (
            uint(at + index_size, offset_size)?,
            uint(at + index_size + offset_size, length_size)?,
        );
        at += extents as usize * (index_size + offset_size + length_size);
        if item != u64::from(id) {
            continue;
        }
        let (offset, length) = first;
        let source = match method {
            0 => bytes,
            1 => boxes(meta).find(|b| &b.kind == b"idat")?.body,
            _ => return None,
        };
        let start = usize::try_from(base.checked_add(offset)?).ok()?;
        let len = usize::try_from(length.min(64)).ok()?;
        let len = if length == 0 { 64 } else { len };
        return source.get(start..).map(|d| &d[..d.len().min(len)]);
    }
    None
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One ISO-BMFF box: its type and body.
struct Bx<'a> {
    kind: [u8; 4],
    body: &'a [u8],
}

/// The boxes in `data`, one after the other, up to the first that does not fit.
fn boxes(data: &[u8]) -> impl Iterator<Item = Bx<'_>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(rest.get(0..4)?.try_into().ok()?) as u64;
        let kind: [u8; 4] = rest.get(4..8)?.try_into().ok()?;
        let (header, size) = match size {
            0 => (8, rest.len() as u64),
            1 => (16, u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?)),
            n => (8, n),
        };
        if size < header as u64 || size > rest.len() as u64 {
            rest = &[];
            return None;
        }
        let size = size as usize;
        let body = rest.get(header..size)?;
        rest = rest.get(size..)?;
        Some(Bx { kind, body })
    })
}
