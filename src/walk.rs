//! Finding the images under the paths a user gives.
//!
//! Files named explicitly are always taken. Folders are walked recursively in name order (walkdir):
//! hidden entries are skipped, symbolic links are followed with loop detection, and a file is taken
//! when its first bytes are those of a supported image format, whatever its extension. A file whose
//! extension says image but whose content does not is reported, not skipped silently. Not for:
//! reading or decoding images.
//!
//! Every path found, and every path in a problem, is absolute (the given path joined to the current
//! directory, links not resolved): the form the index stores, so one file is named the same way in
//! every message and every output.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::image::heif::sniff_heif;
use crate::image::raw::sniff_raw;
use crate::image::sniff_image_format;

/// One image file to process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    pub path: PathBuf,
    /// The name of the folder the file is in (for `--label-from-dir`).
    pub parent_name: Option<String>,
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct WalkResult {
    pub images: Vec<ImageFile>,
    /// Paths that could not be walked or that look like images but are not, with the reason.
    pub problems: Vec<(PathBuf, String)>,
    /// Files passed over: not images by content nor by extension.
    pub skipped: usize,
}

const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "png", "gif", "webp", "bmp", "tif", "tiff", // HEIF family:
    "heic", "heif", "heics", "heifs", "hif", "avif", "avifs", // camera RAW:
    "dng", "cr2", "cr3", "nef", "nrw", "arw", "srf", "sr2", "orf", "rw2", "raf", "pef", "srw",
];

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str().map(|s| s.starts_with('.')).unwrap_or(false)
}

fn parent_name(path: &Path) -> Option<String> {
    path.parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
}

/// Whether the file's content starts like a supported image.
fn sniff(path: &Path) -> std::io::Result<bool> {
    let mut head = [0u8; 64];
    let mut f = File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        let got = f.read(&mut head[n..])?;
        if got == 0 {
            break;
        }
        n += got;
    }
    let head = &head[..n];
    Ok(sniff_image_format(head).is_some()
        || sniff_raw(head).is_some()
        || sniff_heif(head).is_some())
}

/// Walks `roots` and returns the images found, in a stable order (roots as given, then by name), all
/// with absolute paths.
pub fn find_images(roots: &[PathBuf]) -> WalkResult {
    walk(roots, true)
}

/// [`find_images`] for paths that changed in a watched folder: a file is judged as a walk judges
/// it (hidden, or neither an image by content nor by extension: passed over), not taken because
/// it was named.
pub fn find_changed_images(paths: &[PathBuf]) -> WalkResult {
    walk(paths, false)
}

fn walk(roots: &[PathBuf], files_named_are_taken: bool) -> WalkResult {
    let mut out = WalkResult::default();
    for root in roots {
        let root = &absolute(root);
        let meta = match std::fs::metadata(root) {
            Ok(m) => m,
            Err(e) => {
                out.problems.push((root.clone(), e.to_string()));
                continue;
            }
        };
        if meta.is_file() && files_named_are_taken {
            // Named explicitly: always taken; decoding will say if it is not an image.
            out.images.push(ImageFile {
                path: root.clone(),
                parent_name: parent_name(root),
            });
            continue;
        }
        if meta.is_file() {
            if !root.file_name().is_some_and(is_hidden) {
                judge_file(root, &mut out);
            }
            continue;
        }
        let walker = WalkDir::new(root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !is_hidden(e.file_name()));
        for entry in walker {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let path = e
                        .path()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| root.clone());
                    let reason = if e.loop_ancestor().is_some() {
                        "symbolic link loop, not followed".to_string()
                    } else {
                        e.io_error()
                            .map(|io| io.to_string())
                            .unwrap_or_else(|| e.to_string())
                    };
                    out.problems.push((path, reason));
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            judge_file(entry.path(), &mut out);
        }
    }
    out
}

