//! The blocked loop of the packed GEMM: one borrowed weight matrix in panels times packed rows,
//! tile by tile through the microkernels, into an output with its own row stride — the bias and
//! residual at each tile's start, the epilogue at its end (or the finished tile written as the next
//! layer's packed rows), the next weight slice and the next block of rows prefetched. Used by the
//! linear layers (`mod.rs`, threads over column ranges) and by attention's per-head products
//! (`attention.rs`, one task each). Not for: packing (`pack.rs`) or the inner loops (`microkernel.rs`).

use super::int8::Dot;
use super::microkernel::{self, Init, Prefetch, Quant, Tile};
use super::microkernel_int8;
use super::pack::interleave;
use super::Simd;

/// Depth of one k block: one weight panel's slice (KC × NR) stays in L1.
const KC: usize = 256;

/// The depth of the k blocks for depth `k`: at most KC, as even as whole steps allow (k = 257: one
/// block, not 256 and 1).
pub(super) fn k_block(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC).max(1)).max(1)
}

/// Rows of one block of activations, at most: MC × KC floats (180 KiB) stay in L2, with the
/// block's output tiles for a task's columns. AVX-512 (14-row tiles): 100–180 measured alike; 264:
/// 2% slower at 8 images, 528 and more: 8–13% slower; one image is two blocks of 140 rows.
const MC: usize = 180;
/// The same for AVX2's 6-row tiles: one image in one block (258 rows), each weight read from
/// memory once an image instead of twice: +0.9% at batch 1, +0.5% at batch 8 against 180.
const MC_AVX2: usize = 264;

/// What happens to each output tile once its last k block is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    None,
    /// `x · sigmoid(1.702 x)` (OpenAI CLIP's activation), the same arithmetic as the separate kernel.
    QuickGelu,
    /// Quick-GELU with its exponential on fused multiply-adds, within a few units in the last place
    /// of [`Epilogue::QuickGelu`] and about 1.5 times its speed: what the bf16 and int8 layers
    /// apply (their outputs are rounded to 8 bits or fewer next), never the f32 ones.
    QuickGeluFma,
    /// GELU's tanh approximation (SigLIP's `gelu_pytorch_tanh`), as `x · sigmoid(2·√(2/π)·(x +
    /// 0.044715 x³))`.
    GeluTanh,
    /// Exact GELU (`gelu`), `0.5 x (1 + erf(x/√2))`, erf to 1.5·10⁻⁷ (`kernels::gelu_erf_one`).
    GeluErf,
}

impl Epilogue {
    /// The activation of a finished row of outputs `src`, written to `dst` (as long).
    pub(super) fn apply_into(self, src: &[f32], dst: &mut [f32]) {
        match self {
            Epilogue::QuickGelu => crate::clip::kernels::quick_gelu_slice(src, dst),
            Epilogue::QuickGeluFma => crate::clip::kernels::quick_gelu_fma_slice(src, dst),
            _ => {
                dst.copy_from_slice(src);
                self.apply(dst);
            }
        }
    }

    /// The activation a layer of `precision` applies for `self`: quick-GELU on fused multiply-adds
    /// for the bf16 and int8 layers, `self` otherwise.
    pub(super) fn at(self, precision: super::LinearPrecision) -> Self {
        match (self, precision) {
            (Epilogue::QuickGelu, super::LinearPrecision::Bf16 | super::LinearPrecision::Int8) => {
                Epilogue::QuickGeluFma
            }
            _ => self,
        }
    }

    /// Applies the activation to a finished row of outputs, in place.
    pub(super) fn apply(self, row: &mut [f32]) {
        match self {
            Epilogue::None => {}
            Epilogue::QuickGelu => crate::clip::kernels::quick_gelu_in_place(row),
            Epilogue::QuickGeluFma => crate::clip::kernels::quick_gelu_fma_in_place(row),
            Epilogue::GeluTanh => crate::clip::kernels::gelu_tanh_in_place(row),
            Epilogue::GeluErf => crate::clip::kernels::gelu_erf_in_place(row),
        }
    }
}

