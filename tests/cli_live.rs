//! A living library, end to end through the binary on both backends: `imgvec watch` follows a
//! folder (added, changed, renamed and deleted images, a file still being written, a non-image);
//! searches run while an ingest writes; two ingests at once; a running `serve` shows what another
//! process ingests and prunes, and `serve --watch` what lands in its folder.

mod common;
#[path = "support/serve.rs"]
mod serve_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use serve_support::Server;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn image(name: &str) -> PathBuf {
    fixtures().join("images").join(name)
}

/// A running `imgvec watch`, its JSON change lines arriving on a channel; killed when dropped.
struct Watch {
    child: Child,
    changes: Receiver<Value>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Watch {
    fn start(idx: &TestIndex, dir: &Path) -> Watch {
        let mut child = idx
            .command(&[
                "watch",
                s(dir),
                "--label-from-dir",
                "--debounce-ms",
                "600",
                "--json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start imgvec watch");
        let (tx, changes) = channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (ready_tx, ready) = channel();
        let err = child.stderr.take().unwrap();
        let log = std::sync::Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("imgvec: watching") {
                    let _ = ready_tx.send(());
                }
                log.lock().unwrap().push_str(&line);
                log.lock().unwrap().push('\n');
            }
        });
        let w = Watch {
            child,
            changes,
            stderr,
        };
        if ready.recv_timeout(Duration::from_secs(120)).is_err() {
            panic!("watch did not start: {}", w.log());
        }
        w
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next change lines until one of `change` at a path ending in `file` (all of them).
    fn until(&self, change: &str, file: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match self.changes.recv_timeout(Duration::from_millis(200)) {
                Ok(v) => {
                    let done = v["change"] == change
                        && v["path"].as_str().is_some_and(|p| p.ends_with(file));
                    seen.push(v);
                    if done {
                        return seen;
                    }
                }
                Err(_) => continue,
            }
        }
        panic!(
            "no `{change}` of {file} within 60 s; lines: {seen:?}; log: {}",
            self.log()
        );
    }

    /// Lines that come within `wait`.
    fn quiet_for(&self, wait: Duration) -> Vec<Value> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + wait;
        while let Ok(v) = self
            .changes
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            seen.push(v);
        }
        seen
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The paths `imgvec search IMAGE -k 10` returns.
fn found(idx: &TestIndex, query: &Path) -> Vec<String> {
    let out = idx.run(&["search", s(query), "-k", "10", "--json"]);
    json_lines(&ok(idx, &out))
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_string())
        .collect()
}

