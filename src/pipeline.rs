//! The stages between files and vectors, with bounded channels between them.
//!
//! ```text
//! jobs ─▶ [read: bytes + SHA-256] ─▶ [skip known: drop what the index has] ─▶ [prepare: decode,
//!      preprocess] ─▶ [model: full batches] ─▶ sink (outcomes, one per job)
//! ```
//! Each file is read and hashed once; its bytes travel on to decoding, and its label travels with it
//! from the walk to the sink. Every stage runs ahead of the next on its own threads, and the channel
//! bounds keep memory flat however many files there are. A stop flag (Ctrl-C) makes the readers stop
//! taking new files; what is already read still goes through. Every job ends as exactly one
//! [`Outcome`], so a caller can account for every file. Not for: talking to a store (the caller hands
//! in a `known` function and consumes the sink) or model arithmetic.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::clip::preprocess::PreprocessConfig;
use crate::clip::ImageEncoder;
use crate::guard::fault_point;
pub use crate::guard::guarded;
use crate::image::DecodeOptions;
pub use crate::prepare::{prepare_bytes, prepare_bytes_with, PreparedPixels};

/// One file to process: where it is and the label it will be stored with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Position in the input order.
    pub seq: usize,
    pub path: PathBuf,
    pub label: String,
}

/// Facts about one image file, known before the model runs.
#[derive(Debug, Clone)]
pub struct FileFacts {
    pub job: Job,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    /// The file's modification time (epoch ms) just before it was read, when known.
    pub mtime_ms: Option<u64>,
    /// Truncated, decoded as far as its data went (only with `--allow-truncated`): a warning.
    pub truncated: bool,
    /// Something else worth a warning (a RAW file's small preview).
    pub note: Option<String>,
}

/// A file read and hashed, not yet decoded.
pub struct ReadFile {
    pub job: Job,
    pub sha256: String,
    pub bytes: Vec<u8>,
    /// Modification time (epoch ms) taken before reading, so an edit during the read shows as a
    /// newer time than the one stored.
    pub mtime_ms: Option<u64>,
}

/// An image ready for the model.
pub struct Prepared {
    pub facts: FileFacts,
    pub pixels: Vec<f32>,
}

/// What became of one job.
#[derive(Debug, Clone)]
pub enum Outcome {
    Embedded {
        facts: FileFacts,
        vector: Vec<f32>,
    },
    /// Not embedded: the index has these bytes already, or an earlier file of this run had them.
    Known {
        job: Job,
        sha256: String,
        /// The file's modification time when it was read, if known.
        mtime_ms: Option<u64>,
    },
    /// Not embedded: another machine's part of a split ingest (`--shard`).
    OtherShard {
        job: Job,
    },
    Failed {
        job: Job,
        reason: String,
    },
}

/// Part `index` of `count` (1-based) of a split ingest: a file belongs to the part its content hash
/// falls in, so N machines over one folder take disjoint parts whose union is everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parses `I/N` with 1 ≤ I ≤ N.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("--shard {s:?}: expected I/N with 1 ≤ I ≤ N, e.g. 2/3");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    /// Whether the file with this hex SHA-256 belongs to this part (by its first 64 bits).
    pub fn owns(&self, sha256: &str) -> bool {
        let head = sha256
            .get(..16)
            .and_then(|h| u64::from_str_radix(h, 16).ok());
        head.is_some_and(|h| h % u64::from(self.count) == u64::from(self.index - 1))
    }
}

impl Outcome {
    pub fn job(&self) -> &Job {
        match self {
            Outcome::Embedded { facts, .. } => &facts.job,
            Outcome::Known { job, .. }
            | Outcome::OtherShard { job }
            | Outcome::Failed { job, .. } => job,
        }
    }
    pub fn seq(&self) -> usize {
        self.job().seq
    }
    fn failed(job: Job, reason: impl Into<String>) -> Self {
        Outcome::Failed {
            job,
            reason: reason.into(),
        }
    }
}

/// What flows between the stages: work still to do, or a job already finished.
pub enum Flow<T> {
    Next(T),
    Done(Outcome),
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

/// Reads and hashes one file, noting its modification time first.
pub fn read_file(job: Job) -> Flow<ReadFile> {
    let read = guarded(|| {
        let mut file = std::fs::File::open(&job.path).map_err(|e| e.to_string())?;
        let mtime_ms = file.metadata().ok().as_ref().and_then(mtime_ms);
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| e.to_string())?;
        Ok((sha256_hex(&bytes), bytes, mtime_ms))
    });
    match read {
        Ok((sha256, bytes, mtime_ms)) => Flow::Next(ReadFile {
            sha256,
            job,
            bytes,
            mtime_ms,
        }),
        Err(e) => Flow::Done(Outcome::failed(job, e)),
    }
}

