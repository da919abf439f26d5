//! Recognising HEIF-family files by their brands, and reading `irot`/`imir`.

use super::*;

#[test]
fn sniffing_by_brands() {
    let ftyp = |major: &[u8; 4], compat: &[&[u8; 4]]| {
        let mut b = Vec::new();
        b.extend_from_slice(&(16 + 4 * compat.len() as u32).to_be_bytes());
        b.extend_from_slice(b"ftyp");
        b.extend_from_slice(major);
        b.extend_from_slice(&[0; 4]);
        for c in compat {
            b.extend_from_slice(*c);
        }
        b
    };
    assert_eq!(
        sniff_heif(&ftyp(b"heic", &[b"mif1", b"heic"])),
        Some(HeifKind::Heic)
    );
    assert_eq!(
        sniff_heif(&ftyp(b"mif1", &[b"mif1", b"heic"])),
        Some(HeifKind::Heic)
    );
    assert_eq!(
        sniff_heif(&ftyp(b"avif", &[b"avif", b"mif1"])),
        Some(HeifKind::Avif)
    );
    assert_eq!(
        sniff_heif(&ftyp(b"mif1", &[b"avif", b"miaf"])),
        Some(HeifKind::Avif)
    );
    assert_eq!(sniff_heif(&ftyp(b"avis", &[b"msf1"])), Some(HeifKind::Avif));
    assert_eq!(
        sniff_heif(&ftyp(b"msf1", &[b"msf1", b"hevc"])),
        Some(HeifKind::Heic)
    );
    assert_eq!(sniff_heif(&ftyp(b"mif1", &[b"mif1"])), Some(HeifKind::Heif));
    // Videos and CR3 are not HEIF images.
    assert_eq!(sniff_heif(&ftyp(b"isom", &[b"isom", b"mp41"])), None);
    assert_eq!(sniff_heif(&ftyp(b"crx ", &[b"crx ", b"isom"])), None);
    assert_eq!(sniff_heif(&ftyp(b"qt  ", &[b"qt  "])), None);
    assert_eq!(sniff_heif(b"\0\0\0\x08ftyp"), None);
    assert_eq!(sniff_heif(b""), None);
}

#[test]
fn exif_orientation_of_irot_and_imir() {
    assert_eq!(exif_orientation(None, None), 1);
    assert_eq!(exif_orientation(Some(0), None), 1);
    assert_eq!(exif_orientation(Some(1), None), 8);
    assert_eq!(exif_orientation(Some(2), None), 3);
    assert_eq!(exif_orientation(Some(3), None), 6);
    // Every one of the 8 orientations is reachable, each once.
    let mut all: Vec<u8> = [None, Some(0), Some(1)]
        .iter()
        .flat_map(|m| (0..4).map(move |r| exif_orientation(Some(r), *m)))
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all, (1..=8).collect::<Vec<u8>>());
}

#[test]
fn malformed_meta_boxes_give_no_transforms() {
    assert_eq!(primary_transforms(b""), None);
    assert_eq!(primary_transforms(b"\0\0\0\x08meta"), None);
    assert_eq!(primary_transforms(b"\xff\xff\xff\xffmeta\0\0\0\0"), None);
    assert_eq!(
        primary_orientation(b"\0\0\0\x01meta\0\0\0\0\0\0\0\x10"),
        Orientation::NoTransforms
    );
}

#[test]
fn transforms_of_the_avif_fixtures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heif/files");
    let read = |name: &str| std::fs::read(dir.join(name)).expect("fixture");
    assert_eq!(
        primary_transforms(&read("avif_irot1_imir0.avif")),
        Some((Some(1), Some(0)))
    );
    assert_eq!(
        primary_transforms(&read("avif_imir1.avif")),
        Some((None, Some(1)))
    );
    assert_eq!(
        primary_transforms(&read("avif_8bit.avif")),
        Some((None, None))
    );
    // What Pillow's AVIF plugin gives for them (tests/fixtures/heif/manifest.json).
    assert_eq!(
        primary_orientation(&read("avif_irot1_imir0.avif")),
        Orientation::Rotate90FlipH
    );
    assert_eq!(
        primary_orientation(&read("avif_imir1.avif")),
        Orientation::FlipHorizontal
    );
    // Every cut of a file parses or gives up, never panics.
    let whole = read("avif_irot1_imir0.avif");
    for cut in 0..whole.len().min(600) {
        let _ = primary_transforms(&whole[..cut]);
    }
    assert_eq!(sniff_heif(&read("heic_grid.heic")), Some(HeifKind::Heic));
    assert_eq!(sniff_heif(&read("avif_10bit.avif")), Some(HeifKind::Avif));
}

#[test]
fn derived_sizes_of_grids() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let read = |name: &str| std::fs::read(dir.join(name)).expect("fixture");
    assert_eq!(
        derived_size(&read("heif/files/heic_grid.heic")),
        Some((120, 100))
    );
    assert_eq!(derived_size(&read("heif/files/heic_8bit.heic")), None);
    // The fuzzer's grid whose own canvas is far larger than its ispe says.
    let (w, h) = derived_size(&read("fuzz/heic_grid_canvas_bomb.heic")).expect("a grid");
    assert!(u64::from(w) * u64::from(h) > 100_000_000, "{w}x{h}");
    let whole = read("heif/files/heic_grid.heic");
    for cut in 0..whole.len().min(400) {
        let _ = derived_size(&whole[..cut]);
    }
}
