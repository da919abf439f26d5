//! Decode time per file through imgvec's decoder (`decode_rgb`, as `embed`/`ingest` decode): for
//! each file given, the minimum and median over `--runs N` (default 5) decodes, in milliseconds.
//!
//! Usage: `cargo run --release --example decode_timing [--features heif] -- [--runs N]
//! [--no-orientation] FILE...` (`benches/heif_decode.sh` compares it with pillow-heif on the same
//! files, `benches/raw_decode.sh` with rawpy; `--no-orientation` leaves the pixels as stored, as
//! `--ignore-exif-orientation` does).

use std::time::Instant;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 5usize;
    if let Some(i) = args.iter().position(|a| a == "--runs") {
        runs = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(runs);
        args.drain(i..(i + 2).min(args.len()));
    }
    let upright = match args.iter().position(|a| a == "--no-orientation") {
        Some(i) => {
            args.remove(i);
            false
        }
        None => true,
    };
    for path in &args {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(1);
            }
        };
        let mut times = Vec::with_capacity(runs);
        let mut size = (0, 0);
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            match imgvec::image::decode_rgb(&bytes, upright) {
                Ok(img) => size = img.rgb.dimensions(),
                Err(e) => {
                    eprintln!("{path}: {e}");
                    std::process::exit(1);
                }
            }
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "imgvec  {path}: {}x{}  min {:.1} ms  median {:.1} ms  ({} runs)",
            size.0,
            size.1,
            times[0],
            times[times.len() / 2],
            times.len()
        );
    }
}
