//! The packed GEMM against a float64 reference, on every SIMD level this CPU has, at sizes that
//! hit every edge: row counts that are not whole tiles, column counts cut inside a panel, k across
//! block boundaries, with and without bias and residual.

use super::*;
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::Linear;

/// The SIMD levels this CPU runs; the tests that loop over them are ignored (skipped) where there
/// is none (`cpu_avx2` from build.rs), so an empty list here is a failure, not a silent pass.
fn levels() -> Vec<Simd> {
    let levels = match detect() {
        Simd::Avx512 => vec![Simd::Avx512, Simd::Avx2],
        Simd::Avx2 => vec![Simd::Avx2],
        Simd::None => vec![],
    };
    assert!(
        !levels.is_empty(),
        "build.rs found AVX2+FMA on this CPU but the kernels detect none (IMGVEC_SIMD=none at run time?)"
    );
    levels
}

/// Deterministic values in [-1, 1).
pub(super) fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

pub(super) fn reference(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    r: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f64> {
    let mut y = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s: f64 = (0..k)
                .map(|p| x[i * k + p] as f64 * w[j * k + p] as f64)
                .sum();
            s += b.map_or(0.0, |b| b[j] as f64);
            s += r.map_or(0.0, |r| r[i * n + j] as f64);
            y[i * n + j] = s;
        }
    }
    y
}

fn check(simd: Simd, m: usize, n: usize, k: usize, bias: bool, residual: bool) {
    let x = values(m * k, 1 + m as u64);
    let w = values(n * k, 2 + n as u64);
    let b = bias.then(|| values(n, 3));
    let r = residual.then(|| values(m * n, 4));
    let p = PackedWeight::with_simd(simd, &w, n, k, b.as_deref()).expect("packable");
    let mut y = vec![f32::NAN; m * n];
    p.matmul(&x, m, r.as_deref(), &mut y);
    let want = reference(&x, &w, b.as_deref(), r.as_deref(), m, n, k);
    for (i, (got, want)) in y.iter().zip(&want).enumerate() {
        // f32 sums of k products of values in [-1, 1): error well under k · 2⁻²³ · |terms|.
        let tol = 1e-6 * (k as f64 + 2.0);
        assert!(
            (*got as f64 - want).abs() <= tol,
            "{simd:?} m={m} n={n} k={k} bias={bias} residual={residual}: y[{i}] = {got}, want {want}"
        );
    }
}

#[test]
#[cfg_attr(
    not(cpu_avx2),
    ignore = "no AVX2+FMA on this CPU: the packed kernels do not run"
)]
fn matches_reference_at_every_edge() {
    for simd in levels() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 32, 64),
            (5, 17, 3),
            (7, 33, 255),
            (9, 48, 256),
            (13, 100, 257),
            (15, 64, 513),
            (257, 64, 600),
            (20, 1024, 40),
            (600, 40, 300),
        ] {
            for (bias, residual) in [(false, false), (true, false), (true, true), (false, true)] {
                check(simd, m, n, k, bias, residual);
            }
        }
    }
}

#[test]
fn wrong_sizes_are_refused_at_pack_time() {
    for simd in levels() {
        assert!(PackedWeight::with_simd(simd, &[0.0; 6], 2, 4, None).is_none());
        assert!(PackedWeight::with_simd(simd, &[0.0; 8], 2, 4, Some(&[0.0; 3])).is_none());
    }
    assert!(PackedWeight::with_simd(Simd::None, &[0.0; 8], 2, 4, None).is_none());
}

