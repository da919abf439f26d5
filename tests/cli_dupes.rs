//! `imgvec dupes`, and the paths of copies, end to end on both backends with the tiny checkpoint: a
//! folder of photos with an exact copy elsewhere, JPEG re-encodes (quality 60 and 95), a 50%
//! resize, a 5% crop, a rotation by EXIF tag, and a different photo; the groups come out exactly
//! as built, with the keeper the original.
//!
//! The distance: with the tiny checkpoint, re-encodes, resizes and the EXIF rotation of these
//! photos are at most 0.016 from their original, 5% crops at most 0.107, and different photos of
//! this set at least 0.45 apart (measured with `bench/dupes_distances.sh`, see docs/commands.md),
//! so the default 0.2 separates them with room on both sides.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A JPEG of `img` at `quality`, with an EXIF Orientation tag when given.
fn jpeg(img: &image::RgbImage, quality: u8, orientation: Option<u16>) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(img)
        .unwrap();
    if let Some(o) = orientation {
        // Big-endian TIFF header, one IFD entry: tag 0x0112 (Orientation), SHORT, count 1.
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        exif.extend_from_slice(&o.to_be_bytes());
        exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut app1 = vec![0xFF, 0xE1];
        app1.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        app1.extend_from_slice(&exif);
        bytes.splice(2..2, app1);
    }
    bytes
}

fn set_age(path: &Path, days: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(86_400 * days))
        .unwrap();
}

/// The photos: `photos/` with the originals and their variants, `backup/` with an exact copy.
/// Returns the temp dir, both folders, and the expected groups (file names, sorted).
fn library() -> (tempfile::TempDir, PathBuf, PathBuf, Vec<Vec<String>>) {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, backup) = (tmp.path().join("photos"), tmp.path().join("backup"));
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::create_dir_all(&backup).unwrap();
    let src = fixtures().join("images");
    for name in ["astronaut.png", "camera.png", "rocket.jpg", "coffee.png"] {
        std::fs::copy(src.join(name), photos.join(name)).unwrap();
        set_age(&photos.join(name), 30);
    }
    std::fs::copy(src.join("astronaut.png"), backup.join("astronaut.png")).unwrap();
    set_age(&backup.join("astronaut.png"), 1);
    let open = |name: &str| image::open(src.join(name)).unwrap().to_rgb8();
    let astronaut = open("astronaut.png");
    for q in [60, 95] {
        std::fs::write(
            photos.join(format!("astronaut-q{q}.jpg")),
            jpeg(&astronaut, q, None),
        )
        .unwrap();
    }
    let camera = open("camera.png");
    let (w, h) = camera.dimensions();
    image::imageops::resize(&camera, w / 2, h / 2, image::imageops::FilterType::Triangle)
        .save(photos.join("camera-half.png"))
        .unwrap();
    let (dx, dy) = (w / 20, h / 20);
    image::imageops::crop_imm(&camera, dx, dy, w - 2 * dx, h - 2 * dy)
        .to_image()
        .save(photos.join("camera-crop5.png"))
        .unwrap();
    // Stored turned a quarter to the left, tagged to be shown turned right: upright again.
    let rocket = image::imageops::rotate270(&open("rocket.jpg"));
    std::fs::write(photos.join("rocket-exif6.jpg"), jpeg(&rocket, 90, Some(6))).unwrap();
    let groups = [
        vec![
            "astronaut-q60.jpg",
            "astronaut-q95.jpg",
            "astronaut.png",
            "astronaut.png",
        ],
        vec!["camera-crop5.png", "camera-half.png", "camera.png"],
        vec!["rocket-exif6.jpg", "rocket.jpg"],
    ];
    let groups = groups
        .iter()
        .map(|g| g.iter().map(|n| n.to_string()).collect())
        .collect();
    (tmp, photos, backup, groups)
}