/// A file's modification time in milliseconds since the Unix epoch, where the system tells it.
pub fn mtime_ms(meta: &std::fs::Metadata) -> Option<u64> {
    let since = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// Decodes and preprocesses a file already read.
pub fn prepare(read: ReadFile, cfg: &PreprocessConfig, opts: &DecodeOptions) -> Flow<Prepared> {
    let path = read.job.path.clone();
    let prepared = guarded(|| {
        fault_point(&path);
        prepare_bytes_with(&read.bytes, cfg, opts)
    });
    match prepared {
        Ok(p) => Flow::Next(Prepared {
            facts: FileFacts {
                job: read.job,
                sha256: read.sha256,
                bytes: read.bytes.len() as u64,
                width: p.width,
                height: p.height,
                mtime_ms: read.mtime_ms,
                truncated: p.truncated,
                note: p.note,
            },
            pixels: p.pixels,
        }),
        Err(reason) => Flow::Done(Outcome::failed(read.job, reason)),
    }
}

/// Runs `f` over `items` on `workers` threads, sending results into a channel of `capacity`.
/// Workers stop claiming once `stop` is set.
pub fn spawn_workers<T, R, F>(
    items: Vec<T>,
    workers: usize,
    capacity: usize,
    stop: Arc<AtomicBool>,
    f: F,
) -> Receiver<R>
where
    T: Clone + Send + Sync + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
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
            if tx.send(f(item.clone())).is_err() {
                break; // the consumer is gone
            }
        });
    }
    rx
}

/// Maps the `Next` items of a stream on `workers` threads; `Done` items pass straight through.
pub fn spawn_map<T, R, F>(
    input: Receiver<Flow<T>>,
    workers: usize,
    capacity: usize,
    f: F,
) -> Receiver<Flow<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Flow<R> + Send + Sync + 'static,
{
    let (tx, rx) = sync_channel(capacity.max(1));
    let input = Arc::new(Mutex::new(input));
    let f = Arc::new(f);
    for _ in 0..workers.max(1) {
        let (tx, input, f) = (tx.clone(), Arc::clone(&input), Arc::clone(&f));
        std::thread::spawn(move || loop {
            let item = match input.lock() {
                Ok(rx) => rx.recv(),
                Err(_) => break,
            };
            let out = match item {
                Ok(Flow::Next(t)) => f(t),
                Ok(Flow::Done(o)) => Flow::Done(o),
                Err(_) => break, // input exhausted
            };
            if tx.send(out).is_err() {
                break;
            }
        });
    }
    rx
}

/// The read stage: reads and hashes `jobs` on `workers` threads.
pub fn spawn_read(
    jobs: Vec<Job>,
    workers: usize,
    capacity: usize,
    stop: Arc<AtomicBool>,
) -> Receiver<Flow<ReadFile>> {
    spawn_workers(jobs, workers, capacity, stop, read_file)
}