/// A raw output pointer that rayon tasks may share.
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
// SAFETY: used only to hand disjoint parts of one output buffer (column blocks, or one head's
// columns) to rayon tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Where a product goes: `y` (rows `ldy` apart), the residual added at the start (same layout,
/// `ldy` apart too), the epilogue applied at the end.
#[derive(Clone, Copy)]
pub(super) struct Out {
    pub(super) y: SendPtr,
    pub(super) ldy: usize,
    pub(super) residual: Option<SendPtr>,
    pub(super) epilogue: Epilogue,
    /// When set, the product goes here instead, as the next layer's packed rows (panels of MR
    /// rows, its k being this product's n: what `pack_rows` would make of y), and `y` is only a
    /// scratch block for one task: [`block_rows`] rows of the task's columns (`ldy` = their
    /// count), where tiles accumulate over the k blocks and stay in L2. No residual then.
    pub(super) packed: Option<SendPtr>,
    /// When set, `y` is likewise a task's scratch block, and each finished tile is copied here
    /// (rows this many floats apart), where the residual is read too: a tile's rows 4–16 KiB apart
    /// in the real output all fall in one L1 set, more of them than it has ways.
    pub(super) to_y: Option<(SendPtr, usize)>,
    /// When set (AMX int8 rows whose next layer is int8 too), each task writes the largest |value|
    /// of each finished row over its columns here, at `row · n / 32 + ` its first column pair (the
    /// other slots left as they are: zero), so that the next layer's row scales need no pass of
    /// their own over the rows (`amx::pack_rows_int8_with`).
    pub(super) row_max: Option<SendPtr>,
}

impl Out {
    /// Into `y`, rows `ldy` apart.
    pub(super) fn rows(y: *mut f32, ldy: usize) -> Self {
        Self {
            y: SendPtr(y),
            ldy,
            residual: None,
            epilogue: Epilogue::None,
            packed: None,
            to_y: None,
            row_max: None,
        }
    }
}

/// Rows of one row block for `m` rows in the level's tiles: at most MC (MC_AVX2 for AVX2's 6-row
/// tiles), as even as whole tiles allow (257 rows: two blocks of 140, or one of 258).
pub(super) fn block_rows(m: usize, simd: Simd) -> usize {
    let most = if simd == Simd::Avx2 { MC_AVX2 } else { MC };
    m.div_ceil(m.div_ceil(most).max(1))
        .next_multiple_of(simd.tile().0)
}

/// The block after the one at row ic, k pc (the next k block of these rows, or the first of the
/// next row block), as (first row, first k, depth); `None` after the last. Blocks are `mc` rows
/// by `kb` deep, over `m` rows of depth `k`.
fn next_block(
    ic: usize,
    pc: usize,
    (mc, kb): (usize, usize),
    (m, k): (usize, usize),
) -> Option<(usize, usize, usize)> {
    if pc + kb < k {
        Some((ic, pc + kb, kb.min(k - pc - kb)))
    } else if ic + mc < m {
        Some((ic + mc, 0, kb.min(k)))
    } else {
        None
    }
}

/// The rows a product reads (its A operand): `m` rows of k.
#[derive(Clone, Copy)]
pub(super) struct Rows<'a> {
    pub(super) data: &'a [f32],
    pub(super) m: usize,
    /// `None`: packed by `pack_rows` (panels of MR rows, each k's MR values adjacent).
    /// `Some(w)`: one block of up to `w` rows, each k's `w` values adjacent (attention's
    /// probabilities, shaped like one weight panel), read in place and not prefetched.
    pub(super) width: Option<usize>,
    /// For int8 rows ([`Elems::Int8`]): m scales, then for each k block m compensations (i32
    /// bits; `super::int8::pack_rows`).
    pub(super) scales: Option<&'a [f32]>,
}

impl<'a> Rows<'a> {
    /// `m` rows packed by `pack_rows`.
    pub(super) fn packed(data: &'a [f32], m: usize) -> Self {
        Self {
            data,
            m,
            width: None,
            scales: None,
        }
    }
}

/// What one 32-bit slot of packed weights and rows holds, and so which microkernel runs.
#[derive(Clone, Copy)]
pub(super) enum Elems<'a> {
    F32,
    /// Two bf16 (`super::bf16`): `k` counts pairs; the tiles run `vdpbf16ps` (AVX-512 only).
    Bf16,
    /// Four bytes (`super::int8`): `k` counts quads; the tiles run `vpdpbusd` (zmm or ymm) or
    /// AVX2's `vpmaddubsw` ([`Dot`]), with the columns' scales (whole panels) and the rows' scales
    /// and compensations ([`Rows`]; the columns' under [`Dot::Madd`]).
    Int8 {
        scale: &'a [f32],
        dot: Dot,
        /// Under [`Dot::Madd`]: each k block's column compensations (`super::int8::Weights`).
        comp: &'a [i32],
    },
}

