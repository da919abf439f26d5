//! RAW containers built here to each one's documented layout, with JPEG previews made here: the
//! largest colour preview is found (raw data, lossless JPEGs and smaller previews passed over),
//! oriented by the container, and damaged or truncated files are refused with a reason, never a
//! panic.

use super::*;
use crate::image::{decode_rgb, DecodeError};
use ::image::codecs::jpeg::JpegEncoder;
use ::image::RgbImage;

mod makernote;

/// The kind of RAW file `data` is, if it is one.
fn raw_kind(data: &[u8]) -> Option<RawKind> {
    raw_preview(data).map(|(kind, _)| kind)
}

/// The largest preview of `data`, a RAW file of `kind`.
fn largest_preview(data: &[u8], kind: RawKind) -> Result<Preview<'_>, String> {
    match raw_preview(data) {
        Some((k, preview)) if k == kind => preview,
        other => Err(format!("not a {kind:?} file: {:?}", other.map(|o| o.0))),
    }
}

/// A CR2: a TIFF with "CR", version 2.0 and the raw IFD's offset (unused here) after its header,
/// and `ifds` as IFD0's chain.
fn cr2(ifds: Vec<Vec<(u16, Value)>>) -> Vec<u8> {
    TiffBuilder {
        magic: *b"II*\0",
        extra: vec![b'C', b'R', 2, 0, 0, 0, 0, 0],
        chain: ifds.len(),
        ifds,
    }
    .build()
}

/// An RW2 whose IFD0 holds `preview` in its JpgFromRaw tag.
fn rw2(preview: &[u8]) -> Vec<u8> {
    TiffBuilder {
        magic: *b"IIU\0",
        extra: Vec::new(),
        chain: 1,
        ifds: vec![vec![(46, Value::Bytes(7, preview.to_vec()))]],
    }
    .build()
}

/// A baseline JPEG of `w`×`h` with a gradient (so orientation shows).
fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| {
        ::image::Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 128])
    });
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

/// A lossless (SOF3) JPEG stream header, as raw sensor data is stored in CR2 and many DNGs.
fn lossless_jpeg() -> Vec<u8> {
    let mut v = vec![
        0xFF, 0xD8, 0xFF, 0xC3, 0x00, 0x0B, 0x0E, 0x01, 0x00, 0x01, 0x00, 0x01,
    ];
    v.extend_from_slice(&[0x01, 0x11, 0x00, 0xFF, 0xD9]);
    v
}

/// A little-endian classic TIFF: directories of (tag, type, count, value bytes), blobs placed after
/// them. `Value::Blob` entries point at a blob; the `SubIfds` entry at later directories.
#[derive(Clone)]
enum Value {
    Short(u16),
    Long(u32),
    Bytes(u16, Vec<u8>),
    /// The offset (LONG) and, if `len_tag` is given, a second entry with the length.
    Blob(Vec<u8>, Option<u16>),
    /// Offsets (LONG) of the directories with these indices.
    Ifds(Vec<usize>),
}

struct TiffBuilder {
    magic: [u8; 4],
    /// Bytes after the 8-byte header, before the first directory (CR2's "CR" block).
    extra: Vec<u8>,
    /// Directories; the first `chain` of them are IFD0's chain, the rest SubIFDs.
    ifds: Vec<Vec<(u16, Value)>>,
    chain: usize,
}

