//! The bf16 and int8 layers (`bf16.rs`, `int8.rs`): each kernel bit for bit against the scalar
//! reference of its arithmetic and near the exact product, at sizes that hit every edge; rows
//! normalized while packed equal rows normalized first; the MLP equals its layers one by one; the
//! bf16 rounding equals the scalar rounding. int8 is checked on all its tiles: AVX-512's, the
//! 256-bit one of AVX2-only CPUs with AVX-VNNI (or its EVEX twin, the same body), and the 256-bit
//! one of AVX2 CPUs without VNNI (on every AVX2 CPU). Each test is ignored (skipped) where the CPU
//! lacks the instruction (`cpu_avx2`, `cpu_avx512_bf16`, `cpu_avx512_vnni`, `cpu_int8_avx2` from
//! build.rs).

use super::tests::{check_mlp_bits, reference, values};
use super::*;

/// The layers a test checks: bf16 or int8 as this CPU runs them, or int8 on the 256-bit tiles
/// (AVX2's shape).
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// bf16 on AVX512_BF16 (`bf16.rs`), AMX or not.
    Bf16,
    /// bf16 as `--precision bf16` runs it where AMX is enabled: on the tiles (n a multiple of 32).
    Bf16Amx,
    /// int8 on VNNI (AVX-512's tiles), AMX or not.
    Int8,
    /// int8 on the 256-bit tiles with `vpdpbusd` (AVX-VNNI, or its EVEX twin).
    Int8Avx2,
    /// int8 on the 256-bit tiles with AVX2's own byte products (CPUs without VNNI).
    Int8Madd,
    /// int8 as `--precision int8` runs it where AMX-INT8 is enabled: on the tiles.
    Int8Amx,
}

/// A layer of `precision` as this CPU packs it (the tests that call this are ignored on CPUs
/// without the instruction).
fn layer(precision: Kind, w: &[f32], n: usize, k: usize, b: Option<&[f32]>) -> PackedWeight {
    let packed = match precision {
        Kind::Bf16 => PackedWeight::bf16_avx512(w, n, k, b),
        Kind::Bf16Amx => PackedWeight::new_bf16(w, n, k, b).inspect(|p| {
            assert_eq!(
                p.amx.is_some(),
                n.is_multiple_of(32),
                "n = {n}: AMX where a multiple of 32"
            );
        }),
        Kind::Int8 => PackedWeight::int8_at(Simd::Avx512, w, n, k, b),
        Kind::Int8Amx => PackedWeight::new_int8(w, n, k, b).inspect(|p| {
            assert_eq!(
                p.amx.is_some(),
                n.is_multiple_of(32),
                "n = {n}: AMX where a multiple of 32"
            );
        }),
        Kind::Int8Avx2 => PackedWeight::int8_with(Simd::Avx2, int8::Dot::Vnni, w, n, k, b),
        Kind::Int8Madd => PackedWeight::int8_with(Simd::Avx2, int8::Dot::Madd, w, n, k, b),
    };
    packed.unwrap_or_else(|| {
        panic!("build.rs found the instructions for {precision:?} on this CPU but imgvec does not use them (IMGVEC_SIMD set now?)")
    })
}

/// The sizes the kernels are checked at: odd k (a pair's or a quad's tail zero), k across k blocks
/// (256 slots), rows past a tile and a row block, columns cut inside a panel.
const EDGES: [(usize, usize, usize); 8] = [
    (1, 1, 1),
    (1, 32, 64),
    (5, 17, 3),
    (7, 33, 255),
    (13, 100, 513),
    (15, 64, 1030),
    (257, 64, 600),
    (600, 40, 300),
];