#[test]
fn dense_layer_equals_candle_linear() -> Result<()> {
    let dev = candle_core::Device::Cpu;
    let (n, k) = (40, 70);
    let w = Tensor::from_vec(values(n * k, 7), (n, k), &dev)?;
    let b = Tensor::from_vec(values(n, 8), n, &dev)?;
    let x = Tensor::from_vec(values(3 * 5 * k, 9), (3, 5, k), &dev)?;
    let r = Tensor::from_vec(values(3 * 5 * n, 10), (3, 5, n), &dev)?;
    let want = Linear::new(w.clone(), Some(b.clone())).forward(&x)?;
    let dense = Dense::new(w, Some(b))?;
    if detect() != Simd::None {
        assert!(matches!(dense, Dense::Packed(_)));
    }
    let got = dense.forward(&x)?;
    assert_eq!(got.dims(), &[3, 5, n]);
    let diff = (got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(diff < 1e-4, "forward differs from candle by {diff}");
    let got = dense.forward_add(&x, &r)?;
    let diff = (got - (want + r)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(diff < 1e-4, "forward_add differs from candle by {diff}");
    // A transposed (non-contiguous) input gives the same as its contiguous copy.
    let xt = x.transpose(0, 1)?;
    let a = dense.forward(&xt)?;
    let b = dense.forward(&xt.contiguous()?)?;
    assert_eq!(a.to_vec3::<f32>()?, b.to_vec3::<f32>()?);
    Ok(())
}

/// The activation applied to each tile as it is written is the separate kernel's, bit for bit,
/// also where k spans several blocks (the tile is finished only at the last) and n cuts a panel.
#[test]
fn quick_gelu_epilogue_equals_the_separate_kernel() -> Result<()> {
    let dev = candle_core::Device::Cpu;
    for (m, n, k) in [(3, 40, 70), (257, 100, 600)] {
        let w = Tensor::from_vec(values(n * k, 11), (n, k), &dev)?;
        let b = Tensor::from_vec(values(n, 12), n, &dev)?;
        let x = (Tensor::from_vec(values(m * k, 13), (m, k), &dev)? * 4.0)?;
        let dense = Dense::new(w, Some(b))?;
        let want = crate::clip::kernels::quick_gelu(&dense.forward(&x)?)?;
        let got = dense.forward_with(&x, Epilogue::QuickGelu)?;
        assert_eq!(
            got.to_vec2::<f32>()?,
            want.to_vec2::<f32>()?,
            "m={m} n={n} k={k}"
        );
    }
    Ok(())
}

/// The largest difference between `epilogue` on a layer's tiles and `reference` applied to the
/// layer's plain output, over shapes where the tiles cut a panel, as a share of the output's
/// scale; and the same for `other` (a reference the epilogue must not be).
fn epilogue_error(
    epilogue: Epilogue,
    reference: fn(&Tensor) -> Result<Tensor>,
    other: fn(&Tensor) -> Result<Tensor>,
    seed: u64,
) -> Result<(f32, f32)> {
    let dev = candle_core::Device::Cpu;
    let (mut worst, mut other_worst) = (0f32, f32::INFINITY);
    for (m, n, k) in [(3, 40, 70), (257, 100, 600)] {
        let w = Tensor::from_vec(values(n * k, seed), (n, k), &dev)?;
        let b = Tensor::from_vec(values(n, seed + 1), n, &dev)?;
        let x = (Tensor::from_vec(values(m * k, seed + 2), (m, k), &dev)? * 4.0)?;
        let dense = Dense::new(w, Some(b))?;
        let plain = dense.forward(&x)?;
        let got = dense.forward_with(&x, epilogue)?;
        let scale = plain.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
        let diff = |t: Tensor| -> Result<f32> {
            Ok((&got - t)?.abs()?.max_all()?.to_scalar::<f32>()? / scale)
        };
        worst = worst.max(diff(reference(&plain)?)?);
        other_worst = other_worst.min(diff(other(&plain)?)?);
    }
    Ok((worst, other_worst))
}

/// The tanh-GELU epilogue (SigLIP's activation, as `x · sigmoid(2u)`) is candle's `gelu` (the
/// tanh form) of the layer's output to float rounding; the exact-GELU one is candle's `gelu_erf`
/// (an f64 erf) to within its erf's 1.5·10⁻⁷; each far from the other form (which differ by up
/// to ~5·10⁻⁴ of x), so the comparison can tell them apart.
#[test]
fn gelu_epilogues_equal_their_formulas() -> Result<()> {
    let (tanh, tanh_vs_erf) =
        epilogue_error(Epilogue::GeluTanh, |t| t.gelu(), |t| t.gelu_erf(), 21)?;
    assert!(
        tanh <= 1e-6 && tanh_vs_erf > 10.0 * tanh,
        "tanh {tanh}, against erf {tanh_vs_erf}"
    );
    let (erf, erf_vs_tanh) = epilogue_error(Epilogue::GeluErf, |t| t.gelu_erf(), |t| t.gelu(), 24)?;
    assert!(
        erf <= 4e-7 && erf_vs_tanh > 10.0 * erf,
        "erf {erf}, against tanh {erf_vs_tanh}"
    );
    Ok(())
}

/// The exact-GELU pass at the edges of its range: far negative (no cancellation), around zero,
/// far positive.
#[test]
fn gelu_erf_pass_at_the_edges() -> Result<()> {
    let dev = candle_core::Device::Cpu;
    let edges = Tensor::new(
        &[-30f32, -6.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 6.0, 30.0],
        &dev,
    )?;
    let mut got: Vec<f32> = edges.to_vec1()?;
    crate::clip::kernels::gelu_erf_in_place(&mut got);
    let want: Vec<f32> = edges.gelu_erf()?.to_vec1()?;
    for ((g, w), x) in got.iter().zip(&want).zip(edges.to_vec1::<f32>()?) {
        assert!(
            (g - w).abs() <= 2e-7 * x.abs().max(1.0),
            "gelu({x}): {g} against {w}"
        );
    }
    Ok(())
}

/// Rows normalized while packed give candle's `layer_norm` then the layer (to float rounding),
/// for row counts that are not whole tiles, k past a packing block, with the activation too.
#[test]
fn normed_rows_equal_layer_norm_then_the_layer() -> Result<()> {
    let dev = candle_core::Device::Cpu;
    for (m, n, k) in [(1, 40, 70), (257, 64, 200)] {
        let w = Tensor::from_vec(values(n * k, 14), (n, k), &dev)?;
        let b = Tensor::from_vec(values(n, 15), n, &dev)?;
        let x = ((Tensor::from_vec(values(m * k, 16), (m, k), &dev)? * 3.0)? + 0.5)?;
        let (gamma, beta) = (values(k, 17), values(k, 18));
        let dense = Dense::new(w, Some(b))?;
        let normed = candle_nn::ops::layer_norm(
            &x,
            &Tensor::from_slice(&gamma, k, &dev)?,
            &Tensor::from_slice(&beta, k, &dev)?,
            1e-5,
        )?;
        let norm = HostNorm {
            weight: &gamma,
            bias: &beta,
            eps: 1e-5,
        };
        for epilogue in [
            Epilogue::None,
            Epilogue::QuickGelu,
            Epilogue::GeluTanh,
            Epilogue::GeluErf,
        ] {
            let want = dense.forward_with(&normed, epilogue)?;
            let Some(got) = dense.forward_normed(&x, norm, epilogue)? else {
                assert_eq!(detect(), Simd::None, "a packed layer takes the norm");
                continue;
            };
            let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(
                diff < 1e-4,
                "m={m} n={n} k={k} {epilogue:?}: differs by {diff}"
            );
        }
        let short = HostNorm {
            weight: &gamma[1..],
            ..norm
        };
        if detect() != Simd::None {
            assert!(dense.forward_normed(&x, short, Epilogue::None).is_err());
        }
    }
    Ok(())
}

#[test]
fn wrong_input_width_is_an_error() -> Result<()> {
    let dev = candle_core::Device::Cpu;
    let dense = Dense::new(Tensor::zeros((4, 6), DType::F32, &dev)?, None)?;
    let x = Tensor::zeros((2, 5), DType::F32, &dev)?;
    assert!(dense.forward(&x).is_err());
    Ok(())
}

/// The fused MLP against fc1 then fc2 one by one (norm, quick-GELU, residual x), bit for bit, twice:
/// the second call reuses the first's buffers (stale contents included).
pub(super) fn check_mlp_bits(
    fc1: &PackedWeight,
    fc2: &PackedWeight,
    x: &[f32],
    m: usize,
    seed: u64,
    what: &str,
) {
    let k = fc1.k;
    let (weight, bias) = (values(k, seed), values(k, seed + 1));
    let norm = HostNorm {
        weight: &weight,
        bias: &bias,
        eps: 1e-5,
    };
    let h = fc1.matmul_vec(x, m, Some(norm), None, Epilogue::QuickGelu);
    let want = fc2.matmul_vec(&h, m, None, Some(x), Epilogue::None);
    for _ in 0..2 {
        let got = mlp(fc1, fc2, x, m, Some(norm), Epilogue::QuickGelu, x);
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{what}: [{i}] = {g}, want {w}");
        }
    }
}

#[test]
#[cfg_attr(
    not(cpu_avx2),
    ignore = "no AVX2+FMA on this CPU: the packed kernels do not run"
)]
fn fused_mlp_equals_the_layers_one_by_one() {
    // Rows in one, several and uneven row blocks, an inner width cut inside a panel, k across k
    // blocks; the same arithmetic in the same order, so the same bits.
    for simd in levels() {
        for &(m, k, inner) in &[(1, 8, 32), (257, 64, 200), (600, 72, 520), (30, 300, 96)] {
            let x = values(m * k, 21);
            let fc1 = PackedWeight::with_simd(
                simd,
                &values(inner * k, 22),
                inner,
                k,
                Some(&values(inner, 23)),
            )
            .expect("packable");
            let fc2 = PackedWeight::with_simd(
                simd,
                &values(k * inner, 24),
                k,
                inner,
                Some(&values(k, 25)),
            )
            .expect("packable");
            check_mlp_bits(
                &fc1,
                &fc2,
                &x,
                m,
                26,
                &format!("{simd:?} m={m} k={k} inner={inner}"),
            );
        }
    }
}