backend_test! {
    fn watch_follows_a_folder(idx) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap().join("photos");
        std::fs::create_dir_all(root.join("cats")).unwrap();
        std::fs::copy(image("chelsea.png"), root.join("cats/chelsea.png")).unwrap();
        let watch = Watch::start(&idx, &root);
        // The first sync indexed what was there.
        assert_eq!(idx.count(), 1, "{}", watch.log());

        // A new image, in a new folder: indexed, and found at once.
        std::fs::create_dir_all(root.join("space")).unwrap();
        let landed = Instant::now();
        std::fs::copy(image("rocket.jpg"), root.join("space/rocket.jpg")).unwrap();
        let lines = watch.until("indexed", "space/rocket.jpg");
        assert_eq!(lines.last().unwrap()["detail"], "space", "{lines:?}");
        assert!(found(&idx, &image("rocket.jpg")).contains(&s(&root.join("space/rocket.jpg")).to_string()));
        eprintln!("[{}] landed → found by search: {:?}", idx.kind(), landed.elapsed());

        // A file written slowly is taken once, whole.
        let bytes = std::fs::read(image("astronaut.png")).unwrap();
        let slow = root.join("space/astronaut.png");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&slow).unwrap();
            for part in bytes.chunks(bytes.len() / 4 + 1) {
                f.write_all(part).unwrap();
                f.flush().unwrap();
                std::thread::sleep(Duration::from_millis(150));
            }
        }
        let lines = watch.until("indexed", "space/astronaut.png");
        assert!(
            lines.iter().all(|v| v["change"] != "failed"),
            "a partial file was taken: {lines:?}"
        );

        // Changed content at a path: the old document goes, the new content is indexed.
        std::fs::copy(image("coffee.png"), root.join("cats/chelsea.png")).unwrap();
        watch.until("changed", "cats/chelsea.png");
        let hits = found(&idx, &image("chelsea.png"));
        assert!(hits.iter().all(|p| !p.is_empty()));
        assert_eq!(idx.count(), 3);

        // Renamed within the folder: gone from the old path, indexed at the new one.
        std::fs::rename(root.join("space/rocket.jpg"), root.join("cats/rocket.jpg")).unwrap();
        let mut lines = watch.until("removed", "space/rocket.jpg");
        if !lines.iter().any(|v| v["change"] == "indexed") {
            lines.extend(watch.until("indexed", "cats/rocket.jpg"));
        }
        let hits = found(&idx, &image("rocket.jpg"));
        assert!(hits.contains(&s(&root.join("cats/rocket.jpg")).to_string()), "{hits:?}");
        assert!(!hits.contains(&s(&root.join("space/rocket.jpg")).to_string()), "{hits:?}");

        // A text file and a hidden temporary file: nothing to say about them.
        std::fs::write(root.join("notes.txt"), "not an image").unwrap();
        std::fs::copy(image("camera.png"), root.join(".camera.png.part")).unwrap();
        let quiet = watch.quiet_for(Duration::from_millis(1_500));
        assert!(quiet.is_empty(), "{quiet:?}");

        // Deleted: removed, no longer found.
        std::fs::remove_file(root.join("space/astronaut.png")).unwrap();
        watch.until("removed", "space/astronaut.png");
        let hits = found(&idx, &image("astronaut.png"));
        assert!(!hits.iter().any(|p| p.ends_with("astronaut.png")), "{hits:?}");
        assert_eq!(idx.count(), 2, "{}", watch.log());
    }
}

/// Ctrl-C stops a watch: it says so, exits with 130 (as `ingest` does), and what it indexed stays.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_a_watch() {
    let idx = TestIndex::local("watch_ctrl_c");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap().join("photos");
    std::fs::create_dir_all(root.join("cats")).unwrap();
    std::fs::copy(image("chelsea.png"), root.join("cats/chelsea.png")).unwrap();
    let mut watch = Watch::start(&idx, &root);
    let st = std::process::Command::new("kill")
        .args(["-INT", &watch.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = watch.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "watch still running 60 s after Ctrl-C: {}",
            watch.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // The stderr reader may still be taking the last lines.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(status.code(), Some(130), "{}", watch.log());
    assert!(
        watch
            .log()
            .contains("imgvec: stopping: finishing the changes in hand"),
        "{}",
        watch.log()
    );
    assert_eq!(idx.count(), 1, "{}", watch.log());
}

/// `n` distinct images under `dir/label/`.
fn images_in(dir: &Path, label: &str, n: usize, seed: u64) {
    let folder = dir.join(label);
    std::fs::create_dir_all(&folder).unwrap();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in 0..n {
        let img = image::RgbImage::from_fn(40, 32, |x, y| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            image::Rgb([(state >> 56) as u8, (x * 7 + i as u32) as u8, (y * 5) as u8])
        });
        img.save(folder.join(format!("{label}{i:03}.png"))).unwrap();
    }
}

