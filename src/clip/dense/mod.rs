//! The encoder's linear layers on CPU: `y = x · Wᵀ + b (+ residual)` with `W` packed once, at load.
//!
//! A general GEMM (candle's, via the `gemm` crate) re-packs the weight matrix on every call, adds the
//! bias and the residual in passes of their own, and splits small-M products (one image: 257 rows)
//! poorly over threads. Here each weight matrix is laid out at load time in the order the
//! microkernels read it (panels of NR columns, each k's NR floats adjacent, 64-byte aligned), the
//! activations are read in place, the bias and the residual are folded into the accumulators' start,
//! and threads split the output columns so each keeps its own weight block in its L2 cache.
//! Microkernels for AVX2+FMA and AVX-512 (`microkernel.rs`), chosen at run time; `IMGVEC_SIMD=avx2`
//! forces the AVX2 path on an AVX-512 machine (for measuring it). Without either, or on a GPU, or in
//! another dtype, [`Dense`] is candle's `Linear`: the same function everywhere.
//! Self-attention runs on the same tiles, straight from the q/k/v layer's output (`attention.rs`).
//! Not for: element-wise ops (`kernels.rs`).

mod attention;
mod microkernel;

pub use attention::attention_from_qkv;

use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::Linear;
use rayon::prelude::*;

use microkernel::{Init, Tile};

/// The SIMD level the CPU kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    Avx512,
    Avx2,
    /// Neither: candle's own kernels.
    None,
}

impl Simd {
    /// Detected once: the best the CPU has, lowered to AVX2 by `IMGVEC_SIMD=avx2` (or to none by
    /// `IMGVEC_SIMD=none`).
    pub fn get() -> Simd {
        static SIMD: OnceLock<Simd> = OnceLock::new();
        *SIMD.get_or_init(|| {
            let cap = std::env::var("IMGVEC_SIMD").unwrap_or_default();
            let best = detect();
            match (cap.to_ascii_lowercase().as_str(), best) {
                ("none", _) => Simd::None,
                ("avx2", Simd::Avx512) => Simd::Avx2,
                _ => best,
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Simd::Avx512 => "avx512",
            Simd::Avx2 => "avx2+fma",
            Simd::None => "none",
        }
    }

    /// Microkernel tile: rows, columns.
    fn tile(self) -> (usize, usize) {
        #[cfg(target_arch = "x86_64")]
        match self {
            Simd::Avx512 => return (microkernel::avx512::MR, microkernel::avx512::NR),
            Simd::Avx2 => return (microkernel::avx2::MR, microkernel::avx2::NR),
            Simd::None => {}
        }
        (1, 1)
    }
}

fn detect() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Simd::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Simd::Avx2;
        }
    }
    Simd::None
}

/// Depth of one k block: one weight panel's slice (KC × NR) stays in L1.
const KC: usize = 256;

/// Rows of one block of activations, at most: MC × KC floats (264 KiB) stay in L2.
const MC: usize = 264;

/// 64 bytes, the unit of the packed buffer, so every panel starts on a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// What happens to each output tile once its last k block is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    None,
    /// `x · sigmoid(1.702 x)` (OpenAI CLIP's activation), the same arithmetic as the separate kernel.
    QuickGelu,
}

/// A weight matrix `[n, k]` (PyTorch's layout, `y = x Wᵀ`) packed for the microkernels, with its bias.
pub struct PackedWeight {
    simd: Simd,
    n: usize,
    k: usize,
    /// `ceil(n / nr)` panels, each `k × nr` floats (columns past n are zero).
    data: Vec<Line>,
    /// `n` floats rounded up to whole panels (zeros when the layer has none).
    bias: Vec<f32>,
}