/// For each size and bias/residual choice: the layer in `precision` equals `scalar` (the reference
/// of its arithmetic, given x, w, bias, residual, sizes and the k block in slots) bit for bit, and
/// lies within `tol(k)` of the exact product. `per_slot` k values share a 32-bit slot; `seed` picks
/// the values; `zero_row` zeroes the first row of x.
#[allow(clippy::type_complexity)]
fn check_bits(
    precision: Kind,
    edges: &[(usize, usize, usize)],
    (seed, zero_row, per_slot): (u64, bool, usize),
    scalar: impl Fn(
        &[f32],
        &[f32],
        (Option<&[f32]>, Option<&[f32]>),
        (usize, usize, usize),
        usize,
    ) -> Vec<f32>,
    tol: impl Fn(usize) -> f64,
) {
    for &(m, n, k) in edges {
        for (bias, residual) in [(false, false), (true, true), (false, true)] {
            let mut x = values(m * k, seed + m as u64);
            if zero_row {
                x[..k].fill(0.0);
            }
            let w = values(n * k, seed + 1 + n as u64);
            let b = bias.then(|| values(n, seed + 2));
            let r = residual.then(|| values(m * n, seed + 3));
            let p = layer(precision, &w, n, k, b.as_deref());
            let mut y = vec![f32::NAN; m * n];
            p.matmul(&x, m, r.as_deref(), &mut y);
            let slots = k.div_ceil(per_slot);
            let kc = slots.div_ceil(slots.div_ceil(256));
            let want = scalar(&x, &w, (b.as_deref(), r.as_deref()), (m, n, k), kc);
            for (i, (g, w)) in y.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{precision:?} m={m} n={n} k={k} bias={bias} residual={residual}: y[{i}] = {g}, want {w}"
                );
            }
            let exact = reference(&x, &w, b.as_deref(), r.as_deref(), m, n, k);
            for (g, e) in y.iter().zip(&exact) {
                assert!((*g as f64 - e).abs() <= tol(k));
            }
        }
    }
}

/// LayerNorm while packing equals LayerNorm on the host, then the layer, bit for bit; and the MLP
/// equals its layers one by one (`check_mlp_bits`), for each (m, k, inner); values from `seed`.
fn check_normed_and_mlp(precision: Kind, sizes: &[(usize, usize, usize)], seed: u64) {
    for &(m, k, inner) in sizes {
        let x = values(m * k, seed);
        let (weight, bias) = (values(k, seed + 1), values(k, seed + 2));
        let norm = HostNorm {
            weight: &weight,
            bias: &bias,
            eps: 1e-5,
        };
        let fc1 = layer(
            precision,
            &values(inner * k, seed + 3),
            inner,
            k,
            Some(&values(inner, seed + 4)),
        );
        let normed: Vec<f32> = x
            .chunks(k)
            .flat_map(|row| {
                let mut out = vec![0f32; k];
                norm.apply(norm.stats(row), row, 0, &mut out);
                out
            })
            .collect();
        let a = fc1.matmul_vec(&x, m, Some(norm), None, Epilogue::None);
        let b = fc1.matmul_vec(&normed, m, None, None, Epilogue::None);
        assert!(a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()));
        // Quick-GELU on these layers is the fused multiply-add one, applied to the finished rows.
        let mut want = b;
        crate::clip::kernels::quick_gelu_fma_in_place(&mut want);
        let got = fc1.matmul_vec(&normed, m, None, None, Epilogue::QuickGelu);
        assert!(got
            .iter()
            .zip(&want)
            .all(|(g, w)| g.to_bits() == w.to_bits()));
        let fc2 = layer(
            precision,
            &values(k * inner, seed + 5),
            k,
            inner,
            Some(&values(k, seed + 6)),
        );
        check_mlp_bits(
            &fc1,
            &fc2,
            &x,
            m,
            seed + 7,
            &format!("{precision:?} m={m} k={k} inner={inner}"),
        );
    }
}

#[test]
#[cfg_attr(
    not(cpu_avx512_bf16),
    ignore = "no AVX512_BF16 on this CPU (or IMGVEC_SIMD lowered the level when the tests were built)"
)]
fn bf16_pairs_round_to_nearest_even_as_the_scalar_rounding() {
    // Ties (exactly half a bf16 step) both ways, carries into the exponent, the largest finite
    // values, signs, zeros, and random values; lengths under, at and past a vector's 32 values.
    let mut v = vec![
        1.0 + 1.0 / 256.0,
        1.0 + 3.0 / 256.0,
        -(1.0 + 1.0 / 256.0),
        1.999_999_9,
        f32::MAX,
        -f32::MAX,
        0.0,
        -0.0,
        1e-30,
        65504.0,
    ];
    v.extend(values(200, 31).iter().map(|x| x * 1e3));
    for len in [1, 2, 31, 32, 33, 64, 65, v.len()] {
        let src = &v[..len];
        let mut got = vec![0f32; len.div_ceil(2)];
        bf16::to_pairs(src, &mut got);
        for (p, g) in got.iter().enumerate() {
            let lo = bf16::round(src[2 * p]);
            let hi = src.get(2 * p + 1).map_or(0, |&x| bf16::round(x));
            assert_eq!(
                g.to_bits(),
                lo as u32 | (hi as u32) << 16,
                "len {len}, pair {p}: {:?}",
                &src[2 * p..(2 * p + 2).min(len)]
            );
        }
    }
    assert_eq!(
        bf16::round(1.0 + 1.0 / 256.0),
        0x3f80,
        "a tie rounds to even (down)"
    );
    assert_eq!(
        bf16::round(1.0 + 3.0 / 256.0),
        0x3f82,
        "a tie rounds to even (up)"
    );
}

