//! NEF and ORF whose largest preview is kept in the makernote, built to the layouts exiftool and
//! LibRaw read (see `makernote.rs`): found, preferred when largest, and damaged makernotes give no
//! preview rather than a panic.

use super::*;

/// Nikon's type-3 makernote: "Nikon\0" 2.16 0 0, its own TIFF header (offsets from it), IFD0 with
/// the PreviewIFD (0x0011), which gives the JPEG by 0x0201/0x0202.
pub(super) fn nikon_note(preview: &[u8]) -> Vec<u8> {
    let own = TiffBuilder {
        magic: *b"II*\0",
        extra: Vec::new(),
        chain: 1,
        ifds: vec![
            vec![
                (0x0001, Value::Bytes(7, b"0210".to_vec())),
                (0x0011, Value::Ifds(vec![1])),
            ],
            vec![
                (0x0103, Value::Short(6)),
                (0x0201, Value::Blob(preview.to_vec(), Some(0x0202))),
            ],
        ],
    }
    .build();
    [b"Nikon\0\x02\x10\0\0".to_vec(), own].concat()
}

/// Olympus' makernote: "OLYMPUS\0" "II" 3 0, the IFD at 12, offsets from the makernote's start;
/// CameraSettings (0x2020, type IFD) with PreviewImageValid/Start/Length.
pub(super) fn olympus_note(preview: &[u8], valid: u32) -> Vec<u8> {
    let mut note = TiffBuilder {
        magic: *b"OLYM",
        extra: b"II\x03\0".to_vec(),
        chain: 1,
        ifds: vec![
            vec![(0x2020, Value::Ifds(vec![1]))],
            vec![
                (0x0000, Value::Bytes(7, b"0100".to_vec())),
                (0x0100, Value::Long(valid)),
                (0x0101, Value::Blob(preview.to_vec(), Some(0x0102))),
            ],
        ],
    }
    .build();
    // The builder wrote IFD0's offset (12) where the signature goes on.
    note[4..8].copy_from_slice(b"PUS\0");
    note
}

/// A TIFF-based RAW (`magic`): IFD0 with Make and the raw CFA data, `subs` as SubIFDs after the
/// raw one, and an Exif IFD whose MakerNote is `note`.
pub(super) fn with_makernote(
    magic: [u8; 4],
    make: &str,
    subs: Vec<Vec<(u16, Value)>>,
    note: Vec<u8>,
) -> Vec<u8> {
    let exif = 2 + subs.len();
    let mut ifds = vec![
        vec![
            (271, Value::Bytes(2, format!("{make}\0").into_bytes())),
            (274, Value::Short(1)),
            (330, Value::Ifds((1..exif).collect())),
            (0x8769, Value::Ifds(vec![exif])),
        ],
        vec![
            (256, Value::Short(16)),
            (257, Value::Short(16)),
            (259, Value::Short(1)),
            (262, Value::Short(32803)),
            (273, Value::Blob(vec![0u8; 512], Some(279))),
        ],
    ];
    ifds.extend(subs);
    ifds.push(vec![
        (0x9000, Value::Bytes(7, b"0230".to_vec())),
        (0x927C, Value::Bytes(7, note)),
    ]);
    TiffBuilder {
        magic,
        extra: Vec::new(),
        chain: 1,
        ifds,
    }
    .build()
}

#[test]
fn a_nef_gives_the_makernote_preview_when_it_is_the_largest() {
    let (big, small) = (jpeg(160, 120), jpeg(48, 32));
    let sub = vec![(513, Value::Blob(small.clone(), Some(514)))];
    let file = with_makernote(
        *b"II*\0",
        "NIKON CORPORATION",
        vec![sub.clone()],
        nikon_note(&big),
    );
    let p = largest_preview(&file, RawKind::Tiff).unwrap();
    assert_eq!((p.jpeg, p.width, p.height), (&big[..], 160, 120));
    assert_eq!(
        decode_rgb(&file, true).unwrap().rgb,
        decode_rgb(&big, true).unwrap().rgb
    );
    // The other way round: the SubIFD's JPEG.
    let file = with_makernote(
        *b"II*\0",
        "NIKON CORPORATION",
        vec![vec![(513, Value::Blob(big.clone(), Some(514)))]],
        nikon_note(&small),
    );
    assert_eq!(
        largest_preview(&file, RawKind::Tiff).unwrap().jpeg,
        &big[..]
    );
    // Without the makernote's preview (another signature): the SubIFD's.
    let mut note = nikon_note(&big);
    note[6] = 1;
    let file = with_makernote(*b"II*\0", "NIKON CORPORATION", vec![sub], note);
    assert_eq!(
        largest_preview(&file, RawKind::Tiff).unwrap().jpeg,
        &small[..]
    );
}

#[test]
fn an_orf_gives_the_preview_in_its_camera_settings() {
    let preview = jpeg(128, 96);
    let file = with_makernote(
        *b"IIRO",
        "OLYMPUS CORPORATION",
        vec![],
        olympus_note(&preview, 1),
    );
    assert_eq!(raw_kind(&file), Some(RawKind::Orf));
    let p = largest_preview(&file, RawKind::Orf).unwrap();
    assert_eq!((p.jpeg, p.width, p.height), (&preview[..], 128, 96));
    // PreviewImageValid 0: no preview, said so.
    let file = with_makernote(
        *b"IIRO",
        "OLYMPUS CORPORATION",
        vec![],
        olympus_note(&preview, 0),
    );
    let err = decode_rgb(&file, true).unwrap_err().to_string();
    assert!(
        err.contains("ORF") && err.contains("no embedded JPEG preview"),
        "{err}"
    );
}

#[test]
fn damaged_makernotes_give_no_preview_and_no_panic() {
    let preview = jpeg(64, 48);
    let notes = [nikon_note(&preview), olympus_note(&preview, 1)];
    for (magic, make, note) in [
        (*b"II*\0", "NIKON CORPORATION", &notes[0]),
        (*b"IIRO", "OLYMPUS CORPORATION", &notes[1]),
    ] {
        // Cut short, or a byte anywhere in the makernote's directories set to 0xFF.
        for cut in (0..note.len()).step_by(5) {
            let file = with_makernote(magic, make, vec![], note[..cut].to_vec());
            let kind = raw_kind(&file).expect("still RAW");
            assert!(largest_preview(&file, kind).is_err(), "{make} cut at {cut}");
        }
        for at in 0..note.len().min(120) {
            let mut bad = note.clone();
            bad[at] ^= 0xFF;
            let file = with_makernote(magic, make, vec![], bad);
            if let Ok(p) = largest_preview(&file, raw_kind(&file).expect("RAW")) {
                assert_eq!(
                    jpeg_size(p.jpeg),
                    Some((p.width, p.height)),
                    "{make}: byte {at}"
                );
            }
        }
    }
}
