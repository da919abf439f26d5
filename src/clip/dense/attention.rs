//! Self-attention on CPU straight from the fused q/k/v product, on the packed-GEMM microkernels.
//!
//! The q/k/v layer's output `[batch·tokens, 3·hidden]` holds each token's q, k and v side by side,
//! each split into heads. For every image and head (in parallel, one per task) this packs that
//! head's keys, queries and values from where they lie, then, a panel of queries at a time,
//! multiplies the keys by the queries (the scores transposed, in L1), applies the causal mask and
//! the softmax down the columns, and multiplies the probabilities, read in place, by the values,
//! writing the panel's context rows straight into `[batch·tokens, hidden]`: the layout the output
//! projection reads. So nothing is permuted or copied between the products, and each product runs on
//! the same tiles as the linear layers. Under `--precision bf16` or `int8`, on a CPU with
//! AVX512_BF16, both products run in bf16 on the bf16 layers' tiles (keys, queries, probabilities
//! and values rounded as they are packed, the sums and the softmax in f32). Not for: GPUs, other
//! dtypes, or CPUs without AVX2+FMA (`kernels::attention` and candle's ops do those).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::pack::{
    floats_of, lines_as_floats, pack_rows, pack_weight_cols, pack_weight_rows, Line,
};
use super::tiles::{Elems, Out, Panels, Rows, SendPtr};
use super::{LinearPrecision, Simd};

/// Per-task buffers, reused across the heads a thread runs.
#[derive(Default)]
struct Scratch {
    #[cfg(target_arch = "x86_64")]
    amx: super::amx::attention::Scratch,
    /// In bf16: one operand as pairs before packing; one panel's probabilities as pairs.
    pairs: Vec<f32>,
    probs_pairs: Vec<f32>,
    /// The head's keys, packed as rows.
    keys: Vec<Line>,
    /// The head's queries and values, packed as weight panels (their columns: queries; head dims).
    queries: Vec<Line>,
    values: Vec<Line>,
    /// One panel's scores, then probabilities: n keys × NR queries.
    probs: Vec<Line>,
}

/// `softmax(q kᵀ [+ causal mask]) v` for every image and head of `qkv` (`[batch, tokens, 3·hidden]`,
/// q already scaled by 1/√head_dim), as `[batch, tokens, hidden]`, heads side by side; with
/// `queries`, only for token `queries[i]` of image i (every key and value still counts), as
/// `[batch, 1, hidden]`. `None` where this path does not apply (not f32 on a CPU with AVX2+FMA):
/// the caller uses the general one.
pub fn attention_from_qkv(
    qkv: &Tensor,
    heads: usize,
    causal: bool,
    queries: Option<&[usize]>,
    precision: LinearPrecision,
) -> Result<Option<Tensor>> {
    if !qkv.device().is_cpu() || qkv.dtype() != DType::F32 || Simd::get() == Simd::None {
        return Ok(None);
    }
    let (batch, n, d3) = qkv.dims3()?;
    if heads == 0 || d3 % (3 * heads) != 0 {
        candle_core::bail!("attention: width {d3} is not 3 × {heads} heads");
    }
    if let Some(q) = queries {
        if q.len() != batch || q.iter().any(|&t| t >= n) {
            candle_core::bail!("attention: queries {q:?} for {batch} sequences of {n} tokens");
        }
    }
    Ok(Some(qkv.contiguous()?.apply_op1_no_bwd(&FromQkv {
        simd: Simd::get(),
        heads,
        causal,
        queries: queries.map(<[usize]>::to_vec),
        // Where the layers run on AMX, on its tiles (Sapphire Rapids: `vdpbf16ps` has one port
        // to the FMA's two, and bf16 attention on it measured 3.39 against f32's 2.54 ms a layer).
        mode: match precision {
            LinearPrecision::F32 => Mode::F32,
            _ if super::amx::enabled() => match qkv.dims3()?.2 / 3 / heads {
                hd if amx_fits(hd) => Mode::Amx,
                _ => Mode::F32,
            },
            _ if super::bf16::available() => Mode::Bf16,
            _ => Mode::F32,
        },
    })?))
}

