//! The int8 tiles (`super::int8`): one `MR × NR` tile of 32-bit integer sums by `vpdpbusd`, each k
//! block's sums scaled back to f32 and added to the output at the end. The blocked loop, the
//! `Tile` operands, prefetching and the k loop are the f32 kernels' (`super::microkernel`), on
//! ⌈k / 4⌉ words of four bytes.
//!
//! `vpdpbusd` multiplies the unsigned bytes of its register operand by the signed bytes of its
//! last operand, which may be a 32-bit word broadcast from memory (`{1to16}`). So the weights are
//! the unsigned operand, offset by 128 (1..255, two vector loads a step shared by all rows), and
//! each row's four activation bytes (signed) are the broadcast operand, folded into the
//! instruction: a step is 2 loads and 2R `vpdpbusd`, no separate broadcast. The offset adds
//! `128 · Σ q_x` over the k block to each of a row's sums; the sums start at minus that (`comp`,
//! computed as the rows are packed), so each block's sum is exactly `Σ q_x · q_w`. AVX2 CPUs
//! without VNNI run the 256-bit tile with `vpmaddubsw` and `vpmaddwd` in place of `vpdpbusd`
//! (`avx2::dpbusd_madd`), the operands' roles swapped and the weights in 7 bits
//! (`int8::Dot::Madd`).

#![allow(clippy::needless_range_loop)]

#[cfg(target_arch = "x86_64")]
pub mod avx512 {
    use super::super::microkernel::{avx512::NR, k_loop, prefetch_next_rows, Init, Tile};
    use std::arch::x86_64::*;