/// A file met in a walk: an image by its content, a problem if its name says image but its
/// content does not, else passed over.
fn judge_file(path: &Path, out: &mut WalkResult) {
    match sniff(path) {
        Ok(true) => out.images.push(ImageFile {
            path: path.to_path_buf(),
            parent_name: parent_name(path),
        }),
        Ok(false) if has_image_extension(path) => out.problems.push((
            path.to_path_buf(),
            "not an image: its content is no known image format".to_string(),
        )),
        Ok(false) => out.skipped += 1,
        Err(e) => out.problems.push((path.to_path_buf(), e.to_string())),
    }
}

/// The path made absolute (without resolving links), for storing, for labels and for messages.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn walks_by_content_skipping_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("cats")).unwrap();
        std::fs::create_dir_all(d.join(".hidden")).unwrap();
        std::fs::write(d.join("cats/b.png"), PNG_MAGIC).unwrap();
        std::fs::write(d.join("cats/a.dat"), PNG_MAGIC).unwrap(); // image by content
        std::fs::write(d.join("cats/.c.png"), PNG_MAGIC).unwrap(); // hidden
        std::fs::write(d.join(".hidden/d.png"), PNG_MAGIC).unwrap(); // hidden folder
        std::fs::write(d.join("cats/notes.txt"), b"hello").unwrap(); // not an image
        std::fs::write(d.join("cats/fake.jpg"), b"hello").unwrap(); // says image, is not
        let r = find_images(&[d.to_path_buf()]);
        let names = file_names(&r);
        assert_eq!(names, ["a.dat", "b.png"]);
        assert_eq!(r.images[0].parent_name.as_deref(), Some("cats"));
        assert_eq!(r.skipped, 1);
        assert_eq!(r.problems.len(), 1);
        assert!(r.problems[0].0.ends_with("fake.jpg"));
    }

    /// The file names of the images a walk found, in its order.
    fn file_names(r: &WalkResult) -> Vec<String> {
        r.images
            .iter()
            .map(|i| i.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    /// HEIC and AVIF files are taken by content (with the feature or without it: decoding says
    /// why it cannot read one), and `.heic`/`.avif` names that are not are reported.
    #[test]
    fn walks_heif_files_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let heif = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heif/files");
        let heic = std::fs::read(heif.join("heic_8bit.heic")).unwrap();
        let avif = std::fs::read(heif.join("avif_8bit.avif")).unwrap();
        std::fs::write(d.join("IMG_0001.HEIC"), &heic).unwrap();
        std::fs::write(d.join("photo.avif"), &avif).unwrap();
        std::fs::write(d.join("renamed.bin"), &heic).unwrap(); // HEIC by content
        std::fs::write(d.join("fake.heic"), b"hello").unwrap(); // says HEIC, is not
        std::fs::write(d.join("fake.avif"), b"hello").unwrap();
        let r = find_images(&[d.to_path_buf()]);
        let names = file_names(&r);
        assert_eq!(names, ["IMG_0001.HEIC", "photo.avif", "renamed.bin"]);
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
    }

    #[test]
    fn relative_roots_give_absolute_paths() {
        // The crate's own tests folder, named relatively (tests run in the package root).
        let r = find_images(&[PathBuf::from("tests/fixtures/images")]);
        assert!(!r.images.is_empty());
        assert!(r.images.iter().all(|i| i.path.is_absolute()), "{r:?}");
        let r = find_images(&[PathBuf::from("no/such/relative/dir")]);
        assert!(r.problems[0].0.is_absolute(), "{r:?}");
    }

    #[test]
    fn missing_root_is_a_problem_not_a_panic() {
        let r = find_images(&[PathBuf::from("/no/such/dir/anywhere")]);
        assert!(r.images.is_empty());
        assert_eq!(r.problems.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("a")).unwrap();
        std::fs::write(d.join("a/x.png"), PNG_MAGIC).unwrap();
        std::os::unix::fs::symlink(d, d.join("a/loop")).unwrap();
        let r = find_images(&[d.to_path_buf()]);
        assert_eq!(r.images.len(), 1);
        assert!(
            r.problems.iter().any(|(_, why)| why.contains("loop")),
            "{:?}",
            r.problems
        );
    }
}