/// The arithmetic of attention's two products.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    F32,
    /// bf16 on the microkernel tiles (`vdpbf16ps`).
    Bf16,
    /// bf16 on AMX's tiles (`amx/attention.rs`).
    Amx,
}

/// Whether AMX's attention takes heads of `hd` dims.
#[cfg(target_arch = "x86_64")]
fn amx_fits(hd: usize) -> bool {
    super::amx::attention::fits(hd)
}
#[cfg(not(target_arch = "x86_64"))]
fn amx_fits(_hd: usize) -> bool {
    false
}

struct FromQkv {
    simd: Simd,
    /// The products' arithmetic ([`Job::mode`]).
    mode: Mode,
    heads: usize,
    causal: bool,
    queries: Option<Vec<usize>>,
}

impl CustomOp1 for FromQkv {
    fn name(&self) -> &'static str {
        "imgvec-attention-qkv"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = super::layer::contiguous_f32(s, l)?;
        let (batch, n, d3) = l.shape().dims3()?;
        let (d, queries) = (d3 / 3, self.queries.as_deref());
        let out = attention(
            (self.simd, self.mode),
            qkv,
            batch,
            n,
            d,
            self.heads,
            self.causal,
            queries,
        );
        let rows = if queries.is_some() { 1 } else { n };
        Ok((CpuStorage::F32(out), Shape::from((batch, rows, d))))
    }
}

/// As [`attention_from_qkv`] on the raw floats: `qkv` is `batch·n` rows of `3·d`; the result
/// `batch·n` rows of `d`, or `batch` with `queries`.
///
/// Per image and head, queries go in panels of NR. For each panel the scores are computed
/// transposed, `k qⱼᵀ` (keys as rows, the panel's queries as columns: each query's scores one
/// column), so the softmax runs down the columns, NR queries in one vector, and the probabilities
/// are already laid out as the rows of the second product (each key's NR values adjacent): `pⱼ v`
/// reads them in place and writes the panel's context rows straight into `out`. The scores never
/// exist for more than one panel (n × NR floats, in L1), and are neither packed nor transposed.
#[allow(clippy::too_many_arguments)]
fn attention(
    (simd, mode): (Simd, Mode),
    qkv: &[f32],
    batch: usize,
    n: usize,
    d: usize,
    heads: usize,
    causal: bool,
    queries: Option<&[usize]>,
) -> Vec<f32> {
    assert_eq!(qkv.len(), batch * n * 3 * d, "attention: qkv size");
    assert!(
        queries.is_none_or(|q| q.len() == batch && q.iter().all(|&t| t < n)),
        "attention: queries"
    );
    let out_rows = if queries.is_some() { batch } else { batch * n };
    let mut out: Vec<f32> = Vec::with_capacity(out_rows * d);
    let job = Job {
        simd,
        mode,
        qkv,
        n,
        d,
        hd: d / heads,
        causal,
        queries,
        out: SendPtr(out.as_mut_ptr()),
    };
    (0..batch * heads)
        .into_par_iter()
        .for_each_init(Scratch::default, |s, task| {
            job.head(s, task / heads, task % heads)
        });
    // SAFETY: every float was written by `Job::head`: each image's rows (all n, or its one
    // query), each head's columns.
    unsafe { out.set_len(out_rows * d) };
    out
}

