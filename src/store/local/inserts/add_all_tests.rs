//! `add_all` on many threads: every node it inserts is one a search reaches, fresh inserts and
//! inserts into freed slots alike (usearch's `update` path, taken after removals).

use rayon::ThreadPoolBuilder;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::add_all;

const DIMS: usize = 32;
const VECTORS: usize = 3_000;
const THREADS: usize = 8;

/// Deterministic int8 vectors, spread over the whole range.
fn vectors(seed: u64) -> Vec<(u64, (), Vec<i8>)> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..VECTORS as u64)
        .map(|key| {
            let code = (0..DIMS)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    ((state >> 40) as u8) as i8
                })
                .collect();
            (key, (), code)
        })
        .collect()
}

fn graph() -> Index {
    Index::new(&IndexOptions {
        dimensions: DIMS,
        metric: MetricKind::L2sq,
        quantization: ScalarKind::I8,
        connectivity: 16,
        expansion_add: 128,
        expansion_search: 64,
        multi: false,
    })
    .expect("index")
}

/// The keys of `coded` whose own vector does not find them among its 10 nearest, searched as wide
/// as the graph: such a search walks every node reachable from the entry point, so a key it misses
/// is one no search reaches.
fn unreachable(index: &Index, coded: &[(u64, (), Vec<i8>)]) -> Vec<u64> {
    index.change_expansion_search(coded.len());
    coded
        .iter()
        .filter(|(key, _, code)| !index.search(code, 10).expect("search").keys.contains(key))
        .map(|(key, _, _)| *key)
        .collect()
}

fn on_threads<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    ThreadPoolBuilder::new()
        .num_threads(THREADS)
        .build()
        .expect("thread pool")
        .install(work)
}

#[test]
fn nodes_added_on_many_threads_are_all_reached() {
    for seed in 1..=4 {
        let coded = vectors(seed);
        let index = graph();
        on_threads(|| add_all(&index, &coded)).expect("add_all");
        assert_eq!(index.size(), VECTORS);
        assert_eq!(
            unreachable(&index, &coded),
            Vec::<u64>::new(),
            "build {seed}"
        );
    }
}

#[test]
fn nodes_added_again_into_freed_slots_are_all_reached() {
    let coded = vectors(7);
    let index = graph();
    on_threads(|| add_all(&index, &coded)).expect("add_all");
    let again: Vec<_> = coded
        .iter()
        .filter(|(k, _, _)| k % 3 == 0)
        .cloned()
        .collect();
    for (key, _, _) in &again {
        index.remove(*key).expect("remove");
    }
    assert_eq!(index.size(), VECTORS - again.len());
    on_threads(|| add_all(&index, &again)).expect("add_all again");
    assert_eq!(index.size(), VECTORS);
    assert_eq!(unreachable(&index, &coded), Vec::<u64>::new());
}
