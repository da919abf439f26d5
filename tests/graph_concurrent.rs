//! The HNSW graph built on several threads at once reaches every node it holds: the vendored
//! usearch's fix of usearch issue #735 (vendor/usearch/PATCHED.md), which the embedded store
//! relies on when it builds and catches up its graph on every core. Upstream usearch 2.26.6 left
//! 0–9 of 3,000 nodes per such build unreachable here (4 threads); a node no search reaches is a
//! document no `knn` finds.

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

const DIMS: usize = 32;
const VECTORS: usize = 3_000;
const THREADS: usize = 8;
const BUILDS: u64 = 4;

/// Deterministic int8 vectors, spread over the whole range.
fn vectors(seed: u64) -> Vec<Vec<i8>> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..VECTORS)
        .map(|_| {
            (0..DIMS)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    ((state >> 40) as u8) as i8
                })
                .collect()
        })
        .collect()
}

/// The keys whose own vector does not find them among its 10 nearest.
fn unreachable(index: &Index, vectors: &[Vec<i8>]) -> Vec<u64> {
    (0..vectors.len())
        .filter(|&i| {
            let found = index.search(&vectors[i], 10).expect("search");
            !found.keys.contains(&(i as u64))
        })
        .map(|i| i as u64)
        .collect()
}

fn build(vectors: &[Vec<i8>], threads: usize) -> Index {
    let index = Index::new(&IndexOptions {
        dimensions: DIMS,
        metric: MetricKind::L2sq,
        quantization: ScalarKind::I8,
        connectivity: 16,
        expansion_add: 128,
        expansion_search: 64,
        multi: false,
    })
    .expect("index");
    index
        .reserve_capacity_and_threads(vectors.len(), threads)
        .expect("reserve");
    std::thread::scope(|s| {
        for t in 0..threads {
            let index = &index;
            s.spawn(move || {
                for i in (t..vectors.len()).step_by(threads) {
                    index.add(i as u64, &vectors[i]).expect("add");
                }
            });
        }
    });
    index
}

#[test]
fn a_graph_built_on_many_threads_reaches_every_node() {
    for seed in 1..=BUILDS {
        let vectors = vectors(seed);
        let index = build(&vectors, THREADS);
        assert_eq!(index.size(), VECTORS);
        let lost = unreachable(&index, &vectors);
        assert!(
            lost.is_empty(),
            "build {seed} on {THREADS} threads: {} of {VECTORS} nodes not found by their own vector: {lost:?}",
            lost.len()
        );
    }
}

#[test]
fn a_graph_built_on_one_thread_reaches_every_node() {
    let vectors = vectors(99);
    let index = build(&vectors, 1);
    assert_eq!(unreachable(&index, &vectors), Vec::<u64>::new());
}