/// The layers as [`PackedWeight::new`] packs them on this CPU, which has AMX (the tests that call
/// this are ignored elsewhere: `cpu_amx` from build.rs).
fn amx_layer(w: &[f32], n: usize, k: usize, b: Option<&[f32]>) -> PackedWeight {
    assert!(
        amx::enabled(),
        "build.rs found AMX on this CPU but imgvec cannot use it (the OS refused the tile state, or IMGVEC_SIMD is set now)"
    );
    PackedWeight::new(w, n, k, b).expect("packable")
}

#[test]
#[cfg_attr(
    not(cpu_amx),
    ignore = "no AMX on this CPU (or IMGVEC_SIMD was set when the tests were built)"
)]
fn amx_matches_reference_at_every_edge() {
    // Rows: under a group, whole groups, an odd group, a partial group, one row block and several
    // (1,300: blocks of 448, 448 and 404, the last with a whole group and 4 rows over); k: under a tile, cut inside one, across k blocks;
    // n: 32 and several column pairs, over the threads' tasks.
    for &(m, n, k) in &[
        (1, 32, 1),
        (15, 32, 31),
        (16, 64, 32),
        (17, 32, 33),
        (31, 96, 100),
        (48, 64, 133),
        (257, 320, 300),
        (1300, 32, 64),
        (1040, 64, 40),
    ] {
        for (bias, residual) in [(false, false), (true, true)] {
            let x = values(m * k, 31 + m as u64);
            let w = values(n * k, 32 + n as u64);
            let b = bias.then(|| values(n, 33));
            let r = residual.then(|| values(m * n, 34));
            let p = amx_layer(&w, n, k, b.as_deref());
            assert!(p.amx.is_some(), "n = {n} is a multiple of 32: AMX");
            let mut y = vec![f32::NAN; m * n];
            p.matmul(&x, m, r.as_deref(), &mut y);
            let want = reference(&x, &w, b.as_deref(), r.as_deref(), m, n, k);
            for (i, (got, want)) in y.iter().zip(&want).enumerate() {
                let (row, col) = (i / n, i % n);
                let size: f64 = (0..k)
                    .map(|p| (x[row * k + p] as f64 * w[col * k + p] as f64).abs())
                    .sum();
                // hi·hi + hi·lo + lo·hi of bf16 splits: each product within ~2⁻¹⁶ of exact
                // (pure bf16, or a product left out, is ~2⁻⁸ off and fails this).
                let tol = 3e-5 * size + 1e-6;
                assert!(
                    (*got as f64 - want).abs() <= tol,
                    "AMX m={m} n={n} k={k} bias={bias}: y[{i}] = {got}, want {want} (±{tol:e})"
                );
            }
        }
    }
}

