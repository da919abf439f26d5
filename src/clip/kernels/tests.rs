use super::*;
use candle_core::Device;

#[test]
fn fused_attention_matches_candle() {
    let dev = Device::Cpu;
    let q = Tensor::randn(0f32, 0.5, (6, 37, 16), &dev).unwrap();
    let k = Tensor::randn(0f32, 0.5, (6, 37, 16), &dev).unwrap();
    let v = Tensor::randn(0f32, 1.0, (6, 37, 16), &dev).unwrap();
    for causal in [false, true] {
        let fused = attention(&q, &k, &v, causal).unwrap();
        let mut scores = q.matmul(&k.t().unwrap()).unwrap();
        if causal {
            let mask: Vec<f32> = (0..37)
                .flat_map(|i| (0..37).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            let mask = Tensor::from_vec(mask, (37, 37), &dev).unwrap();
            scores = scores.broadcast_add(&mask).unwrap();
        }
        let want = candle_nn::ops::softmax_last_dim(&scores)
            .unwrap()
            .matmul(&v)
            .unwrap();
        let diff = (fused - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "causal={causal}");
    }
}

#[test]
fn exp_is_accurate() {
    let mut worst = 0f64;
    let mut x = -87.0f32;
    while x < 88.0 {
        let want = f64::from(x).exp();
        let got = f64::from(exp(x));
        worst = worst.max(((got - want) / want).abs());
        x += 0.0137;
    }
    assert!(worst < 3e-7, "max relative error {worst}");
    assert_eq!(exp(-1000.0), exp(-87.3));
    assert!(exp(0.0) == 1.0);
    // Non-finite input: defined results (a NaN stays NaN, for the vector check to catch).
    assert!(exp(f32::NAN).is_nan());
    assert_eq!(exp(f32::NEG_INFINITY), exp(-87.3));
    assert_eq!(exp(f32::INFINITY), exp(88.3));
}

fn reference(x: &Tensor) -> (Tensor, Tensor) {
    let g = (x * candle_nn::ops::sigmoid(&(x * 1.702).unwrap()).unwrap()).unwrap();
    (g, candle_nn::ops::softmax_last_dim(x).unwrap())
}

#[test]
fn fused_ops_match_candle() {
    // Odd sizes: rows that straddle chunk boundaries and a tail shorter than a vector.
    let x = (Tensor::randn(0f32, 4.0, (3, 257, 131), &Device::Cpu).unwrap() - 1.0).unwrap();
    let (g, s) = reference(&x);
    let dg = (quick_gelu(&x).unwrap() - g)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    let ds = (softmax_last_dim(&x).unwrap() - s)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(dg.to_scalar::<f32>().unwrap() < 1e-5);
    assert!(ds.to_scalar::<f32>().unwrap() < 1e-6);
    // Extremes: saturation without NaN or inf.
    let big = Tensor::new(&[-1e4f32, -100.0, 0.0, 100.0, 1e4], &Device::Cpu).unwrap();
    let g: Vec<f32> = quick_gelu(&big).unwrap().to_vec1().unwrap();
    assert!(g[0].abs() < 1e-30 && g[1].abs() < 1e-30, "{g:?}");
    assert_eq!(&g[2..], &[0.0, 100.0, 1e4]);
    let s: Vec<f32> = softmax_last_dim(&big).unwrap().to_vec1().unwrap();
    assert!(s.iter().all(|v| v.is_finite()) && (s[4] - 1.0).abs() < 1e-7);
}

/// The reduced precisions' quick-GELU: within a few units in the last place of the f32 one (and of
/// `x · sigmoid(1.702 x)` in f64) over the range activations take, the same bits in place and into
/// another slice, and defined at the extremes (a NaN stays NaN).
#[test]
fn fma_quick_gelu_is_the_quick_gelu_to_rounding() {
    let xs: Vec<f32> = (0..40_000).map(|i| -60.0 + i as f32 * 0.003_001).collect();
    let mut fma = vec![0f32; xs.len()];
    quick_gelu_fma_slice(&xs, &mut fma);
    let mut exact = xs.clone();
    quick_gelu_in_place(&mut exact);
    let mut in_place = xs.clone();
    quick_gelu_fma_in_place(&mut in_place);
    assert_eq!(
        fma.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        in_place.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let mut worst = 0f64;
    for ((&x, &g), &e) in xs.iter().zip(&fma).zip(&exact) {
        let want = f64::from(x) / (1.0 + (-1.702 * f64::from(x)).exp());
        // Relative to the larger of the value and 1e-3 (near zero both are tiny and close).
        let scale = want.abs().max(1e-3);
        worst = worst.max((f64::from(g) - want).abs() / scale);
        assert!(
            (g - e).abs() <= 4.0 * f32::EPSILON * e.abs().max(1e-3),
            "{x}: {g} against {e}"
        );
    }
    assert!(worst < 1e-6, "max relative error {worst}");
    let mut edges = [-1e4f32, -100.0, 0.0, 100.0, 1e4, f32::NAN];
    quick_gelu_fma_in_place(&mut edges);
    assert!(
        edges[0].abs() < 1e-30 && edges[1].abs() < 1e-30,
        "{edges:?}"
    );
    assert_eq!(&edges[2..5], &[0.0, 100.0, 1e4]);
    assert!(edges[5].is_nan());
}