/// One [`attention`] call's inputs, shared by its tasks.
struct Job<'a> {
    simd: Simd,
    /// In bf16 (`Mode::Bf16`, `Mode::Amx`): keys, queries, probabilities and values rounded to
    /// bf16 as they are packed, the products' sums in f32 (`vdpbf16ps` on the bf16 layers' tiles,
    /// `bf16.rs`; or AMX's `tdpbf16ps`); the softmax in f32. Under `--precision bf16` and `int8`,
    /// where the CPU has AVX512_BF16 (or AMX).
    mode: Mode,
    qkv: &'a [f32],
    /// Tokens per image, model width, head width.
    n: usize,
    d: usize,
    hd: usize,
    causal: bool,
    queries: Option<&'a [usize]>,
    /// The result: `batch·n` rows of d (or `batch` with `queries`), written by the tasks.
    out: SendPtr,
}

impl Job<'_> {
    /// One image's head: packs its keys, queries and values from `qkv`, then runs its panels of
    /// queries into that head's columns of `out`.
    fn head(&self, s: &mut Scratch, image: usize, head: usize) {
        #[cfg(target_arch = "x86_64")]
        if self.mode == Mode::Amx {
            return self.head_amx(&mut s.amx, image, head);
        }
        let (simd, n, d, hd) = (self.simd, self.n, self.d, self.hd);
        let d3 = 3 * d;
        let (mr, nr) = simd.tile();
        let rows = &self.qkv[image * n * d3..(image + 1) * n * d3];
        let (q, k, v) = (
            &rows[head * hd..],
            &rows[d + head * hd..],
            &rows[2 * d + head * hd..],
        );
        // Depth of the scores' product (head dims) and of the context's (keys), in slots.
        let (elems, kq, kv) = if self.mode == Mode::Bf16 {
            self.pack_bf16(s, (q, k, v), mr);
            (Elems::Bf16, hd.div_ceil(2), n.div_ceil(2))
        } else {
            pack_rows(simd, k, n, hd, d3, mr, None, false, &mut s.keys);
            pack_weight_rows(simd, q, n, hd, d3, &mut s.queries);
            pack_weight_cols(simd, v, n, hd, d3, &mut s.values);
            (Elems::F32, hd, n)
        };
        let probs = floats_of(&mut s.probs, n * nr);
        let keys = Rows::packed(lines_as_floats(&s.keys), n);
        let q_panels = lines_as_floats(&s.queries);
        let values = Panels {
            elems,
            simd,
            n: hd,
            k: kv,
            data: lines_as_floats(&s.values),
            bias: None,
        };
        // The panels of queries to run: all, or the one holding the image's query.
        let panels = match self.queries {
            None => 0..n.div_ceil(nr),
            Some(q) => q[image] / nr..q[image] / nr + 1,
        };
        for j in panels {
            // scoresⱼᵀ (n × NR) = k (n × hd) · qⱼᵀ: panel j of the queries is the "weight".
            let panel = Panels {
                elems,
                simd,
                n: nr,
                k: kq,
                data: &q_panels[j * kq * nr..(j + 1) * kq * nr],
                bias: None,
            };
            // SAFETY: probs holds n rows of NR floats; keys and the panel were packed for these
            // sizes above; this task alone uses them.
            unsafe { panel.block(keys, &Out::rows(probs.as_mut_ptr(), nr), 0..1) };
            if self.causal {
                mask_causal(probs, nr, j);
            }
            crate::clip::kernels::softmax_columns(probs, nr);
            // contextⱼ (queries × hd) = pⱼ (queries × n) · v (n × hd), into this head's columns
            // of out (a last panel's missing queries are neither read nor written): the panel's
            // queries from the first, how many, and the output row of the first.
            let (first, count, row) = match self.queries {
                None => (0, nr.min(n - j * nr), image * n + j * nr),
                Some(q) => (q[image] % nr, 1, image),
            };
            let p = if self.mode == Mode::Bf16 {
                // Keys 2i and 2i + 1 of each query side by side: rows of pairs, NR words each.
                s.probs_pairs.resize(kv * nr, 0.0);
                for (i, dst) in s.probs_pairs.chunks_exact_mut(nr).enumerate() {
                    let hi = (2 * i + 1 < n).then(|| &probs[(2 * i + 1) * nr..][..nr]);
                    super::bf16::interleave_rows(&probs[2 * i * nr..][..nr], hi, dst);
                }
                &s.probs_pairs[first..]
            } else {
                &probs[first..]
            };
            let p = Rows {
                data: p,
                m: count,
                width: Some(nr),
                scales: None,
            };
            // SAFETY: row `row`, column head·hd lies inside out (its rows of d); the task writes
            // `count` rows of this head's hd columns from there, d apart, which no other task
            // writes.
            unsafe {
                let ctx = Out::rows(self.out.get().add(row * d + head * hd), d);
                values.block(p, &ctx, 0..hd.div_ceil(nr));
            }
        }
    }

    /// [`Self::head`] on AMX's tiles (`amx/attention.rs`): queries in blocks of 32 as rows, the
    /// softmax along each one's row.
    #[cfg(target_arch = "x86_64")]
    fn head_amx(&self, s: &mut super::amx::attention::Scratch, image: usize, head: usize) {
        use super::amx::attention::{Context, Head};
        let (n, d, hd) = (self.n, self.d, self.hd);
        let d3 = 3 * d;
        let rows = &self.qkv[image * n * d3..(image + 1) * n * d3];
        let h = Head {
            q: &rows[head * hd..],
            k: &rows[d + head * hd..],
            v: &rows[2 * d + head * hd..],
            n,
            hd,
            d3,
        };
        let (first, count, row) = match self.queries {
            None => (0, n, image * n),
            Some(q) => (q[image], 1, image),
        };
        // SAFETY: AMX is enabled (Mode::Amx is chosen only then, for heads it fits); the output
        // rows from `row`, this head's hd columns, `count` rows d apart, are this task's alone,
        // and first + count ≤ n.
        unsafe {
            let ptr = self.out.get().add(row * d + head * hd);
            s.run(
                h,
                self.causal,
                Context {
                    ptr,
                    ld: d,
                    first,
                    count,
                },
            );
        }
    }

    /// Packs one head's keys (as rows), queries and values (as weight panels) in bf16 pairs: the
    /// keys and queries paired along the head dims, the values along the keys.
    fn pack_bf16(&self, s: &mut Scratch, (q, k, v): (&[f32], &[f32], &[f32]), mr: usize) {
        let (n, d3, hd) = (self.n, 3 * self.d, self.hd);
        let (hp, np) = (hd.div_ceil(2), n.div_ceil(2));
        let pairs = &mut s.pairs;
        pairs.resize((n * hp).max(np * hd), 0.0);
        let by_rows = |src: &[f32], pairs: &mut Vec<f32>| {
            for (r, dst) in pairs[..n * hp].chunks_exact_mut(hp).enumerate() {
                super::bf16::to_pairs(&src[r * d3..][..hd], dst);
            }
        };
        by_rows(k, pairs);
        pack_rows(Simd::Avx512, pairs, n, hp, hp, mr, None, false, &mut s.keys);
        by_rows(q, pairs);
        pack_weight_rows(Simd::Avx512, pairs, n, hp, hp, &mut s.queries);
        for (i, dst) in pairs[..np * hd].chunks_exact_mut(hd).enumerate() {
            let hi = (2 * i + 1 < n).then(|| &v[(2 * i + 1) * d3..][..hd]);
            super::bf16::interleave_rows(&v[2 * i * d3..][..hd], hi, dst);
        }
        pack_weight_cols(Simd::Avx512, pairs, np, hd, hd, &mut s.values);
    }
}

/// The causal mask on panel j's scores (n keys × NR queries): query j·NR + c sees keys up to
/// itself (key 0 always: no column is all −∞).
fn mask_causal(probs: &mut [f32], nr: usize, j: usize) {
    for (key, row) in probs.chunks_exact_mut(nr).enumerate() {
        for (c, p) in row.iter_mut().enumerate() {
            if key > j * nr + c {
                *p = f32::NEG_INFINITY;
            }
        }
    }
}

#[cfg(test)]
mod tests;
