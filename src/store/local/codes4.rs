//! 4-bit codes: half the memory of the int8 codes again, for a label too large to keep those
//! (`labels`). A scan of them gives a label-filtered search its candidates; the graph's int8
//! codes and then the f32 rows re-rank them (`search`).
//!
//! A component's 4-bit level comes from its int8 code `c` (the graph's, so the same per-dimension
//! centring and scale, `quant`): `(c + 64) >> 3` clamped to 0..=15, i.e. 16 steps of 8 int8 units
//! over ±64 (±3 standard deviations of a component; beyond is clipped). Level `u` stands for the
//! int8 value `8u - 60`, the middle of its step. A step of 8 units is 0.38 of a standard deviation,
//! near the best uniform 16-level quantizer of a Gaussian (0.34); the plain `c >> 4` would use
//! only about 8 of its 16 levels on such data.
//!
//! The distance is asymmetric: the query keeps its int8 code `c` and is compared with each level's
//! value, `Σ ((c + 60) - 8u)²`, exact in i32 (|c + 60 - 8u| ≤ 187; 768 × 187² < 2³¹). Expanded,
//! that is `Σ (c + 60)² + (64 Σ u² - 960 Σ u) - 16 Σ c·u`: a term of the query's, a term of the
//! code's (stored after it, its *norm*) and a dot product of the code's levels, unsigned bytes,
//! with the query's int8 code, which `VPMADDUBSW` computes 32 or 64 components an instruction. So
//! a scan does a few instructions for each 64 bytes it reads and runs at the speed of memory.
//!
//! Layout of a code: components in blocks of 64 (the last padded with level 0, matched by a query
//! value 0, so padding adds nothing); byte `j` of a block's 32 holds component `j` in its low
//! nibble and component `j + 32` in its high one, so a kernel unpacks 32 components with one mask
//! and one shift. After the blocks, the code's norm (i32, little-endian). Computed with AVX-512BW
//! where the CPU has it (two blocks a step), else AVX2 (one), else portable code; the same numbers
//! from each (tested).
//!
//! What it is not for: deciding which labels keep these codes (`labels`) or the int8 scan (`codes`).

use super::codes::Kernel;

/// Components a block packs (into half as many bytes).
const BLOCK: usize = 64;
/// What the query's int8 code is offset by, so that level `u` compares with `8u`.
const OFFSET: i32 = 60;
/// Bytes of a code's norm, after its blocks.
const NORM: usize = 4;

/// Bytes of the packed levels of `dims` components.
fn packed_bytes(dims: usize) -> usize {
    dims.div_ceil(BLOCK) * BLOCK / 2
}

/// Bytes of the code of `dims` components: its packed levels and its norm.
pub(super) fn bytes_for(dims: usize) -> usize {
    packed_bytes(dims) + NORM
}

/// The 4-bit level of the int8 component `c`.
fn level(c: i8) -> u8 {
    ((i16::from(c) + 64) >> 3).clamp(0, 15) as u8
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
    let mut norm = 0i32;
    for (block, bytes) in code.chunks(BLOCK).zip(packed.chunks_exact_mut(BLOCK / 2)) {
        let mut levels = [0u8; BLOCK];
        for (l, &c) in levels.iter_mut().zip(block) {
            *l = level(c);
            let u = i32::from(*l);
            norm += 64 * u * u - 16 * OFFSET * u;
        }
        for (j, byte) in bytes.iter_mut().enumerate() {
            *byte = levels[j] | (levels[j + BLOCK / 2] << 4);
        }
    }
    norm_bytes.copy_from_slice(&norm.to_le_bytes());
}

/// Where block `b`'s low-nibble components start in the prepared query (its high ones start
/// [`BLOCK`] later): blocks go in pairs, the pair's 32 + 32 low components, then its high ones.
fn query_at(b: usize) -> usize {
    (b / 2) * 2 * BLOCK + (b % 2) * (BLOCK / 2)
}