impl PackedWeight {
    /// Packs `w` (`n × k`, row-major) and `bias` (`n`); `None` when the CPU has no kernel for it.
    pub fn new(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Option<Self> {
        Self::with_simd(Simd::get(), w, n, k, bias)
    }

    /// As [`Self::new`] for a given SIMD level, which must be one this CPU has.
    fn with_simd(simd: Simd, w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Option<Self> {
        if simd == Simd::None
            || n == 0
            || k == 0
            || w.len() != n * k
            || bias.is_some_and(|b| b.len() != n)
        {
            return None;
        }
        let mut data = Vec::new();
        pack_weight_rows(simd, w, n, k, k, &mut data);
        let (_, nr) = simd.tile();
        let mut padded = vec![0f32; n.div_ceil(nr) * nr];
        if let Some(b) = bias {
            padded[..n].copy_from_slice(b);
        }
        Some(Self {
            simd,
            n,
            k,
            data,
            bias: padded,
        })
    }

    fn panels(&self) -> Panels<'_> {
        Panels {
            simd: self.simd,
            n: self.n,
            k: self.k,
            data: lines_as_floats(&self.data),
            bias: Some(&self.bias),
        }
    }

    /// `y (m × n) = x (m × k) · Wᵀ + b (+ residual (m × n))`, all row-major.
    pub fn matmul(&self, x: &[f32], m: usize, residual: Option<&[f32]>, y: &mut [f32]) {
        self.check(x, m, residual);
        assert_eq!(y.len(), m * self.n, "dense: output size");
        // SAFETY: sizes checked just above.
        unsafe { self.matmul_raw(x, m, None, residual, Epilogue::None, y.as_mut_ptr()) }
    }

    /// As [`Self::matmul`], into a new vector (not zeroed first: every element is written once),
    /// with the rows of `x` layer-normalized first if `norm` is given, and `epilogue` applied.
    pub fn matmul_vec(
        &self,
        x: &[f32],
        m: usize,
        norm: Option<HostNorm<'_>>,
        residual: Option<&[f32]>,
        epilogue: Epilogue,
    ) -> Vec<f32> {
        self.check(x, m, residual);
        assert!(
            norm.is_none_or(|n| n.weight.len() == self.k && n.bias.len() == self.k),
            "dense: norm size"
        );
        let mut y = Vec::with_capacity(m * self.n);
        // SAFETY: sizes checked just above; the capacity holds m × n floats, and matmul_raw writes
        // every one of them (each row tile of each panel, the cut last panel by run_edge).
        unsafe {
            self.matmul_raw(x, m, norm, residual, epilogue, y.as_mut_ptr());
            y.set_len(m * self.n);
        }
        y
    }

    fn check(&self, x: &[f32], m: usize, residual: Option<&[f32]>) {
        assert_eq!(x.len(), m * self.k, "dense: input size");
        assert!(
            residual.is_none_or(|r| r.len() == m * self.n),
            "dense: residual size"
        );
    }

    /// # Safety
    /// `x` holds m × k floats, `residual` (if any) and `y` m × n.
    unsafe fn matmul_raw(
        &self,
        x: &[f32],
        m: usize,
        norm: Option<HostNorm<'_>>,
        residual: Option<&[f32]>,
        epilogue: Epilogue,
        y: *mut f32,
    ) {
        let (_, nr) = self.simd.tile();
        let panels = self.n.div_ceil(nr);
        // Column blocks: at least two per thread so the split stays even, at most 8 panels (a
        // KC × 256 weight block, 256 KiB: an L2's share) each.
        let threads = rayon::current_num_threads().max(1);
        let per_task = panels.div_ceil(2 * threads).clamp(1, 256 / nr.min(256));
        let mut a = Vec::new();
        pack_rows(self.simd, x, m, self.k, self.k, norm, true, &mut a);
        let out = Out {
            y: SendPtr(y),
            ldy: self.n,
            residual: residual.map(|r| SendPtr(r.as_ptr().cast_mut())),
            epilogue,
        };
        let w = self.panels();
        (0..panels.div_ceil(per_task))
            .into_par_iter()
            .for_each(|task| {
                let first = task * per_task;
                let last = (first + per_task).min(panels);
                // SAFETY: tasks write disjoint column ranges of y (panels first..last); every
                // pointer handed to `block` stays inside a, y, residual and the panels (see `block`).
                unsafe { w.block(lines_as_floats(&a), m, &out, first..last) };
            });
    }
}

/// Where a product goes: `y` (rows `ldy` apart), the residual added at the start (same layout,
/// `ldy` apart too), the epilogue applied at the end.
struct Out {
    y: SendPtr,
    ldy: usize,
    residual: Option<SendPtr>,
    epilogue: Epilogue,
}

/// A packed weight matrix, borrowed: `n × k` in panels of NR columns, the bias padded to whole
/// panels (or none).
#[derive(Clone, Copy)]
struct Panels<'a> {
    simd: Simd,
    n: usize,
    k: usize,
    data: &'a [f32],
    bias: Option<&'a [f32]>,
}

