//! The linear layers on Intel's AMX tile unit (Sapphire Rapids and later Xeons), where the CPU has
//! it: in the model about 2.7 times the f32 AVX-512 kernels' speed (~430 against ~160 GFLOP/s a
//! core on a model-167 Xeon), with the f32 result to about 17 bits of each operand (below).
//!
//! AMX multiplies bfloat16 (8 significand bits) and accumulates in f32. Each f32 operand is split
//! into two bf16, `x = hi + lo` (16 of f32's 24 significand bits, `lo` the rounded remainder), and
//! each product is the sum of the three leading terms `hi·hi + hi·lo + lo·hi` (the dropped `lo·lo`
//! and the split's remainder are ~2⁻¹⁷ of it), all in f32: three tile products where pure bf16
//! would do one. Through the 24 layers of ViT-L/14 that puts the embeddings within
//! 1 − cos ≈ 5·10⁻¹¹ of PyTorch's f32 ones (pure bf16: 2·10⁻⁵), far under the 10⁻⁸ the parity
//! figures print. `IMGVEC_SIMD=avx512` keeps the f32 AVX-512 kernels instead.
//!
//! Layouts: a tile is 16 rows of 64 bytes. Weights, packed once at load: for each group of 16
//! output columns and each 32 of k, the hi tile then the lo tile, in the pair-interleaved layout
//! the tile product reads (row p: column c's k = 2p and 2p + 1 side by side). Activations, packed
//! per call: for each group of 16 rows and each 32 of k, the hi then the lo tile, row-major. Both
//! zero-padded past k. The products: 32 × 32 blocks of the output (four accumulator tiles) over a
//! k block of 128 (4 tiles), a row block's activations passing one weight slice held in L1; the
//! accumulators stored to a task's scratch (tile by tile: no two rows of a tile in one L1 set) and
//! re-loaded between k blocks; bias, residual and the epilogue added row by row once a row block is
//! final (fc1's rows written straight as fc2's activation tiles). This file: whether AMX is there,
//! the product (`matmul`) and its row-by-row finish; `pack` packs weights and activations into
//! tiles, `tile` holds the tile configuration and the tile-product kernels. The same loop runs
//! `--precision bf16` (one bf16 tile a k tile, one product) and `int8` (`tdpbssd` on signed-byte
//! tiles, 64 k a tile row, exact i32 sums scaled once at the end); `attention` holds attention's
//! per-head products in bf16 for those. Not for: attention in f32 (`tiles.rs`), outputs whose
//! width is not a multiple of 32 (f32 panels).

use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

use rayon::prelude::*;

pub(super) mod attention;
mod pack;
mod tile;

use super::int8::largest_avx512 as largest;
use super::pack::Line;
use super::tiles::{Epilogue, Out};
use pack::split_row;
use pack::Kind;
pub(super) use pack::{pack_rows, pack_rows_int8_with, rows_lines, AmxWeight, Kind as AmxKind};
use tile::{k16x32_of, k32x32_of, release, Config};

/// k per tile (16 rows of pairs).
const KT: usize = 32;
/// k tiles per k block: a row pair's activations for it (16 KiB) and one weight slice (16 KiB)
/// both stay in L1 (8 tiles: 2–5% slower, the slice no longer stays).
const KB: usize = 4;
/// Rows per row block, at most: its activations for a k block (320 KiB) and a task's accumulators
/// (640 KiB) stay in L2 while the weight slices pass.
const MC: usize = 640;
/// Column pairs per task, at most: 256 columns, a k block of their weights (64 KiB) an L2's share.
const MAX_PAIRS: usize = 8;
/// Rows ahead whose residual and output lines [`finish_rows`] fetches.
const AHEAD: usize = 4;
/// Lines (64 bytes) per tile.
const TILE_LINES: usize = 16;