impl TiffBuilder {
    fn build(&self) -> Vec<u8> {
        // Layout: header, then the directories one after another, then the blobs.
        let sizes: Vec<usize> = self
            .ifds
            .iter()
            .map(|d| 2 + 12 * entry_count(d) + 4)
            .collect();
        let mut ifd_at = Vec::new();
        let mut at = 8 + self.extra.len();
        for s in &sizes {
            ifd_at.push(at);
            at += s;
        }
        let mut blobs: Vec<u8> = Vec::new();
        let blob_base = at;
        let mut out = self.magic.to_vec();
        out.extend_from_slice(&(ifd_at[0] as u32).to_le_bytes());
        out.extend_from_slice(&self.extra);
        for (i, dir) in self.ifds.iter().enumerate() {
            let mut entries: Vec<(u16, u16, u32, [u8; 4])> = Vec::new();
            for (tag, v) in dir {
                match v {
                    Value::Short(s) => entries.push((*tag, 3, 1, pad(&s.to_le_bytes()))),
                    Value::Long(l) => entries.push((*tag, 4, 1, l.to_le_bytes())),
                    Value::Bytes(typ, b) => {
                        if b.len() <= 4 {
                            entries.push((*tag, *typ, b.len() as u32, pad(b)));
                        } else {
                            let off = (blob_base + blobs.len()) as u32;
                            blobs.extend_from_slice(b);
                            entries.push((*tag, *typ, b.len() as u32, off.to_le_bytes()));
                        }
                    }
                    Value::Blob(b, len_tag) => {
                        let off = (blob_base + blobs.len()) as u32;
                        blobs.extend_from_slice(b);
                        entries.push((*tag, 4, 1, off.to_le_bytes()));
                        if let Some(lt) = len_tag {
                            entries.push((*lt, 4, 1, (b.len() as u32).to_le_bytes()));
                        }
                    }
                    Value::Ifds(which) => {
                        let offs: Vec<u8> = which
                            .iter()
                            .flat_map(|&w| (ifd_at[w] as u32).to_le_bytes())
                            .collect();
                        if offs.len() <= 4 {
                            entries.push((*tag, 4, which.len() as u32, pad(&offs)));
                        } else {
                            let off = (blob_base + blobs.len()) as u32;
                            blobs.extend_from_slice(&offs);
                            entries.push((*tag, 4, which.len() as u32, off.to_le_bytes()));
                        }
                    }
                }
            }
            entries.sort_by_key(|e| e.0);
            out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
            for (tag, typ, count, value) in entries {
                out.extend_from_slice(&tag.to_le_bytes());
                out.extend_from_slice(&typ.to_le_bytes());
                out.extend_from_slice(&count.to_le_bytes());
                out.extend_from_slice(&value);
            }
            let next = if i + 1 < self.chain {
                ifd_at[i + 1] as u32
            } else {
                0
            };
            out.extend_from_slice(&next.to_le_bytes());
        }
        assert_eq!(out.len(), blob_base);
        out.extend_from_slice(&blobs);
        out
    }
}

fn entry_count(dir: &[(u16, Value)]) -> usize {
    dir.iter()
        .map(|(_, v)| match v {
            Value::Blob(_, Some(_)) => 2,
            _ => 1,
        })
        .sum()
}

fn pad(b: &[u8]) -> [u8; 4] {
    let mut out = [0u8; 4];
    out[..b.len()].copy_from_slice(b);
    out
}

/// A DNG: IFD0 an 8×8 RGB thumbnail (orientation 6), SubIFD 1 the CFA raw data, SubIFD 2 the
/// JPEG-compressed preview `preview`.
fn dng(preview: &[u8], orientation: u16) -> Vec<u8> {
    let thumb = vec![200u8; 8 * 8 * 3];
    TiffBuilder {
        magic: *b"II*\0",
        extra: Vec::new(),
        chain: 1,
        ifds: vec![
            vec![
                (254, Value::Long(1)),
                (256, Value::Short(8)),
                (257, Value::Short(8)),
                (259, Value::Short(1)),
                (262, Value::Short(2)),
                (273, Value::Blob(thumb, Some(279))),
                (274, Value::Short(orientation)),
                (277, Value::Short(3)),
                (330, Value::Ifds(vec![1, 2])),
                (50706, Value::Bytes(1, vec![1, 4, 0, 0])),
            ],
            vec![
                (254, Value::Long(0)),
                (256, Value::Short(16)),
                (257, Value::Short(16)),
                (259, Value::Short(7)),
                (262, Value::Short(32803)),
                (273, Value::Blob(lossless_jpeg(), Some(279))),
            ],
            vec![
                (254, Value::Long(1)),
                (259, Value::Short(7)),
                (262, Value::Short(6)),
                (273, Value::Blob(preview.to_vec(), Some(279))),
            ],
        ],
    }
    .build()
}