impl Panels<'_> {
    /// All `m` rows of packed activations `a` (from [`pack_rows`]) times the output columns
    /// of panels `range`, into `out`.
    ///
    /// # Safety
    /// `out.y` (and `out.residual`) point to m rows of at least n floats, `out.ldy` apart; `a` holds
    /// `ceil(m / MR)` panels of k × MR floats; no other thread writes these columns of y.
    unsafe fn block(&self, a: &[f32], m: usize, out: &Out, range: std::ops::Range<usize>) {
        let (n, k) = (self.n, self.k);
        let (mr, nr) = self.simd.tile();
        let (y, ldy) = (out.y.get(), out.ldy);
        let data = self.data;
        let mut edge = [0f32; 16 * 32];
        // Row blocks of at most MC rows and k blocks of at most KC, each as even as whole tiles
        // allow (257 rows: one block; k = 257: one block, not 256 and 1).
        let mc = m.div_ceil(m.div_ceil(MC)).next_multiple_of(mr);
        let kb = k.div_ceil(k.div_ceil(KC));
        let slice = |j: usize, pc: usize| data.as_ptr().add(j * k * nr + pc * nr);
        // Row blocks outermost: a block's output tiles (MC × the task's columns) stay in L2
        // across all k blocks instead of going back to memory after each (at 8 images, 2,056
        // rows, they would not fit); the weights stream past once per row block.
        for ic in (0..m).step_by(mc) {
            let tiles = m.min(ic + mc).saturating_sub(ic).div_ceil(mr);
            for pc in (0..k).step_by(kb) {
                let kc = kb.min(k - pc);
                let last_k = pc + kc == k;
                // The block of rows (MC × KC) stays in L2 while the panels pass; each weight
                // panel's k block (KC × NR) stays in L1 while the block's row tiles stream past.
                for j in range.clone() {
                    let col = j * nr;
                    let cols = nr.min(n - col);
                    // The weight slice used after this one (next panel, the first panel of the
                    // next k block, or of the next row block), fetched into L2 a share per row
                    // tile: the weights are read from memory once per row block, and the
                    // hardware prefetchers lose the stream at every 4 KiB page of these
                    // strided slices.
                    let next = if j + 1 < range.end {
                        Some((j + 1, pc, kc))
                    } else if !last_k {
                        Some((range.start, pc + kb, kb.min(k - pc - kb)))
                    } else if ic + mc < m {
                        Some((range.start, 0, kb.min(k)))
                    } else {
                        None
                    };
                    let (next_ptr, next_lines) = next
                        .map_or((std::ptr::null(), 0), |(j2, p2, k2)| {
                            (slice(j2, p2).cast::<u8>(), k2 * nr * 4 / 64)
                        });
                    let per_tile = next_lines.div_ceil(tiles.max(1));
                    for (t, i0) in (ic..m.min(ic + mc)).step_by(mr).enumerate() {
                        let rows = mr.min(m - i0);
                        let first = (t * per_tile).min(next_lines);
                        let last = (first + per_tile).min(next_lines);
                        let init = if pc == 0 {
                            Init::Start {
                                bias: self.bias.map_or(std::ptr::null(), |b| b.as_ptr().add(col)),
                                residual: out
                                    .residual
                                    .map_or(std::ptr::null(), |r| r.get().add(i0 * ldy + col)),
                                ldr: ldy,
                            }
                        } else {
                            Init::Accumulate
                        };
                        let tile = Tile {
                            kc,
                            a: a.as_ptr().add(i0 * k + pc * mr),
                            b: slice(j, pc),
                            c: y.add(i0 * ldy + col),
                            ldc: ldy,
                            init,
                            prefetch: next_ptr.wrapping_add(first * 64),
                            prefetch_lines: last - first,
                        };
                        if cols == nr {
                            self.run(rows, &tile);
                        } else {
                            self.run_edge(rows, cols, tile, &mut edge);
                        }
                        if last_k && out.epilogue == Epilogue::QuickGelu {
                            for r in 0..rows {
                                let row = std::slice::from_raw_parts_mut(
                                    y.add((i0 + r) * ldy + col),
                                    cols,
                                );
                                super::kernels::quick_gelu_in_place(row);
                            }
                        }
                    }
                }
            }
        }
    }

    /// A tile whose last panel is cut by n: computed into `edge` (full width), copied out.
    ///
    /// # Safety
    /// As [`Self::block`]; only `cols` columns of the tile exist in y and the residual.
    unsafe fn run_edge(&self, rows: usize, cols: usize, mut tile: Tile, edge: &mut [f32]) {
        let (_, nr) = self.simd.tile();
        for r in 0..rows {
            let dst = &mut edge[r * nr..(r + 1) * nr];
            dst.fill(0.0);
            match tile.init {
                Init::Accumulate => {
                    std::ptr::copy_nonoverlapping(tile.c.add(r * tile.ldc), dst.as_mut_ptr(), cols)
                }
                Init::Start {
                    bias,
                    residual,
                    ldr,
                } => {
                    if !bias.is_null() {
                        std::ptr::copy_nonoverlapping(bias, dst.as_mut_ptr(), nr);
                    }
                    if !residual.is_null() {
                        for (c, d) in dst[..cols].iter_mut().enumerate() {
                            *d += *residual.add(r * ldr + c);
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
        self.run(rows, &tile);
        for r in 0..rows {
            std::ptr::copy_nonoverlapping(edge[r * nr..].as_ptr(), c.add(r * ldc), cols);
        }
    }

    /// # Safety
    /// As [`microkernel::Tile`]; `self.simd` was detected on this CPU.
    unsafe fn run(&self, rows: usize, tile: &Tile) {
        #[cfg(target_arch = "x86_64")]
        match self.simd {
            Simd::Avx512 => microkernel::avx512::run(rows, tile),
            Simd::Avx2 => microkernel::avx2::run(rows, tile),
            Simd::None => unreachable!("no panels are packed for Simd::None"),
        }
    }
}

/// `n` weight rows of `k` floats, `ldw` apart in `w` (`y = x Wᵀ`), into panels of NR columns
/// (each k's NR floats adjacent; columns past n zero), replacing `out`'s contents.
fn pack_weight_rows(simd: Simd, w: &[f32], n: usize, k: usize, ldw: usize, out: &mut Vec<Line>) {
    let (_, nr) = simd.tile();
    out.clear();
    out.resize((n.div_ceil(nr) * k * nr).div_ceil(16), Line([0.0; 16]));
    let flat = lines_as_floats_mut(out);
    for j in 0..n {
        let row = &w[j * ldw..j * ldw + k];
        let panel = &mut flat[(j / nr) * k * nr..][..k * nr];
        for (p, &v) in row.iter().enumerate() {
            panel[p * nr + j % nr] = v;
        }
    }
}

/// The same panels from `w` stored the other way: `k` rows of `n` floats, `ldw` apart
/// (`y = x W`), replacing `out`'s contents.
fn pack_weight_cols(simd: Simd, w: &[f32], k: usize, n: usize, ldw: usize, out: &mut Vec<Line>) {
    let (_, nr) = simd.tile();
    out.clear();
    out.resize((n.div_ceil(nr) * k * nr).div_ceil(16), Line([0.0; 16]));
    let flat = lines_as_floats_mut(out);
    for p in 0..k {
        let row = &w[p * ldw..p * ldw + n];
        for (j, cols) in row.chunks(nr).enumerate() {
            flat[j * k * nr + p * nr..][..cols.len()].copy_from_slice(cols);
        }
    }
}

/// A LayerNorm's parameters on the host: rows normalized while they are packed.
#[derive(Clone, Copy)]
pub struct HostNorm<'a> {
    pub weight: &'a [f32],
    pub bias: &'a [f32],
    pub eps: f32,
}

impl HostNorm<'_> {
    /// Mean and 1/√(variance + eps) of one row (two passes, sixteen partial sums each: the same
    /// function as PyTorch's, and a loop the compiler vectorizes).
    #[inline(always)]
    fn stats(&self, row: &[f32]) -> (f32, f32) {
        #[inline(always)]
        fn sum16(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
            let mut acc = [0f32; 16];
            let mut chunks = row.chunks_exact(16);
            for c in &mut chunks {
                for (a, &v) in acc.iter_mut().zip(c) {
                    *a += f(v);
                }
            }
            acc.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
        }
        let n = row.len().max(1) as f32;
        let mean = sum16(row, |v| v) / n;
        let var = sum16(row, |v| (v - mean) * (v - mean)) / n;
        (mean, 1.0 / (var + self.eps).sqrt())
    }
}

/// Columns of k packed per pass over a panel's rows: the panel's share (PB × MR floats) stays in
/// L1 while the rows are read, where a whole panel (k × MR) would not.
const PB: usize = 64;

dispatch!(pack_panel(simd) => pack_panel_generic(
    dst: &mut [std::mem::MaybeUninit<f32>],
    rows: &[f32],
    have: usize,
    k: usize,
    ldx: usize,
    mr: usize,
    norm: Option<HostNorm<'_>>
));

/// One panel of MR activation rows: for each of k, the rows' values adjacent (missing rows zero).
/// `rows` holds the panel's rows, `ldx` apart, each k long; `norm` normalizes each row on the way.
/// (`pack_panel` is this compiled for a SIMD level.) Each 64-column block of the rows is first
/// copied (or normalized) row by row into a small buffer, vectorized, then written out k by k, so
/// every store is to the panel's next floats rather than MR floats apart.
#[inline(always)]
fn pack_panel_generic(
    dst: &mut [std::mem::MaybeUninit<f32>],
    rows: &[f32],
    have: usize,
    k: usize,
    ldx: usize,
    mr: usize,
    norm: Option<HostNorm<'_>>,
) {
    let mut stats = [(0f32, 1f32); 16];
    if let Some(norm) = norm {
        for (r, st) in stats.iter_mut().enumerate().take(have) {
            *st = norm.stats(&rows[r * ldx..r * ldx + k]);
        }
    }
    let mut block = [[0f32; PB]; 16];
    // (A chunk past the last panel, the tail of the last line, has no rows: zeros only.)
    for p0 in (0..k).step_by(PB).take_while(|_| have > 0) {
        let pend = (p0 + PB).min(k);
        for (r, buf) in block.iter_mut().enumerate().take(have) {
            let src = &rows[r * ldx + p0..r * ldx + pend];
            let buf = &mut buf[..pend - p0];
            match norm {
                None => buf.copy_from_slice(src),
                Some(norm) => {
                    let (mean, rstd) = stats[r];
                    let (w, b) = (&norm.weight[p0..pend], &norm.bias[p0..pend]);
                    for (((o, &v), &w), &b) in buf.iter_mut().zip(src).zip(w).zip(b) {
                        *o = (v - mean) * rstd * w + b;
                    }
                }
            }
        }
        for (i, out) in dst[p0 * mr..pend * mr].chunks_exact_mut(mr).enumerate() {
            for (o, row) in out.iter_mut().zip(&block).take(have) {
                o.write(row[i]);
            }
        }
    }
    if have < mr {
        for (idx, slot) in dst.iter_mut().enumerate() {
            if idx % mr >= have {
                slot.write(0.0);
            }
        }
    }
}

/// `m` rows of `k` floats, `ldx` apart in `x`, in panels of MR rows (see [`pack_panel`]),
/// normalized by `norm` if given, replacing `out`'s contents; the panels split across threads when
/// `parallel` (a layer's input), on this thread otherwise (an attention task's).
#[allow(clippy::too_many_arguments)]
fn pack_rows(
    simd: Simd,
    x: &[f32],
    m: usize,
    k: usize,
    ldx: usize,
    norm: Option<HostNorm<'_>>,
    parallel: bool,
    out: &mut Vec<Line>,
) {
    let (mr, _) = simd.tile();
    let panel = k * mr;
    let lines = (m.div_ceil(mr) * panel).div_ceil(16);
    out.clear();
    out.reserve(lines);
    let spare = &mut out.spare_capacity_mut()[..lines];
    // SAFETY: MaybeUninit<Line> is 16 MaybeUninit<f32> (repr(C), no padding).
    let floats: &mut [std::mem::MaybeUninit<f32>] =
        unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast(), lines * 16) };
    let one = |(i, dst): (usize, &mut [std::mem::MaybeUninit<f32>])| {
        let first = i * mr;
        let have = mr.min(m.saturating_sub(first));
        let rows = x.get(first * ldx..).unwrap_or(&[]);
        pack_panel(simd, dst, rows, have, k, ldx, mr, norm);
    };
    if parallel {
        floats.par_chunks_mut(panel).enumerate().for_each(one);
    } else {
        floats.chunks_mut(panel).enumerate().for_each(one);
    }
    // SAFETY: every float of the `lines` lines was written above (a last chunk shorter than a
    // panel, the line's tail, by pack_panel's zero fill).
    unsafe { out.set_len(lines) };
}