/// The query as the kernels read it.
struct Prepared {
    /// The query's int8 code in the kernels' order, padded with 0 to whole pairs of blocks: for
    /// each pair, the components its low nibbles hold (32 of each block), then its high ones.
    code: Vec<i8>,
    /// `Σ (c + 60)²` over the query's components: the distance's term of the query's.
    square: i32,
}

fn prepared(query: &[i8]) -> Prepared {
    let blocks = query.len().div_ceil(BLOCK).max(1);
    let mut code = vec![0i8; blocks.div_ceil(2) * 2 * BLOCK];
    for (i, &c) in query.iter().enumerate() {
        let (block, j) = (i / BLOCK, i % BLOCK);
        let (half, j) = (j / (BLOCK / 2), j % (BLOCK / 2));
        code[query_at(block) + half * BLOCK + j] = c;
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
        for (b, block) in code[..size - NORM].chunks_exact(BLOCK / 2).enumerate() {
            let at = query_at(b);
            for (j, &byte) in block.iter().enumerate() {
                dot += i32::from(q.code[at + j]) * i32::from(byte & 0x0F);
                dot += i32::from(q.code[at + BLOCK + j]) * i32::from(byte >> 4);
            }
        }
        *d = q.square + norm_of(code) - 16 * dot;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{norm_of, query_at, Prepared, BLOCK, NORM};

    /// [`super::distances_portable`] two blocks (128 components, 64 bytes) a step: the low
    /// nibbles masked and the high ones shifted down, each `VPMADDUBSW`ed (unsigned levels by the
    /// query's signed code, pairs summed to i16: at most 2 × 15 × 128 each, so the two sums of a
    /// step fit too), then `VPMADDWD`ed by 1 to i32. A lone last block is loaded under a mask.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn distances_avx512(q: &Prepared, size: usize, codes: &[u8], out: &mut [i32]) {
        let packed = size - NORM;
        let steps = packed.div_ceil(BLOCK);
        // The bytes of the last step: all 64, or the lone block's 32.
        let last: __mmask64 = if packed.is_multiple_of(BLOCK) {
            !0
        } else {
            0xFFFF_FFFF
        };
        let mask = _mm512_set1_epi8(0x0F);
        let ones = _mm512_set1_epi16(1);
        for (code, d) in codes.chunks_exact(size).zip(out.iter_mut()) {
            let mut acc = _mm512_setzero_si512();
            for s in 0..steps {
                let keep = if s + 1 == steps { last } else { !0 };
                // SAFETY: step `s` reads bytes `64s..` of `code` under `keep`, which covers only
                // its packed levels; `q.code` holds 128 bytes a step (whole pairs of blocks).
                let (c, qlo, qhi) = unsafe {
                    (
                        _mm512_maskz_loadu_epi8(keep, code.as_ptr().add(s * BLOCK).cast()),
                        _mm512_loadu_si512(q.code.as_ptr().add(s * 2 * BLOCK).cast()),
                        _mm512_loadu_si512(q.code.as_ptr().add(s * 2 * BLOCK + BLOCK).cast()),
                    )
                };
                let lo = _mm512_and_si512(c, mask);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(c), mask);
                let pairs =
                    _mm512_add_epi16(_mm512_maddubs_epi16(lo, qlo), _mm512_maddubs_epi16(hi, qhi));
                acc = _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, ones));
            }
            *d = q.square + norm_of(code) - 16 * _mm512_reduce_add_epi32(acc);
        }
    }

    /// As above with AVX2, one block (32 bytes) a step.
    #[target_feature(enable = "avx2")]
    pub(super) fn distances_avx2(q: &Prepared, size: usize, codes: &[u8], out: &mut [i32]) {
        let blocks = (size - NORM) / (BLOCK / 2);
        let mask = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        for (code, d) in codes.chunks_exact(size).zip(out.iter_mut()) {
            let mut acc = _mm256_setzero_si256();
            for b in 0..blocks {
                let at = query_at(b);
                // SAFETY: block `b` is bytes `32b..32b + 32` of `code`'s packed levels; `q.code`
                // holds whole pairs of blocks, so `at + BLOCK + 32` is within it.
                let (c, qlo, qhi) = unsafe {
                    (
                        _mm256_loadu_si256(code.as_ptr().add(b * 32).cast()),
                        _mm256_loadu_si256(q.code.as_ptr().add(at).cast()),
                        _mm256_loadu_si256(q.code.as_ptr().add(at + BLOCK).cast()),
                    )
                };
                let lo = _mm256_and_si256(c, mask);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(c), mask);
                let pairs =
                    _mm256_add_epi16(_mm256_maddubs_epi16(lo, qlo), _mm256_maddubs_epi16(hi, qhi));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
            }
            let mut lanes = [0i32; 8];
            // SAFETY: `lanes` is 32 bytes, what one 256-bit store writes.
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
            *d = q.square + norm_of(code) - 16 * lanes.iter().sum::<i32>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of int8 codes, the extremes included.
    fn codes_from(seed: u64, n: usize) -> Vec<i8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match i % 89 {
                    0 => 127,
                    1 => -127,
                    2 => -128,
                    3 => 63,
                    4 => -64,
                    _ => (x % 256) as u8 as i8,
                }
            })
            .collect()
    }

    /// The distance straight from the definition: the query's int8 code against each level's
    /// int8 value `8u - 60`.
    fn naive(query: &[i8], code: &[i8]) -> i32 {
        query
            .iter()
            .zip(code)
            .map(|(&x, &c)| {
                let value = 8 * i64::from(level(c)) - 60;
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
    fn levels_are_steps_of_eight_over_plus_minus_64_clipped_beyond() {
        assert_eq!(level(-128), 0);
        assert_eq!(level(-64), 0);
        assert_eq!(level(-57), 0);
        assert_eq!(level(-56), 1);
        assert_eq!(level(0), 8);
        assert_eq!(level(63), 15);
        assert_eq!(level(127), 15);
        assert_eq!(bytes_for(768), 384 + 4);
        assert_eq!(bytes_for(512), 256 + 4);
        assert_eq!(bytes_for(1), 32 + 4);
        assert_eq!(bytes_for(0), 4);
    }

    #[test]
    fn every_kernel_gives_the_reference_distances() {
        for dims in [1, 15, 16, 31, 32, 33, 63, 64, 65, 100, 200, 512, 576, 768] {
            let query = codes_from(dims as u64, dims);
            let raw = codes_from(7 + dims as u64, dims * 50);
            let codes = packed(&raw, dims);
            assert_eq!(codes.len(), 50 * bytes_for(dims));
            let q = prepared(&query);
            let mut want = vec![0i32; 50];
            distances_portable(&q, bytes_for(dims), &codes, &mut want);
            let direct: Vec<i32> = raw.chunks(dims).map(|c| naive(&query, c)).collect();
            assert_eq!(want, direct, "{dims} dims");
            let mut kernels = vec![Kernel::Portable, Kernel::get()];
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                kernels.push(Kernel::Avx2);
            }
            for k in kernels {
                let mut got = vec![i32::MIN; 50];
                distances(k, &q, bytes_for(dims), &codes, &mut got);
                assert_eq!(got, want, "{k:?}, {dims} dims");
            }
        }
    }

    #[test]
    fn the_extremes_do_not_overflow() {
        // The farthest a component can be: query 127 against level 0 (value -60): 187.
        let query = vec![127i8; 768];
        let codes = packed(&vec![-128i8; 768 * 3], 768);
        let q = prepared(&query);
        let mut kernels = vec![Kernel::Portable, Kernel::get()];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            kernels.push(Kernel::Avx2);
        }
        for k in kernels {
            let mut got = vec![0i32; 3];
            distances(k, &q, bytes_for(768), &codes, &mut got);
            assert_eq!(got, vec![768 * 187 * 187; 3], "{k:?}");
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
