//! Where one ViT-L/14 encoder layer's time goes, op by op, at batch 8 (257 tokens, 1024 wide, 16
//! heads): candle's matmuls, its batched attention matmuls, softmax and quick-GELU, against imgvec's
//! fused kernels (`src/clip/kernels.rs`). Prints ms and GFLOP/s per op. Threads: RAYON_NUM_THREADS.
//!
//! First, the encoder's four linear layers at batch 1 and 8: candle's matmul + bias add against
//! imgvec's packed GEMM (`src/clip/dense`), at the SIMD level in use (`IMGVEC_SIMD=avx2` lowers it).
//!
//! cargo bench --bench profile_ops [-- --dense-only | --attention-only [reps]]

use candle_core::{DType, Device, Tensor};
use imgvec::clip::dense::LinearPrecision;
use std::time::Instant;
#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_seconds;

/// Runs `f` n times; prints the fastest run (the one least disturbed by anything else running),
/// by wall time and by CPU time.
fn t<F: FnMut()>(name: &str, flop: f64, n: usize, mut f: F) {
    f();
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..n {
        let (s, c) = (Instant::now(), cpu_seconds());
        f();
        wall = wall.min(s.elapsed().as_secs_f64());
        cpu = cpu.min(cpu_seconds() - c);
    }
    println!(
        "{name:40} {:8.3} ms  {:7.1} GFLOP/s  {:6.1} GFLOP/cpu-s",
        wall * 1e3,
        flop / wall / 1e9,
        flop / cpu / 1e9
    );
}

/// Linear layers at ViT-L/14 sizes: `x [b·257, k] · Wᵀ [k, n] + bias`, candle vs packed.
fn dense_layers() {
    use imgvec::clip::dense::{Dense, Simd};
    let d = Device::Cpu;
    println!(
        "linear layers, SIMD {} , {} threads",
        Simd::get().name(),
        rayon::current_num_threads()
    );
    for b in [1usize, 8] {
        for (name, n, k) in [
            ("qkv", 3072usize, 1024usize),
            ("out_proj", 1024, 1024),
            ("fc1", 4096, 1024),
            ("fc2", 1024, 4096),
        ] {
            let m = b * 257;
            let x = Tensor::randn(0f32, 1., (m, k), &d).unwrap();
            let w = Tensor::randn(0f32, 1., (n, k), &d).unwrap();
            let bias = Tensor::randn(0f32, 1., n, &d).unwrap();
            let flop = 2.0 * (m * n * k) as f64;
            let reps = if b == 1 { 20 } else { 4 };
            t(
                &format!("b{b} {name} candle matmul+bias"),
                flop,
                reps,
                || {
                    x.matmul(&w.t().unwrap())
                        .unwrap()
                        .broadcast_add(&bias)
                        .unwrap();
                },
            );
            let dense = Dense::new(w.clone(), Some(bias.clone())).unwrap();
            t(&format!("b{b} {name} packed"), flop, reps, || {
                dense.forward(&x).unwrap();
            });
            // As in the model: 24 layers' weights, each read from memory once per image, not
            // one weight warm in the cache.
            let layers: Vec<Dense> = (0..24)
                .map(|_| {
                    let w = Tensor::randn(0f32, 1., (n, k), &d).unwrap();
                    Dense::new(w, Some(bias.clone())).unwrap()
                })
                .collect();
            t(
                &format!("b{b} {name} packed, 24 cold"),
                24.0 * flop,
                2,
                || {
                    for l in &layers {
                        l.forward(&x).unwrap();
                    }
                },
            );
        }
        // Self-attention straight from the q/k/v product (16 heads of 64), as in the model.
        let qkv = Tensor::randn(0f32, 1., (b, 257, 3072), &d).unwrap();
        let flop = 4.0 * (b * 257 * 257 * 1024) as f64;
        for p in attention_precisions() {
            t(&format!("b{b} attention_from_qkv {p:?}"), flop, 10, || {
                imgvec::clip::dense::attention_from_qkv(&qkv, 16, false, None, p).unwrap();
            });
        }
    }
}

/// `--attention-only [reps]`: batch-1 self-attention alone, `reps` timed runs (for `perf`).
fn attention_only(reps: usize) {
    let d = Device::Cpu;
    let qkv = Tensor::randn(0f32, 1., (1, 257, 3072), &d).unwrap();
    let flop = 4.0 * (257 * 257 * 1024) as f64;
    for p in attention_precisions() {
        t(&format!("b1 attention_from_qkv {p:?}"), flop, reps, || {
            imgvec::clip::dense::attention_from_qkv(&qkv, 16, false, None, p).unwrap();
        });
    }
}