#[test]
#[cfg_attr(
    not(cpu_amx),
    ignore = "no AMX on this CPU (or IMGVEC_SIMD was set when the tests were built)"
)]
fn amx_leaves_widths_not_a_multiple_of_32_to_the_f32_kernels() {
    let (m, n, k) = (20, 48, 40);
    let (x, w) = (values(m * k, 41), values(n * k, 42));
    let p = amx_layer(&w, n, k, None);
    assert!(p.amx.is_none());
    let mut y = vec![f32::NAN; m * n];
    p.matmul(&x, m, None, &mut y);
    let want = reference(&x, &w, None, None, m, n, k);
    for (got, want) in y.iter().zip(&want) {
        assert!((*got as f64 - want).abs() <= 1e-6 * (k as f64 + 2.0));
    }
}

#[test]
#[cfg_attr(
    not(cpu_amx),
    ignore = "no AMX on this CPU (or IMGVEC_SIMD was set when the tests were built)"
)]
fn amx_fused_mlp_equals_the_layers_one_by_one() {
    // fc1's blocks written as fc2's tiles hold the bits pack_rows makes of fc1's output; also a
    // pair where only fc1 is on AMX (fc2's 40 columns are not): run one by one.
    for &(m, k, inner) in &[
        (1, 32, 64),
        (257, 64, 96),
        (600, 96, 544),
        (30, 320, 128),
        (9, 40, 64),
    ] {
        let x = values(m * k, 51);
        let fc1 = amx_layer(&values(inner * k, 52), inner, k, Some(&values(inner, 53)));
        let fc2 = amx_layer(&values(k * inner, 54), k, inner, Some(&values(k, 55)));
        assert_eq!(fc2.amx.is_some(), k % 32 == 0);
        check_mlp_bits(
            &fc1,
            &fc2,
            &x,
            m,
            56,
            &format!("AMX m={m} k={k} inner={inner}"),
        );
    }
}

