//! 2-bit codes: a quarter of the memory of the int8 codes, for a label too large to scan those
//! (`labels`). A scan of them gives a label-filtered search its candidates, a wide set (thousands):
//! the graph's int8 codes re-score those, then the f32 rows re-rank the best (`search`).
//!
//! A component's 2-bit level comes from its int8 code `c` (the graph's, so the same per-dimension
//! centring and scale, `quant`): `(c + 32) >> 4` clamped to 0..=3, i.e. steps of 16 int8 units
//! with the middle two over ±16 (about ±0.75 of a component's standard deviation where, as
//! `quant` fits it, ±64 is about ±3 of them); level `u` stands for the int8 value `16u - 24`, the
//! middle of its step (the outer two stand for ±24). Measured against the 4-bit codes they replaced
//! (16 levels, twice the bytes) at a million clustered documents: the same recall and speed once
//! the int8 re-score takes the best 8,192 instead of 1,000 (4,096 found 0.9985 of the top ten
//! within a label of half of them; docs/performance.md).
//!
//! The distance is asymmetric: the query keeps its int8 code `c` and is compared with each level's
//! value, `Σ ((c + 24) - 16u)²`, exact in i32 (|c + 24 - 16u| ≤ 152; 768 × 152² < 2³¹). Expanded,
//! that is `Σ (c + 24)² + (256 Σ u² - 768 Σ u) - 32 Σ c·u`: a term of the query's, a term of the
//! code's (stored after it, its *norm*) and a dot product of the code's levels, unsigned bytes,
//! with the query's int8 code, which `VPMADDUBSW` computes 32 or 64 components an instruction.
//!
//! Layout of a code: components in blocks of 128 (the last padded with level 0, matched by a query
//! value 0, so padding adds nothing); byte `j` of a block's 32 holds component `j + 32f` in its
//! bits `2f..2f + 2` (f = 0..4), so a kernel unpacks 32 components with one shift and one mask.
//! After the blocks, the code's norm (i32, little-endian). Computed with AVX-512BW where the CPU
//! has it (two blocks a step), else AVX2 (one), else portable code; the same numbers from each
//! (tested).
//!
//! What it is not for: deciding which labels keep these codes (`labels`) or the int8 scan (`codes`).

use super::codes::Kernel;

/// Bits of a level; levels a byte holds.
const BITS: usize = 2;
const FIELDS: usize = 8 / BITS;
/// Bytes of a block; components a block packs.
const BLOCK_BYTES: usize = 32;
const BLOCK: usize = BLOCK_BYTES * FIELDS;
/// Int8 units a level spans, and what the query's int8 code is offset by, so that level `u`
/// compares with `STEP * u`.
const STEP: i32 = 16;
const OFFSET: i32 = 24;
/// Bytes of a code's norm, after its blocks.
const NORM: usize = 4;

/// Bytes of the packed levels of `dims` components.
fn packed_bytes(dims: usize) -> usize {
    dims.div_ceil(BLOCK) * BLOCK_BYTES
}

/// Bytes of the code of `dims` components: its packed levels and its norm.
pub(super) fn bytes_for(dims: usize) -> usize {
    packed_bytes(dims) + NORM
}

/// The 2-bit level of the int8 component `c`.
fn level(c: i8) -> u8 {
    ((i16::from(c) + 32) >> 4).clamp(0, 3) as u8
}

/// The code of the int8 code `code`, appended to `out` ([`bytes_for`] bytes).
#[cfg(test)]
pub(super) fn pack_into(code: &[i8], out: &mut Vec<u8>) {
    let at = out.len();
    out.resize(at + bytes_for(code.len()), 0);
    pack_to(code, &mut out[at..]);
}

/// The code of the int8 code `code` into `out` ([`bytes_for`] bytes), each level found once.
pub(super) fn pack_to(code: &[i8], out: &mut [u8]) {
    let (packed, norm_bytes) = out.split_at_mut(out.len() - NORM);
    packed.fill(0);
    let mut norm = 0i32;
    for (block, bytes) in code.chunks(BLOCK).zip(packed.chunks_exact_mut(BLOCK_BYTES)) {
        for (i, &c) in block.iter().enumerate() {
            let u = level(c);
            let (field, j) = (i / BLOCK_BYTES, i % BLOCK_BYTES);
            bytes[j] |= u << (BITS * field);
            let u = i32::from(u);
            norm += STEP * STEP * u * u - 2 * STEP * OFFSET * u;
        }
    }
    norm_bytes.copy_from_slice(&norm.to_le_bytes());
}