/// A packed weight matrix, borrowed: `n × k` in panels of NR columns, the bias padded to whole
/// panels (or none).
#[derive(Clone, Copy)]
pub(super) struct Panels<'a> {
    pub(super) simd: Simd,
    /// What each "float" of the panels and of the packed rows holds.
    pub(super) elems: Elems<'a>,
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) data: &'a [f32],
    pub(super) bias: Option<&'a [f32]>,
}

impl Panels<'_> {
    /// All `rows.m` rows of `rows` times the output columns of panels `range`, into `out`.
    ///
    /// # Safety
    /// `self` is as [`Panels`] says: `data` holds ⌈n / NR⌉ panels of k × NR floats, 64-byte aligned
    /// (as [`super::pack::Line`]s are), `bias` (if any) whole panels; `self.simd` was detected on
    /// this CPU; `range` lies within the panels. `rows` holds m rows of k as its layout says
    /// (`None`: ⌈m / MR⌉ panels of k × MR floats; `Some(w)`: m ≤ w, row i's value p at p · w + i,
    /// at least (k − 1) · w + m floats). `out` as [`Out`] says: without `packed` and `to_y`,
    /// `out.y` (and `out.residual`) point to m rows of at least n floats, `out.ldy` apart; with
    /// either, `out.y` is a scratch block of [`block_rows`] rows of `range.len()` × NR floats,
    /// `out.ldy` (≥ that width) apart, `to_y`'s pointer (and the residual) m rows of n floats, its
    /// stride apart, and `packed` room for m rows packed for k = n in panels of MR. Nothing else
    /// accesses what this call writes (the columns of `range`) meanwhile.
    pub(super) unsafe fn block(&self, rows: Rows<'_>, out: &Out, range: std::ops::Range<usize>) {
        let (n, k) = (self.n, self.k);
        let (mr, nr) = self.simd.tile();
        let (a, m) = (rows.data, rows.m);
        // Where row i0's values for k = pc start, and how far apart successive k's are.
        let (row_step, k_step) = rows.width.map_or((k, mr), |w| (1, w));
        let packed = rows.width.is_none();
        let (y, ldy) = (out.y.get(), out.ldy);
        let data = self.data;
        let mut edge = [0f32; 16 * 32];
        // Row blocks of at most MC rows and k blocks of at most KC, each as even as whole tiles
        // allow (257 rows: one block; k = 257: one block, not 256 and 1).
        let mc = block_rows(m, self.simd);
        let kb = k_block(k);
        // SAFETY: called only with a panel j in `range` and a k block's start pc < k (below), so
        // the offset lies inside `data`, ⌈n / NR⌉ panels of k × NR floats (the contract).
        let slice = |j: usize, pc: usize| unsafe { data.as_ptr().add(j * k * nr + pc * nr) };
        // Where tile (row i0 of the row block from ic, column col) accumulates.
        // SAFETY: i0 < m is a row of the row block from ic (i0 − ic < [`block_rows`]) and col the
        // first column of a panel in `range`: the element lies inside y's m rows of n floats, or
        // inside the scratch block of block_rows rows of `range.len()` × NR (the contract).
        let c_at = |i0: usize, ic: usize, col: usize| unsafe {
            match (out.packed, out.to_y) {
                (None, None) => y.add(i0 * ldy + col),
                _ => y.add((i0 - ic) * ldy + col - range.start * nr),
            }
        };
        debug_assert!(out.packed.is_none() || out.residual.is_none());
        // Row blocks outermost: a block's output tiles (MC × the task's columns) stay in L2
        // across all k blocks instead of going back to memory after each (at 8 images, 2,056
        // rows, they would not fit); the weights stream past once per row block.
        for ic in (0..m).step_by(mc) {
            let tiles = m.min(ic + mc).saturating_sub(ic).div_ceil(mr);
            for pc in (0..k).step_by(kb) {
                let kc = kb.min(k - pc);
                let last_k = pc + kc == k;
                // The block after this one (the next k block of these rows, or the first of the
                // next row block) as (first row, first k, depth). Its rows' panels are each
                // fetched into L2 an n-th at a time by the tiles of the same row over the n weight
                // panels. Without it each row tile's first product (of `range.len()`) waits on
                // memory: at 8 images the packed rows (up to 33 MB) are far out of cache.
                let following = next_block(ic, pc, (mc, kb), (m, k));
                let rows_prefetch = |t: usize, jj: usize| match following {
                    Some((ic2, pc2, kc2)) if packed && ic2 + t * mr < m.min(ic2 + mc) => {
                        let lines = (kc2 * mr * 4).div_ceil(64);
                        let (lo, hi) = (jj * lines / range.len(), (jj + 1) * lines / range.len());
                        Prefetch {
                            // SAFETY: packed rows (checked just above): row ic2 + t·MR < m starts a
                            // panel of k × MR floats (ic2 a multiple of MR), pc2 < k, so the offset
                            // lies inside `rows.data` (⌈m / MR⌉ such panels: the contract).
                            start: unsafe { a.as_ptr().add((ic2 + t * mr) * k + pc2 * mr) }
                                .cast::<u8>()
                                .wrapping_add(lo * 64),
                            lines: hi - lo,
                        }
                    }
                    _ => Prefetch::NONE,
                };
                // The block of rows (MC × KC) stays in L2 while the panels pass; each weight
                // panel's k block (KC × NR) stays in L1 while the block's row tiles stream past.
                for (jj, j) in range.clone().enumerate() {
                    let col = j * nr;
                    let cols = nr.min(n - col);
                    // The weight slice used after this one (next panel, the first panel of the
                    // next k block, or of the next row block), fetched into L1 a share per row
                    // tile: the weights are read from memory once per row block, and the
                    // hardware prefetchers lose the stream at every 4 KiB page of these
                    // strided slices.
                    let next = if j + 1 < range.end {
                        Some((j + 1, pc, kc))
                    } else {
                        following.map(|(_, pc2, kc2)| (range.start, pc2, kc2))
                    };
                    let (next_ptr, next_lines) = next
                        .map_or((std::ptr::null(), 0), |(j2, p2, k2)| {
                            (slice(j2, p2).cast::<u8>(), k2 * nr * 4 / 64)
                        });
                    let per_tile = next_lines.div_ceil(tiles.max(1));
                    for (t, i0) in (ic..m.min(ic + mc)).step_by(mr).enumerate() {
                        let tile_rows = mr.min(m - i0);
                        let first = (t * per_tile).min(next_lines);
                        let last = (first + per_tile).min(next_lines);
                        let init = if pc == 0 {
                            self.start(out, i0, col)
                        } else {
                            Init::Accumulate
                        };
                        // The rows the next tile reads (this k block's, of the next row tile or,
                        // for the next panel, of the block's first again).
                        let a_next = if packed {
                            let i1 = if i0 + mr < m.min(ic + mc) {
                                i0 + mr
                            } else {
                                ic
                            };
                            // SAFETY: packed rows: i1 < m (the next tile's first row, or this
                            // block's) starts a panel of k × MR floats, pc < k: inside `rows.data`.
                            unsafe { a.as_ptr().add(i1 * k + pc * mr) }
                        } else {
                            std::ptr::null()
                        };
                        let tile = Tile {
                            kc,
                            // SAFETY: row i0 < m at k = pc < k in either layout (packed: its panel
                            // from i0 · k, each k MR floats; width w: value pc · w + i0).
                            a: unsafe { a.as_ptr().add(i0 * row_step + pc * k_step) },
                            a_step: k_step,
                            b: slice(j, pc),
                            c: c_at(i0, ic, col),
                            ldc: ldy,
                            init,
                            prefetch: [
                                Prefetch {
                                    start: next_ptr.wrapping_add(first * 64),
                                    lines: last - first,
                                },
                                rows_prefetch(t, jj),
                            ],
                            a_next,
                            quant: self.quant(rows, i0, col, pc / kb),
                        };
                        // SAFETY: `tile` is valid as `Tile` says for tile_rows ≤ MR rows: `a` at
                        // row i0, its values first in each of kc steps k_step apart (packed: all
                        // inside the row's panel; width rows: the tile's values in the data at
                        // every step), `b` panel j's kc × NR floats from pc, 64-byte aligned (the panels' start is, and every panel
                        // and k step is a multiple of 64 bytes), `c` tile_rows rows (ldy apart) of
                        // y or the scratch block, bias and residual as above; `self.simd` was
                        // detected (the contract). A panel cut by n (cols < NR) goes through
                        // run_edge, which gives the kernel a full-width `c`.
                        unsafe {
                            if cols == nr {
                                self.run(tile_rows, &tile);
                            } else {
                                self.run_edge(tile_rows, cols, tile, &mut edge);
                            }
                        }
                        if last_k {
                            // SAFETY: the tile just finished at c_at: `tile_rows` rows of `cols`
                            // floats, ldy apart, which only this task touches; i0 < m and col
                            // starts panel j in `range` (the contract).
                            unsafe {
                                self.finish(out, c_at(i0, ic, col), i0, col, tile_rows, cols)
                            };
                        }
                    }
                }
            }
        }
    }

    /// The int8 kernel's scales and compensations for tile (row i0, column col) in k block
    /// `blk`; none for other panels.
    fn quant(&self, rows: Rows<'_>, i0: usize, col: usize, blk: usize) -> Quant {
        match (self.elems, rows.scales) {
            // wrapping_add: only computed here; the kernel reads R row scales and compensations
            // from i0 < m (block blk's m compensations after the m scales: `Rows`) and NR column
            // scales from col, a panel's start (whole panels: `Elems`).
            (Elems::Int8 { scale, dot, comp }, Some(s)) => Quant {
                rows: s.as_ptr().wrapping_add(i0),
                cols: scale.as_ptr().wrapping_add(col),
                // Under Madd the columns' (NR from col, block blk's padded row of them).
                comp: match dot {
                    Dot::Vnni => s
                        .as_ptr()
                        .wrapping_add(rows.m * (1 + blk) + i0)
                        .cast::<i32>(),
                    Dot::Madd => comp.as_ptr().wrapping_add(blk * scale.len() + col),
                },
            },
            _ => Quant::NONE,
        }
    }

    /// How tile (row i0, column col) starts: the bias (if any) plus the residual (if any).
    fn start(&self, out: &Out, i0: usize, col: usize) -> Init {
        // The residual is laid out as y (ldy apart), or as to_y when set (its own stride).
        let rld = out.to_y.map_or(out.ldy, |(_, l)| l);
        Init::Start {
            // wrapping_add: the pointers are only computed here; the kernel reads them, and
            // `block`'s contract makes col a panel's start and (i0, col) a residual element.
            bias: self
                .bias
                .map_or(std::ptr::null(), |b| b.as_ptr().wrapping_add(col)),
            residual: out.residual.map_or(std::ptr::null(), |r| {
                r.get().wrapping_add(i0 * rld + col).cast_const()
            }),
            ldr: rld,
        }
    }

    /// A tile whose last k block is in: the epilogue, then the copy to `to_y` or into the next
    /// layer's packed rows, as `out` asks.
    ///
    /// # Safety
    /// `c` is the finished tile: `tile_rows` ≤ MR rows of `cols` initialized floats, `out.ldy`
    /// apart, in y or the scratch block, which nothing else touches meanwhile; row i0 < m and
    /// columns col..col + cols ≤ n lie inside `to_y`'s rows and the packed rows as
    /// [`Self::block`]'s contract says (row i0 starting a panel of MR); `self.simd` was detected.
    unsafe fn finish(
        &self,
        out: &Out,
        c: *mut f32,
        i0: usize,
        col: usize,
        tile_rows: usize,
        cols: usize,
    ) {
        let ldy = out.ldy;
        if out.epilogue != Epilogue::None {
            for r in 0..tile_rows {
                // SAFETY: row r of the finished tile: `cols` initialized floats that only this
                // task touches and nothing else borrows meanwhile (the contract).
                let row = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldy), cols) };
                out.epilogue.apply(row);
            }
        }
        if let Some((ry, rld)) = out.to_y {
            for r in 0..tile_rows {
                // SAFETY: row i0 + r < m, columns col..col + cols ≤ n of to_y's m rows of n floats
                // (rld apart), from the tile's row r in the scratch block, a separate buffer.
                unsafe {
                    let dst = ry.get().add((i0 + r) * rld + col);
                    std::ptr::copy_nonoverlapping(c.add(r * ldy), dst, cols);
                }
            }
        }
        if let Some(p) = out.packed {
            let (mr, n) = (self.simd.tile().0, self.n);
            debug_assert!(
                !matches!(self.elems, Elems::Int8 { .. }),
                "int8 rows never chain"
            );
            if let Elems::Bf16 = self.elems {
                // SAFETY: as below, for the next layer's rows in bf16 pairs (k = n / 2, even n:
                // `mlp` chains only then), whose panel i0 / MR holds n / 2 × MR words; the pairs
                // of this tile's columns, col / 2.., one contiguous run in it (col is a panel's
                // start, NR even).
                unsafe {
                    let dst = p.get().add(i0 * (n / 2) + col / 2 * mr);
                    super::bf16::interleave_pairs(c, ldy, tile_rows, cols, mr, dst);
                }
                return;
            }
            // Row i0 starts a panel (row blocks are whole tiles); in it, each column's MR values
            // are adjacent, so the tile's columns are one contiguous run.
            // SAFETY: panel i0 / MR of the packed rows (n × MR floats) from column col: room for
            // cols × MR floats (the contract); the tile's rows in the scratch block, ldy apart;
            // `self.simd` was detected on this CPU.
            unsafe {
                let dst = p.get().add(i0 * n + col * mr);
                interleave(self.simd, c, ldy, tile_rows, cols, mr, dst);
            }
        }
    }

    /// A tile whose last panel is cut by n: computed into `edge` (full width), copied out.
    ///
    /// # Safety
    /// As [`Self::run`], except that only `cols` (< NR) columns of the tile exist in `tile.c` and
    /// the residual (the bias, if any, still NR floats: whole panels); `tile.c` is not in `edge`.
    unsafe fn run_edge(&self, rows: usize, cols: usize, mut tile: Tile, edge: &mut [f32]) {
        let (_, nr) = self.simd.tile();
        for r in 0..rows {
            let dst = &mut edge[r * nr..(r + 1) * nr];
            dst.fill(0.0);
            match tile.init {
                Init::Accumulate => {
                    // SAFETY: row r < rows of C has `cols` floats at c + r · ldc (the contract);
                    // dst is NR ≥ cols floats of `edge`, which C is not part of.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            tile.c.add(r * tile.ldc),
                            dst.as_mut_ptr(),
                            cols,
                        )
                    }
                }
                Init::Start {
                    bias,
                    residual,
                    ldr,
                } => {
                    if !bias.is_null() {
                        // SAFETY: a non-null bias holds NR floats (whole panels: the contract);
                        // dst is NR floats of the local `edge`.
                        unsafe { std::ptr::copy_nonoverlapping(bias, dst.as_mut_ptr(), nr) };
                    }
                    if !residual.is_null() {
                        for (c, d) in dst[..cols].iter_mut().enumerate() {
                            // SAFETY: row r < rows, column c < cols of the residual, which has
                            // those (ldr apart: the contract).
                            *d += unsafe { *residual.add(r * ldr + c) };
                        }
                    }
                }
            }
        }
        let c = tile.c;
        let ldc = tile.ldc;
        tile.c = edge.as_mut_ptr();
        tile.ldc = nr;
        tile.init = Init::Accumulate;
        // SAFETY: the tile now accumulates into `edge`, rows × NR floats NR apart (the loop above
        // indexed every one of them, so `edge` holds them), already holding the start; its other
        // pointers are the caller's, valid for full panels (the contract).
        unsafe { self.run(rows, &tile) };
        for r in 0..rows {
            // SAFETY: row r < rows of the caller's C, `cols` floats at c + r · ldc (the contract),
            // from `edge`, a separate buffer.
            unsafe { std::ptr::copy_nonoverlapping(edge[r * nr..].as_ptr(), c.add(r * ldc), cols) };
        }
    }

    /// # Safety
    /// `tile`'s pointers are valid as [`microkernel::Tile`] says for `rows` rows, 1 ≤ `rows` ≤ MR,
    /// `tile.b` 64-byte aligned; `self.simd` was detected on this CPU.
    unsafe fn run(&self, rows: usize, tile: &Tile) {
        // SAFETY: the caller's contract is the microkernels' (valid pointers for `rows` rows, `b`
        // aligned for either level's loads); `self.simd` says the CPU has the level's features
        // (AVX-512F, or AVX2 and FMA; AVX512_BF16 or VNNI too for bf16 or int8 panels, packed
        // only where `super::bf16::available` or `super::int8::runs_at` the level; int8 rows
        // carry their scales, the panels theirs, as `Elems::Int8` says).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            match self.simd {
                Simd::Avx512 => match self.elems {
                    Elems::F32 => microkernel::avx512::run(rows, tile),
                    Elems::Bf16 => microkernel::avx512::run_bf16(rows, tile),
                    Elems::Int8 { .. } => microkernel_int8::avx512::run(rows, tile),
                },
                Simd::Avx2 => match self.elems {
                    Elems::Int8 { dot: Dot::Madd, .. } => {
                        microkernel_int8::avx2::run_madd(rows, tile)
                    }
                    Elems::Int8 { .. } => microkernel_int8::avx2::run(rows, tile),
                    _ => microkernel::avx2::run(rows, tile),
                },
                Simd::None => unreachable!("no panels are packed for Simd::None"),
            }
        }
    }
}
