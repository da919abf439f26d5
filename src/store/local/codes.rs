//! Scans of int8 codes: the candidates of a label-filtered search (the label's codes read from the
//! graph by key, [`nearest_gathered`]) and of the graph's tail (kept side by side,
//! [`nearest_where`]), ranked by the same codes the graph holds (`quant`); and the parallel
//! selection the 2-bit scan shares ([`nearest_by`], `codes2`).
//!
//! What it is for: a label searched exactly (up to the codes' rounding), fast. A scan reads its
//! codes a block at a time into the core's cache ([`GATHER`] keys: one call into usearch, which
//! looks the keys up and fetches their codes ahead of the copies): at a million documents about
//! 0.1 µs a key on 2 cores, where asking usearch for each key's code took 1 µs. A large set is split
//! across every core; the key lookups are most of the time left (`perf`). The squared L2 distance of
//! two codes is computed with AVX-512BW where the CPU has it (32 components a step, widened to i16
//! and multiplied-and-added to i32), else AVX2 (16 a step), else portable code; all three are
//! exact in i32 (768 × 254² < 2³¹) and give the same numbers (tested).
//!
//! What it is not for: scores (the exact re-rank gives those) or which way a search goes
//! (`search`).

use rayon::prelude::*;

/// Documents scanned by one task of a parallel scan (a label smaller than this is one task).
pub(super) const TASK_ROWS: usize = 8_192;

/// The positions (in `codes`, one code of `query.len()` components after another) of the `count`
/// codes nearest `query`, nearest first (ties by position). All positions if there are at most
/// `count`.
pub(super) fn nearest(query: &[i8], codes: &[i8], count: usize) -> Vec<usize> {
    nearest_where(query, codes, count, |_| true)
}

/// The positions of the `count` codes (of `size` elements each, one after another in `codes`)
/// whose `distances` are smallest, smallest first (ties by position); the distances computed on
/// every core, [`TASK_ROWS`] codes a task. The 2-bit scan's (`codes2`).
pub(super) fn nearest_by<T: Sync>(
    codes: &[T],
    size: usize,
    count: usize,
    distances: impl Fn(&[T], &mut [i32]) + Sync,
) -> Vec<usize> {
    nearest_kept(codes, size, count, distances, |_| true)
}

/// The positions of the `count` int8 codes nearest `query` among those `keep` accepts (by
/// position), nearest first (ties by position): [`nearest`] with a mask, for codes kept side by
/// side among which some are stale or of another label (the graph's tail, `tail`).
pub(super) fn nearest_where(
    query: &[i8],
    codes: &[i8],
    count: usize,
    keep: impl Fn(usize) -> bool + Sync,
) -> Vec<usize> {
    let kernel = Kernel::get();
    nearest_kept(
        codes,
        query.len().max(1),
        count,
        |codes, out| kernel.distances(query, codes, out),
        keep,
    )
}

/// [`nearest_by`] of the positions `keep` accepts.
fn nearest_kept<T: Sync>(
    codes: &[T],
    size: usize,
    count: usize,
    distances: impl Fn(&[T], &mut [i32]) + Sync,
    keep: impl Fn(usize) -> bool + Sync,
) -> Vec<usize> {
    let rows = codes.len() / size;
    let best_of = |task: usize| -> Result<_, std::convert::Infallible> {
        let from = task * TASK_ROWS;
        let codes = &codes[from * size..((task + 1) * TASK_ROWS).min(rows) * size];
        let mut dist = vec![0i32; codes.len() / size];
        distances(codes, &mut dist);
        let kept = dist
            .into_iter()
            .zip(from..)
            .filter(|&(_, at)| keep(at))
            .collect();
        Ok(smallest_unsorted(kept, count))
    };
    match best_of_tasks(rows, count, best_of) {
        Ok(best) => best,
        Err(never) => match never {},
    }
}