/// Where block `b`'s components of field 0 start in the prepared query (field `f`'s start
/// `f * 2 * BLOCK_BYTES` later): blocks go in pairs, each field's 32 + 32 components of the pair
/// together, as one 64-byte load of the pair's codes holds them.
fn query_at(b: usize) -> usize {
    (b / 2) * 2 * BLOCK + (b % 2) * BLOCK_BYTES
}

/// The query as the kernels read it.
struct Prepared {
    /// The query's int8 code in the kernels' order, padded with 0 to whole pairs of blocks.
    code: Vec<i8>,
    /// `Σ (c + OFFSET)²` over the query's components: the distance's term of the query's.
    square: i32,
}

fn prepared(query: &[i8]) -> Prepared {
    let blocks = query.len().div_ceil(BLOCK).max(1);
    let mut code = vec![0i8; blocks.div_ceil(2) * 2 * BLOCK];
    for (i, &c) in query.iter().enumerate() {
        let (block, j) = (i / BLOCK, i % BLOCK);
        let (field, j) = (j / BLOCK_BYTES, j % BLOCK_BYTES);
        code[query_at(block) + field * 2 * BLOCK_BYTES + j] = c;
    }
    let square = query.iter().map(|&c| (i32::from(c) + OFFSET).pow(2)).sum();
    Prepared { code, square }
}

/// The positions (in `codes`, one code of `query.len()` components after another) of the
/// `count` codes nearest the int8 code `query`, nearest first (ties by position).
pub(super) fn nearest(query: &[i8], codes: &[u8], count: usize) -> Vec<usize> {
    let q = prepared(query);
    let kernel = Kernel::get();
    let size = bytes_for(query.len());
    super::codes::nearest_by(codes, size, count, |codes, out| {
        distances(kernel, &q, size, codes, out)
    })
}

/// The distance of each code (`size` bytes) of `codes` to the prepared query `q`, into `out`, by
/// `kernel`.
fn distances(kernel: Kernel, q: &Prepared, size: usize, codes: &[u8], out: &mut [i32]) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::get` chose this kernel only where the CPU has AVX-512BW (and so
        // AVX-512F).
        Kernel::Avx512 => unsafe { x86::distances_avx512(q, size, codes, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::get` chose this kernel only where the CPU has AVX2.
        Kernel::Avx2 => unsafe { x86::distances_avx2(q, size, codes, out) },
        _ => distances_portable(q, size, codes, out),
    }
}

/// The code's norm: the last [`NORM`] bytes of `code`.
fn norm_of(code: &[u8]) -> i32 {
    let mut bytes = [0u8; NORM];
    bytes.copy_from_slice(&code[code.len() - NORM..]);
    i32::from_le_bytes(bytes)
}

