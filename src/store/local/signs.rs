//! One-bit sign codes of the graph's int8 codes, and the scan that ranks a label's documents by
//! them: the first, cheap step of a label-filtered search.
//!
//! What it is for: a label of hundreds of thousands of documents searched exactly enough, fast and
//! in little memory. A code's bit `i` is set when component `i` of the int8 code (the vector minus
//! the index's mean, see `quant`) is positive, so a 768-d vector takes 96 bytes (96 MB at a million
//! documents, against 768 MB for the int8 codes a second time). The Hamming distance between two
//! sign codes follows the angle between the centred vectors; a label's documents are ranked by it,
//! the best few hundred to thousands are ranked again by their int8 codes, and those by the exact
//! f32 vectors (`search`). The scan runs over each label's codes kept side by side (`labels`), on
//! every core for a large label, with AVX-512 `VPOPCNTQ` where the CPU has it, else the `POPCNT`
//! instruction, else portable code; all three give the same distances (tested).
//!
//! What it is not for: scores (the exact re-rank gives those) or the graph walk.

use rayon::prelude::*;

/// Documents scanned by one task of a parallel scan (a label smaller than this is one task).
const TASK_ROWS: usize = 32_768;

/// Words (`u64`) of the sign code of a `dims`-component vector.
pub(super) fn words(dims: usize) -> usize {
    dims.div_ceil(64)
}

/// Appends the sign code of `code` to `out` ([`words`] words; bit `i` set iff `code[i] > 0`).
pub(super) fn push(code: &[i8], out: &mut Vec<u64>) {
    for chunk in code.chunks(64) {
        let word = chunk
            .iter()
            .enumerate()
            .fold(0u64, |w, (i, &c)| w | (u64::from(c > 0) << i));
        out.push(word);
    }
}

/// The code of `code` as a word vector of its own.
pub(super) fn of(code: &[i8]) -> Vec<u64> {
    let mut out = Vec::with_capacity(words(code.len()));
    push(code, &mut out);
    out
}

/// The positions (in `codes`, one code of `query.len()` words after another) of the `count` codes
/// nearest `query` in Hamming distance, in no particular order; ties at the cut are broken by
/// position. All positions if there are at most `count`.
pub(super) fn nearest(query: &[u64], codes: &[u64], count: usize) -> Vec<usize> {
    let words = query.len().max(1);
    let rows = codes.len() / words;
    if rows <= count {
        return (0..rows).collect();
    }
    let mut dist = vec![0u32; rows];
    let kernel = Kernel::get();
    if rows <= TASK_ROWS {
        kernel.distances(query, codes, &mut dist);
    } else {
        dist.par_chunks_mut(TASK_ROWS)
            .zip(codes.par_chunks(TASK_ROWS * words))
            .for_each(|(out, codes)| kernel.distances(query, codes, out));
    }
    // The cut: the least distance `cut` with at least `count` codes at or below it.
    let mut histogram = vec![0usize; words * 64 + 1];
    for &d in &dist {
        histogram[d as usize] += 1;
    }
    let mut below = 0;
    let mut cut = histogram.len() - 1;
    for (d, &n) in histogram.iter().enumerate() {
        if below + n >= count {
            cut = d;
            break;
        }
        below += n;
    }
    let mut ties = count - below;
    let cut = cut as u32;
    let mut out = Vec::with_capacity(count);
    for (i, &d) in dist.iter().enumerate() {
        if d < cut {
            out.push(i);
        } else if d == cut && ties > 0 {
            ties -= 1;
            out.push(i);
        }
    }
    out
}

/// How the Hamming distances are computed on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// AVX-512F with VPOPCNTDQ: eight words a step.
    Avx512,
    /// The POPCNT instruction, a word at a time.
    Popcnt,
    /// Portable code (no POPCNT).
    Portable,
}

impl Kernel {
    fn get() -> Kernel {
        static KERNEL: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *KERNEL.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
                {
                    return Kernel::Avx512;
                }
                if std::arch::is_x86_feature_detected!("popcnt") {
                    return Kernel::Popcnt;
                }
            }
            Kernel::Portable
        })
    }

    /// The distance of each code of `codes` to `query`, into `out` (one per code).
    fn distances(self, query: &[u64], codes: &[u64], out: &mut [u32]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `get` chose this kernel only where the CPU has AVX-512F and VPOPCNTDQ.
            Kernel::Avx512 => unsafe { x86::distances_avx512(query, codes, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `get` chose this kernel only where the CPU has POPCNT.
            Kernel::Popcnt => unsafe { x86::distances_popcnt(query, codes, out) },
            _ => distances_portable(query, codes, out),
        }
    }
}