#[test]
fn a_dng_gives_its_jpeg_preview_turned_by_its_orientation() {
    let preview = jpeg(96, 64);
    let file = dng(&preview, 6);
    assert_eq!(raw_kind(&file), Some(RawKind::Tiff));
    let p = largest_preview(&file, RawKind::Tiff).unwrap();
    assert_eq!(
        (p.jpeg, p.width, p.height, p.orientation),
        (&preview[..], 96, 64, Some(6))
    );

    let from_raw = decode_rgb(&file, true).unwrap();
    let plain = decode_rgb(&preview, true).unwrap();
    // Orientation 6: turned 90° clockwise.
    assert_eq!(from_raw.rgb, ::image::imageops::rotate90(&plain.rgb));
    assert_eq!(
        (from_raw.original_width, from_raw.original_height),
        (64, 96)
    );
    assert_eq!(
        from_raw.raw_preview,
        Some(("TIFF-based camera RAW", 96, 64))
    );
    // Without orientation: as stored.
    assert_eq!(decode_rgb(&file, false).unwrap().rgb, plain.rgb);
}

#[test]
fn a_cr2_gives_its_largest_preview_and_passes_over_the_lossless_raw_data() {
    let (big, small) = (jpeg(120, 80), jpeg(40, 30));
    let file = cr2(vec![
        vec![
            (259, Value::Short(6)),
            (273, Value::Blob(big.clone(), Some(279))),
            (274, Value::Short(1)),
        ],
        vec![(513, Value::Blob(small, Some(514)))],
        vec![(259, Value::Short(1)), (262, Value::Short(2))],
        vec![
            (259, Value::Short(6)),
            (273, Value::Blob(lossless_jpeg(), Some(279))),
        ],
    ]);
    assert_eq!(raw_kind(&file), Some(RawKind::Tiff));
    let p = largest_preview(&file, RawKind::Tiff).unwrap();
    assert_eq!((p.width, p.height, p.jpeg), (120, 80, &big[..]));
}

#[test]
fn a_plain_tiff_is_not_a_camera_raw() {
    let file = TiffBuilder {
        magic: *b"II*\0",
        extra: Vec::new(),
        chain: 1,
        ifds: vec![vec![
            (256, Value::Short(2)),
            (257, Value::Short(2)),
            (259, Value::Short(1)),
            (262, Value::Short(2)),
            (273, Value::Blob(vec![9u8; 12], Some(279))),
            (277, Value::Short(3)),
        ]],
    }
    .build();
    assert_eq!(raw_kind(&file), None);
}

#[test]
fn an_rw2_gives_the_jpeg_in_its_tag() {
    let preview = jpeg(64, 48);
    let file = rw2(&preview);
    assert_eq!(raw_kind(&file), Some(RawKind::Rw2));
    let p = largest_preview(&file, RawKind::Rw2).unwrap();
    assert_eq!((p.jpeg, p.width), (&preview[..], 64));
}

/// A RAF: the 16-byte magic, a version, the camera, then the JPEG's offset and length at 84.
fn raf_file(preview: &[u8]) -> Vec<u8> {
    let mut f = b"FUJIFILMCCD-RAW 0201FF383501".to_vec();
    f.resize(84, 0);
    let offset = 148u32;
    f.extend_from_slice(&offset.to_be_bytes());
    f.extend_from_slice(&(preview.len() as u32).to_be_bytes());
    f.resize(offset as usize, 0);
    f.extend_from_slice(preview);
    f.extend_from_slice(&[0u8; 64]); // the raw data would follow
    f
}

#[test]
fn a_raf_gives_the_jpeg_its_header_points_at() {
    let preview = jpeg(80, 60);
    let file = raf_file(&preview);
    assert_eq!(raw_kind(&file), Some(RawKind::Raf));
    assert_eq!(
        decode_rgb(&file, true).unwrap().rgb,
        decode_rgb(&preview, true).unwrap().rgb
    );
}

