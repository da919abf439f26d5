//! Nodes that a search for their own code does not find are found after [`relink_unfound`], and
//! relinking keeps every node, its key and its vector.

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::{relink_unfound, unfound, CONFIRM_EF, WANTED};

const DIMS: usize = 48;
const CLUSTERS: u64 = 40;
const MEMBERS: u64 = 100;

/// Tight clusters whose members all lie about as far from one another (noise around a centre, as
/// the bench's data): where HNSW's pruning leaves nodes that their own cluster does not link to.
/// Members come in an order that inserts a few of each cluster early, alone among strangers.
fn clustered() -> Vec<(u64, Vec<i8>)> {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let centres: Vec<Vec<i32>> = (0..CLUSTERS)
        .map(|_| (0..DIMS).map(|_| (next() % 161) as i32 - 80).collect())
        .collect();
    let mut rows: Vec<(u64, Vec<i8>)> = (0..CLUSTERS * MEMBERS)
        .map(|i| {
            let centre = &centres[(i % CLUSTERS) as usize];
            let code = centre
                .iter()
                .map(|&c| (c + (next() % 31) as i32 - 15).clamp(-127, 127) as i8)
                .collect();
            (i, code)
        })
        .collect();
    // A shuffle, fixed by the seed.
    for i in (1..rows.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        rows.swap(i, j);
    }
    rows
}

fn graph(rows: &[(u64, Vec<i8>)]) -> Index {
    let index = Index::new(&IndexOptions {
        dimensions: DIMS,
        metric: MetricKind::L2sq,
        quantization: ScalarKind::I8,
        connectivity: 4,
        expansion_add: 32,
        expansion_search: 64,
        multi: false,
    })
    .expect("index");
    index
        .reserve_capacity_and_threads(rows.len(), 2 * rayon::current_num_threads() + 2)
        .expect("reserve");
    for (key, code) in rows {
        index.add(*key, code).expect("add");
    }
    index
}

/// The keys a search at `ef` for their own code does not find among [`WANTED`].
fn missed(index: &Index, rows: &[(u64, Vec<i8>)], ef: usize) -> Vec<u64> {
    rows.iter()
        .filter(|(key, code)| {
            !index
                .search_i8_expanded(code, WANTED, ef)
                .expect("search")
                .keys
                .contains(key)
        })
        .map(|(key, _)| *key)
        .collect()
}

#[test]
fn nodes_their_neighbourhood_does_not_reach_are_found_after_relinking() {
    let rows = clustered();
    let index = graph(&rows);
    let before = missed(&index, &rows, CONFIRM_EF);
    assert!(
        !before.is_empty(),
        "every node found before: the test does not exercise relinking"
    );
    // The check names exactly what a search at its width misses (nothing changed in between).
    let mut named = unfound(&index, 0).expect("unfound");
    named.sort_unstable();
    let mut expected = before.clone();
    expected.sort_unstable();
    assert!(
        expected.iter().all(|k| named.binary_search(k).is_ok()),
        "missed {expected:?}, named {named:?}"
    );
    let relinked = relink_unfound(&index, 0).expect("relink");
    assert!(relinked >= before.len());
    let after = missed(&index, &rows, CONFIRM_EF);
    eprintln!(
        "unfound at ef {CONFIRM_EF}: {} before, {} after",
        before.len(),
        after.len()
    );
    assert!(
        after.len() * 4 <= before.len(),
        "{} of {} still unfound: {after:?}",
        after.len(),
        before.len()
    );
    assert_eq!(index.size(), rows.len());
}

/// Relinking a node replaces its links, so a node whose only way in was one of them can be cut
/// off: the callers walk the links after it (`reconnect`).
#[test]
fn relinking_keeps_every_node_its_key_and_its_vector() {
    let rows = clustered();
    let index = graph(&rows);
    for (key, _) in &rows {
        index.relink(*key).expect("relink");
    }
    assert_eq!(index.size(), rows.len());
    let mut code = vec![0i8; DIMS];
    for (key, expected) in &rows {
        index.get(*key, &mut code).expect("get");
        assert_eq!(&code, expected, "key {key}");
    }
    assert!(
        index.relink(u64::MAX - 1).is_err(),
        "a key not in the graph"
    );
    // Slots past the end, or an empty range, name nothing.
    assert!(unfound(&index, index.slots()).expect("unfound").is_empty());
}
