//! Attention for one image's head on AMX's tiles, in bf16 (`--precision bf16` and `int8` where AMX
//! is enabled; `attention.rs` hands each image's head here).
//!
//! The products run the way the rows lie, so that almost nothing is transposed. For a block of 32
//! queries (two row tiles) at a time:
//! - the scores `S = Q Kᵀ` (32 queries × the keys), queries as the A rows (each query's head dims
//!   rounded to bf16 pairs where they lie), keys as B (the one transposing pack: a head-dim pair a
//!   row, a key a word), stored as f32 rows;
//! - each query's softmax along its row (the causal mask: the keys past the query count as zero),
//!   the exponentials scaled by 1 / their sum as they are rounded into bf16 pairs, as A rows;
//! - the context `O = P V`, values as B (a key pair a row: two value rows interleaved, contiguous),
//!   stored by the tile unit straight into the output rows (a block whose rows run past the
//!   image's tokens goes through a scratch block).
//!
//! Every operand is rounded to bf16 (nearest even), every sum is f32: `bf16.rs`'s arithmetic in the
//! tile unit's order of adds. Head dims and keys past the real ones are zero, so they add nothing.

use std::arch::asm;

use super::super::bf16::{interleave_rows, to_pairs, to_pairs_scaled};
use super::super::pack::{floats_of, lines_as_floats_mut, Line};
use super::tile::{release, Config};

/// Queries a block: two row tiles.
const BLOCK: usize = 32;

/// Head widths this path takes: whole k tiles of head dims (32).
pub(in crate::clip::dense) fn fits(hd: usize) -> bool {
    hd > 0 && hd.is_multiple_of(32)
}

/// One task's buffers, reused across the heads it runs (64-byte lines, so every row the tiles read
/// starts on a cache line: each row below is a whole number of lines).
#[derive(Default)]
pub(in crate::clip::dense) struct Scratch {
    /// The queries as A rows: ⌈n / 16⌉ · 16 rows of hd / 2 words (bf16 pairs along the head
    /// dims), zero past the last query.
    queries: Vec<Line>,
    /// The keys as B rows: hd / 2 rows (one head-dim pair each) of `keys` words (one a key), zero
    /// past the last key.
    keys: Vec<Line>,
    /// The values as B rows: `keys` / 2 rows (one key pair each) of hd words (one a head dim: the
    /// pair's two values), zero past the last key.
    values: Vec<Line>,
    /// One block's scores: 32 rows of `keys` floats.
    scores: Vec<Line>,
    /// One block's probabilities as A rows: 32 rows of `keys` / 2 words.
    probs: Vec<Line>,
    /// A block's context where its rows are not all the output's: 32 rows of hd floats.
    spill: Vec<Line>,
}

/// One image's head: `q`, `k`, `v` each token's row `d3` floats apart, the head's `hd` values
/// from the start of each; `n` tokens.
#[derive(Clone, Copy)]
pub(in crate::clip::dense) struct Head<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub n: usize,
    pub hd: usize,
    pub d3: usize,
}

/// Where a head's context goes: query t's hd floats at `ptr + (t − first) · ld`, for the queries
/// `first..first + count`.
#[derive(Clone, Copy)]
pub(in crate::clip::dense) struct Context {
    pub ptr: *mut f32,
    pub ld: usize,
    pub first: usize,
    pub count: usize,
}

/// The sizes of one head's buffers.
#[derive(Clone, Copy)]
struct Dims {
    n: usize,
    hd: usize,
    /// Keys padded to whole k tiles of the second product (32).
    keys: usize,
    /// Query row tiles: ⌈n / 16⌉.
    groups: usize,
}

impl Dims {
    fn of(h: &Head<'_>) -> Self {
        Dims {
            n: h.n,
            hd: h.hd,
            keys: h.n.div_ceil(BLOCK) * BLOCK,
            groups: h.n.div_ceil(16),
        }
    }
}