#[test]
#[cfg_attr(
    not(cpu_avx512_bf16),
    ignore = "no AVX512_BF16 on this CPU (or IMGVEC_SIMD lowered the level when the tests were built)"
)]
fn bf16_layer_equals_its_scalar_reference_bit_for_bit() {
    let nr = Simd::Avx512.tile().1;
    check_bits(
        Kind::Bf16,
        &EDGES,
        (41, false, 2),
        |x, w, br, sizes, kc| bf16::reference(x, w, br, sizes, (kc, nr)),
        // bf16 keeps 8 bits, so each term is within 2⁻⁸ relative.
        |k| 1e-2 * (k as f64).sqrt() + 1e-6,
    );
}

#[test]
#[cfg_attr(
    not(cpu_avx512_bf16),
    ignore = "no AVX512_BF16 on this CPU (or IMGVEC_SIMD lowered the level when the tests were built)"
)]
fn bf16_normed_rows_and_fused_mlp_equal_the_steps_one_by_one() {
    // fc1's tiles rounded straight into fc2's packed pairs (an odd inner width: one by one).
    check_normed_and_mlp(
        Kind::Bf16,
        &[(1, 8, 32), (257, 64, 200), (30, 300, 96), (20, 64, 33)],
        51,
    );
}

#[test]
#[cfg_attr(
    not(cpu_avx512_vnni),
    ignore = "no AVX-512 VNNI on this CPU (or IMGVEC_SIMD lowered the level when the tests were built)"
)]
fn int8_layer_equals_its_scalar_reference_bit_for_bit() {
    check_int8(Kind::Int8);
}

#[test]
#[cfg_attr(
    not(cpu_int8_avx2),
    ignore = "neither AVX-VNNI nor AVX-512 VNNI and VL on this CPU (or IMGVEC_SIMD=none when the tests were built)"
)]
fn int8_256_bit_tiles_equal_the_scalar_reference_bit_for_bit() {
    check_int8(Kind::Int8Avx2);
    check_normed_and_mlp(
        Kind::Int8Avx2,
        &[(1, 8, 32), (257, 64, 200), (30, 300, 96)],
        73,
    );
}

/// The AVX2 tiles without VNNI (what Zen 3, Skylake and older run `--precision int8` on) to the
/// same bits as the reference of their arithmetic (7-bit weights), on random values and on rows
/// all ±1 (activation bytes 127 + 128 = 255 or 1, weights ±63), where pairs of products reach
/// ±2 · 255 · 63, near the most a 16-bit `vpmaddubsw` sum holds unsaturated (8-bit weights would
/// overflow it).
#[test]
#[cfg_attr(
    not(cpu_avx2),
    ignore = "no AVX2 and FMA on this CPU (or IMGVEC_SIMD=none when the tests were built)"
)]
fn int8_avx2_tiles_without_vnni_equal_the_scalar_reference_bit_for_bit() {
    check_int8(Kind::Int8Madd);
    check_normed_and_mlp(
        Kind::Int8Madd,
        &[(1, 8, 32), (257, 64, 200), (30, 300, 96)],
        79,
    );
    for &(m, n, k) in &[(7, 33, 255), (13, 16, 1030)] {
        // Signs from a pattern that pairs like and unlike signs, all of magnitude 1 (q = ±127).
        let sign = |i: usize| if (i * 7 + i / 3) % 5 < 2 { -1.0 } else { 1.0 };
        let x: Vec<f32> = (0..m * k).map(sign).collect();
        let w: Vec<f32> = (0..n * k).map(|i| sign(i + 1)).collect();
        let same: Vec<f32> = (0..n * k).map(|i| x[i % k]).collect();
        for w in [&w, &same] {
            let p = layer(Kind::Int8Madd, w, n, k, None);
            let mut y = vec![f32::NAN; m * n];
            p.matmul(&x, m, None, &mut y);
            let kc = k.div_ceil(4).div_ceil(k.div_ceil(4).div_ceil(256));
            let want = madd_reference(&x, w, (None, None), (m, n, k), kc);
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&want), "m={m} n={n} k={k}");
        }
    }
}