backend_test! {
    fn searches_run_while_two_ingests_write(idx) {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        images_in(&a, "red", 60, 1);
        images_in(&b, "blue", 60, 2);
        // Both folders also hold the same 20 images: written once whoever comes first.
        images_in(&a, "both", 20, 3);
        images_in(&b, "both", 20, 3);
        idx.create();
        let ingest = |dir: &Path| {
            idx.command(&["ingest", s(dir), "--label-from-dir", "--quiet", "--batch-size", "4"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (first, second) = (ingest(&a), ingest(&b));
        // Searches all along: every one answers, and the count never goes back.
        let query = a.join("red/red000.png");
        let mut last = 0;
        let mut searches = 0;
        let start = Instant::now();
        loop {
            let out = idx.run(&["search", s(&query), "-k", "3", "--json"]);
            assert!(out.status.success(), "search while ingesting: {}", stderr(&out));
            let info = idx.run(&["info", "--json"]);
            let v: Value = serde_json::from_str(ok(&idx, &info).trim()).unwrap();
            let n = v["documents"].as_u64().unwrap();
            assert!(n >= last, "{n} < {last}");
            last = n;
            searches += 1;
            if n >= 140 || start.elapsed() > Duration::from_secs(120) {
                break;
            }
        }
        for child in [first, second] {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "ingest: {}", String::from_utf8_lossy(&out.stderr));
        }
        assert_eq!(idx.count(), 140);
        assert!(searches >= 2, "{searches}");
        let hits = found(&idx, &query);
        assert!(hits[0].ends_with("red000.png"), "{hits:?}");
    }
}

backend_test! {
    fn serve_shows_what_other_processes_ingest_and_prune(idx) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap().join("photos");
        std::fs::create_dir_all(root.join("cats")).unwrap();
        std::fs::copy(image("chelsea.png"), root.join("cats/chelsea.png")).unwrap();
        ok(&idx, &idx.run(&["ingest", s(&root), "--label-from-dir", "--quiet"]));
        let server = Server::start(&idx, &[]);
        let documents = |server: &Server| server.get_json("/api/info").1["documents"].as_u64().unwrap();
        assert_eq!(documents(&server), 1);

        // Another process ingests while the server runs.
        std::fs::create_dir_all(root.join("space")).unwrap();
        std::fs::copy(image("rocket.jpg"), root.join("space/rocket.jpg")).unwrap();
        ok(&idx, &idx.run(&["ingest", s(&root), "--label-from-dir", "--quiet"]));
        assert_eq!(documents(&server), 2);
        let (status, labels) = server.get_json("/api/labels");
        assert_eq!(status, 200);
        assert!(labels.to_string().contains("space"), "{labels}");
        let rocket = imgvec::pipeline::sha256_hex(&std::fs::read(image("rocket.jpg")).unwrap());
        let (status, hits) = server.search_json(&serde_json::json!({"q": "a rocket", "k": 5}));
        assert_eq!(status, 200, "{hits}");
        assert!(hits.to_string().contains(&rocket), "{hits}");

        // Another process prunes: gone from the server's answers at once.
        std::fs::remove_file(root.join("space/rocket.jpg")).unwrap();
        ok(&idx, &idx.run(&["prune", s(&root), "--quiet"]));
        assert_eq!(documents(&server), 1);
        let (status, hits) = server.search_json(&serde_json::json!({"q": "a rocket", "k": 5}));
        assert_eq!(status, 200, "{hits}");
        assert!(!hits.to_string().contains(&rocket), "{hits}");
        assert!(server.log().lines().all(|l| !l.contains("error")), "{}", server.log());
    }
}

backend_test! {
    fn serve_watch_indexes_what_lands_in_its_folder(idx) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap().join("photos");
        std::fs::create_dir_all(root.join("cats")).unwrap();
        std::fs::copy(image("chelsea.png"), root.join("cats/chelsea.png")).unwrap();
        let server = Server::start(
            &idx,
            &["--watch", s(&root), "--label-from-dir", "--debounce-ms", "200"],
        );
        let documents = || server.get_json("/api/info").1["documents"].as_u64().unwrap_or(0);
        let wait_for = |n: u64| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while documents() != n {
                assert!(Instant::now() < deadline, "not {n} documents; log: {}", server.log());
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        wait_for(1);
        std::fs::create_dir_all(root.join("space")).unwrap();
        std::fs::copy(image("rocket.jpg"), root.join("space/rocket.jpg")).unwrap();
        wait_for(2);
        std::fs::remove_file(root.join("cats/chelsea.png")).unwrap();
        wait_for(1);
        let log = server.log();
        assert!(log.contains("watch: indexed") && log.contains("space/rocket.jpg"), "{log}");
        assert!(log.contains("watch: removed") && log.contains("cats/chelsea.png"), "{log}");
    }
}