    /// [`super::super::microkernel::avx512::tile`] over int8 quads: each of `a`'s "floats" is
    /// four signed bytes (a row's activations), each of `b`'s NR per step four unsigned ones (the
    /// weights offset by 128), summed in 32-bit integers by `vpdpbusd` from `t.quant.comp` (the
    /// rows' compensations for this k block); at the end each sum becomes `base + (sum as f32) ·
    /// (row scale · column scale)`, `base` the bias plus the residual (`Init::Start`) or C
    /// (`Init::Accumulate`).
    ///
    /// # Safety
    /// The CPU has AVX-512F and AVX-512 VNNI; the pointers in `t` are valid as [`Tile`] says for
    /// R rows, `b` 64-byte aligned; `t.quant` holds R row scales, NR column scales and R
    /// compensations.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn tile<const R: usize>(t: &Tile) {
        let q = t.quant;
        let mut acc = [[_mm512_setzero_si512(); 2]; R];
        for r in 0..R {
            // SAFETY: comp holds R integers (the contract); r < R.
            let c = _mm512_set1_epi32(unsafe { *q.comp.add(r) });
            acc[r] = [c, c];
        }
        if let Init::Accumulate = t.init {
            for r in 0..R {
                // SAFETY: row r < R of C (the contract, see [`Tile`]); prefetches never fault.
                unsafe {
                    let c = t.c.add(r * t.ldc);
                    _mm_prefetch::<_MM_HINT_T0>(c.cast());
                    _mm_prefetch::<_MM_HINT_T0>(c.add(NR - 1).cast());
                }
            }
        }
        prefetch_next_rows(t);
        let (mut a, mut b) = (t.a.cast::<i32>(), t.b.cast::<__m512i>());
        k_loop::<1>(t, || {
            // SAFETY: k_loop runs this exactly kc times; step s < kc reads the panel's NR words at
            // `b` = t.b + s · NR (inside its kc × NR words, 64-byte aligned: the contract) and the
            // step's first R words at `a` = t.a + s · a_step, the tile's rows' ([`Tile`]).
            let (b0, b1) = unsafe { (_mm512_load_si512(b), _mm512_load_si512(b.add(1))) };
            for r in 0..R {
                // SAFETY: as above: the step's first R words are the tile's rows'. The load is
                // folded into `vpdpbusd` as its {1to16} operand.
                let x = _mm512_set1_epi32(unsafe { *a.add(r) });
                acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], b0, x);
                acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], b1, x);
            }
            // `a` wraps (as in the f32 tile): past the last step it is never read.
            a = a.wrapping_add(t.a_step);
            // SAFETY: at most one past the kc × NR words.
            unsafe {
                b = b.add(2);
            }
        });
        // The epilogue in small loops, each fully unrolled, so that `acc` is only ever indexed by
        // constants and stays in registers: with one loop doing it all (the start's `match`
        // inside), LLVM kept it in memory and stored every sum at every k step.
        // SAFETY: the column scales hold NR floats (the contract).
        let cs = unsafe { [_mm512_loadu_ps(q.cols), _mm512_loadu_ps(q.cols.add(16))] };
        let mut f = [[_mm512_setzero_ps(); 2]; R];
        for r in 0..R {
            // SAFETY: the row scales hold R floats (the contract); r < R.
            let s = _mm512_set1_ps(unsafe { *q.rows.add(r) });
            f[r] = [
                _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][0]), _mm512_mul_ps(s, cs[0])),
                _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][1]), _mm512_mul_ps(s, cs[1])),
            ];
        }
        // `base + f`, base the bias plus the residual, or C: the reference's order.
        let bias = match t.init {
            Init::Start { bias, .. } if !bias.is_null() => {
                // SAFETY: a non-null bias holds NR floats (the contract).
                unsafe { [_mm512_loadu_ps(bias), _mm512_loadu_ps(bias.add(16))] }
            }
            _ => [_mm512_setzero_ps(); 2],
        };
        for r in 0..R {
            // SAFETY: row r < R of C (and of the residual, where given): NR floats (the
            // contract); unaligned loads and stores.
            unsafe {
                let c = t.c.add(r * t.ldc);
                let base = match t.init {
                    Init::Accumulate => [_mm512_loadu_ps(c), _mm512_loadu_ps(c.add(16))],
                    Init::Start { residual, ldr, .. } if !residual.is_null() => {
                        let p = residual.add(r * ldr);
                        [
                            _mm512_add_ps(bias[0], _mm512_loadu_ps(p)),
                            _mm512_add_ps(bias[1], _mm512_loadu_ps(p.add(16))),
                        ]
                    }
                    Init::Start { .. } => bias,
                };
                _mm512_storeu_ps(c, _mm512_add_ps(base[0], f[r][0]));
                _mm512_storeu_ps(c.add(16), _mm512_add_ps(base[1], f[r][1]));
            }
        }
    }

    /// `tile::<rows>` for 1 ≤ rows ≤ MR.
    ///
    /// # Safety
    /// As [`tile`] with R = `rows`, and 1 ≤ `rows` ≤ MR (0 would run one row).
    pub unsafe fn run(rows: usize, t: &Tile) {
        // SAFETY: the caller's contract is `tile`'s with 1 ≤ rows ≤ MR: each arm runs `rows` rows.
        unsafe {
            match rows {
                14 => tile::<14>(t),
                13 => tile::<13>(t),
                12 => tile::<12>(t),
                11 => tile::<11>(t),
                10 => tile::<10>(t),
                9 => tile::<9>(t),
                8 => tile::<8>(t),
                7 => tile::<7>(t),
                6 => tile::<6>(t),
                5 => tile::<5>(t),
                4 => tile::<4>(t),
                3 => tile::<3>(t),
                2 => tile::<2>(t),
                _ => tile::<1>(t),
            }
        }
    }
}