impl Scratch {
    /// Attention for head `h`: `softmax(q kᵀ [+ causal mask]) v` for the queries `out` names,
    /// written there.
    ///
    /// # Safety
    /// AMX is enabled; `out.first + out.count ≤ h.n`; `out` is valid for writes of `out.count`
    /// rows of `h.hd` floats, `out.ld` apart, that nothing else accesses meanwhile; [`fits`]`(h.hd)`.
    pub(in crate::clip::dense) unsafe fn run(&mut self, h: Head<'_>, causal: bool, out: Context) {
        let dims = Dims::of(&h);
        self.pack(h, dims);
        floats_of(&mut self.scores, BLOCK * dims.keys);
        floats_of(&mut self.probs, BLOCK * dims.keys / 2);
        floats_of(&mut self.spill, BLOCK * dims.hd);
        // SAFETY: AMX is enabled (the contract).
        unsafe { Config::new(16).load() };
        let (first, last) = (out.first / 16, (out.first + out.count - 1) / 16);
        // Blocks of two row tiles from the first wanted; one tile alone at the end.
        let mut g = first;
        while g <= last {
            let two = g < last;
            // SAFETY: the buffers were sized for `dims` above; g (and g + 1 when `two`) ≤ last <
            // groups; AMX is enabled and configured; `out`'s rows as the contract says.
            unsafe { self.block(dims, g, two, causal, out) };
            g += if two { 2 } else { 1 };
        }
        // SAFETY: AMX is enabled; every tile was stored.
        unsafe { release() };
    }

    /// Packs the head's queries, keys and values as the products read them (bf16, nearest even).
    fn pack(&mut self, h: Head<'_>, dims: Dims) {
        let Dims {
            n,
            hd,
            keys,
            groups,
        } = dims;
        let (hw, d3) = (hd / 2, h.d3);
        let queries = floats_of(&mut self.queries, groups * 16 * hw);
        for (t, row) in queries.chunks_exact_mut(hw).enumerate() {
            if t < n {
                // The head's lines of the token 8 on: its queries into L1, its keys and values
                // into L2 for the loops below (its rows are 3·d floats apart, too far for the
                // hardware's stride prefetcher; at 8 images q/k/v is in L3).
                if t + 8 < n {
                    for l in (0..hd).step_by(16) {
                        let at = (t + 8) * d3 + l;
                        // SAFETY: a prefetch reads nothing; the addresses lie in q/k/v's rows.
                        unsafe {
                            use std::arch::x86_64::*;
                            _mm_prefetch::<_MM_HINT_T0>(h.q.as_ptr().wrapping_add(at).cast());
                            _mm_prefetch::<_MM_HINT_T1>(h.k.as_ptr().wrapping_add(at).cast());
                            _mm_prefetch::<_MM_HINT_T1>(h.v.as_ptr().wrapping_add(at).cast());
                        }
                    }
                }
                to_pairs(&h.q[t * d3..][..hd], row);
            } else {
                row.fill(0.0);
            }
        }
        let kt = floats_of(&mut self.keys, hw * keys);
        for t0 in (0..n).step_by(16) {
            // SAFETY: AMX is enabled, so the CPU has AVX-512F and AVX512_BF16 (`enabled`); hd
            // is a multiple of 32 (`fits`); kt holds hw rows of `keys` ≥ t0 + 16 words (keys is
            // n rounded up to 32, t0 a multiple of 16 below n).
            unsafe { keys_block(h, t0, kt, keys) };
        }
        for row in kt.chunks_exact_mut(keys) {
            row[n..].fill(0.0);
        }
        let values = floats_of(&mut self.values, keys / 2 * hd);
        for (p, row) in values.chunks_exact_mut(hd).enumerate() {
            if 2 * p < n {
                let hi = (2 * p + 1 < n).then(|| &h.v[(2 * p + 1) * d3..][..hd]);
                interleave_rows(&h.v[2 * p * d3..][..hd], hi, row);
            } else {
                row.fill(0.0);
            }
        }
    }

