//! What an approximate (HNSW) search loses: recall@k against the exact search, and latency
//! percentiles, per `num_candidates` setting.
//!
//! recall@k of one query = |ANN top-k ∩ exact top-k| / |exact top-k|; a setting's recall is the
//! mean over its queries, with every query weighing the same. Queries sampled from the index are
//! drawn with a seeded PRNG (splitmix64), so a rerun on the same index asks the same queries. Not
//! for: running the searches (the `eval` command does that against the store).

use std::collections::HashSet;

use serde::Serialize;

/// The default seed for sampling query documents.
pub const DEFAULT_SEED: u64 = 0x696d_6776_6576_616c;

/// recall@k of one query: the share of the exact top-k that the approximate search found.
/// 1 when the exact search found nothing (nothing could be missed).
pub fn recall_at_k(found: &[String], exact: &[String]) -> f64 {
    if exact.is_empty() {
        return 1.0;
    }
    let truth: HashSet<&str> = exact.iter().map(String::as_str).collect();
    let mut seen = HashSet::new();
    let hits = found
        .iter()
        .filter(|id| truth.contains(id.as_str()) && seen.insert(id.as_str()))
        .count();
    hits as f64 / truth.len() as f64
}

/// The `p`-th percentile (0 ≤ p ≤ 1) of `values` by the nearest-rank method; 0 when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `n` distinct positions out of `0..total`, drawn with `seed` (Floyd's algorithm), ascending.
/// All of them when `n ≥ total`.
pub fn sample_positions(total: u64, n: usize, seed: u64) -> Vec<u64> {
    if n as u64 >= total {
        return (0..total).collect();
    }
    let mut rng = SplitMix64(seed);
    let mut chosen: HashSet<u64> = HashSet::with_capacity(n);
    for j in (total - n as u64)..total {
        let t = rng.below(j + 1);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    let mut v: Vec<u64> = chosen.into_iter().collect();
    v.sort_unstable();
    v
}

/// splitmix64: small, fast and deterministic everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (bound > 0), without modulo bias worth speaking of for bound ≪ 2⁶⁴.
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }
}

/// One `num_candidates` setting's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecallSetting {
    pub num_candidates: usize,
    /// Mean recall@k over the queries.
    pub recall: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Accumulates one setting's queries.
#[derive(Debug, Clone, Default)]
pub struct RecallTally {
    recalls: Vec<f64>,
    latencies_ms: Vec<f64>,
}

impl RecallTally {
    /// Adds one query: what the approximate search found, the exact answer, and how long it took.
    pub fn add(&mut self, found: &[String], exact: &[String], latency_ms: f64) {
        self.recalls.push(recall_at_k(found, exact));
        self.latencies_ms.push(latency_ms);
    }

    pub fn queries(&self) -> usize {
        self.recalls.len()
    }

    pub fn finish(&self, num_candidates: usize) -> RecallSetting {
        let n = self.recalls.len().max(1) as f64;
        RecallSetting {
            num_candidates,
            recall: if self.recalls.is_empty() {
                0.0
            } else {
                self.recalls.iter().sum::<f64>() / n
            },
            p50_ms: percentile(&self.latencies_ms, 0.50),
            p99_ms: percentile(&self.latencies_ms, 0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn recall_counts_the_exact_ids_found() {
        let exact = ids(&["a", "b", "c", "d"]);
        assert_eq!(recall_at_k(&ids(&["d", "c", "b", "a"]), &exact), 1.0);
        assert_eq!(recall_at_k(&ids(&["a", "x", "b", "y"]), &exact), 0.5);
        assert_eq!(recall_at_k(&ids(&["a", "a", "a"]), &exact), 0.25);
        assert_eq!(recall_at_k(&[], &exact), 0.0);
        assert_eq!(recall_at_k(&ids(&["a"]), &[]), 1.0);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), 2.0);
    }

    #[test]
    fn samples_are_distinct_sorted_and_repeatable() {
        let a = sample_positions(1000, 100, 7);
        assert_eq!(a.len(), 100);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(a.iter().all(|&x| x < 1000));
        assert_eq!(a, sample_positions(1000, 100, 7));
        assert_ne!(a, sample_positions(1000, 100, 8));
        assert_eq!(sample_positions(5, 10, 1), vec![0, 1, 2, 3, 4]);
        assert!(sample_positions(0, 3, 1).is_empty());
        // Spread over the whole range, not bunched at one end.
        assert!(a.iter().any(|&x| x < 200) && a.iter().any(|&x| x > 800));
    }

    #[test]
    fn tally_means_and_percentiles() {
        let mut t = RecallTally::default();
        t.add(&ids(&["a", "b"]), &ids(&["a", "b"]), 1.0);
        t.add(&ids(&["a", "x"]), &ids(&["a", "b"]), 3.0);
        let s = t.finish(20);
        assert_eq!(t.queries(), 2);
        assert_eq!(s.num_candidates, 20);
        assert!((s.recall - 0.75).abs() < 1e-12);
        assert_eq!((s.p50_ms, s.p99_ms), (1.0, 3.0));
    }
}
