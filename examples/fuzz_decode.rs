//! A stable-Rust mutation fuzzer for the whole decode path (`decode_rgb_with`, every format).
//!
//! Seeds: the decode fixtures, the odd-file corpus, the camera RAW samples, the HEIC/AVIF samples
//! and the regression corpus (`tests/fixtures/`); `--seeds DIR` takes only those under one of them
//! (`--seeds tests/fixtures/heif/files` fuzzes the HEIF-family paths: the brand sniffing and
//! `irot`/`imir` parsing in Rust, and libheif with the `heif` feature).
//! Each round takes a seed, applies a few random mutations (bit flips, interesting values, chunk
//! insertion/deletion/duplication, splices with another seed, truncation) and decodes it twice
//! (strict and with `allow_truncated`). A finding is written to `target/fuzz/findings/`:
//! - a panic caught by the decoder (the reason is `PANICKED`), or an `Ok` image whose buffer does
//!   not match its size;
//! - a decode slower than `--max-seconds` (a watchdog thread also saves the input and aborts if one
//!   hangs for 4× that);
//! - a decode whose peak heap use (counted by this program's allocator) exceeds `--max-mib`; for
//!   HEIF-family inputs, whose C decoders allocate outside that allocator, the growth of the
//!   process's peak resident set (`VmHWM`, reset before each such decode) is counted instead;
//! - a crash inside libheif (C/C++, which no panic guard catches) kills the run: each HEIF-family
//!   input is written to `target/fuzz/last-heif-input.bin` before it is decoded, so it is kept.
//!
//! Usage: `cargo run --example fuzz_decode -- --minutes 10 [--seed N] [--max-seconds 3]
//! [--max-mib 1400]` (or `bash benches/fuzz.sh MINUTES`). Not for: the tests (they replay
//! `tests/fixtures/fuzz/`, where findings go once fixed).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imgvec::image::heif::sniff_heif;
use imgvec::image::{decode_rgb_with, DecodeError, DecodeOptions, DecodedImage};

/// Counts heap bytes in use and the peak since the last reset.
struct Counting;
static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let now = IN_USE.fetch_add(new_size - layout.size(), Ordering::Relaxed);
            PEAK.fetch_max(now + new_size - layout.size(), Ordering::Relaxed);
        } else {
            IN_USE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// xorshift64*: reproducible from `--seed`.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u32; 12] = [
    0,
    1,
    2,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(6) {
        let len = input.len();
        if len == 0 {
            input.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(len);
        match rng.below(9) {
            0 => input[at] ^= 1 << rng.below(8),
            1 => input[at] = rng.next() as u8,
            2 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let width = [1, 2, 4][rng.below(3)];
                let bytes = if rng.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                for (i, b) in bytes.iter().take(width).enumerate() {
                    if let Some(x) = input.get_mut(at + i) {
                        *x = *b;
                    }
                }
            }
            3 => {
                let n = rng.below(64).min(len - at);
                input.drain(at..at + n);
            }
            4 => {
                let n = 1 + rng.below(64);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
            5 => {
                let n = rng.below(256).min(len - at);
                let chunk = input[at..at + n].to_vec();
                let to = rng.below(len);
                input.splice(to..to, chunk);
            }
            6 => input.truncate(at.max(1)),
            7 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let n = rng.below(512).min(other.len() - from);
                let end = (at + n).min(len);
                input.splice(at..end, other[from..from + n].iter().copied());
            }
            _ => {
                let n = rng.below(16).min(len - at);
                for b in &mut input[at..at + n] {
                    *b = 0xFF;
                }
            }
        }
    }
}

/// The process's peak resident set (`VmHWM`) in bytes, from `/proc/self/status` (Linux).
fn rss_peak() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resets `VmHWM` to the current resident set (Linux 4.0+); false where it cannot.
fn reset_rss_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn load_seeds(root: &Path, only: Option<&str>) -> Vec<Vec<u8>> {
    let dirs = [
        "tests/fixtures/decode",
        "tests/fixtures/odd/files",
        "tests/fixtures/fuzz",
        "tests/fixtures/raw",
        "tests/fixtures/raw/parity/files",
        "tests/fixtures/heif/files",
    ];
    let mut seeds = Vec::new();
    for dir in dirs
        .into_iter()
        .filter(|d| only.is_none_or(|o| d.starts_with(o)))
    {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "md" || e == "py") {
                continue;
            }
            if let Ok(bytes) = std::fs::read(&p) {
                if !bytes.is_empty() {
                    seeds.push(bytes);
                }
            }
        }
    }
    seeds
}

fn arg(args: &[String], name: &str, default: f64) -> f64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn save(dir: &Path, kind: &str, n: u64, bytes: &[u8]) -> PathBuf {
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(format!("{kind}-{n}.bin"));
    let _ = std::fs::write(&path, bytes);
    path
}

/// Counts over the run.
#[derive(Default)]
struct Stats {
    execs: u64,
    ok: u64,
    errors: u64,
    truncated: u64,
    too_large: u64,
    found: u64,
    slowest: f64,
    peak_max: usize,
}

