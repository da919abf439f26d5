//! The encoder's linear layers on CPU: `y = x · Wᵀ + b (+ residual)` with `W` packed once, at load.
//!
//! A general GEMM (candle's, via the `gemm` crate) re-packs the weight matrix on every call, adds the
//! bias and the residual in passes of their own, and splits small-M products (one image: 257 rows)
//! poorly over threads. Here each weight matrix is laid out at load time in the order the
//! microkernels read it (panels of NR columns, each k's NR floats adjacent, 64-byte aligned), the
//! activations are read in place, the bias and the residual are folded into the accumulators' start,
//! and threads split the output columns so each keeps its own weight block in its L2 cache.
//! Microkernels for AVX2+FMA and AVX-512 (`microkernel.rs`), chosen at run time; `IMGVEC_SIMD=avx2`
//! forces the AVX2 path on an AVX-512 machine (for measuring it). Where the CPU has AMX the layers
//! run there instead (`amx/`; `IMGVEC_SIMD=avx512` keeps them on the f32 AVX-512 kernels).
//! Without any of these, or on a GPU, or in another dtype, [`Dense`] is candle's `Linear`: the same
//! function everywhere. Self-attention runs on the same tiles, straight from the q/k/v layer's
//! output (`attention.rs`). Here: the SIMD level, the packed weights, the MLP and the buffer pool;
//! the candle-facing layer is in `layer.rs`, the layouts and packing in `pack.rs`, the blocked tile
//! loop in `tiles.rs`. Not for: element-wise ops (`kernels.rs`).

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(not(target_arch = "x86_64"))]
#[path = "amx_none.rs"]
mod amx;
mod attention;
pub mod bf16;
pub mod int8;
mod layer;
mod microkernel;
mod microkernel_int8;
mod mlp;
mod pack;
mod tiles;

pub use attention::attention_from_qkv;
pub use layer::{Dense, LinearPrecision};
pub use mlp::mlp;
pub use pack::HostNorm;
pub use tiles::Epilogue;

use std::sync::OnceLock;

use rayon::prelude::*;

use pack::{lines_as_floats, pack_rows, pack_weight_rows, rows_lines, Line};
use tiles::{Elems, Out, Panels, Rows, SendPtr};

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
            let best = detect();
            match (requested_simd(), best) {
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

/// `IMGVEC_SIMD`, lower-cased (empty when unset): the level asked for.
fn requested_simd() -> &'static str {
    static CAP: OnceLock<String> = OnceLock::new();
    CAP.get_or_init(|| {
        std::env::var("IMGVEC_SIMD")
            .unwrap_or_default()
            .to_ascii_lowercase()
    })
}

/// What the linear layers run on here: `amx-bf16x3` (see `amx/`), or the f32 kernels' SIMD level.
pub fn linear_kernels() -> &'static str {
    if amx::enabled() {
        "amx-bf16x3"
    } else {
        Simd::get().name()
    }
}

/// The `--precision` values this CPU runs on its own kernels: f32 always (where there are kernels
/// at all), bf16 with AVX512_BF16, int8 with AVX2 or AVX-512 (fastest with VNNI or AMX-INT8).
pub fn cpu_precisions() -> Vec<&'static str> {
    let mut p = vec!["f32"];
    if bf16::available() {
        p.push("bf16");
    }
    if int8::available() {
        p.push("int8");
    }
    p
}

