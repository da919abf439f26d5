//! Encoder throughput: images/s of the CLIP vision tower at several batch sizes, plus model load time.
//!
//! The model forward only (pixels are preprocessed once beforehand), like benches/pytorch_encoder.py,
//! so the two are compared on the same work. Threads: RAYON_NUM_THREADS (default: all cores).
//!
//! cargo bench --bench encoder -- --model DIR --images DIR [--batch-sizes 1,4,8] [--min-seconds 20]

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use imgvec::clip::preprocess::preprocess_rgb;
use imgvec::clip::{ImageEncoder, ModelDir};
use imgvec::image::decode_rgb;

struct Args {
    model: PathBuf,
    images: PathBuf,
    batch_sizes: Vec<usize>,
    min_seconds: f64,
    warmup: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        model: PathBuf::from("models/clip-vit-large-patch14"),
        images: PathBuf::from("tests/fixtures/images"),
        batch_sizes: vec![1, 4, 8],
        min_seconds: 20.0,
        warmup: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = PathBuf::from(val()?),
            "--images" => a.images = PathBuf::from(val()?),
            "--batch-sizes" => {
                a.batch_sizes = val()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|e| format!("--batch-sizes: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--min-seconds" => a.min_seconds = val()?.parse().map_err(|e| format!("{e}"))?,
            "--warmup" => a.warmup = val()?.parse().map_err(|e| format!("{e}"))?,
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn main() {
    imgvec::tune_allocator();
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench encoder: {e}");
            std::process::exit(2);
        }
    };
    let t = Instant::now();
    let model = ModelDir::open(&args.model).unwrap_or_else(|e| panic!("{e}"));
    let enc = ImageEncoder::load(&model, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let load_s = t.elapsed().as_secs_f64();
    println!(
        "imgvec load_seconds={load_s:.3} model={} threads={} simd={} gemm_avx512={}",
        args.model.display(),
        candle_core::utils::get_num_threads(),
        imgvec::clip::dense::Simd::get().name(),
        cfg!(feature = "avx512-gemm")
    );

    let mut paths: Vec<PathBuf> = std::fs::read_dir(&args.images)
        .unwrap_or_else(|e| panic!("{}: {e}", args.images.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    let t = Instant::now();
    let pixels: Vec<Vec<f32>> = paths
        .iter()
        .filter_map(|p| {
            let bytes = std::fs::read(p).ok()?;
            let img = decode_rgb(&bytes, true).ok()?;
            Some(preprocess_rgb(&img.rgb, enc.preprocess_config()))
        })
        .collect();
    println!(
        "imgvec preprocess images={} ms_per_img={:.1}",
        pixels.len(),
        1e3 * t.elapsed().as_secs_f64() / pixels.len().max(1) as f64
    );

    for &bs in &args.batch_sizes {
        let batch = |i: usize| -> Vec<&[f32]> {
            (0..bs)
                .map(|j| pixels[(i * bs + j) % pixels.len()].as_slice())
                .collect()
        };
        for w in 0..args.warmup {
            enc.embed_pixels(&batch(w))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let t = Instant::now();
        let mut n = 0usize;
        let mut i = 0usize;
        while n == 0 || t.elapsed().as_secs_f64() < args.min_seconds {
            enc.embed_pixels(&batch(i))
                .unwrap_or_else(|e| panic!("{e}"));
            n += bs;
            i += 1;
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "imgvec batch={bs} img_per_s={:.3} ms_per_img={:.1} images={n}",
            n as f64 / s,
            1e3 * s / n as f64
        );
    }
}