/// f32, and bf16 where this CPU runs attention in bf16 (the layers' precision int8 runs it the same).
fn attention_precisions() -> Vec<LinearPrecision> {
    let mut p = vec![LinearPrecision::F32];
    if imgvec::clip::dense::bf16::available() {
        p.push(LinearPrecision::Bf16);
    }
    p
}

fn main() {
    imgvec::tune_allocator();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--attention-only") {
        let reps = args.get(i + 1).and_then(|r| r.parse().ok()).unwrap_or(50);
        return attention_only(reps);
    }
    dense_layers();
    if std::env::args().any(|a| a == "--dense-only") {
        return;
    }
    let d = Device::Cpu;
    let b = 8usize;
    let n = 257usize;
    let x = Tensor::randn(0f32, 1., (b * n, 1024), &d).unwrap();
    let w = Tensor::randn(0f32, 1., (3072, 1024), &d).unwrap();
    let wt = w.t().unwrap().contiguous().unwrap();
    let w1 = Tensor::randn(0f32, 1., (4096, 1024), &d).unwrap();
    let w2 = Tensor::randn(0f32, 1., (1024, 4096), &d).unwrap();
    let h = Tensor::randn(0f32, 1., (b * n, 4096), &d).unwrap();
    t(
        "qkv x@W^T (transposed view)",
        2.0 * (b * n) as f64 * 1024. * 3072.,
        5,
        || {
            x.matmul(&w.t().unwrap()).unwrap();
        },
    );
    t(
        "qkv x@Wt (contiguous)",
        2.0 * (b * n) as f64 * 1024. * 3072.,
        5,
        || {
            x.matmul(&wt).unwrap();
        },
    );
    t(
        "fc1 x@W1^T",
        2.0 * (b * n) as f64 * 1024. * 4096.,
        5,
        || {
            x.matmul(&w1.t().unwrap()).unwrap();
        },
    );
    t(
        "fc2 h@W2^T",
        2.0 * (b * n) as f64 * 1024. * 4096.,
        5,
        || {
            h.matmul(&w2.t().unwrap()).unwrap();
        },
    );
    let q = Tensor::randn(0f32, 1., (b * 16, n, 64), &d).unwrap();
    let k = Tensor::randn(0f32, 1., (b * 16, n, 64), &d).unwrap();
    t(
        "q@k^T batched",
        2.0 * (b * 16 * n * n * 64) as f64,
        5,
        || {
            q.matmul(&k.t().unwrap()).unwrap();
        },
    );
    let s = Tensor::randn(0f32, 1., (b * 16, n, n), &d).unwrap();
    t("softmax_last_dim", 0.0, 5, || {
        candle_nn::ops::softmax_last_dim(&s).unwrap();
    });
    t("p@v batched", 2.0 * (b * 16 * n * n * 64) as f64, 5, || {
        s.matmul(&q).unwrap();
    });
    t("fused quick_gelu", 0.0, 5, || {
        imgvec::clip::kernels::quick_gelu(&h).unwrap();
    });
    t("fused softmax", 0.0, 5, || {
        imgvec::clip::kernels::softmax_last_dim(&s).unwrap();
    });
    let kt = k.transpose(1, 2).unwrap().contiguous().unwrap();
    t(
        "q@kt (kt contiguous)",
        2.0 * (b * 16 * n * n * 64) as f64,
        5,
        || {
            q.matmul(&kt).unwrap();
        },
    );
    t("quick_gelu (3 ops)", 0.0, 5, || {
        let _ = (&h * candle_nn::ops::sigmoid(&(&h * 1.702).unwrap()).unwrap()).unwrap();
    });
    let g = Tensor::ones(1024, DType::F32, &d).unwrap();
    let bb = Tensor::zeros(1024, DType::F32, &d).unwrap();
    let x3 = x.reshape((b, n, 1024)).unwrap();
    t("layer_norm", 0.0, 5, || {
        candle_nn::ops::layer_norm(&x3, &g, &bb, 1e-5).unwrap();
    });
    t("residual add", 0.0, 5, || {
        (&x3 + &x3).unwrap();
    });
    let qkv = Tensor::randn(0f32, 1., (b, n, 3, 16, 64), &d).unwrap();
    t("qkv permute+contiguous x3", 0.0, 5, || {
        let p = qkv.permute((2, 0, 3, 1, 4)).unwrap();
        for i in 0..3 {
            p.get(i).unwrap().contiguous().unwrap();
        }
    });
    let ctx = Tensor::randn(0f32, 1., (b, 16, n, 64), &d).unwrap();
    t("ctx transpose+contiguous", 0.0, 5, || {
        ctx.transpose(1, 2).unwrap().contiguous().unwrap();
    });
}
