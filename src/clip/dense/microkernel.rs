//! The inner loops of the packed GEMM: one `MR × NR` tile of `C += A · B` over `kc` steps of k,
//! with the accumulators in registers the whole time.
//!
//! `A` is one panel of packed activations: for each k, MR consecutive floats (one broadcast per row
//! and k from one contiguous stream); `B` is one panel of packed weights: for each k, NR consecutive
//! floats (64-byte aligned). AVX2+FMA: 6 × 16 (12 ymm accumulators, the BLIS shape for 16
//! registers); AVX-512: 14 × 32 (28 of the 32 zmm registers: 24 FMAs per 2 loads of the weights and
//! 14 broadcasts; measured 5–10% faster than 8 × 32 on whole layers, fewer passes over each
//! weight panel). Not for: loop
//! blocking, threading or packing (`mod.rs`).

#![allow(clippy::needless_range_loop)]

/// How a tile's accumulators start.
#[derive(Clone, Copy)]
pub enum Init {
    /// From zero, the C tile already in memory added at the end (a later k block).
    Accumulate,
    /// From the bias row (NR floats; zeros when null), plus the residual tile when not null (the
    /// first k block).
    Start {
        bias: *const f32,
        residual: *const f32,
        ldr: usize,
    },
}

/// One tile's operands. Pointers are valid for: `a` the tile's rows' values (R floats) at each of kc
/// steps `a_step` floats apart (the last step need not have `a_step` floats after it), `b` kc × NR, `c` MR rows × NR (stride ldc), bias NR (or null), residual
/// MR × NR (stride ldr; or null).
pub struct Tile {
    pub kc: usize,
    pub a: *const f32,
    /// Floats from one k's row values to the next's: MR in rows packed by `pack_rows`.
    pub a_step: usize,
    pub b: *const f32,
    pub c: *mut f32,
    pub ldc: usize,
    pub init: Init,
    /// Cache lines to fetch for later tiles, spread over the k loop (issued all at once they fill
    /// the line-fill buffers and stall the FMAs): the first stream's into L1 (a share of the next
    /// weight slice: it is there when the next panel's first tile starts, +1% on AVX2 against
    /// fetching it into L2), the second's into L2 (the next block of activation rows).
    pub prefetch: [Prefetch; 2],
    /// The next tile's packed rows (null: none): their first lines are fetched into L1 at the
    /// start, so that tile's stream does not begin with misses (see [`A_AHEAD`]).
    pub a_next: *const f32,
    /// The int8 kernel's scales (null everywhere else).
    pub quant: Quant,
}

/// What the int8 kernels need besides (`super::int8`, `super::microkernel_int8`): the tile's rows'
/// scales (R floats), its columns' scales (NR floats) and its rows' compensations for the k block
/// (R integers; its columns', NR integers, under `int8::Dot::Madd`).
#[derive(Clone, Copy)]
pub struct Quant {
    pub rows: *const f32,
    pub cols: *const f32,
    pub comp: *const i32,
}

impl Quant {
    pub const NONE: Quant = Quant {
        rows: std::ptr::null(),
        cols: std::ptr::null(),
        comp: std::ptr::null(),
    };
}

/// Lines of the next tile's rows fetched into L1 at a tile's start (one tile's rows lie a whole
/// packed row panel away from the last's, where no hardware prefetcher looks): +1.6% on AVX2's
/// layers; 4, 16 and 32 measured slower, and so was fetching all of them over the k loop.
const A_AHEAD: usize = 8;

#[inline(always)]
pub(super) fn prefetch_next_rows(t: &Tile) {
    #[cfg(target_arch = "x86_64")]
    if !t.a_next.is_null() {
        for l in 0..A_AHEAD {
            // SAFETY: a prefetch never faults.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    t.a_next.cast::<i8>().wrapping_add(l * 64),
                )
            };
        }
    }
}

/// Consecutive cache lines to fetch: `lines` of them from `start`.
#[derive(Clone, Copy)]
pub struct Prefetch {
    pub start: *const u8,
    pub lines: usize,
}

impl Prefetch {
    pub const NONE: Prefetch = Prefetch {
        start: std::ptr::null(),
        lines: 0,
    };

    /// Fetches line `i` of both streams together (the first's into L1, then the second's into
    /// L2).
    #[inline(always)]
    fn fetch(p: &[Prefetch; 2], i: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
            // SAFETY: a prefetch never faults (and the lines lie in the panels or the rows
            // anyway).
            unsafe {
                if i < p[0].lines {
                    _mm_prefetch::<_MM_HINT_T0>(p[0].start.wrapping_add(i * 64).cast());
                } else {
                    let i = i - p[0].lines;
                    _mm_prefetch::<_MM_HINT_T1>(p[1].start.wrapping_add(i * 64).cast());
                }
            }
        }
    }
}

