//! `imgvec prune` and ingest's count of files gone, end to end on both backends: files deleted,
//! edited in place (same size: found by hash) and replaced (other size: found without hashing);
//! documents outside the given folders untouched even when their files are gone; `--dry-run`
//! changes nothing.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json_ok(idx: &TestIndex, out: &Output) -> Value {
    serde_json::from_str(ok(idx, out).trim()).unwrap()
}

/// Sets a file's modification time a day back, so it is not "racy" (modified right before it was
/// indexed) and prune may trust it.
fn age(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(86_400))
        .unwrap();
}

fn paths(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let p = p.as_str().unwrap();
            Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    out.sort();
    out
}

backend_test! {
    fn prune_removes_what_changed_under_the_roots_and_nothing_else(idx) {
        let (_tmp, photos) = distinct_images(6);
        for e in std::fs::read_dir(&photos).unwrap() {
            age(&e.unwrap().path());
        }
        let other_tmp = tempfile::tempdir().unwrap();
        let other = other_tmp.path().join("elsewhere.png");
        std::fs::copy(fixtures().join("images/chelsea.png"), &other).unwrap();
        for (path, label) in [(&photos, "a"), (&other, "b")] {
            json_ok(&idx, &idx.run(&["ingest", s(path), "--label", label, "--json"]));
        }
        assert_eq!(idx.count(), 7);

        // One file deleted: ingest tells, and suggests prune.
        std::fs::remove_file(photos.join("img0000.png")).unwrap();
        let out = idx.run(&["ingest", s(&photos), "--label", "a", "--json"]);
        let v = json_ok(&idx, &out);
        assert_eq!(v["disappeared"], 1, "[{}] {v}", idx.kind());
        let out = idx.run(&["ingest", s(&photos), "--label", "a"]);
        assert!(stderr(&out).contains("imgvec prune"), "{}", stderr(&out));

        // Edited in place (same size, other bytes), replaced (other size), and a file outside the
        // root deleted.
        let edited = photos.join("img0001.png");
        let mut bytes = std::fs::read(&edited).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&edited, &bytes).unwrap();
        std::fs::copy(fixtures().join("images/camera.png"), photos.join("img0002.png")).unwrap();
        std::fs::remove_file(&other).unwrap();

        let dry = json_ok(&idx, &idx.run(&["prune", s(&photos), "--dry-run", "--json"]));
        assert_eq!(paths(&dry["gone"]), ["img0000.png"], "[{}] {dry}", idx.kind());
        assert_eq!(paths(&dry["changed"]), ["img0001.png", "img0002.png"], "{dry}");
        assert_eq!((dry["checked"].as_u64(), dry["unchanged"].as_u64()), (Some(6), Some(3)), "{dry}");
        // Only the file edited in place needed hashing: sizes and times vouch for the others.
        assert_eq!(dry["hashed"], 1, "{dry}");
        assert_eq!(dry["removed"], 0);
        assert_eq!(idx.count(), 7, "[{}] --dry-run changes nothing", idx.kind());
        let human = idx.run(&["prune", s(&photos), "--dry-run"]);
        let text = stdout(&human);
        assert!(text.contains("gone     ") && text.contains("img0000.png"), "{text}");
        assert!(text.contains("would remove 3"), "{text}");

        let v = json_ok(&idx, &idx.run(&["prune", s(&photos), "--json"]));
        assert_eq!(v["removed"], 3, "[{}] {v}", idx.kind());
        assert_eq!(idx.count(), 4, "[{}] the document outside the root stays", idx.kind());
        let again = json_ok(&idx, &idx.run(&["prune", s(&photos), "--json"]));
        assert_eq!((again["checked"].as_u64(), again["removed"].as_u64()), (Some(3), Some(0)));

        // Its own folder given, the outside document goes too.
        let v = json_ok(&idx, &idx.run(&["prune", s(other_tmp.path()), "--json"]));
        assert_eq!(paths(&v["gone"]), ["elsewhere.png"], "{v}");
        assert_eq!(idx.count(), 3);
    }
}

backend_test! {
    fn prune_refuses_a_folder_that_does_not_exist(idx) {
        let (tmp, photos) = distinct_images(2);
        json_ok(&idx, &idx.run(&["ingest", s(&photos), "--label", "a", "--json"]));
        let gone = tmp.path().join("unmounted");
        let out = idx.run(&["prune", s(&gone)]);
        assert!(!out.status.success(), "[{}]", idx.kind());
        assert!(stderr(&out).contains("Nothing was removed"), "{}", stderr(&out));
        assert_eq!(idx.count(), 2);
    }
}