/// The reference: a component at a time, the dot product in the kernels' order.
fn distances_portable(q: &Prepared, size: usize, codes: &[u8], out: &mut [i32]) {
    for (code, d) in codes.chunks_exact(size).zip(out.iter_mut()) {
        let mut dot = 0i32;
        for (b, block) in code[..size - NORM].chunks_exact(BLOCK_BYTES).enumerate() {
            let at = query_at(b);
            for (j, &byte) in block.iter().enumerate() {
                for f in 0..FIELDS {
                    let u = (byte >> (BITS * f)) & 3;
                    dot += i32::from(q.code[at + f * 2 * BLOCK_BYTES + j]) * i32::from(u);
                }
            }
        }
        *d = q.square + norm_of(code) - 2 * STEP * dot;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::codes::x86::sum_lanes;
    use super::{norm_of, query_at, Prepared, BLOCK, BLOCK_BYTES, NORM, STEP};

    /// [`super::distances_portable`] two blocks (256 components, 64 bytes) a step: each field
    /// shifted down and masked, `VPMADDUBSW`ed (unsigned levels by the query's signed code, pairs
    /// summed to i16: at most 2 × 3 × 128 each, so the four fields' sums fit too), then
    /// `VPMADDWD`ed by 1 to i32. A lone last block is loaded under a mask.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn distances_avx512(q: &Prepared, size: usize, codes: &[u8], out: &mut [i32]) {
        let packed = size - NORM;
        let steps = packed.div_ceil(2 * BLOCK_BYTES);
        // The bytes of the last step: all 64, or the lone block's 32.
        let last: __mmask64 = if packed.is_multiple_of(2 * BLOCK_BYTES) {
            !0
        } else {
            0xFFFF_FFFF
        };
        let mask = _mm512_set1_epi8(3);
        let ones = _mm512_set1_epi16(1);
        for (code, d) in codes.chunks_exact(size).zip(out.iter_mut()) {
            let mut acc = _mm512_setzero_si512();
            for s in 0..steps {
                let keep = if s + 1 == steps { last } else { !0 };
                let base = s * 2 * BLOCK;
                // SAFETY: step `s` reads bytes `64s..` of `code` under `keep`, which covers only
                // its packed levels; `q.code` holds 256 bytes a step (whole pairs of blocks).
                let (c, q0, q1, q2, q3) = unsafe {
                    let at = |f: usize| q.code.as_ptr().add(base + f * 2 * BLOCK_BYTES).cast();
                    (
                        _mm512_maskz_loadu_epi8(
                            keep,
                            code.as_ptr().add(s * 2 * BLOCK_BYTES).cast(),
                        ),
                        _mm512_loadu_si512(at(0)),
                        _mm512_loadu_si512(at(1)),
                        _mm512_loadu_si512(at(2)),
                        _mm512_loadu_si512(at(3)),
                    )
                };
                let f0 = _mm512_and_si512(c, mask);
                let f1 = _mm512_and_si512(_mm512_srli_epi16::<2>(c), mask);
                let f2 = _mm512_and_si512(_mm512_srli_epi16::<4>(c), mask);
                let f3 = _mm512_and_si512(_mm512_srli_epi16::<6>(c), mask);
                let pairs = _mm512_add_epi16(
                    _mm512_add_epi16(_mm512_maddubs_epi16(f0, q0), _mm512_maddubs_epi16(f1, q1)),
                    _mm512_add_epi16(_mm512_maddubs_epi16(f2, q2), _mm512_maddubs_epi16(f3, q3)),
                );
                acc = _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, ones));
            }
            *d = q.square + norm_of(code) - 2 * STEP * _mm512_reduce_add_epi32(acc);
        }
    }

    /// As above with AVX2, one block (32 bytes) a step.
    #[target_feature(enable = "avx2")]
    pub(super) fn distances_avx2(q: &Prepared, size: usize, codes: &[u8], out: &mut [i32]) {
        let blocks = (size - NORM) / BLOCK_BYTES;
        let mask = _mm256_set1_epi8(3);
        let ones = _mm256_set1_epi16(1);
        for (code, d) in codes.chunks_exact(size).zip(out.iter_mut()) {
            let mut acc = _mm256_setzero_si256();
            for b in 0..blocks {
                let at = query_at(b);
                // SAFETY: block `b` is bytes `32b..32b + 32` of `code`'s packed levels; `q.code`
                // holds whole pairs of blocks, so `at + 3 * 64 + 32` is within it.
                let (c, q0, q1, q2, q3) = unsafe {
                    let q_at = |f: usize| q.code.as_ptr().add(at + f * 2 * BLOCK_BYTES).cast();
                    (
                        _mm256_loadu_si256(code.as_ptr().add(b * BLOCK_BYTES).cast()),
                        _mm256_loadu_si256(q_at(0)),
                        _mm256_loadu_si256(q_at(1)),
                        _mm256_loadu_si256(q_at(2)),
                        _mm256_loadu_si256(q_at(3)),
                    )
                };
                let f0 = _mm256_and_si256(c, mask);
                let f1 = _mm256_and_si256(_mm256_srli_epi16::<2>(c), mask);
                let f2 = _mm256_and_si256(_mm256_srli_epi16::<4>(c), mask);
                let f3 = _mm256_and_si256(_mm256_srli_epi16::<6>(c), mask);
                let pairs = _mm256_add_epi16(
                    _mm256_add_epi16(_mm256_maddubs_epi16(f0, q0), _mm256_maddubs_epi16(f1, q1)),
                    _mm256_add_epi16(_mm256_maddubs_epi16(f2, q2), _mm256_maddubs_epi16(f3, q3)),
                );
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
            }
            *d = q.square + norm_of(code) - 2 * STEP * sum_lanes(acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of int8 codes, the extremes included.
    fn codes_from(seed: u64, n: usize) -> Vec<i8> {
        super::super::codes::test_codes(seed, n, &[127, -127, -128, 63, -64])
    }

    /// The distance straight from the definition: the query's int8 code against each level's
    /// int8 value `16u - 24`.
    fn naive(query: &[i8], code: &[i8]) -> i32 {
        query
            .iter()
            .zip(code)
            .map(|(&x, &c)| {
                let value = 16 * i64::from(level(c)) - 24;
                (i64::from(x) - value).pow(2)
            })
            .sum::<i64>() as i32
    }

    fn packed(codes: &[i8], dims: usize) -> Vec<u8> {
        let mut out = Vec::new();
        codes.chunks(dims).for_each(|c| pack_into(c, &mut out));
        out
    }

    #[test]
    fn levels_are_steps_of_sixteen_around_zero_clipped_beyond() {
        assert_eq!(level(-128), 0);
        assert_eq!(level(-17), 0);
        assert_eq!(level(-16), 1);
        assert_eq!(level(-1), 1);
        assert_eq!(level(0), 2);
        assert_eq!(level(15), 2);
        assert_eq!(level(16), 3);
        assert_eq!(level(127), 3);
        assert_eq!(bytes_for(768), 192 + 4);
        assert_eq!(bytes_for(512), 128 + 4);
        assert_eq!(bytes_for(1), 32 + 4);
        assert_eq!(bytes_for(0), 4);
    }

    #[test]
    fn every_kernel_gives_the_reference_distances() {
        for dims in [
            1, 31, 32, 33, 64, 127, 128, 129, 200, 255, 256, 257, 384, 512, 576, 768,
        ] {
            let query = codes_from(dims as u64, dims);
            let raw = codes_from(7 + dims as u64, dims * 50);
            let codes = packed(&raw, dims);
            assert_eq!(codes.len(), 50 * bytes_for(dims));
            let q = prepared(&query);
            let mut want = vec![0i32; 50];
            distances_portable(&q, bytes_for(dims), &codes, &mut want);
            let direct: Vec<i32> = raw.chunks(dims).map(|c| naive(&query, c)).collect();
            assert_eq!(want, direct, "{dims} dims");
            for k in super::super::codes::test_kernels() {
                let mut got = vec![i32::MIN; 50];
                distances(k, &q, bytes_for(dims), &codes, &mut got);
                assert_eq!(got, want, "{k:?}, {dims} dims");
            }
        }
    }

    #[test]
    fn the_extremes_do_not_overflow() {
        // The farthest a component can be: query -128 against level 3 (value 24): 152.
        let query = vec![-128i8; 768];
        let codes = packed(&vec![127i8; 768 * 3], 768);
        let q = prepared(&query);
        for k in super::super::codes::test_kernels() {
            let mut got = vec![0i32; 3];
            distances(k, &q, bytes_for(768), &codes, &mut got);
            assert_eq!(got, vec![768 * 152 * 152; 3], "{k:?}");
        }
    }

    #[test]
    fn nearest_is_the_count_closest_in_order_in_any_scan() {
        let dims = 40;
        let rows = super::super::codes::TASK_ROWS * 2 + 5;
        let query = codes_from(1, dims);
        let raw = codes_from(2, dims * rows);
        let codes = packed(&raw, dims);
        let mut want: Vec<(i32, usize)> = raw
            .chunks(dims)
            .map(|c| naive(&query, c))
            .zip(0..)
            .collect();
        want.sort_unstable();
        let want: Vec<usize> = want.into_iter().take(100).map(|(_, at)| at).collect();
        assert_eq!(nearest(&query, &codes, 100), want);
        let three = nearest(&query, &codes[..bytes_for(dims) * 3], 10);
        let mut sorted = three.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2]);
        assert!(nearest(&query, &codes, 0).is_empty());
        // A code's own query finds it first among distinct codes.
        let own = nearest(&raw[dims * 5..dims * 6], &codes, 1);
        let d = |at: usize| naive(&raw[dims * 5..dims * 6], &raw[at * dims..(at + 1) * dims]);
        assert_eq!(d(own[0]), d(5));
    }
}