    /// Row tiles g (and g + 1 when `two`) of the queries: their scores, softmax and context, the
    /// context rows `out` wants written there.
    ///
    /// # Safety
    /// As [`Self::run`], which calls it after packing with `dims` and sizing the buffers, with
    /// the tile configuration loaded; g (+ 1 when `two`) < dims.groups.
    unsafe fn block(&mut self, dims: Dims, g: usize, two: bool, causal: bool, out: Context) {
        let Dims { n, hd, keys, .. } = dims;
        let rows = if two { BLOCK } else { 16 };
        let t0 = g * 16;
        let queries = self.queries.as_ptr().cast::<u8>();
        let scores = self.scores.as_mut_ptr().cast::<u8>();
        // S = Q Kᵀ: 32 keys (two column tiles) a product, over the head dims.
        let (lda, ldb, lds) = (hd * 2, keys * 4, keys * 4);
        for kp in 0..keys / 32 {
            // SAFETY: A: query rows t0.. (16 or 32 of them: < groups · 16), hd / 32 k tiles of
            // 64 bytes each; B: key columns kp·32.. (+ 32 < keys), hd / 32 k tiles of 16 rows
            // `ldb` apart; C: score rows 0..rows, columns kp·32.., inside 32 rows of `keys`.
            unsafe {
                product(
                    (
                        queries.add(t0 * lda),
                        two.then(|| queries.add((t0 + 16) * lda)),
                    ),
                    lda,
                    (self.keys.as_ptr().cast::<u8>().add(kp * 128), ldb, 16 * ldb),
                    hd / 32,
                    (scores.add(kp * 128), lds),
                )
            };
        }
        let scores = &mut lines_as_floats_mut(&mut self.scores)[..rows * keys];
        let probs = &mut lines_as_floats_mut(&mut self.probs)[..rows * keys / 2];
        for (r, (s, p)) in scores
            .chunks_exact_mut(keys)
            .zip(probs.chunks_exact_mut(keys / 2))
            .enumerate()
        {
            // Rows past the last query are never stored; their probabilities are left as they are.
            let t = t0 + r;
            if t < n {
                let valid = if causal { t + 1 } else { n };
                let mut inv = 0.0;
                crate::clip::kernels::exp_row_prefix(s, valid, &mut inv);
                to_pairs_scaled(s, inv, p);
            }
        }
        // O = P V: 32 head dims (two column tiles) a product, over the keys. Straight into the
        // output when every row of the block is one it wants, else through `spill`.
        let direct = out.first <= t0 && t0 + rows <= out.first + out.count;
        let (c, ldc) = if direct {
            // SAFETY: rows t0..t0 + rows are all inside out's (the test above).
            (unsafe { out.ptr.add((t0 - out.first) * out.ld) }, out.ld)
        } else {
            (self.spill.as_mut_ptr().cast::<f32>(), hd)
        };
        let probs = self.probs.as_ptr().cast::<u8>();
        let (lda, ldb) = (keys * 2, hd * 4);
        for dp in 0..hd / 32 {
            // SAFETY: A: probability rows 0..rows, keys / 32 k tiles; B: value columns dp·32..
            // (+ 32 ≤ hd), keys / 32 k tiles of 16 pair rows; C: rows 0..rows of `c`, columns
            // dp·32.., writable (out's rows, the contract, or spill's 32 rows of hd).
            unsafe {
                product(
                    (probs, two.then(|| probs.add(16 * lda))),
                    lda,
                    (
                        self.values.as_ptr().cast::<u8>().add(dp * 128),
                        ldb,
                        16 * ldb,
                    ),
                    keys / 32,
                    (c.add(dp * 32).cast::<u8>(), ldc * 4),
                )
            };
        }
        if !direct {
            let spill = lines_as_floats_mut(&mut self.spill);
            let wanted = out.first.max(t0)..(out.first + out.count).min(t0 + rows);
            for t in wanted {
                let src = &spill[(t - t0) * hd..][..hd];
                // SAFETY: t is one of out's queries; its row holds hd floats (the contract); src
                // is this task's own buffer.
                unsafe {
                    let dst = out.ptr.add((t - out.first) * out.ld);
                    std::ptr::copy_nonoverlapping(src.as_ptr(), dst, hd);
                }
            }
        }
    }
}

/// Keys `t0..t0 + 16` of head `h` (zero past its last) rounded to bf16 pairs and written down
/// their columns of the B rows `kt` (head-dim pair p's row `keys` words from p · keys, key t its
/// word t): 16 keys' pairs at a time, transposed in registers (16 × 16 words twice) and stored as
/// rows of 16, not 32 scattered words a key.
///
/// # Safety
/// The CPU has AVX-512F and AVX512_BF16; `h.hd` is a multiple of 32; `kt` holds `h.hd / 2` rows
/// of `keys` words, `t0 + 16 ≤ keys`.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn keys_block(h: Head<'_>, t0: usize, kt: &mut [f32], keys: usize) {
    use std::arch::x86_64::*;
    let hw = h.hd / 2;
    debug_assert!(t0 + 16 <= keys && kt.len() >= hw * keys);
    // 16 words of pairs at a time: head dims 32c..32c + 32 of each key.
    for c in 0..hw / 16 {
        let mut r = [_mm512_setzero_si512(); 16];
        for (j, r) in r.iter_mut().enumerate() {
            if t0 + j < h.n {
                let at = (t0 + j) * h.d3 + 32 * c;
                let (lo, hi) = (&h.k[at..][..16], &h.k[at + 16..][..16]);
                // SAFETY: 16 floats each, just sliced; 32 bf16 are 64 bytes, as an __m512i.
                *r = unsafe {
                    let (lo, hi) = (_mm512_loadu_ps(lo.as_ptr()), _mm512_loadu_ps(hi.as_ptr()));
                    std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
                };
            }
        }
        transpose16(&mut r);
        for (p, r) in r.iter().enumerate() {
            let row = &mut kt[(16 * c + p) * keys + t0..][..16];
            // SAFETY: 16 words, just sliced.
            unsafe { _mm512_storeu_si512(row.as_mut_ptr().cast(), *r) };
        }
    }
}