/// Whether the linear layers run on AMX: the CPU has AMX-TILE and AMX-BF16, the OS lets this
/// process use the tile data (Linux: `arch_prctl(ARCH_REQ_XCOMP_PERM)`), the f32 level is AVX-512
/// and `IMGVEC_SIMD` does not ask for `avx512` (or lower).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        super::Simd::get() == super::Simd::Avx512
            && super::requested_simd() != "avx512"
            && std::arch::is_x86_feature_detected!("avx512bw")
            && supported()
    })
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn supported() -> bool {
    // Leaf 7 exists on every CPU with AVX-512 (checked by the caller).
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    let (amx_bf16, amx_tile) = (leaf7.edx & (1 << 22) != 0, leaf7.edx & (1 << 24) != 0);
    if !(amx_bf16 && amx_tile) {
        return false;
    }
    const ARCH_GET_XCOMP_PERM: i64 = 0x1022;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let arch_prctl = |op: i64, arg: i64| -> i64 {
        let ret: i64;
        // SAFETY: arch_prctl (syscall 158) with these operations only reads/writes the process's
        // permitted XSAVE features, and for GET the u64 `arg` points to.
        unsafe {
            asm!("syscall", inlateout("rax") 158i64 => ret, in("rdi") op, in("rsi") arg,
                 lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        ret
    };
    if arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0 {
        return false;
    }
    let mut perm = 0u64;
    arch_prctl(ARCH_GET_XCOMP_PERM, std::ptr::addr_of_mut!(perm) as i64) == 0
        && perm & (1 << XFEATURE_XTILEDATA) != 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn supported() -> bool {
    false
}

/// Whether `--precision int8` runs on the tiles: AMX is [`enabled`] and the CPU has AMX-INT8.
pub fn int8_enabled() -> bool {
    // Leaf 7 exists on every CPU with AVX-512 (enabled checks that first).
    enabled() && std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 25) != 0
}

/// A row block's finished accumulators (`rows` rows from row `rb`, the task's column pairs
/// `pairs`; tiles as [`matmul`] lays them out, row groups `gs` floats apart) row by row: `bias`,
/// residual, epilogue, then into y (each row's columns one contiguous run: y's rows 4–16 KiB
/// apart, a block at a time, fell in one L1 set) or into the packed tiles.
///
/// # Safety
/// `out` and `bias` as [`matmul`] says for n = `w.n` (a multiple of 32); rows `rb..rb + rows`
/// exist (≤ m); `pairs` lies within 0..n / 32 and is at most MAX_PAIRS long; `acc` holds the
/// block's finished tiles (row group g's at g · `gs` floats, pair q's two at q · 512 on, 16 floats
/// a row); the CPU has AVX-512F and BW.
#[target_feature(enable = "avx512f,avx512bw")]
#[allow(clippy::too_many_arguments)]
unsafe fn finish_rows(
    out: &Out,
    bias: &[f32],
    (n, kind): (usize, Kind),
    scales: Option<(&[f32], &[f32])>,
    acc: *const f32,
    gs: usize,
    rb: usize,
    rows: usize,
    pairs: std::ops::Range<usize>,
) {
    debug_assert!(
        kind != Kind::Int8 || out.packed.is_none(),
        "int8 rows need whole rows"
    );
    let (col0, width) = (pairs.start * 32, pairs.len() * 32);
    // Rows with nothing left to do after the residual go straight from the registers to y.
    let direct = out.packed.is_none() && out.epilogue == Epilogue::None && out.row_max.is_none();
    let mut buf = [0f32; MAX_PAIRS * 32];
    for r in 0..rows {
        let row = rb + r;
        // The residual's and y's lines of a row a few ahead, fetched while this one is finished:
        // they come from L3 or memory, and their misses stalled these rows.
        if r + AHEAD < rows {
            let at = (row + AHEAD) * out.ldy + col0;
            for l in (0..width).step_by(16) {
                if let Some(res) = out.residual {
                    _mm_prefetch::<_MM_HINT_T0>(res.get().wrapping_add(at + l).cast());
                }
                if out.packed.is_none() {
                    _mm_prefetch::<_MM_HINT_T0>(out.y.get().wrapping_add(at + l).cast());
                }
            }
        }
        for q in 0..pairs.len() {
            let (t, col) = (
                // SAFETY: row r of the block, pair q: row r % 16 of group r / 16's first tile of
                // the pair, inside `acc`'s finished tiles (the contract).
                unsafe { acc.add((r / 16) * gs + q * 512 + (r % 16) * 16) },
                col0 + q * 32,
            );
            // SAFETY: that row of the pair's two tiles (the second 256 floats on): 16 floats each
            // (int8: i32 sums, scaled here by the row's and the columns' scales), finished (the
            // contract).
            let mut v = unsafe { [_mm512_loadu_ps(t), _mm512_loadu_ps(t.add(256))] };
            if let Some((rows_s, cols_s)) = scales {
                let sx = _mm512_set1_ps(rows_s[row]);
                for (h, v) in v.iter_mut().enumerate() {
                    let sums = _mm512_cvtepi32_ps(_mm512_castps_si512(*v));
                    // SAFETY: col + 16h + 16 ≤ n = cols_s.len() (the contract).
                    let sw = unsafe { _mm512_loadu_ps(cols_s.as_ptr().add(col + 16 * h)) };
                    *v = _mm512_mul_ps(sums, _mm512_mul_ps(sx, sw));
                }
            }
            for (h, v) in v.iter_mut().enumerate() {
                // SAFETY: col + 16h + 16 ≤ pairs.end · 32 ≤ n ≤ bias.len() (the contract).
                *v = _mm512_add_ps(*v, unsafe {
                    _mm512_loadu_ps(bias.as_ptr().add(col + 16 * h))
                });
                if let Some(res) = out.residual {
                    // SAFETY: row `row` < m, columns col + 16h..col + 16h + 16 ≤ n of the
                    // residual, m rows of at least n floats ldy apart (the contract).
                    unsafe {
                        let p = res.get().add(row * out.ldy + col + 16 * h);
                        *v = _mm512_add_ps(*v, _mm512_loadu_ps(p));
                    }
                }
                if direct {
                    // SAFETY: row `row` < m, columns col + 16h..col + 16h + 16 ≤ n of y, m rows
                    // of at least n floats ldy apart that only this task writes there (the
                    // contract).
                    unsafe { _mm512_storeu_ps(out.y.get().add(row * out.ldy + col + 16 * h), *v) };
                } else {
                    // SAFETY: q < pairs.len() ≤ MAX_PAIRS (the contract): inside the local `buf`.
                    unsafe { _mm512_storeu_ps(buf.as_mut_ptr().add(q * 32 + 16 * h), *v) };
                }
            }
        }
        if direct {
            continue;
        }
        let done = &mut buf[..width];
        match out.packed {
            // SAFETY: row `row` < m, columns col0..col0 + width ≤ n of y, m rows of at least n
            // floats ldy apart that only this task writes there (the contract). The activation
            // writes them (not a pass in place and a `memcpy` a row: 2–3% of the int8 model).
            None => {
                let to = unsafe {
                    std::slice::from_raw_parts_mut(out.y.get().add(row * out.ldy + col0), width)
                };
                out.epilogue.apply_into(done, to);
                if let Some(maxima) = out.row_max {
                    // SAFETY: slot row · n / 32 + pairs.start of the m · n / 32 `row_max` holds
                    // (`Out::row_max`), this task's alone; AVX-512F: the contract.
                    unsafe {
                        *maxima.get().add(row * (n / 32) + pairs.start) = largest(to);
                    }
                }
            }
            Some(p) => {
                out.epilogue.apply(done);
                let (split, per) = (kind == Kind::Split, kind.terms());
                let mut no_lo = [0u16; KT];
                for (q, v) in done.chunks_exact(32).enumerate() {
                    let kt = pairs.start + q;
                    let at = ((row / 16) * (n / KT) + kt) * per * 512 + (row % 16) * KT;
                    // SAFETY: `packed` has room for m rows packed for k = n, split as `split`
                    // says (the contract): row group row / 16 of ⌈m / 16⌉, k tile kt < n / 32 of
                    // n / KT, its hi tile's row row % 16 (32 u16) at `at`, the lo tile's (if
                    // split) 512 u16 on, else the local no_lo; AVX-512F and BW: the contract.
                    unsafe {
                        let dst = p.get().cast::<u16>().add(at);
                        let lo = if split {
                            dst.add(512)
                        } else {
                            no_lo.as_mut_ptr()
                        };
                        split_row(v, dst, lo);
                    }
                }
            }
        }
    }
}

/// `a · Wᵀ + bias` for `m` rows packed by [`pack_rows`] into `out` (the residual added, the
/// epilogue applied; or, with `out.packed`, written as the next layer's activation tiles, what
/// [`pack_rows`] makes of y, its k this product's n), the threads splitting the output columns.
///
/// # Safety
/// AMX is [`enabled`]; `a` holds m rows packed for `w.k` (by [`pack_rows`]); `out.y` (unless
/// `packed` is set) and the residual m rows of at least `w.n` floats, `out.ldy` apart, nothing
/// else writing them; `bias` at least `w.n` floats; `packed` (if set) room for m rows packed for
/// k = `w.n`.
pub(super) unsafe fn matmul(w: &AmxWeight, bias: &[f32], a: &[Line], m: usize, out: &Out) {
    let pairs = w.n / 32;
    let threads = rayon::current_num_threads().max(1);
    let per_task = pairs.div_ceil(2 * threads).clamp(1, MAX_PAIRS);
    let kts = w.k.div_ceil(w.kind.k_tile());
    let per = w.kind.terms();
    // int8 rows: their scales after the tiles.
    let row_scales = (w.kind == Kind::Int8).then(|| {
        let tiles = m.div_ceil(16) * kts * TILE_LINES;
        &super::pack::lines_as_floats(&a[tiles..])[..m]
    });
    let scales = row_scales.map(|r| (r, &w.scale[..]));
    let group = kts * per * TILE_LINES;
    let a_tile = |g: usize, kt: usize| a[g * group + kt * per * TILE_LINES..].as_ptr().cast::<u8>();
    // A task's accumulators: row group by row group (of a row block), each its column tiles.
    let gs = 2 * per_task * TILE_LINES * 16;
    // Row blocks as even as whole row pairs allow (2,056 rows: four of 544 and the rest, not four
    // of 512 and one of 8 that streams every weight from memory again for 8 rows).
    let mc = m.div_ceil(m.div_ceil(MC).max(1)).next_multiple_of(32);
    (0..pairs.div_ceil(per_task)).into_par_iter().for_each_init(
        Vec::new,
        |acc: &mut Vec<Line>, task| {
            let cols = task * per_task..((task + 1) * per_task).min(pairs);
            // Only room (zeroing 512 KiB per rayon split cost 5%): each tile is stored by the
            // first k block, before anything reads it.
            acc.reserve(mc / 16 * 2 * per_task * TILE_LINES);
            let accp = acc.as_mut_ptr().cast::<f32>();
            // Accumulator tiles of local row group g and local column pair q.
            // SAFETY: called with a local row group g < mc / 16 and pair q < per_task: inside the
            // capacity just reserved, mc / 16 groups of gs = 2 · per_task tiles of 256 floats.
            let c_at = |g: usize, q: usize| unsafe { accp.add(g * gs + q * 2 * 256) };
            let (full, tail) = (Config::new(16), Config::new(m % 16));
            // SAFETY: AMX is enabled (the contract); 16 rows.
            unsafe { full.load() };
            for rb in (0..m).step_by(mc) {
                let rows = mc.min(m - rb);
                let g0 = rb / 16;
                let whole = rows / 16; // groups of 16 rows
                let rest = rows % 16; // rows of a last, partial group
                for kt0 in (0..kts).step_by(KB) {
                    let steps = KB.min(kts - kt0);
                    let first = kt0 == 0;
                    for (q, p) in cols.clone().enumerate() {
                        let j = p * 2;
                        let (w0, w1) = (w.tile(j, kt0), w.tile(j + 1, kt0));
                        for g in (0..whole).step_by(2) {
                            let c = c_at(g, q);
                            // SAFETY: the full configuration is loaded (above, and again after
                            // each tail); steps ≥ 1 (kt0 < kts). A: row groups g0 + g (and
                            // g0 + g + 1 < g0 + whole), whole groups of the m rows in `a` (the
                            // contract), k tiles kt0..kt0 + steps ≤ kts of them. W: column groups
                            // j, j + 1 < n / 16 over the same k tiles in `w.data`. C: this task's
                            // tiles of local groups g (and g + 1, gs floats = gs · 4 bytes on),
                            // pair q, inside `acc`'s capacity; read (`!first`) only after the
                            // first k block stored them.
                            unsafe {
                                let (a0, c) = (a_tile(g0 + g, kt0), c.cast());
                                if g + 1 < whole {
                                    let a1 = a_tile(g0 + g + 1, kt0);
                                    k32x32_of(w.kind, (a0, a1), w0, w1, steps, c, gs * 4, !first)
                                } else {
                                    k16x32_of(w.kind, a0, w0, w1, steps, c, !first)
                                }
                            }
                        }
                    }
                    if rest == 0 {
                        continue;
                    }
                    // The rows past the last whole group: fewer rows configured for tiles 0–3.
                    // SAFETY: AMX is enabled (the contract); rest = m % 16 (this is the last row
                    // block: mc is a multiple of 32), 1–15 rows.
                    unsafe { tail.load() };
                    for (q, p) in cols.clone().enumerate() {
                        let j = p * 2;
                        let c = c_at(whole, q);
                        // SAFETY: the tail configuration is loaded (rest rows in tiles 0–3, so
                        // only the rows that exist are read or stored); steps ≥ 1. A: row group
                        // g0 + whole, the m rows' last, partial one, in `a` (the contract), k
                        // tiles kt0..kt0 + steps. W: column groups j, j + 1 < n / 16. C: local
                        // group whole < mc / 16, pair q, inside `acc`'s capacity, read only after
                        // the first k block stored it.
                        unsafe {
                            let (a, w0, w1) =
                                (a_tile(g0 + whole, kt0), w.tile(j, kt0), w.tile(j + 1, kt0));
                            k16x32_of(w.kind, a, w0, w1, steps, c.cast(), !first)
                        };
                    }
                    // SAFETY: AMX is enabled (the contract); 16 rows.
                    unsafe { full.load() };
                }
                // SAFETY: every tile of the block's rows rb..rb + rows ≤ m and the task's pairs
                // was stored by the k blocks above; `cols` lies within 0..n / 32 and is at most
                // per_task ≤ MAX_PAIRS long; `out` and `bias` as the contract says; AMX enabled
                // implies AVX-512F and BW (`enabled`).
                unsafe {
                    finish_rows(
                        out,
                        bias,
                        (w.n, w.kind),
                        scales,
                        accp,
                        gs,
                        rb,
                        rows,
                        cols.clone(),
                    )
                };
            }
            // SAFETY: AMX is enabled (the contract); the accumulators are all stored.
            unsafe { release() };
        },
    );
}