/// The reference: the distance of each code to `query`, a word at a time.
#[inline(always)]
fn distances_portable(query: &[u64], codes: &[u64], out: &mut [u32]) {
    for (code, d) in codes.chunks_exact(query.len().max(1)).zip(out.iter_mut()) {
        *d = code
            .iter()
            .zip(query)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::distances_portable`] compiled with POPCNT.
    #[target_feature(enable = "popcnt")]
    pub(super) fn distances_popcnt(query: &[u64], codes: &[u64], out: &mut [u32]) {
        super::distances_portable(query, codes, out);
    }

    /// [`super::distances_portable`] eight words a step: XOR with the query, `VPOPCNTQ`, summed
    /// in lanes; the last step of a code masked to the words left.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub(super) fn distances_avx512(query: &[u64], codes: &[u64], out: &mut [u32]) {
        let words = query.len();
        if words == 0 {
            out.iter_mut().for_each(|d| *d = 0);
            return;
        }
        let steps = words.div_ceil(8);
        let mask = |s: usize| -> __mmask8 {
            let left = (words - s * 8).min(8);
            ((1u16 << left) - 1) as __mmask8
        };
        let q: Vec<__m512i> = (0..steps)
            .map(|s| {
                // SAFETY: the mask covers only the words of `query` from `s * 8` on, all in bounds.
                unsafe { _mm512_maskz_loadu_epi64(mask(s), query.as_ptr().add(s * 8).cast()) }
            })
            .collect();
        for (code, d) in codes.chunks_exact(words).zip(out.iter_mut()) {
            let mut acc = _mm512_setzero_si512();
            for (s, q) in q.iter().enumerate() {
                // SAFETY: as above, within `code` (of `words` words).
                let c =
                    unsafe { _mm512_maskz_loadu_epi64(mask(s), code.as_ptr().add(s * 8).cast()) };
                acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(c, *q)));
            }
            *d = _mm512_reduce_add_epi64(acc) as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of words.
    fn words_from(seed: u64, n: usize) -> Vec<u64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect()
    }

    #[test]
    fn signs_are_the_positive_components() {
        let mut code = vec![0i8; 70];
        code[0] = 1;
        code[1] = -5;
        code[63] = 127;
        code[64] = 3;
        code[69] = 2;
        let w = of(&code);
        assert_eq!(w.len(), words(70));
        assert_eq!(w, vec![1 | (1 << 63), 1 | (1 << 5)]);
    }

    #[test]
    fn every_kernel_gives_the_reference_distances() {
        // Word counts below, at and above a step of eight, and CLIP's 12 (768 dims).
        for words in [1, 2, 7, 8, 9, 12, 16, 17] {
            let query = words_from(words as u64, words);
            let codes = words_from(99 + words as u64, words * 300);
            let mut want = vec![0u32; 300];
            distances_portable(&query, &codes, &mut want);
            let naive: Vec<u32> = codes
                .chunks(words)
                .map(|c| {
                    c.iter()
                        .zip(&query)
                        .map(|(a, b)| (0..64).filter(|i| ((a ^ b) >> i) & 1 == 1).count() as u32)
                        .sum()
                })
                .collect();
            assert_eq!(want, naive, "{words} words");
            let kernel = Kernel::get();
            for k in [Kernel::Portable, kernel] {
                let mut got = vec![u32::MAX; 300];
                k.distances(&query, &codes, &mut got);
                assert_eq!(got, want, "{k:?}, {words} words");
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("popcnt") {
                let mut got = vec![u32::MAX; 300];
                Kernel::Popcnt.distances(&query, &codes, &mut got);
                assert_eq!(got, want, "popcnt, {words} words");
            }
        }
    }

    #[test]
    fn nearest_keeps_the_count_closest_in_any_scan() {
        let words = 12;
        // Large enough for the parallel scan.
        let rows = TASK_ROWS * 2 + 5;
        let query = words_from(1, words);
        let codes = words_from(2, words * rows);
        let mut dist = vec![0u32; rows];
        distances_portable(&query, &codes, &mut dist);
        let count = 1_000;
        let got = nearest(&query, &codes, count);
        assert_eq!(got.len(), count);
        let mut sorted = dist.clone();
        sorted.sort_unstable();
        let cut = sorted[count - 1];
        assert!(got.iter().all(|&i| dist[i] <= cut));
        let mut unique = got.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), count);
        // Every code strictly nearer than the cut is in.
        let strictly = dist.iter().filter(|&&d| d < cut).count();
        assert_eq!(got.iter().filter(|&&i| dist[i] < cut).count(), strictly);
        // Fewer codes than asked: all of them.
        assert_eq!(nearest(&query, &codes[..words * 3], 10), vec![0, 1, 2]);
    }
}
