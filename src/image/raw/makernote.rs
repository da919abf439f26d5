//! Previews kept in a camera's makernote (the Exif IFD's tag 0x927C), where the TIFF directories do
//! not point at them: Nikon's PreviewIFD and Olympus' CameraSettings preview. Layouts as exiftool
//! documents them (`MakerNotes.pm`, `Nikon.pm` PreviewIFD, `Olympus.pm` CameraSettings) and LibRaw
//! reads them (`parseNikonMakernote`, `parseOlympus_CameraSettings`):
//!
//! - Nikon (type 3): `"Nikon\0" 02 xx xx xx`, then a TIFF header of its own at byte 10; every offset
//!   in it counts from that header. Tag 0x0011 is the PreviewIFD, whose 0x0201/0x0202 give the
//!   preview JPEG's start and length.
//! - Olympus (new): `"OLYMPUS\0"` with the byte order at 8 and the IFD at 12 (`"OM SYSTEM\0"`: 12 and
//!   16); offsets count from the makernote's start. Old `"OLYMP\0"`: the IFD at 8, offsets from the
//!   file's TIFF header. Tag 0x2020 is CameraSettings (a sub-IFD, or its bytes inline), holding
//!   PreviewImageValid 0x0100, PreviewImageStart 0x0101 and PreviewImageLength 0x0102. The main
//!   IFD's 0x0100 (UNDEFINED) is a thumbnail JPEG.
//!
//! Every read is bounds-checked; a damaged makernote gives no preview, never a panic.

use super::{Found, Tiff};

/// The Exif IFD's tag for the makernote, and IFD0's pointer to the Exif IFD.
const MAKER_NOTE: u16 = 0x927C;
pub(super) const EXIF_IFD: u16 = 0x8769;

/// Offers the previews in the makernote of the Exif IFD at `exif` of `tiff` (a whole file).
pub(super) fn collect<'a>(tiff: &Tiff<'a>, exif: usize, found: &mut Found<'a>) {
    let Some((entries, _)) = tiff.ifd(exif) else {
        return;
    };
    let Some(e) = entries.iter().find(|e| e.tag == MAKER_NOTE) else {
        return;
    };
    let (at, data) = (e.at, tiff.data);
    let Some(note) = tiff.slice(at as u64, u64::from(e.count)) else {
        return;
    };
    if note.starts_with(b"Nikon\0\x02") {
        if let Some(own) = data.get(at + 10..).and_then(Tiff::open) {
            nikon(&own, found);
        }
    } else if note.starts_with(b"OLYMPUS\0") || note.starts_with(b"OM SYSTEM\0") {
        let (order, first) = if note.starts_with(b"OLYMPUS\0") {
            (8, 12)
        } else {
            (12, 16)
        };
        if let Some(own) = data.get(at..).and_then(|d| Tiff::at(d, order, first)) {
            olympus(&own, found);
        }
    } else if note.starts_with(b"OLYMP\0") {
        olympus(
            &Tiff {
                first: at + 8,
                ..*tiff
            },
            found,
        );
    }
}

/// Nikon: IFD0's tag 0x0011 → the PreviewIFD → 0x0201 start, 0x0202 length.
fn nikon<'a>(t: &Tiff<'a>, found: &mut Found<'a>) {
    let Some((entries, _)) = t.ifd(t.first) else {
        return;
    };
    let Some(preview_ifd) = t.tag_value(&entries, 0x0011) else {
        return;
    };
    if let Some((entries, _)) = usize::try_from(preview_ifd).ok().and_then(|at| t.ifd(at)) {
        let (start, len) = (t.tag_value(&entries, 0x0201), t.tag_value(&entries, 0x0202));
        if let (Some(start), Some(len)) = (start, len) {
            found.offer(t.slice(start, len));
        }
    }
}

/// Olympus: the main IFD's thumbnail (0x0100, inline), and CameraSettings' (0x2020) preview.
fn olympus<'a>(t: &Tiff<'a>, found: &mut Found<'a>) {
    let Some((entries, _)) = t.ifd(t.first) else {
        return;
    };
    if let Some(e) = entries.iter().find(|e| e.tag == 0x0100 && e.typ == 7) {
        found.offer(t.slice(e.at as u64, u64::from(e.count)));
    }
    let Some(e) = entries.iter().find(|e| e.tag == 0x2020) else {
        return;
    };
    // A sub-IFD by offset (types LONG and IFD), or the directory's bytes as the value.
    let settings = match e.typ {
        4 | 13 => t.value(e, 0).and_then(|v| usize::try_from(v).ok()),
        _ => Some(e.at),
    };
    let Some((entries, _)) = settings.and_then(|at| t.ifd(at)) else {
        return;
    };
    if t.tag_value(&entries, 0x0100) == Some(0) {
        return; // PreviewImageValid: no
    }
    let (start, len) = (t.tag_value(&entries, 0x0101), t.tag_value(&entries, 0x0102));
    if let (Some(start), Some(len)) = (start, len) {
        found.offer(t.slice(start, len));
    }
}