/// An ISO-BMFF box.
fn bmff(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

/// A CR3: ftyp; moov with Canon's uuid box (CMT1 with the orientation, THMB) and a track whose
/// first sample is the full-size JPEG; the preview uuid box with PRVW; mdat with the JPEG.
fn cr3_file(full: &[u8], prvw: &[u8], thumb: &[u8], orientation: u16) -> Vec<u8> {
    let ftyp = bmff(b"ftyp", b"crx \0\0\0\x01crx isom");
    let cmt1 = TiffBuilder {
        magic: *b"II*\0",
        extra: Vec::new(),
        chain: 1,
        ifds: vec![vec![(274, Value::Short(orientation))]],
    }
    .build();
    let mut thmb = vec![0u8, 0, 0, 0, 0, 160, 0, 120];
    thmb.extend_from_slice(&(thumb.len() as u32).to_be_bytes());
    thmb.extend_from_slice(&[0, 1, 0, 0]);
    thmb.extend_from_slice(thumb);
    let mut canon = CANON_UUID.to_vec();
    canon.extend(bmff(b"CMT1", &cmt1));
    canon.extend(bmff(b"THMB", &thmb));
    let mut prvw_body = vec![0u8, 0, 0, 0, 0, 1, 6, 84, 4, 56, 0, 1];
    prvw_body.extend_from_slice(&(prvw.len() as u32).to_be_bytes());
    prvw_body.extend_from_slice(prvw);
    let mut preview_uuid = PREVIEW_UUID.to_vec();
    preview_uuid.extend_from_slice(&[0u8; 8]);
    preview_uuid.extend(bmff(b"PRVW", &prvw_body));
    let build = |mdat_at: u64| {
        let mut stsz = vec![0u8; 4];
        stsz.extend_from_slice(&0u32.to_be_bytes());
        stsz.extend_from_slice(&1u32.to_be_bytes());
        stsz.extend_from_slice(&(full.len() as u32).to_be_bytes());
        let mut co64 = vec![0u8; 4];
        co64.extend_from_slice(&1u32.to_be_bytes());
        co64.extend_from_slice(&mdat_at.to_be_bytes());
        let stbl = bmff(
            b"stbl",
            &[bmff(b"stsz", &stsz), bmff(b"co64", &co64)].concat(),
        );
        let trak = bmff(b"trak", &bmff(b"mdia", &bmff(b"minf", &stbl)));
        let moov = bmff(b"moov", &[bmff(b"uuid", &canon), trak].concat());
        [ftyp.clone(), moov, bmff(b"uuid", &preview_uuid)].concat()
    };
    let head = build(0);
    let mdat_at = head.len() as u64 + 8;
    [build(mdat_at), bmff(b"mdat", full)].concat()
}

#[test]
fn a_cr3_gives_its_full_size_jpeg_turned_by_cmt1() {
    let (full, prvw, thumb) = (jpeg(150, 100), jpeg(90, 60), jpeg(32, 24));
    let file = cr3_file(&full, &prvw, &thumb, 8);
    assert_eq!(raw_kind(&file), Some(RawKind::Cr3));
    let p = largest_preview(&file, RawKind::Cr3).unwrap();
    assert_eq!(
        (p.jpeg, p.width, p.height, p.orientation),
        (&full[..], 150, 100, Some(8))
    );
    // Without the full-size track, the PRVW preview; without both, the thumbnail.
    let file = cr3_file(&[], &prvw, &thumb, 1);
    assert_eq!(
        largest_preview(&file, RawKind::Cr3).unwrap().jpeg,
        &prvw[..]
    );
    let file = cr3_file(&[], &[], &thumb, 1);
    assert_eq!(
        largest_preview(&file, RawKind::Cr3).unwrap().jpeg,
        &thumb[..]
    );
    // Orientation 8: turned 90° counter-clockwise.
    let file = cr3_file(&full, &prvw, &thumb, 8);
    let plain = decode_rgb(&full, true).unwrap();
    assert_eq!(
        decode_rgb(&file, true).unwrap().rgb,
        ::image::imageops::rotate270(&plain.rgb)
    );
}

#[test]
fn damaged_and_truncated_raw_files_are_refused_with_a_reason() {
    let preview = jpeg(96, 64);
    let files = [
        dng(&preview, 1),
        raf_file(&preview),
        cr3_file(&preview, &jpeg(40, 30), &jpeg(16, 12), 1),
    ];
    for file in &files {
        let kind = raw_kind(file).unwrap();
        // Cut anywhere: never a panic; either a smaller preview still whole, or a clear refusal.
        for cut in (0..file.len()).step_by(7) {
            let part = &file[..cut];
            match decode_rgb(part, true) {
                Ok(d) => assert!(
                    d.raw_preview.is_some() || part.len() < 16,
                    "{kind:?} at {cut}"
                ),
                Err(DecodeError::Raw { kind: k, reason }) => {
                    assert_eq!(k, kind.name());
                    assert!(!reason.is_empty());
                }
                // Cut so short it is no longer recognisably RAW: refused as what it looks like.
                Err(e) => assert!(
                    !e.to_string().contains("panicked"),
                    "{kind:?} at {cut}: {e}"
                ),
            }
        }
    }
    // The preview's length pointing past the end: no preview, said so.
    let mut raf = raf_file(&preview);
    raf[88..92].copy_from_slice(&u32::MAX.to_be_bytes());
    let err = decode_rgb(&raf, true).unwrap_err().to_string();
    assert!(
        err.contains("RAF") && err.contains("no embedded JPEG preview"),
        "{err}"
    );
    // A preview that is not a JPEG the decoder takes: the reason names it.
    let mut broken = preview.clone();
    let n = broken.len();
    broken[n / 2..].fill(0);
    let err = decode_rgb(&dng(&broken, 1), true)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("preview"), "{err}");
}

