//! The stages between files and vectors, with bounded channels between them.
//!
//! ```text
//! files ─▶ [prepare workers: read, hash, decode, preprocess] ─(bounded)─▶ [model: full batches] ─▶ sink
//! ```
//! Preparation runs on `workers` threads ahead of the model, so the model never waits on decoding;
//! the channel bound keeps memory flat however many files there are. A stop flag (Ctrl-C) makes the
//! workers stop taking new files; what is already prepared still goes through. Not for: talking to a
//! store (the ingest command consumes the sink) or model arithmetic.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::clip::preprocess::{preprocess_rgb, PreprocessConfig};
use crate::clip::ImageEncoder;
use crate::image::decode_rgb;
use crate::walk::ImageFile;

/// Facts about one image file, known before the model runs.
#[derive(Debug, Clone)]
pub struct FileFacts {
    /// Position in the input order.
    pub seq: usize,
    pub file: ImageFile,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
}

/// An image ready for the model.
pub struct Prepared {
    pub facts: FileFacts,
    pub pixels: Vec<f32>,
}

/// A file that could not be used, and why.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seq: usize,
    pub path: PathBuf,
    pub reason: String,
}

pub enum PrepOutcome {
    Ready(Prepared),
    Failed(Failure),
}

/// What comes out of the model stage, per file.
#[derive(Debug, Clone)]
pub enum Outcome {
    Embedded { facts: FileFacts, vector: Vec<f32> },
    Failed(Failure),
}

impl Outcome {
    pub fn seq(&self) -> usize {
        match self {
            Outcome::Embedded { facts, .. } => facts.seq,
            Outcome::Failed(f) => f.seq,
        }
    }
}

/// Lower-case hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Reads, hashes, decodes and preprocesses one file. The error says why, without the path.
pub fn prepare_file(
    seq: usize,
    file: &ImageFile,
    cfg: &PreprocessConfig,
    apply_exif: bool,
) -> Result<Prepared, String> {
    let bytes = std::fs::read(&file.path).map_err(|e| e.to_string())?;
    let sha256 = sha256_hex(&bytes);
    let decoded = decode_rgb(&bytes, apply_exif).map_err(|e| e.to_string())?;
    let pixels = preprocess_rgb(&decoded.rgb, cfg);
    Ok(Prepared {
        facts: FileFacts {
            seq,
            file: file.clone(),
            sha256,
            bytes: bytes.len() as u64,
            width: decoded.rgb.width(),
            height: decoded.rgb.height(),
        },
        pixels,
    })
}

/// Runs `f` over `items` on `workers` threads, in input order of claiming, sending results into a
/// channel of `capacity`. Workers stop claiming once `stop` is set.
fn spawn_workers<T, R, F>(
    items: Vec<T>,
    workers: usize,
    capacity: usize,
    stop: Arc<AtomicBool>,
    f: F,
) -> Receiver<R>
where
    T: Send + Sync + 'static,
    R: Send + 'static,
    F: Fn(usize, &T) -> R + Send + Sync + 'static,
{
    let (tx, rx) = sync_channel(capacity.max(1));
    let items = Arc::new(items);
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    for _ in 0..workers.max(1) {
        let (tx, items, next, f, stop) = (
            tx.clone(),
            Arc::clone(&items),
            Arc::clone(&next),
            Arc::clone(&f),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            if tx.send(f(i, item)).is_err() {
                break; // the consumer is gone
            }
        });
    }
    rx
}

/// Starts the preparation workers over `files` (each with its sequence number).
pub fn spawn_prepare(
    files: Vec<(usize, ImageFile)>,
    cfg: PreprocessConfig,
    apply_exif: bool,
    workers: usize,
    capacity: usize,
    stop: Arc<AtomicBool>,
) -> Receiver<PrepOutcome> {
    spawn_workers(
        files,
        workers,
        capacity,
        stop,
        move |_, (seq, file)| match prepare_file(*seq, file, &cfg, apply_exif) {
            Ok(p) => PrepOutcome::Ready(p),
            Err(reason) => PrepOutcome::Failed(Failure {
                seq: *seq,
                path: file.path.clone(),
                reason,
            }),
        },
    )
}

/// Hashes files on `workers` threads; results come back in input order.
pub fn hash_files(
    files: &[ImageFile],
    workers: usize,
    stop: Arc<AtomicBool>,
) -> Vec<Result<(String, u64), String>> {
    let rx = spawn_workers(files.to_vec(), workers, 64, stop, |i, file: &ImageFile| {
        let r = std::fs::read(&file.path)
            .map(|b| (sha256_hex(&b), b.len() as u64))
            .map_err(|e| e.to_string());
        (i, r)
    });
    let mut out: Vec<Result<(String, u64), String>> = (0..files.len())
        .map(|_| Err("interrupted before it was read".to_string()))
        .collect();
    for (i, r) in rx {
        out[i] = r;
    }
    out
}

/// The model stage: takes prepared images in full batches of `batch_size` (a smaller last one), embeds
/// them, and hands each batch's outcomes to `sink`. Failures pass straight through. Returns when the
/// input is exhausted or `sink` returns false.
pub fn run_model(
    rx: Receiver<PrepOutcome>,
    encoder: &ImageEncoder,
    batch_size: usize,
    mut sink: impl FnMut(Vec<Outcome>) -> bool,
) {
    let batch_size = batch_size.max(1);
    let mut open = true;
    while open {
        let mut ready: Vec<Prepared> = Vec::with_capacity(batch_size);
        let mut out: Vec<Outcome> = Vec::new();
        while ready.len() < batch_size {
            match rx.recv() {
                Ok(PrepOutcome::Ready(p)) => ready.push(p),
                Ok(PrepOutcome::Failed(f)) => out.push(Outcome::Failed(f)),
                Err(_) => {
                    open = false;
                    break;
                }
            }
        }
        if !ready.is_empty() {
            let pixels: Vec<&[f32]> = ready.iter().map(|p| p.pixels.as_slice()).collect();
            match encoder.embed_pixels(&pixels) {
                Ok(vectors) => {
                    for (p, vector) in ready.into_iter().zip(vectors) {
                        out.push(Outcome::Embedded {
                            facts: p.facts,
                            vector,
                        });
                    }
                }
                Err(e) => {
                    for p in ready {
                        out.push(Outcome::Failed(Failure {
                            seq: p.facts.seq,
                            path: p.facts.file.path,
                            reason: format!("model: {e}"),
                        }));
                    }
                }
            }
        }
        if !out.is_empty() && !sink(out) {
            return;
        }
    }
}

/// Sensible number of preparation workers: one per core, at least one.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_bytes() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn workers_cover_every_item_once() {
        let stop = Arc::new(AtomicBool::new(false));
        let rx = spawn_workers((0..500).collect::<Vec<u32>>(), 3, 4, stop, |i, x| {
            (i, *x * 2)
        });
        let mut got: Vec<(usize, u32)> = rx.into_iter().collect();
        got.sort();
        assert_eq!(got.len(), 500);
        assert!(got.iter().all(|(i, x)| *x == 2 * (*i as u32)));
    }

    #[test]
    fn stop_flag_stops_claiming() {
        let stop = Arc::new(AtomicBool::new(true));
        let rx = spawn_workers((0..100).collect::<Vec<u32>>(), 2, 4, stop, |_, x| *x);
        assert_eq!(rx.into_iter().count(), 0);
    }
}
