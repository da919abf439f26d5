//! Attention against candle's ops (f32), its bf16 arithmetic done plainly, and AMX's tiles against
//! the bf16 path; one query computed alone against its row of the whole.

use super::*;
use candle_core::Device;

/// Against candle's own ops (per head: matmul, mask, softmax, matmul) on every SIMD level this
/// CPU has, for image and text shapes, heads narrower than a panel included.
#[test]
fn matches_candle_ops() -> Result<()> {
    let levels = match super::super::detect() {
        Simd::Avx512 => vec![Simd::Avx512, Simd::Avx2],
        Simd::Avx2 => vec![Simd::Avx2],
        Simd::None => vec![],
    };
    let dev = Device::Cpu;
    for simd in levels {
        for &(batch, n, heads, hd, causal) in &[
            (1, 257, 4, 64, false),
            (2, 50, 3, 24, false),
            (2, 77, 2, 64, true),
            (1, 5, 1, 8, true),
            (3, 40, 2, 16, true),
        ] {
            let d = heads * hd;
            let qkv = Tensor::randn(0f32, 1., (batch, n, 3 * d), &dev)?;
            let floats = qkv.flatten_all()?.to_vec1::<f32>()?;
            let got = attention((simd, Mode::F32), &floats, batch, n, d, heads, causal, None);
            // One query per sequence (the first, the last, one inside a later panel): the
            // same numbers as those rows of the whole result, to the bit.
            let picks: Vec<usize> = (0..batch).map(|i| [0, n - 1, n / 2][i % 3]).collect();
            let one = attention(
                (simd, Mode::F32),
                &floats,
                batch,
                n,
                d,
                heads,
                causal,
                Some(&picks),
            );
            for (i, &t) in picks.iter().enumerate() {
                let row = &got[(i * n + t) * d..][..d];
                assert_eq!(&one[i * d..][..d], row, "{simd:?} n={n} query {t}");
            }
            let split = qkv
                .reshape((batch, n, 3, heads, hd))?
                .permute((2, 0, 3, 1, 4))?;
            let part = |i: usize| -> Result<Tensor> {
                split.get(i)?.contiguous()?.reshape((batch * heads, n, hd))
            };
            let (q, k, v) = (part(0)?, part(1)?, part(2)?);
            let mut scores = q.matmul(&k.t()?)?;
            if causal {
                let mask: Vec<f32> = (0..n)
                    .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
                    .collect();
                scores = scores.broadcast_add(&Tensor::from_vec(mask, (n, n), &dev)?)?;
            }
            let want = candle_nn::ops::softmax_last_dim(&scores)?
                .matmul(&v)?
                .reshape((batch, heads, n, hd))?
                .transpose(1, 2)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{simd:?} batch={batch} n={n} heads={heads} hd={hd} causal={causal}: [{i}] = {g}, want {w}"
                );
            }
        }
    }
    Ok(())
}

/// In bf16, to the bit against the same arithmetic done plainly: both products by
/// `bf16::reference` (k rounded to pairs, sums in f32 in the tiles' order), the softmax by the
/// same column kernel. Image and text shapes, an odd number of tokens (the last key's pair
/// half zero), one query only.
#[test]
#[cfg_attr(
    not(cpu_avx512_bf16),
    ignore = "no AVX512_BF16 on this CPU (or IMGVEC_SIMD lowered the level when the tests were built)"
)]
fn bf16_matches_its_reference() -> Result<()> {
    assert!(
        super::super::bf16::available(),
        "build.rs found AVX512_BF16, imgvec does not use it"
    );
    let simd = Simd::Avx512;
    let (_, nr) = simd.tile();
    for &(batch, n, heads, hd, causal) in &[
        (1, 257, 2, 64, false),
        (2, 77, 2, 64, true),
        (1, 40, 3, 16, false),
    ] {
        let d = heads * hd;
        let qkv = Tensor::randn(0f32, 1., (batch, n, 3 * d), &Device::Cpu)?;
        let floats = qkv.flatten_all()?.to_vec1::<f32>()?;
        let got = whole_and_one((simd, Mode::Bf16), &floats, (batch, n, heads, causal));
        for image in 0..batch {
            for head in 0..heads {
                let part = |which: usize| -> Vec<f32> {
                    (0..n)
                        .flat_map(|t| {
                            let at = (image * n + t) * 3 * d + which * d + head * hd;
                            floats[at..at + hd].to_vec()
                        })
                        .collect()
                };
                let (q, k, v) = (part(0), part(1), part(2));
                let one_block = |depth: usize| super::super::tiles::k_block(depth);
                // scores[key][query] = k · q, then per query the softmax over the keys.
                let scores = super::super::bf16::reference(
                    &k,
                    &q,
                    (None, None),
                    (n, n, hd),
                    (one_block(hd.div_ceil(2)), nr),
                );
                let mut probs = vec![0f32; n * n];
                for j in (0..n).step_by(nr) {
                    let mut panel = vec![0f32; n * nr];
                    for key in 0..n {
                        for c in 0..nr.min(n - j) {
                            let masked = causal && key > j + c;
                            panel[key * nr + c] = if masked {
                                f32::NEG_INFINITY
                            } else {
                                scores[key * n + j + c]
                            };
                        }
                    }
                    crate::clip::kernels::softmax_columns(&mut panel, nr);
                    for key in 0..n {
                        for c in 0..nr.min(n - j) {
                            probs[(j + c) * n + key] = panel[key * nr + c];
                        }
                    }
                }
                let vt: Vec<f32> = (0..hd)
                    .flat_map(|c| (0..n).map(|t| v[t * hd + c]).collect::<Vec<_>>())
                    .collect();
                let want = super::super::bf16::reference(
                    &probs,
                    &vt,
                    (None, None),
                    (n, hd, n),
                    (one_block(n.div_ceil(2)), nr),
                );
                for t in 0..n {
                    let row = &got[(image * n + t) * d + head * hd..][..hd];
                    assert_eq!(
                        row,
                        &want[t * hd..][..hd],
                        "n={n} image {image} head {head} query {t}"
                    );
                }
            }
        }
    }
    Ok(())
}