/// A 16 × 16 matrix of 32-bit words, one row a register, transposed in place.
#[target_feature(enable = "avx512f")]
fn transpose16(r: &mut [std::arch::x86_64::__m512i; 16]) {
    use std::arch::x86_64::*;
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for i in 0..4 {
        r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for i in 0..2 {
        for j in 0..4 {
            let (a, b) = (r[8 * i + j], r[8 * i + j + 4]);
            t[8 * i + j] = _mm512_shuffle_i32x4::<0x88>(a, b);
            t[8 * i + j + 4] = _mm512_shuffle_i32x4::<0xdd>(a, b);
        }
    }
    for j in 0..8 {
        r[j] = _mm512_shuffle_i32x4::<0x88>(t[j], t[j + 8]);
        r[j + 8] = _mm512_shuffle_i32x4::<0xdd>(t[j], t[j + 8]);
    }
}

/// C = A · B over `steps` k tiles, from zero, as 16 or 32 rows × 32 columns of f32 (two column
/// tiles; the second row tile when `a.1` is given): `tdpbf16ps`. A's row tiles at `a.0` and `a.1`
/// (rows `lda` bytes apart), each next k tile 64 bytes on; B's two column tiles at `b.0` and 64
/// bytes on (rows `b.1` bytes apart), each next k tile `b.2` bytes on; C's rows `c.1` bytes apart
/// from `c.0`.
///
/// # Safety
/// The full configuration (`Config::new(16)`) is loaded on this thread (AMX enabled); `steps` ≥ 1;
/// every row those addresses name is valid for reads of 64 bytes (A, B) or writes of 128 (C).
#[inline(always)]
unsafe fn product(
    a: (*const u8, Option<*const u8>),
    lda: usize,
    b: (*const u8, usize, usize),
    steps: usize,
    c: (*mut u8, usize),
) {
    let (b, ldb, b_step) = b;
    let (c, ldc) = c;
    match a.1 {
        // SAFETY: each TILELOADD reads 16 rows of 64 bytes from its address with its stride: A's
        // tiles at a, a1 (+ 64 a step), B's at b, b + 64 (+ b_step a step), for `steps` steps;
        // each TILESTORED writes 16 rows of 64 bytes at c, c + 64, c1, c1 + 64, ldc apart: all
        // valid by the contract. The registers it advances are inout and discarded; no stack.
        Some(a1) => unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "2:",
                "tileloadd tmm4, [{a0} + {lda}*1]",
                "tileloadd tmm5, [{a1} + {lda}*1]",
                "tileloadd tmm6, [{b} + {ldb}*1]",
                "tileloadd tmm7, [{b} + {ldb}*1 + 64]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a0}, 64",
                "add {a1}, 64",
                "add {b}, {b_step}",
                "dec {steps}",
                "jnz 2b",
                "tilestored [{c0} + {ldc}*1], tmm0",
                "tilestored [{c0} + {ldc}*1 + 64], tmm1",
                "tilestored [{c1} + {ldc}*1], tmm2",
                "tilestored [{c1} + {ldc}*1 + 64], tmm3",
                a0 = inout(reg) a.0 => _,
                a1 = inout(reg) a1 => _,
                b = inout(reg) b => _,
                steps = inout(reg) steps => _,
                lda = in(reg) lda,
                ldb = in(reg) ldb,
                b_step = in(reg) b_step,
                c0 = in(reg) c,
                c1 = in(reg) c.wrapping_add(16 * ldc),
                ldc = in(reg) ldc,
                options(nostack),
            )
        },
        // SAFETY: as above, with A's one row tile and C's first 16 rows.
        None => unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "2:",
                "tileloadd tmm4, [{a0} + {lda}*1]",
                "tileloadd tmm6, [{b} + {ldb}*1]",
                "tileloadd tmm7, [{b} + {ldb}*1 + 64]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "add {a0}, 64",
                "add {b}, {b_step}",
                "dec {steps}",
                "jnz 2b",
                "tilestored [{c0} + {ldc}*1], tmm0",
                "tilestored [{c0} + {ldc}*1 + 64], tmm1",
                a0 = inout(reg) a.0 => _,
                b = inout(reg) b => _,
                steps = inout(reg) steps => _,
                lda = in(reg) lda,
                ldb = in(reg) ldb,
                b_step = in(reg) b_step,
                c0 = in(reg) c,
                ldc = in(reg) ldc,
                options(nostack),
            )
        },
    }
}