fn lines_as_floats(v: &[Line]) -> &[f32] {
    // SAFETY: Line is repr(C) [f32; 16] (align 64, size 64, no padding).
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<f32>(), v.len() * 16) }
}

fn lines_as_floats_mut(v: &mut [Line]) -> &mut [f32] {
    // SAFETY: as above.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<f32>(), v.len() * 16) }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint column blocks of one output buffer to rayon tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// A linear layer: packed on CPU when the CPU has a kernel, candle's `Linear` otherwise.
pub enum Dense {
    Packed(PackedWeight),
    Candle(Linear),
}

impl Dense {
    /// `weight`: `[out, inp]`; packs it (and drops the tensor) when it lives on the CPU in f32.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        if weight.device().is_cpu() && weight.dtype() == DType::F32 && Simd::get() != Simd::None {
            let (n, k) = weight.dims2()?;
            let w = weight.flatten_all()?.to_vec1::<f32>()?;
            let b = bias.as_ref().map(|b| b.to_vec1::<f32>()).transpose()?;
            if let Some(p) = PackedWeight::new(&w, n, k, b.as_deref()) {
                return Ok(Dense::Packed(p));
            }
        }
        Ok(Dense::Candle(Linear::new(weight, bias)))
    }

    /// `x · Wᵀ + b`, over the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Dense::Packed(p) if packable(x) => x.contiguous()?.apply_op1_no_bwd(&Op::new(p)),
            Dense::Packed(_) => mismatch(x),
            Dense::Candle(l) => l.forward(x),
        }
    }

    /// `quick_gelu(x · Wᵀ + b)`, the activation applied to each output tile while it is in cache.
    pub fn forward_quick_gelu(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Dense::Packed(p) if packable(x) => x.contiguous()?.apply_op1_no_bwd(&Op {
                epilogue: Epilogue::QuickGelu,
                ..Op::new(p)
            }),
            _ => super::kernels::quick_gelu(&self.forward(x)?),
        }
    }

    /// `epilogue(layer_norm(x) · Wᵀ + b)` with each row normalized while it is packed (one pass
    /// over x instead of three); `None` where this layer is not packed for `x` (the caller
    /// normalizes first).
    pub fn forward_normed(
        &self,
        x: &Tensor,
        norm: HostNorm<'_>,
        epilogue: Epilogue,
    ) -> Result<Option<Tensor>> {
        match self {
            Dense::Packed(p) if packable(x) => {
                if norm.weight.len() != p.k || norm.bias.len() != p.k {
                    candle_core::bail!(
                        "dense: a norm of {} for inputs of {}",
                        norm.weight.len(),
                        p.k
                    );
                }
                Ok(Some(x.contiguous()?.apply_op1_no_bwd(&Op {
                    norm: Some(norm),
                    epilogue,
                    ..Op::new(p)
                })?))
            }
            _ => Ok(None),
        }
    }

    /// `residual + x · Wᵀ + b`, the residual added in the same pass.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        match self {
            Dense::Packed(p) if packable(x) && packable(residual) => x
                .contiguous()?
                .apply_op2_no_bwd(&residual.contiguous()?, &Op::new(p)),
            _ => residual + self.forward(x)?,
        }
    }
}