/// On AMX's tiles: the same arithmetic as the bf16 microkernel path (operands rounded alike, f32
/// sums) in another order of adds (the products in the tile unit's, the softmax's sum in sixteen
/// lanes a row rather than one a column). So a probability's f32 value now and then differs in
/// its last bit, and its bf16 rounding then falls the other way: one bf16 ulp, at most 2⁻⁷ of the
/// probability. Each output is a probability-weighted mean of its head dim's values, so it may
/// move by up to 2⁻⁷ of the largest of those values (seen: 0.009), and no more. The mean
/// difference is ~1e-7 but heavy-tailed, since one flip near a peaked probability moves a whole
/// row: over 120 runs of random inputs the largest was 3.6e-6. A misplaced operand, a missing or
/// an extra key would put it near 0.1. One query alone equals its row of the whole, to the bit.
/// Image and text shapes, an odd token count, a head of 32 dims.
#[test]
#[cfg_attr(
    not(cpu_amx),
    ignore = "no AMX on this CPU (or IMGVEC_SIMD set when the tests were built)"
)]
fn amx_matches_the_bf16_path() -> Result<()> {
    assert!(
        super::super::amx::enabled(),
        "build.rs found AMX, imgvec does not use it"
    );
    let simd = Simd::Avx512;
    let mut worst = 0f32;
    for &(batch, n, heads, hd, causal) in &[
        (2, 257, 2, 64, false),
        (2, 77, 2, 64, true),
        (1, 40, 3, 32, true),
        (1, 5, 1, 64, false),
    ] {
        let d = heads * hd;
        let qkv = Tensor::randn(0f32, 1., (batch, n, 3 * d), &Device::Cpu)?;
        let floats = qkv.flatten_all()?.to_vec1::<f32>()?;
        let got = whole_and_one((simd, Mode::Amx), &floats, (batch, n, heads, causal));
        let want = attention(
            (simd, Mode::Bf16),
            &floats,
            batch,
            n,
            d,
            heads,
            causal,
            None,
        );
        // The largest value (in magnitude) each image's head dim has: what one flipped
        // probability can move its outputs by, at most 2⁻⁷ of it (f32's roundings besides).
        let mut largest = vec![0f32; batch * d];
        for (t, row) in floats.chunks_exact(3 * d).enumerate() {
            let image = &mut largest[t / n * d..][..d];
            for (m, v) in image.iter_mut().zip(&row[2 * d..]) {
                *m = m.max(v.abs());
            }
        }
        let mut total = 0f64;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            worst = worst.max((g - w).abs());
            total += f64::from((g - w).abs());
            let bound = largest[i / (n * d) * d + i % d] / 128.0 + 1e-5;
            assert!(
                (g - w).abs() <= bound,
                "n={n} heads={heads} hd={hd} causal={causal}: [{i}] = {g}, want {w} (bound {bound})"
            );
        }
        let mean = total / got.len() as f64;
        assert!(
            mean <= 2e-5,
            "n={n} heads={heads} hd={hd} causal={causal}: mean {mean}"
        );
    }
    eprintln!("AMX attention: largest difference from the bf16 path {worst:e}");
    Ok(())
}

/// The whole attention in `mode`, checked against one query per image (the last, the middle)
/// computed alone: the same numbers, to the bit.
fn whole_and_one(
    mode: (Simd, Mode),
    floats: &[f32],
    (batch, n, heads, causal): (usize, usize, usize, bool),
) -> Vec<f32> {
    let d = floats.len() / (batch * n * 3);
    let got = attention(mode, floats, batch, n, d, heads, causal, None);
    let picks: Vec<usize> = (0..batch).map(|i| [n - 1, n / 2][i % 2]).collect();
    let one = attention(mode, floats, batch, n, d, heads, causal, Some(&picks));
    for (i, &t) in picks.iter().enumerate() {
        assert_eq!(
            &one[i * d..][..d],
            &got[(i * n + t) * d..][..d],
            "{mode:?}: query {t}"
        );
    }
    got
}
