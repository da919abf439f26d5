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
//! Not for: attention's per-head products or element-wise ops (`kernels.rs`).

mod microkernel;

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

/// A weight matrix `[n, k]` (PyTorch's layout, `y = x Wᵀ`) packed for the microkernels, with its bias.
pub struct PackedWeight {
    simd: Simd,
    n: usize,
    k: usize,
    nr: usize,
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
        let (_, nr) = simd.tile();
        let panels = n.div_ceil(nr);
        let mut data = vec![Line([0.0; 16]); (panels * k * nr).div_ceil(16)];
        let flat = lines_as_floats_mut(&mut data);
        for (j, row) in w.chunks_exact(k).enumerate() {
            let panel = &mut flat[(j / nr) * k * nr..][..k * nr];
            for (p, &v) in row.iter().enumerate() {
                panel[p * nr + j % nr] = v;
            }
        }
        let mut padded = vec![0f32; panels * nr];
        if let Some(b) = bias {
            padded[..n].copy_from_slice(b);
        }
        Some(Self {
            simd,
            n,
            k,
            nr,
            data,
            bias: padded,
        })
    }

    /// `y (m × n) = x (m × k) · Wᵀ + b (+ residual (m × n))`, all row-major.
    pub fn matmul(&self, x: &[f32], m: usize, residual: Option<&[f32]>, y: &mut [f32]) {
        self.check(x, m, residual);
        assert_eq!(y.len(), m * self.n, "dense: output size");
        // SAFETY: sizes checked just above.
        unsafe { self.matmul_raw(x, m, residual, y.as_mut_ptr()) }
    }

    /// As [`Self::matmul`], into a new vector (not zeroed first: every element is written once).
    pub fn matmul_vec(&self, x: &[f32], m: usize, residual: Option<&[f32]>) -> Vec<f32> {
        self.check(x, m, residual);
        let mut y = Vec::with_capacity(m * self.n);
        // SAFETY: sizes checked just above; the capacity holds m × n floats, and matmul_raw writes
        // every one of them (each row tile of each panel, the cut last panel by run_edge).
        unsafe {
            self.matmul_raw(x, m, residual, y.as_mut_ptr());
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
    unsafe fn matmul_raw(&self, x: &[f32], m: usize, residual: Option<&[f32]>, y: *mut f32) {
        let panels = self.n.div_ceil(self.nr);
        // Column blocks: at least two per thread so the split stays even, at most 8 panels (a
        // KC × 256 weight block, 256 KiB: an L2's share) each.
        let threads = rayon::current_num_threads().max(1);
        let per_task = panels
            .div_ceil(2 * threads)
            .clamp(1, 256 / self.nr.min(256));
        let a = self.pack_rows(x, m);
        let out = SendPtr(y);
        (0..panels.div_ceil(per_task))
            .into_par_iter()
            .for_each(|task| {
                let first = task * per_task;
                let last = (first + per_task).min(panels);
                // SAFETY: tasks write disjoint column ranges of y (panels first..last); every
                // pointer handed to `block` stays inside a, y, residual, data and bias (see `block`).
                unsafe { self.block(&a, m, residual, out.get(), first..last) };
            });
    }

    /// `x` (m × k) in panels of MR rows, each k's MR values adjacent (rows past m are zero), so the
    /// microkernel reads one contiguous stream instead of MR rows a whole row apart.
    fn pack_rows(&self, x: &[f32], m: usize) -> Vec<Line> {
        let (k, (mr, _)) = (self.k, self.simd.tile());
        let panel = k * mr;
        let lines = (m.div_ceil(mr) * panel).div_ceil(16);
        let mut a: Vec<Line> = Vec::with_capacity(lines);
        let spare = a.spare_capacity_mut();
        // SAFETY: MaybeUninit<Line> is 16 MaybeUninit<f32> (repr(C), no padding).
        let floats: &mut [std::mem::MaybeUninit<f32>] =
            unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast(), lines * 16) };
        floats
            .par_chunks_mut(panel)
            .enumerate()
            .for_each(|(i, dst)| {
                let rows = x
                    .get(i * mr * k..((i + 1) * mr * k).min(x.len()))
                    .unwrap_or(&[]);
                for (r, row) in rows.chunks_exact(k).enumerate() {
                    for (p, &v) in row.iter().enumerate() {
                        dst[p * mr + r].write(v);
                    }
                }
                // The last panel's missing rows (and the tail of the last line, a chunk of no rows).
                let have = rows.len() / k;
                if have < mr {
                    for (idx, slot) in dst.iter_mut().enumerate() {
                        if idx % mr >= have {
                            slot.write(0.0);
                        }
                    }
                }
            });
        // SAFETY: every float of the `lines` lines was written above.
        unsafe { a.set_len(lines) };
        a
    }

    /// All rows of the output columns of panels `range`.
    ///
    /// # Safety
    /// `y` points to `m × n` floats; no other thread writes columns of these panels.
    unsafe fn block(
        &self,
        a: &[Line],
        m: usize,
        residual: Option<&[f32]>,
        y: *mut f32,
        range: std::ops::Range<usize>,
    ) {
        let (n, k, nr) = (self.n, self.k, self.nr);
        let (mr, _) = self.simd.tile();
        let data = lines_as_floats(&self.data);
        let a = lines_as_floats(a);
        let mut edge = [0f32; 16 * 32];
        // Row blocks of at most MC rows, as even as whole tiles allow (257 rows: one block).
        let mc = m.div_ceil(m.div_ceil(MC)).next_multiple_of(mr);
        let slice = |j: usize, pc: usize| data.as_ptr().add(j * k * nr + pc * nr);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            // A block of rows (MC × KC) stays in L2 while the panels pass; each weight panel's k
            // block (KC × NR) stays in L1 while the block's row tiles stream past.
            for ic in (0..m).step_by(mc) {
                let tiles = m.min(ic + mc).saturating_sub(ic).div_ceil(mr);
                for j in range.clone() {
                    let col = j * nr;
                    let cols = nr.min(n - col);
                    // The weight slice used after this one (next panel, or the first panel of
                    // the next row block or k block), fetched into L2 a share per row tile: the
                    // weights are read from memory once per image, and the hardware prefetchers
                    // lose the stream at every 4 KiB page of these strided slices.
                    let next = if j + 1 < range.end {
                        Some((j + 1, pc, kc))
                    } else if ic + mc < m {
                        None // the next row block starts again on these panels: already in L2
                    } else if pc + KC < k {
                        Some((range.start, pc + KC, KC.min(k - pc - KC)))
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
                        #[cfg(target_arch = "x86_64")]
                        {
                            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
                            let first = (t * per_tile).min(next_lines);
                            let last = (first + per_tile).min(next_lines);
                            for line in first..last {
                                _mm_prefetch::<_MM_HINT_T1>(next_ptr.add(line * 64).cast());
                            }
                        }
                        let init = if pc == 0 {
                            Init::Start {
                                bias: self.bias.as_ptr().add(col),
                                residual: residual
                                    .map_or(std::ptr::null(), |r| r.as_ptr().add(i0 * n + col)),
                                ldr: n,
                            }
                        } else {
                            Init::Accumulate
                        };
                        let tile = Tile {
                            kc,
                            a: a.as_ptr().add(i0 * k + pc * mr),
                            b: slice(j, pc),
                            c: y.add(i0 * n + col),
                            ldc: n,
                            init,
                        };
                        if cols == nr {
                            self.run(rows, &tile);
                        } else {
                            self.run_edge(rows, cols, tile, &mut edge);
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
        let nr = self.nr;
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
                    std::ptr::copy_nonoverlapping(bias, dst.as_mut_ptr(), nr);
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
            Simd::None => unreachable!("PackedWeight::new refuses Simd::None"),
        }
    }
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
            Dense::Packed(p) if packable(x) => x.contiguous()?.apply_op1_no_bwd(&Op(p)),
            Dense::Packed(_) => mismatch(x),
            Dense::Candle(l) => l.forward(x),
        }
    }

    /// `residual + x · Wᵀ + b`, the residual added in the same pass.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        match self {
            Dense::Packed(p) if packable(x) && packable(residual) => x
                .contiguous()?
                .apply_op2_no_bwd(&residual.contiguous()?, &Op(p)),
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

struct Op<'a>(&'a PackedWeight);

impl Op<'_> {
    fn run(&self, x: &[f32], l: &Layout, residual: Option<&[f32]>) -> Result<(CpuStorage, Shape)> {
        let p = self.0;
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
        let y = p.matmul_vec(x, m, residual);
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
