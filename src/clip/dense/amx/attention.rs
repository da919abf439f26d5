//! Attention's two per-head products on AMX's tiles, in bf16 (`--precision bf16` and `int8` where
//! AMX is enabled; `attention.rs` drives it and runs everything else, the softmax included).
//!
//! For one image's head, on one thread: the keys are packed as row tiles (16 keys × 32 head dims),
//! the queries as column tiles (16 head-dim pairs × 16 queries), the values transposed as row tiles
//! (16 head dims × 32 keys). Then, a panel of 32 queries at a time: the scores `k qⱼᵀ` (keys as
//! rows, the panel's queries as columns: the layout `softmax_columns` reads) by `tdpbf16ps` into
//! f32, the mask and the softmax there (the caller's), the probabilities rounded into column tiles
//! (16 key pairs × 16 queries), and the context transposed, `vᵀ pⱼ` (head dims × queries), written
//! into the head's columns of the output. Every operand is rounded to bf16 (nearest even), every
//! sum is f32: `bf16.rs`'s arithmetic, in the tile unit's order of adds. Keys and head dims past
//! the real ones are zero, so they add nothing.

use std::arch::asm;

use super::super::bf16::{interleave_rows, to_pairs};
use super::super::pack::Line;
use super::tile::{release, Config};

/// Queries a panel: two column tiles.
pub(in crate::clip::dense) const PANEL: usize = 32;

/// Head widths this path takes: whole k tiles of head dims (32).
pub(in crate::clip::dense) fn fits(hd: usize) -> bool {
    hd > 0 && hd.is_multiple_of(32)
}

/// One task's tiles and buffers, reused across the heads it runs.
#[derive(Default)]
pub(in crate::clip::dense) struct Scratch {
    /// Row tiles of the keys: ⌈n / 16⌉ key groups × hd / 32 k tiles.
    keys: Vec<Line>,
    /// Column tiles of the queries: ⌈n / 16⌉ query groups × hd / 32 k tiles.
    queries: Vec<Line>,
    /// Row tiles of the values transposed: hd / 16 dim groups × ⌈n / 32⌉ k tiles (keys).
    values: Vec<Line>,
    /// Column tiles of one panel's probabilities: 2 query groups × ⌈n / 32⌉ k tiles (keys).
    prob_tiles: Vec<Line>,
    /// One panel's scores, then probabilities: ⌈n / 16⌉ · 16 keys × 32 queries.
    pub(in crate::clip::dense) probs: Vec<f32>,
    /// One panel's context, transposed: hd × 32.
    context: Vec<f32>,
    /// Rounded pairs of one row.
    words: Vec<f32>,
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

impl Scratch {
    /// Packs the head's keys, queries and transposed values into tiles (bf16, nearest even).
    pub(in crate::clip::dense) fn pack(&mut self, h: Head<'_>) {
        let (n, hd, d3) = (h.n, h.hd, h.d3);
        let (groups, kts, key_tiles) = (n.div_ceil(16), hd / 32, n.div_ceil(32));
        let zero = Line([0.0; 16]);
        for v in [&mut self.keys, &mut self.queries] {
            v.clear();
            v.resize(groups * kts * 16, zero);
        }
        self.values.clear();
        self.values.resize(hd / 16 * key_tiles * 16, zero);
        self.words.resize(hd.max(32), 0.0);
        for t in 0..n {
            let (g, r) = (t / 16, t % 16);
            for kt in 0..kts {
                // Key t's head dims kt·32..: row r of key tile (g, kt), 32 bf16 in order.
                to_pairs(
                    &h.k[t * d3 + kt * 32..][..32],
                    &mut self.keys[(g * kts + kt) * 16 + r].0,
                );
                // Query t's: its pairs p down column r of query tile (g, kt).
                to_pairs(&h.q[t * d3 + kt * 32..][..32], &mut self.words[..16]);
                for (p, &w) in self.words[..16].iter().enumerate() {
                    self.queries[(g * kts + kt) * 16 + p].0[r] = w;
                }
            }
        }
        // Key pair (2p, 2p + 1) of each head dim: word c of `words`; down row c % 16 of the
        // values' tile (c / 16, p / 16), word p % 16.
        for p in 0..n.div_ceil(2) {
            let hi = (2 * p + 1 < n).then(|| &h.v[(2 * p + 1) * d3..][..hd]);
            interleave_rows(&h.v[2 * p * d3..][..hd], hi, &mut self.words[..hd]);
            for (c, &w) in self.words[..hd].iter().enumerate() {
                self.values[((c / 16) * key_tiles + p / 16) * 16 + c % 16].0[p % 16] = w;
            }
        }
        self.probs.resize(groups * 16 * PANEL, 0.0);
        self.context.resize(hd * PANEL, 0.0);
        self.prob_tiles.clear();
        self.prob_tiles.resize(2 * key_tiles * 16, zero);
    }