/// [`int8::reference`] with the weights in [`int8::MADD_LEVELS`] levels (`int8::Dot::Madd`).
fn madd_reference(
    x: &[f32],
    w: &[f32],
    br: (Option<&[f32]>, Option<&[f32]>),
    mnk: (usize, usize, usize),
    kc: usize,
) -> Vec<f32> {
    int8::reference_levels(x, w, br, mnk, kc, int8::MADD_LEVELS)
}

/// The int8 layers of `kind` against [`int8::reference`] (or [`madd_reference`]) at the edges,
/// and a zero row.
fn check_int8(kind: Kind) {
    // And a zero row (scale 0).
    let edges = [
        (1, 1, 1),
        (1, 32, 64),
        (5, 17, 3),
        (7, 33, 255),
        (13, 100, 1030),
        (15, 64, 2050),
        (257, 64, 600),
        (600, 40, 300),
    ];
    check_bits(
        kind,
        &edges,
        (61, true, 4),
        if matches!(kind, Kind::Int8Madd) {
            madd_reference
        } else {
            int8::reference
        },
        // Each operand within half a step of 1/127 of its row's largest value.
        |k| 2e-2 * (k as f64).sqrt() + 1e-6,
    );
}

#[test]
#[cfg_attr(
    not(cpu_avx512_vnni),
    ignore = "no AVX-512 VNNI on this CPU (or IMGVEC_SIMD lowered the level when the tests were built)"
)]
fn int8_normed_rows_and_mlp_equal_the_steps_one_by_one() {
    check_normed_and_mlp(Kind::Int8, &[(1, 8, 32), (257, 64, 200), (30, 300, 96)], 71);
}

/// Where AMX is the f32 layers' kernel, `--precision bf16` runs on its tiles (one product where
/// f32 takes three). Checked against the exact (f64) sum of the bf16-rounded products, plus bias
/// and residual: within f32's rounding of that sum (k + 2 roundings of 2⁻²⁴ of the sum of the
/// terms' magnitudes), so the operands are rounded to bf16 (unrounded or split operands would be
/// off by ~2⁻⁹) and every term is in its place. Not bit for bit: how `tdpbf16ps` orders and rounds
/// its adds inside a tile product is not what Intel's pseudo-code says (one rounding per product,
/// k order, matched 74% of the outputs here; one per 32-k tile, 62%). At the sizes that cross k
/// tiles (32), k blocks (128), row groups (16), row pairs and row blocks (640).
#[test]
#[cfg_attr(
    not(cpu_amx),
    ignore = "no AMX on this CPU (or IMGVEC_SIMD set when the tests were built)"
)]
fn bf16_on_amx_is_the_bf16_product_to_f32_rounding() {
    let q = |v: f32| f64::from(f32::from_bits((bf16::round(v) as u32) << 16));
    for &(m, n, k) in &[
        (1, 32, 1),
        (5, 32, 3),
        (17, 64, 65),
        (33, 96, 513),
        (257, 64, 600),
        (700, 32, 100),
    ] {
        for (bias, residual) in [(false, false), (true, true), (false, true)] {
            let x = values(m * k, 43 + m as u64);
            let w = values(n * k, 44 + n as u64);
            let b = bias.then(|| values(n, 45));
            let r = residual.then(|| values(m * n, 46));
            let p = layer(Kind::Bf16Amx, &w, n, k, b.as_deref());
            let mut y = vec![f32::NAN; m * n];
            p.matmul(&x, m, r.as_deref(), &mut y);
            for i in 0..m {
                for j in 0..n {
                    let terms = (0..k).map(|c| q(x[i * k + c]) * q(w[j * k + c]));
                    let extra = [
                        b.as_ref().map_or(0.0, |b| f64::from(b[j])),
                        r.as_ref().map_or(0.0, |r| f64::from(r[i * n + j])),
                    ];
                    let exact: f64 = terms.clone().sum::<f64>() + extra.iter().sum::<f64>();
                    let size: f64 = terms.map(f64::abs).sum::<f64>()
                        + extra.iter().map(|e| e.abs()).sum::<f64>();
                    let got = f64::from(y[i * n + j]);
                    assert!(
                        (got - exact).abs() <= (k + 2) as f64 * size * 2f64.powi(-24) + 1e-30,
                        "m={m} n={n} k={k} bias={bias} residual={residual}: y[{i}][{j}] = {got}, want {exact}"
                    );
                }
            }
        }
    }
}