/// The positions of the `count` smallest `(distance, position)` pairs over `rows` positions, in
/// order: `best_of(task)` gives a task's best `count` (of positions `task * TASK_ROWS..`, in cache
/// on its core), on every core when there is more than one task, and the best of those are the
/// answer: the same as one selection over every distance, since `(distance, position)` orders
/// them all. An error from a task is the answer.
///
/// Each core keeps a running best of the tasks it ran, cut back to `count` whenever it reaches
/// twice that, so a scan holds a few times `count` pairs a core at most, not every task's best at
/// once: a label of half a million documents scanned for 8,192 candidates held all 500,000 pairs
/// twice over (16 MB), which the threads' heaps then kept (glibc trims their tops only past
/// `M_TRIM_THRESHOLD`, which `tune_allocator` sets to 1 GiB).
fn best_of_tasks<E: Send>(
    rows: usize,
    count: usize,
    best_of: impl Fn(usize) -> Result<Vec<(i32, usize)>, E> + Sync,
) -> Result<Vec<usize>, E> {
    let tasks = rows.div_ceil(TASK_ROWS);
    let best: Vec<(i32, usize)> = if tasks <= 1 {
        best_of(0)?
    } else {
        let merge = |mut kept: Vec<(i32, usize)>, more: Vec<(i32, usize)>| {
            kept.extend(more);
            if kept.len() >= 2 * count.max(1) {
                kept = smallest_unsorted(kept, count);
            }
            kept
        };
        (0..tasks)
            .into_par_iter()
            .map(&best_of)
            .try_fold(Vec::new, |kept, more| Ok(merge(kept, more?)))
            .try_reduce(Vec::new, |a, b| Ok(merge(a, b)))?
    };
    let mut best = smallest_unsorted(best, count);
    best.sort_unstable();
    Ok(best.into_iter().map(|(_, at)| at).collect())
}

/// Codes a scan reads at once ([`nearest_gathered`]): 192 KiB at 768-d, in the core's L2 cache.
pub(super) const GATHER: usize = 256;

/// The positions (in `0..rows`) of the `count` codes nearest `query`, nearest first (ties by
/// position), among those that `gather` has: called with a position `from` and room for the
/// codes at `from..from + found.len()`, one after another, it fills `found` with 1 for each it
/// wrote and 0 for each it has not (that position is left out). On every core, [`TASK_ROWS`]
/// positions a task, [`GATHER`] a call; an error from `gather` is the scan's.
pub(super) fn nearest_gathered<E: Send>(
    query: &[i8],
    rows: usize,
    count: usize,
    gather: impl Fn(usize, &mut [i8], &mut [u8]) -> Result<(), E> + Sync,
) -> Result<Vec<usize>, E> {
    let kernel = Kernel::get();
    let dims = query.len().max(1);
    let best_of = |task: usize| -> Result<Vec<(i32, usize)>, E> {
        let (from, until) = (task * TASK_ROWS, ((task + 1) * TASK_ROWS).min(rows));
        let mut codes = vec![0i8; GATHER * dims];
        let (mut found, mut dist) = (vec![0u8; GATHER], vec![0i32; GATHER]);
        let mut best = Vec::new();
        for start in (from..until).step_by(GATHER) {
            let n = (until - start).min(GATHER);
            gather(start, &mut codes[..n * dims], &mut found[..n])?;
            kernel.distances(query, &codes[..n * dims], &mut dist[..n]);
            let kept = dist[..n].iter().zip(&found[..n]).zip(start..);
            best.extend(
                kept.filter(|&((_, &f), _)| f != 0)
                    .map(|((&d, _), at)| (d, at)),
            );
            if best.len() >= 2 * count.max(GATHER) {
                best = smallest_unsorted(best, count);
            }
        }
        Ok(smallest_unsorted(best, count))
    };
    best_of_tasks(rows, count, best_of)
}

/// The `count` smallest `(distance, position)` pairs of `order`, in no order.
fn smallest_unsorted(mut order: Vec<(i32, usize)>, count: usize) -> Vec<(i32, usize)> {
    if count == 0 {
        order.clear();
    } else if order.len() > count {
        order.select_nth_unstable(count - 1);
        order.truncate(count);
    }
    order
}

/// How the distances are computed on this CPU (the 2-bit scan's too, `codes2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    Avx512,
    Avx2,
    Portable,
}

impl Kernel {
    pub(super) fn get() -> Kernel {
        static KERNEL: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *KERNEL.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512bw") {
                    return Kernel::Avx512;
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    return Kernel::Avx2;
                }
            }
            Kernel::Portable
        })
    }

    /// The squared L2 distance of each code of `codes` to `query`, into `out` (one per code).
    fn distances(self, query: &[i8], codes: &[i8], out: &mut [i32]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `get` chose this kernel only where the CPU has AVX-512BW (and so AVX-512F).
            Kernel::Avx512 => unsafe { x86::distances_avx512(query, codes, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `get` chose this kernel only where the CPU has AVX2.
            Kernel::Avx2 => unsafe { x86::distances_avx2(query, codes, out) },
            _ => distances_portable(query, codes, out),
        }
    }
}