    /// Panel j's scores (keys × its 32 queries) into `probs`' first ⌈n / 16⌉ · 16 rows.
    ///
    /// # Safety
    /// AMX is enabled; [`Self::pack`] packed `h` (same sizes) last; j < ⌈n / 32⌉.
    pub(in crate::clip::dense) unsafe fn scores(&mut self, h: Head<'_>, j: usize) {
        let (groups, kts) = (h.n.div_ceil(16), h.hd / 32);
        let keys = self.keys.as_ptr().cast::<u8>();
        let queries = self.queries.as_ptr().cast::<u8>();
        let probs = self.probs.as_mut_ptr().cast::<u8>();
        // SAFETY: AMX is enabled (the contract).
        unsafe { Config::new(16).load() };
        for g in 0..groups {
            // Query groups 2j and 2j + 1 (the second may lie past the last query: then it is
            // group 2j again, and its columns are not used).
            let g1 = if 2 * j + 1 < groups { 2 * j + 1 } else { 2 * j };
            // SAFETY: key tiles (g, 0..kts), query tiles (2j, ·) and (g1, ·) lie inside the packed
            // buffers (g, 2j, g1 < groups; pack's sizes, the contract); the output: rows g·16..
            // g·16 + 16 of probs (32 floats = 128 bytes each), inside its groups · 16 rows.
            unsafe {
                tile_product(
                    keys.add(g * kts * 1024),
                    queries.add(2 * j * kts * 1024),
                    queries.add(g1 * kts * 1024),
                    kts,
                    probs.add(g * 16 * PANEL * 4),
                )
            };
        }
        // SAFETY: AMX is enabled; the tiles were all stored.
        unsafe { release() };
    }

    /// Panel j's context from its probabilities (`probs`' first n rows, after the softmax):
    /// `count` queries from the panel's `first`, into `out` (query i's row at `out + i · ld`, the
    /// head's hd floats).
    ///
    /// # Safety
    /// AMX is enabled; [`Self::pack`] packed `h` last; `first + count ≤ 32`; `out` is valid for
    /// writes of `count` rows of hd floats, `ld` apart, that nothing else accesses meanwhile.
    pub(in crate::clip::dense) unsafe fn context(
        &mut self,
        h: Head<'_>,
        (first, count): (usize, usize),
        out: *mut f32,
        ld: usize,
    ) {
        let (n, hd) = (h.n, h.hd);
        let key_tiles = n.div_ceil(32);
        // Key pair p of the panel's 32 queries: row p % 16 of the two column tiles (·, p / 16).
        for p in 0..n.div_ceil(2) {
            let hi = (2 * p + 1 < n).then(|| &self.probs[(2 * p + 1) * PANEL..][..PANEL]);
            interleave_rows(
                &self.probs[2 * p * PANEL..][..PANEL],
                hi,
                &mut self.words[..PANEL],
            );
            for (half, w) in self.words[..PANEL].chunks_exact(16).enumerate() {
                let line = (half * key_tiles + p / 16) * 16 + p % 16;
                self.prob_tiles[line].0.copy_from_slice(w);
            }
        }
        let values = self.values.as_ptr().cast::<u8>();
        let probs = self.prob_tiles.as_ptr().cast::<u8>();
        let context = self.context.as_mut_ptr().cast::<u8>();
        // SAFETY: AMX is enabled (the contract).
        unsafe { Config::new(16).load() };
        for dg in 0..hd / 16 {
            // SAFETY: value tiles (dg, 0..key_tiles) and probability tiles (0 and 1, ·) lie inside
            // their buffers (pack's sizes); the output: rows dg·16.. of context (hd × 32 floats).
            unsafe {
                tile_product(
                    values.add(dg * key_tiles * 1024),
                    probs,
                    probs.add(key_tiles * 1024),
                    key_tiles,
                    context.add(dg * 16 * PANEL * 4),
                )
            };
        }
        // SAFETY: AMX is enabled; the tiles were all stored.
        unsafe { release() };
        for i in 0..count {
            for c in 0..hd {
                // SAFETY: row i < count, column c < hd: inside what the contract lets us write.
                unsafe { *out.add(i * ld + c) = self.context[c * PANEL + first + i] };
            }
        }
    }
}

/// Two 16 × 16 f32 tiles, `c` and `c` + 64 bytes (rows 128 bytes apart: 16 rows of 32 floats) =
/// Σ over `steps` k tiles of A · B0 and A · B1 (`tdpbf16ps`), from zero; A's, B0's and B1's k
/// tiles each 1 KiB on from the last.
///
/// # Safety
/// The full configuration (`Config::new(16)`) is loaded on this thread (AMX enabled); `steps` ≥ 1;
/// `a`, `b0`, `b1` valid for reads of `steps` tiles of 1 KiB; `c` for writes of 16 rows of 128
/// bytes.
#[inline(always)]
unsafe fn tile_product(a: *const u8, b0: *const u8, b1: *const u8, steps: usize, c: *mut u8) {
    // SAFETY: the configuration gives tiles of 16 rows × 64 bytes, so each TILELOADD (stride 64)
    // reads the 1 KiB from its address and each TILESTORED (stride 128) writes 16 rows of 64 bytes
    // 128 apart: a, b0, b1 advanced 1 KiB a step for `steps` steps, and c's 16 rows (the second
    // tile 64 bytes on), all inside what the contract makes valid; no stack.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "2:",
            "tileloadd tmm4, [{a} + {s}*1]",
            "tileloadd tmm6, [{b0} + {s}*1]",
            "tileloadd tmm7, [{b1} + {s}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "add {a}, 1024",
            "add {b0}, 1024",
            "add {b1}, 1024",
            "dec {steps}",
            "jnz 2b",
            "tilestored [{c} + {ldc}*1], tmm0",
            "tilestored [{c} + {ldc}*1 + 64], tmm1",
            a = inout(reg) a => _,
            b0 = inout(reg) b0 => _,
            b1 = inout(reg) b1 => _,
            steps = inout(reg) steps => _,
            c = in(reg) c,
            s = in(reg) 64usize,
            ldc = in(reg) 128usize,
            options(nostack),
        )
    };
}
