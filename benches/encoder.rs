//! Encoder throughput: images/s of the CLIP vision tower at several batch sizes, plus model load time.
//!
//! The model forward only (pixels are preprocessed once beforehand), like benches/pytorch_encoder.py,
//! so the two are compared on the same work. Threads: RAYON_NUM_THREADS (default: all cores).
//!
//! cargo bench --bench encoder -- --model DIR --images DIR [--batch-sizes 1,4,8] [--min-seconds 20]
//!     [--device cpu|cuda|metal|auto] [--precision f32|f16|bf16]
//!     [--embeddings-out FILE] [--reference FILE]
//!
//! `--precision` defaults to the device's (f32 on the CPU, f16 on a GPU); bf16 on the CPU is the CLI's
//! (imgvec's bf16 linear layers, AVX512_BF16); unlike the CLI, f16 is allowed on the CPU here
//! (candle's ops, slow) to measure it. `--embeddings-out` writes the
//! embedding of each image (one JSON array per line, in file-name order); `--reference` reads such a
//! file (say, from an f32 CPU run) and prints the cosine of each embedding to it, min and mean.
//! `--batch-sizes ""` (empty) only embeds the images, for the two flags above. On a GPU the timing
//! includes the upload of the pixels and the copy of the embeddings back, as in `imgvec ingest`.

#[path = "support/cpu_time.rs"]
mod cpu_time;

use std::path::PathBuf;
use std::time::Instant;

use imgvec::clip::preprocess::preprocess_rgb;
use imgvec::clip::{cosine, ImageEncoder, ModelDir};
use imgvec::device::{DeviceChoice, Precision};
use imgvec::image::decode_rgb;

struct Args {
    model: PathBuf,
    images: PathBuf,
    batch_sizes: Vec<usize>,
    min_seconds: f64,
    warmup: usize,
    device: DeviceChoice,
    precision: Option<Precision>,
    embeddings_out: Option<PathBuf>,
    reference: Option<PathBuf>,
}