/// The skip-known stage: drops files of other shards, files whose bytes an earlier file of this run
/// had, and files the index has already (asking `known` about up to `chunk` hashes at a time,
/// whatever has arrived). When `known` fails, the files it was asked about fail with its message and
/// `stop` is set.
pub fn spawn_skip_known<K>(
    input: Receiver<Flow<ReadFile>>,
    chunk: usize,
    shard: Option<Shard>,
    stop: Arc<AtomicBool>,
    mut known: K,
) -> Receiver<Flow<ReadFile>>
where
    K: FnMut(&[String]) -> Result<HashSet<String>, String> + Send + 'static,
{
    let (tx, rx) = sync_channel(chunk.max(1));
    std::thread::spawn(move || {
        let mut seen: HashSet<String> = HashSet::new();
        while let Ok(first) = input.recv() {
            let mut fresh: Vec<ReadFile> = Vec::new();
            let mut out: Vec<Flow<ReadFile>> = Vec::new();
            let mut item = Some(first);
            while let Some(flow) = item.take() {
                match flow {
                    Flow::Done(o) => out.push(Flow::Done(o)),
                    Flow::Next(r) if shard.is_some_and(|s| !s.owns(&r.sha256)) => {
                        out.push(Flow::Done(Outcome::OtherShard { job: r.job }))
                    }
                    Flow::Next(r) if !seen.insert(r.sha256.clone()) => {
                        out.push(Flow::Done(Outcome::Known {
                            job: r.job,
                            sha256: r.sha256,
                            mtime_ms: r.mtime_ms,
                        }))
                    }
                    Flow::Next(r) => fresh.push(r),
                }
                if fresh.len() < chunk.max(1) {
                    item = input.try_recv().ok();
                }
            }
            out.extend(sort_known(fresh, &mut known, &stop));
            for flow in out {
                if tx.send(flow).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Asks `known` about `fresh` and marks each file known, still to do, or failed.
fn sort_known<K>(fresh: Vec<ReadFile>, known: &mut K, stop: &AtomicBool) -> Vec<Flow<ReadFile>>
where
    K: FnMut(&[String]) -> Result<HashSet<String>, String>,
{
    if fresh.is_empty() {
        return Vec::new();
    }
    let ids: Vec<String> = fresh.iter().map(|r| r.sha256.clone()).collect();
    match known(&ids) {
        Ok(present) => fresh
            .into_iter()
            .map(|r| {
                if present.contains(&r.sha256) {
                    Flow::Done(Outcome::Known {
                        job: r.job,
                        sha256: r.sha256,
                        mtime_ms: r.mtime_ms,
                    })
                } else {
                    Flow::Next(r)
                }
            })
            .collect(),
        Err(e) => {
            stop.store(true, Ordering::SeqCst);
            fresh
                .into_iter()
                .map(|r| Flow::Done(Outcome::failed(r.job, format!("not indexed: {e}"))))
                .collect()
        }
    }
}

/// The prepare stage: decodes and preprocesses on `workers` threads.
pub fn spawn_prepare(
    input: Receiver<Flow<ReadFile>>,
    cfg: PreprocessConfig,
    opts: DecodeOptions,
    workers: usize,
    capacity: usize,
) -> Receiver<Flow<Prepared>> {
    spawn_map(input, workers, capacity, move |r| prepare(r, &cfg, &opts))
}

/// Passes finished jobs to `done` until the first one with work left, which it returns (`None` when
/// the input ends first, or `done` returns false). Lets a caller load the model only when needed.
pub fn first_work<T>(rx: &Receiver<Flow<T>>, mut done: impl FnMut(Outcome) -> bool) -> Option<T> {
    for flow in rx.iter() {
        match flow {
            Flow::Next(t) => return Some(t),
            Flow::Done(o) => {
                if !done(o) {
                    return None;
                }
            }
        }
    }
    None
}

/// The model stage: takes prepared images in full batches of `batch_size` (a smaller last one), embeds
/// them, and hands each batch's outcomes to `sink`, with the finished jobs that arrived meanwhile.
/// Returns when the input is exhausted or `sink` returns false.
pub fn run_model(
    input: impl IntoIterator<Item = Flow<Prepared>>,
    encoder: &ImageEncoder,
    batch_size: usize,
    mut sink: impl FnMut(Vec<Outcome>) -> bool,
) {
    let batch_size = batch_size.max(1);
    let mut input = input.into_iter();
    let mut open = true;
    while open {
        let mut ready: Vec<Prepared> = Vec::with_capacity(batch_size);
        let mut out: Vec<Outcome> = Vec::new();
        while ready.len() < batch_size {
            match input.next() {
                Some(Flow::Next(p)) => ready.push(p),
                Some(Flow::Done(o)) => out.push(o),
                None => {
                    open = false;
                    break;
                }
            }
        }
        out.extend(embed_batch(encoder, ready));
        if !out.is_empty() && !sink(out) {
            return;
        }
    }
}

/// Embeds one batch; a model error fails each of its files.
fn embed_batch(encoder: &ImageEncoder, ready: Vec<Prepared>) -> Vec<Outcome> {
    if ready.is_empty() {
        return Vec::new();
    }
    let pixels: Vec<&[f32]> = ready.iter().map(|p| p.pixels.as_slice()).collect();
    match encoder.embed_pixels(&pixels) {
        Ok(vectors) => {
            // Every image of the batch broken: the model, not the images, is the likely cause.
            let all_bad = ready.len() > 1 && vectors.iter().all(|v| check_vector(v).is_err());
            ready
                .into_iter()
                .zip(vectors)
                .map(|(p, vector)| match check_vector(&vector) {
                    Ok(()) => Outcome::Embedded {
                        facts: p.facts,
                        vector,
                    },
                    Err(why) if all_bad => Outcome::failed(
                        p.facts.job,
                        format!("not indexed: {why}, as for every image of its batch: the model checkpoint is the likely cause"),
                    ),
                    Err(why) => Outcome::failed(p.facts.job, format!("not indexed: {why}")),
                })
                .collect()
        }
        Err(e) => ready
            .into_iter()
            .map(|p| Outcome::failed(p.facts.job, format!("model: {e}")))
            .collect(),
    }
}

/// A vector fit to index: finite and of unit length (a NaN or zero vector means a broken model).
pub fn check_vector(v: &[f32]) -> Result<(), String> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err("the model gave an embedding with NaN or infinite values".into());
    }
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if !(0.99..=1.01).contains(&norm) {
        return Err(format!(
            "the model gave an embedding of norm {norm:.4}, not 1"
        ));
    }
    Ok(())
}

/// Sensible number of workers for CPU-bound stages: one per core, at least one.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(seq: usize, path: &str) -> Job {
        Job {
            seq,
            path: PathBuf::from(path),
            label: "l".into(),
        }
    }

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
        let rx = spawn_workers((0..500u32).collect(), 3, 4, stop, |x| x * 2);
        let mut got: Vec<u32> = rx.into_iter().collect();
        got.sort();
        assert_eq!(got, (0..500u32).map(|x| x * 2).collect::<Vec<_>>());
    }

    #[test]
    fn stop_flag_stops_claiming() {
        let stop = Arc::new(AtomicBool::new(true));
        let rx = spawn_workers((0..100u32).collect(), 2, 4, stop, |x| x);
        assert_eq!(rx.into_iter().count(), 0);
    }

    #[test]
    fn skip_known_drops_duplicates_and_indexed_and_keeps_labels() {
        let (tx, rx) = sync_channel(16);
        for (i, (sha, label)) in [("a", "cat"), ("b", "dog"), ("a", "dog"), ("c", "cat")]
            .iter()
            .enumerate()
        {
            let mut j = job(i, &format!("/f{i}"));
            j.label = label.to_string();
            tx.send(Flow::Next(ReadFile {
                job: j,
                sha256: sha.to_string(),
                bytes: vec![],
                mtime_ms: None,
            }))
            .unwrap();
        }
        tx.send(Flow::Done(Outcome::failed(job(4, "/bad"), "unreadable")))
            .unwrap();
        drop(tx);
        let stop = Arc::new(AtomicBool::new(false));
        let out = spawn_skip_known(rx, 2, None, Arc::clone(&stop), |ids| {
            Ok(ids.iter().filter(|i| *i == "b").cloned().collect())
        });
        let mut next = Vec::new();
        let mut known = Vec::new();
        let mut failed = Vec::new();
        for flow in out {
            match flow {
                Flow::Next(r) => next.push((r.job.seq, r.job.label)),
                Flow::Done(Outcome::Known { job, .. }) => known.push(job.seq),
                Flow::Done(o) => failed.push(o.seq()),
            }
        }
        next.sort();
        known.sort();
        assert_eq!(next, [(0, "cat".to_string()), (3, "cat".to_string())]);
        assert_eq!(known, [1, 2]);
        assert_eq!(failed, [4]);
        assert!(!stop.load(Ordering::SeqCst));
    }

    #[test]
    fn skip_known_failure_fails_the_files_and_stops() {
        let (tx, rx) = sync_channel(4);
        tx.send(Flow::Next(ReadFile {
            job: job(0, "/x"),
            sha256: "x".into(),
            bytes: vec![],
            mtime_ms: None,
        }))
        .unwrap();
        drop(tx);
        let stop = Arc::new(AtomicBool::new(false));
        let out: Vec<_> = spawn_skip_known(rx, 8, None, Arc::clone(&stop), |_| Err("down".into()))
            .into_iter()
            .collect();
        assert!(
            matches!(&out[..], [Flow::Done(Outcome::Failed { reason, .. })] if reason == "not indexed: down")
        );
        assert!(stop.load(Ordering::SeqCst));
    }

    #[test]
    fn shards_split_every_hash_exactly_once() {
        let shards: Vec<Shard> = (1..=3).map(|i| Shard { index: i, count: 3 }).collect();
        let mut per_shard = [0usize; 3];
        for i in 0..3000u32 {
            let sha = sha256_hex(&i.to_le_bytes());
            let owners: Vec<usize> = (0..3).filter(|&k| shards[k].owns(&sha)).collect();
            assert_eq!(owners.len(), 1, "{sha}");
            per_shard[owners[0]] += 1;
        }
        assert!(per_shard.iter().all(|&n| n > 900), "{per_shard:?}");
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
        for bad in ["0/3", "4/3", "1/0", "x", "1/", "/2", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert!(Shard::parse("1/1").unwrap().owns(&sha256_hex(b"x")));
    }

    #[test]
    fn vectors_are_checked() {
        assert!(check_vector(&[0.6, 0.8]).is_ok());
        assert!(check_vector(&[0.0, 0.0]).unwrap_err().contains("norm"));
        assert!(check_vector(&[f32::NAN, 1.0]).unwrap_err().contains("NaN"));
        assert!(check_vector(&[f32::INFINITY, 0.0])
            .unwrap_err()
            .contains("NaN"));
    }
}