#[test]
fn raw_magics_are_sniffed_and_other_files_are_not() {
    assert_eq!(sniff_raw(b"FUJIFILMCCD-RAW 0201"), Some(RawKind::Raf));
    assert_eq!(
        sniff_raw(b"\0\0\0\x18ftypcrx \0\0\0\x01"),
        Some(RawKind::Cr3)
    );
    assert_eq!(sniff_raw(b"IIRO\x08\0\0\0"), Some(RawKind::Orf));
    assert_eq!(sniff_raw(b"IIU\0\x08\0\0\0"), Some(RawKind::Rw2));
    assert_eq!(sniff_raw(b"\0\0\0\x18ftypheic"), None);
    assert_eq!(sniff_raw(b"II*\0\x08\0\0\0"), None);
    assert_eq!(jpeg_size(&lossless_jpeg()), None);
}

/// The samples in `tests/fixtures/raw/` (seeds of the decode fuzzer, `examples/fuzz_decode.rs`)
/// are the ones the builders above make; `IMGVEC_WRITE_FIXTURES=1` writes them anew.
#[test]
fn the_raw_fixtures_are_the_built_samples() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/raw");
    let cr2 = cr2(vec![
        vec![
            (259, Value::Short(6)),
            (273, Value::Blob(jpeg(72, 48), Some(279))),
            (274, Value::Short(3)),
        ],
        vec![(513, Value::Blob(jpeg(24, 16), Some(514)))],
    ]);
    let rw2 = rw2(&jpeg(64, 48));
    let nef = makernote::with_makernote(
        *b"II*\0",
        "NIKON CORPORATION",
        vec![vec![(513, Value::Blob(jpeg(32, 24), Some(514)))]],
        makernote::nikon_note(&jpeg(80, 60)),
    );
    let orf = makernote::with_makernote(
        *b"IIRO",
        "OLYMPUS CORPORATION",
        vec![],
        makernote::olympus_note(&jpeg(72, 48), 1),
    );
    let samples = [
        ("sample.dng", dng(&jpeg(96, 64), 6)),
        ("sample.cr2", cr2),
        ("sample.rw2", rw2),
        ("sample.nef", nef),
        ("sample.orf", orf),
        ("sample.raf", raf_file(&jpeg(80, 60))),
        (
            "sample.cr3",
            cr3_file(&jpeg(120, 80), &jpeg(60, 40), &jpeg(32, 24), 8),
        ),
    ];
    if std::env::var("IMGVEC_WRITE_FIXTURES").as_deref() == Ok("1") {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &samples {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (name, bytes) in &samples {
        let on_disk = std::fs::read(dir.join(name)).unwrap();
        assert!(&on_disk == bytes, "{name} differs from its builder");
        let d = decode_rgb(&on_disk, true).unwrap();
        assert!(d.raw_preview.is_some(), "{name}");
    }
}