fn value_enum<T: clap::ValueEnum>(flag: &str, v: &str) -> Result<T, String> {
    T::from_str(v, true).map_err(|e| format!("{flag}: {e}"))
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        model: PathBuf::from("models/clip-vit-large-patch14"),
        images: PathBuf::from("tests/fixtures/images"),
        batch_sizes: vec![1, 4, 8],
        min_seconds: 20.0,
        warmup: 1,
        device: DeviceChoice::Cpu,
        precision: None,
        embeddings_out: None,
        reference: None,
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
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().parse().map_err(|e| format!("--batch-sizes: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--device" => a.device = value_enum("--device", &val()?)?,
            "--precision" => a.precision = Some(value_enum("--precision", &val()?)?),
            "--embeddings-out" => a.embeddings_out = Some(PathBuf::from(val()?)),
            "--reference" => a.reference = Some(PathBuf::from(val()?)),
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
    let (device, device_name) = imgvec::device::open(args.device).unwrap_or_else(|e| {
        eprintln!("bench encoder: {e}");
        std::process::exit(1);
    });
    // The CLI's default; f16/bf16 on the CPU are allowed here, to be measured.
    let precision = args.precision.unwrap_or(if device.is_cpu() {
        Precision::F32
    } else {
        Precision::F16
    });
    let t = Instant::now();
    let (dtype, linear) = imgvec::device::model_precision(precision, &device);
    let model = ModelDir::open(&args.model)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_dtype(dtype)
        .with_linear(linear);
    let enc = ImageEncoder::load(&model, &device).unwrap_or_else(|e| panic!("{e}"));
    device.synchronize().unwrap_or_else(|e| panic!("{e}"));
    let load_s = t.elapsed().as_secs_f64();
    println!(
        "imgvec load_seconds={load_s:.3} model={} device={} precision={} threads={} simd={} linear={} gemm_avx512={}",
        args.model.display(),
        device_name.replace(' ', "_"),
        precision.name(),
        candle_core::utils::get_num_threads(),
        imgvec::clip::dense::Simd::get().name(),
        imgvec::clip::dense::linear_kernels(),
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
    if pixels.is_empty() {
        eprintln!(
            "bench encoder: no decodable images in {}",
            args.images.display()
        );
        std::process::exit(1);
    }
    if args.embeddings_out.is_some() || args.reference.is_some() {
        compare(&enc, &pixels, &args, precision, &device_name);
    }

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
        let (t, cpu) = (Instant::now(), cpu_time::cpu_seconds());
        let mut n = 0usize;
        let mut i = 0usize;
        while n == 0 || t.elapsed().as_secs_f64() < args.min_seconds {
            enc.embed_pixels(&batch(i))
                .unwrap_or_else(|e| panic!("{e}"));
            n += bs;
            i += 1;
        }
        let s = t.elapsed().as_secs_f64();
        let cpu = cpu_time::cpu_seconds() - cpu;
        println!(
            "imgvec batch={bs} img_per_s={:.3} ms_per_img={:.1} cpu_ms_per_img={:.1} images={n} device={} precision={}",
            n as f64 / s,
            1e3 * s / n as f64,
            1e3 * cpu / n as f64,
            device_name.replace(' ', "_"),
            precision.name()
        );
    }
}

/// Embeds every image once (in batches of 8) and writes the embeddings and/or compares them with a
/// reference file of the same images.
fn compare(
    enc: &ImageEncoder,
    pixels: &[Vec<f32>],
    args: &Args,
    precision: Precision,
    device_name: &str,
) {
    let mut vectors = Vec::with_capacity(pixels.len());
    for chunk in pixels.chunks(8) {
        let batch: Vec<&[f32]> = chunk.iter().map(|p| p.as_slice()).collect();
        vectors.extend(enc.embed_pixels(&batch).unwrap_or_else(|e| panic!("{e}")));
    }
    if let Some(path) = &args.embeddings_out {
        let text: String = vectors
            .iter()
            .map(|v| serde_json::to_string(v).expect("a vector of finite floats") + "\n")
            .collect();
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    if let Some(path) = &args.reference {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let reference: Vec<Vec<f32>> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .collect();
        if reference.len() != vectors.len() {
            panic!(
                "{}: {} embeddings, this run has {}",
                path.display(),
                reference.len(),
                vectors.len()
            );
        }
        let cos: Vec<f64> = vectors
            .iter()
            .zip(&reference)
            .map(|(a, b)| cosine(a, b))
            .collect();
        let min = cos.iter().copied().fold(f64::INFINITY, f64::min);
        let mean = cos.iter().sum::<f64>() / cos.len() as f64;
        println!(
            "imgvec cosine_to_reference device={} precision={} images={} min={min:.6} mean={mean:.6} top10_agreement={} reference={}",
            device_name.replace(' ', "_"),
            precision.name(),
            cos.len(),
            top_k_agreement(&vectors, &reference, 10)
                .map_or("n/a".to_string(), |a| format!("{a:.4}")),
            path.display()
        );
    }
}

/// Image→image search among the images themselves, each one the query (itself left out): the mean
/// share of its `k` nearest under `reference` that are also its `k` nearest under `vectors`
/// (exact search, by cosine). `None` with `k` or fewer images.
fn top_k_agreement(vectors: &[Vec<f32>], reference: &[Vec<f32>], k: usize) -> Option<f64> {
    if vectors.len() <= k {
        return None;
    }
    let nearest = |set: &[Vec<f32>], q: usize| -> Vec<usize> {
        let mut order: Vec<(f64, usize)> = (0..set.len())
            .filter(|&j| j != q)
            .map(|j| (cosine(&set[q], &set[j]), j))
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0));
        order.iter().take(k).map(|&(_, j)| j).collect()
    };
    let shared: usize = (0..vectors.len())
        .map(|q| {
            let want = nearest(reference, q);
            nearest(vectors, q)
                .iter()
                .filter(|j| want.contains(j))
                .count()
        })
        .sum();
    Some(shared as f64 / (vectors.len() * k) as f64)
}