fn file_name(p: &Value) -> String {
    Path::new(p.as_str().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Each group's member file names, sorted; the groups sorted.
fn names(groups: &[Value]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut n: Vec<String> = g["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| file_name(&m["path"]))
                .collect();
            n.sort();
            n
        })
        .collect();
    out.sort();
    out
}

backend_test! {
    fn dupes_groups_copies_and_near_duplicates_as_built(idx) {
        let (_tmp, photos, backup, expected) = library();
        idx.create();
        for dir in [&photos, &backup] {
            ok(&idx, &idx.run(&["ingest", s(dir), "--label", "x", "--json"]));
        }
        // 10 files, 9 contents: the copy is one document with two paths.
        assert_eq!(idx.count(), 9, "[{}]", idx.kind());

        let out = ok(&idx, &idx.run(&["dupes", "--json"]));
        let groups = json_lines(&out);
        assert_eq!(names(&groups), expected, "[{}] {out}", idx.kind());
        for g in &groups {
            let members = g["members"].as_array().unwrap();
            let keep: Vec<&Value> = members.iter().filter(|m| m["keep"] == true).collect();
            assert_eq!(keep.len(), 1, "{g}");
            assert_eq!(members[0]["keep"], true, "the keeper comes first: {g}");
            assert_eq!(members[0]["distance"], 0.0, "{g}");
            assert!(members.iter().all(|m| m["distance"].as_f64().unwrap() <= 0.2), "{g}");
            assert_eq!(g["exact"], false, "{g}");
        }
        // Keepers: the older of the two copies of the largest file; the most pixels.
        let keeper = |prefix: &str| {
            let g = groups
                .iter()
                .find(|g| file_name(&g["members"][0]["path"]).starts_with(prefix))
                .unwrap_or_else(|| panic!("no group kept by {prefix}: {out}"));
            g["members"][0]["path"].as_str().unwrap().to_string()
        };
        assert_eq!(keeper("astronaut"), photos.join("astronaut.png").display().to_string());
        assert_eq!(keeper("camera"), photos.join("camera.png").display().to_string());
        let astronaut = groups
            .iter()
            .find(|g| file_name(&g["members"][0]["path"]) == "astronaut.png")
            .unwrap();
        let copy = &astronaut["members"][1];
        assert_eq!(copy["path"], backup.join("astronaut.png").display().to_string());
        assert_eq!((copy["distance"].as_f64(), &copy["id"]), (Some(0.0), &astronaut["members"][0]["id"]));

        // A tighter distance keeps the copies, re-encodes, resize and rotation, not the crop.
        let tight = json_lines(&ok(&idx, &idx.run(&["dupes", "--json", "--max-distance", "0.05"])));
        let mut want = expected.clone();
        want[1].retain(|n| n != "camera-crop5.png");
        assert_eq!(names(&tight), want, "[{}]", idx.kind());

        // Scoped to the backup folder: one path, no group. CSV: a row per file, the header first.
        let scoped = ok(&idx, &idx.run(&["dupes", s(&backup), "--json"]));
        assert!(scoped.trim().is_empty(), "{scoped}");
        let csv = ok(&idx, &idx.run(&["dupes", "--csv"]));
        let rows: Vec<&str> = csv.lines().collect();
        assert!(rows[0].starts_with("group,keep,path,"), "{csv}");
        assert_eq!(rows.len(), 1 + 9, "{csv}");
        let table = ok(&idx, &idx.run(&["dupes"]));
        assert!(table.contains("keep") && table.contains("(same bytes)"), "{table}");

        // Search shows the copy's other path, and the cut-off leaves only what is that close.
        let query = photos.join("astronaut.png");
        let hits = json_lines(&ok(&idx, &idx.run(&["search", s(&query), "--json", "-k", "5"])));
        assert_eq!(hits.len(), 5);
        assert_eq!(hits[0]["other_paths"].as_array().map(Vec::len), Some(1), "{:?}", hits[0]);
        let close = json_lines(&ok(&idx, &idx.run(&[
            "search", s(&query), "--json", "-k", "5", "--max-distance", "0.05",
        ])));
        let close: Vec<String> = close.iter().map(|h| file_name(&h["path"])).collect();
        assert_eq!(close.len(), 3, "the original and its two re-encodes: {close:?}");

        // Prune: the copy's file gone takes its path, not the document.
        std::fs::remove_file(backup.join("astronaut.png")).unwrap();
        let v: Value = serde_json::from_str(
            ok(&idx, &idx.run(&["prune", s(&backup), "--json"])).trim(),
        )
        .unwrap();
        assert_eq!((v["removed"].as_u64(), v["documents_removed"].as_u64()), (Some(1), Some(0)), "{v}");
        assert_eq!(idx.count(), 9, "[{}]", idx.kind());
        let hits = json_lines(&ok(&idx, &idx.run(&["search", s(&query), "--json", "-k", "1"])));
        assert!(hits[0].get("other_paths").is_none_or(|p| p.as_array().unwrap().is_empty()), "{:?}", hits[0]);
    }
}