/// The interleave into panel layout, on every level, against its definition: every row count up
/// to 32 (two row groups on AVX-512, four on AVX2), column counts around the 16- and 8-wide blocks,
/// panels taller than the rows given; what lies past the given rows and past the panel is left
/// untouched.
#[test]
#[cfg_attr(
    not(cpu_avx2),
    ignore = "no AVX2+FMA on this CPU: the packed kernels do not run"
)]
fn interleave_matches_its_definition() {
    for simd in levels() {
        for rows in 1..=32 {
            for cols in [1, 7, 8, 9, 15, 16, 17, 33, 64] {
                for mr in [rows, rows.max(14), 32] {
                    let ld = cols + 3;
                    let src = values(rows * ld, (rows * 100 + cols) as u64);
                    // Past the panel: a guard that must stay as it is.
                    let mut dst = vec![f32::NAN; cols * mr + 16];
                    // SAFETY: src holds rows × ld floats, dst cols × mr, rows ≤ mr.
                    unsafe {
                        pack::interleave(simd, src.as_ptr(), ld, rows, cols, mr, dst.as_mut_ptr())
                    };
                    for c in 0..cols {
                        for r in 0..mr {
                            let got = dst[c * mr + r];
                            if r < rows {
                                assert_eq!(
                                    got,
                                    src[r * ld + c],
                                    "{simd:?} {rows}×{cols} mr {mr}: ({r}, {c})"
                                );
                            } else {
                                assert!(
                                    got.is_nan(),
                                    "{simd:?} {rows}×{cols} mr {mr}: row {r} written"
                                );
                            }
                        }
                    }
                    assert!(
                        dst[cols * mr..].iter().all(|v| v.is_nan()),
                        "{simd:?} {rows}×{cols} mr {mr}: written past the panel"
                    );
                }
            }
        }
    }
}