/// The same tile at AVX2's shape (6 × 16, ymm; 12 accumulators, two weight vectors and one
/// broadcast row word: 15 of the 16 registers VEX code has), for CPUs with AVX-VNNI but no AVX-512
/// (VEX `vpdpbusd` has no broadcast operand: each row's word goes through `vpbroadcastd`, shared by
/// the tile's two columns of sums). One body, compiled twice: with AVX-VNNI (`tile_vex`, what such
/// CPUs run) and with AVX-512 VNNI and VL (`tile_evex`, the same instruction in EVEX encoding), so
/// the body is checked bit for bit on AVX-512 VNNI machines too, which lack AVX-VNNI (Zen 4).
#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use super::super::microkernel::{avx2::NR, k_loop, prefetch_next_rows, Init, Tile};
    use std::arch::x86_64::*;

    /// k steps a loop iteration, as AVX2's f32 tile.
    const UNROLL: usize = 8;

    macro_rules! tile_256 {
        ($(#[$doc:meta])* $name:ident, $features:literal, $dpbusd:ident, $row_comp:literal) => {
    $(#[$doc])*
    #[target_feature(enable = $features)]
    unsafe fn $name<const R: usize>(t: &Tile) {
        let q = t.quant;
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        if $row_comp {
            for r in 0..R {
                // SAFETY: comp holds R integers (the contract); r < R.
                let c = _mm256_set1_epi32(unsafe { *q.comp.add(r) });
                acc[r] = [c, c];
            }
        } else {
            // SAFETY: comp holds NR integers (the contract); unaligned loads.
            let c = unsafe {
                [
                    _mm256_loadu_si256(q.comp.cast()),
                    _mm256_loadu_si256(q.comp.add(8).cast()),
                ]
            };
            acc = [c; R];
        }
        if let Init::Accumulate = t.init {
            for r in 0..R {
                // SAFETY: row r < R of C (the contract, see [`Tile`]); prefetches never fault.
                unsafe {
                    let c = t.c.add(r * t.ldc);
                    _mm_prefetch::<_MM_HINT_T0>(c.cast());
                    _mm_prefetch::<_MM_HINT_T0>(c.add(NR - 1).cast());
                }
            }
        }
        prefetch_next_rows(t);
        let (mut a, mut b) = (t.a.cast::<i32>(), t.b.cast::<__m256i>());
        k_loop::<UNROLL>(t, || {
            // SAFETY: k_loop runs this exactly kc times; step s < kc reads the panel's NR words at
            // `b` = t.b + s · NR (inside its kc × NR words, 32-byte aligned: the contract) and the
            // step's first R words at `a` = t.a + s · a_step, the tile's rows' ([`Tile`]).
            let (b0, b1) = unsafe { (_mm256_load_si256(b), _mm256_load_si256(b.add(1))) };
            for r in 0..R {
                // SAFETY: as above: the step's first R words are the tile's rows'.
                let x = _mm256_set1_epi32(unsafe { *a.add(r) });
                acc[r][0] = $dpbusd(acc[r][0], b0, x);
                acc[r][1] = $dpbusd(acc[r][1], b1, x);
            }
            a = a.wrapping_add(t.a_step);
            // SAFETY: at most one past the kc × NR words.
            unsafe {
                b = b.add(2);
            }
        });
        // The epilogue as the AVX-512 tile's (small loops, `acc` indexed by constants only).
        // SAFETY: the column scales hold NR floats (the contract).
        let cs = unsafe { [_mm256_loadu_ps(q.cols), _mm256_loadu_ps(q.cols.add(8))] };
        let mut f = [[_mm256_setzero_ps(); 2]; R];
        for r in 0..R {
            // SAFETY: the row scales hold R floats (the contract); r < R.
            let s = _mm256_set1_ps(unsafe { *q.rows.add(r) });
            f[r] = [
                _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][0]), _mm256_mul_ps(s, cs[0])),
                _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][1]), _mm256_mul_ps(s, cs[1])),
            ];
        }
        let bias = match t.init {
            Init::Start { bias, .. } if !bias.is_null() => {
                // SAFETY: a non-null bias holds NR floats (the contract).
                unsafe { [_mm256_loadu_ps(bias), _mm256_loadu_ps(bias.add(8))] }
            }
            _ => [_mm256_setzero_ps(); 2],
        };
        for r in 0..R {
            // SAFETY: row r < R of C (and of the residual, where given): NR floats (the
            // contract); unaligned loads and stores.
            unsafe {
                let c = t.c.add(r * t.ldc);
                let base = match t.init {
                    Init::Accumulate => [_mm256_loadu_ps(c), _mm256_loadu_ps(c.add(8))],
                    Init::Start { residual, ldr, .. } if !residual.is_null() => {
                        let p = residual.add(r * ldr);
                        [
                            _mm256_add_ps(bias[0], _mm256_loadu_ps(p)),
                            _mm256_add_ps(bias[1], _mm256_loadu_ps(p.add(8))),
                        ]
                    }
                    Init::Start { .. } => bias,
                };
                _mm256_storeu_ps(c, _mm256_add_ps(base[0], f[r][0]));
                _mm256_storeu_ps(c.add(8), _mm256_add_ps(base[1], f[r][1]));
            }
        }
    }
        };
    }

    tile_256!(
        /// The 6 × 16 int8 tile in VEX encoding, as [`super::avx512::tile`] (weights offset by 128
        /// the unsigned operand, `t.quant.comp` the start of the rows' sums).
        ///
        /// # Safety
        /// The CPU has AVX2 and AVX-VNNI; the pointers in `t` are valid as [`Tile`] says for R
        /// rows, `b` 32-byte aligned; `t.quant` holds R row scales, NR column scales and R
        /// compensations.
        tile_vex,
        "avx2,avxvnni",
        _mm256_dpbusd_avx_epi32,
        true
    );

    tile_256!(
        /// [`tile_vex`] in EVEX encoding.
        ///
        /// # Safety
        /// As [`tile_vex`], the CPU having AVX-512 VNNI and VL instead of AVX-VNNI.
        tile_evex,
        "avx2,avx512f,avx512vl,avx512vnni",
        _mm256_dpbusd_epi32,
        true
    );

    tile_256!(
        /// The tile for AVX2 CPUs without VNNI (Intel before Ice Lake / Alder Lake, AMD before Zen
        /// 4): [`dpbusd_madd`]'s exact four-product sums in place of `vpdpbusd`, the activations
        /// (offset by 128) the unsigned operand and the weights (7-bit) the signed one, starting
        /// from the columns' compensations (`int8::Dot::Madd`).
        ///
        /// # Safety
        /// As [`tile_vex`], the CPU having AVX2 instead of AVX-VNNI, and `t.quant.comp` holding
        /// NR column compensations.
        tile_madd,
        "avx2,fma",
        dpbusd_madd,
        false
    );

    /// `acc + Σ x · w` over each 32-bit lane's four byte pairs, for unsigned `x` (a row's
    /// activations offset by 128, 1..255) and signed `w` (weights within ±63), with AVX2's
    /// `vpmaddubsw` (adjacent products summed into saturating 16-bit words: at most 2 · 255 · 63 <
    /// 2¹⁵, so exact) and `vpmaddwd` by ones (the words' pairs summed into 32 bits).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn dpbusd_madd(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(x, w);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// `tile_madd::<rows>` for 1 ≤ rows ≤ MR.
    ///
    /// # Safety
    /// As [`tile_madd`] with R = `rows`, and 1 ≤ `rows` ≤ MR (0 would run one row).
    pub unsafe fn run_madd(rows: usize, t: &Tile) {
        // SAFETY: the caller's contract is `tile_madd`'s with 1 ≤ rows ≤ MR.
        unsafe {
            match rows {
                6 => tile_madd::<6>(t),
                5 => tile_madd::<5>(t),
                4 => tile_madd::<4>(t),
                3 => tile_madd::<3>(t),
                2 => tile_madd::<2>(t),
                _ => tile_madd::<1>(t),
            }
        }
    }

    /// `tile_vex::<rows>` where the CPU has AVX-VNNI, else `tile_evex::<rows>`, for 1 ≤ rows ≤ MR.
    ///
    /// # Safety
    /// As [`tile_vex`] (or, without AVX-VNNI, [`tile_evex`]) with R = `rows`, and 1 ≤ `rows` ≤ MR
    /// (0 would run one row).
    pub unsafe fn run(rows: usize, t: &Tile) {
        // SAFETY: the caller's contract is the tile's, for the variant whose features the CPU has
        // (AVX-VNNI checked here), with 1 ≤ rows ≤ MR: each arm runs `rows` rows.
        unsafe {
            if std::arch::is_x86_feature_detected!("avxvnni") {
                match rows {
                    6 => tile_vex::<6>(t),
                    5 => tile_vex::<5>(t),
                    4 => tile_vex::<4>(t),
                    3 => tile_vex::<3>(t),
                    2 => tile_vex::<2>(t),
                    _ => tile_vex::<1>(t),
                }
            } else {
                match rows {
                    6 => tile_evex::<6>(t),
                    5 => tile_evex::<5>(t),
                    4 => tile_evex::<4>(t),
                    3 => tile_evex::<3>(t),
                    2 => tile_evex::<2>(t),
                    _ => tile_evex::<1>(t),
                }
            }
        }
    }
}