/// The reference: each code's squared L2 distance to `query`, a component at a time.
fn distances_portable(query: &[i8], codes: &[i8], out: &mut [i32]) {
    for (code, d) in codes.chunks_exact(query.len().max(1)).zip(out.iter_mut()) {
        *d = squared_from(code, query, 0);
    }
}

/// The squared L2 distance of components `from..` of `code` and `query`, a component at a time.
#[inline(always)]
fn squared_from(code: &[i8], query: &[i8], from: usize) -> i32 {
    code[from..]
        .iter()
        .zip(&query[from..])
        .map(|(&a, &b)| {
            let x = i32::from(a) - i32::from(b);
            x * x
        })
        .sum()
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    /// [`super::distances_portable`] 32 components a step: both widened to i16, subtracted,
    /// `VPMADDWD` (squares summed in pairs to i32), summed in lanes; the rest portable.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn distances_avx512(query: &[i8], codes: &[i8], out: &mut [i32]) {
        let dims = query.len();
        if dims == 0 {
            return super::distances_portable(query, codes, out);
        }
        let steps = dims / 32;
        for (code, d) in codes.chunks_exact(dims).zip(out.iter_mut()) {
            let mut acc = _mm512_setzero_si512();
            for s in 0..steps {
                // SAFETY: `s * 32 + 32 <= dims`, the length of both `code` and `query`.
                let (c, q) = unsafe {
                    (
                        _mm256_loadu_si256(code.as_ptr().add(s * 32).cast()),
                        _mm256_loadu_si256(query.as_ptr().add(s * 32).cast()),
                    )
                };
                let diff = _mm512_sub_epi16(_mm512_cvtepi8_epi16(c), _mm512_cvtepi8_epi16(q));
                acc = _mm512_add_epi32(acc, _mm512_madd_epi16(diff, diff));
            }
            *d = _mm512_reduce_add_epi32(acc) + super::squared_from(code, query, steps * 32);
        }
    }

    /// [`super::distances_portable`] 16 components a step with AVX2, as above.
    #[target_feature(enable = "avx2")]
    pub(super) fn distances_avx2(query: &[i8], codes: &[i8], out: &mut [i32]) {
        let dims = query.len();
        if dims == 0 {
            return super::distances_portable(query, codes, out);
        }
        let steps = dims / 16;
        for (code, d) in codes.chunks_exact(dims).zip(out.iter_mut()) {
            let mut acc = _mm256_setzero_si256();
            for s in 0..steps {
                // SAFETY: `s * 16 + 16 <= dims`, the length of both `code` and `query`.
                let (c, q) = unsafe {
                    (
                        _mm_loadu_si128(code.as_ptr().add(s * 16).cast()),
                        _mm_loadu_si128(query.as_ptr().add(s * 16).cast()),
                    )
                };
                let diff = _mm256_sub_epi16(_mm256_cvtepi8_epi16(c), _mm256_cvtepi8_epi16(q));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(diff, diff));
            }
            *d = sum_lanes(acc) + super::squared_from(code, query, steps * 16);
        }
    }

    /// The sum of the eight i32 lanes of `acc`.
    #[target_feature(enable = "avx2")]
    pub(in super::super) fn sum_lanes(acc: __m256i) -> i32 {
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` is 32 bytes, what one 256-bit store writes.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
        lanes.iter().sum()
    }
}

/// The kernels to check on this CPU: the portable one, the one chosen, and AVX2 where it is not.
#[cfg(test)]
pub(super) fn test_kernels() -> Vec<Kernel> {
    let mut kernels = vec![Kernel::Portable, Kernel::get()];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        kernels.push(Kernel::Avx2);
    }
    kernels
}

/// A deterministic stream of `n` int8 codes for tests, beginning each 89 with `extremes`.
#[cfg(test)]
pub(super) fn test_codes(seed: u64, n: usize, extremes: &[i8]) -> Vec<i8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            extremes
                .get(i % 89)
                .copied()
                .unwrap_or((x % 256) as u8 as i8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of codes, the extremes included.
    fn codes_from(seed: u64, n: usize) -> Vec<i8> {
        test_codes(seed, n, &[127, -127])
    }

    #[test]
    fn every_kernel_gives_the_reference_distances() {
        // Below, at and above a step of 16 and 32, and CLIP's 512 and 768.
        for dims in [1, 15, 16, 17, 31, 32, 33, 100, 512, 768] {
            let query = codes_from(dims as u64, dims);
            let codes = codes_from(7 + dims as u64, dims * 50);
            let mut want = vec![0i32; 50];
            distances_portable(&query, &codes, &mut want);
            let naive: Vec<i32> = codes
                .chunks(dims)
                .map(|c| {
                    c.iter()
                        .zip(&query)
                        .map(|(&a, &b)| (i64::from(a) - i64::from(b)).pow(2))
                        .sum::<i64>() as i32
                })
                .collect();
            assert_eq!(want, naive, "{dims} dims");
            for k in test_kernels() {
                let mut got = vec![i32::MIN; 50];
                k.distances(&query, &codes, &mut got);
                assert_eq!(got, want, "{k:?}, {dims} dims");
            }
        }
    }

    #[test]
    fn the_extremes_do_not_overflow() {
        let query = vec![127i8; 768];
        let codes = vec![-127i8; 768 * 3];
        let mut got = vec![0i32; 3];
        Kernel::get().distances(&query, &codes, &mut got);
        assert_eq!(got, vec![768 * 254 * 254; 3]);
    }

    /// The scan of codes read a block at a time is the scan of the same codes side by side,
    /// those `gather` does not have left out, across tasks; an error from `gather` is the scan's.
    #[test]
    fn a_gathered_scan_is_the_scan_of_the_codes_it_reads() {
        let dims = 24;
        let rows = TASK_ROWS * 2 + GATHER + 5;
        let query = codes_from(3, dims);
        let codes = codes_from(4, dims * rows);
        let absent = |at: usize| at % 5 == 2;
        let gather = |from: usize, out: &mut [i8], found: &mut [u8]| -> Result<(), String> {
            assert_eq!(out.len(), found.len() * dims);
            for (i, f) in found.iter_mut().enumerate() {
                *f = u8::from(!absent(from + i));
                if *f == 1 {
                    let at = (from + i) * dims;
                    out[i * dims..(i + 1) * dims].copy_from_slice(&codes[at..at + dims]);
                }
            }
            Ok(())
        };
        for count in [1, 10, 100, rows] {
            let want = nearest_where(&query, &codes, count, |at| !absent(at));
            assert_eq!(
                nearest_gathered(&query, rows, count, gather),
                Ok(want),
                "{count}"
            );
        }
        assert_eq!(nearest_gathered(&query, 0, 10, gather), Ok(vec![]));
        let failing = |from: usize, _: &mut [i8], _: &mut [u8]| -> Result<(), String> {
            if from >= TASK_ROWS {
                Err(format!("no codes from {from}"))
            } else {
                Ok(())
            }
        };
        assert!(nearest_gathered(&query, rows, 10, failing).is_err());
    }

    #[test]
    fn nearest_is_the_count_closest_in_order_in_any_scan() {
        let dims = 24;
        // Large enough for the parallel scan.
        let rows = TASK_ROWS * 2 + 5;
        let query = codes_from(1, dims);
        let codes = codes_from(2, dims * rows);
        let mut dist = vec![0i32; rows];
        distances_portable(&query, &codes, &mut dist);
        let mut want: Vec<(i32, usize)> = dist.iter().copied().zip(0..).collect();
        want.sort_unstable();
        let every: Vec<usize> = want.into_iter().map(|(_, at)| at).collect();
        assert_eq!(nearest(&query, &codes, 100), every[..100]);
        // More than a task's rows, as a large label's 2-bit scan asks: the tasks' bests merged
        // and cut back as they come.
        assert_eq!(
            nearest(&query, &codes, TASK_ROWS + 7),
            every[..TASK_ROWS + 7]
        );
        // Masked (every third position), across tasks: the nearest of those kept.
        let kept: Vec<usize> = {
            let mut d: Vec<(i32, usize)> = dist.iter().copied().zip(0..).collect();
            d.retain(|&(_, at)| at % 3 == 0);
            d.sort_unstable();
            d.into_iter().take(100).map(|(_, at)| at).collect()
        };
        assert_eq!(nearest_where(&query, &codes, 100, |at| at % 3 == 0), kept);
        // Fewer codes than asked: all of them, nearest first.
        let three = nearest(&query, &codes[..dims * 3], 10);
        let mut sorted = three.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2]);
        assert!(nearest(&query, &codes, 0).is_empty());
    }
}
