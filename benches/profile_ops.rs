//! Where one ViT-L/14 encoder layer's time goes, op by op, at batch 8 (257 tokens, 1024 wide, 16
//! heads): candle's matmuls, its batched attention matmuls, softmax and quick-GELU, against imgvec's
//! fused kernels (`src/clip/kernels.rs`). Prints ms and GFLOP/s per op. Threads: RAYON_NUM_THREADS.
//!
//! cargo bench --bench profile_ops

use candle_core::{DType, Device, Tensor};
use std::time::Instant;
fn t<F: FnMut()>(name: &str, flop: f64, n: usize, mut f: F) {
    f();
    let s = Instant::now();
    for _ in 0..n {
        f();
    }
    let e = s.elapsed().as_secs_f64() / n as f64;
    println!(
        "{name:40} {:8.3} ms  {:7.1} GFLOP/s",
        e * 1e3,
        flop / e / 1e9
    );
}
fn main() {
    imgvec::tune_allocator();
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