fn packable(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// A packed layer only exists for f32 weights on the CPU, where its inputs live too.
fn mismatch(x: &Tensor) -> Result<Tensor> {
    candle_core::bail!(
        "dense: a packed f32 CPU layer was given {:?} on {:?}",
        x.dtype(),
        x.device().location()
    )
}

struct Op<'a> {
    weight: &'a PackedWeight,
    norm: Option<HostNorm<'a>>,
    epilogue: Epilogue,
}

impl<'a> Op<'a> {
    fn new(weight: &'a PackedWeight) -> Self {
        Self {
            weight,
            norm: None,
            epilogue: Epilogue::None,
        }
    }

    fn run(&self, x: &[f32], l: &Layout, residual: Option<&[f32]>) -> Result<(CpuStorage, Shape)> {
        let p = self.weight;
        let dims = l.shape().dims();
        if dims.last() != Some(&p.k) {
            candle_core::bail!("dense: input {:?}, weight takes {}", l.shape(), p.k);
        }
        let m = l.shape().elem_count() / p.k.max(1);
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = p.n;
        }
        if residual.is_some_and(|r| r.len() != m * p.n) {
            candle_core::bail!("dense: residual does not match the output {out_dims:?}");
        }
        let y = p.matmul_vec(x, m, self.norm, residual, self.epilogue);
        Ok((CpuStorage::F32(y), Shape::from(out_dims)))
    }
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    super::kernels::contiguous_f32(s, l)
        .ok_or_else(|| candle_core::Error::Msg("dense: contiguous f32 expected".into()))
}

impl CustomOp1 for Op<'_> {
    fn name(&self) -> &'static str {
        "imgvec-dense"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run(contiguous_f32(s, l)?, l, None)
    }
}

impl CustomOp2 for Op<'_> {
    fn name(&self) -> &'static str {
        "imgvec-dense-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run(contiguous_f32(s1, l1)?, l1, Some(contiguous_f32(s2, l2)?))
    }
}

#[cfg(test)]
mod tests;