/// Why the `layers` kernels (bf16, int8) do not run here: no AVX-512 kernels, or AVX-512 without
/// `instructions` (which `cpus` have).
fn missing_instructions(layers: &str, instructions: &str, cpus: &str) -> String {
    if Simd::get() != Simd::Avx512 {
        format!(
            "the CPU's linear layers run on {} here, and the {layers} layers need AVX-512 with {instructions} ({cpus})",
            Simd::get().name()
        )
    } else {
        format!("this CPU has AVX-512 but not {instructions} ({cpus} have it)")
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

/// A weight matrix `[n, k]` (PyTorch's layout, `y = x Wᵀ`) packed for the microkernels, with its bias.
pub struct PackedWeight {
    simd: Simd,
    /// The arithmetic: f32; bf16 pairs (`bf16.rs`: the panels hold ⌈k / 2⌉ words a column, the
    /// input rounded to bf16 as it is packed); or int8 quads (`int8.rs`: ⌈k / 4⌉ words, the input
    /// quantized per row as it is packed, `int8` holding the columns' scales).
    precision: LinearPrecision,
    int8: Option<int8::Weights>,
    n: usize,
    k: usize,
    /// `ceil(n / nr)` panels, each `k × nr` floats (columns past n are zero; bf16: ⌈k / 2⌉ pairs,
    /// int8: ⌈k / 4⌉ quads).
    data: Vec<Line>,
    /// `n` floats rounded up to whole panels (zeros when the layer has none).
    bias: Vec<f32>,
    /// The same weights in AMX tiles, where the layer runs on AMX (`data` is empty then).
    amx: Option<amx::AmxWeight>,
}

impl PackedWeight {
    /// Packs `w` (`n × k`, row-major) and `bias` (`n`); `None` when the CPU has no kernel for it.
    pub fn new(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Option<Self> {
        if Self::valid(w, n, k, bias) {
            if let Some(t) = amx::AmxWeight::pack(w, n, k, amx::AmxKind::Split) {
                return Some(Self {
                    amx: Some(t),
                    ..Self::without_weights(Simd::get(), n, k, bias)
                });
            }
        }
        Self::with_simd(Simd::get(), w, n, k, bias)
    }

    /// As [`Self::new`], the weights rounded to bf16: on AMX's tiles where it is [`amx::enabled`]
    /// (one `tdpbf16ps` product where f32 takes three) and n is a multiple of 32, else on
    /// AVX512_BF16 (see `bf16.rs`); `None` where the CPU has neither ([`bf16::available`]).
    pub fn new_bf16(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Option<Self> {
        if !Self::valid(w, n, k, bias) {
            return None;
        }
        if let Some(t) = amx::AmxWeight::pack(w, n, k, amx::AmxKind::Bf16) {
            return Some(Self {
                precision: LinearPrecision::Bf16,
                amx: Some(t),
                ..Self::without_weights(Simd::get(), n, k, bias)
            });
        }
        Self::bf16_avx512(w, n, k, bias)
    }

    /// As [`Self::new_bf16`] on AVX512_BF16's kernels (`bf16.rs`), AMX or not.
    fn bf16_avx512(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Option<Self> {
        if !bf16::available() || !Self::valid(w, n, k, bias) {
            return None;
        }
        let mut p = Self {
            precision: LinearPrecision::Bf16,
            ..Self::without_weights(Simd::Avx512, n, k, bias)
        };
        bf16::pack_weight(w, n, k, &mut p.data);
        Some(p)
    }

    /// As [`Self::new`], the weights quantized to int8 per output column (see `int8.rs`), for the
    /// int8 tiles of [`int8::level`]; `None` where the CPU has no int8 kernel.
    /// On AMX-INT8's tiles where [`amx::int8_enabled`] and n is a multiple of 32 (`tdpbssd`: 1,024
    /// byte products a cycle, exact i32 sums over all of k, then one scaling), else on VNNI.
    pub fn new_int8(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Option<Self> {
        if Self::valid(w, n, k, bias) {
            if let Some(t) = amx::AmxWeight::pack_int8(w, n, k) {
                return Some(Self {
                    precision: LinearPrecision::Int8,
                    amx: Some(t),
                    ..Self::without_weights(Simd::get(), n, k, bias)
                });
            }
        }
        Self::int8_at(int8::level()?, w, n, k, bias)
    }

    /// As [`Self::new_int8`] for the int8 tiles of `simd`, if this CPU runs them
    /// ([`int8::runs_at`]): the tests check both levels where both run.
    fn int8_at(simd: Simd, w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Option<Self> {
        Self::int8_with(simd, int8::dot_at(simd), w, n, k, bias)
    }

    /// As [`Self::int8_at`], the tiles summing with `dot` (which this CPU must have at `simd`:
    /// [`int8::Dot::Madd`] runs wherever AVX2 does, so the tests check it on every CPU).
    fn int8_with(
        simd: Simd,
        dot: int8::Dot,
        w: &[f32],
        n: usize,
        k: usize,
        bias: Option<&[f32]>,
    ) -> Option<Self> {
        if !int8::runs_at(simd) || !Self::valid(w, n, k, bias) {
            return None;
        }
        let mut p = Self {
            precision: LinearPrecision::Int8,
            ..Self::without_weights(simd, n, k, bias)
        };
        let padded = p.bias.len();
        p.int8 = Some(int8::pack_weight(simd, dot, w, n, k, padded, &mut p.data));
        Some(p)
    }

    /// The layer's arithmetic.
    pub fn precision(&self) -> LinearPrecision {
        self.precision
    }

    fn valid(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> bool {
        n > 0 && k > 0 && w.len() == n * k && bias.is_none_or(|b| b.len() == n)
    }

    /// As [`Self::new`] for a given SIMD level, which must be one this CPU has (f32 panels).
    fn with_simd(simd: Simd, w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Option<Self> {
        if simd == Simd::None || !Self::valid(w, n, k, bias) {
            return None;
        }
        let mut p = Self::without_weights(simd, n, k, bias);
        pack_weight_rows(simd, w, n, k, k, &mut p.data);
        Some(p)
    }

    /// The sizes and the bias (padded to whole panels), no weights yet.
    fn without_weights(simd: Simd, n: usize, k: usize, bias: Option<&[f32]>) -> Self {
        let (_, nr) = simd.tile();
        let mut padded = vec![0f32; n.div_ceil(nr) * nr];
        if let Some(b) = bias {
            padded[..n].copy_from_slice(b);
        }
        Self {
            simd,
            precision: LinearPrecision::F32,
            int8: None,
            n,
            k,
            data: Vec::new(),
            bias: padded,
            amx: None,
        }
    }

    fn panels(&self) -> Panels<'_> {
        Panels {
            simd: self.simd,
            elems: match (&self.int8, self.precision) {
                (Some(q), _) => Elems::Int8 {
                    scale: &q.scale,
                    dot: q.dot,
                    comp: &q.comp,
                },
                (None, LinearPrecision::Bf16) => Elems::Bf16,
                (None, _) => Elems::F32,
            },
            n: self.n,
            k: self.depth(),
            data: lines_as_floats(&self.data),
            bias: Some(&self.bias),
        }
    }

    /// The k of the panels: k, its pairs in bf16, its quads in int8.
    fn depth(&self) -> usize {
        match self.precision {
            LinearPrecision::F32 => self.k,
            LinearPrecision::Bf16 => self.k.div_ceil(2),
            LinearPrecision::Int8 => self.k.div_ceil(4),
        }
    }

    /// `y (m × n) = x (m × k) · Wᵀ + b (+ residual (m × n))`, all row-major.
    pub fn matmul(&self, x: &[f32], m: usize, residual: Option<&[f32]>, y: &mut [f32]) {
        self.check(x, m, None, residual);
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
        self.check(x, m, norm, residual);
        let mut y = Vec::with_capacity(m * self.n);
        // SAFETY: sizes checked just above; the capacity holds m × n floats, and matmul_raw writes
        // every one of them (each row tile of each panel, the cut last panel by run_edge).
        unsafe {
            self.matmul_raw(x, m, norm, residual, epilogue, y.as_mut_ptr());
            y.set_len(m * self.n);
        }
        y
    }

    fn check(&self, x: &[f32], m: usize, norm: Option<HostNorm<'_>>, residual: Option<&[f32]>) {
        assert_eq!(x.len(), m * self.k, "dense: input size");
        assert!(
            norm.is_none_or(|n| n.weight.len() == self.k && n.bias.len() == self.k),
            "dense: norm size"
        );
        assert!(
            residual.is_none_or(|r| r.len() == m * self.n),
            "dense: residual size"
        );
    }

    /// # Safety
    /// `x` holds m × k floats, `residual` (if any) m × n; `y` is valid for writes of m × n floats
    /// that nothing else accesses during the call.
    unsafe fn matmul_raw(
        &self,
        x: &[f32],
        m: usize,
        norm: Option<HostNorm<'_>>,
        residual: Option<&[f32]>,
        epilogue: Epilogue,
        y: *mut f32,
    ) {
        let mut a = pool::take();
        self.pack_input(x, m, norm, &mut a);
        let out = Out {
            residual: residual.map(|r| SendPtr(r.as_ptr().cast_mut())),
            epilogue: epilogue.at(self.precision),
            ..Out::rows(y, self.n)
        };
        // SAFETY: `a` was just packed by pack_input for this layer (m rows of k); `out` writes y,
        // m rows of n floats n apart, and reads the residual in the same layout (the contract);
        // nothing but this call's tasks touches y meanwhile (the contract).
        unsafe { self.run(&a, m, &out) };
        pool::give(a);
    }

    /// `m` rows of `x` (normalized by `norm` if given) packed as this layer reads them, into `out`.
    fn pack_input(&self, x: &[f32], m: usize, norm: Option<HostNorm<'_>>, out: &mut Vec<Line>) {
        match &self.amx {
            Some(w) => amx::pack_rows(x, m, self.k, norm, w.kind, out),
            None if self.precision == LinearPrecision::Bf16 => {
                bf16::pack_rows(x, m, self.k, self.simd.tile().0, norm, out)
            }
            None if self.precision == LinearPrecision::Int8 => {
                let dot = self.int8.as_ref().map_or(int8::Dot::Vnni, |q| q.dot);
                int8::pack_rows(self.simd, dot, x, m, self.k, norm, out)
            }
            None => {
                let mr = self.simd.tile().0;
                pack_rows(self.simd, x, m, self.k, self.k, mr, norm, true, out)
            }
        }
    }

    /// Lines that `m` rows take packed as this layer reads them.
    fn input_lines(&self, m: usize) -> usize {
        match &self.amx {
            Some(w) => amx::rows_lines(m, self.k, w.kind),
            None if self.precision == LinearPrecision::Int8 => {
                int8::rows_lines(self.simd, m, self.k)
            }
            None => rows_lines(self.simd, m, self.depth()),
        }
    }

    /// `residual + a · Wᵀ + b` into a new vector, `a` m rows packed for this layer.
    ///
    /// # Safety
    /// `a` holds m rows packed for this layer; `residual` m × n floats.
    unsafe fn rows_plus(&self, a: &[Line], m: usize, residual: &[f32]) -> Vec<f32> {
        let mut y = Vec::with_capacity(m * self.n);
        let out = Out {
            residual: Some(SendPtr(residual.as_ptr().cast_mut())),
            ..Out::rows(y.as_mut_ptr(), self.n)
        };
        // SAFETY: y's capacity holds m × n floats, every one written by `run`; the rest the
        // contract.
        unsafe {
            self.run(a, m, &out);
            y.set_len(m * self.n);
        }
        y
    }

    /// Packed rows `a` (m of them, from [`Self::pack_input`]) times the weights into `out` (with
    /// `out.packed`, as the next layer's packed rows, [`Self::pack_input`]'s layout for the same
    /// kernels), the threads splitting the output columns.
    ///
    /// # Safety
    /// `a` holds m rows packed for this layer (by [`Self::pack_input`]); `out` is as
    /// [`Panels::block`] (or [`amx::matmul`]) requires for m × n (each task accumulates in a
    /// scratch block when `out.packed` is set, and on AVX-512 always, copying finished tiles to y).
    unsafe fn run(&self, a: &[Line], m: usize, out: &Out) {
        if let Some(w) = &self.amx {
            // SAFETY: `self.amx` is only set when AmxWeight::pack found AMX enabled; `a` was packed
            // by amx::pack_rows for w.k (pack_input, as the contract says); `self.bias` holds n
            // floats rounded up to whole panels; `out` as the contract says for m × n.
            return unsafe { amx::matmul(w, &self.bias, a, m, out) };
        }
        let a = lines_as_floats(a);
        // int8 rows: their scales and compensations after the panels.
        let (a, scales) = match self.precision {
            LinearPrecision::Int8 => {
                let (a, s) = a.split_at(int8::scales_at(self.simd, m, self.k));
                (a, Some(&s[..int8::extras(m, self.k)]))
            }
            _ => (a, None),
        };
        let (_, nr) = self.simd.tile();
        let panels = self.n.div_ceil(nr);
        // Column blocks: at least two per thread so the split stays even, at most 8 panels (a
        // KC × 256 weight block, 256 KiB: an L2's share) each.
        let threads = rayon::current_num_threads().max(1);
        let per_task = panels.div_ceil(2 * threads).clamp(1, 256 / nr.min(256));
        let w = self.panels();
        (0..panels.div_ceil(per_task))
            .into_par_iter()
            .for_each_init(Vec::new, |scratch: &mut Vec<f32>, task| {
                let first = task * per_task;
                let last = (first + per_task).min(panels);
                let mut out = *out;
                // AVX-512's 14-row tiles through a scratch block (+3% at batch 1 and 8, pair.sh);
                // AVX2's 6 rows fit an L1 set's ways (no change measured), so they go straight.
                if self.simd == Simd::Avx512 && out.packed.is_none() && out.to_y.is_none() {
                    out.to_y = Some((out.y, out.ldy));
                }
                if out.packed.is_some() || out.to_y.is_some() {
                    // Only room: `block` writes each tile (the first k block) before it reads it
                    // back, through raw pointers, so the buffer is neither zeroed nor given a length.
                    scratch.reserve(tiles::block_rows(m, self.simd) * per_task * nr);
                    out.y = SendPtr(scratch.as_mut_ptr());
                    out.ldy = per_task * nr;
                }
                // SAFETY: tasks write disjoint column ranges of y or of the packed rows (panels
                // first..last); every pointer handed to `block` stays inside a, y (or this task's
                // scratch block), residual and the panels (see `block`).
                unsafe {
                    w.block(
                        Rows {
                            scales,
                            ..Rows::packed(a, m)
                        },
                        &out,
                        first..last,
                    )
                };
            });
    }
}

/// Packed-row buffers kept per thread between calls: at 8 images a layer's rows are up to 33 MB,
/// which the allocator would otherwise map fresh (and the kernel zero, page by page) every time.
mod pool {
    use super::Line;
    use std::cell::RefCell;

    thread_local! {
        static FREE: RefCell<Vec<Vec<Line>>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer (empty, or with the contents of an earlier use).
    pub fn take() -> Vec<Line> {
        FREE.with(|f| f.borrow_mut().pop()).unwrap_or_default()
    }

    /// Back for the next call on this thread (two kept: the MLP's pair).
    pub fn give(v: Vec<Line>) {
        FREE.with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < 2 {
                f.push(v);
            }
        });
    }
}

#[cfg(test)]
mod reduced_tests;
#[cfg(test)]
mod tests;