/// On AMX, LayerNorm while packing and fc1's tiles rounded straight into fc2's bf16 tiles equal the
/// steps one by one.
#[test]
#[cfg_attr(
    not(cpu_amx),
    ignore = "no AMX on this CPU (or IMGVEC_SIMD set when the tests were built)"
)]
fn bf16_on_amx_normed_rows_and_fused_mlp_equal_the_steps_one_by_one() {
    check_normed_and_mlp(
        Kind::Bf16Amx,
        &[(5, 64, 128), (40, 96, 256), (257, 64, 64)],
        47,
    );
}

/// The arithmetic of `--precision int8` on AMX, one output at a time: x per row and W per column
/// quantized as `int8.rs` does, the byte products summed exactly (i32) over all of k, then
/// `(sum · (sx · sw) + bias) + residual` in f32.
fn amx_int8_reference(
    x: &[f32],
    w: &[f32],
    (b, r): (Option<&[f32]>, Option<&[f32]>),
    (m, n, k): (usize, usize, usize),
    _kc: usize,
) -> Vec<f32> {
    let quant = |rows: &[f32], count: usize| -> (Vec<i32>, Vec<f32>) {
        let s: Vec<f32> = rows.chunks(k).take(count).map(int8::scale).collect();
        let q = rows
            .chunks(k)
            .zip(&s)
            .flat_map(|(row, &s)| {
                let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
                row.iter().map(move |&v| i32::from(int8::quantize(v, inv)))
            })
            .collect();
        (q, s)
    };
    let ((qx, sx), (qw, sw)) = (quant(x, m), quant(w, n));
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let sum: i32 = (0..k).map(|c| qx[i * k + c] * qw[j * k + c]).sum();
            let v = sum as f32 * (sx[i] * sw[j]) + b.map_or(0.0, |b| b[j]);
            y[i * n + j] = v + r.map_or(0.0, |r| r[i * n + j]);
        }
    }
    y
}

/// Where AMX-INT8 is there, `--precision int8` runs on its tiles (`tdpbssd`), bit for bit as the
/// scalar reference of its arithmetic (integer sums are exact, whatever order the tile adds in),
/// at sizes that cross k tiles (64), k blocks (256), row groups, row pairs and row blocks, a zero
/// row included; widths not a multiple of 32 go to the VNNI kernels.
#[test]
#[cfg_attr(
    not(cpu_amx),
    ignore = "no AMX on this CPU (or IMGVEC_SIMD set when the tests were built)"
)]
fn int8_on_amx_equals_its_scalar_reference_bit_for_bit() {
    assert!(
        amx::int8_enabled(),
        "AMX-TILE and AMX-BF16 without AMX-INT8?"
    );
    check_bits(
        Kind::Int8Amx,
        &[
            (1, 32, 1),
            (5, 32, 3),
            (17, 64, 65),
            (33, 96, 513),
            (257, 64, 600),
            (700, 32, 100),
        ],
        (63, true, 4),
        amx_int8_reference,
        |k| 2e-2 * (k as f64).sqrt() + 1e-6,
    );
}

/// On AMX-INT8, rows normalized while packed equal rows normalized first, and the MLP (its
/// layers one by one: a row's scale needs the whole row) equals the steps.
#[test]
#[cfg_attr(
    not(cpu_amx),
    ignore = "no AMX on this CPU (or IMGVEC_SIMD set when the tests were built)"
)]
fn int8_on_amx_normed_rows_and_mlp_equal_the_steps_one_by_one() {
    check_normed_and_mlp(
        Kind::Int8Amx,
        &[(5, 64, 128), (40, 96, 256), (257, 64, 64)],
        73,
    );
}