/// Runs `step()` kc times, UNROLL at a time (one countdown and one loop branch per UNROLL steps),
/// issuing one of the tile's prefetches every `kc / UNROLL / lines` groups.
#[inline(always)]
pub(super) fn k_loop<const UNROLL: usize>(t: &Tile, mut step: impl FnMut()) {
    let lines = t.prefetch[0].lines + t.prefetch[1].lines;
    let groups = t.kc / UNROLL;
    // The prefetch a countdown's branch; with nothing to fetch the countdown never runs out.
    let every = groups.checked_div(lines).map_or(usize::MAX, |e| e.max(1));
    let (mut countdown, mut issued) = (every, 0);
    for _ in 0..groups {
        for _ in 0..UNROLL {
            step();
        }
        countdown -= 1;
        if countdown == 0 {
            countdown = every;
            if issued < lines {
                Prefetch::fetch(&t.prefetch, issued);
                issued += 1;
            }
        }
    }
    for _ in 0..t.kc % UNROLL {
        step();
    }
    for line in issued..lines {
        Prefetch::fetch(&t.prefetch, line);
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use super::{Init, Tile};
    use std::arch::x86_64::*;

    pub const MR: usize = 6;
    pub const NR: usize = 16;
    /// k steps a loop iteration: 8 against 1, +5.6% at batch 1 and +4.9% at batch 8 on the whole
    /// model (pair.sh); 2 and 4 less, 16 6–10% slower than 8 on the layers. (A step is 25
    /// instructions for 12 FMAs, 6 cycles: on a core that renames 4 a cycle, Skylake's or Zen 2's,
    /// the loop's own 4 would be over budget.)
    const UNROLL: usize = 8;

    /// # Safety
    /// The CPU has AVX2 and FMA; the pointers in `t` are valid as [`Tile`] says, for R rows (`c`
    /// and the residual R rows, `a` the tile's R values first in each step); `b` is 32-byte
    /// aligned.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile<const R: usize>(t: &Tile) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        match t.init {
            Init::Accumulate => {
                // Added at the end; fetched now, so the loads don't wait on memory then.
                for r in 0..R {
                    // SAFETY: r < R, so row r of C and its last float (NR − 1) lie inside the
                    // R rows × NR floats, ldc apart, that `t.c` is valid for (the caller's
                    // contract, see [`Tile`]); the prefetches themselves never fault.
                    unsafe {
                        let c = t.c.add(r * t.ldc);
                        _mm_prefetch::<_MM_HINT_T0>(c.cast());
                        _mm_prefetch::<_MM_HINT_T0>(c.add(NR - 1).cast());
                    }
                }
            }
            Init::Start {
                bias,
                residual,
                ldr,
            } => {
                let b = if bias.is_null() {
                    [_mm256_setzero_ps(); 2]
                } else {
                    // SAFETY: a non-null bias points to NR = 16 floats ([`Tile`], the caller's
                    // contract): both halves, unaligned loads.
                    unsafe { [_mm256_loadu_ps(bias), _mm256_loadu_ps(bias.add(8))] }
                };
                for r in 0..R {
                    acc[r] = b;
                    if !residual.is_null() {
                        // SAFETY: a non-null residual points to R rows of NR floats, ldr apart
                        // ([`Tile`], the caller's contract); r < R: row r's two halves.
                        unsafe {
                            let p = residual.add(r * ldr);
                            acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_loadu_ps(p));
                            acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_loadu_ps(p.add(8)));
                        }
                    }
                }
            }
        }
        super::prefetch_next_rows(t);
        let (mut a, mut b) = (t.a, t.b);
        super::k_loop::<UNROLL>(t, || {
            // SAFETY: k_loop runs this exactly kc times; at step s < kc, `b` is the panel's start
            // + s · NR, inside the kc × NR floats it is valid for ([`Tile`]), and 32-byte aligned
            // as `load_ps` needs (the caller's contract for the start; NR floats are 64 bytes).
            let (b0, b1) = unsafe { (_mm256_load_ps(b), _mm256_load_ps(b.add(8))) };
            for r in 0..R {
                // SAFETY: at step s, `a` is `t.a` + s · a_step, and the step's first R ≤ MR
                // floats are the tile's rows' values ([`Tile`]); f32-aligned, as the rows are f32s.
                let x = _mm256_broadcast_ss(unsafe { &*a.add(r) });
                acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
            }
            // On to step s + 1. `a` wraps: after the last step it may point past the rows' data
            // (attention's probability rows hold only the tile's own values at the last step),
            // and it is never read there.
            a = a.wrapping_add(t.a_step);
            // SAFETY: at most kc × NR floats from `t.b`, the extent [`Tile`] gives it, so after
            // the last step `b` is at most one past its end.
            unsafe {
                b = b.add(NR);
            }
        });
        let add = matches!(t.init, Init::Accumulate);
        for r in 0..R {
            // SAFETY: r < R: row r of C, NR floats at `t.c` + r · ldc, inside the R rows × NR
            // floats (ldc apart) `t.c` is valid for reads and writes ([`Tile`], the caller's
            // contract); unaligned loads and stores.
            unsafe {
                let c = t.c.add(r * t.ldc);
                if add {
                    acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_loadu_ps(c));
                    acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_loadu_ps(c.add(8)));
                }
                _mm256_storeu_ps(c, acc[r][0]);
                _mm256_storeu_ps(c.add(8), acc[r][1]);
            }
        }
    }

    /// `tile::<rows>` for 1 ≤ rows ≤ MR.
    ///
    /// # Safety
    /// As [`tile`] with R = `rows`, and 1 ≤ `rows` ≤ MR (0 would run one row).
    pub unsafe fn run(rows: usize, t: &Tile) {
        // SAFETY: the caller's contract is `tile`'s (AVX2 and FMA present, `t`'s pointers valid
        // for `rows` rows, `b` 32-byte aligned) with 1 ≤ rows ≤ MR: each arm runs `rows` rows.
        unsafe {
            match rows {
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

#[cfg(target_arch = "x86_64")]
pub mod avx512 {
    use super::{Init, Tile};
    use std::arch::x86_64::*;

    pub const MR: usize = 14;
    pub const NR: usize = 32;

    /// Defines the tile function `$name` with the target features `$features`. At each k step,
    /// row r's value `v` (at `a + r`) is broadcast to `x` by the first expression and multiplied
    /// into each of the two weight vectors `b` by the second, which returns the new `acc`. One body
    /// for the f32 kernel and the bf16 one (`super::super::bf16`), where a step is a pair of k and
    /// each "float" of `a` and `b` a pair of bf16.
    macro_rules! tile_fn {
        ($(#[$doc:meta])* $name:ident, $features:literal, |$v:ident| $bcast:expr, |$x:ident, $b:ident, $acc:ident| $fma:expr) => {
    $(#[$doc])*
    #[target_feature(enable = $features)]
    pub unsafe fn $name<const R: usize>(t: &Tile) {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        match t.init {
            Init::Accumulate => {
                // Added at the end; fetched now, so the loads don't wait on memory then.
                for r in 0..R {
                    // SAFETY: r < R, so row r of C and its last float (NR − 1) lie inside the
                    // R rows × NR floats, ldc apart, that `t.c` is valid for (the caller's
                    // contract, see [`Tile`]); the prefetches themselves never fault.
                    unsafe {
                        let c = t.c.add(r * t.ldc);
                        _mm_prefetch::<_MM_HINT_T0>(c.cast());
                        _mm_prefetch::<_MM_HINT_T0>(c.add(NR - 1).cast());
                    }
                }
            }
            Init::Start {
                bias,
                residual,
                ldr,
            } => {
                let b = if bias.is_null() {
                    [_mm512_setzero_ps(); 2]
                } else {
                    // SAFETY: a non-null bias points to NR = 32 floats ([`Tile`], the caller's
                    // contract): both halves, unaligned loads.
                    unsafe { [_mm512_loadu_ps(bias), _mm512_loadu_ps(bias.add(16))] }
                };
                for r in 0..R {
                    acc[r] = b;
                    if !residual.is_null() {
                        // SAFETY: a non-null residual points to R rows of NR floats, ldr apart
                        // ([`Tile`], the caller's contract); r < R: row r's two halves.
                        unsafe {
                            let p = residual.add(r * ldr);
                            acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_loadu_ps(p));
                            acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_loadu_ps(p.add(16)));
                        }
                    }
                }
            }
        }
        super::prefetch_next_rows(t);
        let (mut a, mut b) = (t.a, t.b);
        // Not unrolled: 2 and 4 measured 1–4% slower on the layers (a step is already 28 FMAs).
        super::k_loop::<1>(t, || {
            // SAFETY: k_loop runs this exactly kc times; at step s < kc, `b` is the panel's start
            // + s · NR, inside the kc × NR floats it is valid for ([`Tile`]), and 64-byte aligned
            // as `load_ps` needs (the caller's contract for the start; NR floats are 128 bytes).
            let (b0, b1) = unsafe { (_mm512_load_ps(b), _mm512_load_ps(b.add(16))) };
            for r in 0..R {
                // SAFETY: at step s, `a` is `t.a` + s · a_step, and the step's first R ≤ MR
                // floats are the tile's rows' values ([`Tile`]); f32-aligned, as the rows are f32s.
                let $v = unsafe { *a.add(r) };
                let $x = $bcast;
                acc[r][0] = { let ($b, $acc) = (b0, acc[r][0]); $fma };
                acc[r][1] = { let ($b, $acc) = (b1, acc[r][1]); $fma };
            }
            // On to step s + 1. `a` wraps: after the last step it may point past the rows' data
            // (attention's probability rows hold only the tile's own values at the last step),
            // and it is never read there.
            a = a.wrapping_add(t.a_step);
            // SAFETY: at most kc × NR floats from `t.b`, the extent [`Tile`] gives it, so after
            // the last step `b` is at most one past its end.
            unsafe {
                b = b.add(NR);
            }
        });
        let add = matches!(t.init, Init::Accumulate);
        for r in 0..R {
            // SAFETY: r < R: row r of C, NR floats at `t.c` + r · ldc, inside the R rows × NR
            // floats (ldc apart) `t.c` is valid for reads and writes ([`Tile`], the caller's
            // contract); unaligned loads and stores.
            unsafe {
                let c = t.c.add(r * t.ldc);
                if add {
                    acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_loadu_ps(c));
                    acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_loadu_ps(c.add(16)));
                }
                _mm512_storeu_ps(c, acc[r][0]);
                _mm512_storeu_ps(c.add(16), acc[r][1]);
            }
        }
    }
        };
    }

    tile_fn!(
        /// # Safety
        /// The CPU has AVX-512F; the pointers in `t` are valid as [`Tile`] says, for R rows (`c` and
        /// the residual R rows, `a` the tile's R values first in each step); `b` is 64-byte aligned.
        tile,
        "avx512f",
        |v| _mm512_set1_ps(v),
        |x, b, acc| _mm512_fmadd_ps(x, b, acc)
    );

    tile_fn!(
        /// [`tile`] over bf16 pairs: each of `a`'s "floats" is a pair of bf16 (k = 2p low, 2p + 1
        /// high), each of `b`'s NR per step too, and a step adds both products to each sum with
        /// `vdpbf16ps` (see `super::super::bf16`).
        ///
        /// # Safety
        /// As [`tile`], and the CPU has AVX512_BF16.
        tile_bf16,
        "avx512f,avx512bf16",
        // SAFETY (both): bit casts between two 512-bit vector types.
        |v| unsafe { std::mem::transmute::<__m512, __m512bh>(_mm512_set1_ps(v)) },
        |x, b, acc| _mm512_dpbf16_ps(acc, x, unsafe { std::mem::transmute::<__m512, __m512bh>(b) })
    );

    /// `tile::<rows>` for 1 ≤ rows ≤ MR.
    ///
    /// # Safety
    /// As [`tile`] with R = `rows`, and 1 ≤ `rows` ≤ MR (0 would run one row).
    pub unsafe fn run(rows: usize, t: &Tile) {
        // SAFETY: the caller's contract is `tile`'s (AVX-512F present, `t`'s pointers valid for
        // `rows` rows, `b` 64-byte aligned) with 1 ≤ rows ≤ MR: each arm runs `rows` rows.
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

    /// `tile_bf16::<rows>` for 1 ≤ rows ≤ MR.
    ///
    /// # Safety
    /// As [`tile_bf16`] with R = `rows`, and 1 ≤ `rows` ≤ MR (0 would run one row).
    pub unsafe fn run_bf16(rows: usize, t: &Tile) {
        // SAFETY: the caller's contract is `tile`'s (AVX-512F and AVX512_BF16 present, `t`'s pointers valid
        // for `rows` rows, `b` 64-byte aligned) with 1 ≤ rows ≤ MR: each arm runs `rows` rows.
        unsafe {
            match rows {
                14 => tile_bf16::<14>(t),
                13 => tile_bf16::<13>(t),
                12 => tile_bf16::<12>(t),
                11 => tile_bf16::<11>(t),
                10 => tile_bf16::<10>(t),
                9 => tile_bf16::<9>(t),
                8 => tile_bf16::<8>(t),
                7 => tile_bf16::<7>(t),
                6 => tile_bf16::<6>(t),
                5 => tile_bf16::<5>(t),
                4 => tile_bf16::<4>(t),
                3 => tile_bf16::<3>(t),
                2 => tile_bf16::<2>(t),
                _ => tile_bf16::<1>(t),
            }
        }
    }
}