impl Stats {
    /// Counts one result; the kind of finding it is, if any.
    fn classify(&mut self, result: &Result<DecodedImage, DecodeError>) -> Option<&'static str> {
        self.execs += 1;
        match result {
            Ok(img)
                if img.rgb.as_raw().len()
                    != img.rgb.width() as usize * img.rgb.height() as usize * 3 =>
            {
                return Some("badsize")
            }
            Ok(_) => self.ok += 1,
            Err(DecodeError::Decode { reason, .. }) if reason.contains("panicked") => {
                return Some("panic")
            }
            Err(DecodeError::Heif { reason, .. }) if reason.contains("panicked") => {
                return Some("panic")
            }
            Err(DecodeError::Truncated { .. }) => self.truncated += 1,
            Err(DecodeError::TooLarge { .. }) => self.too_large += 1,
            Err(_) => self.errors += 1,
        }
        None
    }
}

/// Aborts the run (after saving the input) when one decode has run for `limit_s`.
fn spawn_watchdog(
    current: Arc<Mutex<Vec<u8>>>,
    started_ms: Arc<AtomicU64>,
    t0: Instant,
    findings: PathBuf,
    limit_s: f64,
) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(500));
        let s = started_ms.load(Ordering::Relaxed);
        let now = t0.elapsed().as_millis() as u64;
        if s > 0 && now.saturating_sub(s) as f64 > 1000.0 * limit_s {
            let bytes = current.lock().map(|b| b.clone()).unwrap_or_default();
            let path = save(&findings, "hang", now, &bytes);
            eprintln!(
                "fuzz_decode: HANG: an input has decoded for over {limit_s:.0} s: {}",
                path.display()
            );
            std::process::exit(2);
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let minutes = arg(&args, "--minutes", 1.0);
    let max_seconds = arg(&args, "--max-seconds", 3.0);
    let max_mib = arg(&args, "--max-mib", 1400.0);
    let mut rng = Rng(arg(&args, "--seed", 1.0) as u64 | 1);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let findings = root.join("target/fuzz/findings");
    // Seeds that take long to decode (the crafted bombs) would slow every round: left out.
    let opts = DecodeOptions {
        apply_exif_orientation: true,
        allow_truncated: true,
    };
    let only = args
        .iter()
        .position(|a| a == "--seeds")
        .and_then(|i| args.get(i + 1))
        .map(|d| d.trim_end_matches('/').to_string());
    let seeds: Vec<Vec<u8>> = load_seeds(&root, only.as_deref())
        .into_iter()
        .filter(|s| {
            let t = Instant::now();
            let _ = decode_rgb_with(s, &opts);
            t.elapsed() < Duration::from_millis(50)
        })
        .collect();
    assert!(!seeds.is_empty(), "no seed files under tests/fixtures");
    eprintln!(
        "fuzz_decode: {} seeds, {minutes} min, limits {max_seconds} s and {max_mib} MiB per decode",
        seeds.len()
    );
    // The input being decoded, and since when (ms since start + 1; 0 when idle).
    let current: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
    let started_ms = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    spawn_watchdog(
        current.clone(),
        started_ms.clone(),
        t0,
        findings.clone(),
        4.0 * max_seconds,
    );
    let deadline = Duration::from_secs_f64(minutes * 60.0);
    let mut st = Stats::default();
    let mut last_report = Instant::now();
    while t0.elapsed() < deadline {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &seeds, &mut input);
        if let Ok(mut c) = current.lock() {
            c.clone_from(&input);
        }
        let heif = sniff_heif(&input).is_some();
        if heif {
            let _ = std::fs::create_dir_all(&findings);
            let _ = std::fs::write(root.join("target/fuzz/last-heif-input.bin"), &input);
        }
        for allow_truncated in [false, true] {
            let opts = DecodeOptions {
                apply_exif_orientation: true,
                allow_truncated,
            };
            let base = IN_USE.load(Ordering::Relaxed);
            PEAK.store(base, Ordering::Relaxed);
            let rss_base = (heif && reset_rss_peak()).then(rss_peak).flatten();
            started_ms.store(t0.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
            let start = Instant::now();
            let result = decode_rgb_with(&input, &opts);
            let took = start.elapsed().as_secs_f64();
            started_ms.store(0, Ordering::Relaxed);
            let mut peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
            if let (Some(before), Some(after)) = (rss_base, rss_peak()) {
                peak = peak.max(after.saturating_sub(before));
            }
            st.slowest = st.slowest.max(took);
            st.peak_max = st.peak_max.max(peak);
            let problem = st
                .classify(&result)
                .or((took > max_seconds).then_some("slow"))
                .or((peak as f64 > max_mib * 1048576.0).then_some("memory"));
            if let Some(kind) = problem {
                st.found += 1;
                let path = save(&findings, kind, st.execs, &input);
                eprintln!(
                    "fuzz_decode: {kind} ({took:.2} s, {} MiB): {}",
                    peak >> 20,
                    path.display()
                );
            }
        }
        if last_report.elapsed() > Duration::from_secs(60) {
            last_report = Instant::now();
            eprintln!(
                "fuzz_decode: {:.0} s, {} decodes, {} findings, slowest {:.2} s, peak {} MiB",
                t0.elapsed().as_secs_f64(),
                st.execs,
                st.found,
                st.slowest,
                st.peak_max >> 20
            );
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "fuzz_decode: {} decodes in {secs:.0} s ({:.0}/s): {} decoded, {} refused, {} truncated, {} too large; {} findings; slowest {:.2} s; peak heap {} MiB",
        st.execs, st.execs as f64 / secs, st.ok, st.errors, st.truncated, st.too_large, st.found, st.slowest, st.peak_max >> 20
    );
    if st.found > 0 {
        println!("fuzz_decode: findings in {}", findings.display());
        std::process::exit(1);
    }
}
